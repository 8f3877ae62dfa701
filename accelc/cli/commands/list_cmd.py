"""``accelc passes`` / ``accelc targets``: what is available, with options."""

from __future__ import annotations

from accelc.cli.common import add, new_parser, print_json

NAME = "list"


def add_parser(sub):
    p = new_parser(sub, NAME, "list passes and targets with their options")
    p.add_argument("what", nargs="?", choices=["passes", "targets", "all"], default="all")
    add(p, "--json", action="store_true", default=False, help="machine-readable output")
    return p


def run(args) -> int:
    from accelc.compiler.options import describe_options
    from accelc.passes import available_passes
    from accelc.targets.base import available_targets, get_target_class

    info = {}
    if args.what in ("passes", "all"):
        info["passes"] = {name: {"summary": cls.summary(), "exact": cls.exact, "options": describe_options(cls.Options)}
                          for name, cls in available_passes().items()}
    if args.what in ("targets", "all"):
        info["targets"] = {}
        for name in available_targets():
            cls = get_target_class(name)
            info["targets"][name] = {"description": cls.description, "default_pipeline": cls.default_pipeline,
                                     "options": describe_options(cls.Options)}
    if args.json:
        print_json(info)
        return 0
    if "passes" in info:
        print("passes:")
        for name, p in info["passes"].items():
            print(f"  {name}{' (exact)' if p['exact'] else ''}: {p['summary']}")
            for line in p["options"]:
                print(f"      {line}")
    if "targets" in info:
        print("targets:")
        for name, t in info["targets"].items():
            print(f"  {name}: {t['description']} (default pipeline: '{t['default_pipeline']}')")
            for line in t["options"]:
                print(f"      --target-opt {line}")
    return 0

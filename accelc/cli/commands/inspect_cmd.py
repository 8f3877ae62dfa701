"""``accelc inspect MODEL [--json]``: per-layer table of shapes, cost and target support."""

from __future__ import annotations

from accelc.cli.common import add, add_model_options, human, new_parser, print_json, split_list

NAME = "inspect"


def add_parser(sub):
    p = new_parser(sub, NAME, "show a model's layers: output shape, FLOPs, params, target support")
    add_model_options(p)
    add(p, "--pipeline", "-p", default="", metavar="PIPELINE", help="run these passes before inspecting (e.g. fuse)")
    add(p, "--targets", metavar="T1,T2", help="targets to check support for (default: all)")
    add(p, "--json", action="store_true", default=False, help="machine-readable output")
    return p


def inspect_model(args) -> dict:
    from accelc.api import _example_inputs
    from accelc.cli.common import load_cli_model
    from accelc.compiler.analysis.cost import graph_cost
    from accelc.compiler.capture import capture
    from accelc.compiler.context import CompileContext
    from accelc.compiler.pass_manager import PassManager
    from accelc.compiler.pipeline import Pipeline
    from accelc.targets.base import available_targets, make_target

    loaded = load_cli_model(args)
    examples = _example_inputs(loaded, None, split_list(args.input_shape) or None)
    gm = capture(loaded.model, examples)
    if args.pipeline:
        gm = PassManager(Pipeline.parse(args.pipeline), verify_each=False).run(gm, CompileContext(examples))
    cost = graph_cost(gm, examples)
    targets = split_list(args.targets) or available_targets()
    support = {t: make_target(t).support_map(gm, examples) for t in targets}
    layers = []
    for n in cost.nodes:
        entry = n.to_dict()
        entry["supported_by"] = [t for t in targets if support[t].get(n.name, None) is None or support[t][n.name].ok]
        entry["unsupported"] = {t: support[t][n.name].reason for t in targets
                                if n.name in support[t] and not support[t][n.name].ok}
        layers.append(entry)
    return {"model": loaded.source, "inputs": [list(t.shape) for t in examples], "layers": layers,
            "totals": cost.totals(), "targets": targets}


def run(args) -> int:
    from accelc.compiler.printing import format_table

    info = inspect_model(args)
    if args.json:
        print_json(info)
        return 0
    rows = []
    for layer in info["layers"]:
        if layer["op"] in ("get_attr",):
            continue
        rows.append([layer["name"], layer["op"], "x".join(map(str, layer["shape"] or [])), human(layer["flops"]),
                     human(layer["params"]), ",".join(layer["supported_by"]) or "-"])
    t = info["totals"]
    rows.append(["total", "", "", human(t["flops"]), human(t["params"]), ""])
    print(f"{info['model']}  inputs {' '.join('x'.join(map(str, s)) for s in info['inputs'])}")
    print(format_table(rows, ["layer", "op", "output shape", "FLOPs", "params", "targets"]))
    for layer in info["layers"]:
        for target, reason in layer["unsupported"].items():
            print(f"  {layer['name']}: not on {target}: {reason}")
    return 0

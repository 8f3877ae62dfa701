"""``accelc fpga disasm DIR``: readable listing of an fpga artifact's instruction streams."""

from __future__ import annotations

from accelc.cli.common import add, new_parser

NAME = "fpga"


def add_parser(sub):
    p = new_parser(sub, NAME, "tools for fpga artifacts (disasm)")
    p.add_argument("action", choices=["disasm"], help="disasm: print each segment's instructions (and micro-ops)")
    p.add_argument("artifact", metavar="DIR", help="artifact directory compiled with --target fpga")
    add(p, "--uops", action="store_true", default=False, help="also list the micro-ops")
    add(p, "--segment", metavar="NAME", help="only this segment")
    return p


def run(args) -> int:
    from accelc.compiler.artifact import read_manifest
    from accelc.errors import ArtifactError
    from accelc.targets.fpga.disasm import disassemble, disassemble_uops
    from accelc.targets.fpga.lower import NetworkProgram

    manifest = read_manifest(args.artifact)
    segments = manifest.get("payload", {}).get("fpga_segments")
    if manifest["target"] != "fpga" or segments is None:
        raise ArtifactError(f"{args.artifact} is a {manifest['target']} artifact, not an fpga one")
    chosen = [s for s in segments if args.segment in (None, s["name"])]
    if not chosen:
        raise ArtifactError(f"no segment {args.segment!r}; segments: {', '.join(s['name'] for s in segments)}")
    from pathlib import Path

    for seg in chosen:
        program = NetworkProgram.load(Path(args.artifact) / seg["dir"])
        print(f"; segment {seg['name']}: inputs {', '.join(seg['inputs'])} → outputs {', '.join(seg['outputs'])}, "
              f"{len(program.instructions)} instructions, {len(program.uop_words)} micro-ops, config "
              f"{program.config.name}")
        print(disassemble(program.instructions))
        if args.uops:
            print(f"; micro-ops of {seg['name']}")
            print(disassemble_uops(program.uops))
    return 0

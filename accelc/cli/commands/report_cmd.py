"""``accelc report DIR [-o FILE] [--measure N]``: a self-contained HTML page about an artifact."""

from __future__ import annotations

from accelc.cli.common import add, new_parser

NAME = "report"


def add_parser(sub):
    p = new_parser(sub, NAME, "write an HTML report of a compiled artifact",
                   "Write one self-contained HTML file (inline CSS/JS/SVG, nothing fetched) about the artifact in\n"
                   "DIR: the pass pipeline with each pass's record, per-layer FLOPs (and fpga cycles/utilisation)\n"
                   "as bar charts, the graph before and after the pipeline, accuracy and latency tables, fpga\n"
                   "placement and quantization sensitivity when present. The page depends only on the artifact's\n"
                   "manifest.json and report.json, so the same artifact gives the same bytes; --measure N also\n"
                   "runs the artifact N times here and adds its end-to-end and per-kernel times.\n\n"
                   "examples:\n"
                   "  accelc report build/lenet                 # writes build/lenet/report.html\n"
                   "  accelc report build/lenet -o lenet.html --measure 50")
    p.add_argument("artifact", metavar="DIR", help="artifact directory written by accelc compile")
    add(p, "--output", "-o", metavar="FILE", help="where to write the page (default: DIR/report.html)")
    add(p, "--measure", type=int, metavar="N", default=0,
        help="time N runs of the artifact on this machine (end to end and per kernel); default: no timing")
    return p


def run(args) -> int:
    from accelc.errors import UsageError
    from accelc.report import write_report

    if args.measure < 0:
        raise UsageError(f"--measure {args.measure}: expected a number of runs ≥ 0")
    out = write_report(args.artifact, args.output, measure=args.measure)
    if not args.quiet:
        print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0

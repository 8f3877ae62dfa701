"""``accelc export DIR_OR_MODEL --format onnx -o model.onnx``"""

from __future__ import annotations

from pathlib import Path

from accelc.cli.common import add, add_model_options, new_parser, print_json, split_list

NAME = "export"


def add_parser(sub):
    p = new_parser(sub, NAME, "export a (quantized) model to ONNX QDQ and check it in ONNX Runtime",
                   "DIR_OR_MODEL is an artifact directory (its recorded recipe — model, pipeline, calibration\n"
                   "data — is replayed) or a model with the same options as `compile`. The ONNX model is\n"
                   "checked with onnx.checker and run in ONNX Runtime; its agreement with accelc's integer\n"
                   "reference is printed and written to OUT.report.json.\n\n"
                   "examples:\n"
                   "  accelc export build/lenet-int8 --format onnx -o lenet-int8.onnx\n"
                   "  accelc export --entry examples/models.py:lenet --weights examples/weights/lenet.pt \\\n"
                   "      --input-shape 1x1x28x28 --pipeline fuse,quantize --calib digits -o lenet-int8.onnx")
    add_model_options(p)
    add(p, "--format", default="onnx", choices=["onnx"], help="export format (default: onnx)")
    add(p, "--output", "-o", metavar="FILE", help="file to write (required)")
    add(p, "--pipeline", "-p", metavar="PIPELINE", help="passes to run first (MODEL only; default: fuse,quantize)")
    add(p, "--calib", metavar="DATA", help="calibration data for quantize (MODEL only)")
    add(p, "--samples", type=int, default=64, help="samples for the agreement check (default: 64)")
    add(p, "--json", action="store_true", default=False, help="print the agreement report as JSON")
    return p


def run(args) -> int:
    from accelc.errors import UsageError
    from accelc.export.service import export_model

    if not args.output:
        raise UsageError("export needs an output file", hint="pass -o model.onnx")
    result = export_model(args.model, entry=args.entry, weights=args.weights, trust_pickle=args.trust_pickle,
                          input_shapes=split_list(args.input_shape) or None, pipeline=args.pipeline, calib=args.calib,
                          output=Path(args.output), samples=args.samples, quiet=args.quiet)
    if args.json:
        print_json(result)
    elif not args.quiet:
        a = result["agreement"]
        print(f"wrote {args.output} (ONNX opset {result['opset']}, QDQ; onnx.checker passed)")
        print(f"ONNX Runtime {a['onnxruntime']} vs accelc's integer reference, per layer on the same int8 inputs: "
              f"{a['verdict']}")
        for name, rec in a["per_layer"].items():
            print(f"  {name:<16} {rec['kind']:<11} {rec['differing']:>6}/{rec['elements']:<7} int8 values differ, "
                  f"max {rec['max_lsb']} LSB")
        e2e = a["end_to_end"]
        for name, rec in e2e["int8_tensors"].items():
            print(f"  end to end, {name}: {rec['differing']}/{rec['elements']} differ, max {rec['max_lsb']} LSB")
        fo = e2e["final_outputs"]
        if fo.get("top1_agreement") is not None:
            print(f"  end to end, final outputs: top-1 agreement {fo['top1_agreement']:.4f}")
        if "artifact_match" in result:
            print(f"  replayed recipe vs the artifact: max |Δ| {result['artifact_match'].get('max_abs_err', 'n/a')}")
        if "why" in a:
            print(f"  why: {a['why']}")
        print(f"report: {args.output}.report.json")
    return 0

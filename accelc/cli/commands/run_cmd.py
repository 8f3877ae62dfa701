"""``accelc run DIR --input x.npy [--output y.npy]``"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from accelc.cli.common import add, new_parser, print_json

NAME = "run"


def add_parser(sub):
    p = new_parser(sub, NAME, "run a compiled artifact on inputs",
                   "Run the artifact in DIR. --input takes .npy (one input) or .npz ('inputs', or 'inputs_0',\n"
                   "'inputs_1', … for several; optional 'labels'), or 'digits'. An array may hold exactly the\n"
                   "compiled input shape or N samples, which are batched through the artifact. With labels,\n"
                   "top-1 accuracy is printed.\n\n"
                   "examples:\n"
                   "  accelc run build/lenet --input x.npy --output y.npy\n"
                   "  accelc run build/lenet --input digits --benchmark 100")
    p.add_argument("artifact", metavar="DIR", help="artifact directory written by accelc compile")
    add(p, "--input", "-i", action="append", metavar="FILE", help=".npy/.npz input file (repeat per input) or 'digits'")
    add(p, "--output", "-o", metavar="FILE", help="write outputs to FILE (.npy for one output, else .npz)")
    add(p, "--benchmark", type=int, metavar="N", default=0, help="also time N runs on the first batch")
    add(p, "--json", action="store_true", default=False, help="print a JSON summary")
    return p


def _read_inputs(paths: list[str], specs: list[dict]):
    from accelc.compiler.data import load_dataset
    from accelc.compiler.inputs import DTYPES, InputSpec
    from accelc.errors import DataError, UsageError

    if not paths:
        raise UsageError("run needs --input", hint="pass --input x.npy (an .npz for several inputs), or 'digits'")
    if len(paths) == 1 and (paths[0] == "digits" or paths[0].startswith("digits:") or paths[0].endswith(".npz")):
        input_specs = [InputSpec(tuple(s["shape"]), DTYPES[s["dtype"]]) for s in specs]
        if paths[0].endswith(".npz"):
            with np.load(paths[0], allow_pickle=False) as z:
                keys = ["inputs"] if len(specs) == 1 and "inputs" in z.files else [f"inputs_{i}" for i in range(len(specs))]
                missing = [k for k in keys if k not in z.files]
                if missing:
                    raise DataError(f"--input {paths[0]}: no array {', '.join(missing)} (found {', '.join(z.files)})")
                arrays = [z[k] for k in keys]
                labels = z["labels"] if "labels" in z.files else None
            return arrays, labels, paths[0]
        ds = load_dataset(paths[0], input_specs, option="--input", role="eval")
        return list(ds.inputs), ds.labels, ds.source
    arrays = []
    for path in paths:
        if not Path(path).is_file():
            raise DataError(f"--input {path}: no such file")
        try:
            arrays.append(np.load(path, allow_pickle=False))
        except ValueError as e:
            raise DataError(f"--input {path}: not a readable .npy file ({e})") from None
    return arrays, None, ", ".join(paths)


def run(args) -> int:
    from accelc.api import load
    from accelc.runtime import as_dataset, measure, run_dataset

    compiled = load(args.artifact)
    specs = compiled.manifest["inputs"]
    arrays, labels, source = _read_inputs(args.input or [], specs)
    ds, batched = as_dataset(arrays, [s["shape"] for s in specs], labels, source)
    runner = compiled.runner
    batch = specs[0]["shape"][0] if specs[0]["shape"] else 1
    if batched:
        from accelc.compiler.data import check_fits
        from accelc.compiler.inputs import DTYPES, InputSpec

        check_fits(ds, [InputSpec(tuple(s["shape"]), DTYPES[s["dtype"]]) for s in specs], "--input")
        outputs = run_dataset(runner.run, ds, batch, quiet=args.quiet)
    else:
        outputs = runner.run(list(ds.inputs))
    summary = {"artifact": str(args.artifact), "target": compiled.manifest["target"], "input": source,
               "samples": len(ds) if batched else batch,
               "outputs": [{"name": o["name"], "shape": list(a.shape)} for o, a in zip(compiled.manifest["outputs"], outputs)]}
    if labels is not None and outputs[0].ndim >= 2:
        n = min(len(labels), outputs[0].shape[0])
        summary["top1_accuracy"] = float((outputs[0][:n].argmax(-1) == labels[:n]).mean())
    if args.output:
        _write_outputs(Path(args.output), compiled.manifest["outputs"], outputs)
        summary["written"] = args.output
    stats = getattr(runner, "last_stats", lambda: {})()
    if stats:
        cycles = sum(st["total_cycles"] for st in stats.values())
        clock = next(iter(stats.values()))["clock_mhz"]
        summary["fpga"] = {"segments": stats, "total_cycles_last_batch": cycles,
                           "accelerator_latency_ms_last_batch": cycles / (clock * 1e3)}
    if args.benchmark:
        first = [t.numpy() for t in next(ds.batches(batch, pad=True))]
        summary["latency"] = measure(lambda: runner.run(first), runs=args.benchmark).to_dict()
    if args.json:
        print_json(summary)
    elif not args.quiet:
        _print_summary(summary, outputs)
    return 0


def _write_outputs(path: Path, specs: list[dict], outputs: list[np.ndarray]) -> None:
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix or ".npy")
    os.close(fd)
    try:
        if len(outputs) == 1 and path.suffix != ".npz":
            np.save(tmp, outputs[0])
        else:
            np.savez(tmp, **{s["name"]: o for s, o in zip(specs, outputs)})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _print_summary(summary: dict, outputs) -> None:
    print(f"ran {summary['artifact']} ({summary['target']}) on {summary['input']}: {summary['samples']} sample(s)")
    for o in summary["outputs"]:
        print(f"  {o['name']}: shape {tuple(o['shape'])}")
    if len(outputs) == 1 and outputs[0].ndim == 2 and outputs[0].shape[0] <= 8:
        print(f"  argmax: {outputs[0].argmax(-1).tolist()}")
    if "top1_accuracy" in summary:
        print(f"  top-1 accuracy: {summary['top1_accuracy'] * 100:.2f}%")
    if "fpga" in summary:
        f = summary["fpga"]
        print(f"  fpga simulator (last batch): {f['total_cycles_last_batch']:,} cycles = "
              f"{f['accelerator_latency_ms_last_batch']:.3f} ms on the accelerator")
    if "latency" in summary:
        lat = summary["latency"]
        print(f"  latency: median {lat['median_ms']:.3f} ms (p10 {lat['p10_ms']:.3f}, p90 {lat['p90_ms']:.3f}) "
              f"over {lat['runs']} runs")
    if "written" in summary:
        print(f"  outputs written to {summary['written']}")

"""accelc against its peers on this machine: ``make bench`` → benchmarks/RESULTS.md.

Models (examples/models.py, random weights; LeNet at 1×28×28, the others at 3×224×224),
batch 1 and 8. For each: PyTorch eager, torch.compile (inductor), ONNX Runtime fp32, ONNX
Runtime int8 (static QDQ, per-channel weights, ``quantize_static`` with the same calibration
data accelc uses), TVM untuned (the Relax frontend and ``tvm.compile``'s default pipeline for
the same LLVM target: TVM as a user gets it without accelc), accelc fp32 untuned (its
default schedules, no tuning), accelc fp32 tuned and accelc int8 tuned (MetaSchedule, ``--tune TRIALS --tune-budget S``; operators the budget did not
reach keep accelc's default schedules).

Every number is the median wall-clock time of ``runs`` calls after ``warmup`` calls, numpy
(or torch) in and out, measured in a fresh subprocess per (engine, model, batch): TVM's
thread pool spins after each call and would slow a framework measured in the same process.

    python benchmarks/bench.py                       # the default: 64 trials, 240 s per tuned build
    python benchmarks/bench.py --trials 256 --budget 1800    # "full": ~3 h on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PEERS = ["eager", "inductor", "ort_fp32", "ort_int8", "tvm_untuned"]
OURS = ["accelc_fp32_default", "accelc_fp32", "accelc_int8_default", "accelc_int8"]
LABELS = {"eager": "PyTorch eager", "inductor": "torch.compile", "ort_fp32": "ORT fp32", "ort_int8": "ORT int8 QDQ",
          "tvm_untuned": "TVM untuned", "accelc_fp32_default": "accelc fp32 untuned", "accelc_int8_default": "accelc int8 untuned", "accelc_fp32": "accelc fp32 tuned", "accelc_int8": "accelc int8 tuned"}
INT8 = "fuse,quantize(sensitivity=false)"
PAUSE_S = 2.0  # between an engine's set-up (compile, export) and its measurement
MIN_SECONDS = 2.0  # each engine is measured for at least this long


# ----------------------------------------------------------------------------- worker side
def _model(name: str):
    import torch

    from examples import models

    torch.manual_seed(0)
    m = getattr(models, name)()
    return m.eval()


def _shape(name: str, batch: int):
    return (batch, 1, 28, 28) if name == "lenet" else (batch, 3, 224, 224)


def _calib(name: str, path: Path):
    import numpy as np

    shape = _shape(name, 1)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, inputs=np.random.default_rng(0).standard_normal((32, *shape[1:])).astype(np.float32))
    return path


def _onnx(model, x, path: Path):
    import torch

    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                              opset_version=17)
    return path


def worker(engine: str, name: str, batch: int, args) -> dict:
    import numpy as np
    import torch

    from accelc.runtime import measure as _measure

    def measure(fn, runs, warmup):
        """Fewer runs for slow engines (untuned TVM takes seconds per call): ≤ ~30 s each. After
        a pause, and over at least :data:`MIN_SECONDS`: for a second or two after a compile
        this VM runs everything slower (LeNet b1 measured at once: 0.12–0.18 ms, from 2 s on:
        0.065–0.07 ms, in the same process), and 30 runs of a 0.1-ms model last 3 ms."""
        t = time.perf_counter()
        fn()
        first = time.perf_counter() - t
        time.sleep(PAUSE_S)
        runs = max(3, min(runs, int(30 / max(first, 1e-6))))
        return _measure(fn, runs=runs, warmup=min(warmup, max(1, runs // 3)), min_seconds=MIN_SECONDS)

    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    os.environ["TVM_NUM_THREADS"] = str(threads)  # before TVM's pool exists (it defaults to half the vCPUs)
    model = _model(name)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal(_shape(name, batch)).astype(np.float32))
    xn = x.numpy()
    work = Path(args.work)
    calib = _calib(name, work / f"calib_{name}.npz")
    out: dict = {}
    if engine == "eager":
        with torch.no_grad():
            fn = lambda: model(x)  # noqa: E731
            lat = measure(fn, runs=args.runs, warmup=args.warmup)
    elif engine == "inductor":
        t = time.time()
        cm = torch.compile(model)
        with torch.no_grad():
            cm(x)
            out["compile_s"] = round(time.time() - t, 1)
            lat = measure(lambda: cm(x), runs=args.runs, warmup=args.warmup)
    elif engine in ("ort_fp32", "ort_int8"):
        import onnxruntime as ort

        path = _onnx(model, x, work / f"{name}_b{batch}.onnx")
        if engine == "ort_int8":
            path = _ort_int8(path, calib, work / f"{name}_b{batch}_int8.onnx")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        lat = measure(lambda: sess.run(None, {"x": xn}), runs=args.runs, warmup=args.warmup)
    elif engine == "tvm_untuned":
        lat = _plain_tvm(model, x, threads, measure, args)
    else:
        import accelc

        tune = not engine.endswith("_default")  # untuned: accelc's default schedules only
        int8 = engine.startswith("accelc_int8")
        t = time.time()
        compiled = accelc.compile(model, (x,), pipeline=INT8 if int8 else "fuse",
                                  calib=str(calib) if int8 else None, verify_each=False,
                                  tune=args.trials if tune else 0, tuning_db=args.tuning_db if tune else None,
                                  tune_budget=args.budget if tune else None, quiet=True)
        out["compile_s"] = round(time.time() - t, 1)
        report = compiled.report
        out["artifact_max_abs_err_vs_final_graph"] = report["artifact_check"]["vs_final_graph"]["max_abs_err"]
        tuning = report.get("tuning")
        if tuning:
            out["tuning"] = {k: tuning[k] for k in ("seconds", "tasks_total", "tasks_tuned", "tasks_kept_default", "tasks_default_only", "db_hits", "new_trials",
                                                     "budget_reached", "trials_per_task", "budget_s")}
        runner = compiled.runner
        lat = measure(lambda: runner.run([xn]), runs=args.runs, warmup=args.warmup)
    out.update(lat.to_dict())
    return out


def _plain_tvm(model, x, threads: int, measure, args):
    """TVM as a user gets it without accelc: the Relax frontend, ``tvm.compile``'s default
    pipeline for the same LLVM target, no schedules."""
    import torch
    import tvm
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    from accelc.targets.tvm_backend.build import host_cpu

    with torch.no_grad():
        mod = from_exported_program(torch.export.export(model, (x,)))
    target = tvm.target.Target({"kind": "llvm", "mcpu": host_cpu(), "num-cores": threads})
    vm = relax.VirtualMachine(tvm.compile(mod, target=target), tvm.cpu())
    arg = tvm.runtime.tensor(x.numpy())
    return measure(lambda: vm["main"](arg), runs=args.runs, warmup=args.warmup)


def _ort_int8(fp32: Path, calib: Path, dst: Path) -> Path:
    """Static QDQ quantization, per-channel weights, the calibration set accelc uses."""
    if dst.is_file():
        return dst
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    data = np.load(calib)["inputs"]
    batch = int(fp32.stem.split("_b")[-1])

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": data[i:i + batch]} for i in range(0, len(data) - batch + 1, batch)])

        def get_next(self):
            return next(self.it, None)

    pre = dst.with_name(dst.stem + "_pre.onnx")
    quant_pre_process(str(fp32), str(pre))
    quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return dst


# ----------------------------------------------------------------------------- driver side
def flops(name: str, batch: int) -> int:
    import torch

    from accelc.compiler.analysis.cost import graph_cost
    from accelc.compiler.capture import capture

    x = torch.zeros(_shape(name, batch))
    return int(graph_cost(capture(_model(name), (x,)), (x,)).totals()["flops"])


def machine() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    info = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    info = {k.strip(): v.strip() for k, v in info.items()}
    flags = info.get("Flags", "").split()
    import numpy
    import onnxruntime
    import torch
    import tvm_ffi

    try:
        import importlib.metadata as md

        tvm_version = md.version("apache-tvm")
    except Exception:  # noqa: BLE001
        tvm_version = "?"
    return {"cpu": info.get("Model name"), "cpus": int(info.get("CPU(s)", "0")),
            "threads_per_core": info.get("Thread(s) per core"), "mhz_bogomips_half": float(info.get("BogoMIPS", 0)) / 2,
            "isa": [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags],
            "l2": info.get("L2 cache"), "hypervisor": info.get("Hypervisor vendor"), "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "tvm": tvm_version,
            "tvm_ffi": tvm_ffi.__version__, "numpy": numpy.__version__}


def run_one(engine, name, batch, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", engine, name, str(batch), "--runs", str(args.runs), "--warmup",
           str(args.warmup), "--trials", str(args.trials), "--budget", str(args.budget), "--work", args.work,
           "--tuning-db", args.tuning_db]
    t = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, CI="1"))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        err = (proc.stderr.strip().splitlines() or ["?"])[-1]
        print(f"  {engine:12s} {name} b{batch}: FAILED ({err})", flush=True)
        return {"error": err[:300]}
    res = json.loads(lines[-1])
    res["wall_s"] = round(time.time() - t, 1)
    print(f"  {engine:12s} {name} b{batch}: {res['median_ms']:.3f} ms ({res['wall_s']} s)", flush=True)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="lenet,resnet18,mobilenet_v2")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--engines", default=",".join(PEERS + OURS))
    p.add_argument("--trials", type=int, default=64, help="MetaSchedule trials per task (default 64)")
    p.add_argument("--budget", type=float, default=240, help="tuning seconds per tuned build (default 240)")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--tuning-db", default=str(ROOT / "benchmarks" / ".tuning-db"))
    p.add_argument("--work", default=str(ROOT / "benchmarks" / ".work"))
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results.json"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    p.add_argument("--worker", nargs=3, metavar=("ENGINE", "MODEL", "BATCH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        engine, name, batch = args.worker
        print(json.dumps(worker(engine, name, int(batch), args)))
        return 0
    start = time.time()
    results = json.loads(Path(args.results).read_text()) if Path(args.results).is_file() else {}
    results.setdefault("runs", {})
    results["machine"] = machine()
    results["settings"] = {"trials": args.trials, "budget_s": args.budget, "runs": args.runs, "warmup": args.warmup,
                           "min_seconds": MIN_SECONDS, "pause_s": PAUSE_S}
    for name in args.models.split(","):
        for batch in map(int, args.batches.split(",")):
            key = f"{name}/b{batch}"
            entry = results["runs"].setdefault(key, {"flops": flops(name, batch)})
            for engine in args.engines.split(","):
                entry[engine] = run_one(engine, name, batch, args)
                Path(args.results).write_text(json.dumps(results, indent=1, sort_keys=True))
    results["bench_wall_s"] = round(time.time() - start, 1)
    Path(args.results).write_text(json.dumps(results, indent=1, sort_keys=True))
    from benchmarks.bench_report import write_markdown

    write_markdown(results, Path(args.out))
    print(f"wrote {args.out} in {results['bench_wall_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())

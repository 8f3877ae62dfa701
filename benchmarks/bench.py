"""accelc against its peers on this machine: ``make bench`` → benchmarks/RESULTS.md.

Models (examples/models.py, random weights; LeNet at 1×28×28, the others at 3×224×224),
batch 1 and 8. For each: PyTorch eager, torch.compile (inductor), ONNX Runtime fp32, ONNX
Runtime int8 (static QDQ, per-channel weights, ``quantize_static`` with the same calibration
data accelc uses), TVM untuned (the Relax frontend and ``tvm.compile``'s default pipeline for
the same LLVM target: TVM as a user gets it without accelc), accelc fp32 untuned (its
default schedules, no tuning), accelc fp32 tuned and accelc int8 tuned (MetaSchedule, ``--tune TRIALS --tune-budget S``; operators the budget did not
reach keep accelc's default schedules).

Every number is the median wall-clock time of one call, numpy (or torch) in and out, over
calls taken in turns: each engine of a (model, batch) is set up in its own process (a TVM
thread pool or ORT's spinning threads would slow a framework measured in the same process),
all stay alive, and then :data:`ROUNDS` rounds give each engine a slice of :data:`SLICE_S`
seconds in turn (the order rotating). This VM's speed drifts by up to 1.6× over minutes;
measured one after the other, engines got different phases of it (ResNet-18 b1 ORT 14.0 ms
in one run, 16.9 in the next), in turns they share them.

    python benchmarks/bench.py                       # the default: 64 trials, 240 s per tuned build
    python benchmarks/bench.py --trials 256 --budget 1800    # "full": ~3 h on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
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
PAUSE_S = 2.0  # after the last set-up (compile, export), before the first round
ROUNDS = 10  # turns per engine
SLICE_S = 0.5  # seconds of calls per turn (at least one call)
GAP_S = 0.2  # idle before each turn: the previous engine's threads stop spinning


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


def setup(engine: str, name: str, batch: int, args):
    """``(fn, info)``: the engine ready to run ``fn()`` (one call of the model at this batch)
    and what its set-up reported (compile time, tuning, the artifact's error)."""
    import numpy as np
    import torch

    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    os.environ["TVM_NUM_THREADS"] = str(threads)  # before TVM's pool exists (it defaults to half the vCPUs)
    model = _model(name)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal(_shape(name, batch)).astype(np.float32))
    xn = x.numpy()
    work = Path(args.work)
    calib = _calib(name, work / f"calib_{name}.npz")
    info: dict = {}
    t = time.time()
    if engine == "eager":
        def fn():
            with torch.no_grad():
                return model(x)
    elif engine == "inductor":
        cm = torch.compile(model)

        def fn():
            with torch.no_grad():
                return cm(x)
        fn()
        info["compile_s"] = round(time.time() - t, 1)
    elif engine in ("ort_fp32", "ort_int8"):
        import onnxruntime as ort

        path = _onnx(model, x, work / f"{name}_b{batch}.onnx")
        if engine == "ort_int8":
            path = _ort_int8(path, calib, work / f"{name}_b{batch}_int8.onnx")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        fn = lambda: sess.run(None, {"x": xn})  # noqa: E731
    elif engine == "tvm_untuned":
        fn = _plain_tvm(model, x, threads)
        info["compile_s"] = round(time.time() - t, 1)
    else:
        import accelc

        tune = not engine.endswith("_default")  # untuned: accelc's default schedules only
        int8 = engine.startswith("accelc_int8")
        compiled = accelc.compile(model, (x,), pipeline=INT8 if int8 else "fuse",
                                  calib=str(calib) if int8 else None, verify_each=False,
                                  tune=args.trials if tune else 0, tuning_db=args.tuning_db if tune else None,
                                  tune_budget=args.budget if tune else None, quiet=True)
        info["compile_s"] = round(time.time() - t, 1)
        report = compiled.report
        info["artifact_max_abs_err_vs_final_graph"] = report["artifact_check"]["vs_final_graph"]["max_abs_err"]
        tuning = report.get("tuning")
        if tuning:
            info["tuning"] = {k: tuning[k] for k in ("seconds", "tasks_total", "tasks_tuned", "tasks_kept_default", "tasks_default_only", "db_hits", "new_trials",
                                                      "budget_reached", "trials_per_task", "budget_s")}
        runner = compiled.runner
        fn = lambda: runner.run([xn])  # noqa: E731
    return fn, info


def serve(engine: str, name: str, batch: int, args) -> None:
    """The worker process: set up, warm up, report ``{"ready": ...}``; then for each
    ``measure S`` line on stdin, call the model for at least S seconds (at least once) and
    report the calls' times in ms; stop at ``quit`` or the end of stdin."""
    fn, info = setup(engine, name, batch, args)
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    for _ in range(max(0, min(args.warmup - 1, int(10 / max(first, 1e-6))))):  # ≤ ~10 s: untuned TVM takes seconds per call
        fn()
    print(json.dumps({"ready": True, **info}), flush=True)
    for line in sys.stdin:
        if not line.startswith("measure"):
            break
        seconds = float(line.split()[1])
        times = []
        start = time.perf_counter()
        while not times or time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        print(json.dumps({"times_ms": times}), flush=True)


def _plain_tvm(model, x, threads: int):
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
    return lambda: vm["main"](arg)


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
    return {"cpu": info.get("Model name"), "vendor": info.get("Vendor ID"), "cpus": int(info.get("CPU(s)", "0")),
            "threads_per_core": info.get("Thread(s) per core"), "mhz_bogomips_half": float(info.get("BogoMIPS", 0)) / 2,
            "isa": [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags],
            "l2": info.get("L2 cache"), "hypervisor": info.get("Hypervisor vendor"), "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "tvm": tvm_version,
            "tvm_ffi": tvm_ffi.__version__, "numpy": numpy.__version__}


class Worker:
    """One engine's serving process (:func:`serve`), set up and ready to measure."""

    def __init__(self, engine: str, name: str, batch: int, args):
        import tempfile

        self.engine, self.label = engine, f"{engine:12s} {name} b{batch}"
        cmd = [sys.executable, __file__, "--worker", engine, name, str(batch), "--warmup", str(args.warmup),
               "--trials", str(args.trials), "--budget", str(args.budget), "--work", args.work,
               "--tuning-db", args.tuning_db]
        self.stderr = tempfile.TemporaryFile(mode="w+")
        t = time.time()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                     text=True, cwd=ROOT, env=dict(os.environ, CI="1"))
        self.info = self._reply()
        if self.info is not None:
            self.info["setup_s"] = round(time.time() - t, 1)
        self.times: list[float] = []

    def _reply(self) -> dict | None:
        for line in self.proc.stdout:
            if line.startswith("{"):
                return json.loads(line)
        return None

    @property
    def error(self) -> str | None:
        if self.info is not None:
            return None
        self.proc.wait()
        self.stderr.seek(0)
        return ((self.stderr.read().strip().splitlines() or ["?"])[-1])[:300]

    def measure(self, seconds: float) -> None:
        if self.info is None:
            return
        try:
            self.proc.stdin.write(f"measure {seconds}\n")
            self.proc.stdin.flush()
            reply = self._reply()
        except OSError:
            reply = None
        if reply is None:
            self.info = None
            return
        self.times += reply["times_ms"]

    def result(self) -> dict:
        if self.info is None:
            print(f"  {self.label}: FAILED ({self.error})", flush=True)
            return {"error": self.error}
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait()
        times = sorted(self.times)
        q = lambda p: times[min(len(times) - 1, int(p * len(times)))]  # noqa: E731
        res = {**{k: v for k, v in self.info.items() if k != "ready"},
               "median_ms": round(statistics.median(times), 4), "p10_ms": round(q(0.1), 4),
               "p90_ms": round(q(0.9), 4), "runs": len(times)}
        print(f"  {self.label}: {res['median_ms']:.3f} ms ({len(times)} calls)", flush=True)
        return res


def run_interleaved(engines: list[str], name: str, batch: int, args) -> dict:
    """Set every engine up (one after the other: compiles and tuning want the whole machine),
    then measure them in turns (see the module docstring); ``{engine: result}``."""
    workers = []
    for engine in engines:
        w = Worker(engine, name, batch, args)
        print(f"  {w.label}: " + (f"ready ({w.info['setup_s']} s)" if w.info is not None else "set-up failed"),
              flush=True)
        workers.append(w)
    time.sleep(PAUSE_S)
    for r in range(args.rounds):
        for w in workers[r % len(workers):] + workers[:r % len(workers)]:
            time.sleep(GAP_S)
            w.measure(args.slice)
    return {w.engine: w.result() for w in workers}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="lenet,resnet18,mobilenet_v2")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--engines", default=",".join(PEERS + OURS))
    p.add_argument("--trials", type=int, default=64, help="MetaSchedule trials per task (default 64)")
    p.add_argument("--budget", type=float, default=240, help="tuning seconds per tuned build (default 240)")
    p.add_argument("--rounds", type=int, default=ROUNDS, help=f"turns per engine (default {ROUNDS})")
    p.add_argument("--slice", type=float, default=SLICE_S, help=f"seconds per turn (default {SLICE_S})")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--tuning-db", default=str(ROOT / "benchmarks" / ".tuning-db"))
    p.add_argument("--work", default=str(ROOT / "benchmarks" / ".work"))
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results.json"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    p.add_argument("--worker", nargs=3, metavar=("ENGINE", "MODEL", "BATCH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = [e for e in args.engines.split(",") if e not in LABELS]
    if unknown:
        p.error(f"unknown engine(s) {', '.join(unknown)}; choose from {', '.join(LABELS)}")
    if args.worker:
        engine, name, batch = args.worker
        serve(engine, name, int(batch), args)
        return 0
    start = time.time()
    results = json.loads(Path(args.results).read_text()) if Path(args.results).is_file() else {}
    results.setdefault("runs", {})
    results["machine"] = machine()
    results["settings"] = {"trials": args.trials, "budget_s": args.budget, "rounds": args.rounds, "slice_s": args.slice,
                           "warmup": args.warmup, "pause_s": PAUSE_S, "gap_s": GAP_S, "interleaved": True}
    for name in args.models.split(","):
        for batch in map(int, args.batches.split(",")):
            key = f"{name}/b{batch}"
            entry = results["runs"].setdefault(key, {"flops": flops(name, batch)})
            entry.update(run_interleaved(args.engines.split(","), name, batch, args))
            Path(args.results).write_text(json.dumps(results, indent=1, sort_keys=True))
    results["bench_wall_s"] = round(time.time() - start, 1)
    Path(args.results).write_text(json.dumps(results, indent=1, sort_keys=True))
    from benchmarks.bench_report import write_markdown

    write_markdown(results, Path(args.out))
    print(f"wrote {args.out} in {results['bench_wall_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())

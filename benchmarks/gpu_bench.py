"""The GPU half of benchmarks/gpu.sh: runs on the machine with the GPU, without the TVM wheel.

For every artifact that ``gpu_build.py`` wrote (``<model>_b<batch>``): the accelc cuda artifact
through the runtime-only runner (tvm_ffi + TVM's runtime libraries; kernels compiled by nvcc
for the local GPU when the library is loaded), then PyTorch eager and torch.compile (inductor)
on the same model, batch and GPU. Every number is the median of ``--runs`` calls after
``--warmup`` calls, each followed by a device synchronisation. The LeNet and MobileNetV2
artifacts keep their real weights, so their outputs are also compared with PyTorch's on the
GPU; ResNet-18 runs on seeded random weights of the artifact's shapes (timing only).

    python3 benchmarks/gpu_bench.py --carry .gpucarry --out results.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def bench_one(art: Path, lite, models, args) -> dict:
    import numpy as np
    import torch

    name, batch = art.name.rsplit("_b", 1)
    shape = (int(batch), 1, 28, 28) if name == "lenet" else (int(batch), 3, 224, 224)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    row: dict = {}

    def median_ms(fn) -> float:
        return lite.timed(fn, sync=torch.cuda.synchronize, warmup=args.warmup, runs=args.runs)["median_ms"]

    t0 = time.perf_counter()
    runner = lite.LiteRunner(art, args.carry / "libs", device="cuda")
    y = runner(x)[0]
    row["accelc_load_s"] = round(time.perf_counter() - t0, 2)  # includes nvcc for the local GPU
    row["accelc_cuda"] = runner.bench(x, warmup=args.warmup, runs=args.runs)["median_ms"]
    try:  # which kernels dominate: where the next GPU work should go
        row["accelc_profile"] = [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}
                                 for r in runner.profile(x, runs=5)[:15]]
    except Exception as e:  # noqa: BLE001 - the timings above stand without it
        row["accelc_profile_error"] = f"{type(e).__name__}: {str(e)[:200]}"
    torch.manual_seed(0)
    model = getattr(models, name)().eval().cuda()
    xt = torch.from_numpy(x).cuda()
    with torch.no_grad():
        row["eager"] = median_ms(lambda: model(xt))
        if (art / "params.safetensors").is_file():  # real weights: the outputs must agree
            row["max_abs_err_vs_eager"] = float(np.abs(model(xt).cpu().numpy() - y).max())
        if time.perf_counter() - args.t0 > args.deadline:
            row["inductor_error"] = "skipped: deadline"
            return row
        t0 = time.perf_counter()
        compiled = torch.compile(model)
        compiled(xt)
        row["inductor_compile_s"] = round(time.perf_counter() - t0, 1)
        row["inductor"] = median_ms(lambda: compiled(xt))
    return row


def train_check(out: Path, steps: int = 60, timeout: float = 90.0) -> dict:
    """``accelc train`` of LeNet on digits on this GPU (one process: torch.distributed with NCCL),
    then the same job on the CPU (gloo); the per-step losses of the two runs are compared."""
    import os
    import subprocess

    runs = {}
    for where, env in (("cuda", {}), ("cpu", {"CUDA_VISIBLE_DEVICES": ""})):
        metrics = out / f"train_{where}.jsonl"
        metrics.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "accelc", "train", "-q", "--entry", "examples/models.py:lenet", "--train", "digits",
               "--input-shape", "1x1x28x28", "--steps", str(steps), "--microbatches", "2", "--lr", "0.05",
               "--metrics", str(metrics), "--checkpoint", str(Path("/tmp") / f"accelc_lenet_{where}.pt")]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **env)
        t0 = time.perf_counter()
        try:
            done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            runs[where] = {"error": f"timed out after {timeout:.0f} s"}
            continue
        if done.returncode != 0:
            runs[where] = {"error": (done.stderr or done.stdout)[-600:]}
            continue
        records = [json.loads(line) for line in metrics.read_text().splitlines()]
        begin = next(r for r in records if r.get("event") == "start")
        steps_ = [r for r in records if "step" in r]
        runs[where] = {"backend": begin.get("backend"), "device": begin.get("device"), "wall_s": round(time.perf_counter() - t0, 1),
                       "losses": [r["loss"] for r in steps_],
                       "median_step_ms": sorted(r["seconds"] for r in steps_)[len(steps_) // 2] * 1e3}
    if all("losses" in r for r in runs.values()):
        a, b = runs["cuda"]["losses"], runs["cpu"]["losses"]
        runs["max_abs_loss_diff"] = max(abs(x - y) for x, y in zip(a, b))
        runs["final_loss"] = {"cuda": a[-1], "cpu": b[-1]}
    return runs


def _order(art: Path) -> tuple[int, int, str]:
    """Batch 1 of every model before batch 8, LeNet (the quickest, and the one checked against
    PyTorch) first: what a deadline cuts off is the least informative."""
    name, batch = art.name.rsplit("_b", 1)
    return int(batch), name != "lenet", name


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--carry", type=Path, default=ROOT / ".gpucarry")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--deadline", type=float, default=270.0,
                   help="seconds after which no further model is started (the device time is short)")
    args = p.parse_args()
    import torch

    lite = _module("lite_runner", ROOT / "accelc" / "targets" / "tvm_backend" / "lite_runner.py")
    models = _module("accelc_example_models", ROOT / "examples" / "models.py")
    props = torch.cuda.get_device_properties(0)
    results = {"gpu": {"name": props.name, "sms": props.multi_processor_count, "torch": torch.__version__,
                       "arch": lite.gpu_arch(), "runs": args.runs, "warmup": args.warmup}, "runs": {}}
    args.t0 = time.perf_counter()
    for art in sorted((args.carry / "artifacts").iterdir(), key=_order):
        name, batch = art.name.rsplit("_b", 1)
        key = f"{name}/b{batch}"
        if time.perf_counter() - args.t0 > args.deadline:
            results["runs"][key] = {"error": f"skipped: the {args.deadline:.0f} s deadline had passed"}
            print(key, "skipped (deadline)", flush=True)
            continue
        try:
            results["runs"][key] = bench_one(art, lite, models, args)
        except Exception as e:  # noqa: BLE001 - one failing model must not lose the others
            results["runs"][key] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        print(key, json.dumps(results["runs"][key]), flush=True)
        args.out.write_text(json.dumps(results, indent=1))
    results["training"] = train_check(args.out.parent)
    print("training", json.dumps({k: v for k, v in results["training"].items()}, default=str)[:2000], flush=True)
    args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

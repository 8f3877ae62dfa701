"""The GPU half of benchmarks/gpu.sh: runs on the machine with the GPU, without the TVM wheel.

For every artifact that ``gpu_build.py`` wrote (``<model>_b<batch>``): the accelc cuda artifact
through the runtime-only runner (tvm_ffi + TVM's runtime libraries; kernels compiled by nvcc
for the local GPU when the library is loaded), then PyTorch eager and torch.compile (inductor)
on the same model, batch and GPU. Every number is the median of ``--runs`` calls after
``--warmup`` calls, each followed by a device synchronisation. LeNet's artifact keeps its real
weights, so its outputs are also compared with PyTorch's on the GPU; the large models run on
seeded random weights of the artifact's shapes (timing only).

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
    torch.manual_seed(0)
    model = getattr(models, name)().eval().cuda()
    xt = torch.from_numpy(x).cuda()
    with torch.no_grad():
        row["eager"] = median_ms(lambda: model(xt))
        if (art / "params.safetensors").is_file():  # real weights: the outputs must agree
            row["max_abs_err_vs_eager"] = float(np.abs(model(xt).cpu().numpy() - y).max())
        t0 = time.perf_counter()
        compiled = torch.compile(model)
        compiled(xt)
        row["inductor_compile_s"] = round(time.perf_counter() - t0, 1)
        row["inductor"] = median_ms(lambda: compiled(xt))
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--carry", type=Path, default=ROOT / ".gpucarry")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--warmup", type=int, default=20)
    args = p.parse_args()
    import torch

    lite = _module("lite_runner", ROOT / "accelc" / "targets" / "tvm_backend" / "lite_runner.py")
    models = _module("accelc_example_models", ROOT / "examples" / "models.py")
    props = torch.cuda.get_device_properties(0)
    results = {"gpu": {"name": props.name, "sms": props.multi_processor_count, "torch": torch.__version__,
                       "arch": lite.gpu_arch(), "runs": args.runs, "warmup": args.warmup}, "runs": {}}
    for art in sorted((args.carry / "artifacts").iterdir()):
        name, batch = art.name.rsplit("_b", 1)
        key = f"{name}/b{batch}"
        try:
            results["runs"][key] = bench_one(art, lite, models, args)
        except Exception as e:  # noqa: BLE001 - one failing model must not lose the others
            results["runs"][key] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        print(key, json.dumps(results["runs"][key]), flush=True)
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

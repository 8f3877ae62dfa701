"""Build the cuda artifacts for benchmarks/gpu.sh on this machine (no GPU needed).

The libraries carry their kernels as CUDA C source (compiled on the GPU machine at load
time, see accelc/targets/tvm_backend/lite_runner.py). To stay within what can be carried
(64 MiB), ResNet-18 keeps only the *shapes* of its weights (``params_spec.json``): its timing
runs on seeded random weights of those shapes; LeNet and MobileNetV2 (14 MB) keep their real
weights so that their outputs can be compared with PyTorch's on the GPU.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="sm_90")
    p.add_argument("--out", default=str(ROOT / ".gpucarry" / "artifacts"))
    p.add_argument("--models", default="lenet,resnet18,mobilenet_v2")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--keep-params", default="lenet,mobilenet_v2")
    args = p.parse_args()
    import torch

    import accelc
    from accelc.targets.tvm_backend.lite_runner import read_safetensors
    from examples import models

    out = Path(args.out)
    for name in args.models.split(","):
        for batch in map(int, args.batches.split(",")):
            torch.manual_seed(0)
            model = getattr(models, name)().eval()
            shape = (batch, 1, 28, 28) if name == "lenet" else (batch, 3, 224, 224)
            dst = out / f"{name}_b{batch}"
            if dst.exists():
                shutil.rmtree(dst)
            accelc.compile(model, (torch.randn(shape),), target="cuda", target_options={"arch": args.arch},
                           verify_each=False, output=dst)
            (dst / "report.json").unlink()
            if name not in args.keep_params.split(","):
                params = read_safetensors(dst / "params.safetensors")
                spec = {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in params.items()}
                (dst / "params_spec.json").write_text(json.dumps(spec))
                (dst / "params.safetensors").unlink()
            size = sum(f.stat().st_size for f in dst.iterdir()) / 2**20
            print(f"{dst.name}: {size:.1f} MiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

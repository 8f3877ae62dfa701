"""`make demo`: compile the bundled digits LeNet for the CPU with accelc, run the artifact on
held-out digits, and compare it with PyTorch — accuracy and batch-1 latency.

Each step is the command a user would type; the script only runs them and prints a summary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "demo"
ACCELC = [sys.executable, "-m", "accelc"]


def step(title: str, args: list[str]) -> subprocess.CompletedProcess:
    print(f"\n$ accelc {' '.join(args)}", flush=True)
    proc = subprocess.run(ACCELC + args, cwd=ROOT, text=True, capture_output=True)
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        sys.exit(f"demo step failed: {title} (exit {proc.returncode})")
    return proc


def eager_latency_ms() -> float:
    import torch

    sys.path.insert(0, str(ROOT))
    from accelc.runtime import measure
    from examples.models import lenet

    model = lenet(pretrained=True)
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        return measure(lambda: model(x), runs=300, warmup=20).median_ms


def main() -> None:
    BUILD.mkdir(parents=True, exist_ok=True)
    artifact = BUILD / "lenet"
    print("accelc demo: LeNet trained on scikit-learn's digits (8x8 upsampled to 28x28), compiled for the CPU")
    step("compile", ["compile", "--entry", "examples/models.py:lenet", "--weights", "examples/weights/lenet.pt",
                     "--input-shape", "1x1x28x28", "--target", "cpu", "--eval", "digits", "-o", str(artifact)])
    run = step("run", ["run", str(artifact), "--input", "digits", "--benchmark", "300", "--json"])
    result = json.loads(run.stdout)
    report = json.loads((artifact / "report.json").read_text())
    acc = report["accuracy"]
    eager = eager_latency_ms()
    art = result["latency"]["median_ms"]
    print("\n=== demo summary ===")
    print(f"held-out digits ({acc['samples']} images), top-1:")
    print(f"  PyTorch eager     {acc['original'] * 100:6.2f}%")
    print(f"  accelc artifact   {result['top1_accuracy'] * 100:6.2f}%   (accelc run)")
    print("batch-1 latency, median:")
    print(f"  PyTorch eager     {eager:8.3f} ms")
    print(f"  accelc artifact   {art:8.3f} ms   ({eager / art:.2f}x eager; untuned TVM schedules, "
          f"see `accelc compile --tune`)" if not os.environ.get("ACCELC_DEMO_TUNED") else "")
    print(f"artifact: {artifact.relative_to(ROOT)}  (manifest.json, lib.so, params.safetensors, report.json)")


if __name__ == "__main__":
    main()

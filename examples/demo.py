"""`make demo`: compile the bundled digits LeNet for the CPU with accelc — fp32 and int8 — run
the artifacts on held-out digits, and compare with PyTorch: accuracy and batch-1 latency.

Each step is the command a user would type; the script runs them and prints a summary.
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
MODEL = ["--entry", "examples/models.py:lenet", "--weights", "examples/weights/lenet.pt", "--input-shape", "1x1x28x28"]
TUNE = os.environ.get("ACCELC_DEMO_TUNE", "")  # e.g. ACCELC_DEMO_TUNE=200 to tune the schedules first


def step(args: list[str]) -> subprocess.CompletedProcess:
    print(f"\n$ accelc {' '.join(args)}", flush=True)
    proc = subprocess.run(ACCELC + args, cwd=ROOT, text=True, capture_output=True)
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        sys.exit(f"demo step failed: accelc {args[0]} (exit {proc.returncode})")
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


def build_and_run(name: str, pipeline: str) -> tuple[dict, dict]:
    artifact = BUILD / name
    tune = ["--tune", TUNE] if TUNE else []
    step(["compile", *MODEL, "--target", "cpu", "--pipeline", pipeline, "--calib", "digits", "--eval", "digits",
          *tune, "-o", str(artifact)])
    run = json.loads(step(["run", str(artifact), "--input", "digits", "--benchmark", "300", "--json", "-q"]).stdout)
    return run, json.loads((artifact / "report.json").read_text())


def main() -> None:
    BUILD.mkdir(parents=True, exist_ok=True)
    print("accelc demo: LeNet trained on scikit-learn's digits (8x8 upsampled to 28x28), compiled for this CPU")
    fp32_run, fp32_report = build_and_run("lenet-fp32", "fuse")
    int8_run, int8_report = build_and_run("lenet-int8", "fuse,quantize(sensitivity=false)")
    eager = eager_latency_ms()
    acc = fp32_report["accuracy"]
    print("\n=== demo summary ===")
    print(f"held-out digits ({acc['samples']} images), top-1:")
    print(f"  PyTorch eager (fp32)       {acc['original'] * 100:6.2f}%")
    print(f"  accelc artifact, fp32      {fp32_run['top1_accuracy'] * 100:6.2f}%")
    print(f"  accelc artifact, int8      {int8_run['top1_accuracy'] * 100:6.2f}%   "
          f"(bit-identical to the int8 reference graph: max |Δ| "
          f"{int8_report['artifact_check']['vs_final_graph']['max_abs_err']})")
    print("batch-1 latency, median of 300 runs:")
    print(f"  PyTorch eager (fp32)       {eager:8.3f} ms")
    for label, run in (("fp32", fp32_run), ("int8", int8_run)):
        ms = run["latency"]["median_ms"]
        print(f"  accelc artifact, {label}      {ms:8.3f} ms   ({eager / ms:.2f}x eager)")
    weights = int8_report["graph"]
    print(f"weights: {weights['original']['param_bytes'] / 1e6:.2f} MB fp32 → {weights['final']['param_bytes'] / 1e6:.2f} MB int8")
    if not TUNE:
        print("schedules: accelc's defaults (untuned); ACCELC_DEMO_TUNE=N make demo tunes them with N MetaSchedule trials")
    print(f"artifacts: {BUILD.relative_to(ROOT)}/lenet-{{fp32,int8}} — inspect with `accelc report DIR`")


if __name__ == "__main__":
    main()

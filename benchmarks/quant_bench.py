"""int8 accuracy benchmark: accelc's quantize pass vs ONNX Runtime static quantization and
PyTorch PT2E (X86InductorQuantizer), on the digits-trained examples.

Same calibration data for every tool (digits:calib, 256 images) and the same held-out test
set (digits:test, 359 images). accelc numbers are the compiled cpu artifacts' accuracy
(bit-identical to the quantized graph). Writes benchmarks/results/quantization.md.

    .venv/bin/python benchmarks/quant_bench.py          # needs onnxruntime and torchao (make bench installs them)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import accelc  # noqa: E402
from accelc.compiler.capture import capture  # noqa: E402
from accelc.compiler.context import CompileContext  # noqa: E402
from accelc.compiler.pass_manager import PassManager  # noqa: E402
from accelc.compiler.pipeline import Pipeline  # noqa: E402
from accelc.datasets import load_digits  # noqa: E402
from accelc.export.onnx_qdq import export_onnx  # noqa: E402
from examples.models import MODELS  # noqa: E402

VARIANTS = {
    "accelc int8 (default: fixed, minmax, per-channel)": "fuse,quantize(sensitivity=false)",
    "accelc int8 + CLE": "fuse,quantize(cle=true,sensitivity=false)",
    "accelc int8 + bias correction": "fuse,quantize(bias_correction=true,sensitivity=false)",
    "accelc int8 + CLE + bias correction": "fuse,quantize(cle=true,bias_correction=true,sensitivity=false)",
    "accelc int8 entropy observer": "fuse,quantize(observer=entropy,sensitivity=false)",
    "accelc int8 pow2 (fpga scheme)": "fuse,quantize(scheme=pow2,sensitivity=false)",
}
MODEL_NAMES = ("lenet", "mobilenet_tiny", "resnet_tiny")


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(-1) == labels).mean())


def torch_eval(fn, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([fn(torch.from_numpy(x[i:i + 1])).numpy() for i in range(len(x))])


def ort_static_int8(model, calib_x, test_x, workdir: Path) -> float:
    from onnxruntime import InferenceSession
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    example = (torch.from_numpy(test_x[:1]),)
    gm = capture(model, example)
    gm = PassManager(Pipeline.parse("fuse"), verify_each=False).run(gm, CompileContext(example))
    fp32, int8 = workdir / "fp32.onnx", workdir / "int8.onnx"
    export_onnx(gm, example, str(fp32))
    name = "input_1" if "input_1" in [n.name for n in gm.graph.nodes] else next(n.name for n in gm.graph.nodes
                                                                                  if n.op == "placeholder")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter({name: calib_x[i:i + 1]} for i in range(len(calib_x)))

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    sess = InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {name: test_x[i:i + 1]})[0] for i in range(len(test_x))])


def pt2e_int8(model, calib_x, test_x) -> np.ndarray:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    example = (torch.from_numpy(test_x[:1]),)
    exported = torch.export.export(model, example).module()
    quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported, quantizer)
    torch_eval(prepared, calib_x)
    converted = convert_pt2e(prepared)
    return torch_eval(converted, test_x)


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    calib_x, _ = load_digits("calib")
    test_x, test_y = load_digits("test")
    rows = []
    for name in MODEL_NAMES:
        model = MODELS[name](pretrained=True).eval()
        fp32 = accuracy(torch_eval(model, test_x), test_y)
        results = {"fp32 (PyTorch eager)": fp32}
        for label, pipeline in VARIANTS.items():
            t0 = time.time()
            compiled = accelc.compile(model, (torch.from_numpy(test_x[:1]),), target="cpu", pipeline=pipeline,
                                      calib="digits", eval="digits")
            results[label] = compiled.report["accuracy"]["artifact"]
            print(f"{name:15s} {label:50s} {results[label]:.4f} ({time.time() - t0:.0f}s)", flush=True)
        with tempfile.TemporaryDirectory() as d:
            results["ONNX Runtime static QDQ (per-channel, u8 act)"] = accuracy(
                ort_static_int8(model, calib_x, test_x, Path(d)), test_y)
        results["PyTorch PT2E X86InductorQuantizer"] = accuracy(pt2e_int8(MODELS[name](pretrained=True).eval(),
                                                                           calib_x, test_x), test_y)
        for label, acc in results.items():
            rows.append((name, label, acc, acc - fp32))
            print(f"{name:15s} {label:50s} {acc * 100:6.2f}%  ({(acc - fp32) * 100:+.2f})", flush=True)
    write_table(rows)


def write_table(rows) -> None:
    out = ROOT / "benchmarks" / "results" / "quantization.md"
    lines = ["# int8 post-training quantization: top-1 on held-out digits", "",
             "Calibration: digits:calib (256 images); evaluation: digits:test (359 images, 28×28). ",
             "accelc rows are the compiled cpu artifacts (bit-identical to the quantized graph). "
             "Command: `.venv/bin/python benchmarks/quant_bench.py`.", ""]
    models = list(dict.fromkeys(r[0] for r in rows))
    labels = list(dict.fromkeys(r[1] for r in rows))
    by = {(r[0], r[1]): (r[2], r[3]) for r in rows}
    lines.append("| method | " + " | ".join(models) + " |")
    lines.append("|---|" + "---|" * len(models))
    for label in labels:
        cells = []
        for m in models:
            acc, delta = by[(m, label)]
            cells.append(f"{acc * 100:.2f}%" + ("" if label.startswith("fp32") else f" ({delta * 100:+.2f})"))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

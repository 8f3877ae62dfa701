"""ONNX QDQ export: onnx.checker passes, ONNX Runtime runs it, agreement with the reference."""

import json

import onnx
import pytest

from tests.conftest import ROOT

ENTRY = ["--entry", "examples/models.py:resnet_tiny", "--weights", "examples/weights/resnet_tiny.pt",
         "--input-shape", "1x1x28x28", "--calib", "digits"]


@pytest.mark.parametrize("scheme", ["fixed", "pow2"])
def test_export_model_agreement(cli, tmp_path, scheme):
    out = tmp_path / "m.onnx"
    cli("export", *ENTRY, "--pipeline", f"fuse,quantize(scheme={scheme},sensitivity=false)", "-o", out,
        "--samples", "16", cwd=ROOT, check=0)
    model = onnx.load(out)
    onnx.checker.check_model(model)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Add", "Gemm"} <= ops
    report = json.loads((tmp_path / "m.onnx.report.json").read_text())["agreement"]
    # ORT's float requantization matches accelc's fixed-point one except near .5 ties (rare for
    # 31-bit multipliers: usually exact; common for pow2 scales, where ties are exact)
    assert report["verdict"] in ("exact", "within 1 LSB")
    assert report["end_to_end"]["final_outputs"]["top1_agreement"] == 1.0
    differing = sum(r["differing"] for r in report["per_layer"].values())
    elements = sum(r["elements"] for r in report["per_layer"].values())
    assert differing / elements < (1e-3 if scheme == "fixed" else 5e-2)
    if report["verdict"] != "exact":
        assert "rounds half to even" in report["why"]


def test_export_from_artifact_replays_recipe(cli, tmp_path):
    art = tmp_path / "art"
    cli("compile", *ENTRY, "--pipeline", "fuse,quantize(sensitivity=false)", "-o", art, "-q", cwd=ROOT, check=0)
    cli("export", art, "-o", tmp_path / "a.onnx", "--samples", "8", cwd=ROOT, check=0)
    result = json.loads((tmp_path / "a.onnx.report.json").read_text())
    assert result["artifact_match"]["max_abs_err"] == 0.0  # the replayed recipe is the artifact's model
    assert result["agreement"]["verdict"] in ("exact", "within 1 LSB")
    proc = cli("export", art, "--pipeline", "fuse", "-o", tmp_path / "b.onnx", cwd=ROOT)
    assert proc.returncode == 2 and "replays its recorded recipe" in proc.stderr


def test_pruned_float_graph_exports_and_runs_in_ort(tmp_path):
    import numpy as np
    import onnxruntime as ort
    import torch

    from accelc.export.onnx_qdq import export_onnx
    from tests.helpers import run_pipeline
    from tests.models import tiny_resnet

    x = torch.randn(1, 1, 16, 16)
    gm, ctx = run_pipeline(tiny_resnet(), (x,), "prune(ratio=0.5),fuse")
    assert ctx.records[0].params_after < ctx.records[0].params_before
    export_onnx(gm, (x,), str(tmp_path / "p.onnx"))
    sess = ort.InferenceSession(str(tmp_path / "p.onnx"), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(got, gm(x).detach().numpy(), rtol=1e-4, atol=1e-4)

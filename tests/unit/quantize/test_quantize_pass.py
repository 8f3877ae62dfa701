"""The quantize pass on real and random models: error bounds, report contents, bad input."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings

from accelc.compiler.capture import capture
from accelc.compiler.context import CompileContext
from accelc.compiler.pass_manager import PassManager
from accelc.compiler.pipeline import Pipeline
from accelc.errors import DataError, PipelineError, UsageError
from accelc.passes.quantize.cle import equalize, find_pairs
from accelc.passes.quantize.modules import QAdd, QConv2d, QLinear
from tests.helpers import random_dataset, run_pipeline
from tests.models import tiny_lenet, tiny_resnet
from tests.strategies import models

X16 = torch.randn(2, 1, 16, 16)


def _qtypes(gm):
    return [type(gm.get_submodule(n.target)) for n in gm.graph.nodes if n.op == "call_module"]


@pytest.mark.parametrize("scheme", ["fixed", "pow2"])
def test_resnet_quantized_structure_and_error(scheme):
    gm, ctx = run_pipeline(tiny_resnet(), (X16,), f"fuse,quantize(scheme={scheme})", random_dataset(X16.shape, 64))
    types = _qtypes(gm)
    assert types.count(QConv2d) == 6 and types.count(QAdd) == 2 and QLinear in types
    rec = ctx.records[-1]
    assert rec.sqnr_db > 20 and rec.top1_agreement >= 0.75  # lossy but close
    d = rec.details
    assert d["scheme"] == scheme and d["float_nodes"] == {}  # everything, pools included, runs in int8
    assert len(d["layers"]) == 7 and all(e["output_sqnr_db"] > 15 for e in d["layers"])
    assert all(set(e) >= {"layer", "sqnr_db"} for e in d["sensitivity"])
    if scheme == "pow2":
        for m in gm.modules():
            if isinstance(m, (QConv2d, QLinear)):
                assert torch.all(m.mult == 1)
                for s in (m.input_scale, m.output_scale, *m.weight_scale.tolist()):
                    assert math.log2(s) == round(math.log2(s))


def test_float_islands_are_listed():
    class WithSoftmax(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            y = torch.sigmoid(self.conv(x)).mean((2, 3))
            return torch.log_softmax(self.fc(y), -1)

    gm, ctx = run_pipeline(WithSoftmax().eval(), (X16,), "quantize", random_dataset(X16.shape))
    floats = ctx.records[-1].details["float_nodes"]
    assert "sigmoid" in floats and "log_softmax" in floats
    assert sum(1 for t in _qtypes(gm) if t.__name__ == "Dequantize") == 2


def test_skip_keeps_layer_float():
    gm, ctx = run_pipeline(tiny_lenet(), (torch.randn(1, 1, 28, 28),), "fuse,quantize(skip=[fc2])",
                           random_dataset((1, 1, 28, 28)))
    assert isinstance(gm.get_submodule("fc2"), nn.Linear) and ctx.records[-1].details["float_nodes"]["fc2"] == "skipped"
    with pytest.raises(PipelineError, match="unknown layer.*nope"):
        run_pipeline(tiny_lenet(), (torch.randn(1, 1, 28, 28),), "fuse,quantize(skip=[nope])",
                     random_dataset((1, 1, 28, 28)))


@settings(max_examples=10)
@given(models(max_blocks=6))
def test_random_cnns_quantize_with_bounded_error(model_and_inputs):
    model, (x,) = model_and_inputs
    ds = random_dataset(x.shape, 32)
    for pipeline in ("fuse,quantize", "fuse,quantize(scheme=pow2,observer=mse)"):
        gm, ctx = run_pipeline(model, (x,), pipeline, ds, num_samples=4)
        out, ref = gm(x), model(x)
        assert out.shape == ref.shape and torch.isfinite(out).all()
        # int8 error stays a small fraction of the output's range on random nets
        assert ctx.records[-1].sqnr_db is None or ctx.records[-1].sqnr_db > 8


def _relu_chain():
    class Chain(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 8, 3, padding=1)
            self.c2 = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.c3 = nn.Conv2d(8, 6, 1)
            self.fc = nn.Linear(6, 4)

        def forward(self, x):
            x = F.relu(self.c1(x))
            x = F.max_pool2d(F.relu(self.c2(x)), 2)
            x = self.c3(x)
            return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))

    torch.manual_seed(0)
    m = Chain().eval()
    with torch.no_grad():  # uneven per-channel ranges that the next layer compensates: what CLE is for
        d = torch.logspace(-2, 1, 8)
        m.c1.weight.mul_(d.reshape(-1, 1, 1, 1))
        m.c1.bias.mul_(d)
        m.c2.weight.div_(d.reshape(-1, 1, 1, 1))
    return m


def test_cle_preserves_fp32_outputs_and_equalizes():
    m = _relu_chain()
    x = torch.randn(2, 3, 12, 12)
    gm = capture(m, (x,))
    ctx = CompileContext((x,))
    gm = PassManager(Pipeline.parse("fuse")).run(gm, ctx)
    before = gm(x)
    assert len(find_pairs(gm)) == 2  # c1→c2 (through relu), c2→c3 (through relu, max-pool)
    equalize(gm)
    torch.testing.assert_close(gm(x), before, rtol=1e-4, atol=1e-5)
    r1 = gm.get_submodule("c1").weight.abs().reshape(8, -1).amax(1)
    r2 = gm.get_submodule("c2").weight.abs().reshape(8, -1).amax(1)
    torch.testing.assert_close(r1, r2, rtol=1e-3, atol=1e-6)


def test_cle_improves_per_tensor_quantization():
    m = _relu_chain()
    x = torch.randn(1, 3, 12, 12)
    ds = random_dataset(x.shape, 64)
    base = run_pipeline(m, (x,), "fuse,quantize(per_channel=false)", ds)[1].records[-1].sqnr_db
    cle = run_pipeline(m, (x,), "fuse,quantize(per_channel=false,cle=true)", ds)[1].records[-1].sqnr_db
    assert cle > base + 6  # dB


def test_bias_correction_removes_systematic_shift():
    class Skewed(nn.Module):
        """Many small positive weights next to one large one: per-tensor int8 rounds the small
        ones to zero, which shifts every output by a data-dependent constant."""

        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(64, 64)
            self.fc2 = nn.Linear(64, 8)

        def forward(self, x):
            return self.fc2(F.relu(self.fc1(x)))

    torch.manual_seed(0)
    m = Skewed().eval()
    with torch.no_grad():
        m.fc2.weight.copy_(0.003 + 0.001 * torch.rand(8, 64))
        m.fc2.weight[:, 0] = 1.0
    x = torch.randn(1, 64)
    ds = random_dataset(x.shape, 128)
    base = run_pipeline(m, (x,), "quantize(per_channel=false)", ds)[1].records[-1]
    corrected = run_pipeline(m, (x,), "quantize(per_channel=false,bias_correction=true)", ds)[1].records[-1]
    assert corrected.sqnr_db > base.sqnr_db + 3


# ------------------------------------------------------------------ bad input
def test_missing_calibration_data():
    with pytest.raises(UsageError, match="calibration data"):
        run_pipeline(tiny_lenet(), (torch.randn(1, 1, 28, 28),), "quantize", None)


def test_nan_in_model_activations_is_named():
    class Nan(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return self.conv(torch.log(x))  # log of negatives → NaN

    with pytest.raises(DataError, match="NaN/Inf"):
        run_pipeline(Nan().eval(), (X16,), "quantize", random_dataset(X16.shape))


def test_constant_activation_and_zero_weight_channel():
    class Dead(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 3, 3)
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(F.relu(self.conv(x) * 0.0).mean((2, 3)))

    m = Dead().eval()
    with torch.no_grad():
        m.conv.weight[1].zero_()
    gm, ctx = run_pipeline(m, (X16,), "fuse,quantize", random_dataset(X16.shape))
    out = gm(X16)
    assert torch.isfinite(out).all()
    assert ctx.records[-1].details["constant_activations"]
    for mod in gm.modules():
        for buf in mod.buffers():
            assert torch.isfinite(buf.double()).all()


@pytest.mark.parametrize("pipeline, message", [
    ("quantize(observer=max)", "minmax, mse, entropy or percentile"),
    ("quantize(percentile=0)", "must be > 0"),
    ("quantize(calib_samples=0)", "must be >= 1"),
    ("quantize(scheme=int4)", "fixed, pow2"),
])
def test_options_out_of_range(pipeline, message):
    with pytest.raises(PipelineError, match=message):
        Pipeline.parse(pipeline)


def test_calibration_data_checks(tmp_path):
    from accelc.compiler.data import load_dataset
    from accelc.compiler.inputs import InputSpec

    spec = [InputSpec((1, 1, 8, 8))]
    np.savez(tmp_path / "empty.npz", inputs=np.zeros((0, 1, 8, 8), np.float32))
    np.savez(tmp_path / "nan.npz", inputs=np.full((4, 1, 8, 8), np.nan, np.float32))
    np.savez(tmp_path / "shape.npz", inputs=np.zeros((4, 1, 9, 9), np.float32))
    for name, message in [("empty", "empty"), ("nan", "NaN/Inf"), ("shape", "expected N×1×8×8")]:
        with pytest.raises(DataError, match=message):
            load_dataset(tmp_path / f"{name}.npz", spec, option="--calib")


@pytest.mark.parametrize("observer", ["minmax", "percentile(99.99)", "mse", "entropy"])
def test_every_observer_keeps_digits_accuracy(observer):
    """Regression: clipping observers once clipped the model input and relu outputs hard enough
    to cost LeNet 5–90 points; inputs and region exits now keep their full range."""
    from accelc.compiler.batching import dataset_batches
    from accelc.compiler.data import load_dataset
    from accelc.compiler.inputs import InputSpec
    from accelc.compiler.verify import run_samples, top1_accuracy
    from examples.models import lenet

    x = torch.randn(1, 1, 28, 28)
    calib = load_dataset("digits", [InputSpec.of(x)], role="calib")
    test = load_dataset("digits", [InputSpec.of(x)], role="eval")
    gm, _ = run_pipeline(lenet(pretrained=True), (x,), f"fuse,quantize(observer={observer},sensitivity=false)", calib)
    acc = top1_accuracy(run_samples(gm, dataset_batches(gm, test, 1)), torch.from_numpy(test.labels))
    assert acc >= 0.99

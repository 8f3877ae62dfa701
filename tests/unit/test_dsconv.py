"""The dsconv pass and the network-decoupling math behind it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import accelc
from accelc.compiler.capture import capture
from accelc.compiler.context import CompileContext
from accelc.compiler.data import Dataset
from accelc.compiler.fused import ConvAct2d
from accelc.compiler.pass_manager import PassManager
from accelc.compiler.pipeline import Pipeline
from accelc.errors import PipelineError
from accelc.passes.decouple import Decoupling, max_saving_rank, rank_for_fraction
from accelc.passes.dsconv import DSConv, DSConvOptions


def run(model, pipeline, x, **ctx_kw):
    gm = capture(model, (x,))
    ctx = CompileContext((x,), **ctx_kw)
    return PassManager(Pipeline.parse(pipeline)).run(gm, ctx), ctx


def convs(gm):
    return {name: m for name, m in gm.named_modules() if isinstance(m, nn.Conv2d)}


# (in, out, kernel, stride, padding, dilation, bias, activation)
LAYERS = [
    (3, 16, 3, 1, 1, 1, True, "relu"),  # C_out > k²
    (8, 4, 3, 2, 0, 1, False, None),  # C_out < k², stride, no padding, no bias
    (4, 6, (3, 5), (2, 1), (2, 1), 1, True, "relu6"),  # rectangular kernel, asymmetric stride/padding
    (5, 7, 3, 1, 2, 2, True, None),  # dilation
    (1, 12, 5, 1, 2, 1, True, "relu"),  # one input channel (LeNet's first layer)
]


@pytest.mark.parametrize("cin,cout,k,stride,pad,dil,bias,act", LAYERS)
def test_full_rank_equals_the_original_conv(cin, cout, k, stride, pad, dil, bias, act):
    torch.manual_seed(0)
    layers = [nn.Conv2d(cin, cout, k, stride, pad, dil, bias=bias)]
    if act:
        layers.append(nn.ReLU() if act == "relu" else nn.ReLU6())
    model = nn.Sequential(*layers).eval()
    x = torch.randn(2, cin, 11, 12)
    gm, ctx = run(model, "fuse,dsconv(rank=1.0,only_if_cheaper=false)", x)
    (dw, pw) = convs(gm).values()
    assert dw.groups == cin and dw.out_channels == cin * min(cout, dw.kernel_size[0] * dw.kernel_size[1])
    assert pw.kernel_size == (1, 1) and (pw.bias is not None) == bias
    if act:  # the epilogue stays after the pointwise conv
        assert isinstance(pw, ConvAct2d) and pw.activation == act
    torch.testing.assert_close(gm(x), model(x), rtol=1e-4, atol=1e-4)
    layer = ctx.records[-1].details["layers"][0]
    assert layer["weight_rel_err"] < 1e-6 and layer["output_rel_err"] < 1e-5 and layer["network_rel_err"] < 1e-5


def test_lower_rank_reduces_flops_and_error_falls_monotonically_with_rank():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 32, 3, padding=1), nn.ReLU()).eval()
    x = torch.randn(2, 8, 10, 10)
    q = 9
    weight_err, output_err, flops = [], [], []
    for r in range(1, q + 1):
        _, ctx = run(model, f"fuse,dsconv(rank={r},only_if_cheaper=false)", x)
        layer = ctx.records[-1].details["layers"][0]
        assert layer["rank"] == r
        weight_err.append(layer["weight_rel_err"])
        output_err.append(layer["output_rel_err"])
        flops.append(ctx.records[-1].flops_after)
    assert all(a > b for a, b in zip(weight_err, weight_err[1:]))
    assert all(a >= b - 1e-6 for a, b in zip(output_err, output_err[1:]))
    assert weight_err[-1] < 1e-6
    r_max = max_saving_rank(8, 32, 9, q)
    assert all(f < ctx.records[-1].flops_before for f in flops[:r_max])


def test_decoupling_is_optimal_per_input_channel():
    """The kept terms are the leading singular triplets: the error is the discarded spectrum."""
    w = torch.randn(6, 3, 3, 3, dtype=torch.float64)
    dec = Decoupling.of(w)
    for r in (1, 3, 6):
        dw, pw = dec.factors(r)
        approx = torch.einsum("ocj,cjk->ock", pw.reshape(6, 3, r), dw.reshape(3, r, 9)).reshape(w.shape)
        for c in range(3):
            s = torch.linalg.svdvals(w[:, c].reshape(6, 9))
            assert torch.allclose((w[:, c] - approx[:, c]).norm(), s[r:].norm(), atol=1e-10)


def test_rank_as_fraction_or_integer():
    assert rank_for_fraction(9, 0.5) == 5 and rank_for_fraction(9, 1.0) == 9
    assert rank_for_fraction(9, 4) == 4 and rank_for_fraction(9, 20) == 9 and rank_for_fraction(9, 0.01) == 1


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1),
                         nn.ReLU(), nn.Conv2d(32, 32, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(32, 10)).eval()


def test_flops_budget_is_met_over_the_decomposed_convs():
    x = torch.randn(1, 3, 12, 12)
    _, ctx = run(_net(), "fuse,dsconv(flops=0.5)", x)
    d = ctx.records[-1].details
    assert d["budget_met"]
    before, after = map(int, d["conv_flops"].split("→"))
    k3 = sum(2 * 144 * cin * cout * 9 for cin, cout in ((3, 16), (16, 32)))
    assert before - after >= 0.5 * k3 - 1  # the 3×3 convs lose at least half their FLOPs
    assert "5" not in [layer["layer"] for layer in d["layers"]]  # the 1×1 conv is left alone


def test_tolerance_bounds_the_weight_error_and_skips_layers_without_gain():
    torch.manual_seed(0)
    # a low-rank-ish layer (decomposable cheaply) and a random one (needs full rank: skipped)
    low = nn.Conv2d(4, 32, 3, padding=1)
    with torch.no_grad():
        u, v = torch.randn(4, 32, 2), torch.randn(4, 2, 9)
        low.weight.copy_(torch.einsum("cor,crk->ock", u, v).reshape(32, 4, 3, 3) + 1e-3 * torch.randn(32, 4, 3, 3))
    model = nn.Sequential(low, nn.ReLU(), nn.Conv2d(32, 8, 3)).eval()
    x = torch.randn(1, 4, 8, 8)
    _, ctx = run(model, "fuse,dsconv(tol=0.05)", x)
    d = ctx.records[-1].details
    assert [ly["layer"] for ly in d["layers"]] == ["0"] and d["layers"][0]["rank"] == 2
    assert d["layers"][0]["weight_rel_err"] <= 0.05
    assert d["skipped"][0]["layer"] == "2"


def test_refine_lowers_the_output_error_on_calibration_data():
    x = torch.randn(1, 3, 12, 12)
    rng = np.random.default_rng(0)
    calib = Dataset((rng.standard_normal((64, 3, 12, 12)).astype(np.float32),), None, "synthetic")
    _, plain = run(_net(), "fuse,dsconv(rank=2)", x, calib=calib, eval=calib)
    _, refined = run(_net(), "fuse,dsconv(rank=2,refine=true)", x, calib=calib, eval=calib)
    err = {ly["layer"]: ly["network_rel_err"] for ly in plain.records[-1].details["layers"]}
    err_refined = {ly["layer"]: ly["network_rel_err"] for ly in refined.records[-1].details["layers"]}
    assert refined.records[-1].details["refined"]
    assert all(err_refined[k] < err[k] for k in err)  # each layer compensates the error before it
    assert refined.records[-1].max_abs_err < plain.records[-1].max_abs_err


@pytest.mark.parametrize("pipeline,match", [
    ("dsconv(rank=0)", "must be > 0"),
    ("dsconv(rank=-2)", "must be > 0"),
    ("dsconv(rank=1.5)", "fractional rank must be ≤ 1"),
    ("dsconv(flops=0)", "flops"),
    ("dsconv(flops=1.2)", "flops"),
    ("dsconv(tol=0)", "tol"),
    ("dsconv(rank=0.5,tol=0.1)", "one of rank=, flops=, tol="),
])
def test_bad_options_fail_at_parse_time(pipeline, match):
    with pytest.raises(PipelineError, match=match):
        Pipeline.parse(pipeline)


def test_refine_without_data_and_unknown_ignore_are_pipeline_errors():
    x = torch.randn(1, 3, 12, 12)
    with pytest.raises(PipelineError, match="refine") as e:
        run(_net(), "fuse,dsconv(refine=true)", x)
    assert "--calib" in e.value.hint
    with pytest.raises(PipelineError, match="ignore='conv9'"):
        run(_net(), "fuse,dsconv(ignore=[conv9])", x)


def test_default_is_half_rank_and_ignore_is_respected():
    assert DSConvOptions().rank == 0.5
    x = torch.randn(1, 3, 12, 12)
    gm, ctx = run(_net(), "fuse,dsconv(ignore=[0])", x)
    assert [ly["layer"] for ly in ctx.records[-1].details["layers"]] == ["3"]
    assert DSConv.name in Pipeline.parse("dsconv").names()


def test_dsconv_then_prune_compiles_for_cpu():
    """Depthwise convs from dsconv are pruned through their coupling, and the result builds
    with TVM for the cpu target and matches the fx graph."""
    x = torch.randn(1, 3, 12, 12)
    gm, ctx = run(_net(), "fuse,dsconv(rank=0.5),prune(ratio=0.5)", x)
    dws = [m for m in convs(gm).values() if m.groups > 1]
    assert dws and all(m.in_channels == m.groups for m in dws)
    compiled = accelc.compile(gm, (x,), target="cpu", pipeline="none")
    np.testing.assert_allclose(compiled(x.numpy()), gm(x).detach().numpy(), rtol=1e-4, atol=1e-4)

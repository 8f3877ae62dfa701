"""The normative int8 ops: against float64 recomputation, and the TVM lowering bit for bit."""

import numpy as np
import pytest
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from accelc.passes.quantize.arith import rshift_round
from accelc.passes.quantize.modules import (Dequantize, QAdd, QAvgPool2d, QConv2d, QLinear, QMaxPool2d, Quantize,
                                            Requantize)
from accelc.passes.quantize.qparams import QParams
from tests.helpers import tvm_run

ops = torch.ops.accelc


def _int8(shape, seed):
    return torch.randint(-128, 128, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.int8)


def _int64_conv(x, w, b, zp, stride, padding, groups):
    """Independent integer convolution: unfold + int64 matmul per group."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    cols = F.unfold((x.to(torch.float64) - zp), (kh, kw), padding=padding, stride=stride).to(torch.int64)
    ho = (h + 2 * padding[0] - kh) // stride[0] + 1
    wo = (wd + 2 * padding[1] - kw) // stride[1] + 1
    cols = cols.reshape(n, groups, cg * kh * kw, ho * wo)
    wg = w.to(torch.int64).reshape(groups, o // groups, cg * kh * kw)
    acc = torch.einsum("ngkl,gok->ngol", cols, wg).reshape(n, o, ho, wo)
    return acc + b.to(torch.int64).reshape(1, -1, 1, 1)


@given(st.integers(1, 3), st.sampled_from([1, 3, 5]), st.sampled_from([1, 2]), st.integers(0, 2),
       st.sampled_from([1, 2]), st.integers(0, 10_000), st.integers(-20, 20))
def test_qconv2d_accumulator_is_exact(cin_per_group, k, stride, pad, groups, seed, zp):
    x = _int8((2, cin_per_group * groups, 9, 9), seed)
    w = _int8((4 * groups, cin_per_group, k, k), seed + 1)
    b = torch.randint(-5000, 5000, (4 * groups,), dtype=torch.int32)
    mult = torch.full((4 * groups,), 1 << 30, dtype=torch.int32)
    shift = torch.arange(4 * groups, dtype=torch.int32) % 3 + 35
    got = ops.qconv2d(x, w, b, mult, shift, zp, 3, -128, 127, [stride, stride], [pad, pad], groups)
    acc = _int64_conv(x, w, b, zp, (stride, stride), (pad, pad), groups)
    want = torch.clamp(rshift_round(acc * (1 << 30), shift.reshape(1, -1, 1, 1).to(torch.int64)) + 3, -128, 127)
    assert torch.equal(got, want.to(torch.int8))


def test_qlinear_close_to_float64_recomputation():
    """Dequantized int8 output = float64 math on the dequantized operands, within 1 LSB."""
    g = torch.Generator().manual_seed(0)
    x_scale, y_scale = 0.05, 0.2
    w_scale = torch.rand(6, generator=g, dtype=torch.float64) * 0.01 + 0.001
    x, w = _int8((3, 10), 1), _int8((6, 10), 2)
    b = torch.randint(-1000, 1000, (6,), dtype=torch.int32)
    from accelc.passes.quantize.arith import quantize_multiplier
    ms = [quantize_multiplier(x_scale * float(s) / y_scale) for s in w_scale]
    y = ops.qlinear(x, w, b, torch.tensor([m for m, _ in ms], dtype=torch.int32),
                    torch.tensor([s for _, s in ms], dtype=torch.int32), 0, 0, -128, 127)
    real = (x.double() * x_scale) @ (w.double() * w_scale[:, None]).T + b.double() * x_scale * w_scale
    expected = torch.clamp(torch.round(real / y_scale), -128, 127)
    assert (y.double() - expected).abs().max() <= 1


def test_quantize_dequantize_round_trip():
    x = torch.linspace(-3, 3, 1001)
    q = ops.quantize(x, 1 / 0.025, 0, -128, 127)
    back = ops.dequantize(q, 0.025, 0)
    inside = x.abs() <= 127 * 0.025
    assert (back - x)[inside].abs().max() <= 0.025 / 2 + 1e-7
    assert q.min() == -120 and q.max() == 120


def test_qavg_pool_rounds_half_up():
    x = torch.tensor([[[[1, 2], [0, 0]]]], dtype=torch.int8)  # sum 3, mean 0.75 → 1
    assert ops.qavg_pool2d(x, [2, 2], 0).item() == 1
    x = torch.tensor([[[[-1, -1], [0, 0]]]], dtype=torch.int8)  # mean −0.5 → 0 (half up)
    assert ops.qavg_pool2d(x, [2, 2], 0).item() == 0


# ------------------------------------------------------------------ TVM bit-exactness per op
def _qconv(cin, cout, k, stride, pad, groups, scheme, lo=-128, hi=127, x_zp=0, y_zp=0):
    g = torch.Generator().manual_seed(cin * 100 + cout + k)
    w = torch.randint(-127, 128, (cout, cin // groups, k, k), generator=g, dtype=torch.int8)
    b = torch.randint(-3000, 3000, (cout,), generator=g, dtype=torch.int32)
    if scheme == "pow2":
        mult, shift = torch.ones(cout, dtype=torch.int32), torch.randint(6, 12, (cout,), generator=g, dtype=torch.int32)
    else:
        mult = torch.randint(2**30, 2**31 - 1, (cout,), generator=g, dtype=torch.int32)
        shift = torch.randint(36, 42, (cout,), generator=g, dtype=torch.int32)
    return QConv2d(w, b, mult, shift, QParams(0.05, x_zp), QParams(0.1, y_zp), torch.ones(cout), lo, hi,
                   activation="none", scheme=scheme, stride=(stride, stride), padding=(pad, pad), groups=groups)


class OpZoo(nn.Module):
    """Every int8 op on one input, each result dequantized to its own output, so one TVM build
    checks them all (and a failure names the op)."""

    def __init__(self, scheme: str):
        super().__init__()
        pow2 = scheme == "pow2"
        self.names = []
        self.q = Quantize(QParams(0.0625 if pow2 else 0.05))
        self.q_asym = Quantize(QParams(0.05, -7))
        self.convs = nn.ModuleDict({
            "conv3x3_relu": _qconv(4, 8, 3, 1, 1, 1, scheme, lo=0),
            "conv_depthwise_s2": _qconv(4, 4, 3, 2, 1, 4, scheme),
            "conv1x1_grouped": _qconv(4, 6, 1, 1, 0, 2, scheme, hi=60),
            "conv5x5_asym": _qconv(4, 5, 5, 1, 2, 1, "fixed", x_zp=-7, y_zp=12),
        })
        g = torch.Generator().manual_seed(0)
        self.linear = QLinear(torch.randint(-127, 128, (7, 4 * 7 * 7), generator=g, dtype=torch.int8),
                              torch.randint(-500, 500, (7,), generator=g, dtype=torch.int32),
                              torch.full((7,), 1 if pow2 else 1_500_000_000, dtype=torch.int32),
                              torch.full((7,), 9 if pow2 else 39, dtype=torch.int32),
                              QParams(0.05), QParams(0.1), torch.ones(7), -128, 127, activation="none", scheme=scheme)
        add_args = (1, 4, 3) if pow2 else (1_234_567, 987_654, 22)
        self.add = QAdd(QParams(0.125), QParams(0.03125), QParams(0.25), *add_args, lo=0, hi=127, activation="relu")
        self.requant = Requantize(QParams(0.05), QParams(0.2), *((1, 2) if pow2 else (1_717_986_918, 33)), -20, 100)
        self.requant_left = Requantize(QParams(0.05), QParams(0.025), 1, -1, -128, 127)
        self.maxpool = QMaxPool2d((3, 3), (2, 2), (1, 1))
        self.avgpool = QAvgPool2d((2, 2), QParams(0.05))
        self.gap = QAvgPool2d((7, 7), QParams(0.05))
        self.dq = Dequantize(QParams(0.1))
        self.dq_asym = Dequantize(QParams(0.1, 12))

    def forward(self, x):
        q = self.q(x)
        outs = [self.dq(self.convs["conv3x3_relu"](q)), self.dq(self.convs["conv_depthwise_s2"](q)),
                self.dq(self.convs["conv1x1_grouped"](q)), self.dq_asym(self.convs["conv5x5_asym"](self.q_asym(x))),
                self.dq(self.linear(torch.flatten(q, 1))), self.dq(self.add(q, self.q(x * 0.5))),
                self.dq(self.requant(q)), self.dq(self.requant_left(q)), self.dq(self.maxpool(q)),
                self.dq(self.avgpool(q)), self.dq(self.gap(q))]
        return tuple(outs)


OP_NAMES = ["conv3x3_relu", "conv_depthwise_s2", "conv1x1_grouped", "conv5x5_asym", "linear", "add_relu",
            "requantize", "requantize_left_shift", "maxpool", "avgpool", "global_avgpool"]


def _gm(module: nn.Module) -> fx.GraphModule:
    class Leaf(fx.Tracer):  # keep the quantized modules as call_module, as the quantize pass emits them
        def is_leaf_module(self, m, name):
            return not isinstance(m, (nn.ModuleDict, OpZoo))

    return fx.GraphModule(module, Leaf().trace(module))


@pytest.mark.parametrize("scheme", ["fixed", "pow2"])
def test_every_int8_op_is_bit_exact_on_tvm(scheme):
    gm = _gm(OpZoo(scheme))
    x = torch.randn(2, 4, 7, 7, generator=torch.Generator().manual_seed(1)) * 3
    got = tvm_run(gm, (x,))
    want = gm(x)
    assert len(got) == len(OP_NAMES)
    for name, g, w in zip(OP_NAMES, got, want):
        np.testing.assert_array_equal(g, w.numpy(), err_msg=f"{scheme}: {name}")

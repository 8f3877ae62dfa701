"""The quantized graph's layers: small modules whose ``forward`` calls the normative int8
custom ops (:mod:`accelc.passes.quantize.ops`). They keep their float scales as attributes
for reports and for ONNX QDQ export; the integers in their buffers are what every target runs.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from accelc.compiler.analysis.cost import register_module_cost
from accelc.passes.quantize import ops  # noqa: F401  (registers torch.ops.accelc.*)
from accelc.passes.quantize.qparams import QParams

accelc_ops = torch.ops.accelc


class Quantize(nn.Module):
    """float32 → int8: ``clip(round(x · (1/scale)) + zero_point, qmin, qmax)``."""

    def __init__(self, qp: QParams):
        super().__init__()
        self.scale, self.zero_point, self.qmin, self.qmax = qp.scale, qp.zero_point, qp.qmin, qp.qmax
        self.inv_scale = float(torch.tensor(1.0 / qp.scale, dtype=torch.float32))

    def forward(self, x):
        return accelc_ops.quantize(x, self.inv_scale, self.zero_point, self.qmin, self.qmax)

    def extra_repr(self):
        return f"scale={self.scale:.4g}, zero_point={self.zero_point}"


class Dequantize(nn.Module):
    """int8 → float32: ``(q − zero_point) · scale``."""

    def __init__(self, qp: QParams):
        super().__init__()
        self.scale, self.zero_point = float(torch.tensor(qp.scale, dtype=torch.float32)), qp.zero_point

    def forward(self, q):
        return accelc_ops.dequantize(q, self.scale, self.zero_point)

    def extra_repr(self):
        return f"scale={self.scale:.4g}, zero_point={self.zero_point}"


class _QLayer(nn.Module):
    """Common state of QConv2d/QLinear: int8 weight, int32 bias, per-channel requantization."""

    def __init__(self, weight_q, bias_q, mult, shift, x_qp: QParams, y_qp: QParams, w_scales, lo, hi,
                 activation: str, scheme: str):
        super().__init__()
        self.register_buffer("weight", weight_q)
        self.register_buffer("bias", bias_q)
        self.register_buffer("mult", mult.to(torch.int32))
        self.register_buffer("shift", shift.to(torch.int32))
        self.register_buffer("weight_scale", w_scales.to(torch.float32))
        self.input_scale, self.x_zp = x_qp.scale, x_qp.zero_point
        self.output_scale, self.y_zp = y_qp.scale, y_qp.zero_point
        self.lo, self.hi = lo, hi
        self.activation, self.scheme = activation, scheme

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]


class QConv2d(_QLayer):
    def __init__(self, *args, stride, padding, groups, **kw):
        super().__init__(*args, **kw)
        self.stride, self.padding, self.groups = tuple(stride), tuple(padding), groups

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1] * self.groups

    @property
    def kernel_size(self) -> tuple[int, int]:
        return tuple(self.weight.shape[2:])

    def forward(self, x):
        return accelc_ops.qconv2d(x, self.weight, self.bias, self.mult, self.shift, self.x_zp, self.y_zp,
                                  self.lo, self.hi, list(self.stride), list(self.padding), self.groups)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}, activation={self.activation}, scheme={self.scheme}")


class QLinear(_QLayer):
    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    def forward(self, x):
        return accelc_ops.qlinear(x, self.weight, self.bias, self.mult, self.shift, self.x_zp, self.y_zp,
                                  self.lo, self.hi)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_channels}, activation={self.activation}, scheme={self.scheme}"


class QAdd(nn.Module):
    """int8 a + b at a common scale: ``clip(rshift_round((a−za)·ma + (b−zb)·mb, n) + zy, lo, hi)``."""

    def __init__(self, a_qp: QParams, b_qp: QParams, y_qp: QParams, a_mult: int, b_mult: int, shift: int,
                 lo: int, hi: int, activation: str):
        super().__init__()
        self.a_scale, self.a_zp, self.b_scale, self.b_zp = a_qp.scale, a_qp.zero_point, b_qp.scale, b_qp.zero_point
        self.output_scale, self.y_zp = y_qp.scale, y_qp.zero_point
        self.a_mult, self.b_mult, self.shift, self.lo, self.hi = a_mult, b_mult, shift, lo, hi
        self.activation = activation

    def forward(self, a, b):
        return accelc_ops.qadd(a, b, self.a_zp, self.a_mult, self.b_zp, self.b_mult, self.shift, self.y_zp,
                               self.lo, self.hi)

    def extra_repr(self):
        return f"a_mult={self.a_mult}, b_mult={self.b_mult}, shift={self.shift}, activation={self.activation}"


class Requantize(nn.Module):
    """int8 → int8 at another scale/zero point, with optional clipping (a relu on int8)."""

    def __init__(self, x_qp: QParams, y_qp: QParams, mult: int, shift: int, lo: int, hi: int):
        super().__init__()
        self.input_scale, self.x_zp, self.output_scale, self.y_zp = x_qp.scale, x_qp.zero_point, y_qp.scale, y_qp.zero_point
        self.mult, self.shift, self.lo, self.hi = mult, shift, lo, hi

    def forward(self, x):
        return accelc_ops.requantize(x, self.x_zp, self.mult, self.shift, self.y_zp, self.lo, self.hi)

    def extra_repr(self):
        return f"mult={self.mult}, shift={self.shift}, lo={self.lo}, hi={self.hi}"


class QMaxPool2d(nn.Module):
    def __init__(self, kernel, stride, padding, ceil_mode=False):
        super().__init__()
        self.kernel, self.stride, self.padding, self.ceil_mode = tuple(kernel), tuple(stride), tuple(padding), ceil_mode

    def forward(self, x):
        return accelc_ops.qmax_pool2d(x, list(self.kernel), list(self.stride), list(self.padding), self.ceil_mode)


class QAvgPool2d(nn.Module):
    """Average over non-overlapping windows (also global/adaptive pooling with divisible sizes)."""

    def __init__(self, kernel, qp: QParams):
        super().__init__()
        self.kernel, self.scale, self.zero_point = tuple(kernel), qp.scale, qp.zero_point

    def forward(self, x):
        return accelc_ops.qavg_pool2d(x, list(self.kernel), self.zero_point)


@register_module_cost(QConv2d)
def _qconv_cost(m: QConv2d, in_shapes, out_shape):
    macs = int(torch.tensor(out_shape).prod()) * (m.weight.shape[1]) * m.kernel_size[0] * m.kernel_size[1]
    return macs, 2 * macs


@register_module_cost(QLinear)
def _qlinear_cost(m: QLinear, in_shapes, out_shape):
    macs = int(torch.tensor(out_shape).prod()) * m.in_features
    return macs, 2 * macs

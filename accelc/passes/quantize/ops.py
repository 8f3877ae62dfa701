"""The int8 operators as PyTorch custom ops (``torch.ops.accelc.*``).

Their CPU kernels below are *the* definition of accelc's integer semantics (formulas in
:mod:`accelc.passes.quantize.arith`); every target reproduces them bit for bit and the tests
compare exactly. As custom ops they survive ``torch.export`` as single nodes, which the TVM
importer maps to integer Relax programs and the fpga target to VTA instructions.

Exactness of the reference: int8·int8 products summed over fewer than 2³⁷ terms are
integers below 2⁵³, so the float64 convolution/matmul used to compute the int32
accumulator is exact; everything after it is int64 arithmetic.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from accelc.passes.quantize.arith import requantize

_LIB = "accelc"


def _per_channel(t: Tensor, ndim: int, axis: int = 1) -> Tensor:
    """Shape a per-channel vector [C] to broadcast along ``axis`` of an ``ndim`` tensor."""
    shape = [1] * ndim
    shape[axis] = -1
    return t.reshape(shape)


# ----------------------------------------------------------------------------- float <-> int8
@torch.library.custom_op(f"{_LIB}::quantize", mutates_args=())
def quantize(x: Tensor, inv_scale: float, zero_point: int, qmin: int, qmax: int) -> Tensor:
    """``clip(round_half_even(x · inv_scale) + zero_point, qmin, qmax)``, all in float32 (the
    values are integers by then, so the final cast is exact)."""
    q = torch.round(x.float() * torch.tensor(inv_scale, dtype=torch.float32)) + float(zero_point)
    return torch.clamp(q, float(qmin), float(qmax)).to(torch.int8)


@quantize.register_fake
def _(x, inv_scale, zero_point, qmin, qmax):
    return torch.empty_like(x, dtype=torch.int8)


@torch.library.custom_op(f"{_LIB}::dequantize", mutates_args=())
def dequantize(q: Tensor, scale: float, zero_point: int) -> Tensor:
    return (q.to(torch.int32) - zero_point).to(torch.float32) * torch.tensor(scale, dtype=torch.float32)


@dequantize.register_fake
def _(q, scale, zero_point):
    return torch.empty_like(q, dtype=torch.float32)


# ----------------------------------------------------------------------------- conv / linear
def conv_accumulate(x: Tensor, w: Tensor, bias: Tensor, x_zp: int, stride: Sequence[int], padding: Sequence[int],
                    groups: int) -> Tensor:
    """int32 accumulator Σ (x − x_zp)·w + bias, exactly (zero padding of x − x_zp)."""
    xd = x.to(torch.float64) - x_zp
    acc = F.conv2d(xd, w.to(torch.float64), None, list(stride), list(padding), 1, groups)
    return acc.to(torch.int64) + _per_channel(bias.to(torch.int64), 4)


@torch.library.custom_op(f"{_LIB}::qconv2d", mutates_args=())
def qconv2d(x: Tensor, weight: Tensor, bias: Tensor, mult: Tensor, shift: Tensor, x_zp: int, y_zp: int,
            lo: int, hi: int, stride: Sequence[int], padding: Sequence[int], groups: int) -> Tensor:
    acc = conv_accumulate(x, weight, bias, x_zp, stride, padding, groups)
    return requantize(acc, _per_channel(mult, 4), _per_channel(shift, 4), y_zp, lo, hi)


@qconv2d.register_fake
def _(x, weight, bias, mult, shift, x_zp, y_zp, lo, hi, stride, padding, groups):
    n, _, h, w = x.shape
    kh, kw = weight.shape[2:]
    ho = (h + 2 * padding[0] - kh) // stride[0] + 1
    wo = (w + 2 * padding[1] - kw) // stride[1] + 1
    return x.new_empty((n, weight.shape[0], ho, wo), dtype=torch.int8)


def linear_accumulate(x: Tensor, w: Tensor, bias: Tensor, x_zp: int) -> Tensor:
    acc = F.linear(x.to(torch.float64) - x_zp, w.to(torch.float64))
    return acc.to(torch.int64) + bias.to(torch.int64)


@torch.library.custom_op(f"{_LIB}::qlinear", mutates_args=())
def qlinear(x: Tensor, weight: Tensor, bias: Tensor, mult: Tensor, shift: Tensor, x_zp: int, y_zp: int,
            lo: int, hi: int) -> Tensor:
    return requantize(linear_accumulate(x, weight, bias, x_zp), mult, shift, y_zp, lo, hi)


@qlinear.register_fake
def _(x, weight, bias, mult, shift, x_zp, y_zp, lo, hi):
    return x.new_empty((*x.shape[:-1], weight.shape[0]), dtype=torch.int8)


# ----------------------------------------------------------------------------- elementwise
@torch.library.custom_op(f"{_LIB}::qadd", mutates_args=())
def qadd(a: Tensor, b: Tensor, a_zp: int, a_mult: int, b_zp: int, b_mult: int, shift: int, y_zp: int,
         lo: int, hi: int) -> Tensor:
    """``clip(rshift_round((a − a_zp)·a_mult + (b − b_zp)·b_mult, shift) + y_zp, lo, hi)``."""
    acc = (a.to(torch.int64) - a_zp) * a_mult + (b.to(torch.int64) - b_zp) * b_mult
    return requantize(acc, 1, shift, y_zp, lo, hi)


@qadd.register_fake
def _(a, b, a_zp, a_mult, b_zp, b_mult, shift, y_zp, lo, hi):
    return torch.empty(torch.broadcast_shapes(a.shape, b.shape), dtype=torch.int8, device=a.device)


@torch.library.custom_op(f"{_LIB}::requantize", mutates_args=())
def requantize_op(x: Tensor, x_zp: int, mult: int, shift: int, y_zp: int, lo: int, hi: int) -> Tensor:
    """Change scale/zero point (and clip, e.g. a standalone relu): one-input ``qadd``."""
    return requantize(x.to(torch.int64) - x_zp, mult, shift, y_zp, lo, hi)


@requantize_op.register_fake
def _(x, x_zp, mult, shift, y_zp, lo, hi):
    return torch.empty_like(x, dtype=torch.int8)


# ----------------------------------------------------------------------------- pooling
@torch.library.custom_op(f"{_LIB}::qmax_pool2d", mutates_args=())
def qmax_pool2d(x: Tensor, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
                ceil_mode: bool) -> Tensor:
    """Max over each window (exact on int8; padding never wins)."""
    return F.max_pool2d(x.to(torch.float32), list(kernel), list(stride), list(padding), 1, ceil_mode).to(torch.int8)


def _pool_out(size: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    num = size + 2 * p - k
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:  # the last window must start inside the input
        out -= 1
    return out


@qmax_pool2d.register_fake
def _(x, kernel, stride, padding, ceil_mode):
    ho = _pool_out(x.shape[2], kernel[0], stride[0], padding[0], ceil_mode)
    wo = _pool_out(x.shape[3], kernel[1], stride[1], padding[1], ceil_mode)
    return x.new_empty((x.shape[0], x.shape[1], ho, wo), dtype=torch.int8)


@torch.library.custom_op(f"{_LIB}::qavg_pool2d", mutates_args=())
def qavg_pool2d(x: Tensor, kernel: Sequence[int], zero_point: int) -> Tensor:
    """Mean over non-overlapping ``kernel`` windows (stride = kernel, no padding), rounding half
    up: ``zp + floor((2·Σ(q − zp) + n) / (2n))`` with n = kh·kw."""
    kh, kw = kernel
    nb, c, h, w = x.shape
    v = (x.to(torch.int64) - zero_point)[:, :, : h - h % kh, : w - w % kw]
    s = v.reshape(nb, c, h // kh, kh, w // kw, kw).sum(dim=(3, 5))
    n = kh * kw
    return (torch.div(2 * s + n, 2 * n, rounding_mode="floor") + zero_point).clamp(-128, 127).to(torch.int8)


@qavg_pool2d.register_fake
def _(x, kernel, zero_point):
    nb, c, h, w = x.shape
    return x.new_empty((nb, c, h // kernel[0], w // kernel[1]), dtype=torch.int8)

"""Normative integer semantics of the layers the fpga target lowers (numpy, bit-exact).

These are the definitions the accelerator programs are tested against, and the formulas the
pow2 quantized modules (``QConv2d``, ``QLinear``, ``QAdd``) follow:

* ``rshift_round(v, n)``: ``(v + 2^(n-1)) >> n`` for ``n > 0`` (arithmetic shift = floor,
  i.e. round half up), ``v`` for ``n == 0``, ``v << -n`` for ``n < 0``.
* ``qconv2d``: ``acc = bias[o] + Σ x·w`` over the (zero-padded) window, then
  ``clip(rshift_round(acc, shift[o]), lo, hi)`` as int8; ``groups`` is 1 or C (depthwise).
* ``qlinear``: ``qconv2d`` of ``x[N, C, 1, 1]`` with a 1×1 kernel.
* ``qadd``: ``em = min(ea, eb)``; ``acc = (a << (ea-em)) + (b << (eb-em))``;
  ``clip(rshift_round(acc, ey-em), lo, hi)``.

All arithmetic is int32 with wraparound after every operation (as the accelerator
computes: GEMM accumulation, ADD, SHR); the quantizer keeps values in range, so in practice
the wrap never triggers. Activations are int8 with zero point 0.
"""

from __future__ import annotations

import numpy as np

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def wrap_int32(values) -> np.ndarray:
    """Values reduced modulo 2^32 into the int32 range (two's complement), as int64."""
    values = np.asarray(values, dtype=np.int64)
    return ((values - INT32_MIN) & 0xFFFFFFFF) + INT32_MIN


def rshift_round(values, shift) -> np.ndarray:
    """``rshift_round`` elementwise (``shift`` broadcasts); int32 in, int32 out."""
    values = wrap_int32(values)
    shift = np.asarray(shift, dtype=np.int64)
    if np.any(np.abs(shift) > 31):
        raise ValueError(f"shift amounts must lie in -31..31, got {shift.min()}..{shift.max()}")
    half = np.where(shift > 0, np.int64(1) << np.maximum(shift - 1, 0), 0)
    rounded = wrap_int32(values + half)
    right = rounded >> np.maximum(shift, 0)
    left = wrap_int32(values << np.maximum(-shift, 0))
    return np.where(shift >= 0, right, left).astype(np.int32)


def clip_int8(values, lo: int, hi: int) -> np.ndarray:
    if not -128 <= lo <= hi <= 127:
        raise ValueError(f"clip bounds must satisfy -128 <= lo <= hi <= 127, got {lo}, {hi}")
    return np.clip(values, lo, hi).astype(np.int8)


def _pair(value) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        a, b = value
        return int(a), int(b)
    return int(value), int(value)


def conv_accumulate(x: np.ndarray, w: np.ndarray, bias=None, *, stride=1, padding=0,
                    groups: int = 1) -> np.ndarray:
    """``bias[o] + Σ x·w`` (int32 wraparound) for int8 ``x`` [N,C,H,W], ``w`` [O,C/groups,kh,kw].

    Exact: the products are summed in float64, which is exact below 2^53 (checked)."""
    x, w = np.asarray(x), np.asarray(w)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    if groups not in (1, c) or cg * groups != c or (groups > 1 and o != c):
        raise ValueError(f"groups={groups} with input channels {c} and weight {w.shape} is not "
                         "supported (groups must be 1 or C with one output per channel)")
    if c * kh * kw * 128 * 128 >= 1 << 53:
        raise ValueError("reduction too long for the exact float64 reference")
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw]  # [N, C, Ho, Wo, kh, kw]
    if groups == 1:
        acc = np.einsum("nchwij,ocij->nohw", windows, w.astype(np.float64), optimize=True)
    else:
        acc = np.einsum("nchwij,cij->nchw", windows, w[:, 0].astype(np.float64), optimize=True)
    acc = acc.astype(np.int64)
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)[None, :, None, None]
    return wrap_int32(acc).astype(np.int32)


def qconv2d(x, w, bias, shift, lo: int = -128, hi: int = 127, *, stride=1, padding=0,
            groups: int = 1) -> np.ndarray:
    """Pow2 quantized conv2d (see module doc); ``shift`` is per output channel or a scalar."""
    acc = conv_accumulate(x, w, bias, stride=stride, padding=padding, groups=groups)
    shift = np.broadcast_to(np.asarray(shift, np.int64), (acc.shape[1],))
    return clip_int8(rshift_round(acc, shift[None, :, None, None]), lo, hi)


def qlinear(x, w, bias, shift, lo: int = -128, hi: int = 127) -> np.ndarray:
    """Pow2 quantized linear: x [N, C], w [O, C] -> int8 [N, O]."""
    x, w = np.asarray(x), np.asarray(w)
    return qconv2d(x[:, :, None, None], w[:, :, None, None], bias, shift, lo, hi)[:, :, 0, 0]


def qadd(a, b, ea: int, eb: int, ey: int, lo: int = -128, hi: int = 127) -> np.ndarray:
    """Pow2 quantized add of int8 ``a`` (exponent ``ea``) and ``b`` (``eb``) to exponent ``ey``."""
    em = min(ea, eb)
    a_part = rshift_round(np.asarray(a, np.int64), em - ea)  # left shift by ea - em
    b_part = rshift_round(np.asarray(b, np.int64), em - eb)
    return clip_int8(rshift_round(wrap_int32(a_part.astype(np.int64) + b_part), ey - em), lo, hi)

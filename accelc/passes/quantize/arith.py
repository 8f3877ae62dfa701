"""Integer arithmetic of accelc's int8 semantics — the normative definitions.

Notation: a quantized tensor holds integers ``q`` with a float ``scale`` and an integer
``zero_point``; its real value is ``scale · (q − zero_point)``.

* ``rshift_round(v, n)`` — division by 2ⁿ rounding half up (toward +∞):
  ``(v + 2ⁿ⁻¹) >> n`` with an arithmetic shift for n > 0, ``v`` for n = 0, ``v << −n`` for n < 0.
* ``requantize(acc, m, n, zp, lo, hi)`` = ``clip(rshift_round(acc · m, n) + zp, lo, hi)``,
  computed in int64. A real multiplier M is represented as ``m · 2⁻ⁿ``:
  - scheme ``fixed``: ``m`` is a 31-bit integer in [2³⁰, 2³¹) (``quantize_multiplier``),
  - scheme ``pow2``: every scale is a power of two, so M = 2⁻ⁿ exactly and ``m = 1`` — the
    requantization is ADD 2ⁿ⁻¹, arithmetic SHR n, MIN/MAX: what the VTA ALU can do.
* float → int8 (``Quantize``): ``clip(round_half_even(x · (1/scale)) + zp, qmin, qmax)``, every
  step in float32 with the float32 constant ``1/scale``, then cast.
* int8 → float (``Dequantize``): ``float32(q − zp) · scale``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

INT8_MIN, INT8_MAX = -128, 127
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
MULT_BITS = 31


def rshift_round(v: torch.Tensor, n: torch.Tensor | int) -> torch.Tensor:
    """Divide the int64 tensor ``v`` by 2ⁿ, rounding half up; negative n shifts left."""
    n = torch.as_tensor(n, dtype=torch.int64)
    pos = torch.clamp(n, min=0)
    bias = torch.where(pos > 0, torch.bitwise_left_shift(torch.ones_like(pos), torch.clamp(pos - 1, min=0)),
                       torch.zeros_like(pos))
    right = torch.bitwise_right_shift(v + bias, pos)
    return torch.where(n >= 0, right, torch.bitwise_left_shift(v, torch.clamp(-n, min=0)))


def requantize(acc: torch.Tensor, mult: torch.Tensor | int, shift: torch.Tensor | int, zero_point: int,
               lo: int, hi: int) -> torch.Tensor:
    """``clip(rshift_round(acc · mult, shift) + zero_point, lo, hi)`` as int8 (int64 inside)."""
    v = acc.to(torch.int64) * torch.as_tensor(mult, dtype=torch.int64)
    return torch.clamp(rshift_round(v, shift) + zero_point, lo, hi).to(torch.int8)


def quantize_multiplier(m: float) -> tuple[int, int]:
    """Represent a positive real multiplier as ``(mult, shift)`` with mult·2⁻ˢʰⁱᶠᵗ ≈ m,
    mult ∈ [2³⁰, 2³¹) (31 significant bits), 0 ≤ shift ≤ 62."""
    if not m > 0 or not math.isfinite(m):
        raise ValueError(f"requantization multiplier must be positive and finite, got {m}")
    mantissa, exp = math.frexp(m)  # m = mantissa · 2^exp, mantissa ∈ [0.5, 1)
    mult = round(mantissa * (1 << MULT_BITS))
    shift = MULT_BITS - exp
    if mult == 1 << MULT_BITS:  # rounding overflowed the mantissa
        mult //= 2
        shift -= 1
    if shift > 62:  # tiny multipliers: lose precision rather than overflow the shift
        mult >>= shift - 62
        shift = 62
    if shift < 0:
        raise ValueError(f"requantization multiplier {m} is too large (≥ 2³¹)")
    return int(mult), int(shift)


def pow2_exponent(scale: float) -> int:
    """``log2(scale)`` for a power-of-two scale (raises otherwise)."""
    e = math.log2(scale)
    if e != round(e):
        raise ValueError(f"scale {scale} is not a power of two")
    return int(round(e))


def pow2_ceil(x: float) -> float:
    """The smallest power of two ≥ x (x > 0)."""
    return float(2.0 ** math.ceil(math.log2(x)))


def float32(x: float) -> float:
    """``x`` rounded to float32 (scales are stored and applied in float32)."""
    return float(np.float32(x))

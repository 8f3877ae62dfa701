"""Choosing scales and zero points.

Activations: int8 per tensor, symmetric by default (zero point 0, scale = max|x|/127) or
asymmetric (scale = (max − min)/255, zero point chosen so that real 0 is exact). Weights:
int8 symmetric per output channel (or per tensor), values in [−127, 127]. Bias: int32 at
scale ``input_scale × weight_scale``. Scheme ``pow2`` rounds every scale *up* to a power of
two (so no value clips that did not clip before) and forces symmetric activations.

Degenerate ranges are handled, never turned into NaN: an all-zero range (a constant-zero
activation or an all-zero weight channel) gets scale 1.0, which represents its zeros exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from accelc.passes.quantize.arith import INT8_MAX, INT8_MIN, INT32_MAX, INT32_MIN, float32, pow2_ceil


@dataclass(frozen=True)
class QParams:
    scale: float
    zero_point: int = 0
    qmin: int = INT8_MIN
    qmax: int = INT8_MAX

    def to_dict(self) -> dict:
        return {"scale": self.scale, "zero_point": self.zero_point}


def activation_qparams(lo: float, hi: float, *, symmetric: bool, pow2: bool) -> QParams:
    """QParams covering the real range [lo, hi] (which always includes 0)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"activation range [{lo}, {hi}] is not finite")
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if symmetric or pow2:
        amax = max(-lo, hi)
        if amax == 0.0:
            return QParams(1.0)
        scale = amax / INT8_MAX
        return QParams(pow2_ceil(scale) if pow2 else float32(scale))
    if hi - lo == 0.0:
        return QParams(1.0)
    scale = float32((hi - lo) / (INT8_MAX - INT8_MIN))
    zp = int(round(INT8_MIN - lo / scale))
    return QParams(scale, max(INT8_MIN, min(INT8_MAX, zp)))


def weight_scales(w: torch.Tensor, *, per_channel: bool, pow2: bool) -> torch.Tensor:
    """float64 scales, one per output channel (dim 0) or one repeated for all."""
    flat = w.detach().double().reshape(w.shape[0], -1).abs()
    amax = flat.amax(dim=1) if per_channel else flat.amax().expand(w.shape[0]).clone()
    scales = amax / INT8_MAX
    scales = torch.where(amax > 0, scales, torch.ones_like(scales))
    if pow2:
        scales = torch.tensor([pow2_ceil(float(s)) for s in scales], dtype=torch.float64)
    else:
        scales = scales.float().double()  # representable in float32 (the stored type)
    return scales


def quantize_weight(w: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Symmetric int8 weights in [−127, 127], round half to even."""
    s = scales.reshape(-1, *([1] * (w.dim() - 1)))
    return torch.clamp(torch.round(w.detach().double() / s), -INT8_MAX, INT8_MAX).to(torch.int8)


def quantize_bias(b: torch.Tensor | None, input_scale: float, w_scales: torch.Tensor, out_channels: int,
                  *, layer: str) -> torch.Tensor:
    """int32 bias at scale input_scale · weight_scale[c]; overflow is an error naming the layer."""
    if b is None:
        return torch.zeros(out_channels, dtype=torch.int32)
    q = torch.round(b.detach().double() / (input_scale * w_scales))
    if q.abs().max() > INT32_MAX:
        raise OverflowError(f"{layer}: bias does not fit int32 at scale input×weight; the input scale is tiny "
                            f"({input_scale:.3g}) — calibrate with representative data or skip the layer")
    return q.clamp(INT32_MIN, INT32_MAX).to(torch.int32)

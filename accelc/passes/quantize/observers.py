"""Activation range observers, streaming over calibration batches in bounded memory.

* ``minmax`` — the running minimum and maximum.
* ``percentile(p)`` — clip |x| at its p-th percentile.
* ``mse`` — the clipping threshold that minimises the expected quantization MSE
  (rounding noise Δ²/12 inside the range, squared clipping error outside).
* ``entropy`` — TensorRT's KL-divergence calibration: the threshold whose 128-level
  quantized distribution is closest (KL) to the observed one.

``mse`` and ``entropy`` ignore exact zeros (exactly representable at any scale).

All but ``minmax`` need two passes: the first finds max|x| (the histogram's range), the
second fills a fixed 2048-bin histogram of |x|. Memory per observed tensor is O(bins).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch

BINS = 2048


@dataclass(frozen=True)
class ObserverSpec:
    method: str  # minmax | percentile | mse | entropy
    percentile: float = 99.99

    @property
    def needs_histogram(self) -> bool:
        return self.method != "minmax"

    def __str__(self) -> str:
        return f"percentile({self.percentile:g})" if self.method == "percentile" else self.method


_SPEC = re.compile(r"^(minmax|mse|entropy|percentile)(?:\(([0-9.eE+-]+)\))?$")


def parse_observer(text: str, percentile: float = 99.99) -> ObserverSpec:
    m = _SPEC.match(text.strip())
    if not m or (m.group(2) and m.group(1) != "percentile"):
        raise ValueError("expected minmax, mse, entropy or percentile(p)")
    p = float(m.group(2)) if m.group(2) else percentile
    if not 0.0 < p <= 100.0:
        raise ValueError(f"percentile {p} must be in (0, 100]")
    return ObserverSpec(m.group(1), p)


class Observer:
    """Range statistics of one tensor."""

    def __init__(self, spec: ObserverSpec):
        self.spec = spec
        self.min = math.inf
        self.max = -math.inf
        self.hist: np.ndarray | None = None
        self.count = 0

    def update_range(self, x: torch.Tensor) -> None:
        if x.numel() == 0:
            return
        lo, hi = float(x.min()), float(x.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise FloatingPointError("non-finite values")
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        self.count += x.numel()

    @property
    def amax(self) -> float:
        return max(abs(self.min), abs(self.max)) if self.count else 0.0

    def update_hist(self, x: torch.Tensor) -> None:
        amax = self.amax
        if amax == 0.0:
            return
        v = x.detach().abs().float().flatten()
        if self.spec.method in ("mse", "entropy"):
            # exact zeros (e.g. half of every relu output) are represented exactly at any scale:
            # they carry no quantization error, and as a spike in bin 0 they would drag the
            # KL/MSE optimum towards tiny thresholds
            v = v[v != 0]
        h = torch.histc(v, bins=BINS, min=0.0, max=amax).double().numpy()
        self.hist = h if self.hist is None else self.hist + h

    def range(self) -> tuple[float, float]:
        """The real range to quantize: [min, max], clipped at the threshold for histogram methods."""
        if not self.count:
            return 0.0, 0.0
        if not self.spec.needs_histogram or self.hist is None or self.amax == 0.0:
            return self.min, self.max
        levels = 127 if self.min < 0 else 255  # symmetric signed vs all-nonnegative data
        threshold = _threshold(self.spec, self.hist, self.amax, levels)
        return max(self.min, -threshold), min(self.max, threshold)


def _threshold(spec: ObserverSpec, hist: np.ndarray, amax: float, levels: int) -> float:
    width = amax / len(hist)
    if spec.method == "percentile":
        cdf = np.cumsum(hist) / hist.sum()
        idx = int(np.searchsorted(cdf, spec.percentile / 100.0))
        return min(amax, (idx + 1) * width)
    if spec.method == "mse":
        return _mse_threshold(hist, width, levels)
    return _entropy_threshold(hist, width)


def _mse_threshold(hist: np.ndarray, width: float, levels: int) -> float:
    """argmin over t = i·width of  Σ_inside h·Δ²/12 + Σ_outside h·(c − t)²,  Δ = t/levels."""
    n = len(hist)
    centers = (np.arange(n) + 0.5) * width
    i = np.arange(max(1, n // 16), n + 1)
    t = i * width
    inside = np.concatenate([[0.0], np.cumsum(hist)])[i] * (t / levels) ** 2 / 12.0
    suffix = lambda a: np.concatenate([np.cumsum(a[::-1])[::-1], [0.0]])  # noqa: E731  Σ_{j≥i} a_j
    h, hc, hcc = suffix(hist), suffix(hist * centers), suffix(hist * centers * centers)
    clipped = hcc[i] - 2 * t * hc[i] + t * t * h[i]
    return float(t[int(np.argmin(inside + clipped))])


def _entropy_threshold(hist: np.ndarray, width: float, quant_bins: int = 128) -> float:
    """TensorRT-style: minimise KL(P‖Q) over thresholds i·width, i ≥ quant_bins, where P is the
    histogram clipped at i (outliers folded into the last bin) and Q is the clipped histogram
    merged into ``quant_bins`` levels and spread back uniformly over P's non-empty bins."""
    n = len(hist)
    best, best_i = math.inf, n
    for i in range(quant_bins, n + 1):
        p = hist[:i].copy()
        p[i - 1] += hist[i:].sum()
        total = p.sum()
        if total == 0:
            continue
        nonzero = p != 0
        edges = np.linspace(0, i, quant_bins + 1).astype(int)
        sums = np.add.reduceat(hist[:i], edges[:-1])
        counts = np.add.reduceat(nonzero.astype(np.int64), edges[:-1])
        q = np.repeat(sums / np.maximum(counts, 1), np.diff(edges)) * nonzero
        p_n, q_n = p / total, q / max(q.sum(), 1e-300)
        mask = p_n > 0
        q_n = np.where(q_n > 0, q_n, 1e-12)  # smoothing, as in MXNet/TensorRT calibrators
        kl = float((p_n[mask] * np.log(p_n[mask] / q_n[mask])).sum())
        if kl < best:
            best, best_i = kl, i
    return (best_i + 0.5) * width

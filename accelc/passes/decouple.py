"""Network decoupling (Guo et al., BMVC 2018): a k×k convolution as a sum of depthwise ×
pointwise products, from one SVD per input channel.

For input channel ``c`` the slice ``W[:, c]`` of a weight ``W ∈ R^{Cout×Cin×kh×kw}`` is a
``Cout × k`` matrix (``k = kh·kw``) with SVD ``U Σ Vᵀ``. Keeping ``r`` terms,
``W[:, c] ≈ Σ_{j<r} σ_j u_j v_jᵀ``: ``v_j`` (reshaped kh×kw) is depthwise filter ``c·r + j``
and ``σ_j u_j`` is column ``c·r + j`` of the 1×1 pointwise weight. By Eckart–Young this is
the best rank-r approximation of every slice in Frobenius norm, hence of ``W``; it is exact
when ``r ≥ min(Cout, k)``. The conv's MACs per output pixel drop from ``Cout·Cin·k`` to
``Cin·r·(k + Cout)``.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import torch


@dataclass
class Decoupling:
    """The per-input-channel SVD of one conv weight (float64)."""

    u: torch.Tensor  # Cin × Cout × q (left singular vectors)
    s: torch.Tensor  # Cin × q (singular values, descending)
    vh: torch.Tensor  # Cin × q × k (right singular vectors, as rows)
    kernel: tuple[int, int]

    @classmethod
    def of(cls, weight: torch.Tensor) -> "Decoupling":
        cout, cin, kh, kw = weight.shape
        slices = weight.detach().double().permute(1, 0, 2, 3).reshape(cin, cout, kh * kw)
        u, s, vh = torch.linalg.svd(slices, full_matrices=False)
        return cls(u, s, vh, (kh, kw))

    @property
    def full_rank(self) -> int:
        """``min(Cout, k)``: the rank at which the decoupling is exact."""
        return int(self.s.shape[1])

    def weight_error(self, r: int) -> float:
        """Relative Frobenius error ``‖W − W_r‖ / ‖W‖`` of keeping ``r`` terms."""
        total = float((self.s ** 2).sum())
        return math.sqrt(float((self.s[:, r:] ** 2).sum()) / total) if total > 0 else 0.0

    def factors(self, r: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Depthwise weight ``(Cin·r) × 1 × kh × kw`` and pointwise weight ``Cout × (Cin·r) × 1 × 1``."""
        r = min(r, self.full_rank)
        cin, cout = self.u.shape[0], self.u.shape[1]
        dw = self.vh[:, :r, :].reshape(cin * r, 1, *self.kernel)
        pw = (self.u[:, :, :r] * self.s[:, None, :r]).permute(1, 0, 2).reshape(cout, cin * r, 1, 1)
        return dw, pw


def conv_macs(out_hw: int, cin: int, cout: int, k: int) -> int:
    return out_hw * cin * cout * k


def decoupled_macs(out_hw: int, cin: int, cout: int, k: int, r: int) -> int:
    return out_hw * cin * r * (k + cout)


def max_saving_rank(cin: int, cout: int, k: int, q: int) -> int:
    """The largest ``r ≤ q`` whose decoupled conv has fewer MACs than the conv (0: none)."""
    r = (cout * k - 1) // (k + cout)  # r·(k+cout) < cout·k
    return max(0, min(r, q))


def rank_for_fraction(q: int, rank: float | int) -> int:
    """``rank`` as an int is an absolute rank; as a float in (0, 1] a fraction of ``q``."""
    if isinstance(rank, int):
        return max(1, min(rank, q))
    return max(1, min(q, math.ceil(rank * q - 1e-9)))


def rank_for_tolerance(dec: Decoupling, tol: float) -> int:
    """The smallest rank whose relative weight error is ≤ ``tol``."""
    return next(r for r in range(1, dec.full_rank + 1) if dec.weight_error(r) <= tol or r == dec.full_rank)


@dataclass
class BudgetLayer:
    name: str
    dec: Decoupling
    unit_macs: int  # MACs per unit of rank
    macs: int  # MACs of the original conv
    r_max: int  # largest rank that still saves MACs


def ranks_for_budget(layers: list[BudgetLayer], fraction: float) -> tuple[dict[str, int | None], bool]:
    """Ranks (``None``: keep the conv) minimising the summed relative squared weight error
    subject to ``Σ MACs ≤ fraction · Σ original MACs``.

    Greedy on marginal gain per MAC, from rank 1 everywhere; the last step of a layer is
    "keep the original conv" (error 0). Returns the ranks and whether the budget was met
    (at rank 1 everywhere it may not be).
    """
    budget = fraction * sum(ly.macs for ly in layers)
    rank = {ly.name: 1 for ly in layers}
    spent = sum(ly.unit_macs for ly in layers)
    err = {ly.name: [ly.dec.weight_error(r) ** 2 for r in range(ly.dec.full_rank + 1)] for ly in layers}

    def step(ly: BudgetLayer):
        r = rank[ly.name]
        if r is None:
            return None
        if r < ly.r_max:
            gain, cost = err[ly.name][r] - err[ly.name][r + 1], ly.unit_macs
        else:
            gain, cost = err[ly.name][r], ly.macs - r * ly.unit_macs
        return (-gain / max(cost, 1), ly.name, cost)

    by_name = {ly.name: ly for ly in layers}
    heap = [s for s in (step(ly) for ly in layers) if s is not None]
    heapq.heapify(heap)
    while heap:
        neg_ratio, name, cost = heapq.heappop(heap)
        if neg_ratio >= 0 or spent + cost > budget:
            continue  # no gain, or unaffordable: this layer stays where it is
        ly = by_name[name]
        rank[name] = rank[name] + 1 if rank[name] < ly.r_max else None
        spent += cost
        nxt = step(ly)
        if nxt is not None:
            heapq.heappush(heap, nxt)
    return rank, spent <= budget + 1e-9

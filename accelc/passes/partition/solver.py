"""Optimal contiguous split of a cost sequence into pipeline stages (dynamic programming).

Problem. Items ``0 … n−1`` with compute costs ``c_i`` (seconds), cuts ``0 < p < n`` with
``bytes[p]`` crossing them and a flag ``allowed[p]``. A split into ``S`` stages is
``0 = p_0 < p_1 < … < p_S = n`` with every inner ``p_k`` allowed. Stage ``k`` covers
``[p_k, p_{k+1})`` and takes

    T_k = Σ c_i  +  seconds_per_byte · (bytes[p_k] + bytes[p_{k+1}])       (bytes[0] = bytes[n] = 0)

— its compute, plus the time to receive its inputs and send its outputs across its two
cuts. With ``seconds_per_byte = 2 / bandwidth`` this counts each crossing tensor twice, as
the activation goes forward and its gradient comes back.

Objective. Minimise the bottleneck ``max_k T_k`` (the pipeline's steady-state step time);
among the splits that reach it, minimise the total bytes over the inner cuts. Both are
exact: :func:`split_sequence` returns an optimal split for the given order.

Recurrence: ``F[s][b] = min_{a<b, allowed a} max(F[s−1][a], T(a, b))``, vectorised over
``a``; a second pass ``G[s][b] = min_a G[s−1][a] + bytes[a]`` over the pairs with
``T(a, b) ≤ F*`` picks the least-traffic optimum. O(S·n²) arithmetic, O(S·n) numpy calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Bottlenecks this close count as equal (relative, absolute below 1 s): float rounding, not a
# real difference. Any looser and the least-traffic pass trades real bottleneck for bytes: at
# 1e-9, items costing [2.0, 1e-9] were split after both (2.000000001 s, 0 bytes) instead of
# between them (2.0 s, 1 byte).
_TIE = 1e-12


@dataclass(frozen=True)
class Split:
    """Stage boundaries ``bounds`` (``[0, p_1, …, n]``), each stage's time, and the bottleneck."""

    bounds: tuple[int, ...]
    stage_times: tuple[float, ...]
    bottleneck: float
    cut_bytes: int  # total over the inner cuts


class InfeasibleSplit(ValueError):
    """No split into the requested number of stages respects the allowed cuts."""


def stage_time(compute_prefix: np.ndarray, cut_bytes: np.ndarray, seconds_per_byte: float, a: int, b: int) -> float:
    return float(compute_prefix[b] - compute_prefix[a]) + seconds_per_byte * float(cut_bytes[a] + cut_bytes[b])


def split_sequence(compute: np.ndarray, cut_bytes: np.ndarray, allowed: np.ndarray, stages: int,
                   seconds_per_byte: float) -> Split:
    """The optimal split (see the module docstring).

    ``compute`` has n entries; ``cut_bytes`` and ``allowed`` have n+1 (the ends are ignored).
    Raises :class:`InfeasibleSplit` when fewer than ``stages − 1`` usable cuts exist.
    """
    compute = np.asarray(compute, dtype=np.float64)
    n = len(compute)
    cut_bytes = np.asarray(cut_bytes, dtype=np.float64).copy()
    allowed = np.asarray(allowed, dtype=bool).copy()
    if len(cut_bytes) != n + 1 or len(allowed) != n + 1:
        raise ValueError("cut_bytes and allowed need one entry per cut position 0..n")
    if stages < 1:
        raise ValueError("stages must be at least 1")
    cut_bytes[0] = cut_bytes[n] = 0.0
    allowed[0] = allowed[n] = True
    usable = int(allowed[1:n].sum())
    if stages > n or usable < stages - 1:
        raise InfeasibleSplit(f"cannot make {stages} stages from {n} nodes with {usable} allowed cuts")
    prefix = np.concatenate([[0.0], np.cumsum(compute)])
    beta = float(seconds_per_byte)
    positions = np.arange(n + 1)

    def times_to(b: int) -> np.ndarray:
        """T(a, b) for every a (inf where a ≥ b or a is not an allowed cut)."""
        t = (prefix[b] - prefix) + beta * (cut_bytes + cut_bytes[b])
        t[(positions >= b) | ~allowed] = np.inf
        return t

    # F[s][b]: best bottleneck for items [0, b) in s+1 stages ending with a cut at b
    best = np.full((stages, n + 1), np.inf)
    for b in range(1, n + 1):
        if allowed[b]:
            best[0, b] = stage_time(prefix, cut_bytes, beta, 0, b)
    for s in range(1, stages):
        for b in range(s + 1, n + 1):
            if not allowed[b]:
                continue
            best[s, b] = np.min(np.maximum(best[s - 1], times_to(b)))
    optimum = best[stages - 1, n]
    if not np.isfinite(optimum):
        raise InfeasibleSplit(f"cannot make {stages} stages from {n} nodes within the allowed cuts")
    bounds = _least_traffic(prefix, cut_bytes, allowed, stages, beta, optimum, times_to)
    times = tuple(stage_time(prefix, cut_bytes, beta, a, b) for a, b in zip(bounds, bounds[1:]))
    return Split(bounds, times, max(times), int(sum(cut_bytes[p] for p in bounds[1:-1])))


def _least_traffic(prefix, cut_bytes, allowed, stages, beta, optimum, times_to) -> tuple[int, ...]:
    """Among splits with bottleneck ≤ optimum, the one with the fewest inner-cut bytes."""
    n = len(prefix) - 1
    limit = optimum + _TIE * max(1.0, optimum)
    total = np.full((stages, n + 1), np.inf)
    arg = np.zeros((stages, n + 1), dtype=np.int64)
    for b in range(1, n + 1):
        if allowed[b] and stage_time(prefix, cut_bytes, beta, 0, b) <= limit:
            total[0, b] = 0.0
    for s in range(1, stages):
        for b in range(s + 1, n + 1):
            if not allowed[b]:
                continue
            cand = np.where(times_to(b) <= limit, total[s - 1] + cut_bytes, np.inf)
            a = int(np.argmin(cand))
            total[s, b], arg[s, b] = cand[a], a
    if not np.isfinite(total[stages - 1, n]):  # cannot happen: the optimum itself qualifies
        raise AssertionError("least-traffic pass found no split within the optimal bottleneck")
    bounds = [n]
    for s in range(stages - 1, 0, -1):
        bounds.append(int(arg[s, bounds[-1]]))
    bounds.append(0)
    return tuple(reversed(bounds))

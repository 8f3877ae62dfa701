"""The stage-splitting dynamic program is optimal: it agrees with brute force on small inputs."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelc.passes.partition.solver import InfeasibleSplit, split_sequence, stage_time


def brute_force(compute, cut_bytes, allowed, stages, beta):
    """(best bottleneck, least inner-cut bytes among the best) over every admissible split."""
    n = len(compute)
    prefix = np.concatenate([[0.0], np.cumsum(np.asarray(compute, dtype=np.float64))])
    cb = np.asarray(cut_bytes, dtype=np.float64).copy()
    cb[0] = cb[n] = 0
    best = None
    for cuts in itertools.combinations([p for p in range(1, n) if allowed[p]], stages - 1):
        bounds = (0, *cuts, n)
        bottleneck = max(stage_time(prefix, cb, beta, a, b) for a, b in zip(bounds, bounds[1:]))
        key = (bottleneck, sum(cb[p] for p in cuts))
        tie = best is not None and abs(key[0] - best[0]) <= 1e-12 * max(1, best[0])
        if best is None or (key[0] < best[0] and not tie) or (tie and key[1] < best[1]):
            best = key
    return best


@st.composite
def problems(draw):
    n = draw(st.integers(1, 9))
    stages = draw(st.integers(1, min(n, 4)))
    compute = draw(st.lists(st.floats(0, 100, allow_nan=False), min_size=n, max_size=n))
    cut_bytes = draw(st.lists(st.integers(0, 1000), min_size=n + 1, max_size=n + 1))
    allowed = [True] + draw(st.lists(st.booleans(), min_size=n - 1, max_size=n - 1)) + [True]
    beta = draw(st.sampled_from([0.0, 0.001, 0.05, 1.0]))
    return compute, cut_bytes, allowed, stages, beta


@settings(max_examples=300, deadline=None)
@given(problems())
def test_dynamic_program_matches_brute_force(problem):
    compute, cut_bytes, allowed, stages, beta = problem
    expected = brute_force(compute, cut_bytes, allowed, stages, beta)
    if expected is None:
        with pytest.raises(InfeasibleSplit):
            split_sequence(np.array(compute), np.array(cut_bytes), np.array(allowed), stages, beta)
        return
    split = split_sequence(np.array(compute), np.array(cut_bytes), np.array(allowed), stages, beta)
    assert len(split.bounds) == stages + 1 and split.bounds[0] == 0 and split.bounds[-1] == len(compute)
    assert all(a < b for a, b in zip(split.bounds, split.bounds[1:]))
    assert all(allowed[p] for p in split.bounds[1:-1])
    assert split.bottleneck == pytest.approx(expected[0], rel=1e-9, abs=1e-12)
    assert split.cut_bytes == expected[1]


def test_a_tiny_real_difference_is_not_a_tie():
    """Found by the property above: a split 1e-9 s worse is worse, even if it saves bytes."""
    compute = [0.0, 0.0, 0.0, 0.0, 2.0, 1e-09, 0.0]
    allowed = [True, False, False, False, False, True, True, True]
    split = split_sequence(np.array(compute), np.array([0, 0, 0, 0, 0, 1, 0, 0]), np.array(allowed), 2, 0.0)
    assert split.bounds == (0, 5, 7) and split.bottleneck == 2.0 and split.cut_bytes == 1


def test_balances_equal_layers():
    split = split_sequence(np.ones(8), np.zeros(9), np.ones(9, dtype=bool), 4, 0.0)
    assert split.bounds == (0, 2, 4, 6, 8) and split.bottleneck == 2


def test_communication_moves_the_cut_to_a_narrow_point():
    # equal compute, but the middle cut is expensive: the split moves one item over instead
    cut_bytes = np.array([0, 0, 10, 1000, 10, 0, 0])
    split = split_sequence(np.ones(6), cut_bytes, np.ones(7, dtype=bool), 2, 0.01)
    assert split.bounds in ((0, 2, 6), (0, 4, 6))


def test_too_many_stages_is_infeasible():
    with pytest.raises(InfeasibleSplit):
        split_sequence(np.ones(3), np.zeros(4), np.ones(4, dtype=bool), 4, 0.0)
    with pytest.raises(InfeasibleSplit):
        split_sequence(np.ones(5), np.zeros(6), np.array([True, False, False, False, False, True]), 2, 0.0)

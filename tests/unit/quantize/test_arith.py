"""Integer arithmetic primitives against plain-Python integer definitions."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from accelc.passes.quantize.arith import pow2_ceil, pow2_exponent, quantize_multiplier, requantize, rshift_round
from accelc.passes.quantize.qparams import activation_qparams, quantize_bias, quantize_weight, weight_scales


def _py_rshift_round(v: int, n: int) -> int:
    if n > 0:
        return (v + (1 << (n - 1))) >> n  # Python's >> on ints is floor division by 2^n
    return v << -n if n < 0 else v


@given(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=50), st.integers(-8, 40))
def test_rshift_round_matches_integer_definition(values, n):
    got = rshift_round(torch.tensor(values, dtype=torch.int64), n).tolist()
    assert got == [_py_rshift_round(v, n) for v in values]


def test_rshift_round_is_round_half_up():
    v = torch.tensor([-3, -2, -1, 1, 2, 3, 5, -5])
    assert rshift_round(v, 1).tolist() == [-1, -1, 0, 1, 1, 2, 3, -2]
    assert rshift_round(v, 2).tolist() == [-1, 0, 0, 0, 1, 1, 1, -1]


@given(st.floats(1e-12, 1e3, allow_nan=False))
def test_quantize_multiplier_relative_error(m):
    mult, shift = quantize_multiplier(m)
    assert 0 <= shift <= 62 and 0 < mult < 2**31
    if shift < 62:
        assert 2**30 <= mult
        assert abs(mult * 2.0**-shift - m) / m < 2**-30


def test_quantize_multiplier_rejects_garbage():
    for bad in (0.0, -1.0, math.inf, math.nan, 2.0**32):
        with pytest.raises(ValueError):
            quantize_multiplier(bad)


@given(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=20), st.integers(1, 2**31 - 1),
       st.integers(0, 62), st.integers(-128, 127))
def test_requantize_saturates_to_int8(acc, mult, shift, zp):
    out = requantize(torch.tensor(acc), mult, shift, zp, -128, 127)
    expected = [max(-128, min(127, _py_rshift_round(a * mult, shift) + zp)) for a in acc]
    assert out.dtype == torch.int8 and out.tolist() == expected


@given(st.floats(1e-6, 1e6))
def test_pow2_scales_are_exact_powers_of_two(x):
    s = pow2_ceil(x)
    assert s >= x and s / 2 < x and 2.0 ** pow2_exponent(s) == s
    qp = activation_qparams(-x, x / 3, symmetric=True, pow2=True)
    assert qp.zero_point == 0 and math.log2(qp.scale) == round(math.log2(qp.scale))
    assert qp.scale * 127 >= x


def test_weight_scales_pow2_and_per_channel():
    w = torch.tensor([[0.5, -1.0], [0.0, 0.0], [3.0, 0.1]])
    s = weight_scales(w, per_channel=True, pow2=True)
    assert [math.log2(v) == round(math.log2(v)) for v in s.tolist()] == [True] * 3
    assert s[1] == 1.0  # all-zero channel: a harmless scale, not NaN
    q = quantize_weight(w, s)
    assert q[1].tolist() == [0, 0] and q.abs().max() <= 127
    per_tensor = weight_scales(w, per_channel=False, pow2=False)
    assert torch.all(per_tensor == per_tensor[0]) and per_tensor[0] == pytest.approx(3.0 / 127)


def test_asymmetric_and_degenerate_ranges():
    qp = activation_qparams(0.0, 2.55, symmetric=False, pow2=False)
    assert qp.zero_point == -128 and qp.scale == pytest.approx(0.01)
    assert activation_qparams(0.0, 0.0, symmetric=True, pow2=False).scale == 1.0
    assert activation_qparams(0.0, 0.0, symmetric=False, pow2=True).scale == 1.0
    with pytest.raises(ValueError):
        activation_qparams(0.0, math.inf, symmetric=True, pow2=False)


def test_bias_overflow_is_named():
    with pytest.raises(OverflowError, match="conv9"):
        quantize_bias(torch.tensor([1e6]), 1e-9, torch.tensor([1e-9], dtype=torch.float64), 1, layer="conv9")
    assert quantize_bias(None, 0.1, torch.ones(3, dtype=torch.float64), 3, layer="x").tolist() == [0, 0, 0]
    np.testing.assert_array_equal(quantize_bias(torch.tensor([1.0, -2.5]), 0.5, torch.tensor([1.0, 1.0],
                                                dtype=torch.float64), 2, layer="x").numpy(), [2, -5])

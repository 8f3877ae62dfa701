"""The integer references (checked against plain-Python loops) and the packing layouts."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from accelc.targets.fpga.lower import reference
from accelc.targets.fpga.lower.epilogue import bias_weight_blocks, ones_element
from accelc.targets.fpga.lower.layout import (
    activation_view,
    channel_rows,
    pack_activation,
    pack_depthwise_weights,
    pack_weights,
    unpack_activation,
    unpack_weights,
)
from fpga_lowering import CONFIG


def to_int32(v: int) -> int:
    return (v + (1 << 31)) % (1 << 32) - (1 << 31)


def rshift_round_py(v: int, n: int) -> int:
    if n > 0:
        return to_int32(to_int32(v + (1 << (n - 1))) >> n)
    return to_int32(v << -n) if n < 0 else v


@given(st.lists(st.integers(-(1 << 31), (1 << 31) - 1), min_size=1, max_size=20), st.integers(-31, 31))
def test_rshift_round_matches_the_definition(values, n):
    got = reference.rshift_round(np.array(values, np.int64), n)
    assert got.dtype == np.int32
    assert got.tolist() == [rshift_round_py(v, n) for v in values]


def test_rshift_round_rounds_half_up():
    assert reference.rshift_round(np.array([5, 6, 7, -5, -6, -7]), 1).tolist() == [3, 3, 4, -2, -3, -3]
    assert reference.rshift_round(np.array([3, -3]), 0).tolist() == [3, -3]
    assert reference.rshift_round(np.array([3, -3]), -2).tolist() == [12, -12]
    assert reference.rshift_round(np.array([3]), np.array([2])).tolist() == [1]


def naive_qconv(x, w, bias, shift, lo, hi, stride, padding, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    ho, wo = (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1
    out = np.zeros((n, o, ho, wo), np.int8)
    for b in range(n):
        for oc in range(o):
            channels = [oc] if groups > 1 else range(c)
            for y in range(ho):
                for xx in range(wo):
                    acc = int(bias[oc])
                    for ci_index, ci in enumerate(channels):
                        for i in range(kh):
                            for j in range(kw):
                                yy, xi = y * stride - padding + i, xx * stride - padding + j
                                if 0 <= yy < h and 0 <= xi < wd:
                                    acc += int(x[b, ci, yy, xi]) * int(w[oc, 0 if groups > 1 else ci_index, i, j])
                    out[b, oc, y, xx] = min(max(rshift_round_py(to_int32(acc), int(shift[oc])), lo), hi)
    return out


@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("stride, padding, k", [(1, 1, 3), (2, 0, 1), (2, 2, 5)])
def test_qconv2d_matches_loops(stride, padding, k, groups):
    rng = np.random.default_rng(k + stride + groups)
    x = rng.integers(-128, 128, (2, 4, 7, 6), dtype=np.int8)
    w = rng.integers(-128, 128, (4, 4 // groups, k, k), dtype=np.int8)
    bias, shift = rng.integers(-5000, 5000, 4), rng.integers(0, 12, 4)
    got = reference.qconv2d(x, w, bias, shift, -3, 100, stride=stride, padding=padding, groups=groups)
    np.testing.assert_array_equal(got, naive_qconv(x, w, bias, shift, -3, 100, stride, padding, groups))


def test_qconv2d_accumulator_wraps_like_int32():
    x = np.full((1, 1, 1, 1), 127, np.int8)
    w = np.full((1, 1, 1, 1), 127, np.int8)
    acc = reference.conv_accumulate(x, w, [(1 << 31) - 100])
    assert acc.item() == to_int32((1 << 31) - 100 + 127 * 127)


def test_qlinear_is_a_1x1_conv():
    rng = np.random.default_rng(0)
    x, w = rng.integers(-128, 128, (3, 20), dtype=np.int8), rng.integers(-128, 128, (5, 20), dtype=np.int8)
    bias, shift = rng.integers(-999, 999, 5), rng.integers(0, 9, 5)
    expected = naive_qconv(x[:, :, None, None], w[:, :, None, None], bias, shift, 0, 6, 1, 0, 1)[:, :, 0, 0]
    np.testing.assert_array_equal(reference.qlinear(x, w, bias, shift, 0, 6), expected)


@given(st.integers(-6, 6), st.integers(-6, 6), st.integers(-8, 8), st.sampled_from([(-128, 127), (0, 127)]))
def test_qadd_matches_the_definition(ea, eb, ey, clip):
    rng = np.random.default_rng(0)
    a, b = rng.integers(-128, 128, 50, dtype=np.int8), rng.integers(-128, 128, 50, dtype=np.int8)
    em = min(ea, eb)
    expected = [min(max(rshift_round_py((int(p) << (ea - em)) + (int(q) << (eb - em)), ey - em), clip[0]), clip[1])
                for p, q in zip(a, b)]
    assert reference.qadd(a, b, ea, eb, ey, *clip).tolist() == expected


def test_bias_blocks_reproduce_the_bias_through_the_constant_element():
    u = ones_element(CONFIG)[0].astype(np.int64)
    limit = 127 * 127 * (CONFIG.BLOCK_IN - 1) + 63
    bias = np.array([0, 1, -1, 63, -64, 127, 128, -129, 12345, -98765, limit, -limit - 1 + 127])
    blocks = bias_weight_blocks(bias, CONFIG.BLOCK_OUT, CONFIG.BLOCK_IN)
    got = (blocks.astype(np.int64) @ u).reshape(-1)[: bias.size]
    np.testing.assert_array_equal(got, bias)
    assert bias_weight_blocks(np.array([limit + 1]), CONFIG.BLOCK_OUT, CONFIG.BLOCK_IN) is None
    assert bias_weight_blocks(np.array([200]), 1, 1) is None
    np.testing.assert_array_equal(bias_weight_blocks(np.array([-128, 127]), 1, 1).ravel(), [-128, 127])


@pytest.mark.parametrize("batch, block", [(1, 16), (2, 8)])
@pytest.mark.parametrize("shape", [(3, 20, 5, 4), (1, 16, 1, 1), (5, 33)])
def test_activation_packing_round_trips(batch, block, shape):
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, shape, dtype=np.int8)
    packed = pack_activation(x, batch, block)
    n, c, h, w = activation_view(shape, batch)
    assert packed.shape == (-(-n // batch), -(-c // block), h, w, batch, block)
    np.testing.assert_array_equal(unpack_activation(packed, shape, batch, block), x)
    x4 = x.T[None, :, None, :] if (len(shape) == 2 and batch == 1) else x.reshape(n, c, h, w)
    flat = packed.reshape(-1, batch, block)
    for nb, cb, y, xx, b, k in [(0, packed.shape[1] - 1, h - 1, w - 1, batch - 1, 3), (0, 0, 0, 0, 0, block - 1)]:
        element = ((nb * packed.shape[1] + cb) * h + y) * w + xx  # ((n·Cb + c)·H + y)·W + x
        sample, channel = nb * batch + b, cb * block + k
        expected = x4[sample, channel, y, xx] if sample < n and channel < c else 0
        assert flat[element, b, k] == expected


def test_linear_view_puts_samples_along_the_row_on_batch1():
    assert activation_view((5, 33), 1) == (1, 33, 1, 5)
    assert activation_view((5, 33), 2) == (5, 33, 1, 1)


def test_weight_packing():
    rng = np.random.default_rng(2)
    w = rng.integers(-128, 128, (20, 18, 3, 3), dtype=np.int8)
    packed = pack_weights(w, 16, 16)
    assert packed.shape == (2, 2, 3, 3, 16, 16)
    assert packed[1, 0, 2, 1, 3, 5] == w[19, 5, 2, 1]  # [out][in] inside a block
    assert packed[1, 1, 0, 0, 4, 2] == 0  # padded output channel
    np.testing.assert_array_equal(unpack_weights(packed, w.shape), w)
    dw = rng.integers(-128, 128, (20, 1, 3, 3), dtype=np.int8)
    blocks = pack_depthwise_weights(dw, 16)
    assert blocks.shape == (2, 1, 3, 3, 16, 16)
    assert blocks[1, 0, 2, 2, 3, 3] == dw[19, 0, 2, 2] and blocks[1, 0, 2, 2, 3, 2] == 0
    assert np.count_nonzero(blocks) == np.count_nonzero(dw)


def test_channel_rows_replicate_over_the_batch():
    rows = channel_rows(np.arange(20), 2, 16)
    assert rows.shape == (2, 2, 16) and rows.dtype == np.int32
    assert rows[1, 1, 3] == 19 and rows[1, 0, 4] == 0 and rows[0, 0, 7] == rows[0, 1, 7] == 7

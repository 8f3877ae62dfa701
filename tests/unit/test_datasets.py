"""accelc.datasets: the built-in digits data set and the .npz data format."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from accelc import datasets
from accelc.datasets import MEAN, NUM_CLASSES, SPLITS, STD, load_digits, split_indices, write_npz

SIZES = {"train": 1438, "test": 359, "calib": 256, "all": 1797}


@pytest.mark.parametrize("split", SPLITS)
def test_shapes_and_dtypes(split):
    x, y = load_digits(split)
    assert x.shape == (SIZES[split], 1, 28, 28) and x.dtype == np.float32
    assert y.shape == (SIZES[split],) and y.dtype == np.int64
    assert x.flags.c_contiguous and x.flags.writeable and y.flags.writeable
    assert set(np.unique(y)) == set(range(NUM_CLASSES))


def test_default_split_is_test_and_size_is_configurable():
    x, y = load_digits()
    assert len(x) == SIZES["test"]
    assert load_digits("calib", size=16)[0].shape == (256, 1, 16, 16)


def test_splits_partition_the_data():
    train, test, calib, all_ = (set(split_indices(s).tolist()) for s in ("train", "test", "calib", "all"))
    assert train.isdisjoint(test) and train | test == all_ == set(range(1797))
    assert calib <= train
    for s in SPLITS:
        idx = split_indices(s)
        assert np.all(np.diff(idx) > 0), "splits are in ascending index order"


def test_splits_are_stratified():
    labels = load_digits("all")[1]
    per_class = np.bincount(labels)
    test_counts = np.bincount(load_digits("test")[1], minlength=NUM_CLASSES)
    np.testing.assert_array_equal(test_counts, np.round(0.2 * per_class).astype(int))
    calib_counts = np.bincount(load_digits("calib")[1], minlength=NUM_CLASSES)
    assert calib_counts.min() >= 25 and calib_counts.max() <= 26


def test_splits_are_deterministic():
    before = {s: split_indices(s).copy() for s in SPLITS}
    x1, y1 = load_digits("calib")
    split_indices.cache_clear()
    datasets._raw.cache_clear()
    for s in SPLITS:
        np.testing.assert_array_equal(split_indices(s), before[s])
    x2, y2 = load_digits("calib")
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    # Pinned: the first test images, so that a change in the split can't go unnoticed.
    assert split_indices("test")[:5].tolist() == [3, 7, 13, 19, 36]
    assert split_indices("calib")[:5].tolist() == [2, 4, 6, 14, 15]


def test_preprocessing():
    from sklearn.datasets import load_digits as sk_load_digits

    raw = sk_load_digits()
    x8, y = load_digits("all", size=8)  # no resampling: just /16 and normalisation
    np.testing.assert_allclose(x8[:, 0] * STD + MEAN, raw.images / 16, atol=1e-6)
    np.testing.assert_array_equal(y, raw.target)
    # MEAN/STD are the train split's statistics at 28×28.
    x, _ = load_digits("train")
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-3
    assert np.isclose(x.min(), -MEAN / STD, atol=1e-5)


def test_returned_arrays_are_copies():
    x, y = load_digits("test")
    x[:] = 0
    y[:] = -1
    x2, y2 = load_digits("test")
    assert x2.std() > 0.5 and y2.min() == 0


@pytest.mark.parametrize("kwargs", [{"split": "validation"}, {"size": 0}, {"size": 2.5}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        load_digits(**kwargs)


def test_npz_round_trip_and_determinism(tmp_path):
    x, y = load_digits("calib")
    a, b = tmp_path / "a.npz", tmp_path / "b"
    write_npz(a, x, y)
    write_npz(b, x, y)  # no suffix is added
    assert b.is_file() and a.read_bytes() == b.read_bytes()
    with np.load(a) as f:
        assert sorted(f.files) == ["inputs", "labels"]
        np.testing.assert_array_equal(f["inputs"], x)
        np.testing.assert_array_equal(f["labels"], y)
        assert f["inputs"].dtype == np.float32 and f["labels"].dtype == np.int64
    write_npz(a, x[:3])
    with np.load(a) as f:
        assert f.files == ["inputs"]
        np.testing.assert_array_equal(f["inputs"], x[:3])


@settings(max_examples=25, deadline=None)
@given(inputs=hnp.arrays(st.sampled_from([np.float32, np.float64, np.int8, np.uint8]),
                         hnp.array_shapes(min_dims=1, max_dims=4, max_side=5)),
       with_labels=st.booleans())
def test_npz_round_trip_any_array(tmp_path_factory, inputs, with_labels):
    path = tmp_path_factory.mktemp("npz") / "data.npz"
    labels = np.arange(len(inputs), dtype=np.int32) if with_labels else None
    write_npz(path, inputs, labels)
    with np.load(path) as f:
        np.testing.assert_array_equal(f["inputs"], inputs)
        assert f["inputs"].dtype == inputs.dtype
        if with_labels:
            np.testing.assert_array_equal(f["labels"], labels)
            assert f["labels"].dtype == np.int64
        else:
            assert "labels" not in f.files


@pytest.mark.parametrize("inputs, labels", [
    (np.zeros((3, 2)), np.zeros(2, dtype=np.int64)),      # wrong length
    (np.zeros((3, 2)), np.zeros((3, 1), dtype=np.int64)),  # wrong rank
    (np.zeros((3, 2)), np.zeros(3)),                       # not integers
    (np.float32(1.0), None),                               # no batch dimension
])
def test_npz_rejects_bad_arrays(tmp_path, inputs, labels):
    with pytest.raises(ValueError):
        write_npz(tmp_path / "bad.npz", inputs, labels)

"""Built-in data: scikit-learn's bundled 8×8 handwritten ``digits`` (no download needed).

The 1797 images ship inside scikit-learn, so every example, test and benchmark has real
labelled data on an offline machine. :func:`load_digits` turns them into MNIST-like
inputs for the example models:

1. pixel values 0..16 are scaled to [0, 1] (``/ 16``);
2. the 8×8 image is upsampled to ``size × size`` with bilinear interpolation
   (``torch.nn.functional.interpolate``, ``align_corners=False``);
3. the result is normalised as ``(x - MEAN) / STD``.

``MEAN`` and ``STD`` are fixed constants, computed once from the ``"train"`` split at
``size=28`` after steps 1–2 and written down here so that preprocessing never depends on
which split is loaded (the same constants are used for every ``size``).

Splits are deterministic and stratified by class; they depend only on ``SEED``:

========  =====  ==============================================================
split     N      contents
========  =====  ==============================================================
train     1438   per class, all images not in ``test``
test      359    per class, ``round(0.2 × n_class)`` images chosen by ``SEED``
calib     256    a fixed, class-balanced subset of ``train`` (25–26 per class),
                 for quantisation calibration
all       1797   every image, in scikit-learn's order
========  =====  ==============================================================

Every split is returned in ascending order of the image's index in scikit-learn's data.

The tool's data format (see :func:`write_npz`) is an ``.npz`` holding ``inputs`` (N × input
shape) and, optionally, ``labels`` (N,).
"""

from __future__ import annotations

import os
import zipfile
from functools import lru_cache

import numpy as np

#: Split names accepted by :func:`load_digits`.
SPLITS = ("train", "test", "calib", "all")
NUM_CLASSES = 10
#: Default image side; the example digit models take ``(N, 1, 28, 28)``.
IMAGE_SIZE = 28
#: Seed of the train/test/calib split (``numpy.random.RandomState``, whose stream is frozen).
SEED = 0
TEST_FRACTION = 0.2
CALIB_SIZE = 256
#: Normalisation constants: mean and standard deviation of the "train" split's pixels after
#: ``/ 16`` and bilinear upsampling to 28×28 (see the module docstring).
MEAN = 0.3058
STD = 0.3251


@lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: images (1797, 8, 8) float32 in [0, 1] and int64 labels."""
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    labels = bunch.target.astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


@lru_cache(maxsize=None)
def split_indices(split: str) -> np.ndarray:
    """Sorted indices (into scikit-learn's digits) of the images in ``split``."""
    if split not in SPLITS:
        raise ValueError(f"unknown digits split {split!r}; expected one of {', '.join(SPLITS)}")
    labels = _raw()[1]
    if split == "all":
        idx = np.arange(len(labels))
    elif split in ("train", "test"):
        rng = np.random.RandomState(SEED)
        test = []
        for c in range(NUM_CLASSES):
            members = np.flatnonzero(labels == c)
            n_test = int(round(TEST_FRACTION * len(members)))
            test.append(rng.permutation(members)[:n_test])
        test_idx = np.sort(np.concatenate(test))
        idx = test_idx if split == "test" else np.setdiff1d(np.arange(len(labels)), test_idx)
    else:  # calib: deal the train images round-robin over the classes, keep the first ones
        train = split_indices("train")
        rng = np.random.RandomState(SEED + 1)
        rank = np.empty(len(train), dtype=np.int64)  # position within its class, shuffled
        for c in range(NUM_CLASSES):
            members = np.flatnonzero(labels[train] == c)
            rank[members] = rng.permutation(len(members))
        order = np.lexsort((labels[train], rank))  # by rank, then by class
        idx = np.sort(train[order[:CALIB_SIZE]])
    idx = idx.astype(np.int64)
    idx.flags.writeable = False
    return idx


def load_digits(split: str = "test", size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one split of the digits data set.

    Returns ``(images, labels)``: float32 ``(N, 1, size, size)`` normalised images (see the
    module docstring for the preprocessing) and int64 ``(N,)`` labels in ``0..9``. The
    arrays are fresh copies; callers may modify them.
    """
    import torch
    import torch.nn.functional as F

    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    idx = split_indices(split)
    images, labels = _raw()
    x = torch.from_numpy(images[idx].copy()).unsqueeze(1)  # (N, 1, 8, 8)
    if size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x - MEAN) / STD
    return np.ascontiguousarray(x.numpy(), dtype=np.float32), labels[idx].copy()


def write_npz(path: str | os.PathLike, inputs: np.ndarray, labels: np.ndarray | None = None) -> None:
    """Write the tool's data format: an ``.npz`` with ``inputs`` and optional ``labels``.

    ``inputs`` is ``N × input shape``; ``labels``, if given, has shape ``(N,)`` and is stored
    as int64. The file is written byte-for-byte deterministically (fixed member order and
    timestamps, no compression, no pickles) at exactly ``path`` (no suffix is added), so
    it loads with ``numpy.load(path)``.
    """
    inputs = np.asarray(inputs)
    if inputs.ndim < 1:
        raise ValueError("inputs must have a leading batch dimension")
    arrays = {"inputs": np.ascontiguousarray(inputs)}
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(inputs),):
            raise ValueError(f"labels must have shape ({len(inputs)},) to match inputs, got {labels.shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
        arrays["labels"] = np.ascontiguousarray(labels, dtype=np.int64)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)

"""The tool's data files: ``.npz`` with ``inputs`` (N × input shape; several inputs:
``inputs_0``, ``inputs_1``, …) and optionally ``labels`` (N), or a single ``.npy`` array.

``digits`` (or ``digits:train|test|calib|all``) names the built-in dataset: scikit-learn's
8×8 digits, upsampled to the model's input size (see :mod:`accelc.datasets`).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from accelc.compiler.inputs import InputSpec
from accelc.errors import DataError

BUILTIN = "digits"


@dataclass
class Dataset:
    inputs: tuple[np.ndarray, ...]  # one array per model input, each N × per-sample shape
    labels: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return int(self.inputs[0].shape[0])

    def batches(self, batch: int, *, limit: int | None = None, pad: bool = False) -> Iterator[tuple[torch.Tensor, ...]]:
        """Consecutive batches of ``batch`` samples (the artifact's static batch size).

        With ``pad``, a short last batch is padded by repeating its last sample (callers drop
        the padded rows); otherwise it is dropped.
        """
        n = len(self) if limit is None else min(limit, len(self))
        for start in range(0, n, batch):
            stop = min(start + batch, n)
            if stop - start < batch and not pad:
                break
            parts = []
            for arr in self.inputs:
                chunk = arr[start:stop]
                if stop - start < batch:
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - (stop - start), axis=0)])
                parts.append(torch.from_numpy(np.ascontiguousarray(chunk)))
            yield tuple(parts)


def _builtin(name: str, specs: Sequence[InputSpec], role: str) -> Dataset:
    from accelc.datasets import load_digits

    _, _, split = name.partition(":")
    split = split or {"calib": "calib", "eval": "test", "train": "train"}.get(role, "test")
    if len(specs) != 1 or len(specs[0].shape) != 4 or specs[0].shape[1] != 1 or specs[0].shape[2] != specs[0].shape[3]:
        raise DataError(f"the built-in digits data fits models with one 1×S×S image input; this model takes "
                        f"{', '.join(map(str, specs))}", hint="pass your own data as an .npz file")
    try:
        x, y = load_digits(split=split, size=specs[0].shape[2])
    except ValueError as e:
        raise DataError(f"{name}: {e}", hint="splits: train, test, calib, all") from None
    return Dataset((x.astype(np.float32),), y.astype(np.int64), f"digits:{split}")


def load_dataset(path: str | Path, specs: Sequence[InputSpec], *, option: str = "--data", role: str = "eval") -> Dataset:
    """Load and validate a data file for a model whose inputs are ``specs``."""
    text = str(path)
    if text == BUILTIN or text.startswith(BUILTIN + ":"):
        ds = _builtin(text, specs, role)
    else:
        ds = _read_file(Path(text), len(specs), option)
    check_fits(ds, specs, option)
    return ds


def _read_file(path: Path, n_inputs: int, option: str) -> Dataset:
    if not path.is_file():
        raise DataError(f"{option} {path}: no such file")
    try:
        if path.suffix == ".npy":
            return Dataset((np.load(path, allow_pickle=False),), None, str(path))
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if n_inputs == 1 and "inputs" in keys:
                inputs = (z["inputs"],)
            else:
                names = [f"inputs_{i}" for i in range(n_inputs)]
                missing = [k for k in names if k not in keys]
                if missing:
                    want = "'inputs'" if n_inputs == 1 else ", ".join(repr(n) for n in names)
                    raise DataError(f"{option} {path}: no array {want} (found: {', '.join(sorted(keys)) or 'none'})",
                                    hint="save with np.savez(path, inputs=X, labels=y)")
                inputs = tuple(z[k] for k in names)
            labels = z["labels"] if "labels" in keys else None
    except DataError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{option} {path}: not a readable .npz/.npy file ({e})",
                        hint="save with np.savez(path, inputs=X, labels=y); object arrays are refused") from None
    return Dataset(inputs, labels, str(path))


def check_fits(ds: Dataset, specs: Sequence[InputSpec], option: str) -> None:
    """Reject empty data, wrong per-sample shapes, NaN/Inf, and label count mismatches."""
    if len(ds.inputs) != len(specs):
        raise DataError(f"{option} {ds.source}: has {len(ds.inputs)} input arrays, the model takes {len(specs)}")
    n = ds.inputs[0].shape[0] if ds.inputs[0].ndim else 0
    if n == 0:
        raise DataError(f"{option} {ds.source}: is empty (0 samples)")
    converted = []
    for i, (arr, spec) in enumerate(zip(ds.inputs, specs)):
        want = tuple(spec.shape[1:])
        if arr.ndim != len(spec.shape) or tuple(arr.shape[1:]) != want or arr.shape[0] != n:
            raise DataError(f"{option} {ds.source}: input {i} has shape {tuple(arr.shape)}, expected N×"
                            f"{'×'.join(map(str, want))} (the model's input is {spec})",
                            hint="the first axis is the sample axis; the rest must match the model input")
        if arr.dtype.kind == "f":
            if not np.isfinite(arr).all():
                bad = int((~np.isfinite(arr)).sum())
                raise DataError(f"{option} {ds.source}: input {i} contains {bad} NaN/Inf values",
                                hint="clean or drop those samples")
        elif arr.dtype.kind not in "iub":
            raise DataError(f"{option} {ds.source}: input {i} has dtype {arr.dtype}; expected numbers")
        converted.append(arr.astype(torch.empty(0, dtype=spec.dtype).numpy().dtype, copy=False))
    ds.inputs = tuple(converted)
    if ds.labels is not None and (ds.labels.ndim != 1 or ds.labels.shape[0] != n):
        raise DataError(f"{option} {ds.source}: labels have shape {tuple(ds.labels.shape)}, expected ({n},)")

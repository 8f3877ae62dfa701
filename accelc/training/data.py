"""Training data: the tool's ``.npz`` format (or ``digits``), and which samples each step uses.

Sampling is a pure function of ``(seed, step)``: epoch ``e`` visits the samples in the order
``default_rng([seed, e]).permutation(N)``, step ``i`` of the epoch takes the next
``batch_size`` of them (the incomplete tail of an epoch is skipped), and replica ``r`` of
``D`` takes the ``r``-th contiguous ``batch_size / D`` of the step's batch; the pipeline
schedule then splits a replica's share into equal contiguous microbatches. So a resumed
run sees exactly the batches the uninterrupted run would have, and single-process training
on the same batches is the reference for the distributed result.
"""

from __future__ import annotations

import zipfile

import numpy as np
import torch

from accelc.compiler.data import BUILTIN, Dataset, load_dataset
from accelc.compiler.inputs import InputSpec
from accelc.errors import DataError, UsageError


def _specs_from_file(path: str) -> list[InputSpec]:
    try:
        with np.load(path, allow_pickle=False) as z:
            names = ["inputs"] if "inputs" in z.files else sorted(
                (k for k in z.files if k.startswith("inputs_")), key=lambda k: int(k.split("_")[1]))
            arrays = [z[k] for k in names]
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"--train {path}: not a readable .npz file ({e})",
                        hint="save with np.savez(path, inputs=X, labels=y)") from None
    if not arrays:
        raise DataError(f"--train {path}: no 'inputs' array", hint="save with np.savez(path, inputs=X, labels=y)")
    return [InputSpec((1, *a.shape[1:]), torch.from_numpy(a[:0]).dtype) for a in arrays]


def load_training_data(source: str, input_shapes: list[str] | None) -> Dataset:
    """Labelled samples from ``source``; per-sample shapes from the file unless ``input_shapes``."""
    if input_shapes:
        specs = [InputSpec.parse(s) for s in input_shapes]
    elif source == BUILTIN or source.startswith(BUILTIN + ":"):
        raise UsageError("--train digits needs the model's input shape", hint="pass --input-shape 1x1x8x8 (or 1x1x28x28…)")
    else:
        specs = _specs_from_file(source)
    ds = load_dataset(source, specs, option="--train", role="train")
    if ds.labels is None:
        raise DataError(f"--train {ds.source}: has no 'labels' array; training needs labels")
    return ds


def steps_per_epoch(n_samples: int, batch_size: int) -> int:
    steps = n_samples // batch_size
    if steps == 0:
        raise DataError(f"the training data has {n_samples} samples, fewer than one batch ({batch_size})",
                        hint="lower --batch-size")
    return steps


def batch_indices(n_samples: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """Indices of the global batch of ``step`` (see the module docstring)."""
    epoch, i = divmod(step, steps_per_epoch(n_samples, batch_size))
    order = np.random.default_rng([seed, epoch]).permutation(n_samples)
    return order[i * batch_size:(i + 1) * batch_size]


def replica_batch(ds: Dataset, indices: np.ndarray, replica: int, replicas: int
                  ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """Replica ``replica``'s share of a global batch: model inputs and labels."""
    share = len(indices) // replicas
    mine = indices[replica * share:(replica + 1) * share]
    inputs = tuple(torch.from_numpy(np.ascontiguousarray(a[mine])) for a in ds.inputs)
    return inputs, torch.from_numpy(np.ascontiguousarray(ds.labels[mine]))

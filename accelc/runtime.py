"""Running artifacts on data sets: batching N samples through a static-batch artifact,
accuracy, and latency measurement. Used by ``accelc run``, the demo and benchmarks."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from accelc.compiler.data import Dataset
from accelc.errors import DataError
from accelc.progress import progress


def run_dataset(run: Callable[[list[np.ndarray]], list[np.ndarray]], ds: Dataset, batch: int,
                *, quiet: bool = True) -> list[np.ndarray]:
    """Outputs for every sample of ``ds`` (padded last batch trimmed), concatenated per output."""
    n = len(ds)
    chunks: list[list[np.ndarray]] = []
    batches = ds.batches(batch, pad=True)
    for b in progress(batches, desc="run", total=-(-n // batch), quiet=quiet):
        chunks.append(run([t.numpy() for t in b]))
    return [np.concatenate([c[i] for c in chunks])[:n] for i in range(len(chunks[0]))]


def as_dataset(arrays: Sequence[np.ndarray], input_shapes: Sequence[Sequence[int]], labels=None, source="input") -> tuple[Dataset, bool]:
    """Interpret user arrays as either one exact-shape call or N samples; returns (dataset, batched)."""
    arrays = [np.asarray(a) for a in arrays]
    if len(arrays) != len(input_shapes):
        raise DataError(f"{source}: {len(arrays)} input array(s), the artifact takes {len(input_shapes)}")
    if all(list(a.shape) == list(s) for a, s in zip(arrays, input_shapes)):
        return Dataset(tuple(arrays), labels, source), False
    for a, s in zip(arrays, input_shapes):
        if list(a.shape[1:]) != list(s[1:]):
            raise DataError(f"{source}: array of shape {tuple(a.shape)} fits neither the artifact's input "
                            f"{tuple(s)} nor N×{tuple(s[1:])}",
                            hint="artifacts are static-shape; recompile with another --input-shape")
    return Dataset(tuple(arrays), labels, source), True


@dataclass
class Latency:
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int

    def to_dict(self) -> dict:
        return {"median_ms": self.median_ms, "p10_ms": self.p10_ms, "p90_ms": self.p90_ms, "runs": self.runs}


def measure(fn: Callable[[], object], *, runs: int = 50, warmup: int = 5, min_seconds: float = 0.0) -> Latency:
    """Median wall-clock latency of ``fn()`` after warm-up."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < runs or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    q = lambda p: times[min(len(times) - 1, int(p * len(times)))]  # noqa: E731
    return Latency(round(statistics.median(times), 4), round(q(0.1), 4), round(q(0.9), 4), len(times))

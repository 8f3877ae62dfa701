"""Running data sets through a graph in large batches when the graph allows it.

Artifacts are static-shape, but the fx graph that passes and reports run in PyTorch often
accepts any batch size. Calibrating or evaluating 256 images one by one costs 256 Python
round trips through the graph; when one batched call gives the same per-sample outputs it is
used instead. The check is made once per graph: run the first ``n`` samples as one batch and
compare with per-sample runs (they must agree to 1e-5, exactly for int8 graphs); any error or
disagreement falls back to the graph's own batch size.
"""

from __future__ import annotations

import torch
import torch.fx as fx

from accelc.compiler.data import Dataset
from accelc.compiler.verify import flat_outputs

LARGE = 64


def batch_size_for(gm: fx.GraphModule, ds: Dataset, base: int, large: int = LARGE) -> int:
    """``large`` (rounded to a multiple of ``base``) if ``gm`` runs batches of that size
    correctly on ``ds``, else ``base``."""
    n = min(len(ds), (large // base) * base)
    if n <= base:
        return base
    try:
        with torch.no_grad():
            (big,) = list(ds.batches(n, limit=n))
            together = flat_outputs(gm(*big))
            singles = [flat_outputs(gm(*b)) for b in ds.batches(base, limit=2 * base)]
    except Exception:  # noqa: BLE001 - a graph specialised to its batch size fails in many ways
        return base
    for i, outs in enumerate(singles):
        for t, s in zip(together, outs):
            if t.shape[0] != n or not torch.allclose(t[i * base:(i + 1) * base].double(), s.double(),
                                                     rtol=1e-5, atol=1e-5):
                return base
    return n


def dataset_batches(gm: fx.GraphModule, ds: Dataset, base: int, *, limit: int | None = None) -> list[tuple]:
    """All of ``ds`` (up to ``limit`` samples) in the largest batches ``gm`` handles; the last
    batch is padded by repeating its last sample, as :meth:`Dataset.batches` does."""
    size = batch_size_for(gm, ds, base)
    return list(ds.batches(size, limit=limit, pad=True))

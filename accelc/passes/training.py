"""What the data-driven passes share: batches of a Dataset as tensors, the graph's class
scores as logits, and the loss against labels.

Used by ``distill`` (fine-tuning), ``prune(criterion=taylor)`` (gradients) and
``dsconv(refine=true)`` (activations). Graphs are static-shape after capture only where a
model folded its batch size into a literal (``x.view(1, -1)``); :func:`batch_size_for`
finds out and falls back to the example batch size, so every pass works on every graph.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F

from accelc.compiler.data import Dataset
from accelc.compiler.verify import flat_outputs
from accelc.errors import UsageError

Batch = tuple[tuple[torch.Tensor, ...], "torch.Tensor | None"]


def batches(ds: Dataset, batch: int, *, seed: int | None = None, limit: int | None = None) -> Iterator[Batch]:
    """``(inputs, labels)`` batches of ``ds`` (labels ``None`` when it has none); shuffled by
    ``seed`` when given. A short last batch is dropped unless it is the only one."""
    n = len(ds) if limit is None else min(limit, len(ds))
    order = np.arange(len(ds))
    if seed is not None:
        order = np.random.default_rng(seed).permutation(len(ds))
    order = order[:n]
    stops = list(range(batch, n + 1, batch)) or [n]
    for stop in stops:
        idx = order[stop - batch if stop >= batch else 0:stop]
        inputs = tuple(torch.from_numpy(np.ascontiguousarray(a[idx])) for a in ds.inputs)
        labels = torch.from_numpy(np.asarray(ds.labels[idx], dtype=np.int64)) if ds.labels is not None else None
        yield inputs, labels


def batch_size_for(gm: fx.GraphModule, ds: Dataset, want: int, fallback: int) -> int:
    """``want`` (at most the data size) if the graph runs on batches of that size, else
    ``fallback`` (the example inputs' batch size, which it always runs on)."""
    want = min(want, len(ds))
    if want == fallback:
        return want
    inputs, _ = next(batches(ds, want))
    try:
        with torch.no_grad():
            gm(*inputs)
        return want
    except Exception:  # noqa: BLE001 - a literal batch size somewhere in the graph
        return fallback


def first_output(out) -> torch.Tensor:
    outs = flat_outputs(out) if not isinstance(out, torch.Tensor) else [out]
    if not outs or not outs[0].is_floating_point() or outs[0].dim() < 2:
        raise UsageError("the model's first output is not a batch of class scores (N × classes)",
                         hint="distillation and gradient-based criteria need a classifier output")
    return outs[0]


def logits_fn(gm: fx.GraphModule) -> Callable[[object], torch.Tensor]:
    """A function from the graph's raw output to logits over the last axis.

    Log-softmax outputs are logits already (softmax is shift-invariant, so
    ``softmax(log_softmax(z)/T) = softmax(z/T)``); probabilities from a final softmax are
    turned back into log-probabilities.
    """
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    first = out_node.args[0]
    while isinstance(first, (tuple, list)) and first:
        first = first[0]
    is_prob = isinstance(first, fx.Node) and first.op == "call_function" and first.target in (torch.softmax, F.softmax)

    def logits(out) -> torch.Tensor:
        y = first_output(out)
        return torch.log(y.clamp_min(1e-12)) if is_prob else y

    return logits


def label_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s distillation loss: ``T² · KL(softmax(t/T) ‖ softmax(s/T))``, batch mean."""
    t = temperature
    s = F.log_softmax(student.reshape(-1, student.shape[-1]) / t, dim=-1)
    p = F.log_softmax(teacher.reshape(-1, teacher.shape[-1]) / t, dim=-1)
    return F.kl_div(s, p, reduction="batchmean", log_target=True) * (t * t)

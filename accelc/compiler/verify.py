"""Output comparison metrics used by verify-each, reports and tests.

* ``max_abs_err`` — largest absolute difference over all output elements;
* ``sqnr_db`` — 10·log10(Σref² / Σ(ref−out)²); ``None`` when the outputs are identical
  (infinite SQNR has no JSON spelling);
* ``top1_agreement`` — fraction of samples whose argmax over the last axis agrees, for
  outputs that look like class scores (last axis > 1); ``None`` otherwise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Sequence

import torch
from torch.utils._pytree import tree_flatten


@dataclass
class Metrics:
    max_abs_err: float
    sqnr_db: float | None
    top1_agreement: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def flat_outputs(out) -> list[torch.Tensor]:
    leaves, _ = tree_flatten(out)
    return [t.detach() for t in leaves if isinstance(t, torch.Tensor)]


def run_samples(fn: Callable, samples: Iterable[Sequence[torch.Tensor]]) -> list[list[torch.Tensor]]:
    """Outputs of ``fn`` on each sample batch, as flat lists of tensors."""
    outs = []
    with torch.no_grad():
        for inputs in samples:
            outs.append(flat_outputs(fn(*inputs)))
    return outs


def compare(reference: list[list[torch.Tensor]], actual: list[list[torch.Tensor]]) -> Metrics:
    """Metrics of ``actual`` against ``reference`` (both as returned by :func:`run_samples`)."""
    max_err, sig, noise = 0.0, 0.0, 0.0
    agree, total = 0, 0
    for ref_b, act_b in zip(reference, actual):
        if len(ref_b) != len(act_b):
            raise ValueError("the graphs return different numbers of outputs")
        for i, (r, a) in enumerate(zip(ref_b, act_b)):
            if r.shape != a.shape:
                raise ValueError(f"output {i} changed shape: {tuple(r.shape)} → {tuple(a.shape)}")
            r64, a64 = r.double(), a.double()
            d = (r64 - a64)
            if d.numel():
                max_err = max(max_err, float(d.abs().max()))
            sig += float((r64 * r64).sum())
            noise += float((d * d).sum())
        if ref_b and ref_b[0].dim() >= 1 and ref_b[0].shape[-1] > 1 and ref_b[0].is_floating_point():
            r_top = ref_b[0].reshape(-1, ref_b[0].shape[-1]).argmax(-1)
            a_top = act_b[0].reshape(-1, act_b[0].shape[-1]).argmax(-1)
            agree += int((r_top == a_top).sum())
            total += r_top.numel()
    if noise == 0.0:
        sqnr = None
    elif sig == 0.0:
        sqnr = -math.inf
    else:
        sqnr = 10.0 * math.log10(sig / noise)
    return Metrics(max_err, sqnr if sqnr is None or math.isfinite(sqnr) else -999.0,
                   agree / total if total else None)


def top1_accuracy(outputs: list[list[torch.Tensor]], labels: torch.Tensor) -> float:
    """Top-1 accuracy of the first output's argmax against ``labels`` (concatenated batches)."""
    preds = torch.cat([o[0].reshape(-1, o[0].shape[-1]).argmax(-1) for o in outputs])
    n = min(len(preds), len(labels))
    return float((preds[:n] == labels[:n]).float().mean())

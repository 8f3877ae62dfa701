"""Channel importance criteria for structured pruning: one score per unit of a group.

* ``l1`` / ``l2`` — norm of the filters that produce the channel (Li et al., ICLR 2017),
  over every coupled producer (both convs of a residual add, say). After ``fuse`` the
  filters carry the folded BatchNorm scale.
* ``bn_scale`` — ``|γ|`` of the BatchNorm layers on the channel (network slimming, Liu et
  al., ICCV 2017). Needs BatchNorm in the graph, i.e. ``prune`` placed before ``fuse``.
* ``taylor`` — first-order Taylor estimate of the loss change when the channel is removed,
  ``Σ |w · ∂L/∂w|`` over every weight of every member (Molchanov et al., CVPR 2019),
  with gradients of the cross-entropy on data (labels, else the model's own predictions).
"""

from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn as nn

from accelc.compiler.analysis.channels import Group, Member
from accelc.compiler.data import Dataset
from accelc.passes.training import batch_size_for, batches, label_loss, logits_fn

CRITERIA = ("l1", "l2", "bn_scale", "taylor")
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def _slice(t: torch.Tensor, m: Member, u: int) -> torch.Tensor:
    idx = list(m.indices[u])
    return t[idx] if m.kind == "out" else t[:, idx]


def magnitude(gm: fx.GraphModule, group: Group, p: int) -> torch.Tensor:
    """L1 (``p=1``) or L2 (``p=2``) norm of each unit's producing filters."""
    scores = torch.zeros(group.size, dtype=torch.float64)
    for m in group.producers(gm):
        w = gm.get_submodule(m.layer).weight.detach().double()
        for u in range(group.size):
            scores[u] += _slice(w, m, u).abs().pow(p).sum()
    return scores if p == 1 else scores.sqrt()


def bn_scale(gm: fx.GraphModule, group: Group) -> torch.Tensor | None:
    """Sum of ``|γ|`` over the group's BatchNorm layers; None when it has none."""
    bns = [m for m in group.members if isinstance(gm.get_submodule(m.layer), _BN)]
    if not bns:
        return None
    scores = torch.zeros(group.size, dtype=torch.float64)
    for m in bns:
        bn = gm.get_submodule(m.layer)
        gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones(bn.num_features, dtype=torch.float64)
        for u in range(group.size):
            scores[u] += _slice(gamma, m, u).abs().sum()
    return scores


def taylor(gm: fx.GraphModule, groups: list[Group], data: Dataset, *, samples: int, batch: int,
           fallback_batch: int) -> list[torch.Tensor]:
    """First-order Taylor scores of every group from gradients over ``samples`` samples."""
    params = [p for p in gm.parameters()]
    saved = [(p.grad, p.requires_grad) for p in params]
    for p in params:
        p.grad = None
        p.requires_grad_(True)
    logits_of = logits_fn(gm)
    bs = batch_size_for(gm, data, batch, fallback_batch)
    try:
        with torch.enable_grad():
            for inputs, labels in batches(data, bs, limit=samples):
                logits = logits_of(gm(*inputs))
                target = labels if labels is not None else logits.detach().argmax(-1)
                label_loss(logits, target).backward()
        scores = []
        for group in groups:
            s = torch.zeros(group.size, dtype=torch.float64)
            for m in group.members:
                mod = gm.get_submodule(m.layer)
                tensors = [mod.weight] + ([mod.bias] if m.kind == "out" and mod.bias is not None else [])
                for t in tensors:
                    if t.grad is None:
                        continue
                    contrib = (t.detach() * t.grad).double().abs()
                    for u in range(group.size):
                        s[u] += _slice(contrib, m, u).sum()
            scores.append(s)
        return scores
    finally:
        for p, (grad, req) in zip(params, saved):
            p.grad = grad
            p.requires_grad_(req)

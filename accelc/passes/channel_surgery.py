"""Physically remove channel units from a GraphModule: smaller weights, smaller tensors.

Given units chosen from the groups of a :class:`~accelc.compiler.analysis.channels.ChannelGraph`,
every member layer is replaced by a copy of the same class (``ConvAct2d`` keeps its epilogue)
whose weights keep only the surviving rows/columns, and every literal ``reshape`` target
that carries channels is rewritten to the new size. Removing a unit whose channels are
identically zero on every path (zero filters and bias, no BatchNorm shift) leaves the
outputs unchanged — that is what the tests check.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Sequence

import torch
import torch.fx as fx
import torch.nn as nn

from accelc.compiler.analysis.channels import ChannelGraph, Group


def _keep(n: int, drop: set[int]) -> list[int]:
    return [i for i in range(n) if i not in drop]


def _param(t: torch.Tensor | None) -> nn.Parameter | None:
    return None if t is None else nn.Parameter(t.detach().clone().contiguous())


def resized(mod: nn.Module, keep_out: list[int], keep_in: list[int] | None) -> nn.Module:
    """A copy of a Conv2d/Linear/BatchNorm layer keeping output rows ``keep_out`` and (for
    ungrouped conv and linear) input columns ``keep_in``."""
    new = copy.copy(mod)
    new._parameters = dict(mod._parameters)
    new._buffers = dict(mod._buffers)
    if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
        new.num_features = len(keep_out)
        for name in ("weight", "bias"):
            if mod._parameters.get(name) is not None:
                new._parameters[name] = _param(mod._parameters[name][keep_out])
        for name in ("running_mean", "running_var"):
            if mod._buffers.get(name) is not None:
                new._buffers[name] = mod._buffers[name][keep_out].clone()
        return new
    w = mod.weight.detach()[keep_out]
    if isinstance(mod, nn.Conv2d) and mod.groups > 1:
        per_group_out = mod.out_channels // mod.groups
        new.groups = len(keep_out) // per_group_out
        new.in_channels = new.groups * w.shape[1]
    elif keep_in is not None:
        w = w[:, keep_in]
    new._parameters["weight"] = _param(w)
    if mod.bias is not None:
        new._parameters["bias"] = _param(mod.bias[keep_out])
    if isinstance(mod, nn.Conv2d):
        new.out_channels = len(keep_out)
        if mod.groups == 1:
            new.in_channels = w.shape[1]
    else:
        new.out_features, new.in_features = w.shape
    return new


def remove_units(gm: fx.GraphModule, cg: ChannelGraph, removal: Sequence[tuple[Group, Sequence[int]]]) -> fx.GraphModule:
    """Remove units ``removal = [(group, unit indices), …]`` from ``gm`` in place."""
    drop: dict[tuple[str, str], set[int]] = defaultdict(set)
    removed_channels: dict[str, int] = defaultdict(int)  # tensor (node name) → channels removed
    for group, units in removal:
        for u in units:
            for m in group.members:
                drop[(m.layer, m.kind)].update(m.indices[u])
            for name, _ in group.units[u]:
                removed_channels[name] += 1
    for layer in dict.fromkeys(layer for layer, _ in drop):
        mod = gm.get_submodule(layer)
        keep_out = _keep(mod.weight.shape[0] if not isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d))
                         else mod.num_features, drop[(layer, "out")])
        keep_in = _keep(mod.weight.shape[1], drop[(layer, "in")]) if (layer, "in") in drop else None
        gm.add_submodule(layer, resized(mod, keep_out, keep_in))
    nodes = {n.name: n for n in gm.graph.nodes}
    for name in cg.reshapes:
        if removed_channels.get(name):
            node = nodes[name]
            shape = list(node.args[1])
            if shape[1] != -1:
                shape[1] -= removed_channels[name]
                node.args = (node.args[0], tuple(shape))
    gm.recompile()
    return gm

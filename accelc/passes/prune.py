"""``prune``: structured channel pruning that physically removes channels.

Channels are cut per *group* of the channel-coupling graph
(:mod:`accelc.compiler.analysis.channels`), so residual adds, concatenations, depthwise
convs and flatten→linear stay consistent; the result is a smaller dense graph that runs —
and compiles — like any other, with fewer FLOPs and parameters (no masks).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Literal

import networkx as nx
import torch
import torch.fx as fx
import torch.nn as nn

from accelc.compiler.analysis.channels import ChannelGraph, Group, channel_graph, layer_nodes, resolve_layers
from accelc.compiler.analysis.cost import graph_cost
from accelc.compiler.context import CompileContext
from accelc.compiler.options import in_range
from accelc.errors import PipelineError
from accelc.passes import importance
from accelc.passes.base import Pass, register_pass
from accelc.passes.channel_surgery import remove_units


@dataclass
class PruneOptions:
    ratio: float = field(default=0.3, metadata={
        "help": "fraction of channels to remove: from every group, or with global=true from all prunable "
                "channels together (0 ≤ ratio < 1)",
        "check": lambda v: None if 0.0 <= v < 1.0 else
        "must be in [0, 1): the fraction of channels removed (1 would remove them all; each layer keeps ≥ 1)"})
    criterion: Literal["l1", "l2", "bn_scale", "taylor"] = field(default="l1", metadata={
        "help": "channel importance: filter norm (l1, l2), BatchNorm |γ| (bn_scale: put prune before fuse), "
                "or first-order Taylor on --calib/--train data (taylor)"})
    global_: bool = field(default=False, metadata={
        "help": "rank the channels of all groups together (scores normalised per group) instead of cutting "
                "every group by the same ratio"})
    round_to: int = field(default=1, metadata={
        "help": "keep a multiple of this many channels per group (e.g. 16 for the fpga target)",
        "check": in_range(1)})
    ignore: list[str] = field(default_factory=list, metadata={
        "help": "layers whose output channels are kept (module paths such as [layer1.0.conv1,fc], or node names)"})
    samples: int = field(default=256, metadata={"help": "data samples for criterion=taylor", "check": in_range(1)})
    batch_size: int = field(default=32, metadata={"help": "batch size for criterion=taylor", "check": in_range(1)})
    measure_latency: bool = field(default=False, metadata={
        "help": "build the graph before and after with the cpu target and report the measured latency"})


def _round_up(keep: int, n: int, round_to: int) -> int:
    """``keep`` rounded up to a multiple of ``round_to``, at most ``n``."""
    return min(n, round_to * math.ceil(keep / round_to))


def keep_count(n: int, ratio: float, round_to: int) -> int:
    """Units kept of a group of ``n`` when cutting ``ratio``: at least one (never a layer to
    zero), rounded up to a multiple of ``round_to`` (all ``n`` when n < round_to)."""
    return _round_up(max(1, n - math.floor(n * ratio + 1e-9)), n, round_to)


def select_uniform(groups: list[Group], scores: list[torch.Tensor], ratio: float, round_to: int) -> list[list[int]]:
    """Per group, the lowest-scoring units beyond :func:`keep_count`."""
    out = []
    for g, s in zip(groups, scores):
        n_drop = g.size - keep_count(g.size, ratio, round_to)
        out.append(sorted(torch.argsort(s, stable=True)[:n_drop].tolist()))
    return out


def select_global(groups: list[Group], scores: list[torch.Tensor], ratio: float, round_to: int) -> list[list[int]]:
    """The lowest ``ratio`` of all units by score / group mean, each group keeping ≥ 1 unit
    (rounded up to ``round_to``)."""
    total = sum(g.size for g in groups)
    ranked = []
    for gi, s in enumerate(scores):
        norm = s / s.mean() if float(s.mean()) > 0 else torch.ones_like(s)
        ranked += [(float(norm[u]), gi, u) for u in range(len(s))]
    ranked.sort()
    budget = math.floor(total * ratio + 1e-9)
    dropped: list[list[int]] = [[] for _ in groups]
    for _, gi, u in ranked:
        if budget == 0:
            break
        if groups[gi].size - len(dropped[gi]) > 1:
            dropped[gi].append(u)
            budget -= 1
    for gi, g in enumerate(groups):  # round the kept count up: give back the best dropped units
        keep = _round_up(g.size - len(dropped[gi]), g.size, round_to)
        dropped[gi] = dropped[gi][: g.size - keep]
    return [sorted(d) for d in dropped]


def _has_bn(gm: fx.GraphModule) -> bool:
    return any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in gm.modules())


@register_pass
class Prune(Pass):
    """Structured channel pruning: remove whole channels (conv filters, linear units) and
    everything coupled to them, leaving a smaller dense graph.

    Lossy: outputs change unless the removed channels were zero (follow with ``distill`` to
    recover accuracy). Preserved: the graph's inputs and outputs (shapes, logits), every
    layer keeps ≥ 1 channel (≥ ``round_to`` where the layer had that many), and channels
    the analysis cannot prove removable (model inputs/outputs, ops without a channel rule,
    ``ignore``) are left as they are. Details: channels per group before→after, params and
    FLOPs before→after, and with ``measure_latency=true`` the cpu artifact's latency.
    """

    name = "prune"
    Options = PruneOptions

    def run(self, gm: fx.GraphModule, ctx: CompileContext) -> fx.GraphModule:
        o = self.options
        ignore = resolve_layers(gm, o.ignore, owner=self.name)
        before = graph_cost(gm, ctx.example_inputs)
        reference = copy.deepcopy(gm) if o.measure_latency else None
        cg = channel_graph(gm, ctx.example_inputs, ignore=ignore)
        groups, scores, skipped = self._score(gm, cg, ctx)
        select = select_global if o.global_ else select_uniform
        chosen = select(groups, scores, o.ratio, o.round_to) if groups else []
        remove_units(gm, cg, [(g, units) for g, units in zip(groups, chosen) if units])
        after = graph_cost(gm, ctx.example_inputs)
        self.details = {
            "criterion": o.criterion, "ratio": o.ratio, "global": o.global_,
            "groups": [{"layers": g.layers, "channels": f"{g.size}→{g.size - len(u)}"} for g, u in zip(groups, chosen)],
            "skipped": skipped,
            "frozen_layers": _frozen_layers(gm, cg),
            "params": f"{before.params}→{after.params}", "flops": f"{before.flops}→{after.flops}",
            "flops_reduction": round(1 - after.flops / before.flops, 4) if before.flops else 0.0,
        }
        if reference is not None:
            from accelc.compiler.latency import cpu_latency

            self.details["cpu_latency_ms"] = cpu_latency({"before": reference, "after": gm}, ctx.example_inputs)
        return gm

    def _score(self, gm: fx.GraphModule, cg: ChannelGraph, ctx: CompileContext):
        o = self.options
        groups = [g for g in cg.groups if g.size > 1]
        skipped: list[dict] = []
        if o.criterion in ("l1", "l2"):
            return groups, [importance.magnitude(gm, g, 1 if o.criterion == "l1" else 2) for g in groups], skipped
        if o.criterion == "bn_scale":
            if not _has_bn(gm):
                raise PipelineError(
                    "prune(criterion=bn_scale) needs BatchNorm layers, but this graph has none (the model has "
                    "none, or the fuse pass already folded them into the convolutions)",
                    hint="put prune before fuse, e.g. --pipeline 'prune(criterion=bn_scale,ratio=0.5),fuse', "
                         "or use criterion=l1 (after fuse the filters carry the folded BatchNorm scale)")
            kept, scores = [], []
            for g in groups:
                s = importance.bn_scale(gm, g)
                if s is None:
                    skipped.append({"layers": g.layers, "reason": "no BatchNorm on these channels (bn_scale)"})
                else:
                    kept.append(g)
                    scores.append(s)
            return kept, scores, skipped
        data = ctx.calib if ctx.calib is not None else ctx.train
        if data is None:
            raise PipelineError("prune(criterion=taylor) needs data for its gradients",
                                hint="pass --calib data.npz (or --train; 'digits' for the demo), or use criterion=l1")
        return groups, importance.taylor(gm, groups, data, samples=o.samples, batch=o.batch_size,
                                         fallback_batch=ctx.batch_size), skipped


def _frozen_layers(gm: fx.GraphModule, cg: ChannelGraph) -> dict[str, str]:
    """Conv/linear layers whose output channels are not prunable, and why."""
    prunable = {m.layer for g in cg.groups if g.size > 1 for m in g.producers(gm)}
    out = {}
    for path, nodes in layer_nodes(gm).items():
        if path in prunable or not isinstance(gm.get_submodule(path), (nn.Conv2d, nn.Linear)):
            continue
        reasons = {cg.frozen[name] for n in nodes if (n.name, 0) in cg.graph
                   for name, _ in nx.node_connected_component(cg.graph, (n.name, 0)) if name in cg.frozen}
        out[path] = "; ".join(sorted(reasons)) or "a single channel"
    return out

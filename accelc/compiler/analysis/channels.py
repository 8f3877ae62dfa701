"""Channel-coupling dependency graph: which channels must be removed together.

Removing output channel ``c`` of a conv is only valid if every tensor that carries that
channel, and every layer that reads or writes it, loses it too: the BatchNorm after the conv,
the input column of the next conv, the other branch of a residual ``add``, the block of
``H×W`` inputs of a linear layer after ``flatten``, the matching offset of a ``cat``, and the
channel of a depthwise conv (whose input and output channels are the same channels).

:func:`channel_graph` builds this as an undirected :mod:`networkx` graph whose vertices are
``(node name, channel index)`` — one per channel of every tensor on the channel axis (axis
1) — and whose edges say "these two channels are the same channel". Each connected component
is one *unit*: a set of channels that can only be removed as a whole. Units that touch the
same layers in the same way form a :class:`Group` (e.g. the 16 channels of one residual
stage), the thing a pruner ranks and cuts.

Rules per canonical op (``tensor`` means a node's output; its channels are axis 1):

* conv / linear: output channel ``o`` is produced by weight row ``o`` (``out`` member); input
  channel ``c`` is read by weight column ``c`` (``in`` member). A grouped or depthwise conv
  couples each group's input channels with that group's output channels, so a unit holds
  whole groups and only output rows are cut (``in_channels``/``groups`` follow).
* batch norm: passes channels through; its per-channel parameters are an ``out`` member.
* elementwise ops, pooling, dropout, mean/sum over spatial axes: pass channels through.
* ``add``/``sub``/``mul``/``div`` of two tensors: couple channel ``i`` of both operands and of
  the result (an operand broadcast along the channel axis is not coupled).
* ``cat`` on axis 1: input ``k``'s channel ``i`` is the output's channel ``offset_k + i``.
* ``flatten``/``reshape`` that keep the batch axis: channels are coupled where their blocks of
  the per-sample memory overlap (``flatten(N×C×H×W)``: channel ``c`` ↔ features
  ``c·HW … c·HW+HW−1``); reshapes with a literal target shape are recorded so the pruner can
  rewrite the literal.

Everything else *freezes* the tensors it touches (no channel of theirs may be removed, nor any
channel coupled to them): the model inputs, the model outputs, constants (``get_attr``),
softmax over channels, layers called from several places, layers named in ``ignore`` (their
output channels), and any op without a rule. So the analysis is conservative: an op it does
not understand costs pruning opportunities, never correctness.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Literal, Sequence

import networkx as nx
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from accelc.compiler.analysis.shapes import propagate_shapes, shape_of
from accelc.errors import PipelineError

Vertex = tuple[str, int]  # (node name, channel index)
Kind = Literal["out", "in"]

_LAYERS = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)
_ELEMENTWISE = {
    torch.relu, F.relu, F.relu6, F.hardtanh, torch.sigmoid, torch.tanh, F.gelu, F.silu, F.hardswish,
    F.hardsigmoid, F.leaky_relu, F.elu, F.dropout, torch.neg, torch.exp, torch.clamp,
}
_POOL = {F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, torch.max_pool2d}
_BINARY = {torch.add, torch.sub, torch.mul, torch.div}
_RESHAPE = {torch.flatten, torch.reshape}
_REDUCE = {torch.mean, torch.sum}
_SOFTMAX = {torch.softmax, torch.log_softmax, F.softmax, F.log_softmax}


@dataclass(frozen=True)
class Member:
    """One axis of one layer inside a group: ``indices[u]`` are the channels on that axis
    that unit ``u`` of the group owns (one for a conv filter, ``H·W`` for a linear layer
    after ``flatten``, …). ``kind`` is ``"out"`` (weight axis 0, bias, BatchNorm parameters)
    or ``"in"`` (weight axis 1)."""

    layer: str  # module path, e.g. "layer1.0.conv1"
    kind: Kind
    indices: tuple[tuple[int, ...], ...]


@dataclass
class Group:
    """Units (coupled channel sets) that touch the same layers the same way.

    Removing unit ``u`` removes ``m.indices[u]`` on axis ``m.kind`` of every member ``m``
    and the channels ``units[u]`` of every tensor that carries them.
    """

    members: tuple[Member, ...]
    units: tuple[tuple[Vertex, ...], ...]

    @property
    def size(self) -> int:
        return len(self.units)

    @property
    def layers(self) -> list[str]:
        return list(dict.fromkeys(m.layer for m in self.members))

    def producers(self, gm: fx.GraphModule) -> list[Member]:
        """The conv/linear members whose output rows create these channels."""
        return [m for m in self.members if m.kind == "out" and isinstance(gm.get_submodule(m.layer), (nn.Conv2d, nn.Linear))]

    def __str__(self) -> str:
        return f"{self.size} × {{{', '.join(f'{m.layer}.{m.kind}' for m in self.members)}}}"


@dataclass
class ChannelGraph:
    """The coupling graph of a GraphModule and what a pruner needs from it."""

    graph: nx.Graph
    groups: list[Group]
    frozen: dict[str, str]  # node name → why its channels may not be removed
    reshapes: list[str] = field(default_factory=list)  # reshape nodes whose literal shape follows the channels

    def group_of(self, layer: str, kind: Kind = "out") -> Group | None:
        """The prunable group in which ``layer`` takes part on axis ``kind`` (first found)."""
        return next((g for g in self.groups for m in g.members if m.layer == layer and m.kind == kind), None)


def layer_nodes(gm: fx.GraphModule) -> dict[str, list[fx.Node]]:
    """Module path → the call_module nodes that call it (conv, linear, batch norm)."""
    sites: dict[str, list[fx.Node]] = defaultdict(list)
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), _LAYERS):
            sites[node.target].append(node)
    return dict(sites)


def resolve_layers(gm: fx.GraphModule, names: Iterable[str], *, owner: str, option: str = "ignore") -> list[str]:
    """Module paths for layer names given in a pass option (module paths such as
    ``layer1.0.conv1``, or node names such as ``layer1_0_conv1``); an unknown name is a
    :class:`PipelineError` listing the layers there are."""
    sites = layer_nodes(gm)
    by_node = {n.name: path for path, nodes in sites.items() for n in nodes}
    resolved = []
    for name in names:
        if name not in sites and name not in by_node:
            known = ", ".join(list(sites)[:12]) + (", …" if len(sites) > 12 else "")
            raise PipelineError(f"{owner}: {option}={name!r} names no layer of this graph",
                                hint=f"layers (module paths): {known or 'none'}")
        resolved.append(name if name in sites else by_node[name])
    return resolved


def channel_graph(gm: fx.GraphModule, example_inputs: Sequence[torch.Tensor] | None = None, *,
                  ignore: Iterable[str] = ()) -> ChannelGraph:
    """Build the coupling graph of ``gm`` (shape-propagated on ``example_inputs`` when given).

    ``ignore`` names layers (module paths) whose output channels must be kept.
    """
    if example_inputs is not None:
        propagate_shapes(gm, example_inputs)
    return _Builder(gm, set(ignore)).build()


class _Builder:
    def __init__(self, gm: fx.GraphModule, ignore: set[str]):
        self.gm = gm
        self.ignore = ignore
        self.g = nx.Graph()
        self.frozen: dict[str, str] = {}
        self.members: dict[Vertex, list[tuple[str, Kind, int]]] = defaultdict(list)
        self.reshapes: list[str] = []
        self.sites = layer_nodes(gm)

    # -- helpers -----------------------------------------------------------------------
    def channels(self, node) -> int | None:
        shape = shape_of(node)
        return shape[1] if shape is not None and len(shape) >= 2 else None

    def add_tensor(self, node: fx.Node) -> None:
        c = self.channels(node)
        if c is not None:
            self.g.add_nodes_from((node.name, i) for i in range(c))

    def freeze(self, node, reason: str) -> None:
        if isinstance(node, fx.Node) and self.channels(node) is not None:
            self.frozen.setdefault(node.name, reason)

    def freeze_all(self, node: fx.Node, reason: str) -> None:
        for n in (*node.all_input_nodes, node):
            self.freeze(n, reason)

    def couple(self, a: fx.Node, i: int, b: fx.Node, j: int) -> None:
        self.g.add_edge((a.name, i), (b.name, j))

    def pass_through(self, src: fx.Node, dst: fx.Node) -> bool:
        c = self.channels(src)
        if c is None or c != self.channels(dst):
            return False
        for i in range(c):
            self.couple(src, i, dst, i)
        return True

    # -- per-op rules ------------------------------------------------------------------
    def build(self) -> ChannelGraph:
        for node in self.gm.graph.nodes:
            self.add_tensor(node)
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                self.freeze(node, "model input")
            elif node.op == "get_attr":
                self.freeze(node, "constant tensor")
            elif node.op == "output":
                for arg in node.all_input_nodes:
                    self.freeze(arg, "model output")
            elif node.op == "call_module":
                self.module_rule(node)
            elif node.op == "call_function":
                if not self.function_rule(node):
                    self.freeze_all(node, f"no channel rule for {getattr(node.target, '__name__', node.target)}")
            else:
                self.freeze_all(node, f"no channel rule for {node.op} {node.target}")
        return ChannelGraph(self.g, self.make_groups(), self.frozen, self.reshapes)

    def module_rule(self, node: fx.Node) -> None:
        mod = self.gm.get_submodule(node.target)
        if not isinstance(mod, _LAYERS):
            self.freeze_all(node, f"no channel rule for {type(mod).__name__}")
            return
        if len(self.sites[node.target]) > 1:
            self.freeze_all(node, f"layer {node.target} is called from several places")
            return
        x = node.args[0] if node.args else None
        rank_ok = {nn.Conv2d: 4, nn.Linear: 2}
        want = next((r for t, r in rank_ok.items() if isinstance(mod, t)), None)
        if len(node.args) != 1 or node.kwargs or not isinstance(x, fx.Node) or self.channels(x) is None \
                or self.channels(node) is None or (want is not None and len(shape_of(x)) != want):
            self.freeze_all(node, f"{type(mod).__name__} {node.target} takes {'×'.join(map(str, shape_of(x) or ('?',)))}"
                                  " (channel rules cover Conv2d on N×C×H×W and Linear on N×F)")
            return
        if node.target in self.ignore:
            self.freeze(node, f"ignored layer {node.target}")
        out_c = self.channels(node)
        for o in range(out_c):
            self.members[(node.name, o)].append((node.target, "out", o))
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            self.pass_through(x, node)
            return
        groups = getattr(mod, "groups", 1)
        if groups == 1:
            for c in range(self.channels(x)):
                self.members[(x.name, c)].append((node.target, "in", c))
            return
        in_g, out_g = self.channels(x) // groups, out_c // groups
        for grp in range(groups):  # a group's inputs and outputs are one unit
            hub = grp * out_g
            for o in range(hub + 1, hub + out_g):
                self.couple(node, hub, node, o)
            for c in range(grp * in_g, (grp + 1) * in_g):
                self.couple(x, c, node, hub)

    def function_rule(self, node: fx.Node) -> bool:
        """Add the node's coupling; False when no rule applies (the caller freezes it)."""
        t = node.target
        x = node.args[0] if node.args else None
        if self.channels(node) is None:
            return all(self.channels(a) is None for a in node.all_input_nodes)  # no channels involved
        if t in _ELEMENTWISE or (t in _POOL and len(shape_of(x) or ()) == 4):
            return isinstance(x, fx.Node) and self.pass_through(x, node)
        if t in _BINARY:
            return self.binary(node)
        if t is torch.cat:
            return self.concat(node)
        if t in _RESHAPE:
            return self.reshape(node)
        if t in _REDUCE:
            dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            rank = len(shape_of(x) or ())
            dims = [dims] if isinstance(dims, int) else list(dims or [])
            if not dims or any(d % rank in (0, 1) for d in dims):
                return False
            return self.pass_through(x, node)
        if t in _SOFTMAX:
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
            if dim is None or dim % len(shape_of(x)) in (0, 1):
                return False
            return self.pass_through(x, node)
        return False

    def binary(self, node: fx.Node) -> bool:
        operands = [a for a in node.args[:2] if isinstance(a, fx.Node)]
        c = self.channels(node)
        for a in operands:
            ac = self.channels(a)
            if ac is None or len(shape_of(a)) != len(shape_of(node)):
                if shape_of(a) is not None and math.prod(shape_of(a)) == 1:
                    continue  # a scalar tensor: broadcast, not coupled
                return False
            if ac == 1 and c != 1:
                continue  # broadcast along channels: every output channel reads channel 0
            if ac != c:
                return False
        for a in operands:
            if self.channels(a) == c:
                self.pass_through(a, node)
        return True

    def concat(self, node: fx.Node) -> bool:
        tensors = node.args[0]
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        rank = len(shape_of(node))
        if not isinstance(tensors, (list, tuple)) or not all(isinstance(t, fx.Node) for t in tensors):
            return False
        if dim % rank == 0:
            return False
        if dim % rank != 1:
            return all(self.pass_through(t, node) for t in tensors)
        offset = 0
        for t in tensors:
            c = self.channels(t)
            if c is None:
                return False
            for i in range(c):
                self.couple(t, i, node, offset + i)
            offset += c
        return offset == self.channels(node)

    def reshape(self, node: fx.Node) -> bool:
        x = node.args[0]
        si, so = shape_of(x), shape_of(node)
        if si is None or len(si) < 2 or si[0] != so[0]:
            return False
        bi, bo = math.prod(si[2:]), math.prod(so[2:])  # per-channel block sizes (elements)
        for c in range(si[1]):
            lo, hi = c * bi, (c + 1) * bi - 1
            for j in range(lo // bo, hi // bo + 1):
                self.couple(x, c, node, j)
        if node.target is torch.reshape:
            self.reshapes.append(node.name)
        return True

    # -- components → groups -----------------------------------------------------------
    def make_groups(self) -> list[Group]:
        by_signature: dict[tuple, list[tuple[tuple, dict]]] = defaultdict(list)
        for comp in nx.connected_components(self.g):
            if any(name in self.frozen for name, _ in comp):
                continue
            owned: dict[tuple[str, Kind], list[int]] = defaultdict(list)
            for v in comp:
                for layer, kind, idx in self.members.get(v, ()):
                    owned[(layer, kind)].append(idx)
            producers = [k for k in owned if k[1] == "out" and isinstance(self.gm.get_submodule(k[0]), (nn.Conv2d, nn.Linear))]
            if not producers:
                continue  # nothing creates these channels: nothing to cut
            signature = tuple(sorted((k, len(v)) for k, v in owned.items()))
            unit = tuple(sorted(comp))
            by_signature[signature].append((unit, {k: tuple(sorted(v)) for k, v in owned.items()}))
        order = {name: i for i, name in enumerate(n.target for n in self.gm.graph.nodes if n.op == "call_module")}
        groups = []
        for signature, units in by_signature.items():
            keys = sorted((k for k, _ in signature), key=lambda k: (order[k[0]], k[1] != "in"))
            units.sort(key=lambda u: [u[1][k] for k in keys])
            members = tuple(Member(layer, kind, tuple(u[1][(layer, kind)] for u in units)) for layer, kind in keys)
            groups.append(Group(members, tuple(u[0] for u in units)))
        groups.sort(key=lambda g: min(order[m.layer] for m in g.members if m.kind == "out"))
        return groups

"""Cost model: MACs, FLOPs, parameters and bytes per fx node.

Conventions (those of fvcore/ptflops and most papers): a multiply-accumulate is one MAC and
two FLOPs; convolution and linear FLOPs are ``2 × MACs`` (bias adds are not counted);
elementwise ops cost one FLOP per output element; pooling costs one per window element.
Costs are computed from the shapes that :func:`propagate_shapes` records, so the graph must
have been shape-propagated on example inputs first (``graph_cost`` does it when asked).

Other modules (quantized ops, targets' own layers) register their rule with
:func:`register_module_cost` instead of being special-cased here.
"""

from __future__ import annotations

import math
import operator
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from accelc.compiler.analysis.shapes import output_meta, propagate_shapes, shape_of


@dataclass
class NodeCost:
    name: str
    op: str  # short human name: "Conv2d", "relu", "add", ...
    shape: tuple[int, ...] | None
    macs: int = 0
    flops: int = 0
    params: int = 0
    param_bytes: int = 0
    activation_bytes: int = 0  # bytes of this node's output

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape) if self.shape is not None else None
        return d


@dataclass
class GraphCost:
    nodes: list[NodeCost] = field(default_factory=list)

    @property
    def macs(self) -> int:
        return sum(n.macs for n in self.nodes)

    @property
    def flops(self) -> int:
        return sum(n.flops for n in self.nodes)

    @property
    def params(self) -> int:
        return sum(n.params for n in self.nodes)

    @property
    def param_bytes(self) -> int:
        return sum(n.param_bytes for n in self.nodes)

    @property
    def activation_bytes(self) -> int:
        return sum(n.activation_bytes for n in self.nodes)

    def by_name(self) -> dict[str, NodeCost]:
        return {n.name: n for n in self.nodes}

    def totals(self) -> dict:
        return {"macs": self.macs, "flops": self.flops, "params": self.params,
                "param_bytes": self.param_bytes, "activation_bytes": self.activation_bytes}


# (module, input shapes, output shape) -> macs, flops
ModuleCostRule = Callable[[nn.Module, list, tuple], tuple[int, int]]
_MODULE_RULES: dict[type, ModuleCostRule] = {}


def register_module_cost(*types: type):
    """Decorator: register a cost rule ``rule(module, in_shapes, out_shape) -> (macs, flops)``."""

    def deco(rule: ModuleCostRule) -> ModuleCostRule:
        for t in types:
            _MODULE_RULES[t] = rule
        return rule

    return deco


def _numel(shape) -> int:
    return int(math.prod(shape)) if shape is not None else 0


@register_module_cost(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def _conv_cost(m: nn.Conv2d, in_shapes, out_shape):
    k = math.prod(m.kernel_size)
    macs = _numel(out_shape) * (m.in_channels // m.groups) * k
    extra = _numel(out_shape) if getattr(m, "activation", "none") != "none" else 0
    return macs, 2 * macs + extra


@register_module_cost(nn.Linear)
def _linear_cost(m: nn.Linear, in_shapes, out_shape):
    macs = _numel(out_shape) * m.in_features
    extra = _numel(out_shape) if getattr(m, "activation", "none") != "none" else 0
    return macs, 2 * macs + extra


@register_module_cost(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
def _bn_cost(m, in_shapes, out_shape):
    return 0, 2 * _numel(out_shape)


@register_module_cost(nn.LayerNorm, nn.GroupNorm)
def _norm_cost(m, in_shapes, out_shape):
    # mean, variance, normalise, scale and shift: about five FLOPs per element
    return 0, 5 * _numel(out_shape)


_ELEMENTWISE = {
    torch.relu, F.relu, F.relu6, F.hardtanh, torch.sigmoid, torch.tanh, F.gelu, F.silu,
    torch.add, torch.sub, torch.mul, torch.div, operator.add, operator.sub, operator.mul,
    operator.truediv, torch.clamp, F.dropout, torch.neg, torch.exp,
}
_POOL = {F.max_pool2d, F.avg_pool2d, torch.max_pool2d}
_SOFTMAX = {F.softmax, F.log_softmax, torch.softmax, torch.log_softmax}
_REDUCE = {F.adaptive_avg_pool2d, torch.mean, torch.sum, F.adaptive_max_pool2d}
_MATMUL = {torch.matmul, torch.bmm, torch.mm, operator.matmul}


def _function_cost(node: fx.Node, out_shape) -> tuple[int, int]:
    t = node.target
    n_out = _numel(out_shape)
    if t in _ELEMENTWISE:
        return 0, n_out
    if t in _POOL:
        k = node.kwargs.get("kernel_size", node.args[1] if len(node.args) > 1 else 1)
        k = k if isinstance(k, (tuple, list)) else (k, k)
        return 0, n_out * int(math.prod(k))
    if t in _SOFTMAX:
        return 0, 5 * n_out
    if t in _REDUCE:
        return 0, _numel(shape_of(node.args[0]))
    if t in _MATMUL:  # (…, M, K) @ (…, K, N): one MAC per output element per K
        a = shape_of(node.args[0])
        macs = n_out * (a[-1] if a else 0)
        return macs, 2 * macs
    if t is F.scaled_dot_product_attention:  # q (…, L, E) · kᵀ (…, E, S), then · v (…, S, Ev)
        q, k, v = (shape_of(a) for a in node.args[:3])
        if q is None or k is None or v is None:
            return 0, 0
        macs = _numel(q[:-1]) * k[-2] * (q[-1] + v[-1])
        return macs, 2 * macs + 5 * _numel(q[:-1]) * k[-2]
    return 0, 0


def node_cost(gm: fx.GraphModule, node: fx.Node) -> NodeCost:
    """Cost of one node; the graph must carry shape metadata."""
    meta = output_meta(node)
    shape = tuple(meta.shape) if meta is not None else None
    act_bytes = _numel(shape) * meta.dtype.itemsize if meta is not None else 0
    cost = NodeCost(name=node.name, op=op_label(gm, node), shape=shape, activation_bytes=act_bytes)
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        ps = list(mod.parameters()) + [b for b in mod.buffers() if b.dtype.is_floating_point or b.dtype in (torch.int8, torch.int32, torch.uint8)]
        cost.params = sum(p.numel() for p in mod.parameters())
        cost.param_bytes = sum(p.numel() * p.element_size() for p in ps)
        rule = next((r for t, r in _MODULE_RULES.items() if type(mod) is t), None)
        if rule is None:
            rule = next((r for t, r in _MODULE_RULES.items() if isinstance(mod, t)), None)
        if rule is not None:
            in_shapes = [shape_of(a) for a in node.args]
            cost.macs, cost.flops = rule(mod, in_shapes, shape)
    elif node.op == "call_function":
        cost.macs, cost.flops = _function_cost(node, shape)
    elif node.op == "get_attr":
        t = _fetch_attr(gm, node.target)
        if isinstance(t, torch.Tensor):
            cost.params = t.numel() if isinstance(t, nn.Parameter) else 0
            cost.param_bytes = t.numel() * t.element_size()
    return cost


def graph_cost(gm: fx.GraphModule, example_inputs: Sequence[torch.Tensor] | None = None) -> GraphCost:
    """Per-node costs of ``gm`` (shape-propagates first when example inputs are given)."""
    if example_inputs is not None:
        propagate_shapes(gm, example_inputs)
    return GraphCost([node_cost(gm, n) for n in gm.graph.nodes if n.op not in ("placeholder", "output")])


def _fetch_attr(gm: fx.GraphModule, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def op_label(gm: fx.GraphModule, node: fx.Node) -> str:
    """A short, readable operator name for tables: module class or function name."""
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)).__name__
    if node.op in ("call_function", "call_method"):
        t = node.target
        return t if isinstance(t, str) else getattr(t, "__name__", str(t))
    return node.op


def graph_summary(gm: fx.GraphModule, example_inputs: Sequence[torch.Tensor] | None = None) -> list[dict]:
    """The graph as data, for reports and drawings: per node its name, kind, op label,
    input node names, output shape and cost."""
    costs = {c.name: c for c in graph_cost(gm, example_inputs).nodes}
    rows = []
    for n in gm.graph.nodes:
        c = costs.get(n.name)
        rows.append({"name": n.name, "kind": n.op, "op": op_label(gm, n) if n.op not in ("placeholder", "output")
                     else n.op, "inputs": [a.name for a in n.all_input_nodes],
                     "shape": list(c.shape) if c is not None and c.shape is not None else
                     (list(shape_of(n)) if shape_of(n) else None),
                     "flops": c.flops if c else 0, "params": c.params if c else 0})
    return rows

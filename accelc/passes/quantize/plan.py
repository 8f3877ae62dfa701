"""Which nodes run in int8, and which tensors need calibrated quantization parameters.

Walks the canonical graph in topological order and classifies each node:

* ``conv`` / ``linear`` — Conv2d (any groups, dilation 1) / Linear, with their fused epilogue;
* ``add`` — elementwise add of two same-shape tensors, absorbing a following relu/relu6;
* ``cat`` — concatenation (inputs requantized to a common scale);
* ``relu`` — a standalone relu/relu6 on an int8 tensor (a clamp);
* ``maxpool`` / ``avgpool`` — on an int8 input (avg: non-overlapping windows only);
* ``pass`` — flatten/reshape on an int8 input (no arithmetic);
* everything else stays float, with a reason, between explicit Quantize/Dequantize nodes.

*Observed* nodes are those whose float output defines a new int8 scale (layer, add and cat
outputs, and float tensors entering the int8 region); the others inherit their input's scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from accelc.compiler.analysis.shapes import shape_of

ACTIVATION_FNS = {torch.relu: "relu", F.relu: "relu", F.relu6: "relu6"}
PASSTHROUGH_FNS = {torch.flatten, torch.reshape}


@dataclass
class QuantPlan:
    kinds: dict[str, str] = field(default_factory=dict)  # node name → kind (int8 nodes only)
    fused_activation: dict[str, str] = field(default_factory=dict)  # add node → relu/relu6 it absorbed
    absorbed: dict[str, str] = field(default_factory=dict)  # relu node name → add node that absorbed it
    observed: list[str] = field(default_factory=list)  # node names needing calibrated qparams
    float_nodes: dict[str, str] = field(default_factory=dict)  # node name → why it stays float

    def is_int8(self, node: fx.Node) -> bool:
        return node.name in self.kinds or node.name in self.absorbed


def _avgpool_kernel(node: fx.Node) -> tuple[int, int] | None:
    """Window of a non-overlapping average pool (incl. divisible adaptive pools), else None."""
    shape = shape_of(node.args[0])
    if shape is None or len(shape) != 4:
        return None
    h, w = shape[2], shape[3]
    if node.target is F.adaptive_avg_pool2d:
        out = node.kwargs.get("output_size", node.args[1] if len(node.args) > 1 else None)
        oh, ow = (out, out) if isinstance(out, int) else tuple(out)
        oh, ow = oh or h, ow or w
        return (h // oh, w // ow) if h % oh == 0 and w % ow == 0 else None
    k = node.kwargs.get("kernel_size", node.args[1] if len(node.args) > 1 else None)
    k = (k, k) if isinstance(k, int) else tuple(k)
    stride = node.kwargs.get("stride", node.args[2] if len(node.args) > 2 else None)
    stride = k if stride in (None, [], ()) else ((stride, stride) if isinstance(stride, int) else tuple(stride))
    padding = node.kwargs.get("padding", node.args[3] if len(node.args) > 3 else 0)
    if stride != k or padding not in (0, (0, 0), [0, 0]) or node.kwargs.get("ceil_mode", False):
        return None
    return k


def make_plan(gm: fx.GraphModule, *, skip: set[str] = frozenset(), only: set[str] | None = None) -> QuantPlan:
    """Classify the nodes of a shape-propagated canonical graph.

    ``skip`` keeps those layers (node or module names) in float; ``only`` restricts the
    int8 *compute* layers to that set (used by the per-layer sensitivity analysis).
    """
    plan = QuantPlan()
    compute = lambda n: (only is None or n.name in only) and n.name not in skip and str(n.target) not in skip  # noqa: E731

    def int8_input(a) -> bool:
        return isinstance(a, fx.Node) and plan.is_int8(a)

    for node in gm.graph.nodes:
        kind, why = None, None
        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            if isinstance(mod, nn.Conv2d):
                ok = mod.dilation == (1, 1) and mod.padding_mode == "zeros" and not isinstance(mod.padding, str)
                kind, why = ("conv", None) if ok else (None, "conv with dilation/padding mode int8 does not cover")
            elif isinstance(mod, nn.Linear):
                kind = "linear"
            else:
                why = f"no int8 {type(mod).__name__}"
            if kind and not compute(node):
                kind, why = None, "skipped" if (node.name in skip or str(node.target) in skip) else "not selected"
        elif node.op == "call_function":
            t = node.target
            tensor_args = [a for a in node.args if isinstance(a, fx.Node)]
            if t is torch.add and len(tensor_args) == 2 and not node.kwargs \
                    and shape_of(node.args[0]) == shape_of(node.args[1]) == shape_of(node):
                if compute(node):
                    kind = "add"
                    users = list(node.users)
                    if len(users) == 1 and users[0].target in ACTIVATION_FNS and len(users[0].args) == 1:
                        plan.fused_activation[node.name] = ACTIVATION_FNS[users[0].target]
                        plan.absorbed[users[0].name] = node.name
                else:
                    why = "skipped"
            elif node.name in plan.absorbed:
                continue
            elif t is torch.cat and compute(node):
                kind = "cat"
            elif t in ACTIVATION_FNS and int8_input(node.args[0]):
                kind = "relu"
            elif t is F.max_pool2d and int8_input(node.args[0]):
                dil = node.kwargs.get("dilation", 1)
                kind = "maxpool" if dil in (1, (1, 1), [1, 1]) else None
            elif t in (F.avg_pool2d, F.adaptive_avg_pool2d) and int8_input(node.args[0]):
                kind = "avgpool" if _avgpool_kernel(node) else None
                why = None if kind else "average pool with overlapping windows/padding"
            elif t in PASSTHROUGH_FNS and int8_input(node.args[0]):
                kind = "pass"
            else:
                why = f"no int8 kernel for {getattr(t, '__name__', t)}"
        if kind:
            plan.kinds[node.name] = kind
        elif why and node.op in ("call_module", "call_function"):
            plan.float_nodes[node.name] = why

    observed: dict[str, None] = {}
    for node in gm.graph.nodes:
        kind = plan.kinds.get(node.name)
        if kind is None:
            continue
        if kind in ("conv", "linear", "add", "cat"):
            out = node
            if node.name in plan.fused_activation:
                out = next(iter(node.users))
            observed[out.name] = None
        for a in node.all_input_nodes:
            if not plan.is_int8(a):
                observed[a.name] = None  # float tensor entering the int8 region
    plan.observed = list(observed)
    return plan


def inherit_qparams(gm: fx.GraphModule, plan: QuantPlan, qparams: dict) -> dict:
    """Complete ``qparams`` (observed nodes) with the int8 nodes that inherit their input's
    scale (relu, pools, flatten/reshape) and fused adds (which take their activation's), so
    that any int8 value of the plan — also when a sub-plan keeps it float — has qparams."""
    out = dict(qparams)
    for node in gm.graph.nodes:
        kind = plan.kinds.get(node.name)
        if kind in ("relu", "maxpool", "avgpool", "pass"):
            out[node.name] = out[node.args[0].name]
        elif kind == "add" and node.name in plan.fused_activation:
            out[node.name] = out[next(iter(node.users)).name]
    return out

"""``fuse``: fold BatchNorm into conv/linear, drop no-ops, attach activation epilogues."""

from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from accelc.compiler.context import CompileContext
from accelc.compiler.fused import ConvAct2d, LinearAct, activation_of
from accelc.passes.base import Pass, register_pass

_ACTIVATIONS = {torch.relu: "relu", F.relu: "relu", F.relu6: "relu6"}
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def _single_call_site(gm: fx.GraphModule, target: str) -> bool:
    return sum(1 for n in gm.graph.nodes if n.op == "call_module" and n.target == target) == 1


def _layer(gm: fx.GraphModule, node) -> nn.Module | None:
    """The conv/linear module a node calls, if it is one and may be rewritten in place."""
    if not isinstance(node, fx.Node) or node.op != "call_module":
        return None
    mod = gm.get_submodule(node.target)
    if not isinstance(mod, (nn.Conv2d, nn.Linear)) or not _single_call_site(gm, node.target):
        return None
    return mod if len(node.users) == 1 else None


def fold_bn(layer: nn.Module, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of ``bn(layer(x))`` as one layer, computed in float64.

    y = γ·(Wx + b − μ)/√(σ²+ε) + β  ⇒  W' = W·s, b' = (b − μ)·s + β with s = γ/√(σ²+ε).
    """
    w = layer.weight.detach().double()
    b = layer.bias.detach().double() if layer.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    var, mean = bn.running_var.double(), bn.running_mean.double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(mean)
    s = gamma / torch.sqrt(var + bn.eps)
    w_new = w * s.reshape(-1, *([1] * (w.dim() - 1)))
    b_new = (b - mean) * s + beta
    return w_new.to(layer.weight.dtype), b_new.to(layer.weight.dtype)


def _with_params(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> nn.Module:
    """A copy of ``layer`` (same class and hyper-parameters) with new weight and bias."""
    import copy

    new = copy.copy(layer)
    new._parameters = dict(layer._parameters)
    new.weight = nn.Parameter(weight)
    new.bias = nn.Parameter(bias)
    return new


@register_pass
class Fuse(Pass):
    """Fold BatchNorm into the preceding conv/linear, remove dropout/identity, and attach
    relu/relu6 epilogues to conv/linear nodes (ConvAct2d/LinearAct).

    Exact: the graph computes the same function (BN folding is done in float64; the only
    difference is float32 rounding of the folded weights). Layers called from several places
    are left unfused, since rewriting them would change the other call sites.
    """

    name = "fuse"
    exact = True

    def run(self, gm: fx.GraphModule, ctx: CompileContext) -> fx.GraphModule:
        removed = folded = fused = 0
        graph = gm.graph
        for node in list(graph.nodes):
            if node.op == "call_function" and node.target is F.dropout and not node.kwargs.get("training", False):
                node.replace_all_uses_with(node.args[0])
                graph.erase_node(node)
                removed += 1
            elif node.op == "call_module" and type(gm.get_submodule(node.target)) is nn.Identity:
                node.replace_all_uses_with(node.args[0])
                graph.erase_node(node)
                removed += 1
        for node in list(graph.nodes):
            if node.op == "call_module" and isinstance(gm.get_submodule(node.target), _BN):
                bn = gm.get_submodule(node.target)
                src = node.args[0]
                layer = _layer(gm, src)
                if layer is None or activation_of(layer) != "none" or not bn.track_running_stats:
                    continue
                if isinstance(layer, nn.Linear) and not isinstance(bn, nn.BatchNorm1d):
                    continue
                if isinstance(layer, nn.Conv2d) and not isinstance(bn, nn.BatchNorm2d):
                    continue
                if isinstance(layer, nn.Linear) and len(src.meta.get("tensor_meta").shape) != 2:
                    continue  # BatchNorm1d over (N, C, L) normalises a different axis
                w, b = fold_bn(layer, bn)
                gm.add_submodule(src.target, _with_params(layer, w, b))
                node.replace_all_uses_with(src)
                graph.erase_node(node)
                folded += 1
        for node in list(graph.nodes):
            if node.op == "call_function" and node.target in _ACTIVATIONS and len(node.args) == 1 and not node.kwargs:
                src = node.args[0]
                layer = _layer(gm, src)
                if layer is None or activation_of(layer) != "none":
                    continue
                act = _ACTIVATIONS[node.target]
                fused_layer = (ConvAct2d.from_conv(layer, act) if isinstance(layer, nn.Conv2d)
                               else LinearAct.from_linear(layer, act))
                gm.add_submodule(src.target, fused_layer)
                node.replace_all_uses_with(src)
                graph.erase_node(node)
                fused += 1
        gm.delete_all_unused_submodules()
        self.details = {"bn_folded": folded, "activations_fused": fused, "noops_removed": removed}
        return gm

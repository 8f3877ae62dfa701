"""Cross-layer equalization (Nagel et al., "Data-Free Quantization", ICCV 2019).

For consecutive layers A → B where the activation between them is positively homogeneous
(none, relu, max-pool), rescaling A's output channel i by 1/sᵢ and B's input channel i by sᵢ
leaves the function unchanged. Choosing sᵢ = √(r₁ᵢ·r₂ᵢ)/r₂ᵢ (r = per-channel max |weight|)
equalizes the two layers' per-channel ranges, which makes per-tensor and per-channel int8
weights lose less precision. relu6 is not scale-equivariant, so such pairs are left alone.

Preserves: fp32 outputs (up to float rounding); tested.
"""

from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from accelc.compiler.fused import activation_of

_TRANSPARENT = {F.max_pool2d, torch.relu, F.relu}


def _layer(gm: fx.GraphModule, node) -> nn.Module | None:
    if isinstance(node, fx.Node) and node.op == "call_module":
        m = gm.get_submodule(node.target)
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            return m
    return None


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups == m.in_channels == m.out_channels and m.groups > 1


def find_pairs(gm: fx.GraphModule) -> list[tuple[str, str]]:
    """(A, B) module names for every equalizable consecutive pair."""
    pairs = []
    for node in gm.graph.nodes:
        a = _layer(gm, node)
        if a is None or activation_of(a) not in ("none", "relu") or len(node.users) != 1:
            continue
        if isinstance(a, nn.Conv2d) and a.groups > 1 and not _is_depthwise(a):
            continue
        cur = next(iter(node.users))
        while cur.op == "call_function" and cur.target in _TRANSPARENT and len(cur.users) == 1:
            cur = next(iter(cur.users))
        b = _layer(gm, cur)
        if b is None:
            continue
        if isinstance(b, nn.Conv2d) and b.groups > 1 and not _is_depthwise(b):
            continue
        if isinstance(a, nn.Conv2d) != isinstance(b, nn.Conv2d):
            continue  # conv → flatten → linear mixes channels with positions
        if sum(1 for n in gm.graph.nodes if n.op == "call_module" and n.target in (node.target, cur.target)) != 2:
            continue  # shared layers would be rescaled for other call sites too
        pairs.append((node.target, cur.target))
    return pairs


def _out_ranges(a: nn.Module) -> torch.Tensor:
    return a.weight.detach().abs().reshape(a.weight.shape[0], -1).amax(1)


def _in_ranges(b: nn.Module) -> torch.Tensor:
    w = b.weight.detach().abs()
    if _is_depthwise(b):
        return w.reshape(w.shape[0], -1).amax(1)
    return w.transpose(0, 1).reshape(w.shape[1], -1).amax(1)


def equalize(gm: fx.GraphModule, iterations: int = 20, tol: float = 1e-4) -> list[dict]:
    """Equalize all pairs in place (a few sweeps, for chains); returns one summary per pair."""
    pairs = find_pairs(gm)
    summary = {p: {"layers": list(p), "max_scale": 1.0, "min_scale": 1.0} for p in pairs}
    for _ in range(iterations):
        worst = 0.0
        for pa, pb in pairs:
            a, b = gm.get_submodule(pa), gm.get_submodule(pb)
            r1, r2 = _out_ranges(a).double(), _in_ranges(b).double()
            s = torch.where((r1 > 0) & (r2 > 0), torch.sqrt(r1 * r2) / r2, torch.ones_like(r1))
            worst = max(worst, float((s - 1).abs().max()))
            with torch.no_grad():
                shape_a = (-1,) + (1,) * (a.weight.dim() - 1)
                a.weight.copy_((a.weight.double() / s.reshape(shape_a)).to(a.weight.dtype))
                if a.bias is not None:
                    a.bias.copy_((a.bias.double() / s).to(a.bias.dtype))
                if _is_depthwise(b):
                    b.weight.copy_((b.weight.double() * s.reshape(shape_a)).to(b.weight.dtype))
                else:
                    shape_b = (1, -1) + (1,) * (b.weight.dim() - 2)
                    b.weight.copy_((b.weight.double() * s.reshape(shape_b)).to(b.weight.dtype))
            rec = summary[(pa, pb)]
            rec["max_scale"] = max(rec["max_scale"], float(s.max()))
            rec["min_scale"] = min(rec["min_scale"], float(s.min()))
        if worst < tol:
            break
    return list(summary.values())

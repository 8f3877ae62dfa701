"""``dsconv``: replace regular k×k convolutions by depthwise k×k + pointwise 1×1 pairs.

The factors come from network decoupling (:mod:`accelc.passes.decouple`); the rank ``r``
(depthwise multiplier) per layer comes from ``rank=``, a FLOPs budget ``flops=`` or a weight
error tolerance ``tol=``. ``refine=true`` then refits each pointwise weight by least squares
on calibration activations (the depthwise filters stay the SVD ones).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn as nn

from accelc.compiler.analysis.channels import layer_nodes, resolve_layers
from accelc.compiler.analysis.cost import graph_cost
from accelc.compiler.analysis.shapes import shape_of
from accelc.compiler.context import CompileContext
from accelc.compiler.fused import ConvAct2d, activation_of
from accelc.compiler.options import in_range
from accelc.errors import PipelineError
from accelc.passes.base import Pass, register_pass
from accelc.passes.decouple import (BudgetLayer, Decoupling, conv_macs, decoupled_macs, max_saving_rank,
                                    rank_for_fraction, rank_for_tolerance, ranks_for_budget)
from accelc.passes.training import batch_size_for, batches


def _check_rank(v):
    if v is None:
        return None
    if v <= 0:
        return "must be > 0 (a fraction in (0, 1] of the full rank, or an integer rank ≥ 1)"
    if isinstance(v, float) and v > 1:
        return "a fractional rank must be ≤ 1 (write an integer, e.g. rank=4, for an absolute rank)"
    return None


@dataclass
class DSConvOptions:
    rank: float | int | None = field(default=None, metadata={
        "help": "depthwise multiplier per layer: a fraction in (0, 1] of min(C_out, k²) or an integer "
                "(default 0.5 when neither flops nor tol is given)", "check": _check_rank})
    flops: float | None = field(default=None, metadata={
        "help": "FLOPs budget: the decomposed convs together keep at most this fraction of their FLOPs; "
                "ranks are allocated where they reduce weight error most", "check": in_range(0.0, 1.0, lo_open=True,
                                                                                            hi_open=True)})
    tol: float | None = field(default=None, metadata={
        "help": "per layer, the smallest rank whose relative weight error is ≤ tol",
        "check": in_range(0.0, 1.0, lo_open=True, hi_open=True)})
    refine: bool = field(default=False, metadata={
        "help": "refit the pointwise weights by least squares on --calib (else --train) activations"})
    samples: int = field(default=256, metadata={"help": "data samples for refine", "check": in_range(1)})
    only_if_cheaper: bool = field(default=True, metadata={
        "help": "skip layers whose decomposition would not reduce FLOPs (false: decompose them anyway, "
                "e.g. to check exactness at full rank)"})
    ignore: list[str] = field(default_factory=list, metadata={
        "help": "layers to leave as they are (module paths such as [layer1.0.conv1], or node names)"})

    def __post_init__(self):
        given = [n for n in ("rank", "flops", "tol") if getattr(self, n) is not None]
        if len(given) > 1:
            raise PipelineError(f"dsconv: give one of rank=, flops=, tol= (got {', '.join(given)})",
                                hint="rank: per-layer rank; flops: overall FLOPs budget; tol: weight error tolerance")
        if not given:
            self.rank = 0.5


@dataclass
class _Candidate:
    node: fx.Node
    conv: nn.Conv2d
    dec: Decoupling
    out_hw: int
    rank: int | None = None  # None: keep the conv

    @property
    def k(self) -> int:
        return self.dec.kernel[0] * self.dec.kernel[1]

    @property
    def macs(self) -> int:
        return conv_macs(self.out_hw, self.conv.in_channels, self.conv.out_channels, self.k)

    def decoupled_macs(self, r: int) -> int:
        return decoupled_macs(self.out_hw, self.conv.in_channels, self.conv.out_channels, self.k, r)

    @property
    def r_max(self) -> int:
        """The largest rank that still saves MACs (0: none)."""
        return max_saving_rank(self.conv.in_channels, self.conv.out_channels, self.k, self.dec.full_rank)


@register_pass
class DSConv(Pass):
    """Replace k×k convolutions (groups=1, k>1) by a depthwise k×k conv with depth multiplier
    r followed by a 1×1 pointwise conv, initialised by per-input-channel SVD (network
    decoupling); layers where this would not reduce FLOPs are kept.

    Preserved: stride, padding, dilation and padding mode (on the depthwise conv), the bias
    and any fused activation epilogue (on the pointwise conv), and the graph's inputs and
    outputs. Exact (to float rounding) when r ≥ min(C_out, k²), otherwise the best rank-r
    approximation of each layer in Frobenius norm. Details per layer: r, FLOPs and params
    before→after, relative weight error, and the relative output error on the sample inputs,
    of the layer alone (``output_rel_err``) and inside the transformed graph
    (``network_rel_err``, which includes the error of the layers before it).
    """

    name = "dsconv"
    Options = DSConvOptions

    def run(self, gm: fx.GraphModule, ctx: CompileContext) -> fx.GraphModule:
        o = self.options
        ignore = set(resolve_layers(gm, o.ignore, owner=self.name))
        if o.refine and ctx.calib is None and ctx.train is None:
            raise PipelineError("dsconv(refine=true) needs data to fit the pointwise weights on",
                                hint="pass --calib data.npz (or --train; 'digits' for the demo), or drop refine")
        conv_flops_before = conv_flops(gm, ctx.example_inputs)
        original = copy.deepcopy(gm)
        candidates, skipped = self._candidates(gm, ignore)
        budget_met = self._choose_ranks(candidates)
        chosen = [c for c in candidates if c.rank is not None]
        for c in candidates:
            if c.rank is None:
                skipped.append({"layer": c.node.target, "skipped": "the FLOPs budget is better spent on other layers"
                                if o.flops is not None else "the chosen rank would not reduce its FLOPs"})
        replaced = {c.node.target: _replace(gm, c) for c in chosen}
        if o.refine and chosen:
            data = ctx.calib if ctx.calib is not None else ctx.train
            _refine(gm, original, replaced, data, o.samples, ctx.batch_size)
        errors = _output_errors(original, gm, replaced, ctx)
        gm.delete_all_unused_submodules()
        self.details = {"layers": [_layer_details(c, *replaced[c.node.target], errors[c.node.target]) for c in chosen],
                        "skipped": skipped, "refined": bool(o.refine and chosen),
                        "conv_flops": f"{conv_flops_before}→{conv_flops(gm, ctx.example_inputs)}"}
        if o.flops is not None:
            self.details["budget_met"] = budget_met
        return gm

    def _candidates(self, gm: fx.GraphModule, ignore: set[str]) -> tuple[list[_Candidate], list[dict]]:
        out, skipped = [], []
        for path, nodes in layer_nodes(gm).items():
            conv = gm.get_submodule(path)
            if not isinstance(conv, nn.Conv2d) or path in ignore:
                continue
            k = conv.kernel_size[0] * conv.kernel_size[1]
            if conv.groups != 1 or k == 1:
                continue  # already depthwise/grouped, or pointwise
            if len(nodes) > 1:
                skipped.append({"layer": path, "skipped": "called from several places"})
                continue
            shape = shape_of(nodes[0])
            cand = _Candidate(nodes[0], conv, Decoupling.of(conv.weight), shape[2] * shape[3])
            if self.options.only_if_cheaper and cand.r_max == 0:
                skipped.append({"layer": path, "skipped": "no rank reduces its FLOPs"})
                continue
            out.append(cand)
        return out, skipped

    def _choose_ranks(self, cands: list[_Candidate]) -> bool:
        o = self.options
        if o.flops is not None:
            layers = [BudgetLayer(c.node.target, c.dec, c.decoupled_macs(1), c.macs, c.r_max) for c in cands if c.r_max]
            ranks, met = ranks_for_budget(layers, o.flops)
            for c in cands:
                c.rank = ranks.get(c.node.target)
            return met
        for c in cands:
            r = rank_for_fraction(c.dec.full_rank, o.rank) if o.rank is not None else rank_for_tolerance(c.dec, o.tol)
            c.rank = r if r <= c.r_max or not o.only_if_cheaper else None
        return True


def conv_flops(gm: fx.GraphModule, example_inputs) -> int:
    """FLOPs of all Conv2d nodes (cost model conventions)."""
    return sum(c.flops for c in graph_cost(gm, example_inputs).nodes if c.op in ("Conv2d", "ConvAct2d"))


def _layer_details(c: _Candidate, dw: nn.Conv2d, pw: nn.Conv2d, output_err: tuple[float, float]) -> dict:
    params_after = sum(p.numel() for m in (dw, pw) for p in m.parameters())
    return {"layer": c.node.target, "rank": c.rank, "full_rank": c.dec.full_rank,
            "flops": f"{2 * c.macs}→{2 * c.decoupled_macs(c.rank)}",
            "params": f"{sum(p.numel() for p in c.conv.parameters())}→{params_after}",
            "weight_rel_err": round(_effective_error(c.conv, dw, pw), 6), "output_rel_err": round(output_err[0], 6),
            "network_rel_err": round(output_err[1], 6)}


def _replace(gm: fx.GraphModule, c: _Candidate) -> tuple[nn.Conv2d, nn.Conv2d]:
    """Swap the conv node for depthwise → pointwise nodes; returns the two new modules."""
    conv, r = c.conv, c.rank
    dw_w, pw_w = c.dec.factors(r)
    dw = nn.Conv2d(conv.in_channels, conv.in_channels * r, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                   groups=conv.in_channels, bias=False, padding_mode=conv.padding_mode)
    pw = nn.Conv2d(conv.in_channels * r, conv.out_channels, 1, bias=conv.bias is not None)
    dtype = conv.weight.dtype
    dw.weight = nn.Parameter(dw_w.to(dtype))
    pw.weight = nn.Parameter(pw_w.to(dtype))
    if conv.bias is not None:
        pw.bias = nn.Parameter(conv.bias.detach().clone())
    if activation_of(conv) != "none":
        pw = ConvAct2d.from_conv(pw, activation_of(conv))
    node, graph = c.node, gm.graph
    path = node.target
    dw_path, pw_path = _free_name(gm, path + "_dw"), _free_name(gm, path + "_pw")
    gm.add_submodule(dw_path, dw)
    gm.add_submodule(pw_path, pw)
    with graph.inserting_before(node):
        d = graph.create_node("call_module", dw_path, node.args, node.kwargs, name=node.name + "_dw")
        p = graph.create_node("call_module", pw_path, (d,), {}, name=node.name + "_pw")
    node.replace_all_uses_with(p)
    graph.erase_node(node)
    gm.recompile()
    return dw, pw


def _free_name(gm: fx.GraphModule, path: str) -> str:
    name, i = path, 1
    while _exists(gm, name):
        name, i = f"{path}_{i}", i + 1
    return name


def _exists(gm: fx.GraphModule, path: str) -> bool:
    try:
        gm.get_submodule(path)
        return True
    except AttributeError:
        return False


def _effective_weight(dw: nn.Conv2d, pw: nn.Conv2d) -> torch.Tensor:
    """The k×k weight that ``pw ∘ dw`` computes: W[o, c] = Σ_j P[o, c·r+j] · D[c·r+j]."""
    cin = dw.in_channels
    r = dw.out_channels // cin
    d = dw.weight.detach().double().reshape(cin, r, -1)  # c, j, k
    p = pw.weight.detach().double().reshape(pw.out_channels, cin, r)  # o, c, j
    return torch.einsum("ocj,cjk->ock", p, d).reshape(pw.out_channels, cin, *dw.kernel_size)


def _effective_error(conv: nn.Conv2d, dw: nn.Conv2d, pw: nn.Conv2d) -> float:
    w = conv.weight.detach().double()
    return float((w - _effective_weight(dw, pw)).norm() / w.norm().clamp_min(1e-30))


def _layer_inputs(gm: fx.GraphModule, paths, fn):
    """Forward pre-hooks calling ``fn(path, input)`` on the modules ``paths``; returns handles."""
    return [gm.get_submodule(p).register_forward_pre_hook(lambda m, args, p=p: fn(p, args[0])) for p in paths]


def _output_errors(original: fx.GraphModule, gm: fx.GraphModule, replaced: dict,
                   ctx: CompileContext) -> dict[str, tuple[float, float]]:
    """Per layer, two relative L2 errors of its output on the sample inputs: *local* —
    ``pw(dw(x))`` against ``conv(x)`` on the layer's input ``x`` in the original graph — and
    *in-network* — the layer's output in the transformed graph against the original graph's
    (which includes what the layers before it changed)."""
    local = {p: [0.0, 0.0] for p in replaced}
    network = {p: [0.0, 0.0] for p in replaced}
    refs: dict[str, list[torch.Tensor]] = {p: [] for p in replaced}

    def on_original(path, x):
        conv = original.get_submodule(path)
        dw, pw = replaced[path]
        ref = conv.forward(x).double()  # forward(): no hooks
        refs[path].append(ref)
        _accumulate(local[path], pw.forward(dw.forward(x)).double(), ref)

    handles = _layer_inputs(original, replaced, on_original)
    handles += [pw.register_forward_hook(lambda m, a, out, p=p: _accumulate(network[p], out.double(), refs[p].pop(0)))
                for p, (_, pw) in replaced.items()]
    try:
        with torch.no_grad():
            for inputs in ctx.samples():
                original(*inputs)
                gm(*inputs)
    finally:
        for h in handles:
            h.remove()
    return {p: (_ratio(local[p]), _ratio(network[p])) for p in replaced}


def _accumulate(acc: list[float], new: torch.Tensor, ref: torch.Tensor) -> None:
    acc[0] += float(((new - ref) ** 2).sum())
    acc[1] += float((ref ** 2).sum())


def _ratio(acc: list[float]) -> float:
    return (acc[0] / acc[1]) ** 0.5 if acc[1] > 0 else 0.0


def _refine(gm: fx.GraphModule, original: fx.GraphModule, replaced: dict, data, samples: int, fallback: int) -> None:
    """Refit each pointwise weight (in graph order) by ridge least squares so that, on the
    data, ``pw(dw(x'))`` matches the original conv's pre-activation output ``conv(x) − b``,
    where ``x'`` is the layer's input in the graph refined so far and ``x`` in the original."""
    bs = batch_size_for(original, data, 64, fallback)
    for path, (dw, pw) in replaced.items():
        conv = original.get_submodule(path)
        feats: dict[str, torch.Tensor] = {}
        h_new = dw.register_forward_hook(lambda m, a, out: feats.__setitem__("d", out))
        h_ref = conv.register_forward_pre_hook(lambda m, a: feats.__setitem__("y", m._conv_forward(a[0], m.weight, None)))
        gram = rhs = None
        try:
            with torch.no_grad():
                for inputs, _ in batches(data, bs, limit=samples):
                    original(*inputs)
                    gm(*inputs)
                    d = feats["d"].double().permute(0, 2, 3, 1).reshape(-1, dw.out_channels)
                    y = feats["y"].double().permute(0, 2, 3, 1).reshape(-1, pw.out_channels)
                    gram = d.T @ d if gram is None else gram + d.T @ d
                    rhs = d.T @ y if rhs is None else rhs + d.T @ y
        finally:
            h_new.remove()
            h_ref.remove()
        ridge = 1e-6 * float(torch.diagonal(gram).mean()) + 1e-12
        p = torch.linalg.solve(gram + ridge * torch.eye(gram.shape[0], dtype=gram.dtype), rhs)  # (Cin·r) × Cout
        pw.weight.data.copy_(p.T.reshape_as(pw.weight).to(pw.weight.dtype))

"""Rewrite a float graph into the quantized graph described by a :class:`QuantPlan`.

Each int8 node becomes a quantized module (QConv2d, QLinear, QAdd, Requantize, QMaxPool2d,
QAvgPool2d) or keeps its function on int8 tensors (flatten, reshape, cat). Quantize nodes are
inserted where float tensors enter the int8 region and Dequantize nodes where int8 tensors
leave it (one per tensor and scale, shared by all consumers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.fx as fx
import torch.nn as nn

from accelc.compiler.fused import activation_of
from accelc.passes.quantize.arith import pow2_exponent, quantize_multiplier
from accelc.passes.quantize.modules import (Dequantize, QAdd, QAvgPool2d, QConv2d, QLinear, QMaxPool2d, Quantize,
                                            Requantize)
from accelc.passes.quantize.plan import QuantPlan, _avgpool_kernel
from accelc.passes.quantize.qparams import QParams, quantize_bias, quantize_weight, weight_scales


@dataclass
class LayerQuant:
    """Weight quantization of one conv/linear (computed before calibration: bias correction
    needs the quantized weights, and the weights do not depend on activations)."""

    w_scales: torch.Tensor  # float64 [O]
    w_q: torch.Tensor  # int8

    def dequantized(self, like: torch.Tensor) -> torch.Tensor:
        return (self.w_q.double() * self.w_scales.reshape(-1, *([1] * (like.dim() - 1)))).to(like.dtype)


def quantize_layer_weights(mod: nn.Module, *, per_channel: bool, pow2: bool) -> LayerQuant:
    scales = weight_scales(mod.weight, per_channel=per_channel, pow2=pow2)
    return LayerQuant(scales, quantize_weight(mod.weight, scales))


def clip_bounds(activation: str, qp: QParams) -> tuple[int, int]:
    """Integer clip range implementing a fused activation on the output grid."""
    lo, hi = qp.qmin, qp.qmax
    if activation in ("relu", "relu6"):
        lo = max(lo, qp.zero_point)
    if activation == "relu6":
        hi = min(hi, qp.zero_point + round(6.0 / qp.scale))
    return lo, hi


def multiplier(real: float, pow2: bool) -> tuple[int, int]:
    """(mult, shift) with mult·2^-shift = real: exact power of two (mult 1) for pow2."""
    if pow2:
        return 1, -pow2_exponent(real)
    return quantize_multiplier(real)


def two_input_multipliers(sa: float, sb: float, sy: float, pow2: bool) -> tuple[int, int, int]:
    """(a_mult, b_mult, shift) with a_mult·2^-shift = sa/sy and likewise for b."""
    if pow2:
        ea, eb, ey = pow2_exponent(sa), pow2_exponent(sb), pow2_exponent(sy)
        em = min(ea, eb)
        return 1 << (ea - em), 1 << (eb - em), ey - em
    r = max(sa, sb) / sy
    shift = min(62, max(0, 30 - math.ceil(math.log2(r))))
    return round(sa / sy * 2**shift), round(sb / sy * 2**shift), shift


class Rewriter:
    def __init__(self, gm: fx.GraphModule, plan: QuantPlan, qparams: dict[str, QParams],
                 weights: dict[str, LayerQuant], *, pow2: bool, scheme: str,
                 bias_shift: dict[str, torch.Tensor] | None = None):
        self.gm, self.plan, self.qparams, self.weights = gm, plan, qparams, weights
        self.pow2, self.scheme = pow2, scheme
        self.bias_shift = bias_shift or {}
        self.graph = fx.Graph()
        self.root = nn.Module()
        self.env: dict[str, fx.Node] = {}  # old node name → new node
        self.qp_of: dict[str, QParams] = {}  # old node name → qparams of its int8 value
        self.cache: dict[tuple, fx.Node] = {}
        self.counter = 0

    # -- helpers ---------------------------------------------------------------------------
    def _add_module(self, base: str, mod: nn.Module) -> str:
        name = base.replace(".", "_")
        while hasattr(self.root, name):
            self.counter += 1
            name = f"{base.replace('.', '_')}_{self.counter}"
        self.root.add_module(name, mod)
        return name

    def _call(self, base: str, mod: nn.Module, *args) -> fx.Node:
        return self.graph.call_module(self._add_module(base, mod), args)

    def int8(self, node: fx.Node, want: QParams | None = None) -> fx.Node:
        """The int8 version of an old node's value, at ``want`` (default: its own qparams)."""
        if self.plan.is_int8(node):
            have = self.qp_of[node.name]
            if want is None or want == have:
                return self.env[node.name]
            key = ("requant", node.name, want)
            if key not in self.cache:
                self.cache[key] = self._requant_value(self.env[node.name], have, want, node.name)
            return self.cache[key]
        qp = self.qparams[node.name]
        key = ("quant", node.name, qp)
        if key not in self.cache:
            self.cache[key] = self._call(f"{node.name}_quant", Quantize(qp), self.env[node.name])
        node_int8 = self.cache[key]
        return node_int8 if want is None or want == qp else self._requant_value(node_int8, qp, want, node.name)

    def _requant_value(self, value: fx.Node, have: QParams, want: QParams, base: str) -> fx.Node:
        mult, shift = multiplier(have.scale / want.scale, self.pow2)
        return self._call(f"{base}_requant", Requantize(have, want, mult, shift, want.qmin, want.qmax), value)

    def float_value(self, node: fx.Node) -> fx.Node:
        if not self.plan.is_int8(node):
            return self.env[node.name]
        qp = self.qp_of[node.name]
        key = ("dequant", node.name)
        if key not in self.cache:
            self.cache[key] = self._call(f"{node.name}_dequant", Dequantize(qp), self.env[node.name])
        return self.cache[key]

    def _map_float(self, arg):
        return fx.node.map_arg(arg, lambda n: self.float_value(n))

    # -- per kind --------------------------------------------------------------------------
    def _layer(self, node: fx.Node, kind: str) -> None:
        mod = self.gm.get_submodule(node.target)
        x = node.args[0]
        x_qp = self.qp_of[x.name] if self.plan.is_int8(x) else self.qparams[x.name]
        y_qp = self.qparams[node.name]
        lq = self.weights[node.name]
        bias = mod.bias.detach().double() if mod.bias is not None else None
        if node.name in self.bias_shift:
            bias = (bias if bias is not None else torch.zeros(mod.weight.shape[0], dtype=torch.float64)) \
                - self.bias_shift[node.name].double()
        b_q = quantize_bias(bias, x_qp.scale, lq.w_scales, mod.weight.shape[0], layer=node.name)
        mults, shifts = zip(*(multiplier(x_qp.scale * float(s) / y_qp.scale, self.pow2) for s in lq.w_scales))
        act = activation_of(mod)
        lo, hi = clip_bounds(act, y_qp)
        common = (lq.w_q, b_q, torch.tensor(mults), torch.tensor(shifts), x_qp, y_qp, lq.w_scales, lo, hi)
        if kind == "conv":
            pad = mod.padding if not isinstance(mod.padding, str) else (0, 0)
            qmod = QConv2d(*common, activation=act, scheme=self.scheme, stride=mod.stride, padding=pad,
                           groups=mod.groups)
        else:
            qmod = QLinear(*common, activation=act, scheme=self.scheme)
        self.env[node.name] = self._call(str(node.target), qmod, self.int8(x))
        self.qp_of[node.name] = y_qp

    def _add(self, node: fx.Node) -> None:
        a, b = node.args[0], node.args[1]
        act = self.plan.fused_activation.get(node.name, "none")
        out_name = next(iter(node.users)).name if act != "none" else node.name
        y_qp = self.qparams[out_name]
        a_q, b_q = self.int8(a), self.int8(b)
        a_qp = self.qp_of.get(a.name) or self.qparams[a.name]
        b_qp = self.qp_of.get(b.name) or self.qparams[b.name]
        am, bm, shift = two_input_multipliers(a_qp.scale, b_qp.scale, y_qp.scale, self.pow2)
        lo, hi = clip_bounds(act, y_qp)
        new = self._call(node.name, QAdd(a_qp, b_qp, y_qp, am, bm, shift, lo, hi, act), a_q, b_q)
        for name in {node.name, out_name}:
            self.env[name] = new
            self.qp_of[name] = y_qp

    def _cat(self, node: fx.Node) -> None:
        y_qp = self.qparams[node.name]
        tensors = [self.int8(t, y_qp) for t in node.args[0]]
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        self.env[node.name] = self.graph.call_function(torch.cat, (tensors,), {"dim": dim})
        self.qp_of[node.name] = y_qp

    def _unary(self, node: fx.Node, kind: str) -> None:
        x = node.args[0]
        qp = self.qp_of[x.name]
        xi = self.env[x.name]
        if kind == "relu":
            lo, hi = clip_bounds(self.plan_activation(node), qp)
            new = self._call(node.name, Requantize(qp, qp, 1, 0, lo, hi), xi)
        elif kind == "maxpool":
            kw = dict(zip(("kernel_size", "stride", "padding", "dilation", "ceil_mode"), node.args[1:]), **node.kwargs)
            k = kw["kernel_size"]
            k = (k, k) if isinstance(k, int) else tuple(k)
            s = kw.get("stride") or k
            s = (s, s) if isinstance(s, int) else tuple(s)
            p = kw.get("padding", 0)
            p = (p, p) if isinstance(p, int) else tuple(p)
            new = self._call(node.name, QMaxPool2d(k, s, p, bool(kw.get("ceil_mode", False))), xi)
        elif kind == "avgpool":
            new = self._call(node.name, QAvgPool2d(_avgpool_kernel(node), qp), xi)
        else:  # pass: flatten / reshape on int8
            args = (xi,) + tuple(node.args[1:])
            new = self.graph.call_function(node.target, args, dict(node.kwargs))
        self.env[node.name] = new
        self.qp_of[node.name] = qp

    @staticmethod
    def plan_activation(node: fx.Node) -> str:
        from accelc.passes.quantize.plan import ACTIVATION_FNS

        return ACTIVATION_FNS[node.target]

    # -- driver ----------------------------------------------------------------------------
    def run(self) -> fx.GraphModule:
        handlers: dict[str, Callable] = {"conv": lambda n: self._layer(n, "conv"),
                                         "linear": lambda n: self._layer(n, "linear"),
                                         "add": self._add, "cat": self._cat}
        for node in self.gm.graph.nodes:
            if node.name in self.plan.absorbed:
                continue
            kind = self.plan.kinds.get(node.name)
            if kind in handlers:
                handlers[kind](node)
            elif kind is not None:
                self._unary(node, kind)
            elif node.op == "placeholder":
                self.env[node.name] = self.graph.placeholder(node.name)
                self.env[node.name].meta.update(node.meta)
            elif node.op == "output":
                self.graph.output(self._map_float(node.args[0]))
            elif node.op == "get_attr":
                self.root.register_buffer(node.target.replace(".", "_"), _fetch(self.gm, node.target))
                self.env[node.name] = self.graph.get_attr(node.target.replace(".", "_"))
            else:
                args, kwargs = self._map_float(node.args), self._map_float(node.kwargs)
                if node.op == "call_module":
                    name = self._add_module(str(node.target), self.gm.get_submodule(node.target))
                    self.env[node.name] = self.graph.call_module(name, args, kwargs)
                else:
                    self.env[node.name] = self.graph.create_node(node.op, node.target, args, kwargs)
        gm = fx.GraphModule(self.root, self.graph)
        gm.graph.lint()
        return gm


def _fetch(gm, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj

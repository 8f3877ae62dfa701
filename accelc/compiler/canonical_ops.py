"""The canonical spellings: which torch function each module, method, operator and aten
overload becomes (used by :mod:`accelc.compiler.canonicalize`)."""

from __future__ import annotations

import operator
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

aten = torch.ops.aten

# Stateless modules → (function, kwargs built from the module).
STATELESS_MODULES: dict[type, Callable[[nn.Module], tuple[Callable, dict]]] = {
    nn.ReLU: lambda m: (torch.relu, {}),
    nn.ReLU6: lambda m: (F.relu6, {}),
    nn.Sigmoid: lambda m: (torch.sigmoid, {}),
    nn.Tanh: lambda m: (torch.tanh, {}),
    nn.GELU: lambda m: (F.gelu, {"approximate": m.approximate} if m.approximate != "none" else {}),
    nn.SiLU: lambda m: (F.silu, {}),
    nn.Hardswish: lambda m: (F.hardswish, {}),
    nn.Hardsigmoid: lambda m: (F.hardsigmoid, {}),
    nn.Hardtanh: lambda m: (F.relu6, {}) if (m.min_val, m.max_val) == (0.0, 6.0)
    else (F.hardtanh, {"min_val": m.min_val, "max_val": m.max_val}),
    nn.MaxPool2d: lambda m: (F.max_pool2d, {"kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding,
                                            "dilation": m.dilation, "ceil_mode": m.ceil_mode}),
    nn.AvgPool2d: lambda m: (F.avg_pool2d, {"kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding,
                                            "ceil_mode": m.ceil_mode, "count_include_pad": m.count_include_pad}),
    nn.AdaptiveAvgPool2d: lambda m: (F.adaptive_avg_pool2d, {"output_size": m.output_size}),
    nn.Flatten: lambda m: (torch.flatten, {"start_dim": m.start_dim, "end_dim": m.end_dim}),
    nn.Dropout: lambda m: (F.dropout, {"p": m.p, "training": False}),
    nn.Softmax: lambda m: (torch.softmax, {"dim": m.dim}),
    nn.LogSoftmax: lambda m: (torch.log_softmax, {"dim": m.dim}),
}

# Functions/methods that are one canonical function applied to the first argument.
UNARY = {
    "relu": torch.relu, "relu_": torch.relu, F.relu: torch.relu, torch.relu_: torch.relu,
    "sigmoid": torch.sigmoid, "tanh": torch.tanh, F.sigmoid: torch.sigmoid, F.tanh: torch.tanh,
    "exp": torch.exp, "neg": torch.neg, "t": torch.t,
    # the same function again, to drop inplace= and spell arguments one way
    F.relu6: F.relu6, F.silu: F.silu, F.hardswish: F.hardswish, F.hardsigmoid: F.hardsigmoid,
}
BINARY = {
    operator.add: torch.add, operator.iadd: torch.add, "add": torch.add, "add_": torch.add,
    operator.sub: torch.sub, "sub": torch.sub, operator.mul: torch.mul, operator.imul: torch.mul,
    "mul": torch.mul, "mul_": torch.mul, operator.truediv: torch.div, "div": torch.div,
    operator.matmul: torch.matmul, "matmul": torch.matmul,
}
NOOP_METHODS = {"contiguous", "clone", "detach"}
NOOP_ATEN = {aten.clone.default, aten.contiguous.default, aten.alias.default, aten.detach.default,
              aten.lift_fresh_copy.default}


def aten_table() -> dict:
    """aten overload → (canonical function, [(aten kwarg, torch kwarg or None for positional)])."""
    pos = None
    return {
        aten.relu.default: (torch.relu, [("input", pos)]),
        aten.relu_.default: (torch.relu, [("input", pos)]),
        aten.relu6.default: (F.relu6, [("input", pos)]),
        aten.sigmoid.default: (torch.sigmoid, [("input", pos)]),
        aten.tanh.default: (torch.tanh, [("input", pos)]),
        aten.silu.default: (F.silu, [("input", pos)]),
        aten.hardswish.default: (F.hardswish, [("input", pos)]),
        aten.hardsigmoid.default: (F.hardsigmoid, [("input", pos)]),
        aten.gelu.default: (F.gelu, [("input", pos), ("approximate", "approximate")]),
        aten.exp.default: (torch.exp, [("input", pos)]),
        aten.neg.default: (torch.neg, [("input", pos)]),
        aten.add.Tensor: (torch.add, [("input", pos), ("other", pos), ("alpha", "alpha")]),
        aten.sub.Tensor: (torch.sub, [("input", pos), ("other", pos), ("alpha", "alpha")]),
        aten.mul.Tensor: (torch.mul, [("input", pos), ("other", pos)]),
        aten.div.Tensor: (torch.div, [("input", pos), ("other", pos)]),
        aten.matmul.default: (torch.matmul, [("input", pos), ("other", pos)]),
        aten.mm.default: (torch.matmul, [("input", pos), ("mat2", pos)]),
        aten.bmm.default: (torch.matmul, [("input", pos), ("mat2", pos)]),
        aten.cat.default: (torch.cat, [("tensors", pos), ("dim", "dim")]),
        aten.flatten.using_ints: (torch.flatten, [("input", pos), ("start_dim", "start_dim"), ("end_dim", "end_dim")]),
        aten.view.default: (torch.reshape, [("input", pos), ("size", pos)]),
        aten.reshape.default: (torch.reshape, [("input", pos), ("shape", pos)]),
        aten._unsafe_view.default: (torch.reshape, [("input", pos), ("size", pos)]),
        aten.permute.default: (torch.permute, [("input", pos), ("dims", pos)]),
        aten.transpose.int: (torch.transpose, [("input", pos), ("dim0", pos), ("dim1", pos)]),
        aten.t.default: (torch.t, [("input", pos)]),
        aten.max_pool2d.default: (F.max_pool2d, [("input", pos), ("kernel_size", "kernel_size"), ("stride", "stride"),
                                                 ("padding", "padding"), ("dilation", "dilation"),
                                                 ("ceil_mode", "ceil_mode")]),
        aten.avg_pool2d.default: (F.avg_pool2d, [("input", pos), ("kernel_size", "kernel_size"), ("stride", "stride"),
                                                 ("padding", "padding"), ("ceil_mode", "ceil_mode"),
                                                 ("count_include_pad", "count_include_pad"),
                                                 ("divisor_override", "divisor_override")]),
        aten.adaptive_avg_pool2d.default: (F.adaptive_avg_pool2d, [("input", pos), ("output_size", "output_size")]),
        aten.mean.dim: (torch.mean, [("input", pos), ("dim", "dim"), ("keepdim", "keepdim")]),
        aten.softmax.int: (torch.softmax, [("input", pos), ("dim", "dim")]),
        aten.log_softmax.int: (torch.log_softmax, [("input", pos), ("dim", "dim")]),
        aten._softmax.default: (torch.softmax, [("input", pos), ("dim", "dim")]),
        aten._log_softmax.default: (torch.log_softmax, [("input", pos), ("dim", "dim")]),
        aten.hardtanh.default: (F.hardtanh, [("input", pos), ("min_val", "min_val"), ("max_val", "max_val")]),
        aten.dropout.default: (F.dropout, [("input", pos), ("p", "p")]),
    }


ATEN = aten_table()
DROP_DEFAULTS = {"stride": [], "alpha": 1, "divisor_override": None}

"""Canonical form: one shape for each thing, whichever way the model was written or captured.

After :func:`canonicalize`:

* parameterised layers are ``call_module`` nodes on ``nn.Conv2d``/``nn.Linear``/
  ``nn.BatchNorm{1,2}d``/``nn.LayerNorm`` — also when the model used ``F.conv2d`` on its own
  parameters or came through ``torch.export`` (where they are aten ops on get_attr tensors);
* stateless ops are ``call_function`` on one torch function each (``torch.relu``,
  ``F.relu6``, ``torch.add``, ``F.max_pool2d``, ``torch.flatten``, ``torch.reshape``, …),
  whether they were modules (``nn.ReLU``), methods (``x.view``), operators (``a + b``) or aten
  overloads;
* Python-level shape arithmetic (``x.size(0)``, ``x.shape[1] * 4``) is folded to constants
  for the example input shapes (artifacts are static-shape);
* no-ops (``nn.Identity``, ``contiguous``, ``clone``, ``detach``) are gone.

The rewrite preserves the graph's outputs exactly (it only renames how each op is called).
Ops without a canonical spelling are kept as they are; targets decide whether they support them.
"""

from __future__ import annotations

import builtins
import operator
from typing import Any, Callable, Sequence

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.node import map_aggregate

aten = torch.ops.aten

# --------------------------------------------------------------------------- tables
# Stateless modules → (function, kwargs built from the module).
_STATELESS_MODULES: dict[type, Callable[[nn.Module], tuple[Callable, dict]]] = {
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
_UNARY = {
    "relu": torch.relu, "relu_": torch.relu, F.relu: torch.relu, torch.relu_: torch.relu,
    "sigmoid": torch.sigmoid, "tanh": torch.tanh, F.sigmoid: torch.sigmoid, F.tanh: torch.tanh,
    "exp": torch.exp, "neg": torch.neg, "t": torch.t,
    # the same function again, to drop inplace= and spell arguments one way
    F.relu6: F.relu6, F.silu: F.silu, F.hardswish: F.hardswish, F.hardsigmoid: F.hardsigmoid,
}
_BINARY = {
    operator.add: torch.add, operator.iadd: torch.add, "add": torch.add, "add_": torch.add,
    operator.sub: torch.sub, "sub": torch.sub, operator.mul: torch.mul, operator.imul: torch.mul,
    "mul": torch.mul, "mul_": torch.mul, operator.truediv: torch.div, "div": torch.div,
    operator.matmul: torch.matmul, "matmul": torch.matmul,
}
_NOOP_METHODS = {"contiguous", "clone", "detach"}
_NOOP_ATEN = {aten.clone.default, aten.contiguous.default, aten.alias.default, aten.detach.default,
              aten.lift_fresh_copy.default}


def _aten_table() -> dict:
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


_ATEN = _aten_table()
_DROP_DEFAULTS = {"stride": [], "alpha": 1, "divisor_override": None}


# --------------------------------------------------------------------------- helpers
def _fetch(gm: fx.GraphModule, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _tensor_arg(gm: fx.GraphModule, arg) -> torch.Tensor | None:
    if isinstance(arg, fx.Node) and arg.op == "get_attr":
        t = _fetch(gm, arg.target)
        return t if isinstance(t, torch.Tensor) else None
    return None


def _replace(node: fx.Node, fn: Callable, args: tuple, kwargs: dict | None = None) -> fx.Node:
    graph = node.graph
    with graph.inserting_before(node):
        new = graph.call_function(fn, args, kwargs or {})
    _take_place(node, new)
    return new


def _take_place(old: fx.Node, new: fx.Node) -> None:
    """``new`` replaces ``old`` everywhere, inheriting its metadata and its name."""
    new.meta.update(old.meta)
    old.replace_all_uses_with(new)
    name = old.name
    old.graph.erase_node(old)
    # The namespace keeps ``name`` reserved after the erase, so no later node can take it;
    # assigning it directly keeps the graph's readable names stable through canonicalization.
    new.name = name


def _replace_with_module(gm: fx.GraphModule, node: fx.Node, name: str, module: nn.Module, x: fx.Node) -> fx.Node:
    gm.add_submodule(name, module)
    graph = node.graph
    with graph.inserting_before(node):
        new = graph.call_module(name, (x,))
    _take_place(node, new)
    return new  # named like the node it replaces


def _layer_name(gm: fx.GraphModule, weight_node: fx.Node, kind: str, taken: set[str]) -> str:
    """Name for a layer built from a get_attr weight: its owner's path (``layer1.0.conv1``)."""
    target = weight_node.target
    base = target[: -len(".weight")] if target.endswith(".weight") else target.replace(".", "_") + f"_{kind}"
    name, i = base, 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def _as_pair(v, n=2):
    if isinstance(v, (list, tuple)):
        return tuple(v) * n if len(v) == 1 else tuple(v)
    return (v,) * n


# --------------------------------------------------------------------------- layer lifting
def _conv_module(w: torch.Tensor, b, stride, padding, dilation, groups) -> nn.Conv2d:
    out_c, in_c_per_g, kh, kw = w.shape
    conv = nn.Conv2d(in_c_per_g * groups, out_c, (kh, kw), stride=_as_pair(stride), dilation=_as_pair(dilation),
                     padding=padding if isinstance(padding, str) else _as_pair(padding), groups=groups,
                     bias=b is not None)
    conv.weight = nn.Parameter(w.detach().clone(), requires_grad=w.requires_grad)
    if b is not None:
        conv.bias = nn.Parameter(b.detach().clone(), requires_grad=b.requires_grad)
    return conv


def _linear_module(w: torch.Tensor, b) -> nn.Linear:
    lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    lin.weight = nn.Parameter(w.detach().clone(), requires_grad=w.requires_grad)
    if b is not None:
        lin.bias = nn.Parameter(b.detach().clone(), requires_grad=b.requires_grad)
    return lin


def _bn_module(rank: int, w, b, mean, var, eps, momentum) -> nn.Module:
    cls = nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d
    bn = cls(mean.numel(), eps=eps, momentum=momentum if momentum is not None else 0.1, affine=w is not None)
    if w is not None:
        bn.weight = nn.Parameter(w.detach().clone())
        bn.bias = nn.Parameter(b.detach().clone())
    bn.running_mean.copy_(mean)
    bn.running_var.copy_(var)
    return bn.eval()


def _lift_layer(gm: fx.GraphModule, node: fx.Node, kw: dict, taken: set[str]) -> bool:
    """Turn conv/linear/batch_norm/layer_norm on get_attr parameters into a call_module."""
    t = node.target
    x = kw.get("input")
    if t in (aten.conv2d.default, aten.conv2d.padding, F.conv2d):
        w = _tensor_arg(gm, kw.get("weight"))
        bias_arg = kw.get("bias")
        b = _tensor_arg(gm, bias_arg)
        if w is None or w.dim() != 4 or (bias_arg is not None and b is None):
            return False
        mod = _conv_module(w, b, kw.get("stride", 1), kw.get("padding", 0), kw.get("dilation", 1), kw.get("groups", 1))
        _replace_with_module(gm, node, _layer_name(gm, kw["weight"], "conv", taken), mod, x)
        return True
    if t in (aten.linear.default, F.linear):
        w = _tensor_arg(gm, kw.get("weight"))
        bias_arg = kw.get("bias")
        b = _tensor_arg(gm, bias_arg)
        if w is None or (bias_arg is not None and b is None):
            return False
        _replace_with_module(gm, node, _layer_name(gm, kw["weight"], "linear", taken), _linear_module(w, b), x)
        return True
    if t in (aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default, F.batch_norm):
        if kw.get("training", False):
            return False
        params = [_tensor_arg(gm, kw.get(k)) for k in ("weight", "bias", "running_mean", "running_var")]
        if params[2] is None or params[3] is None:
            return False
        rank = len(x.meta["tensor_meta"].shape) if "tensor_meta" in x.meta else 4
        mod = _bn_module(rank, *params, eps=kw.get("eps", 1e-5), momentum=kw.get("momentum", 0.1))
        anchor = kw.get("weight") if kw.get("weight") is not None else kw["running_mean"]
        if t == aten._native_batch_norm_legit_no_training.default:
            # returns (out, save_mean, save_invstd); only element 0 is meaningful in eval.
            users = list(node.users)
            if not all(u.target is operator.getitem and u.args[1] == 0 for u in users):
                return False
            name = _layer_name(gm, anchor, "bn", taken)
            gm.add_submodule(name, mod)
            with node.graph.inserting_before(node):
                new = node.graph.call_module(name, (x,))
            for u in users:
                _take_place(u, new)
            node.graph.erase_node(node)
            return True
        _replace_with_module(gm, node, _layer_name(gm, anchor, "bn", taken), mod, x)
        return True
    if t in (aten.layer_norm.default, F.layer_norm):
        w, b = _tensor_arg(gm, kw.get("weight")), _tensor_arg(gm, kw.get("bias"))
        if w is None:
            return False
        ln = nn.LayerNorm(list(kw["normalized_shape"]), eps=kw.get("eps", 1e-5), bias=b is not None)
        ln.weight = nn.Parameter(w.detach().clone())
        if b is not None:
            ln.bias = nn.Parameter(b.detach().clone())
        _replace_with_module(gm, node, _layer_name(gm, kw["weight"], "ln", taken), ln, x)
        return True
    return False


# --------------------------------------------------------------------------- main entry
def _fold_constants(gm: fx.GraphModule, values: dict[str, Any]) -> None:
    """Replace nodes that compute Python ints/shapes by their value for the example inputs."""
    def is_static(v):
        if isinstance(v, (bool, int, float, torch.Size)):
            return True
        return isinstance(v, (tuple, list)) and all(isinstance(e, (bool, int, float)) for e in v)

    for node in list(gm.graph.nodes):
        if node.op not in ("call_method", "call_function") or node.name not in values:
            continue
        v = values[node.name]
        if not is_static(v) or any(u.op == "output" for u in node.users):
            continue
        lit = tuple(v) if isinstance(v, torch.Size) else v
        for user in list(node.users):
            user.args = map_aggregate(user.args, lambda a: lit if a is node else a)
            user.kwargs = map_aggregate(user.kwargs, lambda a: lit if a is node else a)
        gm.graph.erase_node(node)


class _Recorder(fx.Interpreter):
    def __init__(self, gm):
        super().__init__(gm)
        self.values: dict[str, Any] = {}

    def run_node(self, n):
        out = super().run_node(n)
        self.values[n.name] = out
        return out


def canonicalize(gm: fx.GraphModule, example_inputs: Sequence[torch.Tensor]) -> fx.GraphModule:
    """Rewrite ``gm`` in place into canonical form (see module docstring) and return it."""
    gm.eval()
    rec = _Recorder(gm)
    with torch.no_grad():
        rec.run(*example_inputs)
    _fold_constants(gm, rec.values)
    values = rec.values
    # plain nn.Module objects are torch.export's holders of lifted parameters: their names are free
    taken = {name for name, m in gm.named_modules() if type(m) is not nn.Module}

    for node in list(gm.graph.nodes):
        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            if type(mod) is nn.Identity:
                node.replace_all_uses_with(node.args[0])
                gm.graph.erase_node(node)
            elif type(mod) in _STATELESS_MODULES:
                fn, kwargs = _STATELESS_MODULES[type(mod)](mod)
                _replace(node, fn, (node.args[0],), kwargs)
        elif node.op == "call_method":
            _canonicalize_method(node, values)
        elif node.op == "call_function":
            _canonicalize_function(gm, node, values, taken)

    for node in list(gm.graph.nodes):  # get_attr / shape nodes made dead by the rewrites
        if node.op in ("get_attr", "call_method", "call_function") and not node.users and _is_pure(node):
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def _is_pure(node: fx.Node) -> bool:
    return node.op == "get_attr" or not node.is_impure()


def _canonicalize_method(node: fx.Node, values: dict) -> None:
    m, args = node.target, node.args
    if m in _NOOP_METHODS:
        node.replace_all_uses_with(args[0])
        node.graph.erase_node(node)
    elif m in _UNARY:
        _replace(node, _UNARY[m], (args[0],))
    elif m in _BINARY and isinstance(values.get(node.name), torch.Tensor):
        _replace(node, _BINARY[m], tuple(args[:2]), dict(node.kwargs))
    elif m in ("view", "reshape"):
        shape = args[1] if len(args) == 2 and isinstance(args[1], (tuple, list)) else tuple(args[1:])
        _replace(node, torch.reshape, (args[0], tuple(shape)))
    elif m in ("permute",):
        dims = args[1] if len(args) == 2 and isinstance(args[1], (tuple, list)) else tuple(args[1:])
        _replace(node, torch.permute, (args[0], tuple(dims)))
    elif m in ("flatten", "transpose", "mean", "softmax", "log_softmax", "sum"):
        fn = {"flatten": torch.flatten, "transpose": torch.transpose, "mean": torch.mean, "softmax": torch.softmax,
              "log_softmax": torch.log_softmax, "sum": torch.sum}[m]
        _replace(node, fn, tuple(args), dict(node.kwargs))


def _canonicalize_function(gm: fx.GraphModule, node: fx.Node, values: dict, taken: set[str]) -> None:
    t = node.target
    if t in _NOOP_ATEN:
        node.replace_all_uses_with(node.args[0])
        node.graph.erase_node(node)
        return
    if t in (aten.conv2d.default, aten.conv2d.padding, aten.linear.default, aten.batch_norm.default,
             aten._native_batch_norm_legit_no_training.default, aten.layer_norm.default,
             F.conv2d, F.linear, F.batch_norm, F.layer_norm):
        # argument types pick the schema where several match (F.conv2d's padding: ints or a string)
        arg_types = tuple(type(values.get(a.name)) if isinstance(a, fx.Node) else type(a) for a in node.args)
        kwarg_types = {k: type(values.get(v.name)) if isinstance(v, fx.Node) else type(v) for k, v in node.kwargs.items()}
        norm = node.normalized_arguments(gm, arg_types=arg_types, kwarg_types=kwarg_types,
                                         normalize_to_only_use_kwargs=True)
        if norm is not None and _lift_layer(gm, node, dict(norm.kwargs), taken):
            return
        return
    if t in _ATEN:
        fn, spec = _ATEN[t]
        norm = node.normalized_arguments(gm, normalize_to_only_use_kwargs=True)
        if norm is None:
            return
        kw = dict(norm.kwargs)
        args, kwargs = [], {}
        for aten_name, torch_name in spec:
            if aten_name not in kw:
                continue
            v = kw[aten_name]
            if torch_name is None:
                args.append(v)
            elif _DROP_DEFAULTS.get(torch_name, object()) != v:
                kwargs[torch_name] = v
        if fn is F.hardtanh and (kwargs.get("min_val"), kwargs.get("max_val")) == (0.0, 6.0):
            fn, kwargs = F.relu6, {}
        if fn is F.dropout:
            kwargs["training"] = False
        if fn is torch.mean and "dim" in kwargs:
            args.append(kwargs.pop("dim"))
        _replace(node, fn, tuple(args), kwargs)
        return
    if t in _UNARY:
        _replace(node, _UNARY[t], (node.args[0],))
    elif t in _BINARY and isinstance(values.get(node.name), torch.Tensor):
        _replace(node, _BINARY[t], tuple(node.args[:2]))
    elif t is F.hardtanh:
        norm = node.normalized_arguments(gm, normalize_to_only_use_kwargs=True)
        if norm is not None and (norm.kwargs.get("min_val"), norm.kwargs.get("max_val")) == (0.0, 6.0):
            _replace(node, F.relu6, (norm.kwargs["input"],))
    elif t in (F.softmax, F.log_softmax):
        norm = node.normalized_arguments(gm, normalize_to_only_use_kwargs=True)
        fn = torch.softmax if t is F.softmax else torch.log_softmax
        if norm is not None and norm.kwargs.get("dim") is not None:
            _replace(node, fn, (norm.kwargs["input"],), {"dim": norm.kwargs["dim"]})
    elif t is torch.max_pool2d:
        _replace(node, F.max_pool2d, tuple(node.args), dict(node.kwargs))
    elif t is F.dropout:
        p = node.kwargs.get("p", node.args[1] if len(node.args) > 1 else 0.5)
        _replace(node, F.dropout, (node.args[0],), {"p": p, "training": False})
    elif t is builtins.getattr:
        pass  # tensor attributes other than shapes (folded above) are left alone

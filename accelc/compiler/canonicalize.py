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

from accelc.compiler.canonical_ops import (ATEN, BINARY, DROP_DEFAULTS, NOOP_ATEN, NOOP_METHODS,
                                           STATELESS_MODULES, UNARY)

from accelc.compiler.analysis.shapes import evaluation_mode

aten = torch.ops.aten


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


def fold_static_values(gm: fx.GraphModule, example_inputs: Sequence[torch.Tensor]) -> dict[str, Any]:
    """Replace Python-level shape arithmetic in ``gm`` by its value for the example input shapes
    (in place), and return every node's value on the examples, by node name.

    The graph runs once in eval mode without gradients (no batch-norm statistics or other
    state change); train/eval modes and the RNG state are restored afterwards.
    """
    rec = _Recorder(gm)
    with evaluation_mode(gm), torch.no_grad():
        rec.run(*example_inputs)
    _fold_constants(gm, rec.values)
    return rec.values


def canonicalize(gm: fx.GraphModule, example_inputs: Sequence[torch.Tensor]) -> fx.GraphModule:
    """Rewrite ``gm`` in place into canonical form (see module docstring) and return it."""
    gm.eval()
    values = fold_static_values(gm, example_inputs)
    # plain nn.Module objects are torch.export's holders of lifted parameters: their names are free
    taken = {name for name, m in gm.named_modules() if type(m) is not nn.Module}

    for node in list(gm.graph.nodes):
        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            if type(mod) is nn.Identity:
                node.replace_all_uses_with(node.args[0])
                gm.graph.erase_node(node)
            elif type(mod) in STATELESS_MODULES:
                fn, kwargs = STATELESS_MODULES[type(mod)](mod)
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
    if m in NOOP_METHODS:
        node.replace_all_uses_with(args[0])
        node.graph.erase_node(node)
    elif m in UNARY:
        _replace(node, UNARY[m], (args[0],))
    elif m in BINARY and isinstance(values.get(node.name), torch.Tensor):
        _replace(node, BINARY[m], tuple(args[:2]), dict(node.kwargs))
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


# Python signatures of the functional layers (their torch schemas are ambiguous to normalize).
_FUNCTIONAL_SIGNATURES = {
    F.conv2d: ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
    F.linear: ("input", "weight", "bias"),
    F.batch_norm: ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"),
    F.layer_norm: ("input", "normalized_shape", "weight", "bias", "eps"),
}


def _layer_kwargs(gm: fx.GraphModule, node: fx.Node) -> dict | None:
    names = _FUNCTIONAL_SIGNATURES.get(node.target)
    if names is not None:
        return {**dict(zip(names, node.args)), **node.kwargs}
    norm = node.normalized_arguments(gm, normalize_to_only_use_kwargs=True)
    return dict(norm.kwargs) if norm is not None else None


def _canonicalize_function(gm: fx.GraphModule, node: fx.Node, values: dict, taken: set[str]) -> None:
    t = node.target
    if t in NOOP_ATEN:
        node.replace_all_uses_with(node.args[0])
        node.graph.erase_node(node)
        return
    if t in (aten.conv2d.default, aten.conv2d.padding, aten.linear.default, aten.batch_norm.default,
             aten._native_batch_norm_legit_no_training.default, aten.layer_norm.default,
             F.conv2d, F.linear, F.batch_norm, F.layer_norm):
        kw = _layer_kwargs(gm, node)
        if kw is not None:
            _lift_layer(gm, node, kw, taken)
        return
    if t in ATEN:
        fn, spec = ATEN[t]
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
            elif DROP_DEFAULTS.get(torch_name, object()) != v:
                kwargs[torch_name] = v
        if fn is F.hardtanh and (kwargs.get("min_val"), kwargs.get("max_val")) == (0.0, 6.0):
            fn, kwargs = F.relu6, {}
        if fn is F.dropout:
            kwargs["training"] = False
        if fn is torch.mean and "dim" in kwargs:
            args.append(kwargs.pop("dim"))
        _replace(node, fn, tuple(args), kwargs)
        return
    if t in UNARY:
        _replace(node, UNARY[t], (node.args[0],))
    elif t in BINARY and isinstance(values.get(node.name), torch.Tensor):
        _replace(node, BINARY[t], tuple(node.args[:2]))
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

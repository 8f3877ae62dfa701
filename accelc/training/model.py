"""Trainable models: load a model and trace it into a graph that trains like the module.

:func:`load_trainable` accepts what ``accelc compile`` accepts (``--entry file.py:factory``
with optional ``--weights``, a ``.pt2`` program, a trusted pickle), with one restriction: an
exported program is inference-specialised, and is refused when it contains batch norm in
inference form (running statistics baked in, nothing left to train them with).

:func:`training_graph` traces an ``nn.Module`` in train mode with ``torch.fx`` (modules stay
``call_module`` nodes under their own names, so dropout and batch norm keep their training
behaviour and the graph's parameter names are the module's ``state_dict`` keys), then

* folds Python shape arithmetic (``x.size(0)``, ``b, t, d = x.shape``) to the values for
  the microbatch shape — pipeline stages exchange tensors only, and every microbatch has
  the same shape;
* rewrites in-place operations (``nn.ReLU(inplace=True)``, ``out += skip``, ``x.relu_()``)
  out of place, redirecting later readers of the mutated value to the new result. A stage
  receives its inputs as autograd leaves, which must not be modified in place. (Mutation
  through a view of another value is not tracked: such models are refused by autograd.)
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.fx as fx
import torch.nn as nn

from accelc.compiler.canonicalize import fold_static_values
from accelc.compiler.capture import from_exported, load_model
from accelc.errors import TrainingError, UnsupportedError

_INPLACE_OPERATORS = {operator.iadd: operator.add, operator.isub: operator.sub, operator.imul: operator.mul,
                      operator.itruediv: operator.truediv}
_INFERENCE_BATCH_NORM = {"_native_batch_norm_legit_no_training", "batch_norm"}


@dataclass
class TrainableModel:
    """``module`` owns every parameter and buffer (its ``state_dict`` is the checkpoint
    format); ``graph`` is the traced training graph and shares ``module``'s tensors."""

    module: nn.Module
    graph: fx.GraphModule


def load_module(model: str | None, *, entry: str | None, weights: str | None, trust_pickle: bool,
                seed: int) -> tuple[nn.Module | torch.export.ExportedProgram, str]:
    """The model, built with ``torch.manual_seed(seed)`` so every process gets the same weights."""
    torch.manual_seed(seed)
    loaded = load_model(model, entry=entry, weights=weights, trust_pickle=trust_pickle)
    if isinstance(loaded.model, torch.export.ExportedProgram):
        check_exported_trainable(loaded.model, loaded.source)
    return loaded.model, loaded.source


def check_exported_trainable(ep: torch.export.ExportedProgram, source: str) -> None:
    """Refuse exported programs whose batch norms are in inference form."""
    for node in ep.graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(getattr(node.target, "_overloadpacket", None), "__name__", "")
        training = node.args[5] if name == "batch_norm" and len(node.args) > 5 else None
        if name == "_native_batch_norm_legit_no_training" or (name == "batch_norm" and training is False):
            raise UnsupportedError(
                f"{source} was exported for inference: batch norm {node.name} uses fixed running statistics, "
                "so the program cannot be trained as the model was",
                hint="train the nn.Module itself: pass --entry file.py:factory (with --weights state.pt)")


def check_exported_shapes(ep: torch.export.ExportedProgram, example_inputs: Sequence[torch.Tensor]) -> None:
    """An exported program is specialised to its static input sizes: a microbatch must match them."""
    user_inputs = set(ep.graph_signature.user_inputs)
    placeholders = [n for n in ep.graph.nodes if n.op == "placeholder" and n.name in user_inputs]
    for node, example in zip(placeholders, example_inputs):
        val = node.meta.get("val")
        if val is None:
            continue
        static = tuple(d if isinstance(d, int) else None for d in val.shape)
        if len(static) != example.dim() or any(d is not None and d != e for d, e in zip(static, example.shape)):
            shown = "x".join("?" if d is None else str(d) for d in static)
            raise TrainingError(f"the program was exported for inputs of shape {shown}, but a microbatch has shape "
                                f"{'x'.join(map(str, example.shape))}",
                                hint="choose --batch-size / --dp / --microbatches so that a microbatch matches, or "
                                     "export with a dynamic batch dimension")


def training_graph(model: nn.Module | torch.export.ExportedProgram,
                   example_inputs: Sequence[torch.Tensor]) -> TrainableModel:
    """Trace ``model`` for training on microbatches shaped like ``example_inputs`` (see above)."""
    if isinstance(model, torch.export.ExportedProgram):
        check_exported_shapes(model, example_inputs)
        gm = from_exported(model)
        module: nn.Module = gm
    else:
        module = model.train()
        try:
            gm = fx.symbolic_trace(module)
        except Exception as e:
            raise TrainingError(f"could not trace the model for pipeline training: {type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''}",
                                hint="pipeline stages are cut from a torch.fx graph; data-dependent Python control "
                                     "flow (if/for on tensor values) cannot be traced — rewrite it with torch.where, "
                                     "or train with --stages 1") from e
    gm.train()
    try:
        fold_static_values(gm, example_inputs)
    except Exception as e:
        raise TrainingError(f"the model fails on a microbatch of shape "
                            f"{', '.join(str(tuple(t.shape)) for t in example_inputs)}: {type(e).__name__}: {e}",
                            hint="check --input-shape and --batch-size / --microbatches / --dp") from e
    functionalize_inplace(gm)
    gm.recompile()
    return TrainableModel(module, gm)


def _out_of_place(gm: fx.GraphModule, node: fx.Node):
    """How to compute ``node`` without mutating its first argument, or None if it does not."""
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        return "module" if getattr(mod, "inplace", False) is True else None
    if node.op == "call_function":
        if node.target in _INPLACE_OPERATORS:
            return _INPLACE_OPERATORS[node.target]
        return "kwarg" if node.kwargs.get("inplace") is True else None
    if node.op == "call_method":
        name = node.target
        if name.endswith("_") and not name.startswith("_") and hasattr(torch.Tensor, name[:-1]):
            return name[:-1]
    return None


def functionalize_inplace(gm: fx.GraphModule) -> int:
    """Rewrite in-place ops out of place (see the module docstring); returns how many."""
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    count = 0
    for node in list(gm.graph.nodes):
        replacement = _out_of_place(gm, node)
        if replacement is None or not node.args or not isinstance(node.args[0], fx.Node):
            continue
        mutated = node.args[0]
        if replacement == "module":
            gm.get_submodule(node.target).inplace = False
        elif replacement == "kwarg":
            node.kwargs = {**node.kwargs, "inplace": False}
        else:
            node.target = replacement
        for user in list(mutated.users):
            if user is not node and order[user] > order[node]:
                user.replace_input_with(mutated, node)
        count += 1
    return count

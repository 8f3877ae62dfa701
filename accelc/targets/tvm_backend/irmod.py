"""Small IRModule helpers shared by the cpu/cuda build steps."""

from __future__ import annotations


def with_functions(mod, updates: dict):
    """``mod`` with the functions in ``updates`` (GlobalVar → function) replaced, as a new module
    (``IRModule.__setitem__`` mutates in place); ``mod`` itself when there is nothing to replace."""
    if not updates:
        return mod
    mod = mod.clone()
    for gv, func in updates.items():
        mod[gv] = func
    return mod


def weight_params(func) -> set:
    """The parameters of the Relax function ``func`` that are weights (after its ``num_input`` inputs)."""
    n_inputs = int(func.attrs["num_input"]) if func.attrs is not None and "num_input" in func.attrs else 0
    return set(list(func.params)[n_inputs:])


def from_weights(mutator, expr, weights: set) -> bool:
    """Whether ``expr`` (seen by the ``PyExprMutator`` ``mutator``) is computed from the
    ``weights`` and constants alone, so that the build can evaluate it once (:mod:`.params`)."""
    from tvm import relax

    if not isinstance(expr, relax.Var):
        return isinstance(expr, relax.Constant)
    if expr in weights:
        return True
    bound = mutator.lookup_binding(expr)
    return isinstance(bound, relax.Call) and all(from_weights(mutator, a, weights) for a in bound.args)

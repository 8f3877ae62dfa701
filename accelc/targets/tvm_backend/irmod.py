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

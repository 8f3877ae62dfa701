"""The pass interface and registry.

A pass is a class with a ``name``, an ``Options`` dataclass (typed options with defaults),
a docstring saying what it does and what it preserves, and ``run(gm, ctx) -> gm``. An
*exact* pass declares the tolerance its outputs must meet (verify-each enforces it); a lossy
pass reports what it cost and saved through its pass record and ``self.details``.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import ClassVar

import torch.fx as fx

from accelc.compiler.context import CompileContext
from accelc.compiler.options import describe_options
from accelc.errors import PipelineError


@dataclasses.dataclass
class NoOptions:
    pass


class Pass:
    name: ClassVar[str]
    exact: ClassVar[bool] = False
    # exact passes: |after − before| ≤ atol + rtol · max|before| on every sample
    rtol: ClassVar[float] = 1e-4
    atol: ClassVar[float] = 1e-5
    Options: ClassVar[type] = NoOptions

    def __init__(self, options=None):
        self.options = options if options is not None else self.Options()
        self.details: dict = {}

    def run(self, gm: fx.GraphModule, ctx: CompileContext) -> fx.GraphModule:  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def summary(cls) -> str:
        doc = inspect.getdoc(cls) or ""
        return doc.split("\n\n")[0].replace("\n", " ")

    @classmethod
    def help(cls) -> str:
        lines = [f"{cls.name}{' (exact)' if cls.exact else ''}: {cls.summary()}"]
        lines += [f"    {line}" for line in describe_options(cls.Options)]
        return "\n".join(lines)


_REGISTRY: dict[str, type[Pass]] = {}


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Class decorator: make ``cls`` available to pipelines under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"pass {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def get_pass(name: str) -> type[Pass]:
    _load_builtin_passes()
    if name not in _REGISTRY:
        raise PipelineError(f"unknown pass {name!r}", hint=f"available passes: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def available_passes() -> dict[str, type[Pass]]:
    _load_builtin_passes()
    return dict(sorted(_REGISTRY.items()))


def _load_builtin_passes() -> None:
    import accelc.passes.builtin  # noqa: F401  (registers the built-in passes)

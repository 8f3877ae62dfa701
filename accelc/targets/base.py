"""The target plug-in interface and registry.

A target turns the final GraphModule into an artifact directory and knows how to run it:

* ``support_map(gm, example_inputs)`` — for every op node, whether the target runs it
  (and why not), used by ``accelc inspect`` and by partial-offload targets;
* ``lower(gm, ctx, out_dir)`` — write the payload into ``out_dir``, return manifest fields;
* ``load(art_dir, manifest)`` — a :class:`Runner` for the artifact.

Each target declares a default pipeline and typed options (``--target-opt key=value``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
import torch.fx as fx

from accelc.compiler.context import CompileContext
from accelc.compiler.options import build_options, options_dict
from accelc.errors import DataError, UsageError


@dataclass(frozen=True)
class Support:
    ok: bool
    reason: str = ""


@dataclass
class NoTargetOptions:
    pass


class Runner:
    """Runs an artifact: numpy arrays in (one per model input), numpy arrays out."""

    def __init__(self, manifest: dict):
        self.manifest = manifest
        self.inputs = manifest["inputs"]
        self.outputs = manifest["outputs"]
        self._expected = [(tuple(spec["shape"]), np.dtype(spec["dtype"])) for spec in self.inputs]

    def check_inputs(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``arrays`` as contiguous arrays of the artifact's input shapes and dtypes (lossless
        dtype conversions done), or a :class:`DataError`. Arrays that already match return at
        once: the general path costs ~8 µs per call (``str(dtype)``), a tenth of LeNet's run."""
        if len(arrays) == len(self._expected) and all(
                type(a) is np.ndarray and a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
                for a, (shape, dtype) in zip(arrays, self._expected)):
            return list(arrays)
        if len(arrays) != len(self.inputs):
            raise DataError(f"the artifact takes {len(self.inputs)} input(s), got {len(arrays)}")
        out = []
        for i, (a, spec) in enumerate(zip(arrays, self.inputs)):
            a = np.asarray(a)
            if list(a.shape) != list(spec["shape"]):
                raise DataError(f"input {i} ({spec['name']}) has shape {tuple(a.shape)}, the artifact was compiled "
                                f"for {tuple(spec['shape'])}",
                                hint="artifacts are static-shape; recompile with --input-shape for other shapes")
            if str(a.dtype) != spec["dtype"]:
                if a.dtype.kind == np.dtype(spec["dtype"]).kind or (a.dtype.kind in "iu" and spec["dtype"].startswith("float")):
                    a = a.astype(spec["dtype"])
                else:
                    raise DataError(f"input {i} ({spec['name']}) has dtype {a.dtype}, expected {spec['dtype']}")
            out.append(np.ascontiguousarray(a))
        return out

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError


class Target:
    name: ClassVar[str]
    description: ClassVar[str] = ""
    default_pipeline: ClassVar[str] = "fuse"
    Options: ClassVar[type] = NoTargetOptions

    def __init__(self, options: dict[str, Any] | None = None):
        self.options = build_options(self.Options, dict(options or {}), owner=f"--target-opt for {self.name}")

    def options_dict(self) -> dict[str, Any]:
        return options_dict(self.options)

    def check_pipeline(self, pipeline) -> None:
        """Reject pipelines the target cannot lower (e.g. fpga without pow2 quantization)."""

    def support_map(self, gm: fx.GraphModule, example_inputs: Sequence[torch.Tensor]) -> dict[str, Support]:
        raise NotImplementedError

    def lower(self, gm: fx.GraphModule, ctx: CompileContext, out_dir: Path) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def load(cls, art_dir: Path, manifest: dict) -> Runner:
        raise NotImplementedError

    def report_extras(self) -> dict[str, Any]:
        """Target-specific report.json entries known after :meth:`lower` (e.g. placement)."""
        return {}

    def runtime_report(self, runner: Runner) -> dict[str, Any]:
        """Target-specific report.json entries after the artifact ran on the sample inputs."""
        return {}


_TARGETS: dict[str, type[Target]] = {}


def register_target(cls: type[Target]) -> type[Target]:
    _TARGETS[cls.name] = cls
    return cls


def _load_builtin_targets() -> None:
    import accelc.targets.builtin  # noqa: F401


def available_targets() -> list[str]:
    _load_builtin_targets()
    return sorted(_TARGETS)


def get_target_class(name: str) -> type[Target]:
    _load_builtin_targets()
    if name not in _TARGETS:
        raise UsageError(f"unknown target {name!r}", hint=f"available targets: {', '.join(sorted(_TARGETS))}")
    return _TARGETS[name]


def make_target(name: str, options: dict[str, Any] | None = None) -> Target:
    return get_target_class(name)(options)


def target_option_help(name: str) -> list[str]:
    from accelc.compiler.options import describe_options

    return describe_options(get_target_class(name).Options)

"""The common part of the cpu and cuda targets: lower through Relax, build, save, load."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.fx as fx

from accelc.compiler.analysis.shapes import propagate_shapes
from accelc.compiler.context import CompileContext
from accelc.targets.base import Runner, Support, Target
from accelc.targets.tvm_backend.build import save_payload
from accelc.targets.tvm_backend.importer import to_relax
from accelc.targets.tvm_backend.pipeline import build_module
from accelc.targets.tvm_backend.support import tvm_support_map


class TVMTarget(Target):
    """A target that compiles the whole graph with TVM Relax for one device kind."""

    _extras: dict[str, Any] = {}

    def tvm_target(self):  # pragma: no cover - interface
        raise NotImplementedError

    def int8_lowering(self) -> str:
        """``reference`` (int32 conv/matmul of x − zp) or ``vnni`` (see tvm_backend/vnni.py)."""
        return "reference"

    def support_map(self, gm: fx.GraphModule, example_inputs: Sequence[torch.Tensor]) -> dict[str, Support]:
        propagate_shapes(gm, example_inputs)
        return tvm_support_map(gm)

    def lower(self, gm: fx.GraphModule, ctx: CompileContext, out_dir: Path) -> dict[str, Any]:
        """``ctx.options["tuning"]`` (a :class:`TuningOptions`, set by ``accelc.compile``)
        turns on MetaSchedule tuning with its database."""
        mod, params = to_relax(gm, ctx.example_inputs, int8=self.int8_lowering())
        result = build_module(mod, params, self.tvm_target(), tuning=ctx.options.get("tuning"), quiet=ctx.quiet)
        payload = save_payload(result.executable, result.params, out_dir)
        self._extras = {}
        if result.tuning is not None:
            self._extras["tuning"] = result.tuning.to_dict(reproducible=bool(ctx.options.get("reproducible")))
        return {"payload": payload}

    def report_extras(self) -> dict[str, Any]:
        return dict(self._extras)

    @classmethod
    def device(cls):  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def load(cls, art_dir: Path, manifest: dict) -> Runner:
        from accelc.targets.tvm_backend.runner import TVMRunner

        return TVMRunner(art_dir, manifest, cls.device())

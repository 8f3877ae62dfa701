"""The common part of the cpu and cuda targets: lower through Relax, build, save, load."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.fx as fx

from accelc.compiler.analysis.shapes import propagate_shapes
from accelc.compiler.context import CompileContext
from accelc.targets.base import Runner, Support, Target
from accelc.targets.tvm_backend.build import compile_relax, save_payload
from accelc.targets.tvm_backend.importer import to_relax
from accelc.targets.tvm_backend.support import tvm_support_map


class TVMTarget(Target):
    """A target that compiles the whole graph with TVM Relax for one device kind."""

    def tvm_target(self):  # pragma: no cover - interface
        raise NotImplementedError

    def relax_pipeline(self):
        return "default"

    def support_map(self, gm: fx.GraphModule, example_inputs: Sequence[torch.Tensor]) -> dict[str, Support]:
        propagate_shapes(gm, example_inputs)
        return tvm_support_map(gm)

    def lower(self, gm: fx.GraphModule, ctx: CompileContext, out_dir: Path) -> dict[str, Any]:
        mod, params = to_relax(gm, ctx.example_inputs)
        executable = compile_relax(mod, self.tvm_target(), relax_pipeline=self.relax_pipeline())
        payload = save_payload(executable, params, out_dir)
        return {"payload": payload}

    @classmethod
    def device(cls):  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def load(cls, art_dir: Path, manifest: dict) -> Runner:
        from accelc.targets.tvm_backend.runner import TVMRunner

        return TVMRunner(art_dir, manifest, cls.device())

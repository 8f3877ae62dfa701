"""Test helpers that use the real product pieces (no mocks)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch.fx as fx

from accelc.compiler.capture import capture
from accelc.compiler.context import CompileContext
from accelc.compiler.data import Dataset
from accelc.compiler.pass_manager import PassManager
from accelc.compiler.pipeline import Pipeline
from accelc.targets.base import make_target


def random_dataset(shape, n=32, seed=0, labels=None) -> Dataset:
    g = np.random.default_rng(seed)
    return Dataset((g.standard_normal((n, *shape[1:])).astype(np.float32),), labels, "random")


def run_pipeline(model, inputs, pipeline: str, calib: Dataset | None = None, **ctx_kw):
    gm = capture(model, inputs)
    ctx = CompileContext(tuple(inputs), calib=calib, **ctx_kw)
    return PassManager(Pipeline.parse(pipeline)).run(gm, ctx), ctx


def tvm_run(gm: fx.GraphModule, inputs, target: str = "cpu") -> list[np.ndarray]:
    """Lower ``gm`` with the real target, load the artifact payload and run it once."""
    tgt = make_target(target)
    ctx = CompileContext(tuple(inputs))
    with tempfile.TemporaryDirectory() as d:
        fields = tgt.lower(gm, ctx, Path(d))
        outs = [o for o in gm(*inputs)] if isinstance(gm(*inputs), tuple) else [gm(*inputs)]
        manifest = {**fields, "inputs": [{"name": f"in{i}", "shape": list(t.shape), "dtype": str(t.dtype)[6:]}
                                         for i, t in enumerate(inputs)],
                    "outputs": [{"name": f"out{i}", "shape": list(o.shape), "dtype": str(o.dtype)[6:]}
                                for i, o in enumerate(outs)]}
        runner = type(tgt).load(Path(d), manifest)
        return runner.run([t.numpy() for t in inputs])

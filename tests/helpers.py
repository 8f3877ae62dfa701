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


def compile_and_compare(model, x, tmp_dir: Path, **compile_kw):
    """``accelc.compile(model)`` for the CPU (fuse pipeline) into ``tmp_dir / "art"``, every output
    checked against PyTorch within the fp32 schedules' tolerance (rtol 1e-4, atol 1e-4 × the
    largest reference value, at least 1e-4); returns the compiled model."""
    import torch

    import accelc

    torch.manual_seed(0)
    compiled = accelc.compile(model, (x,), pipeline="fuse", output=tmp_dir / "art", verify_each=False, quiet=True,
                              **compile_kw)
    outs = compiled.runner.run([x.numpy()])
    with torch.no_grad():
        refs = model(x)
    refs = refs if isinstance(refs, tuple) else (refs,)
    assert len(outs) == len(refs)
    for out, ref in zip(outs, refs):
        ref = ref.numpy()
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(ref).max())))
    return compiled

"""The cpu/cuda build: Relax module + weights → executable + (transformed) weights.

1. (CPU) fp32 conv chains to NHWC (:mod:`.layout`); fold the weight-only computations into
   the weights (:mod:`.params`);
2. legalize and fuse (TVM's zero pipeline, without its database step);
3. with tuning options: tune the missing tasks and apply the database (:mod:`.tuning`); on
   CPU the tasks see the weights as layout-free, so a tuned schedule may ask for its own
   weight layout, which step 5 bakes into the weights;
4. schedule what is left with :mod:`.defaults` (CPU: VNNI layers with their sketch,
   convolutions, depthwise convolutions and the rest with :mod:`.cpu_conv`'s schedules;
   cuda: dlight's GPU rules);
5. (CPU) split the layout rewrites (tuned schedules' and the default conv schedules' weight
   packing) off and fold them into the weights;
6. lower the Relax program to the VM (no further fusion, which would undo the schedules).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from accelc.targets.tvm_backend.build import _first_line
from accelc.targets.tvm_backend.defaults import apply_default_schedules
from accelc.targets.tvm_backend.irmod import with_functions
from accelc.targets.tvm_backend.layout import to_nhwc
from accelc.targets.tvm_backend.params import fold_param_transforms
from accelc.targets.tvm_backend.tuning import TuningOptions, TuningReport, tune_and_apply


@dataclass
class BuildResult:
    executable: object
    params: list[np.ndarray]
    tuning: TuningReport | None = None


def legalize_and_fuse(mod, target):
    import tvm
    from tvm import relax

    T = relax.transform
    with target, tvm.transform.PassContext(opt_level=3):
        return tvm.transform.Sequential([
            *relax.pipeline.library_dispatch_passes(target),
            T.DeadCodeElimination(["main"]), T.DecomposeOpsForInference(), T.CanonicalizeBindings(), T.LegalizeOps(), T.AnnotateTIROpPattern(),
            T.FoldConstant(), T.FuseOps(), T.FuseTIR(),
        ])(mod)


def _without_vnni_layout_freedom(mod):
    """VNNI weights are already packed for the kernel; MetaSchedule's RewriteLayout would only
    fight the tensorized access, so their PrimFuncs get no layout-free buffers."""
    from tvm import tirx

    from accelc.targets.tvm_backend.vnni import is_vnni_func

    updates = {gv: f.without_attr("layout_free_buffers") for gv, f in mod.functions.items()
               if isinstance(f, tirx.PrimFunc) and is_vnni_func(f) and "layout_free_buffers" in f.attrs}
    return with_functions(mod, updates)


def _vm_lowering(target):
    import importlib

    import tvm

    backend = "cpu_generic" if target.kind.name == "llvm" else target.kind.name
    passes = importlib.import_module(f"tvm.relax.backend.{backend}.pipeline")
    return tvm.transform.Sequential([*passes.dataflow_lower_passes(target), *passes.finalize_passes(target)])


def build_module(mod, params: Sequence[np.ndarray], target, *, tuning: TuningOptions | None = None,
                 quiet: bool = True) -> BuildResult:
    import tvm
    from tvm import relax

    from accelc.errors import TargetError

    cpu = target.kind.name == "llvm"
    tuned = tuning is not None and tuning.active
    try:
        if cpu:
            mod = to_nhwc(mod)
        mod, params = fold_param_transforms(mod, params)
        mod = legalize_and_fuse(mod, target)
        if tuned and cpu:
            mod = _without_vnni_layout_freedom(relax.transform.AttachAttrLayoutFreeBuffers()(mod))
    except Exception as e:  # noqa: BLE001 - TVM raises plain errors from C++
        raise TargetError(f"TVM could not prepare the model for {target.kind.name}: {_first_line(e)}",
                          hint="run with --debug for TVM's full message") from e
    report = None
    if tuned:
        mod, report = tune_and_apply(mod, target, tuning, quiet=quiet)
    try:
        mod = apply_default_schedules(mod, target)
        if cpu:
            mod = relax.transform.SplitLayoutRewritePreproc()(mod)
            mod, params = fold_param_transforms(mod, params)
        with tvm.transform.PassContext(opt_level=3):
            executable = tvm.compile(mod, target=target, relax_pipeline=_vm_lowering(target))
    except Exception as e:  # noqa: BLE001
        raise TargetError(f"TVM build for {target.kind.name} failed: {_first_line(e)}",
                          hint="run with --debug for TVM's full message") from e
    return BuildResult(executable, list(params), report)

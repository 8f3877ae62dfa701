"""The cpu/cuda build: Relax module + weights → executable + (transformed) weights.

1. (CPU) fp32 conv chains to NHWC (:mod:`.layout`), linear and conv widths that fill no vector padded
   (:mod:`.padding`), stride-1 3×3 convs as Winograd F(2×2, 3×3) (:mod:`.winograd`); fold the
   weight-only computations (the Winograd weight transform among them) into the weights (:mod:`.params`);
   group MobileNet blocks (depthwise → 1×1 conv pairs, with the expand conv before them where
   bands of rows are tall enough) into one function each (:mod:`.separable`);
2. legalize and fuse (TVM's zero pipeline, without its database step);
3. with tuning options: tune the missing tasks and apply the database (:mod:`.tuning`); on
   CPU the tasks see the weights as layout-free, so a tuned schedule may ask for its own
   weight layout, which step 5 bakes into the weights;
4. schedule what is left with :mod:`.defaults` (CPU: VNNI layers with their sketch,
   convolutions, depthwise convolutions and the rest with :mod:`.cpu_conv`'s schedules;
   cuda: dlight's GPU rules);
5. (CPU) split the layout rewrites (tuned schedules' and the default conv schedules' weight
   packing) off and fold them into the weights; chunked conv reductions prefetch their next
   chunk of weights (:mod:`.prefetch`);
6. lower the Relax program to the VM (no further fusion, which would undo the schedules);
7. (CPU, tuned) keep the tuned build only if the whole model runs faster than untuned
   (:mod:`.model_check`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from accelc.targets.tvm_backend.build import _first_line
from accelc.targets.tvm_backend.cpu_conv import nhwc_accumulators, simd_lanes
from accelc.targets.tvm_backend.defaults import apply_default_schedules
from accelc.targets.tvm_backend.irmod import with_functions
from accelc.targets.tvm_backend.layout import to_nhwc
from accelc.targets.tvm_backend.padding import pad_output_widths
from accelc.targets.tvm_backend.params import fold_param_transforms
from accelc.targets.tvm_backend.prefetch import insert_weight_prefetch
from accelc.targets.tvm_backend.separable import group_separable, is_separable
from accelc.targets.tvm_backend.tuning import TuningOptions, TuningReport, tune_and_apply
from accelc.targets.tvm_backend.winograd import is_winograd, to_winograd


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
    tuned = tuning is not None and tuning.active
    prepared = _prepare(mod, params, target)
    scheduled, sched_params, report = _schedule(prepared, target, tuning if tuned else None, quiet)
    if report is None or target.kind.name != "llvm":
        return BuildResult(_compile(scheduled, target), sched_params, report)
    return _kept_build(mod, len(params), prepared, target, (scheduled, sched_params), report, quiet)


def _kept_build(mod, n_params: int, prepared, target, tuned, report: TuningReport, quiet: bool) -> BuildResult:
    """The tuned CPU build or the untuned one, whichever runs the whole model faster
    (:mod:`.model_check`; the decision is stored in the tuning database)."""
    import tvm_ffi

    from accelc.targets.tvm_backend import model_check
    from accelc.targets.tvm_backend.tuning import TuningDatabase

    default = _schedule(prepared, target, None, quiet)[:2]
    if tvm_ffi.structural_equal(tuned[0], default[0]):
        return BuildResult(_compile(tuned[0], target), tuned[1], report)
    # the records applied, not the tuned module: a trace read back from the database's JSON
    # schedules the same code but hashes differently (annotation True becomes 1)
    key = f"{report.applied[:16]}-{TuningDatabase.key(default[0])}"
    builds = {"tuned": tuned, "default": default}

    def measure():
        inputs = model_check.model_inputs(mod, n_params)
        return model_check.time_in_turns({which: model_check.runner(_compile(sched, target), sched_params, inputs)
                                          for which, (sched, sched_params) in builds.items()})

    report.model_check = model_check.choose(Path(report.db), key, measure)
    # compiled afresh: an executable that ran in a VM exports different bytes (the artifact
    # would then depend on whether this compile measured or read the decision)
    sched, kept_params = builds[report.model_check["kept"]]
    return BuildResult(_compile(sched, target), kept_params, report)


def _prepare(mod, params, target):
    """Steps 1–2: ``(module, weights)`` legalized and fused, the same for the tuned and the
    untuned schedule of one build (so the model check prepares the model once)."""
    try:
        if target.kind.name == "llvm":
            lanes = simd_lanes(target)
            mod = to_winograd(pad_output_widths(to_nhwc(mod), lanes), lanes, nhwc_accumulators(target))
        mod, params = fold_param_transforms(mod, params)
        if target.kind.name == "llvm":
            mod = group_separable(mod)
        return legalize_and_fuse(mod, target), list(params)
    except Exception as e:  # noqa: BLE001 - TVM raises plain errors from C++
        raise _prepare_error(target, e) from e


def _prepare_error(target, e):
    from accelc.errors import TargetError

    return TargetError(f"TVM could not prepare the model for {target.kind.name}: {_first_line(e)}",
                       hint="run with --debug for TVM's full message")


def _schedule(prepared, target, tuning: TuningOptions | None, quiet: bool):
    """Steps 3–5 on a :func:`_prepare`d model: the scheduled module, its weights and the tuning
    report (None untuned)."""
    from tvm import relax

    from accelc.errors import TargetError

    cpu = target.kind.name == "llvm"
    mod, params = prepared
    report = None
    if tuning is not None:
        if cpu:
            try:
                # Winograd functions and grouped MobileNet blocks keep their sketch: not tuning
                # tasks (MetaSchedule's generic rules tile the product but not the transforms
                # around it, nor place one conv's rows inside another's)
                mod = apply_default_schedules(mod, target, only=lambda f: is_winograd(f) or is_separable(f))
                mod = _without_vnni_layout_freedom(relax.transform.AttachAttrLayoutFreeBuffers()(mod))
            except Exception as e:  # noqa: BLE001
                raise _prepare_error(target, e) from e
        mod, report = tune_and_apply(mod, target, tuning, quiet=quiet)
    try:
        mod = apply_default_schedules(mod, target)
        if cpu:
            mod = relax.transform.SplitLayoutRewritePreproc()(mod)
            mod, params = fold_param_transforms(mod, params)
            mod = insert_weight_prefetch(mod)
    except Exception as e:  # noqa: BLE001
        raise TargetError(f"TVM build for {target.kind.name} failed: {_first_line(e)}",
                          hint="run with --debug for TVM's full message") from e
    return mod, list(params), report


def _compile(mod, target):
    """Step 6: lower to the VM and compile."""
    import tvm

    from accelc.errors import TargetError

    try:
        with tvm.transform.PassContext(opt_level=3):
            return tvm.compile(mod, target=target, relax_pipeline=_vm_lowering(target))
    except Exception as e:  # noqa: BLE001
        raise TargetError(f"TVM build for {target.kind.name} failed: {_first_line(e)}",
                          hint="run with --debug for TVM's full message") from e

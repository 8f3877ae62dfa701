"""Default schedules: the code of every PrimFunc that the tuning database has nothing for.

:func:`default_schedule` decides the schedule of one PrimFunc and returns it as an
``s_tir.Schedule``, so that the same decision serves two uses: the build applies it to
untuned functions (:func:`apply_default_schedules`), and tuning measures it and stores its
trace in the database as one more candidate, so a tuned build is never slower than an
untuned one by what was measured (:mod:`.tuning`).

* x86 (``llvm``): VNNI layers → :func:`.vnni.default_schedule`; Winograd convolutions →
  :func:`.winograd.winograd_sketch`; grouped MobileNet blocks →
  :func:`.separable.separable_sketch`; convolutions, depthwise
  convolutions and matmul → :func:`.cpu_conv.schedule_func`; NHWC pools →
  :func:`.cpu_conv.window_schedule`; GEMV and reductions → TVM's ``dlight.cpu`` rules; the
  rest → :func:`.cpu_conv.generic_sketch`;
* ``cuda``: TVM's dlight GPU rules (Matmul, GEMV, Reduction, GeneralReduction, Fallback);
  functions whose reductions are short (depthwise convs, pools) try only Matmul, then
  Fallback (one thread per output).

Preserves: the computation of each function (schedules change loop structure, intermediate
scopes and packed weight layouts only).
"""

from __future__ import annotations

import functools
import operator

from accelc.targets.tvm_backend.irmod import with_functions


def default_schedule(func, target):
    """The Schedule of ``func`` (a PrimFunc of the fused module) on ``target``, or None when no
    rule applies and the function keeps TVM's naive loops."""
    from tvm.s_tir import dlight as dl

    if target.kind.name != "llvm":
        if _short_reductions(func):  # depthwise convs, pools: one thread per output (a 1×1 conv
            # over few channels is still a matmul)
            return _first_rule(func, target, (dl.gpu.Matmul(), dl.gpu.Fallback()))
        return _first_rule(func, target, (dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(),
                                          dl.gpu.GeneralReduction(), dl.gpu.Fallback()))
    from accelc.targets.tvm_backend import cpu_conv, separable, vnni, winograd

    if vnni.is_vnni_func(func):
        return vnni.default_schedule(func)
    lanes, accumulators = cpu_conv.simd_lanes(target), cpu_conv.nhwc_accumulators(target)
    if winograd.is_winograd(func):
        return cpu_conv._try(func, lambda s: winograd.winograd_sketch(s, lanes, accumulators))
    if separable.is_separable(func):
        return cpu_conv._try(func, lambda s: separable.separable_sketch(s, lanes, accumulators))
    sch = cpu_conv.schedule_func(func, lanes, accumulators) or cpu_conv.window_schedule(func)
    if sch is None:
        sch = _first_rule(func, target, (dl.cpu.GEMV(), dl.cpu.Reduction()))
    return sch if sch is not None else cpu_conv.generic_schedule(func)


SHORT_REDUCTION = 64


def _short_reductions(func) -> bool:
    """Whether ``func`` reduces, and every reduction is over at most :data:`SHORT_REDUCTION`
    elements (a depthwise 3×3 conv: 9, a 3×3 pool: 9). dlight's GPU reduction rules spread a
    reduction over a thread block — 256 threads for 9 products, one block per output, ~100×
    slower on MobileNetV2's depthwise convs (H100, batch 8: 2–3 ms each). Serial in one
    thread per output (the Fallback rule), the reduction is a few loads from cache."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    sizes = []
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        extents = [int(iv.dom.extent) for iv in sch.get(block).iter_vars if iv.iter_type == 2]
        if extents:
            sizes.append(functools.reduce(operator.mul, extents, 1))
    return bool(sizes) and max(sizes) <= SHORT_REDUCTION


def _first_rule(func, target, rules):
    """The Schedule of the first dlight rule that applies to ``func``, or None."""
    for rule in rules:
        space = rule.apply(func, target, False)
        if space is not None:
            return space if not isinstance(space, list) else space[0]
    return None


def apply_default_schedules(mod, target, only=None):
    """Schedule every PrimFunc of ``mod`` that nothing (the tuning database) scheduled yet
    (``only``: those for which ``only(func)`` holds)."""
    import tvm
    from tvm import tirx

    updates = {}
    with target, tvm.transform.PassContext(opt_level=3):
        for gv, func in mod.functions.items():
            if not isinstance(func, tirx.PrimFunc) or func.attrs.get("tirx.is_scheduled"):
                continue
            if only is not None and not only(func):
                continue
            sch = default_schedule(func, target)
            if sch is not None:
                updates[gv] = sch.mod["main"].with_attr("tirx.is_scheduled", True)
    return with_functions(mod, updates)

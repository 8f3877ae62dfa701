"""Software prefetch of the next weight chunk in chunked convolution reductions.

:func:`.cpu_conv._chunked_reduction` runs a conv's reduction over input channels one chunk of
weights at a time: the first row of a block reads the chunk (36 KB for ResNet-18's 3×3 layers),
the other rows reuse it from L1. When the weights come from memory (ResNet-18's last stage:
9.4 MB per conv, 49 uses per weight at batch 1), that first row reads at the rate the FMAs
consume it — a burst the hardware prefetchers, which stop at 4 KB pages, do not cover — and the
core waits. Vendor kernels prefetch the next block of weights while they compute on this one;
so does this pass: the loop over chunks carries the annotation :data:`PREFETCH`, and here each
row of a chunk issues ``llvm.prefetch`` (into L1) for its share of the next chunk's cache lines.
Measured on ResNet-18's layer4 3×3 conv, weights cold (16 copies in turn), 2 cores: 1.37 →
1.16 ms median; warm weights unchanged.

A schedule cannot insert statements, so this runs on the scheduled module (the default
schedules' and the tuning database's alike) before it is compiled; the annotation is an
ordinary trace instruction, so tuned schedules that chunk carry it too.

Preserves: everything — a prefetch only moves data into the cache. Annotated loops whose
weight access is not chunk-major (some index equal to the loop variable, zeros after it) are
left alone, without the annotation.
"""

from __future__ import annotations

import math

PREFETCH = "accelc.prefetch_next_chunk"
CACHE_LINE = 64
LOCALITY = 3  # into L1 (prefetcht0): measured better than L2 (prefetcht1) on layer4, 1.16 vs 1.21 ms


def insert_weight_prefetch(mod):
    """``mod`` with every :data:`PREFETCH`-annotated loop of its PrimFuncs prefetching the next
    chunk of the weights it iterates over."""
    from tvm import tirx

    from accelc.targets.tvm_backend.irmod import with_functions

    updates = {}
    for gv, func in mod.functions.items():
        if isinstance(func, tirx.PrimFunc):
            rewritten = _rewrite(func)
            if rewritten is not None:
                updates[gv] = rewritten
    return with_functions(mod, updates)


def _annotated(sch):
    """``(blocks, loops, position)`` of the first :data:`PREFETCH` loop: the blocks under it
    (a reduction's init among them), and the loops above the first of them; or None."""
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    for block in blocks:
        loops = sch.get_loops(block)
        for i, loop in enumerate(loops):
            if PREFETCH in sch.get(loop).annotations:
                sref = sch.get_sref(loop)
                return [b for b in blocks if any(sch.get_sref(x).same_as(sref) for x in sch.get_loops(b))], loops, i
    return None


def _rewrite(func):
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    changed = False
    while (found := _annotated(sch)) is not None:
        changed = True
        blocks, loops, i = found
        chunk_loop = sch.get(loops[i])
        inner = sch.get(loops[i + 1]) if i + 1 < len(loops) else None
        # the first block under the loop that reads chunk-major (a reduction's init reads nothing)
        target = next((t for b in blocks if (t := _chunk_access(sch, b, sch.get_loops(b), i)) is not None), None)
        body = chunk_loop.body
        if target is not None:
            if inner is not None and chunk_loop.body.same_as(inner):
                body = _with_body(inner, _seq(_prefetches(chunk_loop, target, inner), inner.body))
            else:
                body = _seq(_prefetches(chunk_loop, target, None), chunk_loop.body)
        annotations = {k: v for k, v in chunk_loop.annotations.items() if k != PREFETCH}
        sch.state.replace(sch.get_sref(loops[i]), _with_body(chunk_loop, body, annotations))
    return sch.mod["main"] if changed else None


def _chunk_access(sch, block, loops, i):
    """``(buffer, indices, dim)`` of the read of ``block`` that walks chunk-major with loop ``i``:
    with the loops inside ``i`` at zero, index ``dim`` is the loop variable and every later one
    zero. None when no read does."""
    import tvm
    import tvm_ffi
    from tvm.s_tir.dlight.analysis.common_analysis import get_sblockrealize

    realize = get_sblockrealize(sch, block)
    var = sch.get(loops[i]).loop_var
    analyzer = tvm.sym.Analyzer()
    for loop in loops[i + 1:]:
        analyzer.bind(sch.get(loop).loop_var, tvm.tirx.const(0, str(sch.get(loop).extent.ty)))
    for iv, value in zip(realize.block.iter_vars, realize.iter_values):
        analyzer.bind(iv.var, value)
    for region in realize.block.reads:
        indices = [analyzer.simplify(r.min) for r in region.region]
        for dim, index in enumerate(indices):
            rest = indices[dim + 1:]
            if index.same_as(var) or tvm_ffi.structural_equal(index, var):
                if all(isinstance(r, tvm.tirx.IntImm) and r.value == 0 for r in rest) and rest:
                    return region.source, indices, dim
                break
    return None


def _prefetches(chunk_loop, target, row_loop):
    """The statement a row (``row_loop``'s iteration; None: the whole chunk at once) runs
    first: prefetch its share of the next chunk's cache lines."""
    from tvm import tirx

    buffer, indices, dim = target
    var, dtype = chunk_loop.loop_var, str(chunk_loop.extent.ty)
    const = lambda v: tirx.const(v, dtype)  # noqa: E731
    trailing = [int(s) for s in buffer.shape[dim + 1:]]
    per_line = max(1, CACHE_LINE * 8 // buffer.dtype.bits)
    lines = math.ceil(math.prod(trailing) / per_line)
    rows = int(row_loop.extent) if row_loop is not None else 1
    share = math.ceil(lines / rows)
    p = tirx.Var("prefetch_line", dtype)
    line = p if row_loop is None else row_loop.loop_var * const(share) + p
    offset = line * const(per_line)
    unravelled = []
    for size in reversed(trailing):
        unravelled.append(tirx.floormod(offset, const(size)))
        offset = tirx.floordiv(offset, const(size))
    next_chunk = [*indices[:dim], var + const(1), *reversed(unravelled)]
    call = tirx.call_llvm_intrin("void", "llvm.prefetch.p0", tirx.address_of(tirx.BufferLoad(buffer, next_chunk)),
                                 tirx.const(0, "int32"), tirx.const(LOCALITY, "int32"), tirx.const(1, "int32"))
    stmt = tirx.Evaluate(call)
    if share * rows != lines:
        stmt = tirx.IfThenElse(line < const(lines), stmt, None)
    loop = tirx.For(p, const(0), const(share), tirx.ForKind.SERIAL, stmt)
    last = chunk_loop.min + chunk_loop.extent - const(1)
    return tirx.IfThenElse(var < last, loop, None)


def _seq(first, second):
    from tvm import tirx

    return tirx.SeqStmt([first, second])


def _with_body(loop, body, annotations=None):
    from tvm import tirx

    return tirx.For(loop.loop_var, loop.min, loop.extent, loop.kind, body, loop.thread_binding,
                    loop.annotations if annotations is None else annotations, loop.step)

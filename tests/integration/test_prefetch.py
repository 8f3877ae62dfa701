"""Software prefetch of the next weight chunk (targets/tvm_backend/prefetch.py): the addresses
each row prefetches, on a real scheduled module, and what the pass leaves alone.

A prefetch cannot change results (the end-to-end equality is test_cpu_schedules'
``test_wide_convs_reduce_in_channel_chunks``, which builds through the pass), so these tests
check the addresses themselves: every cache line of chunk c+1, once, spread over chunk c's
rows, none after the last chunk."""

from __future__ import annotations

import math

import pytest
import torch

from accelc.targets.tvm_backend.prefetch import PREFETCH, insert_weight_prefetch
from tests.integration.test_cpu_schedules import ConvChain

TARGET = {"kind": "llvm", "mcpu": "skylake-avx512", "num-cores": 2}


def _scheduled(model, x):
    """The module as the build has it just before the prefetch pass (pipeline._schedule)."""
    import tvm
    from tvm import relax

    from accelc.targets.tvm_backend.importer import to_relax
    from accelc.targets.tvm_backend.params import fold_param_transforms
    from accelc.targets.tvm_backend.pipeline import apply_default_schedules, legalize_and_fuse

    from accelc.targets.tvm_backend import layout

    mod, params = to_relax(torch.fx.symbolic_trace(model), (x,))
    target = tvm.target.Target(TARGET)
    mod, params = fold_param_transforms(layout.to_nhwc(mod), params)
    mod = apply_default_schedules(legalize_and_fuse(mod, target), target)
    mod = relax.transform.SplitLayoutRewritePreproc()(mod)
    return fold_param_transforms(mod, params)[0]


def _prim_funcs(mod):
    from tvm import tirx

    return {gv.name_hint: f for gv, f in mod.functions.items() if isinstance(f, tirx.PrimFunc)}


def _chunk_loops(func):
    """(parallel loop, chunk loop, row loop) of the conv's update block (the chunk loop is the
    one the sketch annotated)."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        if sch.get(block).name_hint.endswith("_update"):
            loops = [sch.get(loop) for loop in sch.get_loops(block)]
            names = [loop.loop_var.name for loop in loops]
            i = names.index("rc_0")
            return loops[0], loops[i], loops[i + 1]
    raise AssertionError("no update block")


def _value(analyzer, expr) -> int:
    simplified = analyzer.simplify(expr)
    assert hasattr(simplified, "value"), simplified
    return int(simplified.value)


@pytest.mark.parametrize("cin,size", [(64, 14), (48, 7)])
def test_each_row_prefetches_its_share_of_the_next_chunk(cin, size):
    """ResNet-style 3×3 convs (64 and 48 input channels: 4 and 3 chunks of 16; 14 rows: two
    blocks of 7, 7 rows: one): for every chunk but the last, the rows' prefetches cover every
    cache line of the next chunk of the same output-channel block exactly once; the annotation
    is gone; a conv without chunks (1×1) gets none."""
    import tvm
    from tvm import tirx

    model = ConvChain(cin, [(64, 3, 1, False, "relu", False), (32, 1, 1, False, "relu", False)]).eval()
    before = _scheduled(model, torch.randn(1, cin, size, size))
    after = insert_weight_prefetch(before)
    funcs, old = _prim_funcs(after), _prim_funcs(before)
    conv = next(n for n, f in funcs.items() if "conv2d_nhwc_update" in f.script() and "rc_0" in f.script())
    script = funcs[conv].script()
    assert "llvm.prefetch" in script and PREFETCH not in script
    assert PREFETCH in old[conv].script()
    assert all("llvm.prefetch" not in f.script() for n, f in funcs.items() if n != conv)

    parallel, chunk_loop, row_loop = _chunk_loops(funcs[conv])
    guard = row_loop.body[0]  # if rc_0 < last: for line in range(share): [if line < lines:] prefetch
    assert isinstance(guard, tirx.IfThenElse)
    lines_loop = guard.then_case
    stmt = lines_loop.body
    bound = stmt.condition if isinstance(stmt, tirx.IfThenElse) else None
    call = (stmt.then_case if bound is not None else stmt).value
    load = call.args[1].args[0]  # address_of(W[...])
    weight = load.source
    shape = [int(s) for s in weight.shape]
    assert shape[1:] == [cin // 16, 3, 3, 16, 64]
    chunk_elems = math.prod(shape[2:])
    per_line = 64 // 4
    lines = math.ceil(chunk_elems / per_line)
    chunks, rows, share = int(chunk_loop.extent), int(row_loop.extent), int(lines_loop.extent)
    for chunk in range(chunks):
        analyzer = tvm.sym.Analyzer()
        analyzer.bind(chunk_loop.loop_var, tirx.const(chunk, "int64"))
        assert bool(_value(analyzer, guard.condition)) == (chunk < chunks - 1)
        if chunk == chunks - 1:
            continue
        for task in range(int(parallel.extent)):
            covered = []
            for row in range(rows):
                for line in range(share):
                    a = tvm.sym.Analyzer()
                    for var, v in ((chunk_loop.loop_var, chunk), (row_loop.loop_var, row),
                                   (lines_loop.loop_var, line), (parallel.loop_var, task)):
                        a.bind(var, tirx.const(v, "int64"))
                    if bound is not None and not _value(a, bound):
                        continue
                    index = [_value(a, i) for i in load.indices]
                    flat = 0
                    for i, n in zip(index, shape):
                        assert 0 <= i < n, (index, shape)
                        flat = flat * n + i
                    covered.append(flat)
            a = tvm.sym.Analyzer()
            a.bind(parallel.loop_var, tirx.const(task, "int64"))
            block = _value(a, load.indices[0])  # the task's block of output channels
            start = (block * shape[1] + chunk + 1) * chunk_elems
            assert sorted(covered) == list(range(start, start + chunk_elems, per_line))


def test_loops_without_a_chunk_major_read_are_left_alone():
    """An annotated loop whose reads do not walk a buffer chunk by chunk (here: a row-major
    copy) gets no prefetch, and loses the annotation (nothing downstream should see it)."""
    import tvm
    from tvm import s_tir
    from tvm.script import tirx as T

    @T.prim_func(private=True, s_tir=True)
    def copy(a: T.Buffer((8, 32), "float32"), b: T.Buffer((8, 32), "float32")):
        for i, j in T.grid(8, 32):
            with T.sblock("copy"):
                vi, vj = T.axis.remap("SS", [i, j])
                b[vi, vj] = a[vj // 4, vi * 4 + vj % 4]

    sch = s_tir.Schedule(copy)
    sch.annotate(sch.get_loops(sch.get_sblock("copy"))[0], PREFETCH, True)
    mod = insert_weight_prefetch(tvm.IRModule({"copy": sch.mod["main"]}))
    script = mod["copy"].script()
    assert PREFETCH not in script and "prefetch" not in script

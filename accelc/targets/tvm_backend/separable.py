"""Depthwise-separable pairs as one kernel (x86, fp32 NHWC): a depthwise conv with its bias and
ReLU6, and the 1×1 conv that reads it (with its bias and a residual add), computed row by row.

A MobileNet block expands its input 6× (1×1 conv), filters it (depthwise 3×3) and projects it
back (1×1 conv). Run as separate kernels, the depthwise conv writes the wide tensor to memory
and the projection reads it back: at 56×56×144 that is 1.8 MB a way, and at batch 1 the
depthwise kernel is the first writer of its buffer in each inference, so every line it writes
is a miss (MobileNetV2 b1 on the 2-vCPU EPYC VM: 0.24 ms in the model, 0.085 ms with its
output buffer touched first). Here each parallel task computes one output row of the
depthwise conv (all channels, in register tiles) into a row buffer of its own (56×144 floats:
32 KB, in L1/L2) and projects it at once; the wide tensor never exists.

Two steps:

* :func:`group_separable` (Relax, before legalization) groups each matching chain
  ``conv2d(groups=C) → add → maximum → minimum → conv2d(1×1) → add [→ add]`` into one
  function (``FuseOpsByPattern``), which ``FuseTIR`` turns into one PrimFunc. Chains whose
  intermediate values are used elsewhere, or that have fewer than :data:`MIN_ROWS` output
  rows (too few tasks for the cores: the 7×7 layers at batch 1), are left alone.
* :func:`separable_sketch` schedules that PrimFunc: parallel over (image, row); per task the
  depthwise row as ``rw × ro`` register tiles (window unrolled, padding read through its
  conditions) with the bias and clip per tile, then the projection's register tiles over the
  row buffer with their epilogue.

Preserves: the computation (grouping moves no arithmetic; the schedule changes loop
structure, intermediate scopes and weight layouts), fp32 results equal up to summation order.
"""

from __future__ import annotations

from accelc.targets.tvm_backend.cpu_conv import (
    CONV_NHWC,
    DEPTHWISE_NHWC,
    NHWC_ACCUMULATORS,
    _block_names,
    _fitting_lanes,
    _name,
    _register_tile,
    _root_blocks,
    _vectorize_tail,
    nhwc_tiles,
)

PATTERN = "accelc.separable"
MIN_ROWS = 8  # images × output rows: the parallel tasks of a grouped pair


def _chain(residual: bool):
    """The chain's pattern and its annotations: ``dw``, ``pw`` and ``inner0…`` (the values
    that must not be used outside the chain)."""
    from tvm.relax.dpl import is_op, wildcard

    dw = is_op("relax.nn.conv2d")(wildcard(), wildcard())
    bias = is_op("relax.add")(dw, wildcard())
    low = is_op("relax.maximum")(bias, wildcard())
    clip = is_op("relax.minimum")(low, wildcard())
    pw = is_op("relax.nn.conv2d")(clip, wildcard())
    out = is_op("relax.add")(pw, wildcard())
    inner = [dw, bias, low, clip, pw]
    if residual:
        inner.append(out)
        res = wildcard()
        out = is_op("relax.add")(res, out) | is_op("relax.add")(out, res)
    return out, {"dw": dw, "pw": pw, **{f"inner{i}": p for i, p in enumerate(inner)}}


def _is_separable(ctx) -> bool:
    """A float32 NHWC depthwise conv (one channel per group) into a 1×1 conv, with channel
    counts that fill vectors, at least :data:`MIN_ROWS` output rows, and no intermediate value
    used outside the chain."""
    dw, pw = ctx.annotated_expr["dw"], ctx.annotated_expr["pw"]
    if any(str(c.attrs.data_layout) != "NHWC" or str(c.ty.dtype) != "float32" for c in (dw, pw)):
        return False
    channels = int(dw.args[0].ty.shape[3])
    n, rows, _, out_channels = (int(d) for d in pw.ty.shape)
    if int(dw.attrs.groups) != channels or channels == 1 or int(pw.attrs.groups) != 1:
        return False
    if [int(d) for d in pw.args[1].ty.shape][1:3] != [1, 1] or n * rows < MIN_ROWS:
        return False
    if not _fitting_lanes(channels, 16) or not _fitting_lanes(out_channels, 16):
        return False
    inner = [e for k, e in ctx.annotated_expr.items() if k.startswith("inner")]
    return all(len(ctx.var_usages.get(ctx.value_to_bound_var[e], [])) == 1 for e in inner
               if e in ctx.value_to_bound_var)


def group_separable(mod):
    """``mod`` with each depthwise-separable chain grouped into one function (see the module
    docstring); a module without such chains comes back unchanged."""
    from tvm import relax
    from tvm.relax.transform import FusionPattern

    patterns = [FusionPattern(PATTERN, *_chain(residual), _is_separable) for residual in (True, False)]
    return relax.transform.FuseOpsByPattern(patterns, bind_constants=False, annotate_codegen=False)(mod)


def is_separable(func) -> bool:
    """Whether ``func`` (a fused PrimFunc) is a grouped depthwise-separable pair."""
    names = _block_names(func)
    return CONV_NHWC in names and DEPTHWISE_NHWC in names


def separable_sketch(sch, lanes: int, accumulators: int = NHWC_ACCUMULATORS):
    """Schedule a grouped pair (see the module docstring); None when ``sch`` has another shape."""
    outs = list(sch.get_output_blocks(sch.get_sblock("root")))
    if len(outs) != 1:
        return None
    out_name = _name(sch, outs[0])
    row_buffer = sch.get(sch.get_sblock(CONV_NHWC)).reads[0].source
    row_name = next((_name(sch, b) for b in _root_blocks(sch) if sch.get(b).writes[0].source.same_as(row_buffer)), None)
    if row_name in (None, DEPTHWISE_NHWC, out_name):
        return None
    for name in [_name(sch, b) for b in _root_blocks(sch)]:
        if name not in (DEPTHWISE_NHWC, CONV_NHWC, row_name, out_name):
            sch.compute_inline(sch.get_sblock(name))  # the pad (read through its conditions), biases, clip
    dw, pw = sch.get_sblock(DEPTHWISE_NHWC), sch.get_sblock(CONV_NHWC)
    row, out = sch.get_sblock(row_name), sch.get_sblock(out_name)
    pw_lanes, dw_lanes = (_fitting_lanes(int(sch.get(sch.get_loops(b)[3]).extent), lanes) for b in (pw, dw))
    if not pw_lanes or not dw_lanes:
        return None
    task = _projection(sch, pw, out, pw_lanes, accumulators)
    _depthwise_row(sch, dw, row, task, dw_lanes)
    return sch


def _packed_weights(sch, conv, layout) -> None:
    weight = sch.cache_read(conv, 1, "global")
    sch.annotate(weight, "meta_schedule.layout_rewrite_preproc", True)
    sch.transform_layout(conv, ("read", 1), layout)


def _projection(sch, pw, out, lanes: int, accumulators: int):
    """The 1×1 conv as NHWC register tiles, parallel over (image, row); returns that loop."""
    _packed_weights(sch, pw, lambda o, h, w, i: (o // lanes, h, w, i, o % lanes))
    sch.set_scope(pw, 0, "local")
    n, yy, xx, ff, ry, rx, rc = sch.get_loops(pw)
    tile = nhwc_tiles(CONV_NHWC, int(sch.get(xx).extent), int(sch.get(ff).extent) // lanes, accumulators)
    ff_o, ff_r, vec, xx_o, xx_r = _register_tile(sch, ff, xx, lanes, tile)
    sch.reorder(n, yy, ff_o, xx_o, ry, rx, rc, xx_r, ff_r, vec)
    task = sch.fuse(n, yy)
    sch.parallel(task)
    sch.unroll(xx_r)
    sch.unroll(ff_r)
    sch.vectorize(vec)
    sch.reverse_compute_at(out, xx_o, preserve_unit_loops=True)
    sch.decompose_reduction(pw, ry)
    _vectorize_tail(sch, out, lanes)
    return task


def _depthwise_row(sch, dw, row, task, lanes: int) -> None:
    """The depthwise conv's output row for ``task``: register tiles over (columns, channels),
    the window unrolled, bias and clip per tile into the row buffer."""
    _packed_weights(sch, dw, lambda o, h, w, i: (h, w, i, o))
    sch.compute_at(row, task, preserve_unit_loops=True)
    sch.compute_at(dw, task, preserve_unit_loops=True)
    xx, ff, ry, rx, rc = sch.get_loops(dw)[-5:]
    tile = nhwc_tiles(DEPTHWISE_NHWC, int(sch.get(xx).extent), int(sch.get(ff).extent) // lanes)
    ff_o, ff_r, vec, xx_o, xx_r = _register_tile(sch, ff, xx, lanes, tile)
    sch.reorder(xx_o, ff_o, ry, rx, rc, xx_r, ff_r, vec)
    sch.set_scope(dw, 0, "local")
    sch.reverse_compute_at(row, ff_o, preserve_unit_loops=True)
    for loop in (ry, rx, xx_r, ff_r):
        sch.unroll(loop)
    sch.vectorize(vec)
    sch.decompose_reduction(dw, ry)
    _vectorize_tail(sch, row, lanes)

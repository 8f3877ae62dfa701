"""MobileNet blocks as one kernel (x86, fp32 NHWC): a depthwise conv with its bias and ReLU6
and the 1×1 conv that reads it (with its bias and a residual add), and where it pays the 1×1
expand conv before them too, computed band of rows by band of rows.

A MobileNet block expands its input 6× (1×1 conv), filters it (depthwise 3×3) and projects it
back (1×1 conv). Run as separate kernels, the expand and the depthwise conv each write a tensor
6× wider than the block's input, and the next kernel reads it back: at 56×56×144 that is
1.8 MB a way at batch 1, 14 MB at batch 8 (more than the caches hold). At batch 1 the
depthwise kernel was also the first writer of its buffer in each inference, so every line it
wrote missed (the 56×56×144 depthwise kernel: 0.24 ms in the model, 0.085 ms with its output
buffer touched first). Here each parallel task computes a band of output rows: the expand
conv's rows that the band's depthwise rows read, then the depthwise rows (all channels, in
register tiles) into a buffer of its own (in L1/L2), then the projection over them; the wide
tensors never exist. Neighbouring bands both compute the expanded rows between them (the
halo): ``3 - stride`` rows per band of ``band·stride``, so the expand conv joins only where
bands are tall enough (:data:`MAX_HALO`), which at batch 1 is the 112→56 and 56×56 blocks.

Two steps:

* :func:`group_separable` (Relax, before legalization) groups each matching chain
  ``[conv2d(1×1) → add → maximum → minimum →] conv2d(groups=C) → add → maximum → minimum →
  conv2d(1×1) → add [→ add]`` into one function (``FuseOpsByPattern``), which ``FuseTIR``
  turns into one PrimFunc. Chains whose intermediate values are used elsewhere, or that have
  fewer than :data:`MIN_ROWS` output rows (too few tasks for the cores: the 7×7 layers at
  batch 1), are left alone.
* :func:`separable_sketch` schedules that PrimFunc: parallel over (image, band of rows); per
  task the expand conv's rows as register tiles with bias and clip, the depthwise rows as
  ``rw × ro`` register tiles (window unrolled, padding read through its conditions) with bias
  and clip, then the projection's register tiles over the depthwise rows with their epilogue.

Preserves: the computation (grouping moves no arithmetic; the schedule changes loop
structure, intermediate scopes and weight layouts; halo rows are computed twice, identically),
fp32 results equal up to summation order.
"""

from __future__ import annotations

from accelc.targets.tvm_backend.cpu_conv import (
    CONV_NHWC,
    DEPTHWISE_NHWC,
    NHWC_ACCUMULATORS,
    PAD,
    _block_names,
    _fitting_lanes,
    _name,
    _register_tile,
    _root_blocks,
    _vectorize_tail,
    nhwc_tiles,
    pack_weights,
)

PATTERN = "accelc.separable"
MIN_ROWS = 8  # images × output rows: the parallel tasks of a grouped pair


def _chain(residual: bool, expand: bool):
    """The chain's pattern and its annotations: ``dw``, ``pw``, ``ex`` (with ``expand``) and
    ``inner0…`` (the values that must not be used outside the chain)."""
    from tvm.relax.dpl import is_op, wildcard

    def conv_relu6(src):
        conv = is_op("relax.nn.conv2d")(src, wildcard())
        bias = is_op("relax.add")(conv, wildcard())
        low = is_op("relax.maximum")(bias, wildcard())
        return conv, [conv, bias, low], is_op("relax.minimum")(low, wildcard())

    inner, named = [], {}
    src = wildcard()
    if expand:
        named["ex"], values, src = conv_relu6(src)
        inner += [*values, src]
    named["dw"], values, clip = conv_relu6(src)
    inner += [*values, clip]
    named["pw"] = pw = is_op("relax.nn.conv2d")(clip, wildcard())
    out = is_op("relax.add")(pw, wildcard())
    inner.append(pw)
    if residual:
        inner.append(out)
        res = wildcard()
        out = is_op("relax.add")(res, out) | is_op("relax.add")(out, res)
    return out, {**named, **{f"inner{i}": p for i, p in enumerate(inner)}}


def _pointwise(conv) -> bool:
    return int(conv.attrs.groups) == 1 and [int(d) for d in conv.args[1].ty.shape][1:3] == [1, 1]


def _is_separable(ctx) -> bool:
    """A float32 NHWC depthwise conv (one channel per group) into a 1×1 conv (after a 1×1
    expand conv when the pattern has one, if the tasks recompute at most :data:`MAX_HALO` of
    its rows), with channel counts that fill vectors, at least :data:`MIN_ROWS` output rows, and
    no intermediate value used outside the chain."""
    dw, pw, ex = ctx.annotated_expr["dw"], ctx.annotated_expr["pw"], ctx.annotated_expr.get("ex")
    convs = [c for c in (ex, dw, pw) if c is not None]
    if any(str(c.attrs.data_layout) != "NHWC" or str(c.attrs.kernel_layout) != "OHWI" or str(c.ty.dtype) != "float32"
           for c in convs):
        return False
    channels = int(dw.args[0].ty.shape[3])
    n, rows, _, out_channels = (int(d) for d in pw.ty.shape)
    if int(dw.attrs.groups) != channels or channels == 1 or not _pointwise(pw) or n * rows < MIN_ROWS:
        return False
    if ex is not None and (not _pointwise(ex) or not _fitting_lanes(int(ex.args[0].ty.shape[3]), 16)
                           or _halo(dw, rows_per_task(n, rows)) > MAX_HALO):
        return False
    if not _fitting_lanes(channels, 16) or not _fitting_lanes(out_channels, 16):
        return False
    inner = [e for k, e in ctx.annotated_expr.items() if k.startswith("inner")]
    return all(len(ctx.var_usages.get(ctx.value_to_bound_var[e], [])) == 1 for e in inner
               if e in ctx.value_to_bound_var)


MAX_HALO = 0.3  # measured on MobileNetV2: 0.15 and 0.3 equal at b8, 0.3 3% faster at b1


def _halo(dw, band: int) -> float:
    """The expand rows a task recomputes, as a fraction of those it needs: a band of ``band``
    rows of the depthwise conv ``dw`` (stride ``s``, window ``k`` rows tall after dilation)
    reads ``(band - 1)·s + k`` expanded rows (3×3: ``3 - s`` more than ``band·s``)."""
    stride, dilation = int(dw.attrs.strides[0]), int(dw.attrs.dilation[0])
    window = (int(dw.args[1].ty.shape[1]) - 1) * dilation + 1
    return (window - stride) / (band * stride)


def group_separable(mod):
    """``mod`` with each depthwise-separable chain grouped into one function (see the module
    docstring); a module without such chains comes back unchanged."""
    from tvm import relax
    from tvm.relax.transform import FusionPattern

    patterns = [FusionPattern(PATTERN, *_chain(residual, expand), _is_separable)
                for expand in (True, False) for residual in (True, False)]
    return relax.transform.FuseOpsByPattern(patterns, bind_constants=False, annotate_codegen=False)(mod)


def is_separable(func) -> bool:
    """Whether ``func`` (a fused PrimFunc) is a grouped depthwise → 1×1 pair or whole block."""
    names = _block_names(func)
    return CONV_NHWC in names and DEPTHWISE_NHWC in names


def _writer(sch, buffer):
    return next((b for b in _root_blocks(sch) if sch.get(b).writes[0].source.same_as(buffer)), None)


def separable_sketch(sch, lanes: int, accumulators: int = NHWC_ACCUMULATORS):
    """Schedule a grouped pair or block (see the module docstring); None when ``sch`` has another shape."""
    outs = list(sch.get_output_blocks(sch.get_sblock("root")))
    if len(outs) != 1:
        return None
    out_name = _name(sch, outs[0])
    pad = _writer(sch, sch.get(sch.get_sblock(DEPTHWISE_NHWC)).reads[0].source)
    if pad is not None and _name(sch, pad).startswith(PAD):
        sch.compute_inline(pad)  # read through its conditions
    order = [_name(sch, b) for b in _root_blocks(sch)]
    at = order.index(DEPTHWISE_NHWC)
    dense = [n for n in order if n.startswith(CONV_NHWC)]
    before, after = [n for n in dense if order.index(n) < at], [n for n in dense if order.index(n) > at]
    if len(after) != 1 or len(before) > 1:
        return None
    pw_name, ex_name = after[0], (before[0] if before else None)
    row_name = _name(sch, _writer(sch, sch.get(sch.get_sblock(pw_name)).reads[0].source))
    ex_out_name = _name(sch, _writer(sch, sch.get(sch.get_sblock(DEPTHWISE_NHWC)).reads[0].source)) if ex_name else None
    if row_name in (DEPTHWISE_NHWC, out_name) or (ex_name is not None and ex_out_name in (ex_name, out_name)):
        return None
    keep = {DEPTHWISE_NHWC, pw_name, row_name, out_name, ex_name, ex_out_name}
    for name in order:
        if name not in keep:
            sch.compute_inline(sch.get_sblock(name))  # zero pads, biases, clip
    dw, pw = sch.get_sblock(DEPTHWISE_NHWC), sch.get_sblock(pw_name)
    row, out = sch.get_sblock(row_name), sch.get_sblock(out_name)
    ex = sch.get_sblock(ex_name) if ex_name is not None else None
    pw_lanes, dw_lanes, ex_lanes = (_fitting_lanes(int(sch.get(sch.get_loops(b)[3]).extent), lanes) if b is not None else None
                                    for b in (pw, dw, ex))
    if not pw_lanes or not dw_lanes or ex_lanes == 0:
        return None
    band = 1 if ex is None else rows_per_task(*(int(sch.get(loop).extent) for loop in sch.get_loops(pw)[:2]))
    task = _projection(sch, pw, out, pw_lanes, accumulators, band)
    _depthwise_rows(sch, dw, row, task, dw_lanes)
    if ex is not None:
        _expand_rows(sch, ex, sch.get_sblock(ex_out_name), task, ex_lanes, accumulators)
    return sch


MIN_TASKS = 8  # parallel tasks of a grouped block, at least (bands of rows are cut to give them)
MAX_BAND = 14  # output rows per task of a grouped block, at most


def rows_per_task(images: int, rows: int) -> int:
    """Output rows per parallel task of a grouped block with an expand conv: the most (at most
    :data:`MAX_BAND`, dividing ``rows``) that leave :data:`MIN_TASKS` tasks."""
    return max(d for d in range(1, min(rows, MAX_BAND) + 1)
               if rows % d == 0 and (images * rows // d >= MIN_TASKS or d == 1))


def _dense_tiles(sch, conv, out, lanes: int, accumulators: int, *, outer=()):
    """A 1×1 conv's NHWC register tiles with the epilogue ``out`` per tile, under the ``outer``
    loops (kept outermost, in their order)."""
    pack_weights(sch, conv, lambda o, h, w, i: (o // lanes, h, w, i, o % lanes))
    sch.set_scope(conv, 0, "local")
    xx, ff, ry, rx, rc = sch.get_loops(conv)[-5:]
    tile = nhwc_tiles(CONV_NHWC, int(sch.get(xx).extent), int(sch.get(ff).extent) // lanes, accumulators)
    ff_o, ff_r, vec, xx_o, xx_r = _register_tile(sch, ff, xx, lanes, tile)
    sch.reorder(*outer, ff_o, xx_o, ry, rx, rc, xx_r, ff_r, vec)
    sch.unroll(xx_r)
    sch.unroll(ff_r)
    sch.vectorize(vec)
    sch.reverse_compute_at(out, xx_o, preserve_unit_loops=True)
    sch.decompose_reduction(conv, ry)
    _vectorize_tail(sch, out, lanes)


def _projection(sch, pw, out, lanes: int, accumulators: int, band: int):
    """The 1×1 projection as NHWC register tiles, parallel over (image, band of ``band``
    rows); returns that loop."""
    n, yy = sch.get_loops(pw)[:2]
    yy_b, yy_i = sch.split(yy, [None, band])
    sch.reorder(n, yy_b, yy_i)
    task = sch.fuse(n, yy_b)
    sch.parallel(task)
    _dense_tiles(sch, pw, out, lanes, accumulators, outer=(task, yy_i))
    return task


def _expand_rows(sch, ex, ex_out, task, lanes: int, accumulators: int) -> None:
    """The expand conv's rows that ``task``'s depthwise rows read (its halo recomputed by the
    neighbouring task), as register tiles, bias and clip per tile."""
    sch.compute_at(ex_out, task, preserve_unit_loops=True)
    sch.compute_at(ex, task, preserve_unit_loops=True)
    _dense_tiles(sch, ex, ex_out, lanes, accumulators, outer=sch.get_loops(ex)[1:3])


def _depthwise_rows(sch, dw, row, task, lanes: int) -> None:
    """The depthwise conv's output rows for ``task``: register tiles over (columns, channels),
    the window unrolled, bias and clip per tile into the row buffer."""
    pack_weights(sch, dw, lambda o, h, w, i: (h, w, i, o))
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

"""x86 schedules for convolutions with their fused epilogues (fp32, and int32 depthwise).

TVM 0.27 has no default CPU schedule for convolutions (``dlight.cpu`` covers GEMV and
reductions only): an untuned conv runs as TVM's naive seven-deep loop, ~100× slower than a
vendor library. This module schedules the PrimFuncs that ``FuseOps`` builds around a
``conv2d_nchw`` block (conv → bias/BN arithmetic → residual add → ReLU) the way
hand-written x86 kernels do:

* **weights** are re-laid out to ``[O/L, C, KH, KW, L]`` (``L`` SIMD lanes: 16 with AVX-512)
  by a block marked ``meta_schedule.layout_rewrite_preproc``; the build splits it off and
  evaluates it once on the weights (``SplitLayoutRewritePreproc`` + :mod:`.params`), so the
  artifact stores packed weights;
* **register tile**: ``rw`` output columns × ``ro`` vectors of ``L`` output channels are
  accumulated in registers over the whole reduction ``(c, kh, kw)``: per step ``ro`` vector
  loads of weights, ``rw`` broadcast inputs, ``rw·ro`` FMAs. The accumulator is an
  ``NCHW{L}c`` tile in ``local`` scope (registers after LLVM's SROA);
* the **epilogue** (every injective block after the conv, inlined into one) runs per tile on
  the accumulator and writes the NCHW output;
* the padded input stays NCHW (built once per layer, in parallel; a pad of zero is inlined);
  the outer tile loops are fused and run in parallel.

Depthwise convolutions (``groups == C``, ``group_conv2d_nchw`` with one channel per group)
and convs whose output channels do not fill vectors get :func:`row_sketch`: vectors along
the output row, weights broadcast. GEMV and reductions get TVM's ``dlight.cpu`` rules;
anything else left unscheduled a generic schedule: outer spatial loops fused and parallel,
an innermost spatial loop vectorised.

The same conv sketch is MetaSchedule's rule for these blocks when tuning
(``schedule_rule = accelc_cpu_conv``), with the register tile sampled.

Preserves: the computation (only loop structure, the layout of intermediates and the
weight layout change); fp32 results equal TVM's naive loops up to summation order, int32
results exactly.
"""

from __future__ import annotations

from accelc.targets.tvm_backend.prefetch import PREFETCH

RULE = "accelc_cpu_conv"
CONV = "conv2d_nchw"
DEPTHWISE = "group_conv2d_nchw"
CONV_NHWC = "conv2d_nhwc"
DEPTHWISE_NHWC = "group_conv2d_nhwc"
MATMUL = "matmul"
PAD = "pad_temp"
MAX_ACCUMULATORS = 16  # NCHW/matmul tiles, of 32 zmm registers: LLVM interleaves steps, more spill
NHWC_ACCUMULATORS = 28  # NHWC tiles: rw·ro + ro weight vectors + 1 broadcast ≈ 32 registers
# AMD Zen: LLVM's znver tuning unrolls the reduction loop twice and interleaves the copies, so
# a 7×4 tile (33 registers with its weights and broadcast: one spill per step under Intel
# tuning) spilled 57 vectors to the stack. Tiles of ≤ 24 accumulators (7×2, 4×4, 6×4) fit.
# Measured on Zen 4 (EPYC, 2 cores), whole models against the 28 limit, in turns:
# ResNet-18 b1 21.8 → 14.7 ms, MobileNetV2 b1 5.07 → 4.12, b8 51.9 → 37.8 (ORT 18.8, 4.69, 31.2);
# limits 16 and 20 within 1% of 24; Intel code generation (mcpu=icelake-server) with 7×4 tiles
# 15.7 ms on ResNet-18.
ZEN_ACCUMULATORS = 24


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


# Output-channel vectors per register tile, at most. 4 was the limit until MobileNetV2's 96-,
# 192- and 576-channel expand convs: with 6 a tile covers a pixel's 96 channels (4 × 6 = 24
# accumulators), so each task writes its output row in one sequential sweep instead of two
# interleaved halves. Whole MobileNetV2 b8 in turns: 37.3 → 35.8 ms (b1, ResNet-18 b1: within
# 1%; ResNet-18's channel counts have no divisor 5 or 6 of their vector counts, so no change).
TILE_VECTORS = 6


def conv_tile(out_width: int, vectors: int, limit: int = MAX_ACCUMULATORS) -> tuple[int, int]:
    """``(rw, ro)`` for the untuned schedule: the most accumulators ≤ ``limit``, rows ≤ 14
    wide, then the most channel vectors. Measured on ResNet-18's 3×3 layers (2 cores, AVX-512):
    NCHW tiles spill beyond 16 accumulators; NHWC tiles are fastest at 7×4 = 28 (each weight
    vector reused 7×, each broadcast 4×: the weights stream from L2 at half the rate of 4×4)."""
    options = [(rw, ro) for ro in _divisors(vectors) if ro <= TILE_VECTORS
               for rw in _divisors(out_width) if rw <= 14 and rw * ro <= limit]
    return max(options, key=lambda t: (t[0] * t[1], t[1]))


def nhwc_accumulators(target) -> int:
    """The register tile's accumulator limit for NHWC convs on ``target`` (an LLVM target)."""
    return ZEN_ACCUMULATORS if str(target.attrs.get("mcpu", "")).startswith("znver") else NHWC_ACCUMULATORS


def simd_lanes(target) -> int:
    import tvm

    has = tvm.get_global_func("target.target_has_feature")
    return 16 if has("avx512f", target) else 8


# ----------------------------------------------------------------------------- helpers
def _root_blocks(sch):
    return list(sch.get_child_blocks(sch.get_sblock("root")))


def _name(sch, block) -> str:
    return sch.get(block).name_hint


def _fold_epilogue(sch, anchor: str, keep: tuple[str, ...] = (PAD,)):
    """Inline every block but ``anchor``, those named in ``keep`` (the pad) and the function's
    single output block into its consumers; return the output block (None when the function
    has another shape)."""
    outs = list(sch.get_output_blocks(sch.get_sblock("root")))
    if len(outs) != 1:
        return None
    out_name = _name(sch, outs[0])
    if out_name == anchor:
        return None
    for block in _root_blocks(sch):
        if _name(sch, block) not in (anchor, *keep, out_name):
            sch.compute_inline(block)
    return sch.get_sblock(out_name)


def _pad_block(sch):
    """The function's padding block, or None."""
    return sch.get_sblock(PAD) if PAD in [_name(sch, b) for b in _root_blocks(sch)] else None


def _inline_if_empty(sch, pad) -> bool:
    """Inline ``pad`` when it adds no border; whether it did."""
    src, dst = sch.get(pad).reads[0].source, sch.get(pad).writes[0].source
    if [int(d) for d in src.shape] != [int(d) for d in dst.shape]:
        return False
    sch.compute_inline(pad)
    return True


def _inline_pad(sch) -> None:
    """Read the input through the padding condition instead of building a padded copy: for a
    depthwise conv (9 multiply-adds per output) the copy's memory traffic costs more than the
    conditions (measured 1.5–2.5× on MobileNetV2's depthwise layers)."""
    if (pad := _pad_block(sch)) is not None:
        sch.compute_inline(pad)


def _prepare_pad(sch, lanes: int = 0) -> None:
    """Inline a pad of zero width; otherwise build the padded input in parallel (NHWC:
    vectorised along channels)."""
    pad = _pad_block(sch)
    if pad is None or _inline_if_empty(sch, pad):
        return
    loops = sch.get_loops(pad)
    sch.parallel(sch.fuse(*loops[:2]))
    if lanes:
        _vectorize_tail(sch, pad, lanes)


def _split(sch, loop, max_inner: int, fixed: int | None):
    factors = sch.sample_perfect_tile(loop, n=2, max_innermost_factor=max_inner) if fixed is None else [None, fixed]
    return sch.split(loop, factors)


def _register_tile(sch, ff, xx, lanes: int, tile: tuple[int, int] | None):
    """Split output channels into (outer, ``ro`` vectors, ``lanes``) and the row into
    (outer, ``rw``); ``tile=None`` samples ``(rw, ro)``."""
    vectors, vec = sch.split(ff, [None, lanes])
    rw, ro = tile if tile is not None else (None, None)
    ff_o, ff_r = _split(sch, vectors, 4, ro)
    xx_o, xx_r = _split(sch, xx, 14, rw)
    return ff_o, ff_r, vec, xx_o, xx_r


def pack_weights(sch, block, layout) -> None:
    """Read ``block``'s weights (its read 1) through a copy in ``layout`` (an index map), made by
    a block marked ``meta_schedule.layout_rewrite_preproc``: the build folds that copy into the
    stored weights."""
    weight = sch.cache_read(block, 1, "global")
    sch.annotate(weight, "meta_schedule.layout_rewrite_preproc", True)
    sch.transform_layout(block, ("read", 1), layout)


def parallel_unrolled(sch, outer, unrolled, vector):
    """Fuse the ``outer`` loops into one parallel loop (returned), unroll the ``unrolled``
    ones and vectorise ``vector``: how every register-tiled sketch ends."""
    loop = sch.fuse(*outer) if len(outer) > 1 else outer[0]
    sch.parallel(loop)
    for inner in unrolled:
        sch.unroll(inner)
    sch.vectorize(vector)
    return loop


# ----------------------------------------------------------------------------- sketches
def _finish_tile(sch, block, out, *, outer, tile, reduction, registers, vector, unrolled=(), decompose=True):
    """The loop nest every sketch ends with: the ``outer`` loops fused and parallel, then the
    ``tile`` loop, the ``reduction`` loops, the ``registers`` loops (unrolled) and the ``vector``
    loop innermost; ``unrolled`` loops (a depthwise window) unrolled too; the epilogue ``out``
    computed per tile; the reduction's init split off (``decompose``)."""
    sch.reorder(*outer, tile, *reduction, *registers, vector)
    parallel_unrolled(sch, outer, (*unrolled, *registers), vector)
    sch.reverse_compute_at(out, tile, preserve_unit_loops=True)
    if decompose:
        sch.decompose_reduction(block, reduction[0])
    return sch


def conv_sketch(sch, conv, *, lanes: int = 16, tile: tuple[int, int] | None = None, decompose: bool = True):
    """Schedule a ``conv2d_nchw`` block and its epilogue (see the module docstring).
    ``tile=None`` samples ``(rw, ro)`` (MetaSchedule); ``decompose=False`` leaves the
    reduction's init to MetaSchedule's ``RewriteReductionBlock``. Returns None when the
    function does not have the expected shape (the caller keeps the original)."""
    out = _fold_epilogue(sch, CONV)
    n, ff, yy, xx, rc, ry, rx = sch.get_loops(conv)
    if out is None or int(sch.get(ff).extent) % lanes:
        return None
    _prepare_pad(sch)
    pack_weights(sch, conv, lambda o, i, h, w: (o // lanes, i, h, w, o % lanes))
    sch.transform_layout(conv, ("write", 0), lambda b, c, h, w: (b, c // lanes, h, w, c % lanes))
    sch.set_scope(conv, 0, "local")
    ff_o, ff_r, vec, xx_o, xx_r = _register_tile(sch, ff, xx, lanes, tile)
    return _finish_tile(sch, conv, out, outer=(n, ff_o, yy), tile=xx_o, reduction=(rc, ry, rx),
                        registers=(xx_r, ff_r), vector=vec, decompose=decompose)


def _vectorize_tail(sch, block, lanes: int) -> None:
    loop = sch.get_loops(block)[-1]
    extent = int(sch.get(loop).extent)
    if extent % lanes == 0 and extent > lanes:
        loop = sch.split(loop, [None, lanes])[1]
    if extent % lanes == 0:
        sch.vectorize(loop)


def nhwc_tiles(anchor: str, out_width: int, vectors: int, accumulators: int = NHWC_ACCUMULATORS) -> tuple[int, int]:
    """``(rw, ro)`` for an NHWC conv: as :func:`conv_tile` (≤ ``accumulators``); depthwise: ≤ 16 accumulators,
    ≤ 4 vectors (each step loads an input vector per accumulator; measured on MobileNetV2's
    depthwise layers against 4×4, 8×1, 8×2 and 16×4 limits)."""
    if anchor == DEPTHWISE_NHWC:
        options = [(rw, ro) for ro in _divisors(vectors) if ro <= 4
                   for rw in _divisors(out_width) if rw <= 16 and rw * ro <= 16]
        return max(options, key=lambda t: (t[0] * t[1], t[1]))
    return conv_tile(out_width, vectors, accumulators)


def nhwc_sketch(sch, conv, anchor: str, *, lanes: int, tile: tuple[int, int] | None = None, decompose: bool = True):
    """Schedule an NHWC conv (``conv2d_nhwc``, or depthwise ``group_conv2d_nhwc``) and its
    epilogue: output channels are contiguous, so vectors run along them in the accumulator,
    the epilogue and the stores alike. Dense: inputs broadcast; convs with a window and more
    than :data:`CHANNEL_CHUNK` input channels reduce in chunks (:func:`_chunked_reduction`,
    weights ``[O/(ro·L), C/chunk, KH, KW, chunk, ro·L]``: a tile's chunk contiguous in reading
    order), the others over the whole reduction per tile (weights ``[O/L, KH, KW, C, L]``). Depthwise:
    weights ``[KH, KW, 1, O]``, inputs loaded as vectors of channels."""
    out = _fold_epilogue(sch, anchor)
    n, yy, xx, ff, ry, rx, rc = sch.get_loops(conv)
    depthwise = anchor == DEPTHWISE_NHWC
    if out is None or int(sch.get(ff).extent) % lanes or (depthwise and int(sch.get(rc).extent) != 1):
        return None
    window, channels = int(sch.get(ry).extent) * int(sch.get(rx).extent), int(sch.get(rc).extent)
    chunked = not depthwise and window > 1 and channels % CHANNEL_CHUNK == 0 and channels > CHANNEL_CHUNK
    pad_per_block = chunked and _strided(sch, yy, ry)
    if depthwise:
        _inline_pad(sch)
    elif not pad_per_block:
        _prepare_pad(sch, lanes)
    weight = sch.cache_read(conv, 1, "global")
    sch.annotate(weight, "meta_schedule.layout_rewrite_preproc", True)
    if depthwise:
        sch.transform_layout(conv, ("read", 1), lambda o, h, w, i: (h, w, i, o))
    sch.set_scope(conv, 0, "local")
    ff_o, ff_r, vec, xx_o, xx_r = _register_tile(sch, ff, xx, lanes, tile)
    if chunked:
        # a tile's weights for a chunk of input channels, contiguous in the order they are read
        width, chunk = int(sch.get(ff_r).extent) * lanes, CHANNEL_CHUNK
        sch.transform_layout(conv, ("read", 1), lambda o, h, w, i: (o // width, i // chunk, h, w, i % chunk, o % width))
        return _chunked_reduction(sch, conv, out, (n, yy, xx_o, xx_r, ff_o, ff_r, vec, ry, rx, rc), chunk,
                                  lanes=lanes, decompose=decompose, pad_per_block=pad_per_block)
    if not depthwise:  # measured: the whole reduction per tile streams best as one stream per vector
        sch.transform_layout(conv, ("read", 1), lambda o, h, w, i: (o // lanes, h, w, i, o % lanes))
    # Unchunked convs (1×1, depthwise, few input channels) split rows, not blocks of output
    # channels, between the cores, whatever their weights weigh: each core then reads the rows
    # it wrote in the layer before. Split by channel blocks (convs over 64 KB of weights were,
    # for weight reuse), a 64→384 expand conv at batch 1 gave each core half the channels of
    # every row, and the depthwise conv after it read half its input from the other core's
    # cache. Measured in turns on the 2-vCPU EPYC VM, whole MobileNetV2 b1: 6.93 → 6.00 ms while
    # the vCPUs' cross-core round trip was slow (~350 ns), within 1% while it was fast (~60 ns);
    # b8 (images already split) and ResNet-18 b1 within 1%.
    _finish_tile(sch, conv, out, outer=(n, yy, ff_o), tile=xx_o,
                 reduction=(ry, rx, rc), registers=(xx_r, ff_r), vector=vec,
                 unrolled=(ry, rx) if depthwise else (), decompose=decompose)
    _vectorize_tail(sch, out, lanes)
    return sch


CHANNEL_CHUNK = 16  # input channels per pass: a 3×3 chunk of a 4-vector tile's weights is 36 KB (L1: 48 KB)
ROW_BLOCK = 7  # output rows that reuse a weight chunk (ResNet-18's sizes all divide by 7)


def _strided(sch, yy, ry) -> bool:
    """Whether the conv whose output-row loop is ``yy`` and window-row loop ``ry`` has a row
    stride above 1 (read off the padded input's height)."""
    pad = _pad_block(sch)
    if pad is None:
        return False
    rows_in = int(sch.get(pad).writes[0].source.shape[1])
    rows_out, kh = int(sch.get(yy).extent), int(sch.get(ry).extent)
    return rows_out > 1 and rows_in - kh >= 2 * (rows_out - 1)


def _pad_in_block(sch, block, lanes: int) -> None:
    """The padded input built inside each parallel block, just the rows the block reads
    (a pad of zero width inlined)."""
    pad = _pad_block(sch)
    if pad is None or _inline_if_empty(sch, pad):
        return
    sch.compute_at(pad, block, preserve_unit_loops=True)
    _vectorize_tail(sch, pad, lanes)


def _chunked_reduction(sch, conv, out, loops, chunk: int, *, lanes: int, decompose: bool, pad_per_block: bool = False):
    """The reduction over input channels in chunks, the way vendor NCHWc kernels run (MLAS):
    for a block of output channels and up to :data:`ROW_BLOCK` rows, each chunk's weights
    (read from L1) sweep every tile of the rows, the accumulators going to memory between
    chunks. Without it a tile streams all its weights from L2 or beyond per ``rw`` outputs —
    ResNet-18's last stage (512 channels, 7×7, 1.2 MB of weights per block of 64 output
    channels) ran at 60–70% of the speed of the earlier stages. Measured on ResNet-18's 3×3
    layers, 2 cores: layer4 +20–40%, the others within noise; 1×1 convs (no window to reuse a
    chunk over) lose, so they keep the whole reduction in registers. The chunk loop carries
    :data:`.prefetch.PREFETCH`: the build makes each row prefetch part of the next chunk.

    ``pad_per_block`` (strided convs): each parallel block builds the padded rows it reads,
    instead of one parallel pass over the whole input before the conv. A stride-2 conv does a
    quarter of the work per input element, so that pass weighs four times more; measured on
    ResNet-18's stride-2 3×3 convs, interleaved: 64→128 @ 56×56 0.55 → 0.46 ms, 128→256 @ 28
    0.55 → 0.52, 256→512 @ 14 unchanged. Stride-1 convs keep the pass: every block of output
    channels would build the same rows again (layer3, four blocks: +5–8%)."""
    n, yy, xx_o, xx_r, ff_o, ff_r, vec, ry, rx, rc = loops
    rc_o, rc_i = sch.split(rc, [None, chunk])
    rows = max(d for d in _divisors(int(sch.get(yy).extent)) if d <= ROW_BLOCK)
    yy_o, yy_i = sch.split(yy, [None, rows])
    sch.reorder(n, ff_o, yy_o, rc_o, yy_i, xx_o, ry, rx, rc_i, xx_r, ff_r, vec)
    sch.annotate(rc_o, PREFETCH, True)
    block = parallel_unrolled(sch, (n, ff_o, yy_o), (xx_r, ff_r), vec)
    sch.reverse_compute_at(out, block, preserve_unit_loops=True)
    if pad_per_block:
        _pad_in_block(sch, block, lanes)
    if decompose:
        sch.decompose_reduction(conv, rc_o)
    _vectorize_tail(sch, out, lanes)
    return sch


ROW_ACCUMULATORS = 20  # NCHW row tiles: independent FMA chains to cover the latency, no spills


def row_sketch(sch, conv, anchor: str, *, decompose: bool = True):
    """Schedule a conv whose output channels do not fill SIMD vectors (depthwise
    ``group_conv2d_nchw`` with one channel per group, or few/odd channel counts): vectors of
    ≤ 16 outputs along a row; dense: up to 10 output channels × rows in registers, at most
    :data:`ROW_ACCUMULATORS` vectors (weights broadcast; LeNet's 20→50 conv: 8 vectors 49 µs,
    10×2 30 µs; 40 spill); depthwise: one channel, the window unrolled; the epilogue per tile."""
    out = _fold_epilogue(sch, anchor)
    n, ff, yy, xx, rc, ry, rx = sch.get_loops(conv)
    if out is None or (anchor == DEPTHWISE and int(sch.get(rc).extent) != 1):
        return None
    _prepare_pad(sch)
    width, channels = int(sch.get(xx).extent), int(sch.get(ff).extent)
    sch.set_scope(conv, 0, "local")
    dense = anchor != DEPTHWISE
    chans = max(d for d in _divisors(channels) if d <= 10) if dense else 1
    lines = max(d for d in _divisors(int(sch.get(yy).extent)) if chans * d <= ROW_ACCUMULATORS) if dense else 1
    ff_o, ff_r = sch.split(ff, [None, chans])
    yy_o, yy_r = sch.split(yy, [None, lines])
    xx_o, xx_v = sch.split(xx, [None, max(d for d in _divisors(width) if d <= 16)])
    return _finish_tile(sch, conv, out, outer=(n, ff_o, yy_o), tile=xx_o, reduction=(rc, ry, rx),
                        registers=(yy_r, ff_r), vector=xx_v, unrolled=() if dense else (ry, rx), decompose=decompose)


def matmul_sketch(sch, block, *, lanes: int = 16, decompose: bool = True):
    """Schedule ``y[i, j] = Σ_k x[i, k]·w[k, j]`` (+ epilogue): a register tile of up to 4 rows
    × ``vecs`` vectors along ``j``; ``w`` re-packed to ``[N/width, K, width]`` (``width`` =
    the tile's columns) so that each tile streams its weights contiguously; ``k`` runs inside
    the tile (small batches are weight-bandwidth bound: one pass over the weights)."""
    loops = sch.get_loops(block)
    if len(loops) != 3:
        return None
    out = _fold_epilogue(sch, MATMUL)
    if out is None:
        return None
    i, j, k = loops
    rows, cols = int(sch.get(i).extent), int(sch.get(j).extent)
    vec = next((v for v in (lanes, 8) if v <= lanes and cols % v == 0), 0) or max(d for d in _divisors(cols) if d <= 16)
    vecs = max(d for d in _divisors(cols // vec) if d <= 8)
    rows_r = max(d for d in _divisors(rows) if d <= 4 and d * vecs <= MAX_ACCUMULATORS)
    width = vec * vecs
    pack_weights(sch, block, lambda kk, jj: (jj // width, kk, jj % width))
    sch.set_scope(block, 0, "local")
    i_o, i_r = sch.split(i, [None, rows_r])
    j_o, j_r, j_v = sch.split(j, [None, vecs, vec])
    # j outside i: all rows use a weight panel while it is in cache
    return _finish_tile(sch, block, out, outer=(j_o,), tile=i_o, reduction=(k,), registers=(i_r, j_r), vector=j_v,
                        decompose=decompose)


def _inline_injective(sch) -> None:
    """Inline every block that can be into its consumers (elementwise chains, broadcasts,
    casts), so that a fused function makes one pass over memory instead of one per operator
    — a quantized residual add is 12 such operators on int64 intermediates. Blocks that
    cannot be inlined (reductions, the function's outputs) stay."""
    from tvm import s_tir

    changed = True
    while changed:
        changed = False
        for block in _root_blocks(sch)[:-1]:
            try:
                sch.compute_inline(block)
                changed = True
            except s_tir.ScheduleError:
                continue


def generic_sketch(sch):
    """Injective blocks inlined into their consumers; then per block: the leading spatial
    loops fused and parallel, a spatial innermost loop vectorised. Blocks where that does
    not apply are left as they are."""
    from tvm import s_tir

    _inline_injective(sch)
    for block in _root_blocks(sch):
        iters = sch.get(block).iter_vars
        loops = sch.get_loops(block)
        if len(loops) != len(iters) or not loops:
            continue
        spatial = [i.iter_type == 0 for i in iters]
        lead = 0
        while lead < len(loops) and spatial[lead]:
            lead += 1
        window = None
        try:
            if all(spatial) and len(loops) > 1 and int(sch.get(loops[-1]).extent) >= 4:
                _vectorize_capped(sch, loops[-1])
                lead -= 1
            elif _is_window(spatial, loops, sch):
                # pooling (NHWC): the channel loop innermost, under the window, vectorised
                window = loops[lead]
                sch.reorder(*loops[lead:], loops[lead - 1])
                _vectorize_capped(sch, loops[lead - 1])
                lead -= 1
            if lead >= 1:
                sch.parallel(sch.fuse(*loops[:lead]) if lead > 1 else loops[0])
            if window is not None:  # after parallel, which wants the reduction whole
                sch.decompose_reduction(block, window)
        except s_tir.ScheduleError:
            continue
    return sch


MAX_VECTOR = 64  # lanes of one vectorised loop: 4 AVX-512 registers of fp32


def _vectorize_capped(sch, loop) -> None:
    """Vectorise ``loop``, or when it is longer than :data:`MAX_VECTOR`, its inner part of the
    longest length ≤ that which divides it (none ≥ 4: left serial). A whole long loop becomes
    one vector of that many lanes: an 800-lane int8 gather (a quantized LeNet's flatten) kept
    LLVM busy for 148 s."""
    extent = int(sch.get(loop).extent)
    if extent > MAX_VECTOR:
        inner = max(d for d in _divisors(extent) if d <= MAX_VECTOR)
        if inner < 4:
            return
        loop = sch.split(loop, [None, inner])[1]
    sch.vectorize(loop)


def _is_window(spatial: list[bool], loops, sch) -> bool:
    """Four spatial loops then only reductions, a last spatial extent worth a vector."""
    return (len(spatial) > 4 and spatial[:4] == [True] * 4 and not any(spatial[4:])
            and int(sch.get(loops[3]).extent) >= 8)


# ----------------------------------------------------------------------------- module level
def _try(func, sketch):
    """Apply ``sketch`` to a Schedule of a copy of ``func``; the Schedule, or None when the
    sketch does not apply."""
    import tvm
    from tvm import s_tir

    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    try:
        if sketch(sch) is None:
            return None
    except s_tir.ScheduleError:
        return None
    return sch


def _block_names(func) -> set[str]:
    import tvm
    from tvm import s_tir

    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    return {_name(sch, b) for b in _root_blocks(sch)}


def schedule_func(func, lanes: int, accumulators: int = NHWC_ACCUMULATORS):
    """The Schedule of ``func`` by the conv, depthwise or matmul sketch, or None when none
    applies; NHWC register tiles of at most ``accumulators`` vectors (:func:`nhwc_accumulators`)."""
    names = _block_names(func)
    for anchor in (CONV_NHWC, DEPTHWISE_NHWC):
        if anchor in names:
            return _try(func, lambda s: _nhwc_default(s, anchor, lanes, accumulators))
    if CONV in names:
        done = _try(func, lambda s: conv_sketch(s, s.get_sblock(CONV), lanes=lanes,
                                                tile=_default_tile(s, lanes)))
        if done is not None:
            return done
    for anchor in (CONV, DEPTHWISE):
        if anchor in names:
            done = _try(func, lambda s: row_sketch(s, s.get_sblock(anchor), anchor))
            if done is not None:
                return done
    if MATMUL in names:
        return _try(func, lambda s: matmul_sketch(s, s.get_sblock(MATMUL), lanes=lanes))
    return None


def _fitting_lanes(channels: int, lanes: int) -> int:
    """The widest vector (``lanes``, 8 or 4, at most ``lanes``) that divides ``channels``; 0 if none."""
    return next((v for v in (lanes, 8, 4) if channels % v == 0 and v <= lanes), 0)


def _nhwc_default(sch, anchor: str, lanes: int, accumulators: int):
    conv = sch.get_sblock(anchor)
    loops = sch.get_loops(conv)
    channels = int(sch.get(loops[3]).extent)
    lanes = _fitting_lanes(channels, lanes)
    if not lanes:
        return None
    tile = nhwc_tiles(anchor, int(sch.get(loops[2]).extent), channels // lanes, accumulators)
    return nhwc_sketch(sch, conv, anchor, lanes=lanes, tile=tile)


def _default_tile(sch, lanes: int) -> tuple[int, int]:
    loops = sch.get_loops(sch.get_sblock(CONV))
    return conv_tile(int(sch.get(loops[3]).extent), max(1, int(sch.get(loops[1]).extent) // lanes))


def generic_schedule(func):
    """:func:`generic_sketch` on a copy of ``func``; the Schedule, or None."""
    return _try(func, generic_sketch)


def window_schedule(func):
    """:func:`generic_sketch` for a pool over NHWC (a block with a reduction window under four
    spatial loops, channels last), or None. Comes before dlight's CPU reduction rule, which
    takes such a pool but runs it on one core: ResNet-18's 3×3/2 max pool (112×112×64) took
    144 µs, ONNX Runtime 86."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    for block in _root_blocks(sch):
        spatial = [i.iter_type == 0 for i in sch.get(block).iter_vars]
        loops = sch.get_loops(block)
        if len(loops) == len(spatial) and _is_window(spatial, loops, sch):
            return generic_schedule(func)
    return None


ANCHORS = (CONV_NHWC, DEPTHWISE_NHWC, CONV)


def _tuning_sketch(sch, block, lanes: int):
    anchor = _name(sch, block)
    lanes = _fitting_lanes(int(sch.get(sch.get_loops(block)[3 if anchor != CONV else 1]).extent), lanes)
    if not lanes:
        return None
    if anchor == CONV:
        return conv_sketch(sch, block, lanes=lanes, decompose=False)
    return nhwc_sketch(sch, block, anchor, lanes=lanes, decompose=False)


def annotate_for_tuning(mod, target):
    """Make the conv sketches MetaSchedule's search space for the functions they schedule:
    the anchor block gets ``schedule_rule = accelc_cpu_conv`` (its register tile is sampled),
    the other blocks ``None`` (the sketch places them), and the function loses its
    layout-free buffers (the sketch packs the weights itself; ``RewriteLayout`` would fight
    it). Functions the sketch cannot take keep MetaSchedule's own rules; those whose default
    schedule packs weights (matmul) lose their layout-free buffers too, because the default
    schedule is replayed from the database as a candidate."""
    import tvm
    from tvm import s_tir, tirx

    from accelc.targets.tvm_backend.irmod import with_functions

    lanes, accumulators = simd_lanes(target), nhwc_accumulators(target)
    register_sketch(lanes)
    updates = {}
    for gv, func in mod.functions.items():
        if not isinstance(func, tirx.PrimFunc) or func.attrs.get("tirx.is_scheduled"):
            continue
        anchor = next((a for a in ANCHORS if a in _block_names(func)), None)
        if anchor is None or _try(func, lambda s: _tuning_sketch(s, s.get_sblock(anchor), lanes)) is None:
            default = schedule_func(func, lanes, accumulators)
            if default is not None and _packs_weights(default) and "layout_free_buffers" in func.attrs:
                # its default schedule (a candidate in the database) packs the weights itself
                updates[gv] = func.without_attr("layout_free_buffers")
            continue
        sch = s_tir.Schedule(tvm.IRModule({"main": func}))
        for block in _root_blocks(sch):
            sch.annotate(block, "schedule_rule", RULE if _name(sch, block) == anchor else "None")
        func = sch.mod["main"]
        updates[gv] = func.without_attr("layout_free_buffers") if "layout_free_buffers" in func.attrs else func
    return with_functions(mod, updates)


def _packs_weights(sch) -> bool:
    return any(sch.get(b).annotations.get("meta_schedule.layout_rewrite_preproc") for b in _root_blocks(sch))


def register_sketch(lanes: int) -> None:
    """Register the sampled conv sketch as MetaSchedule's rule ``accelc_cpu_conv``."""
    import tvm_ffi

    def rule(sch, block):
        done = _tuning_sketch(sch, block, lanes)
        return [done] if done is not None else [sch]

    tvm_ffi.register_global_func(f"s_tir.meta_schedule.cpu.{RULE}", rule, override=True)

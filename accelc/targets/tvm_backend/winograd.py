"""Winograd F(2×2, 3×3) for stride-1 3×3 convolutions on CPU (NHWC).

A 3×3 stride-1 conv computes each ``m×m`` output tile from an ``(m+2)×(m+2)`` input tile.
Winograd's minimal filtering (Lavin & Gray, 2016) does it with ``(m+2)²`` products per
input/output channel pair instead of ``9m²``: the input tile ``d`` and the filter ``g`` are
transformed (``V = Bᵀ d B``, ``U = G g Gᵀ``), multiplied elementwise and summed over input
channels — ``(m+2)²`` independent matrix products ``M[ε,ν] = V[ε,ν] · U[ε,ν]`` — and the
product is transformed back (``Y = Aᵀ M A``). With ``m = 2`` that is 16 products for 36:
2.25× fewer multiply-adds. ResNet-18's stride-1 3×3 convs are ~80% of its FLOPs, and a
direct conv cannot beat ONNX Runtime's MLAS kernels there (accelc's were 4–12% slower).

Each qualifying ``relax.nn.conv2d`` (fp32, NHWC/OHWI, 3×3, stride 1, dilation 1, one group,
static shapes, output channels a multiple of the vector length, at least :data:`MIN_TILES`
tiles) becomes two TE functions: :func:`weight_transform` on the weight — evaluated once at
build time with the other weight transforms (:mod:`.params`), already in the order the
kernel reads it — and :func:`winograd_conv` on the input and the transformed weight. The
latter is marked output-elementwise-fusable like a conv, so the bias, residual and
activation after it fuse into its output transform, and :func:`winograd_sketch` schedules
it: one parallel task per (block of ``ro·16`` output channels, image, rows of tiles) computes
its tiles' input transform, then the 16 products chunk by chunk of input channels as
register tiles (``rw`` tiles × ``ro`` vectors, as the direct conv's), prefetching the next
chunk of weights (:mod:`.prefetch`), then the output transform with the epilogue. The
transform coefficients are Select chains on loops the schedule unrolls, so they fold to the
few additions each output needs (no multiply by 0 or 1 is left; checked in the assembly).

Measured (2 cores, AVX-512, whole ResNet-18 in turns with ONNX Runtime, 7–11 rounds):
batch 1 16.2 → 11.9 ms (ORT 13.3), batch 8 135.8 → 91.9 ms (ORT 98.5); per layer at batch 1
(VM instrument next to ORT's profiler): 56×56×64 0.53 ms (ORT 0.73), 28×28×128 0.57 (0.75).
Why these choices (measured on the isolated layers): tasks ordered by channel block first,
so each core streams only its blocks' weights (14×14×256: 1.55 → 1.22 ms); whole tile rows
per task up to :data:`TASK_TILES` tiles and reductions in :data:`CHUNK`-channel chunks, so a
chunk of one product's weights (16 KB) serves every tile of the task from L1 (batch 8
14×14×256: 12.4 → 7.3 ms); with one chunk the accumulators are a register tile
(``cache_write``), with several a stack buffer that LLVM keeps in registers within a chunk
(accumulating in a heap buffer it reloaded every step: 0.60 → 1.0 ms); weights in task
order plus the prefetch: in the model, where the weights come from memory, 14×14×256 took
0.85–0.93 ms without them. :data:`MIN_TILES`: the transformed weights are 16/9 the size of
the originals, so a layer whose weights are used too few times is bound by reading them —
ResNet-18's 7×7×512 layer at batch 1 (16 tiles) took 2.0 ms, the direct conv 1.1.

Preserves: the convolution up to fp32 rounding. The transforms are exact in real arithmetic
(``test_transforms_compute_a_correlation_exactly``); F(2×2, 3×3)'s constants are 0, ±1 and
±½, and its largest error against a float64 conv is within twice the direct conv's
(``test_error_is_that_of_a_direct_conv``).
"""

from __future__ import annotations

from accelc.targets.tvm_backend.cpu_conv import (
    NHWC_ACCUMULATORS,
    _block_names,
    _divisors,
    _fitting_lanes,
    _fold_epilogue,
    _name,
    _root_blocks,
    _vectorize_tail,
    conv_tile,
    parallel_unrolled,
)
from accelc.targets.tvm_backend.prefetch import PREFETCH

M = 2  # output tile: F(2×2, 3×3)
ALPHA = M + 2
# Lavin & Gray's F(2, 3) matrices: Bᵀ (4×4), G (4×3), Aᵀ (2×4)
BT = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
G = ((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1))
AT = ((1, 1, 1, 0), (0, 1, -1, -1))

CHUNK = 64  # input channels per pass over the tiles: a 64×64 block of one product's weights is 16 KB (L1)
TASK_TILES = 56  # tiles per parallel task at most (whole tile rows): they reuse each weight chunk from L1
MIN_TILES = 32  # tiles per weight at least: each transformed weight (16/9 the size) is reused this often
INPUT, GEMM, OUTPUT = "winograd_input", "winograd_gemm", "winograd_output"
FUNC = "winograd_conv"
OUT_EWISE_FUSABLE = 4  # relay/relax OpPatternKind kOutEWiseFusable (like conv2d)


def _combination(coefficients, values):
    """``Σ cᵢ·vᵢ`` over the non-zero ``cᵢ``, written out (±1 as an addition or subtraction)."""
    expr = None
    for c, v in zip(coefficients, values):
        if c == 0:
            continue
        negative, term = c < 0, v if abs(c) == 1 else v * float(abs(c))
        expr = (-term if negative else term) if expr is None else expr - term if negative else expr + term
    return expr


def _choose(index, options):
    """``options[index]`` for an index loop that the schedule unrolls (a Select chain that
    folds to one option per unrolled iteration)."""
    from tvm import tirx

    expr = options[-1]
    for i in range(len(options) - 2, -1, -1):
        expr = tirx.Select(index == i, options[i], expr)
    return expr


def _two_sided(left, right, value):
    """``(L X Rᵀ)[e, n]`` for constant ``L``, ``R`` and ``X[i][j] = value(i, j)``: a nested list."""
    rows = [[_combination(right_row, [value(i, j) for j in range(len(right_row))]) for right_row in right]
            for i in range(len(left[0]))]
    return [[_combination(left_row, [rows[i][n] for i in range(len(left_row))]) for n in range(len(right))]
            for left_row in left]


def register_tile(tiles_wide: int, k_out: int, lanes: int, accumulators: int = NHWC_ACCUMULATORS) -> tuple[int, int]:
    """``(rw, ro)``: a product's register tile, ``rw`` tiles of a tile row × ``ro`` vectors of
    output channels, at most ``accumulators`` (as the direct NHWC conv's, :func:`.cpu_conv.conv_tile`)."""
    return conv_tile(tiles_wide, k_out // lanes, accumulators)


def chunk_size(c_in: int) -> int:
    """Input channels per pass of a product over the task's tiles: the largest divisor of
    ``c_in`` up to :data:`CHUNK`."""
    return max(d for d in range(1, min(c_in, CHUNK) + 1) if c_in % d == 0)


def weight_transform(w, block: int):
    """``(G g Gᵀ)[ε, ν]`` for the OHWI weight ``w`` (``g = w[k, :, :, c]``) in the order one
    parallel task reads it: ``U[k // block, (ε·4 + ν)·chunks + c // chunk, c % chunk, k % block]``
    (:func:`chunk_size`) — a task's ``block`` output channels one sequential stream, a chunk
    (one product, ``chunk`` input channels) contiguous and indexed by one loop variable, which
    is what :mod:`.prefetch` needs to fetch the next chunk ahead."""
    from tvm import te, tirx

    k_out, _, _, c_in = (int(d) for d in w.shape)
    chunk = chunk_size(c_in)
    chunks = c_in // chunk

    def u(ko, f, ci, ki):
        e, n, c = tirx.floordiv(f, ALPHA * chunks), tirx.floormod(tirx.floordiv(f, chunks), ALPHA), (
            tirx.floormod(f, chunks) * chunk + ci)
        table = _two_sided(G, G, lambda i, j: w[ko * block + ki, i, j, c])
        return _choose(e, [_choose(n, row) for row in table])

    return te.compute((k_out // block, ALPHA * ALPHA * chunks, chunk, block), u, name="winograd_weight")


def tiles(height: int, width: int) -> tuple[int, int]:
    return -(-height // M), -(-width // M)


def winograd_conv(x, u, padding, out_hw):
    """The NHWC conv of ``x`` with the transformed weight ``u`` (:func:`weight_transform`):
    ``padding`` = (top, left), ``out_hw`` = the output's (height, width)."""
    from tvm import te, tirx

    n_batch, height, width, c_in = (int(d) for d in x.shape)
    block, chunk = int(u.shape[3]), int(u.shape[2])
    k_out, chunks = int(u.shape[0]) * block, c_in // chunk
    top, left = padding
    th, tw = tiles(*out_hw)

    def d(n, ty, tx, c, i, j):
        h, w = ty * M + i - top, tx * M + j - left
        inside = tirx.all(h >= 0, h < height, w >= 0, w < width)
        return tirx.if_then_else(inside, x[n, h, w, c], tirx.const(0.0, "float32"))

    def v(e, nu, n, ty, tx, c):
        table = _two_sided(BT, BT, lambda i, j: d(n, ty, tx, c, i, j))
        return _choose(e, [_choose(nu, row) for row in table])

    V = te.compute((ALPHA, ALPHA, n_batch, th, tw, c_in), v, name=INPUT)
    rc = te.reduce_axis((0, c_in), name="rc")

    def product(e, nu, n, ty, tx, k):
        weight = u[k // block, (e * ALPHA + nu) * chunks + rc // chunk, rc % chunk, k % block]
        return te.sum(V[e, nu, n, ty, tx, rc] * weight, axis=rc)

    Mt = te.compute((ALPHA, ALPHA, n_batch, th, tw, k_out), product, name=GEMM)

    def y(n, h, w, k):
        ty, tx = h // M, w // M
        table = _two_sided(AT, AT, lambda a, b: Mt[a, b, n, ty, tx, k])
        return _choose(h % M, [_choose(w % M, row) for row in table])

    return te.compute((n_batch, *out_hw, k_out), y, name=OUTPUT)


# ----------------------------------------------------------------------------- graph rewrite
def _qualifies(call, lanes: int) -> bool:
    from tvm import tirx

    a = call.attrs
    x, w = call.args
    shapes = (x.ty.shape, w.ty.shape, call.ty.shape)
    if any(s is None or not all(isinstance(d, tirx.IntImm) for d in s) for s in shapes):
        return False  # symbolic shapes: the tile counts are unknown
    if (str(call.ty.dtype) != "float32" or str(x.ty.dtype) != "float32" or int(a.groups) != 1
            or (str(a.data_layout), str(a.kernel_layout), str(a.out_layout)) != ("NHWC", "OHWI", "NHWC")
            or [int(s) for s in a.strides] != [1, 1] or [int(d) for d in a.dilation] != [1, 1]):
        return False
    k_out, kh, kw, _ = (int(d) for d in w.ty.shape)
    n_batch, height, width, _ = (int(d) for d in call.ty.shape)
    th, tw = tiles(height, width)
    return (kh, kw) == (3, 3) and k_out % lanes == 0 and n_batch * th * tw >= MIN_TILES


def to_winograd(mod, lanes: int, accumulators: int = NHWC_ACCUMULATORS):
    """``mod`` with every qualifying fp32 NHWC ``conv2d`` on a weight (see the module
    docstring) as :func:`weight_transform` + :func:`winograd_conv`, the weights laid out for
    :func:`winograd_sketch` with the same ``accumulators``."""
    import tvm
    from tvm import relax, tirx

    from accelc.targets.tvm_backend.irmod import (
        from_weights,
        weight_params,
        with_functions,
    )

    conv2d = tvm.ir.Op.get("relax.nn.conv2d")

    @relax.expr_functor.mutator
    class Rewrite(relax.PyExprMutator):
        def __init__(self, mod):
            super().__init__(mod)
            self.weights = set()

        def visit_call_(self, call):
            call = super().visit_call_(call)
            if call.op != conv2d or not _qualifies(call, lanes) or not from_weights(self, call.args[1], self.weights):
                return call
            x, w = call.args
            top, left = int(call.attrs.padding[0]), int(call.attrs.padding[1])
            out_hw = (int(call.ty.shape[1]), int(call.ty.shape[2]))
            _, ro = register_tile(tiles(*out_hw)[1], int(w.ty.shape[0]), lanes, accumulators)
            u = self.builder_.emit(self.builder_.call_te(weight_transform, w, ro * lanes,
                                                         primfunc_name_hint="winograd_weight"))
            return self.builder_.call_te(lambda xt, ut: winograd_conv(xt, ut, (top, left), out_hw), x, u,
                                         primfunc_name_hint=FUNC)

    rewrite = Rewrite(mod)
    for gv, func in mod.functions.items():
        if isinstance(func, relax.Function):
            rewrite.weights = weight_params(func)
            rewrite.builder_.update_func(gv, rewrite.visit_expr(func))
    rewritten = rewrite.builder_.get()
    # like a conv: the elementwise ops after it (bias, residual, activation) fuse into it
    return with_functions(rewritten, {gv: f.with_attr("op_pattern", OUT_EWISE_FUSABLE)
                                      for gv, f in rewritten.functions.items()
                                      if isinstance(f, tirx.PrimFunc) and gv.name_hint.startswith(FUNC)})


def is_winograd(func) -> bool:
    return GEMM in _block_names(func)


# ----------------------------------------------------------------------------- schedule
def winograd_sketch(sch, lanes: int, accumulators: int = NHWC_ACCUMULATORS):
    """Schedule a :func:`winograd_conv` function (and its fused epilogue): one parallel task
    per (block of ``ro·lanes`` output channels, image, rows of tiles — at most
    :data:`TASK_TILES` tiles) computes its tiles' input transform, then the 16 products chunk
    by chunk of input channels (the chunk loop prefetching the next chunk of weights), each
    chunk as register tiles of ``rw`` tiles × ``ro`` vectors, then the output transform with
    the epilogue for its rows and channels. Returns None when the function does not have that
    shape, or its weights were packed for another tile."""
    names = [_name(sch, b) for b in _root_blocks(sch)]
    if INPUT not in names or GEMM not in names:
        return None
    out = _fold_epilogue(sch, GEMM, keep=(INPUT,))  # the output transform and its epilogue: one block
    if out is None:
        return None
    gemm, vin = sch.get_sblock(GEMM), sch.get_sblock(INPUT)
    k_out, c_in, tw = (int(sch.get(loop).extent) for loop in (sch.get_loops(gemm)[i] for i in (5, 6, 4)))
    lanes = _fitting_lanes(k_out, lanes)
    if not lanes:
        return None
    rw, ro = register_tile(tw, k_out, lanes, accumulators)
    weights = [r.source for r in sch.get(gemm).reads if len(r.source.shape) == 4]
    if len(weights) != 1 or int(weights[0].shape[3]) != ro * lanes:
        return None  # weights packed for another tile
    chunk = int(weights[0].shape[2])
    # the task loops come from the output (its rows and columns split into tiles), the
    # products and the input transform are computed inside each task
    n, h, w, k = sch.get_loops(out)
    th = tiles(int(sch.get(h).extent), 1)[0]
    rows = max(r for r in _divisors(th) if r == 1 or r * tw <= TASK_TILES)
    hy, ha = sch.split(h, [None, M])
    hyo, hyr = sch.split(hy, [None, rows])
    wx, wb = sch.split(w, [None, M])
    ko, kr, kv = sch.split(k, [None, ro, lanes])
    sch.reorder(ko, n, hyo, hyr, wx, kr, ha, wb, kv)
    task = parallel_unrolled(sch, (ko, n, hyo), (ha, wb), kv)
    sch.compute_at(gemm, task, preserve_unit_loops=True)
    e, nu, gn, ty, tx, k, rc = sch.get_loops(gemm)[-7:]
    txo, txr = sch.split(tx, [None, rw])
    gkr, gkv = sch.split(k, [None, lanes])
    rco, rci = sch.split(rc, [None, chunk])
    sch.reorder(gn, e, nu, rco, ty, txo, rci, txr, gkr, gkv)
    chunks = sch.fuse(e, nu, rco)
    sch.annotate(chunks, PREFETCH, True)  # each register tile prefetches its share of the next chunk
    tile = sch.fuse(ty, txo)
    one_pass = c_in == chunk
    if one_pass:  # a tile's accumulators live in registers, stored once
        acc = sch.cache_write(gemm, 0, "local")
        sch.reverse_compute_at(acc, tile, preserve_unit_loops=True)
        _vectorize_tail(sch, acc, lanes)
    else:  # a stack buffer: LLVM keeps a tile's accumulators in registers within a chunk
        sch.set_scope(gemm, 0, "local")
    sch.unroll(txr)
    sch.unroll(gkr)
    sch.vectorize(gkv)
    sch.decompose_reduction(gemm, rci if one_pass else chunks)
    # the input transform of the task's tile row: per tile and channel vector, 16 outputs
    sch.compute_at(vin, task, preserve_unit_loops=True)
    ve, vnu, _, _, vtx, vc = sch.get_loops(vin)[-6:]
    c_lanes = _fitting_lanes(c_in, lanes) or 1
    vco, vcv = sch.split(vc, [None, c_lanes])
    sch.reorder(vtx, vco, ve, vnu, vcv)
    sch.unroll(ve)
    sch.unroll(vnu)
    if c_lanes > 1:
        sch.vectorize(vcv)
    return sch

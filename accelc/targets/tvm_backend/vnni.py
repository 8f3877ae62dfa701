"""int8 conv2d/linear on x86 VNNI (``vpdpbusd``), bit-exact with :mod:`accelc.passes.quantize.ops`.

``vpdpbusd`` multiplies *unsigned* bytes by *signed* bytes, four at a time, and adds the sums
into int32 lanes (no saturation). accelc's activations are signed int8 with a zero point, so
the lowering uses the usual offset identity, exact in integers::

    Σ (x − zp)·w  =  Σ (x + 128)·w  −  (128 + zp)·Σ w          x + 128 ∈ [0, 255] (u8)

The second term is a per-output-channel constant folded into the bias (int64). The reference
pads ``x − zp`` with zeros, i.e. pads the u8 tensor with ``128 + zp``, which the correction
term accounts for like any other tap. Channels are padded to the intrinsic's 16×4 block with
zero weights (whatever the activation there, it contributes nothing).

Each layer is one PrimFunc with three blocks:

``vnni_pad``      int8 NCHW → u8 NHWC, spatially padded, channels padded to a multiple of 4
``vnni_acc``      int32 NHWC accumulator, ``Σ u8·s8`` over (kh, kw, c) — tensorized 16×4
``vnni_requant``  ``clip(rshift_round((acc + bias')·mult, shift) + zp)`` → int8 NCHW (int64 inside)

The weights are packed to ``[O/16, KH, KW, C/4, 16, 4]`` (``[N/16, K/4, 16, 4]`` for linear)
by small Relax functions of the parameters only; the compiler evaluates them once at build
time (:mod:`accelc.targets.tvm_backend.params`), so the artifact stores packed weights.

Scheduling: the accumulator block carries ``schedule_rule = accelc_vnni``, so MetaSchedule
calls :func:`vnni_sketch` for it (register tile sizes sampled, the rest fixed); untuned
layers get the same sketch with heuristic tile sizes (:func:`default_schedule`).
MetaSchedule's own x86 rule is not used for these blocks (it vectorises loops around the
intrinsic, which LLVM rejects).
"""

from __future__ import annotations

import functools
from typing import Callable

RULE = "accelc_vnni"
INTRIN = "dot_16x4_vnni"  # registered (and fixed for LLVM ≥ 22) by ms_glue.load_tensor_intrinsics


def target_has_vnni(target) -> bool:
    """AVX512-VNNI is what the 16×4 intrinsic needs (512-bit ``vpdpbusd``). AVX-VNNI-only
    CPUs (256-bit) keep the int32 lowering."""
    import tvm

    if target.kind.name != "llvm":
        return False
    has = tvm.get_global_func("target.target_has_feature")
    return bool(has("avx512vnni", target)) and bool(has("avx512bw", target))


def _ceil(v: int, m: int) -> int:
    return -(-v // m) * m


# ----------------------------------------------------------------------------- TE kernels
def _requant(tirx, acc, bias, mult, half, rshift, lshift, y_zp: int, lo: int, hi: int):
    """arith.requantize of ``acc + bias`` (int32; the reference adds them in int64 — equal
    whenever the sum fits int32, which the int32 reference lowering relies on as well).
    ``int64(int32)·int64(int32)`` lets LLVM use one 32×32→64 multiply per lane."""
    v = (acc + bias).astype("int64") * mult.astype("int64")
    r = tirx.shift_left(tirx.shift_right(v + half, rshift), lshift) + tirx.const(y_zp, "int64")
    return tirx.max(tirx.min(r, tirx.const(hi, "int64")), tirx.const(lo, "int64")).astype("int8")


def conv_te(x, wp, bias, mult, half, rshift, lshift, *, out_channels: int, kernel: tuple[int, int],
            stride: tuple[int, int], padding: tuple[int, int], x_zp: int, y_zp: int, lo: int, hi: int,
            in_layout: str = "NHWC"):
    """int8 ``x`` (``in_layout``) → int8 NHWC output."""
    from tvm import te, tirx

    if in_layout == "NHWC":
        n_, h_, w_, c_ = (int(d) for d in x.shape)
    else:
        n_, c_, h_, w_ = (int(d) for d in x.shape)
    cp = _ceil(c_, 4)
    kh_, kw_ = kernel
    (sh, sw), (ph, pw) = stride, padding
    oh_ = (h_ + 2 * ph - kh_) // sh + 1
    ow_ = (w_ + 2 * pw - kw_) // sw + 1
    op_ = int(wp.shape[0]) * 16
    pad_value = tirx.const(128 + x_zp, "uint8")

    def pad(n, h, w, c):
        inside = tirx.all(h >= ph, h < h_ + ph, w >= pw, w < w_ + pw, c < c_)
        cc = tirx.min(c, c_ - 1)
        v = x[n, h - ph, w - pw, cc] if in_layout == "NHWC" else x[n, cc, h - ph, w - pw]
        v = v.astype("int16") + tirx.const(128, "int16")
        return tirx.if_then_else(inside, v.astype("uint8"), pad_value)

    xp = te.compute((n_, h_ + 2 * ph, w_ + 2 * pw, cp), pad, name="vnni_pad", attrs={"schedule_rule": "None"})
    rkh, rkw, rc = te.reduce_axis((0, kh_), "kh"), te.reduce_axis((0, kw_), "kw"), te.reduce_axis((0, cp), "ic")
    acc = te.compute(
        (n_, oh_, ow_, op_),
        lambda n, oh, ow, oc: te.sum(
            xp[n, oh * sh + rkh, ow * sw + rkw, rc].astype("int32")
            * wp[oc // 16, rkh, rkw, rc // 4, oc % 16, rc % 4].astype("int32"), axis=[rkh, rkw, rc]),
        name="vnni_acc", attrs={"schedule_rule": RULE})
    return te.compute(
        (n_, oh_, ow_, out_channels),
        lambda n, oh, ow, oc: _requant(tirx, acc[n, oh, ow, oc], bias[oc], mult[oc], half[oc], rshift[oc], lshift[oc],
                                       y_zp, lo, hi),
        name="vnni_requant", attrs={"schedule_rule": "None"})


def dense_te(x, wp, bias, mult, half, rshift, lshift, *, out_features: int, x_zp: int, y_zp: int, lo: int, hi: int):
    from tvm import te, tirx

    m_, k_ = (int(d) for d in x.shape)
    kp = int(wp.shape[1]) * 4
    np_ = int(wp.shape[0]) * 16
    pad_value = tirx.const(128 + x_zp, "uint8")
    xp = te.compute(
        (m_, kp),
        lambda m, k: tirx.if_then_else(
            k < k_, (x[m, tirx.min(k, k_ - 1)].astype("int16") + tirx.const(128, "int16")).astype("uint8"), pad_value),
        name="vnni_pad", attrs={"schedule_rule": "None"})
    rk = te.reduce_axis((0, kp), "k")
    acc = te.compute(
        (m_, np_),
        lambda m, n: te.sum(xp[m, rk].astype("int32") * wp[n // 16, rk // 4, n % 16, rk % 4].astype("int32"), axis=rk),
        name="vnni_acc", attrs={"schedule_rule": RULE})
    return te.compute(
        (m_, out_features),
        lambda m, n: _requant(tirx, acc[m, n], bias[n], mult[n], half[n], rshift[n], lshift[n], y_zp, lo, hi),
        name="vnni_requant", attrs={"schedule_rule": "None"})


# ----------------------------------------------------------------------------- parameter packing
def pack_conv_weight_te(w):
    """[O, C, KH, KW] int8 → [O/16, KH, KW, C/4, 16, 4], zero-padded."""
    from tvm import te, tirx

    o_, c_, kh_, kw_ = (int(d) for d in w.shape)
    op_, cp = _ceil(o_, 16), _ceil(c_, 4)

    def f(ob, kh, kw, cb, oi, ci):
        o, c = ob * 16 + oi, cb * 4 + ci
        return tirx.if_then_else(tirx.all(o < o_, c < c_), w[tirx.min(o, o_ - 1), tirx.min(c, c_ - 1), kh, kw],
                                 tirx.const(0, "int8"))

    return te.compute((op_ // 16, kh_, kw_, cp // 4, 16, 4), f, name="vnni_pack_weight")


def pack_dense_weight_te(w):
    """[N, K] int8 → [N/16, K/4, 16, 4], zero-padded."""
    from tvm import te, tirx

    n_, k_ = (int(d) for d in w.shape)
    np_, kp = _ceil(n_, 16), _ceil(k_, 4)

    def f(nb, kb, ni, ki):
        n, k = nb * 16 + ni, kb * 4 + ki
        return tirx.if_then_else(tirx.all(n < n_, k < k_), w[tirx.min(n, n_ - 1), tirx.min(k, k_ - 1)],
                                 tirx.const(0, "int8"))

    return te.compute((np_ // 16, kp // 4, 16, 4), f, name="vnni_pack_weight")


def corrected_bias_te(w, bias, *, x_zp: int, padded: int):
    """``bias − (128 + zp)·Σw`` per output channel as int32 (two's complement: the layer's
    ``acc_u8 + bias'`` equals ``acc + bias`` whenever that fits int32), zero-padded."""
    from tvm import te, tirx

    o_ = int(w.shape[0])
    axes = [te.reduce_axis((0, int(d)), f"r{i}") for i, d in enumerate(w.shape[1:])]
    wsum = te.compute((o_,), lambda o: te.sum(w[(o, *axes)].astype("int64"), axis=axes), name="vnni_wsum")
    return te.compute(
        (padded,),
        lambda o: tirx.if_then_else(
            o < o_, bias[tirx.min(o, o_ - 1)].astype("int64")
            - tirx.const(128 + x_zp, "int64") * wsum[tirx.min(o, o_ - 1)], tirx.const(0, "int64")).astype("int32"),
        name="vnni_bias")


def requant_params_te(mult, shift, *, padded: int):
    """Per channel: int32 multiplier, int64 rounding half ``(1 << n) >> 1``, right shift
    ``max(n, 0)`` and left shift ``max(−n, 0)`` (padded channels: 1, 0, 0, 0)."""
    from tvm import te, tirx

    o_ = int(mult.shape[0])

    def get(t, o, default, f, dtype="int64"):
        return tirx.if_then_else(o < o_, f(t[tirx.min(o, o_ - 1)].astype("int64")), tirx.const(default, "int64")
                                 ).astype(dtype)

    zero, one = tirx.const(0, "int64"), tirx.const(1, "int64")
    right = lambda v: tirx.max(v, zero)  # noqa: E731
    m = te.compute((padded,), lambda o: get(mult, o, 1, lambda v: v, "int32"), name="vnni_mult")
    h = te.compute((padded,), lambda o: get(shift, o, 0, lambda v: tirx.shift_right(tirx.shift_left(one, right(v)), one)),
                   name="vnni_half")
    r = te.compute((padded,), lambda o: get(shift, o, 0, right), name="vnni_rshift")
    s = te.compute((padded,), lambda o: get(shift, o, 0, lambda v: tirx.max(-v, zero)), name="vnni_lshift")
    return m, h, r, s


# ----------------------------------------------------------------------------- schedules
def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _default_tiles(kind: str, extents: dict[str, int]) -> dict[str, int]:
    """Register blocking for the untuned schedule: ≤ 24 zmm accumulators, 4–8 rows wide."""
    if kind == "conv":
        rw = max(d for d in _divisors(extents["ow"]) if d <= 8)
        rc = max(d for d in _divisors(extents["oc"]) if d * rw <= 24 and d <= 4)
        return {"oh": 1, "ow": rw, "oc": rc}
    rm = max(d for d in _divisors(extents["m"]) if d <= 8)
    rn = max(d for d in _divisors(extents["n"]) if d * rm <= 24 and d <= 4)
    return {"m": rm, "n": rn}


def _split(sch, loop, extent: int, max_inner: int, fixed: int | None):
    if fixed is None:
        factors = sch.sample_perfect_tile(loop, n=2, max_innermost_factor=max_inner)
    else:
        factors = [None, fixed]
    return sch.split(loop, factors)


def _vectorize_inner(sch, loop, lanes: int) -> None:
    extent = int(sch.get(loop).extent)
    if extent > lanes and extent % lanes == 0:
        loop = sch.split(loop, [None, lanes])[1]
    sch.vectorize(loop)


def vnni_sketch(sch, block, tiles: dict[str, int] | None = None):
    """Schedule one VNNI layer. ``tiles=None`` samples the register tiles and leaves the
    16×4 block annotated for MetaSchedule's RewriteTensorize postprocessor; with ``tiles``
    (the untuned default) the tiles are fixed and the block is tensorized here. The requant
    epilogue runs per register tile, on the accumulator while it is in cache."""
    loops = sch.get_loops(block)
    fixed = tiles if tiles is not None else {}
    if len(loops) == 7:  # conv: n, oh, ow, oc, kh, kw, ic
        n, oh, ow, oc, kh, kw, ic = loops
        ext = {"oh": int(sch.get(oh).extent), "ow": int(sch.get(ow).extent), "oc": int(sch.get(oc).extent) // 16}
        oc_o, oc_i = sch.split(oc, [None, 16])
        ic_o, ic_i = sch.split(ic, [None, 4])
        oh_o, oh_i = _split(sch, oh, ext["oh"], 2, fixed.get("oh"))
        ow_o, ow_i = _split(sch, ow, ext["ow"], 16, fixed.get("ow"))
        oc_oo, oc_oi = _split(sch, oc_o, ext["oc"], 8, fixed.get("oc"))
        sch.reorder(n, oc_oo, oh_o, ow_o, kh, kw, ic_o, oh_i, ow_i, oc_oi, oc_i, ic_i)
        outer = sch.fuse(n, oc_oo, oh_o)
        tile_loop, first_reduction, unrolled, inner = ow_o, kh, (oh_i, ow_i, oc_oi), oc_i
    else:  # dense: m, n, k
        m, nn, k = loops
        ext = {"m": int(sch.get(m).extent), "n": int(sch.get(nn).extent) // 16}
        n_o, n_i = sch.split(nn, [None, 16])
        k_o, k_i = sch.split(k, [None, 4])
        m_o, m_i = _split(sch, m, ext["m"], 8, fixed.get("m"))
        n_oo, n_oi = _split(sch, n_o, ext["n"], 8, fixed.get("n"))
        sch.reorder(n_oo, m_o, k_o, m_i, n_oi, n_i, k_i)
        outer = sch.fuse(n_oo, m_o)
        tile_loop, first_reduction, unrolled, inner = outer, k_o, (m_i, n_oi), n_i
    sch.parallel(outer)
    for loop in unrolled:
        sch.unroll(loop)
    requant = sch.get_sblock("vnni_requant")
    sch.reverse_compute_at(requant, tile_loop, preserve_unit_loops=True)
    _vectorize_inner(sch, sch.get_loops(requant)[-1], 16)
    pad = sch.get_sblock("vnni_pad")
    pad_loops = sch.get_loops(pad)
    if len(pad_loops) >= 3:
        sch.parallel(sch.fuse(*pad_loops[:-2]))
    _vectorize_inner(sch, pad_loops[-1], 64)
    if tiles is None:
        outer_block = sch.blockize(inner)
        sch.annotate(outer_block, "meta_schedule.auto_tensorize", INTRIN)
    else:
        init = sch.decompose_reduction(block, first_reduction)
        sch.vectorize(sch.get_loops(init)[-1])
        sch.tensorize(inner, INTRIN)
    return sch


FUNC_ATTR = "accelc.vnni"


def is_vnni_func(func) -> bool:
    return bool(func.attrs is not None and func.attrs.get(FUNC_ATTR))


def default_schedule(func):
    """:func:`vnni_sketch` with the heuristic tiles on a copy of the VNNI PrimFunc ``func``;
    the Schedule (its trace replays on the same workload)."""
    import tvm
    from tvm import s_tir

    from accelc.targets.tvm_backend.ms_glue import load_tensor_intrinsics

    load_tensor_intrinsics()
    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    block = sch.get_sblock("vnni_acc")
    loops = sch.get_loops(block)
    if len(loops) == 7:
        tiles = _default_tiles("conv", {"ow": int(sch.get(loops[2]).extent),
                                        "oc": int(sch.get(loops[3]).extent) // 16})
    else:
        tiles = _default_tiles("dense", {"m": int(sch.get(loops[0]).extent),
                                         "n": int(sch.get(loops[1]).extent) // 16})
    vnni_sketch(sch, block, tiles)
    return sch


@functools.lru_cache(maxsize=1)
def register_sketch() -> None:
    """Make :func:`vnni_sketch` MetaSchedule's custom rule ``accelc_vnni`` for CPU targets."""
    import tvm_ffi

    def rule(sch, block):
        return [vnni_sketch(sch, block)]

    tvm_ffi.register_global_func(f"s_tir.meta_schedule.cpu.{RULE}", rule, override=True)


Converter = Callable

"""Relax lowering of accelc's int8 custom ops — integer programs, not dequantize→float.

Each converter reproduces the reference kernel in :mod:`accelc.passes.quantize.ops` exactly:
int32 convolution/matmul accumulation of (x − x_zp)·w, int64 requantization with
``rshift_round`` (add 2ⁿ⁻¹, arithmetic shift; negative n shifts left), clip, cast to int8.
Shifts and multipliers stay runtime tensors (they are weights of the artifact).
"""

from __future__ import annotations

from tvm import relax

from accelc.passes.quantize import ops  # noqa: F401  (the ops must exist for export)
from accelc.targets.tvm_backend.importer import register_converter

op = relax.op


def _emit(importer, expr):
    return importer.block_builder.emit(expr)


def _const(value, dtype):
    return relax.const(value, dtype)


def _per_channel(importer, vec, ndim: int, axis: int):
    shape = [1] * ndim
    shape[axis] = -1
    return _emit(importer, op.reshape(vec, shape)) if ndim > 1 else vec


def rshift_round(importer, v, n):
    """Relax version of arith.rshift_round for int64 ``v`` and int64 shift(s) ``n``."""
    zero = _const(0, "int64")
    pos = _emit(importer, op.maximum(n, zero))
    neg = _emit(importer, op.maximum(op.negative(n), zero))
    half = _emit(importer, op.right_shift(op.left_shift(_const(1, "int64"), pos), _const(1, "int64")))
    r = _emit(importer, op.right_shift(op.add(v, half), pos))
    return _emit(importer, op.left_shift(r, neg))


def requantize(importer, acc64, mult, shift, y_zp: int, lo: int, hi: int):
    v = _emit(importer, op.multiply(acc64, mult))
    r = rshift_round(importer, v, shift)
    r = _emit(importer, op.add(r, _const(y_zp, "int64")))
    r = _emit(importer, op.clip(r, lo, hi))
    return _emit(importer, op.astype(r, "int8"))


def _minus_zp(importer, x, zp: int, dtype: str):
    x = _emit(importer, op.astype(x, dtype))
    return _emit(importer, op.subtract(x, _const(zp, dtype))) if zp else x


@register_converter("quantize.default")
def _quantize(node, importer):
    x, inv_scale, zp, qmin, qmax = importer.env[node.args[0]], *node.args[1:5]
    q = _emit(importer, op.round(op.multiply(x, _const(inv_scale, "float32"))))
    q = _emit(importer, op.add(q, _const(float(zp), "float32")))
    q = _emit(importer, op.clip(q, float(qmin), float(qmax)))
    return _emit(importer, op.astype(q, "int8"))


@register_converter("dequantize.default")
def _dequantize(node, importer):
    q, scale, zp = importer.env[node.args[0]], node.args[1], node.args[2]
    v = _minus_zp(importer, q, zp, "int32")
    return _emit(importer, op.multiply(op.astype(v, "float32"), _const(scale, "float32")))


def _layer_requant(importer, acc32, bias, mult, shift, y_zp, lo, hi, ndim, axis):
    acc = _emit(importer, op.add(acc32, _per_channel(importer, bias, ndim, axis)))
    acc64 = _emit(importer, op.astype(acc, "int64"))
    mult64 = _per_channel(importer, _emit(importer, op.astype(mult, "int64")), ndim, axis)
    shift64 = _per_channel(importer, _emit(importer, op.astype(shift, "int64")), ndim, axis)
    return requantize(importer, acc64, mult64, shift64, y_zp, lo, hi)


@register_converter("qconv2d.default")
def _qconv2d(node, importer):
    env = importer.env
    x, w, bias, mult, shift = (env[a] for a in node.args[:5])
    x_zp, y_zp, lo, hi, stride, padding, groups = node.args[5:12]
    xi = _minus_zp(importer, x, x_zp, "int32")
    wi = _emit(importer, op.astype(w, "int32"))
    acc = _emit(importer, op.nn.conv2d(xi, wi, strides=stride, padding=padding, groups=groups, out_dtype="int32"))
    return _layer_requant(importer, acc, bias, mult, shift, y_zp, lo, hi, 4, 1)


@register_converter("qlinear.default")
def _qlinear(node, importer):
    env = importer.env
    x, w, bias, mult, shift = (env[a] for a in node.args[:5])
    x_zp, y_zp, lo, hi = node.args[5:9]
    xi = _minus_zp(importer, x, x_zp, "int32")
    wt = _emit(importer, op.permute_dims(op.astype(w, "int32"), [1, 0]))
    acc = _emit(importer, op.matmul(xi, wt, out_dtype="int32"))
    ndim = len(node.meta["val"].shape)
    return _layer_requant(importer, acc, bias, mult, shift, y_zp, lo, hi, ndim, ndim - 1)


@register_converter("qadd.default")
def _qadd(node, importer):
    a, b = importer.env[node.args[0]], importer.env[node.args[1]]
    a_zp, a_mult, b_zp, b_mult, shift, y_zp, lo, hi = node.args[2:10]
    av = _emit(importer, op.multiply(_minus_zp(importer, a, a_zp, "int64"), _const(a_mult, "int64")))
    bv = _emit(importer, op.multiply(_minus_zp(importer, b, b_zp, "int64"), _const(b_mult, "int64")))
    acc = _emit(importer, op.add(av, bv))
    return requantize(importer, acc, _const(1, "int64"), _const(shift, "int64"), y_zp, lo, hi)


@register_converter("requantize.default")
def _requantize(node, importer):
    x = importer.env[node.args[0]]
    x_zp, mult, shift, y_zp, lo, hi = node.args[1:7]
    v = _minus_zp(importer, x, x_zp, "int64")
    return requantize(importer, v, _const(mult, "int64"), _const(shift, "int64"), y_zp, lo, hi)


@register_converter("qmax_pool2d.default")
def _qmax_pool2d(node, importer):
    x = importer.env[node.args[0]]
    kernel, stride, padding, ceil_mode = node.args[1:5]
    xi = _emit(importer, op.astype(x, "int32"))
    y = _emit(importer, op.nn.max_pool2d(xi, pool_size=kernel, strides=stride, padding=padding, ceil_mode=ceil_mode))
    return _emit(importer, op.astype(y, "int8"))


@register_converter("qavg_pool2d.default")
def _qavg_pool2d(node, importer):
    x = importer.env[node.args[0]]
    (kh, kw), zp = node.args[1], node.args[2]
    n_, c, h, w = node.args[0].meta["val"].shape
    v = _minus_zp(importer, x, zp, "int64")
    if h % kh or w % kw:
        v = _emit(importer, op.strided_slice(v, axes=[2, 3], begin=[0, 0], end=[h - h % kh, w - w % kw]))
    v = _emit(importer, op.reshape(v, [n_, c, h // kh, kh, w // kw, kw]))
    s = _emit(importer, op.sum(v, axis=[3, 5]))
    count = kh * kw
    q = _emit(importer, op.floor_divide(op.add(op.multiply(s, _const(2, "int64")), _const(count, "int64")),
                                        _const(2 * count, "int64")))
    q = _emit(importer, op.clip(op.add(q, _const(zp, "int64")), -128, 127))
    return _emit(importer, op.astype(q, "int8"))


# ----------------------------------------------------------------------------- x86 VNNI variants
# Same semantics, computed with u8·s8 dot products (see vnni.py for the identity), selected by
# ``custom_converters(int8="vnni")`` for targets with AVX512-VNNI. Grouped convolutions keep
# the int32 lowering above.
#
# Layout: the VNNI layers read and write int8 NHWC (channels innermost, which the dot
# product needs). Each converter that can work on NHWC records its NHWC result per fx node
# and hands the importer an NCHW view (a transpose); consumers that understand NHWC take the
# recorded tensor, the others the view. Views nobody uses are removed by dead-code
# elimination, so a chain conv → add → pool → conv runs without transposes.
_OPAQUE = 8  # relax OpPatternKind.kOpaque: FuseOps leaves these layers alone (they are scheduled as a whole)
_TO_NHWC, _TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]


def _nhwc_table(importer) -> dict:
    table = getattr(importer, "_accelc_nhwc", None)
    if table is None:
        table = importer._accelc_nhwc = {}
    return table


def _nhwc_of(importer, node):
    """The NHWC tensor recorded for ``node``, or None."""
    return _nhwc_table(importer).get(node) if _rank(node) == 4 else None


def _as_nhwc(importer, node):
    known = _nhwc_of(importer, node)
    return known if known is not None else _emit(importer, op.permute_dims(importer.env[node], _TO_NHWC))


def _publish_nhwc(importer, node, y_nhwc):
    """Record ``y_nhwc`` as ``node``'s NHWC value; return the NCHW view for the importer."""
    _nhwc_table(importer)[node] = y_nhwc
    return _emit(importer, op.permute_dims(y_nhwc, _TO_NCHW))


def _rank(node) -> int:
    val = node.meta.get("val") if hasattr(node, "meta") else None
    return len(val.shape) if val is not None else -1


def _vnni_attrs():
    from accelc.targets.tvm_backend import vnni

    return {"op_pattern": _OPAQUE, vnni.FUNC_ATTR: 1}


def _vnni_params(importer, w, bias, mult, shift, x_zp: int, padded: int, pack):
    """Packed weight, corrected bias and requantization vectors: functions of the parameters
    only, evaluated once at build time (params.py)."""
    from accelc.targets.tvm_backend import vnni

    bb = importer.block_builder
    wp = bb.emit_te(pack, w, primfunc_name_hint="vnni_pack_weight")
    b = bb.emit_te(lambda w_, b_: vnni.corrected_bias_te(w_, b_, x_zp=x_zp, padded=padded), w, bias,
                   primfunc_name_hint="vnni_bias")
    vec = bb.emit_te(lambda m_, s_: list(vnni.requant_params_te(m_, s_, padded=padded)), mult, shift,
                     primfunc_name_hint="vnni_requant_params")
    return wp, b, [_emit(importer, relax.TupleGetItem(vec, i)) for i in range(4)]


def vnni_qconv2d(node, importer):
    from accelc.targets.tvm_backend import vnni

    x_zp, y_zp, lo, hi, stride, padding, groups = node.args[5:12]
    if groups != 1:
        return nhwc_grouped_qconv2d(node, importer)
    env, bb = importer.env, importer.block_builder
    w, bias, mult, shift = (env[a] for a in node.args[1:5])
    o_, _c, kh, kw = (int(d) for d in node.args[1].meta["val"].shape)
    known = _nhwc_of(importer, node.args[0])
    x, layout = (known, "NHWC") if known is not None else (env[node.args[0]], "NCHW")
    wp, b, vec = _vnni_params(importer, w, bias, mult, shift, x_zp, -(-o_ // 16) * 16, vnni.pack_conv_weight_te)
    y = bb.emit_te(
        lambda *a: vnni.conv_te(*a, out_channels=o_, kernel=(kh, kw), stride=tuple(stride), padding=tuple(padding),
                                x_zp=x_zp, y_zp=y_zp, lo=lo, hi=hi, in_layout=layout),
        x, wp, b, *vec, primfunc_name_hint="qconv2d_vnni", primfunc_attrs=_vnni_attrs())
    return _publish_nhwc(importer, node, y)


def nhwc_grouped_qconv2d(node, importer):
    """Grouped/depthwise qconv2d (no VNNI kernel: 4-channel dot products do not apply) in the
    NHWC chain: the reference int32 conv of ``x − zp`` with NHWC data and OHWI weights, the
    same requantization along the channel axis (3). Layout does not change integer results."""
    env = importer.env
    w, bias, mult, shift = (env[a] for a in node.args[1:5])
    x_zp, y_zp, lo, hi, stride, padding, groups = node.args[5:12]
    xi = _minus_zp(importer, _as_nhwc(importer, node.args[0]), x_zp, "int32")
    wi = _emit(importer, op.permute_dims(op.astype(w, "int32"), [0, 2, 3, 1]))
    acc = _emit(importer, op.nn.conv2d(xi, wi, strides=stride, padding=padding, groups=groups, data_layout="NHWC",
                                       kernel_layout="OHWI", out_dtype="int32"))
    return _publish_nhwc(importer, node, _layer_requant(importer, acc, bias, mult, shift, y_zp, lo, hi, 4, 3))


def vnni_qlinear(node, importer):
    from accelc.targets.tvm_backend import vnni

    env, bb = importer.env, importer.block_builder
    x, w, bias, mult, shift = (env[a] for a in node.args[:5])
    x_zp, y_zp, lo, hi = node.args[5:9]
    n_, k_ = (int(d) for d in node.args[1].meta["val"].shape)
    in_shape = [int(d) for d in node.args[0].meta["val"].shape]
    if len(in_shape) != 2:
        x = _emit(importer, op.reshape(x, [-1, k_]))
    wp, b, vec = _vnni_params(importer, w, bias, mult, shift, x_zp, -(-n_ // 16) * 16, vnni.pack_dense_weight_te)
    y = bb.emit_te(lambda *a: vnni.dense_te(*a, out_features=n_, x_zp=x_zp, y_zp=y_zp, lo=lo, hi=hi),
                   x, wp, b, *vec, primfunc_name_hint="qlinear_vnni", primfunc_attrs=_vnni_attrs())
    return y if len(in_shape) == 2 else _emit(importer, op.reshape(y, [*in_shape[:-1], n_]))


def nhwc_qadd(node, importer):
    a, b = node.args[0], node.args[1]
    shape_a, shape_b = (tuple(n.meta["val"].shape) if hasattr(n, "meta") else None for n in (a, b))
    if shape_a != shape_b or (_nhwc_of(importer, a) is None and _nhwc_of(importer, b) is None):
        return _qadd(node, importer)
    av, bv = _as_nhwc(importer, a), _as_nhwc(importer, b)
    a_zp, a_mult, b_zp, b_mult, shift, y_zp, lo, hi = node.args[2:10]
    x = _emit(importer, op.multiply(_minus_zp(importer, av, a_zp, "int64"), _const(a_mult, "int64")))
    y = _emit(importer, op.multiply(_minus_zp(importer, bv, b_zp, "int64"), _const(b_mult, "int64")))
    out = requantize(importer, _emit(importer, op.add(x, y)), _const(1, "int64"), _const(shift, "int64"), y_zp, lo, hi)
    return _publish_nhwc(importer, node, out)


def nhwc_requantize(node, importer):
    if _nhwc_of(importer, node.args[0]) is None:
        return _requantize(node, importer)
    x_zp, mult, shift, y_zp, lo, hi = node.args[1:7]
    v = _minus_zp(importer, _as_nhwc(importer, node.args[0]), x_zp, "int64")
    out = requantize(importer, v, _const(mult, "int64"), _const(shift, "int64"), y_zp, lo, hi)
    return _publish_nhwc(importer, node, out)


def nhwc_qmax_pool2d(node, importer):
    if _nhwc_of(importer, node.args[0]) is None:
        return _qmax_pool2d(node, importer)
    kernel, stride, padding, ceil_mode = node.args[1:5]
    y = _emit(importer, op.nn.max_pool2d(_as_nhwc(importer, node.args[0]), pool_size=kernel, strides=stride,
                                         padding=padding, ceil_mode=ceil_mode, layout="NHWC"))
    return _publish_nhwc(importer, node, y)


def nhwc_qavg_pool2d(node, importer):
    if _nhwc_of(importer, node.args[0]) is None:
        return _qavg_pool2d(node, importer)
    (kh, kw), zp = node.args[1], node.args[2]
    n_, c, h, w = node.args[0].meta["val"].shape
    v = _minus_zp(importer, _as_nhwc(importer, node.args[0]), zp, "int64")
    if h % kh or w % kw:
        v = _emit(importer, op.strided_slice(v, axes=[1, 2], begin=[0, 0], end=[h - h % kh, w - w % kw]))
    v = _emit(importer, op.reshape(v, [n_, h // kh, kh, w // kw, kw, c]))
    s = _emit(importer, op.sum(v, axis=[2, 4]))
    count = kh * kw
    q = _emit(importer, op.floor_divide(op.add(op.multiply(s, _const(2, "int64")), _const(count, "int64")),
                                        _const(2 * count, "int64")))
    q = _emit(importer, op.clip(op.add(q, _const(zp, "int64")), -128, 127))
    return _publish_nhwc(importer, node, _emit(importer, op.astype(q, "int8")))


VNNI_CONVERTERS = {"qconv2d.default": vnni_qconv2d, "qlinear.default": vnni_qlinear, "qadd.default": nhwc_qadd,
                   "requantize.default": nhwc_requantize, "qmax_pool2d.default": nhwc_qmax_pool2d,
                   "qavg_pool2d.default": nhwc_qavg_pool2d}

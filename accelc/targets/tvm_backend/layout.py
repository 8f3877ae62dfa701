"""Channels-last (NHWC) activations for CPU convolution chains.

PyTorch graphs arrive NCHW. On a SIMD CPU the natural vector runs along output channels
(weights are re-packed once, inputs broadcast), and with NCHW every conv's result has to be
transposed back when it is stored, and a depthwise conv can only vectorise along rows
(strided loads for stride 2). Relax's ``ConvertLayout`` rewrites the fp32 ``nn.conv2d`` ops
to NHWC/OHWI and carries the layout through the layout-aware ops between them (elementwise,
pooling, reductions), with one transpose at each end of the chain. ``clip`` (ReLU6) has no
layout rule in TVM 0.27, so it is first rewritten as ``minimum(maximum(x, lo), hi)``, which
is exact.

Applied only when every fp32 conv has a multiple of 8 output channels (the vector length of
AVX2; AVX-512 uses 16 where it divides): otherwise the NCHW schedules serve better.
Preserves: values exactly (a layout change and an exact rewrite of clip).
"""

from __future__ import annotations

VECTOR = 8


def _conv_calls(mod):
    import tvm
    from tvm import relax

    conv2d = tvm.ir.Op.get("relax.nn.conv2d")
    calls = []

    def visit(e):
        if isinstance(e, relax.Call) and e.op == conv2d:
            calls.append(e)

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return calls


def wants_nhwc(mod) -> bool:
    calls = _conv_calls(mod)
    if not calls:
        return False
    for call in calls:
        ty = call.ty
        if str(ty.dtype) != "float32" or str(call.attrs.data_layout) != "NCHW" or len(ty.shape) != 4:
            return False
        if int(ty.shape[1]) % VECTOR:
            return False
    return True


def clip_as_min_max(mod):
    """``clip(x, lo, hi)`` → ``minimum(maximum(x, lo), hi)`` in every Relax function."""
    import tvm
    from tvm import relax

    clip = tvm.ir.Op.get("relax.clip")

    @relax.expr_functor.mutator
    class Rewrite(relax.PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if call.op != clip:
                return call
            x, lo, hi = call.args
            dtype = str(call.ty.dtype)
            lo_c = relax.const(float(lo.value), dtype)
            hi_c = relax.const(float(hi.value), dtype)
            return relax.op.minimum(relax.op.maximum(x, lo_c), hi_c)

    rewrite = Rewrite(mod)
    for gv, func in mod.functions.items():
        if isinstance(func, relax.Function):
            rewrite.builder_.update_func(gv, rewrite.visit_expr(func))
    return rewrite.builder_.get()


def to_nhwc(mod):
    """``mod`` with its fp32 conv chains in NHWC (when :func:`wants_nhwc`), else ``mod``."""
    from tvm import relax

    if not wants_nhwc(mod):
        return mod
    mod = clip_as_min_max(mod)
    return relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "OHWI"]})(mod)

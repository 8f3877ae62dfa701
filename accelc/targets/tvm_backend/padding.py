"""Zero-padded output widths for CPU linear layers and NCHW convolutions whose width fills no
SIMD vector.

A matmul's register tile runs vectors along its output columns (:func:`.cpu_conv.matmul_sketch`).
A width that neither the CPU's vector length (16 lanes with AVX-512) nor 8 divides — LeNet's
800→500 layer, any 10-class head — leaves a vector that does not fit: 500 columns ran as
10-lane vectors (an 8- and a 2-lane operation each) at 14 GFLOP/s. Here each such
``matmul(x, w)`` on a weight becomes ``matmul(x, pad(w))[..., :N]``: the weight gets zero
columns up to a multiple of the vector length (evaluated once at build time with the other
weight transforms, :mod:`.params`), and the slice fuses into the matmul's epilogue, so only
the real columns are stored.

An NCHW convolution whose output channels fill no vector is scheduled with vectors along
the output row (:func:`.cpu_conv.row_sketch`); padded to a multiple of the vector length it
gets the channel-vector sketch (:func:`.cpu_conv.conv_sketch`) instead. That pays while the
padding adds at most :data:`CONV_PAD_LIMIT` of the work: LeNet's 20→50 conv at batch 8
(50 → 64 channels) ran 124 µs against 168 µs, at batch 1 23 µs against 22; its 1→20 conv
(→ 32: 1.6× the work) lost at batch 1 (17 µs against 10).

Done on the Relax graph rather than in the TIR schedule because MetaSchedule accepts only a
plain copy as a weight-layout block (``RemoveWeightLayoutRewriteBlock``); a padding one
fails when a tuning candidate is measured.

Preserves: values exactly (each real column's or channel's sum is unchanged; the padding is
computed and dropped).
"""

from __future__ import annotations

from accelc.targets.tvm_backend.irmod import from_weights, weight_params, with_functions

CONV_PAD_LIMIT = 1.3  # padded output channels / real ones, at most


def _sliced(expr, axis: int, size: int):
    """``expr[..., :size, ...]`` along ``axis``."""
    from tvm import relax

    return relax.op.strided_slice(expr, axes=[axis], begin=[0], end=[size])


def pad_output_widths(mod, lanes: int):
    """``mod`` with every fp32 ``matmul(x, w)`` whose ``w`` is computed from weights alone and
    whose width ``N`` neither ``lanes`` nor 8 divides, padded to a multiple of ``lanes``; and
    every fp32 NCHW ``conv2d`` (no groups) on such a weight whose output channels ``lanes``
    does not divide, padded likewise when that adds at most :data:`CONV_PAD_LIMIT` of its work."""
    import tvm
    from tvm import relax

    matmul = tvm.ir.Op.get("relax.matmul")
    conv2d = tvm.ir.Op.get("relax.nn.conv2d")

    @relax.expr_functor.mutator
    class Pad(relax.PyExprMutator):
        def __init__(self, mod, weights):
            super().__init__(mod)
            self.weights = weights

        def _from_weights(self, expr) -> bool:
            return from_weights(self, expr, self.weights)

        def visit_call_(self, call):
            call = super().visit_call_(call)
            if call.op == matmul:
                return self._matmul(call)
            if call.op == conv2d:
                return self._conv2d(call)
            return call

        def _matmul(self, call):
            x, w = call.args
            if str(call.ty.dtype) != "float32" or len(w.ty.shape) != 2:
                return call
            width = int(w.ty.shape[1])
            if width % lanes == 0 or width % 8 == 0 or not self._from_weights(w):
                return call
            padded = relax.op.nn.pad(w, [0, 0, 0, -width % lanes], pad_value=0.0)
            return _sliced(relax.op.matmul(x, padded, out_dtype="float32"), len(call.ty.shape) - 1, width)

        def _conv2d(self, call):
            x, w = call.args
            a = call.attrs
            if (str(call.ty.dtype) != "float32" or int(a.groups) != 1 or str(a.data_layout) != "NCHW"
                    or str(a.kernel_layout) != "OIHW" or str(a.out_layout) != "NCHW"):
                return call
            channels = int(w.ty.shape[0])
            extra = -channels % lanes
            if not extra or (channels + extra) > CONV_PAD_LIMIT * channels or not self._from_weights(w):
                return call
            padded = relax.op.nn.pad(w, [0, extra, 0, 0, 0, 0, 0, 0], pad_value=0.0)
            conv = relax.op.nn.conv2d(x, padded, strides=a.strides, padding=a.padding, dilation=a.dilation,
                                      groups=1, data_layout="NCHW", kernel_layout="OIHW", out_layout="NCHW",
                                      out_dtype="float32")
            return _sliced(conv, 1, channels)

    return with_functions(mod, {gv: Pad(mod, weight_params(func)).visit_expr(func)
                                for gv, func in mod.functions.items() if isinstance(func, relax.Function)})

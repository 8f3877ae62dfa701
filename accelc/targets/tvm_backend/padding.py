"""Zero-padded output widths for CPU linear layers whose width fills no SIMD vector.

A matmul's register tile runs vectors along its output columns (:func:`.cpu_conv.matmul_sketch`).
A width that neither the CPU's vector length (16 lanes with AVX-512) nor 8 divides — LeNet's
800→500 layer, any 10-class head — leaves a vector that does not fit: 500 columns ran as
10-lane vectors (an 8- and a 2-lane operation each) at 14 GFLOP/s. Here each such
``matmul(x, w)`` on a weight becomes ``matmul(x, pad(w))[..., :N]``: the weight gets zero
columns up to a multiple of the vector length (evaluated once at build time with the other
weight transforms, :mod:`.params`), and the slice fuses into the matmul's epilogue, so only
the real columns are stored.

Done on the Relax graph rather than in the TIR schedule because MetaSchedule accepts only a
plain copy as a weight-layout block (``RemoveWeightLayoutRewriteBlock``); a padding one
fails when a tuning candidate is measured.

Preserves: values exactly (each real column's sum is unchanged; the padding columns are
computed and dropped).
"""

from __future__ import annotations

from accelc.targets.tvm_backend.irmod import with_functions


def _weight_params(func) -> set:
    """The parameters of ``func`` that are weights (after its ``num_input`` inputs)."""
    n_inputs = int(func.attrs["num_input"]) if func.attrs is not None and "num_input" in func.attrs else 0
    return set(list(func.params)[n_inputs:])


def pad_linear_widths(mod, lanes: int):
    """``mod`` with every fp32 ``matmul(x, w)`` whose ``w`` is computed from weights alone and
    whose width ``N`` neither ``lanes`` nor 8 divides, padded to a multiple of ``lanes``."""
    import tvm
    from tvm import relax

    matmul = tvm.ir.Op.get("relax.matmul")

    @relax.expr_functor.mutator
    class Pad(relax.PyExprMutator):
        def __init__(self, mod, weights):
            super().__init__(mod)
            self.weights = weights

        def _from_weights(self, expr) -> bool:
            if not isinstance(expr, relax.Var):
                return isinstance(expr, relax.Constant)
            if expr in self.weights:
                return True
            bound = self.lookup_binding(expr)
            return isinstance(bound, relax.Call) and all(self._from_weights(a) for a in bound.args)

        def visit_call_(self, call):
            call = super().visit_call_(call)
            if call.op != matmul or str(call.ty.dtype) != "float32" or len(call.args[1].ty.shape) != 2:
                return call
            x, w = call.args
            width = int(w.ty.shape[1])
            if width % lanes == 0 or width % 8 == 0 or not self._from_weights(w):
                return call
            extra = -width % lanes
            padded = relax.op.nn.pad(w, [0, 0, 0, extra], pad_value=0.0)
            rank = len(call.ty.shape)
            return relax.op.strided_slice(relax.op.matmul(x, padded, out_dtype="float32"),
                                          axes=[rank - 1], begin=[0], end=[width])

    return with_functions(mod, {gv: Pad(mod, _weight_params(func)).visit_expr(func)
                                for gv, func in mod.functions.items() if isinstance(func, relax.Function)})

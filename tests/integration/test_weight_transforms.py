"""Build-time weight transforms (:mod:`accelc.targets.tvm_backend.params`)."""

import numpy as np
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T


@I.ir_module
class AddTransposed:
    @T.prim_func(private=True, s_tir=True)
    def kernel_add(x: T.Buffer((4, 3), "float32"), w: T.Buffer((4, 3), "float32"), y: T.Buffer((4, 3), "float32")):
        for i, j in T.grid(4, 3):
            with T.sblock("add"):
                vi, vj = T.axis.remap("SS", [i, j])
                y[vi, vj] = x[vi, vj] + w[vi, vj]

    @R.function
    def main(x: R.Tensor((4, 3), "float32"), w: R.Tensor((3, 4), "float32")) -> R.Tensor((4, 3), "float32"):
        R.func_attr({"num_input": 1})
        cls = AddTransposed
        with R.dataflow():
            wt = R.permute_dims(w)
            y = R.call_tir(cls.kernel_add, (x, wt), out_ty=R.Tensor((4, 3), "float32"))
            R.output(y)
        return y


def test_weight_transforms_compile_only_what_they_call(monkeypatch):
    """``main(x, w) = kernel_add(x, wᵀ)``: the transform precomputes ``wᵀ``; ``main`` keeps its
    kernel. The transform is compiled for the generic host target, so it must not carry
    ``main``'s kernels along: scheduled kernels (VNNI's AVX-512 intrinsics) make LLVM abort for
    that target (found by the random int8 models test: a process abort, not an exception)."""
    import tvm

    from accelc.targets.tvm_backend.params import TRANSFORM, fold_param_transforms

    compiled = []
    real = tvm.compile

    def spy(mod, *args, **kwargs):
        compiled.append(sorted(gv.name_hint for gv in mod.get_global_vars()))
        return real(mod, *args, **kwargs)

    monkeypatch.setattr(tvm, "compile", spy)
    weight = np.arange(12, dtype=np.float32).reshape(3, 4)
    mod, params = fold_param_transforms(AddTransposed, [weight])
    assert len(compiled) == 1 and TRANSFORM in compiled[0] and "kernel_add" not in compiled[0], compiled
    np.testing.assert_array_equal(params[0], weight.T)
    assert "kernel_add" in {gv.name_hint for gv in mod.get_global_vars()}

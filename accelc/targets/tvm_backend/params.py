"""Weight transforms evaluated at build time ("weight pre-packing").

Everything ``main`` computes from the weights alone — transposes for matmul, the VNNI weight
packing and bias correction, the layouts MetaSchedule's ``RewriteLayout`` asked for — is
lifted by Relax's ``LiftTransformParams`` into ``main_transform_params``, compiled for this
machine, run once on the weights, and dropped from the module: the artifact's
``params.safetensors`` then holds the transformed weights and ``main`` takes them directly.
The result is a pure function of the weights, so it is as deterministic as they are.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

TRANSFORM = "main_transform_params"


def _names(mod) -> set[str]:
    return {gv.name_hint for gv in mod.get_global_vars()}


def fold_param_transforms(mod, params: Sequence[np.ndarray]):
    """Return ``(mod, params)`` with the parameter-only computations of ``main`` precomputed."""
    import tvm
    from tvm import relax

    if not params:
        return mod, list(params)
    lifted = relax.transform.LiftTransformParams()(mod)
    if TRANSFORM not in _names(lifted):
        return mod, list(params)
    # only what the transform calls: ``main``'s own kernels are scheduled for the target (VNNI
    # intrinsics among them) and must not be compiled for the generic host target used here
    transform = tvm.IRModule({gv: f for gv, f in lifted.functions.items() if gv.name_hint != "main"})
    transform = relax.transform.DeadCodeElimination([TRANSFORM])(transform)
    with tvm.transform.PassContext(opt_level=3):
        ex = tvm.compile(transform, target=tvm.target.Target({"kind": "llvm"}))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    out = vm[TRANSFORM]([tvm.runtime.tensor(np.ascontiguousarray(p)) for p in params])
    new_params = [np.ascontiguousarray(o.numpy()) for o in out]
    main = tvm.IRModule({gv: f for gv, f in lifted.functions.items() if gv.name_hint != TRANSFORM},
                        attrs=lifted.attrs, global_infos=lifted.global_infos)
    main = relax.transform.DeadCodeElimination(["main"])(main)
    return main, new_params

"""fx GraphModule → Relax IRModule, through ``torch.export`` and TVM's exported-program frontend.

Parameters are kept as function inputs and detached (``keep_params_as_input``), so the
compiled library holds code only and the weights live in the artifact's tensor file.
Lowering rules for accelc's own ops (e.g. quantized layers) register themselves with
:func:`register_converter`.
"""

from __future__ import annotations

import contextlib
import io
import re
from typing import Callable, Sequence

import numpy as np
import torch
import torch.fx as fx

from accelc.errors import UnsupportedError

_CONVERTERS: dict[str, Callable] = {}


def register_converter(op_name: str):
    """Register a Relax converter ``fn(node, importer) -> relax.Expr`` for an aten/custom op
    named like ``"accelc.qconv2d.default"`` (the key TVM's frontend looks up)."""

    def deco(fn):
        _CONVERTERS[op_name] = fn
        return fn

    return deco


def custom_converters(int8: str = "reference") -> dict[str, Callable]:
    """accelc's converters; ``int8="vnni"`` swaps in the x86 VNNI conv/linear lowering
    (same integer results, see :mod:`accelc.targets.tvm_backend.vnni`)."""
    from accelc.targets.tvm_backend import quantized  # registers the int8 op converters

    converters = dict(_CONVERTERS)
    if int8 == "vnni":
        converters.update(quantized.VNNI_CONVERTERS)
    return converters


def export_graph(gm: fx.GraphModule, example_inputs: Sequence[torch.Tensor]) -> torch.export.ExportedProgram:
    with contextlib.redirect_stderr(io.StringIO()):
        return torch.export.export(gm, tuple(example_inputs), strict=False)


def to_relax(gm: fx.GraphModule, example_inputs: Sequence[torch.Tensor], *, int8: str = "reference"):
    """Return ``(IRModule, params)``: params are numpy arrays in the order ``main`` takes them
    after the user inputs. ``int8`` selects the int8 conv/linear lowering (``reference`` or
    ``vnni``)."""
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    ep = export_graph(gm, example_inputs)
    try:
        mod = from_exported_program(ep, keep_params_as_input=True, custom_convert_map=custom_converters(int8))
    except (AssertionError, KeyError, ValueError, NotImplementedError) as e:
        raise _unsupported_error(e) from e
    mod, params = relax.frontend.detach_params(mod)
    return mod, [p.numpy() for p in params.get("main", [])]


def _unsupported_error(e: Exception) -> UnsupportedError:
    text = str(e)
    m = re.search(r"Unsupported function types? \[?([^\]\n]*)\]?", text)
    ops = m.group(1) if m else text.splitlines()[0] if text else type(e).__name__
    return UnsupportedError(f"TVM's PyTorch frontend cannot lower: {ops}",
                            hint="run `accelc inspect MODEL` to see which node uses it; rewrite it with supported "
                                 "ops, or compile for a target that supports it")


def numpy_params(params) -> list[np.ndarray]:
    return [p if isinstance(p, np.ndarray) else p.numpy() for p in params]

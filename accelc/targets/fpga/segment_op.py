"""An accelerator segment as one graph node: ``torch.ops.accelc.fpga_segment(inputs, name)``.

In PyTorch the op runs the segment's program on the simulator (bit-exact); in the host
library (TVM) it is an external call, ``call_dps_packed("accelc_fpga.<name>")``, to a function
the artifact's runner registers — the simulator here, a VTA driver on a board. Programs are
looked up by segment name in a process-wide registry; names carry a digest of the program
files, so two different programs never share a name.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from accelc.errors import TargetError
from accelc.targets.fpga.lower import NetworkProgram
from accelc.targets.fpga.stats import SimStats

_PROGRAMS: dict[str, NetworkProgram] = {}
LAST_STATS: dict[str, SimStats] = {}
EXTERN_PREFIX = "accelc_fpga."


def segment_name(program: NetworkProgram, index: int) -> str:
    h = hashlib.sha256()
    for name, data in sorted(program.files().items()):
        h.update(name.encode())
        h.update(data)
    return f"seg{index}_{h.hexdigest()[:12]}"


def register(name: str, program: NetworkProgram) -> None:
    _PROGRAMS[name] = program


def run_segment(name: str, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    program = _PROGRAMS.get(name)
    if program is None:
        raise TargetError(f"fpga segment {name} is not loaded in this process")
    outs, stats = program.run(dict(zip(program.inputs, arrays)))
    LAST_STATS[name] = stats
    return [outs[o] for o in program.outputs]


@torch.library.custom_op("accelc::fpga_segment", mutates_args=())
def fpga_segment(inputs: list[Tensor], name: str) -> list[Tensor]:
    return [torch.from_numpy(np.ascontiguousarray(o)) for o in run_segment(name, [t.numpy() for t in inputs])]


@fpga_segment.register_fake
def _(inputs, name):
    program = _PROGRAMS[name]
    return [inputs[0].new_empty(program.tensors[o].shape, dtype=torch.int8) for o in program.outputs]


def register_extern(name: str) -> None:
    """Make the segment callable from a host library (DPS: outputs are preallocated)."""
    import tvm_ffi

    def call(*args):
        program = _PROGRAMS[name]
        n_in = len(program.inputs)
        outs = run_segment(name, [a.numpy() for a in args[:n_in]])
        for dst, value in zip(args[n_in:], outs):
            dst.copyfrom(np.ascontiguousarray(value))

    tvm_ffi.register_global_func(EXTERN_PREFIX + name, call, override=True)


def _relax_converter(node, importer):
    from tvm import relax

    inputs = [importer.env[a] for a in node.args[0]]
    out_ty = [relax.TensorType(list(v.shape), "int8") for v in node.meta["val"]]
    return importer.block_builder.emit(relax.call_dps_packed(EXTERN_PREFIX + node.args[1], inputs, out_ty))


def _register_converter() -> None:
    from accelc.targets.tvm_backend.importer import register_converter

    register_converter("fpga_segment.default")(_relax_converter)


_register_converter()

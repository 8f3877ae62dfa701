"""Running a TVM artifact with the Relax VirtualMachine."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from accelc.errors import ArtifactError
from accelc.targets.base import Runner
from accelc.targets.tvm_backend.build import load_params

ALIGNMENT = 64  # bytes: what TVM's kernels assume of their buffers (from_dlpack checks it)


def _flatten(result) -> list:
    if hasattr(result, "numpy"):
        return [result]
    out = []
    for r in result:
        out.extend(_flatten(r))
    return out


class TVMRunner(Runner):
    """Loads ``lib.so`` once, keeps the weights on the device, runs ``main`` per call."""

    def __init__(self, art_dir: Path, manifest: dict, device):
        import tvm
        from tvm import relax

        super().__init__(manifest)
        self.device = device
        try:
            lib = tvm.runtime.load_module(str(art_dir / manifest["payload"]["library"]))
        except Exception as e:
            raise ArtifactError(f"{art_dir}: cannot load {manifest['payload']['library']}: {str(e).splitlines()[-1]}",
                                hint="the artifact may be for another machine or TVM version; recompile") from e
        self.vm = relax.VirtualMachine(lib, device)
        self.params = [tvm.runtime.tensor(p, device) for p in load_params(art_dir, manifest)]
        self._main = self.vm["main"]
        self._host = device.dlpack_device_type() == tvm.cpu().dlpack_device_type()
        self._staging: list = [None] * len(self.inputs)

    def _device_input(self, i: int, a: np.ndarray):
        """``a`` as a TVM tensor: on the CPU an aligned array is used in place (TVM's kernels
        assume 64-byte alignment); otherwise it is copied into a tensor kept for input ``i``
        (allocating one per call cost ~20 µs, a fifth of LeNet's run)."""
        import tvm

        if self._host and a.ctypes.data % ALIGNMENT == 0 and a.flags.c_contiguous:
            return tvm.runtime.from_dlpack(a)
        if self._staging[i] is None:
            self._staging[i] = tvm.runtime.empty(a.shape, str(a.dtype), self.device)
        self._staging[i].copyfrom(a)
        return self._staging[i]

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        inputs = [self._device_input(i, a) for i, a in enumerate(self.check_inputs(arrays))]
        result = self._main(*inputs, *self.params)
        # copied: an output may alias an input (the staging tensor, reused next call) or a weight
        return [r.numpy() for r in _flatten(result)]

    def time_call(self, arrays: Sequence[np.ndarray], *, number: int = 10, repeat: int = 5) -> list[float]:
        """Per-call seconds measured by TVM's time evaluator (no Python overhead per call)."""
        import tvm

        inputs = [tvm.runtime.tensor(a, self.device) for a in self.check_inputs(arrays)]
        self.vm.set_input("main", *inputs, *self.params)
        timer = self.vm.time_evaluator("invoke_stateful", self.device, number=number, repeat=repeat, min_repeat_ms=0)
        return list(timer("main").results)

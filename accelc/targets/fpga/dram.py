"""DRAM image for the VTA simulator: one numpy array per memory type, in element units.

``dram_base`` fields of LOAD/STORE count elements of their memory type, so each memory
type is its own array whose first axis is the element index:

  INP  int8   [n, BATCH, BLOCK_IN]        WGT  int8   [n, BLOCK_OUT, BLOCK_IN]
  ACC  int32  [n, BATCH, BLOCK_OUT]       OUT  int8   [n, BATCH, BLOCK_OUT]
  UOP  uint32 [n]   (micro-ops packed by :func:`.isa.pack_uops`)

Guarantees: arrays are checked against the config (dtype and element shape) and then held
*by reference* — the simulator reads and writes them in place, so a STORE is visible in the
array the caller passed. The same array may be given for INP and OUT (when BLOCK_IN ==
BLOCK_OUT) to let one layer's output be the next layer's input without a copy.
"""

from __future__ import annotations

import numpy as np

from accelc.errors import TargetError
from accelc.targets.fpga.config import VTAConfig
from accelc.targets.fpga.isa import MemId

#: numpy dtype of one element component, per memory type.
DTYPES: dict[MemId, np.dtype] = {
    MemId.UOP: np.dtype(np.uint32),
    MemId.WGT: np.dtype(np.int8),
    MemId.INP: np.dtype(np.int8),
    MemId.ACC: np.dtype(np.int32),
    MemId.OUT: np.dtype(np.int8),
}


class DramImage:
    """The DRAM regions a VTA program reads (INP, WGT, ACC, UOP) and writes (OUT)."""

    def __init__(
        self,
        config: VTAConfig,
        *,
        inp: np.ndarray | None = None,
        wgt: np.ndarray | None = None,
        acc: np.ndarray | None = None,
        out: np.ndarray | None = None,
        uop: np.ndarray | None = None,
    ):
        self.config = config
        given = {MemId.INP: inp, MemId.WGT: wgt, MemId.ACC: acc, MemId.OUT: out, MemId.UOP: uop}
        self._arrays = {mem: self._checked(mem, array) for mem, array in given.items()}

    @classmethod
    def zeros(cls, config: VTAConfig, *, inp: int = 0, wgt: int = 0, acc: int = 0, out: int = 0,
              uop: int = 0) -> "DramImage":
        """An image with zero-filled regions of the given sizes (in elements)."""
        counts = {MemId.INP: inp, MemId.WGT: wgt, MemId.ACC: acc, MemId.OUT: out, MemId.UOP: uop}
        arrays = {
            mem.name.lower(): np.zeros((n, *config.elem_shape(mem)), DTYPES[mem])
            for mem, n in counts.items()
        }
        return cls(config, **arrays)

    def _checked(self, mem: MemId, array: np.ndarray | None) -> np.ndarray:
        shape = self.config.elem_shape(mem)
        if array is None:
            return np.zeros((0, *shape), DTYPES[mem])
        if not isinstance(array, np.ndarray):
            raise TargetError(f"DRAM {mem.name} region must be a numpy array, not {type(array).__name__}")
        if array.dtype != DTYPES[mem] or array.shape[1:] != shape or array.ndim != 1 + len(shape):
            raise TargetError(
                f"DRAM {mem.name} region must be {DTYPES[mem]} of shape [n, "
                f"{', '.join(map(str, shape))}] for config {self.config.name}, got "
                f"{array.dtype} {list(array.shape)}"
            )
        return array

    def __getitem__(self, mem: MemId) -> np.ndarray:
        return self._arrays[MemId(mem)]

    @property
    def inp(self) -> np.ndarray:
        return self._arrays[MemId.INP]

    @property
    def wgt(self) -> np.ndarray:
        return self._arrays[MemId.WGT]

    @property
    def acc(self) -> np.ndarray:
        return self._arrays[MemId.ACC]

    @property
    def out(self) -> np.ndarray:
        return self._arrays[MemId.OUT]

    @property
    def uop(self) -> np.ndarray:
        return self._arrays[MemId.UOP]

"""The micro-op pool of one layer: kernels (contiguous uop ranges) built once, deduplicated.

A layer loads its whole pool into UOP SRAM at address 0 with one LOAD UOP; GEMM/ALU
instructions refer to kernels by their ``[begin, end)`` range. Kernels are requested by a
key (which fully determines their content) and built vectorised on first request.
:class:`UopOverflow` is raised as soon as the pool outgrows the UOP buffer.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from accelc.errors import TargetError
from accelc.targets.fpga.config import VTAConfig
from accelc.targets.fpga.isa import MemId, pack_uop_fields

Fields = tuple[np.ndarray, np.ndarray, np.ndarray]


class UopOverflow(TargetError):
    """The layer's micro-ops do not fit the UOP buffer (the tiling is infeasible)."""


class UopPool:
    def __init__(self, config: VTAConfig):
        self.capacity = config.depth(MemId.UOP)
        self._ranges: dict[tuple, tuple[int, int]] = {}
        self._words: list[np.ndarray] = []
        self.size = 0

    def kernel(self, key: tuple, build: Callable[[], Fields]) -> tuple[int, int]:
        """The range of kernel ``key``; ``build()`` gives its (dst, src, wgt) index arrays."""
        found = self._ranges.get(key)
        if found is not None:
            return found
        words = pack_uop_fields(*build()).ravel()
        if self.size + words.size > self.capacity:
            raise UopOverflow(f"the layer needs more than {self.capacity} micro-ops")
        found = self._ranges[key] = (self.size, self.size + words.size)
        self._words.append(words)
        self.size += words.size
        return found

    def single(self, dst: int, src: int = 0, wgt: int = 0) -> tuple[int, int]:
        """A one-uop kernel."""
        return self.kernel(("single", dst, src, wgt),
                           lambda: (np.array([dst]), np.array([src]), np.array([wgt])))

    def words(self) -> np.ndarray:
        return np.concatenate(self._words) if self._words else np.zeros(0, np.uint32)

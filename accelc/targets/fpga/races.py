"""Detection of SRAM accesses that VTA's dependency tokens leave unordered.

The load, compute and store modules run concurrently on the hardware; only token chains
order their instructions. A program whose result depends on how the modules happen to
interleave — e.g. a LOAD overwriting an INP half that a GEMM may still be reading, because
the WAR token is missing — gives correct results in a sequential simulator and wrong ones
on the board. :class:`RaceDetector` catches exactly these.

Method (vector clocks, as in dynamic race detectors): each module knows, for every module,
how many of its instructions are guaranteed complete — its own count, joined with the
knowledge carried by every token it pops. An access to an SRAM element conflicts with the
previous access of another module when at least one is a write and the accessing module
does not know that the other's instruction completed. Tracking the last write and the
last read per module of each element suffices, since each module's accesses are in order.
The verdict does not depend on the order in which the simulator interleaves the modules.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from accelc.targets.fpga.config import VTAConfig
from accelc.targets.fpga.datapath import Access, SimulationError
from accelc.targets.fpga.isa import MemId


class RaceDetector:
    """Checks each executed instruction's SRAM accesses against what its module knows."""

    def __init__(
        self,
        config: VTAConfig,
        module_names: Sequence[str],
        module_insns: Sequence[Sequence[int]],
        describe: Callable[[int], str],
    ):
        """``module_insns[m][s - 1]`` is the program index of module ``m``'s ``s``-th
        instruction; ``describe(i)`` renders instruction ``i`` for error messages."""
        self._names = module_names
        self._module_insns = module_insns
        self._describe = describe
        modules = len(module_names)
        self._writer = {mem: np.full(config.depth(mem), -1, np.int8) for mem in MemId}
        self._write_seq = {mem: np.zeros(config.depth(mem), np.int64) for mem in MemId}
        self._read_seq = {mem: np.zeros((modules, config.depth(mem)), np.int64) for mem in MemId}
        self._users: dict[MemId, set[int]] = {mem: set() for mem in MemId}  # modules seen so far

    def check(self, module: int, known: Sequence[int], accesses: Sequence[Access]) -> None:
        """Check, then record, the accesses of ``module``'s next instruction.

        ``known[m]`` = number of module ``m``'s instructions known complete (for ``module``
        itself: those before the current one)."""
        seq = known[module] + 1
        for access in accesses:
            others = self._users[access.mem] - {module}
            if not others:  # e.g. ACC and UOP, which only the compute module touches
                continue
            writer = self._writer[access.mem][access.index]
            write_seq = self._write_seq[access.mem][access.index]
            for other in others:
                other_writes = np.where(writer == other, write_seq, 0)
                self._require_ordered(module, other, known, access, other_writes, "writes")
                if access.write:
                    other_reads = self._read_seq[access.mem][other][access.index]
                    self._require_ordered(module, other, known, access, other_reads, "reads")
        for access in accesses:
            self._users[access.mem].add(module)
            if access.write:
                self._writer[access.mem][access.index] = module
                self._write_seq[access.mem][access.index] = seq
            else:
                self._read_seq[access.mem][module][access.index] = seq

    def _require_ordered(self, module, other, known, access, seqs, other_verb) -> None:
        """``seqs[n]``: the other module's access to ``access.index[n]`` (0 = none)."""
        unordered = seqs > known[other]
        if not unordered.any():
            return
        unordered = np.flatnonzero(unordered)
        n = int(unordered[0])
        earlier = self._module_insns[other][int(seqs[n]) - 1]
        raise SimulationError(
            f"race on {access.mem.name}[{int(access.index[n])}]: this instruction "
            f"({self._names[module]} module) {'writes' if access.write else 'reads'} it, and "
            f"instruction {earlier} `{self._describe(earlier)}` ({self._names[other]} module) "
            f"{other_verb} it, but no dependency token orders the two",
            hint="add a push on the earlier instruction and a matching pop on the later one",
        )

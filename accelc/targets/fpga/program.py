"""A VTA program (instructions + micro-ops) and a small builder for lowerings.

:class:`ProgramBuilder` appends instructions in program order with keyword shorthands
(loop factors as ``(out, in)`` pairs, padding as a 4-tuple) and collects the micro-ops the
program needs in DRAM. It adds no instructions or tokens of its own: what you append is
what runs. Field ranges are checked when each instruction is appended (see :mod:`.isa`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from accelc.targets.fpga.config import VTAConfig
from accelc.targets.fpga.dram import DramImage
from accelc.targets.fpga.isa import (
    AluInsn,
    AluOp,
    FinishInsn,
    GemmInsn,
    Insn,
    MemId,
    MemInsn,
    Opcode,
    Uop,
    pack_uops,
)

Pair = tuple[int, int]


@dataclass
class Program:
    """Instruction stream plus the micro-ops that LOAD UOP instructions read from DRAM."""

    insns: list[Insn] = field(default_factory=list)
    uops: list[Uop] = field(default_factory=list)

    def uop_words(self) -> np.ndarray:
        """The DRAM UOP region: ``uops`` packed as uint32."""
        return pack_uops(self.uops)

    def dram_image(self, config: VTAConfig, *, inp=None, wgt=None, acc=None, out=None) -> DramImage:
        """A :class:`DramImage` holding this program's micro-ops and the given regions."""
        return DramImage(config, inp=inp, wgt=wgt, acc=acc, out=out, uop=self.uop_words())


class ProgramBuilder:
    """Appends instructions in program order; ``**deps`` are the token flags
    ``pop_prev``, ``pop_next``, ``push_prev``, ``push_next``."""

    def __init__(self) -> None:
        self._program = Program()

    def add_uops(self, uops: Iterable[Uop]) -> int:
        """Append micro-ops to the DRAM UOP region; returns the index of the first."""
        first = len(self._program.uops)
        self._program.uops.extend(uops)
        return first

    def append(self, insn: Insn) -> int:
        """Append an instruction; returns its index in the program."""
        self._program.insns.append(insn)
        return len(self._program.insns) - 1

    def load(self, mem: MemId, *, sram: int, dram: int, x: int, y: int = 1, stride: int | None = None,
             pad: tuple[int, int, int, int] = (0, 0, 0, 0), **deps: bool) -> int:
        """LOAD ``y`` rows of ``x`` elements (row stride ``stride``, default ``x``);
        ``pad`` = (y_pad_0, y_pad_1, x_pad_0, x_pad_1)."""
        return self._mem(Opcode.LOAD, mem, sram, dram, x, y, stride, pad, deps)

    def store(self, *, sram: int, dram: int, x: int, y: int = 1, stride: int | None = None,
              **deps: bool) -> int:
        """STORE ``y`` rows of ``x`` OUT elements to DRAM rows ``stride`` apart (default ``x``)."""
        return self._mem(Opcode.STORE, MemId.OUT, sram, dram, x, y, stride, (0, 0, 0, 0), deps)

    def _mem(self, opcode, mem, sram, dram, x, y, stride, pad, deps) -> int:
        y_pad_0, y_pad_1, x_pad_0, x_pad_1 = pad
        return self.append(MemInsn(
            opcode=opcode, mem=mem, sram_base=sram, dram_base=dram, y_size=y, x_size=x,
            x_stride=x if stride is None else stride, y_pad_0=y_pad_0, y_pad_1=y_pad_1,
            x_pad_0=x_pad_0, x_pad_1=x_pad_1, **deps,
        ))

    def gemm(self, *, uops: Pair, iters: Pair = (1, 1), dst: Pair = (0, 0), src: Pair = (0, 0),
             wgt: Pair = (0, 0), reset: bool = False, **deps: bool) -> int:
        """GEMM over SRAM uops ``[uops[0], uops[1])``; factors are ``(out, in)`` pairs."""
        return self.append(GemmInsn(
            reset=reset, uop_bgn=uops[0], uop_end=uops[1], iter_out=iters[0], iter_in=iters[1],
            dst_factor_out=dst[0], dst_factor_in=dst[1], src_factor_out=src[0],
            src_factor_in=src[1], wgt_factor_out=wgt[0], wgt_factor_in=wgt[1], **deps,
        ))

    def alu(self, op: AluOp, *, uops: Pair, iters: Pair = (1, 1), dst: Pair = (0, 0),
            src: Pair = (0, 0), imm: int | None = None, **deps: bool) -> int:
        """ALU ``op``; with ``imm`` the operand is the immediate, otherwise ``ACC[src]``."""
        return self.append(AluInsn(
            alu_op=op, uop_bgn=uops[0], uop_end=uops[1], iter_out=iters[0], iter_in=iters[1],
            dst_factor_out=dst[0], dst_factor_in=dst[1], src_factor_out=src[0],
            src_factor_in=src[1], use_imm=imm is not None, imm=0 if imm is None else imm, **deps,
        ))

    def finish(self, **deps: bool) -> int:
        return self.append(FinishInsn(**deps))

    def build(self) -> Program:
        """The program so far (a copy: the builder can keep appending)."""
        return Program(list(self._program.insns), list(self._program.uops))

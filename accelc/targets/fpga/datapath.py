"""Functional semantics of VTA instructions on the on-chip SRAM buffers (fsim, bit-exact).

:class:`Datapath` owns the INP/WGT/ACC/OUT/UOP scratchpads and executes one instruction at
a time against a :class:`~.dram.DramImage`, following ``shared/reference/vta.md``:

* LOAD copies ``y_size`` rows of ``x_size`` elements (row ``y`` from ``dram_base + y·x_stride``)
  into a zero-padded ``(y_pad_0+y_size+y_pad_1) × (x_pad_0+x_size+x_pad_1)`` block at
  ``sram_base``. ``x_size == 0`` is a no-op. INP and ACC may be padded; WGT and UOP may not;
  OUT cannot be loaded.
* STORE copies ``y_size × x_size`` elements of OUT to DRAM, row by row in order; OUT only,
  no padding.
* GEMM / ALU iterate ``i_out < iter_out``, ``i_in < iter_in``, uop ``k`` in
  ``[uop_bgn, uop_end)`` (k innermost); indices are the uop's plus
  ``i_out·factor_out + i_in·factor_in``. GEMM accumulates in int32 with wraparound;
  ``reset`` writes zeros. ALU computes ``ACC[dst] = op(ACC[dst], imm or ACC[src])`` with
  MIN/MAX (signed), ADD (int32 wraparound), SHR (arithmetic; a negative amount shifts left;
  amounts must lie in -31..31, where VTA's hardware and fsim agree). MUL is rejected.
  Every GEMM/ALU write also sets ``OUT[dst]`` to the low 8 bits of the int32 result.

Order of effects: the result always equals executing the uop-iterations one by one in the
loop order above. GEMM is vectorised (gather, einsum, ``np.add.at``): accumulation into a
repeated ``dst`` is exact because int32 wraparound addition is order-independent. ALU is
vectorised only when that is provably identical — all ``dst`` distinct and no iteration
reads (``src``) an ACC entry that an earlier iteration of the same instruction wrote —
otherwise it runs the iterations sequentially.

Checks (all raise :class:`SimulationError`): SRAM and DRAM bounds of every access (no
wraparound), memory types and padding, and — when ``check_hazards`` — the micro-op hazard
rule: in the expanded iteration sequence of a non-reset GEMM or an ALU, no iteration may
write the ``dst`` written by either of the two previous iterations. (Reset GEMMs only
write constants and have no read-after-write hazard.)

:meth:`Datapath.execute` returns the SRAM :class:`Access` es an instruction made, which the
scheduler uses to detect unsynchronised accesses between modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from accelc.errors import TargetError
from accelc.targets.fpga.dram import DTYPES, DramImage
from accelc.targets.fpga.isa import AluInsn, AluOp, FinishInsn, GemmInsn, Insn, MemId, MemInsn, Opcode, unpack_uops

#: GEMM uop-iterations computed per numpy batch (bounds the gathered weights' memory).
_GEMM_CHUNK = 1 << 15


class SimulationError(TargetError):
    """A VTA program is invalid or does something the simulator cannot reproduce exactly."""


@dataclass(frozen=True)
class Access:
    """Element indices of one SRAM buffer that an instruction read or wrote."""

    mem: MemId
    write: bool
    index: np.ndarray


def _wrap_int32(values: np.ndarray) -> np.ndarray:
    return (np.asarray(values, dtype=np.int64) & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


def _low_byte(values: np.ndarray) -> np.ndarray:
    return (values & 0xFF).astype(np.uint8).view(np.int8)


def _shift(value: np.ndarray, amount: np.ndarray) -> np.ndarray:
    bad = np.abs(amount) > 31
    if np.any(bad):
        raise SimulationError(
            f"ALU SHR by {int(np.asarray(amount)[bad].flat[0])}: shift amounts must lie in "
            "-31..31 (VTA's hardware and functional simulator disagree beyond that)"
        )
    return np.where(amount >= 0, value >> np.maximum(amount, 0), value << np.maximum(-amount, 0))


#: int64 in, int64 out (the caller wraps to int32).
_ALU_FUNCTIONS: dict[AluOp, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    AluOp.MIN: np.minimum,
    AluOp.MAX: np.maximum,
    AluOp.ADD: np.add,
    AluOp.SHR: _shift,
}


def uop_iterations(insn: GemmInsn | AluInsn) -> int:
    """Number of uop-iterations of a GEMM/ALU (0 when the loop nest is empty)."""
    return insn.iter_out * insn.iter_in * max(0, insn.uop_end - insn.uop_bgn)


class Datapath:
    """SRAM state of one VTA core and the execution of single instructions."""

    def __init__(self, dram: DramImage, *, check_hazards: bool = True):
        config = dram.config
        self.config = config
        self.dram = dram
        self.check_hazards = check_hazards
        self.sram = {
            mem: np.zeros((config.depth(mem), *config.elem_shape(mem)), DTYPES[mem]) for mem in MemId
        }

    def execute(self, insn: Insn) -> list[Access]:
        if isinstance(insn, MemInsn):
            return self._load(insn) if insn.opcode is Opcode.LOAD else self._store(insn)
        if isinstance(insn, GemmInsn):
            return self._gemm(insn)
        if isinstance(insn, AluInsn):
            return self._alu(insn)
        if isinstance(insn, FinishInsn):
            return []
        raise SimulationError(f"not a VTA instruction: {insn!r}")

    # ---- bounds ----------------------------------------------------------------------
    def _check_sram(self, mem: MemId, what: str, first: int, stop: int) -> None:
        depth = self.config.depth(mem)
        if first < 0 or stop > depth:
            raise SimulationError(
                f"{what} {mem.name} SRAM elements {first}..{stop - 1}, but the {mem.name} "
                f"buffer has {depth} elements (0..{depth - 1})"
            )

    def _check_dram(self, mem: MemId, what: str, insn: MemInsn) -> None:
        last = insn.dram_base + (insn.y_size - 1) * insn.x_stride + insn.x_size - 1
        size = len(self.dram[mem])
        if insn.y_size and last >= size:
            raise SimulationError(
                f"{what} DRAM {mem.name} elements up to {last}, but the DRAM {mem.name} region "
                f"has {size} elements"
            )

    # ---- LOAD / STORE ----------------------------------------------------------------
    def _load(self, insn: MemInsn) -> list[Access]:
        mem = insn.mem
        if mem is MemId.OUT:
            raise SimulationError("LOAD into OUT is not supported: OUT is written by GEMM/ALU")
        pads = (insn.y_pad_0, insn.y_pad_1, insn.x_pad_0, insn.x_pad_1)
        if mem in (MemId.WGT, MemId.UOP) and any(pads):
            raise SimulationError(f"LOAD {mem.name} takes no padding, got pad={pads}")
        if insn.x_size == 0:
            return []
        self._check_dram(mem, "LOAD reads", insn)
        rows = insn.y_pad_0 + insn.y_size + insn.y_pad_1
        cols = insn.x_pad_0 + insn.x_size + insn.x_pad_1
        count = rows * cols
        self._check_sram(mem, "LOAD writes", insn.sram_base, insn.sram_base + count)
        starts = insn.dram_base + insn.x_stride * np.arange(insn.y_size)
        data = self.dram[mem][starts[:, None] + np.arange(insn.x_size)]
        block = np.zeros((rows, cols, *self.config.elem_shape(mem)), DTYPES[mem])
        block[insn.y_pad_0 : insn.y_pad_0 + insn.y_size, insn.x_pad_0 : insn.x_pad_0 + insn.x_size] = data
        target = np.arange(insn.sram_base, insn.sram_base + count)
        self.sram[mem][target] = block.reshape(count, *block.shape[2:])
        return [Access(mem, True, target)]

    def _store(self, insn: MemInsn) -> list[Access]:
        if insn.mem is not MemId.OUT:
            raise SimulationError(f"STORE supports memory type OUT only, got {insn.mem.name}")
        pads = (insn.y_pad_0, insn.y_pad_1, insn.x_pad_0, insn.x_pad_1)
        if any(pads):
            raise SimulationError(f"STORE takes no padding, got pad={pads}")
        if insn.x_size == 0:
            return []
        self._check_dram(MemId.OUT, "STORE writes", insn)
        count = insn.y_size * insn.x_size
        self._check_sram(MemId.OUT, "STORE reads", insn.sram_base, insn.sram_base + count)
        out, dram = self.sram[MemId.OUT], self.dram[MemId.OUT]
        for y in range(insn.y_size):  # row by row: overlapping rows (x_stride < x_size) keep program order
            src = insn.sram_base + y * insn.x_size
            dst = insn.dram_base + y * insn.x_stride
            dram[dst : dst + insn.x_size] = out[src : src + insn.x_size]
        return [Access(MemId.OUT, False, np.arange(insn.sram_base, insn.sram_base + count))]

    # ---- GEMM / ALU ------------------------------------------------------------------
    def _expand(self, insn: GemmInsn | AluInsn, name: str) -> np.ndarray:
        """Indices of field ``name`` (dst/src/wgt) for every uop-iteration, in loop order.

        Only called for a non-empty loop nest (``uop_bgn < uop_end``, both iters > 0)."""
        self._check_sram(MemId.UOP, f"{insn.opcode.name} reads", insn.uop_bgn, insn.uop_end)
        uops = unpack_uops(self.sram[MemId.UOP][insn.uop_bgn : insn.uop_end])
        base = uops[("dst", "src", "wgt").index(name)]
        out = np.arange(insn.iter_out)[:, None, None] * getattr(insn, f"{name}_factor_out")
        inner = np.arange(insn.iter_in)[None, :, None] * getattr(insn, f"{name}_factor_in")
        return (base[None, None, :] + out + inner).ravel()

    def _uop_access(self, insn: GemmInsn | AluInsn) -> Access:
        return Access(MemId.UOP, False, np.arange(insn.uop_bgn, insn.uop_end))

    def _check_indices(self, insn: GemmInsn | AluInsn, mem: MemId, role: str, index: np.ndarray) -> None:
        depth = self.config.depth(mem)
        if index.size and index.max() >= depth:
            raise SimulationError(
                f"{insn.opcode.name} {role} index reaches {mem.name}[{int(index.max())}], but the "
                f"{mem.name} buffer has {depth} elements"
            )

    def _check_hazard(self, insn: GemmInsn | AluInsn, dst: np.ndarray) -> None:
        if not self.check_hazards:
            return
        clashes = []  # (first offending iteration, lag) per lag
        for lag in (1, 2):
            same = np.flatnonzero(dst[lag:] == dst[:-lag])
            if same.size:
                clashes.append((int(same[0]) + lag, lag))
        if clashes:
            step, lag = min(clashes)
            shape = (insn.iter_out, insn.iter_in, insn.uop_end - insn.uop_bgn)
            i_out, i_in, k = np.unravel_index(step, shape)
            raise SimulationError(
                f"micro-op hazard: iteration (i_out={i_out}, i_in={i_in}, uop {insn.uop_bgn + k}) "
                f"writes ACC[{int(dst[step])}], as did the iteration {lag} step(s) before; "
                "reorder the loops/uops so a dst is not rewritten within two uops"
            )

    def _write_result(self, dst: np.ndarray, values: np.ndarray) -> None:
        self.sram[MemId.ACC][dst] = values
        self.sram[MemId.OUT][dst] = _low_byte(values)

    def _gemm(self, insn: GemmInsn) -> list[Access]:
        if uop_iterations(insn) == 0:
            return []
        dst = self._expand(insn, "dst")
        self._check_indices(insn, MemId.ACC, "dst", dst)
        writes = [Access(MemId.ACC, True, dst), Access(MemId.OUT, True, dst)]
        if insn.reset:
            self._write_result(dst, np.zeros((), np.int32))
            return [self._uop_access(insn)] + writes
        src, wgt = self._expand(insn, "src"), self._expand(insn, "wgt")
        self._check_indices(insn, MemId.INP, "src", src)
        self._check_indices(insn, MemId.WGT, "wgt", wgt)
        self._check_hazard(insn, dst)
        acc, inp, weights = self.sram[MemId.ACC], self.sram[MemId.INP], self.sram[MemId.WGT]
        for start in range(0, dst.size, _GEMM_CHUNK):
            part = slice(start, start + _GEMM_CHUNK)
            products = np.einsum(
                "nbi,noi->nbo", inp[src[part]].astype(np.int32), weights[wgt[part]].astype(np.int32)
            )
            np.add.at(acc, dst[part], products)  # int32 wraparound, order-independent
        touched = np.unique(dst)
        self.sram[MemId.OUT][touched] = _low_byte(acc[touched])
        reads = [self._uop_access(insn), Access(MemId.INP, False, src), Access(MemId.WGT, False, wgt),
                 Access(MemId.ACC, False, dst)]
        return reads + writes

    def _alu(self, insn: AluInsn) -> list[Access]:
        if insn.alu_op not in _ALU_FUNCTIONS:
            raise SimulationError(
                f"ALU {insn.alu_op.name} is not supported: it exists only in VTA's functional "
                "simulator, not in the hardware"
            )
        function = _ALU_FUNCTIONS[insn.alu_op]
        if uop_iterations(insn) == 0:
            return []
        dst = self._expand(insn, "dst")
        self._check_indices(insn, MemId.ACC, "dst", dst)
        self._check_hazard(insn, dst)
        acc = self.sram[MemId.ACC]
        accesses = [self._uop_access(insn), Access(MemId.ACC, False, dst)]
        if insn.use_imm:
            src = None
            operand = np.full((dst.size, 1, 1), insn.imm, np.int64)
        else:
            src = self._expand(insn, "src")
            self._check_indices(insn, MemId.ACC, "src", src)
            accesses.append(Access(MemId.ACC, False, src))
            operand = acc[src].astype(np.int64)
        if self._alu_is_vectorisable(dst, src):
            self._write_result(dst, _wrap_int32(function(acc[dst].astype(np.int64), operand)))
        else:
            for n in range(dst.size):
                rhs = operand[n] if src is None else acc[src[n]].astype(np.int64)
                self._write_result(dst[n], _wrap_int32(function(acc[dst[n]].astype(np.int64), rhs)))
        return accesses + [Access(MemId.ACC, True, dst), Access(MemId.OUT, True, dst)]

    def _alu_is_vectorisable(self, dst: np.ndarray, src: np.ndarray | None) -> bool:
        """True when gather-compute-scatter equals the sequential order (see module doc)."""
        steps = np.arange(dst.size)
        if np.unique(dst).size != dst.size:
            return False
        if src is None:
            return True
        first_write = np.full(self.config.depth(MemId.ACC), dst.size, np.int64)
        first_write[dst] = steps
        return not np.any(first_write[src] < steps)

"""Simulator statistics and the cycle model.

Counters are those of VTA's functional simulator: bytes moved per memory type (payload
only: ``x_size × y_size × element bytes``, padding is not transferred) and
``gemm_counter`` / ``alu_counter`` = uop-iterations of non-reset GEMMs / of ALU ops (one
GEMM uop-iteration is a BATCH×BLOCK_IN×BLOCK_OUT matrix-vector product).

Cycle model (:class:`CycleModel`, constants stated there): each of the load, compute and
store modules has its own clock. An instruction starts when its module is free and every
token it pops has been pushed; it ends ``insn_cycles`` later, and the tokens it pushes carry
that end time. ``total_cycles`` is the latest module clock at the end. Latency is
``total_cycles / clock``; GEMM utilisation is ``gemm_counter / total_cycles`` (1.0 = one
GEMM uop-iteration every cycle, the hardware peak).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from accelc.targets.fpga.config import VTAConfig
from accelc.targets.fpga.datapath import uop_iterations
from accelc.targets.fpga.isa import AluInsn, GemmInsn, Insn, MemId, MemInsn

MODULES = ("load", "compute", "store")


@dataclass(frozen=True)
class CycleModel:
    """Cycles per instruction. The DRAM bandwidth comes from the config.

    * LOAD/STORE moving ``b`` bytes: ``dma_latency_cycles + ceil(b / dram_bytes_per_cycle)``;
      32 cycles approximates an AXI read round trip to the Zynq DDR controller at 100 MHz.
    * GEMM: ``compute_latency_cycles + gemm_cycles_per_op × uop-iterations`` (reset too).
    * ALU: ``compute_latency_cycles + alu_cycles_per_op × uop-iterations``.
    * Anything that moves or computes nothing (``x_size == 0``, empty loops, FINISH):
      ``nop_cycles``.
    """

    dma_latency_cycles: int = 32
    compute_latency_cycles: int = 4
    gemm_cycles_per_op: int = 1
    alu_cycles_per_op: int = 2
    nop_cycles: int = 1

    def insn_cycles(self, insn: Insn, config: VTAConfig) -> int:
        if isinstance(insn, MemInsn):
            nbytes = transfer_bytes(insn, config)
            if nbytes == 0:
                return self.nop_cycles
            return self.dma_latency_cycles + math.ceil(nbytes / config.dram_bytes_per_cycle)
        if isinstance(insn, (GemmInsn, AluInsn)):
            ops = uop_iterations(insn)
            if ops == 0:
                return self.nop_cycles
            per_op = self.gemm_cycles_per_op if isinstance(insn, GemmInsn) else self.alu_cycles_per_op
            return self.compute_latency_cycles + per_op * ops
        return self.nop_cycles


def transfer_bytes(insn: MemInsn, config: VTAConfig) -> int:
    """Payload bytes a LOAD/STORE moves between DRAM and SRAM."""
    return insn.x_size * insn.y_size * config.elem_bytes(insn.mem)


@dataclass
class SimStats:
    """What one simulation did and how long the cycle model says it took."""

    clock_mhz: float
    inp_load_nbytes: int = 0
    wgt_load_nbytes: int = 0
    acc_load_nbytes: int = 0
    uop_load_nbytes: int = 0
    out_store_nbytes: int = 0
    gemm_counter: int = 0
    alu_counter: int = 0
    insn_counter: int = 0
    #: cycles each module spent executing instructions (not waiting for tokens)
    busy_cycles: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MODULES, 0))
    total_cycles: int = 0

    def count(self, insn: Insn, config: VTAConfig) -> None:
        """Add one executed instruction's bytes and operations to the counters."""
        self.insn_counter += 1
        if isinstance(insn, MemInsn):  # the datapath admits LOAD UOP/WGT/INP/ACC, STORE OUT
            attr = {MemId.INP: "inp_load_nbytes", MemId.WGT: "wgt_load_nbytes",
                    MemId.ACC: "acc_load_nbytes", MemId.UOP: "uop_load_nbytes",
                    MemId.OUT: "out_store_nbytes"}[insn.mem]
            setattr(self, attr, getattr(self, attr) + transfer_bytes(insn, config))
        elif isinstance(insn, GemmInsn) and not insn.reset:
            self.gemm_counter += uop_iterations(insn)
        elif isinstance(insn, AluInsn):
            self.alu_counter += uop_iterations(insn)

    @property
    def latency_s(self) -> float:
        return self.total_cycles / (self.clock_mhz * 1e6)

    @property
    def gemm_utilization(self) -> float:
        return self.gemm_counter / self.total_cycles if self.total_cycles else 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(latency_s=self.latency_s, gemm_utilization=self.gemm_utilization)
        return data

"""FPGA target: VTA-style accelerator — configuration, ISA, assembler and simulator.

Modules: :mod:`.config` (VTAConfig), :mod:`.isa` (instructions, binary encoding),
:mod:`.disasm` (text listing and assembler), :mod:`.program` (Program, ProgramBuilder),
:mod:`.dram` (DramImage), :mod:`.sim` (simulate), with :mod:`.datapath` (instruction
semantics), :mod:`.races` (token-ordering checks) and :mod:`.stats` (counters, cycle model).
:mod:`.lower` lowers int8 conv/linear layers and chains of them to programs for it.
"""

from accelc.targets.fpga.config import VTAConfig
from accelc.targets.fpga.datapath import SimulationError
from accelc.targets.fpga.disasm import assemble, assemble_uops, disassemble, disassemble_uops
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
    decode,
    decode_program,
    decode_uops,
    encode,
    encode_program,
    encode_uops,
)
from accelc.targets.fpga.program import Program, ProgramBuilder
from accelc.targets.fpga.sim import simulate
from accelc.targets.fpga.stats import CycleModel, SimStats

__all__ = [
    "AluInsn", "AluOp", "CycleModel", "DramImage", "FinishInsn", "GemmInsn", "Insn", "MemId",
    "MemInsn", "Opcode", "Program", "ProgramBuilder", "SimStats", "SimulationError", "Uop",
    "VTAConfig", "assemble", "assemble_uops", "decode", "decode_program", "decode_uops",
    "disassemble", "disassemble_uops", "encode", "encode_program", "encode_uops", "simulate",
]

"""Hypothesis strategies for VTA instructions, with field widths taken from vta.md (not
from the code under test)."""

from hypothesis import strategies as st

from accelc.targets.fpga.isa import AluInsn, AluOp, FinishInsn, GemmInsn, MemId, MemInsn, Opcode, Uop


def bits(n):
    return st.integers(0, (1 << n) - 1)


FLAGS = dict(pop_prev=st.booleans(), pop_next=st.booleans(), push_prev=st.booleans(),
             push_next=st.booleans())
LOOP = dict(uop_bgn=bits(13), uop_end=bits(14), iter_out=bits(14), iter_in=bits(14),
            dst_factor_out=bits(11), dst_factor_in=bits(11), src_factor_out=bits(11),
            src_factor_in=bits(11))
mem_insns = st.builds(
    MemInsn, opcode=st.sampled_from([Opcode.LOAD, Opcode.STORE]), mem=st.sampled_from(MemId),
    sram_base=bits(16), dram_base=bits(32), y_size=bits(16), x_size=bits(16), x_stride=bits(16),
    y_pad_0=bits(4), y_pad_1=bits(4), x_pad_0=bits(4), x_pad_1=bits(4), **FLAGS)
gemm_insns = st.builds(GemmInsn, reset=st.booleans(), wgt_factor_out=bits(10),
                       wgt_factor_in=bits(10), **LOOP, **FLAGS)
alu_insns = st.builds(AluInsn, alu_op=st.sampled_from(AluOp), use_imm=st.booleans(),
                      imm=st.integers(-(1 << 15), (1 << 15) - 1), **LOOP, **FLAGS)
finish_insns = st.builds(FinishInsn, **FLAGS)
insns = st.one_of(mem_insns, gemm_insns, alu_insns, finish_insns)
uops = st.builds(Uop, dst_idx=bits(11), src_idx=bits(11), wgt_idx=bits(10))

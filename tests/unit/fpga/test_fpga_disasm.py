import pytest
from fpga_strategies import insns, uops
from hypothesis import given
from hypothesis import strategies as st

from accelc.errors import TargetError
from accelc.targets.fpga import AluOp, FinishInsn, GemmInsn, MemId, MemInsn, Opcode
from accelc.targets.fpga.disasm import (
    assemble,
    assemble_uops,
    disassemble,
    disassemble_uops,
    format_insn,
)


@given(st.lists(insns, max_size=10))
def test_disassemble_assemble_round_trip(program):
    assert assemble(disassemble(program)) == program


@given(st.lists(uops, max_size=10))
def test_uop_listing_round_trip(uop_list):
    assert assemble_uops(disassemble_uops(uop_list)) == uop_list


def test_listing_format():
    load = MemInsn(opcode=Opcode.LOAD, mem=MemId.INP, sram_base=0, dram_base=1024, y_size=4,
                   x_size=16, x_stride=28, y_pad_0=1, y_pad_1=1, x_pad_0=1, x_pad_1=1, pop_next=True)
    gemm = GemmInsn(reset=True, uop_bgn=0, uop_end=16, iter_out=4, iter_in=2, dst_factor_out=16,
                    dst_factor_in=1, src_factor_out=18, src_factor_in=1, pop_prev=True,
                    push_next=True)
    text = disassemble([load, gemm, FinishInsn()])
    assert text.splitlines() == [
        "0: LOAD INP sram=0 dram=1024 y=4 x=16 stride=28 pad=(1,1,1,1) | pop_next",
        "1: GEMM reset uop=[0,16) iter=(4,2) dst=(16,1) src=(18,1) wgt=(0,0) | pop_prev push_next",
        "2: FINISH",
    ]


def test_hand_written_text_with_defaults_and_comments():
    program = assemble("""
        # requantize
        ALU SHR uop=[0,4) dst=(0,1) imm=-3    # shift left by 3
        ALU ADD uop=[0,4) src=(1,0) | push_next
        3: FINISH
    """.replace("3:", "2:"))
    assert program[0].alu_op is AluOp.SHR and program[0].use_imm and program[0].imm == -3
    assert program[0].iter_out == 1 and program[0].dst_factor_in == 1
    assert not program[1].use_imm and program[1].push_next and program[1].src_factor_out == 1
    assert format_insn(program[1]) == "ALU ADD uop=[0,4) iter=(1,1) dst=(0,0) src=(1,0) | push_next"


@pytest.mark.parametrize(
    "text, message",
    [
        ("LOAD INP sram=0 dram=0 x=1 stride=1", "missing y="),
        ("LOAD FOO sram=0 dram=0 y=1 x=1 stride=1", "unknown MemId 'FOO'"),
        ("JUMP", "unknown Opcode 'JUMP'"),
        ("GEMM uop=[0,1) bogus=1", "unexpected field"),
        ("GEMM uop=[0,1) | pop_later", "unknown flag"),
        ("FINISH\n5: FINISH", "line 2.*index 5 where 1 was expected"),
        ("GEMM uop=[0,99999)", "uop_end = 99999"),
        ("GEMM uop=[0,1) iter=(1,2,3)", "iter needs 2 values"),
    ],
)
def test_assemble_errors_name_the_line(text, message):
    with pytest.raises(TargetError, match=message):
        assemble(text)

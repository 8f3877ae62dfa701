import numpy as np
import pytest
from fpga_strategies import insns, uops
from hypothesis import given
from hypothesis import strategies as st

from accelc.errors import TargetError
from accelc.targets.fpga.isa import (
    AluInsn,
    AluOp,
    FinishInsn,
    GemmInsn,
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
    pack_uop_fields,
    pack_uops,
    unpack_uops,
)


def as_int(insn) -> int:
    data = encode(insn)
    assert len(data) == 16
    return int.from_bytes(data, "little")


@given(insns)
def test_encode_decode_round_trip(insn):
    assert decode(encode(insn)) == insn


@given(st.lists(insns, max_size=8))
def test_program_round_trip(program):
    data = encode_program(program)
    assert len(data) == 16 * len(program)
    assert decode_program(data) == program


@given(st.lists(uops, max_size=16))
def test_uop_round_trip(uop_list):
    data = encode_uops(uop_list)
    assert len(data) == 4 * len(uop_list)
    assert decode_uops(data) == uop_list
    dst, src, wgt = unpack_uops(pack_uops(uop_list))
    assert [Uop(int(d), int(s), int(w)) for d, s, w in zip(dst, src, wgt)] == uop_list


@given(st.lists(uops, max_size=16))
def test_vectorised_uop_packing_matches(uop_list):
    fields = [np.array([getattr(u, name) for u in uop_list], np.int64) for name in ("dst_idx", "src_idx", "wgt_idx")]
    packed = pack_uop_fields(*fields)
    assert packed.dtype == np.uint32 and packed.tolist() == pack_uops(uop_list).tolist()


def test_vectorised_uop_packing_rejects_out_of_range_fields():
    with pytest.raises(TargetError, match="wgt_idx = 1024 does not fit its 10-bit field"):
        pack_uop_fields([0, 1], [0, 0], [3, 1024])
    with pytest.raises(TargetError, match="dst_idx = -1"):
        pack_uop_fields([-1], 0, 0)


def load(**fields):
    base = dict(opcode=Opcode.LOAD, mem=MemId.INP, sram_base=0, dram_base=0, y_size=0, x_size=0,
                x_stride=0)
    return MemInsn(**{**base, **fields})


def test_memory_instruction_bit_positions():
    assert as_int(load()) == MemId.INP << 7
    assert as_int(load(dram_base=1)) == (MemId.INP << 7) | (1 << 26)
    assert as_int(load(dram_base=0xFFFFFFFF, mem=MemId.UOP)) == ((1 << 32) - 1) << 26
    value = as_int(load(mem=MemId.UOP, x_size=0xABCD))
    assert value == 0xABCD << 80
    assert encode(load(mem=MemId.UOP, x_size=0xABCD))[10:12] == bytes([0xCD, 0xAB])
    assert as_int(load(mem=MemId.UOP, sram_base=0xFFFF)) == 0xFFFF << 10
    assert as_int(load(mem=MemId.UOP, y_size=3, x_stride=5)) == (3 << 64) | (5 << 96)
    assert as_int(load(mem=MemId.UOP, y_pad_0=1, y_pad_1=2, x_pad_0=3, x_pad_1=15)) == (
        (1 << 112) | (2 << 116) | (3 << 120) | (15 << 124))
    store = MemInsn(opcode=Opcode.STORE, mem=MemId.OUT, sram_base=0, dram_base=0, y_size=0,
                    x_size=0, x_stride=0)
    assert as_int(store) == Opcode.STORE | (MemId.OUT << 7)


def test_header_bits():
    assert as_int(FinishInsn()) == 3
    assert as_int(FinishInsn(pop_prev=True)) == 3 | 1 << 3
    assert as_int(FinishInsn(pop_next=True)) == 3 | 1 << 4
    assert as_int(FinishInsn(push_prev=True)) == 3 | 1 << 5
    assert as_int(FinishInsn(push_next=True)) == 3 | 1 << 6
    assert as_int(GemmInsn(uop_bgn=0, uop_end=0, iter_out=0, iter_in=0)) == 2
    assert as_int(AluInsn(alu_op=AluOp.MIN, uop_bgn=0, uop_end=0, iter_out=0, iter_in=0)) == 4


def test_gemm_and_alu_bit_positions():
    gemm = GemmInsn(reset=True, uop_bgn=1, uop_end=2, iter_out=3, iter_in=4, dst_factor_out=5,
                    dst_factor_in=6, src_factor_out=7, src_factor_in=8, wgt_factor_out=9,
                    wgt_factor_in=0x3FF)
    expected = (2 | 1 << 7 | 1 << 8 | 2 << 21 | 3 << 35 | 4 << 49 | 5 << 64 | 6 << 75 | 7 << 86
                | 8 << 97 | 9 << 108 | 0x3FF << 118)
    assert as_int(gemm) == expected
    alu = AluInsn(alu_op=AluOp.SHR, uop_bgn=0, uop_end=0, iter_out=0, iter_in=0, use_imm=True,
                  imm=-1)
    assert as_int(alu) == 4 | 3 << 108 | 1 << 111 | 0xFFFF << 112
    alu = AluInsn(alu_op=AluOp.ADD, uop_bgn=0, uop_end=0, iter_out=0, iter_in=0, use_imm=True,
                  imm=-32768)
    assert as_int(alu) == 4 | 2 << 108 | 1 << 111 | 0x8000 << 112
    assert decode(encode(alu)).imm == -32768


def test_uop_bit_positions():
    assert int.from_bytes(encode_uops([Uop(1, 2, 3)]), "little") == 1 | 2 << 11 | 3 << 22
    assert int.from_bytes(encode_uops([Uop(0x7FF, 0, 0x3FF)]), "little") == 0x7FF | 0x3FF << 22


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: load(x_size=1 << 16), "x_size"),
        (lambda: load(dram_base=1 << 32), "dram_base"),
        (lambda: load(sram_base=-1), "sram_base"),
        (lambda: load(y_pad_0=16), "y_pad_0"),
        (lambda: GemmInsn(uop_bgn=0, uop_end=1 << 14), "uop_end"),
        (lambda: GemmInsn(uop_bgn=1 << 13, uop_end=0), "uop_bgn"),
        (lambda: GemmInsn(uop_bgn=0, uop_end=1, wgt_factor_in=1 << 10), "wgt_factor_in"),
        (lambda: AluInsn(alu_op=AluOp.ADD, uop_bgn=0, uop_end=1, imm=1 << 15), "imm"),
        (lambda: AluInsn(alu_op=AluOp.ADD, uop_bgn=0, uop_end=1, imm=-(1 << 15) - 1), "imm"),
        (lambda: AluInsn(alu_op=7, uop_bgn=0, uop_end=1), "alu_op"),
        (lambda: load(mem=5), "mem"),
        (lambda: load(x_size=1.5), "x_size"),
        (lambda: GemmInsn(uop_bgn=0, uop_end=1, pop_prev=2), "pop_prev"),
        (lambda: Uop(dst_idx=1 << 11), "dst_idx"),
        (lambda: Uop(dst_idx=0, wgt_idx=1 << 10), "wgt_idx"),
    ],
)
def test_out_of_range_fields_raise_naming_the_field(make, field):
    with pytest.raises(TargetError, match=field):
        make()


def test_error_names_instruction():
    with pytest.raises(TargetError, match="LOAD instruction: field x_size = 65536"):
        load(x_size=1 << 16)
    with pytest.raises(TargetError, match="MemInsn: opcode must be LOAD or STORE"):
        load(opcode=Opcode.GEMM)


def test_numpy_integers_are_normalised():
    insn = load(x_size=np.int64(4), dram_base=np.uint32(7))
    assert type(insn.x_size) is int and insn == load(x_size=4, dram_base=7)


def test_decode_rejects_garbage():
    with pytest.raises(TargetError, match="unknown opcode 7"):
        decode((7).to_bytes(16, "little"))
    with pytest.raises(TargetError, match="reserved bits"):
        decode((Opcode.FINISH | 1 << 100).to_bytes(16, "little"))
    with pytest.raises(TargetError, match="reserved bits"):  # ALU has no reset_reg
        decode((Opcode.ALU | 1 << 7).to_bytes(16, "little"))
    with pytest.raises(TargetError, match="mem = 6"):
        decode((6 << 7).to_bytes(16, "little"))
    with pytest.raises(TargetError, match="16 bytes"):
        decode(b"\x00" * 15)
    with pytest.raises(TargetError, match="instruction 1: unknown opcode"):
        decode_program(encode(FinishInsn()) + (6).to_bytes(16, "little"))
    with pytest.raises(TargetError, match="multiple of 4"):
        decode_uops(b"\x00" * 5)


def test_encode_program_names_index():
    with pytest.raises(TargetError, match="instruction 1"):
        encode_program([FinishInsn(), "not an instruction"])

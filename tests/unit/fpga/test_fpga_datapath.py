"""Instruction semantics (datapath) against sequential reference loops and numpy."""

import numpy as np
import pytest
from fpga_programs import reference_execute
from hypothesis import given, settings
from hypothesis import strategies as st

from accelc.targets.fpga import (
    AluInsn,
    AluOp,
    DramImage,
    GemmInsn,
    MemId,
    MemInsn,
    Opcode,
    SimulationError,
    Uop,
    VTAConfig,
)
from accelc.targets.fpga.datapath import Datapath
from accelc.targets.fpga.isa import decode, encode, pack_uops

CONFIG = VTAConfig.default()
INT32 = np.iinfo(np.int32)


def datapath(seed=0, *, acc_range=(INT32.min, INT32.max), check_hazards=False, **dram) -> Datapath:
    """A datapath whose INP/WGT/ACC SRAM holds random data."""
    rng = np.random.default_rng(seed)
    path = Datapath(DramImage.zeros(CONFIG, **dram) if dram else DramImage(CONFIG),
                    check_hazards=check_hazards)
    for mem in (MemId.INP, MemId.WGT):
        path.sram[mem][:] = rng.integers(-128, 128, path.sram[mem].shape)
    path.sram[MemId.ACC][:] = rng.integers(acc_range[0], acc_range[1], path.sram[MemId.ACC].shape,
                                           endpoint=True)
    return path


def set_uops(path: Datapath, uops):
    path.sram[MemId.UOP][: len(uops)] = pack_uops(uops)


def snapshot(path: Datapath) -> dict:
    return {mem: array.copy() for mem, array in path.sram.items()}


def assert_matches_reference(path: Datapath, insn):
    expected = snapshot(path)
    reference_execute(insn, expected)
    path.execute(insn)
    for mem in MemId:
        np.testing.assert_array_equal(path.sram[mem], expected[mem], err_msg=mem.name)


small = st.integers(0, 3)
index = st.integers(0, 40)
uop_lists = st.lists(st.builds(Uop, dst_idx=index, src_idx=index, wgt_idx=index), min_size=1, max_size=4)


@settings(max_examples=40, deadline=None)
@given(uop_lists, small, small, st.lists(st.integers(0, 5), min_size=6, max_size=6), st.booleans(),
       st.integers(0, 1000))
def test_gemm_matches_sequential_reference(uops, iter_out, iter_in, factors, reset, seed):
    path = datapath(seed)
    set_uops(path, uops)
    insn = GemmInsn(reset=reset, uop_bgn=0, uop_end=len(uops), iter_out=iter_out, iter_in=iter_in,
                    dst_factor_out=factors[0], dst_factor_in=factors[1], src_factor_out=factors[2],
                    src_factor_in=factors[3], wgt_factor_out=factors[4], wgt_factor_in=factors[5])
    assert_matches_reference(path, insn)


def test_gemm_equals_numpy_matmul_and_wraps_int32():
    path = datapath(1)
    # dst j, inp row j, weight j: one 1x16 @ 16x16^T per uop, 3 accumulations (iter_out).
    set_uops(path, [Uop(j, j, j) for j in range(8)])
    path.sram[MemId.ACC][:8] = INT32.max - 1000  # accumulating overflows
    inp, wgt = path.sram[MemId.INP][:10].astype(np.int64), path.sram[MemId.WGT][:10].astype(np.int64)
    before = path.sram[MemId.ACC][:8].astype(np.int64)
    path.execute(GemmInsn(uop_bgn=0, uop_end=8, iter_out=3, src_factor_out=1, wgt_factor_out=1))
    products = sum(np.einsum("nbi,noi->nbo", inp[i:i + 8], wgt[i:i + 8]) for i in range(3))
    expected = ((before + products + 2**31) % 2**32 - 2**31).astype(np.int32)
    np.testing.assert_array_equal(path.sram[MemId.ACC][:8], expected)
    assert (path.sram[MemId.ACC][:8].astype(np.int64) != before + products).any()  # it did wrap
    np.testing.assert_array_equal(path.sram[MemId.OUT][:8], expected.astype(np.uint8).view(np.int8))


def test_gemm_reset_zeroes_acc_and_out():
    path = datapath(2)
    set_uops(path, [Uop(5)])
    path.sram[MemId.OUT][5] = 9
    path.execute(GemmInsn(reset=True, uop_bgn=0, uop_end=1, iter_out=2, dst_factor_out=1))
    assert not path.sram[MemId.ACC][5:7].any() and not path.sram[MemId.OUT][5:7].any()


@settings(max_examples=60, deadline=None)
@given(uop_lists, small, small, st.lists(st.integers(0, 5), min_size=4, max_size=4),
       st.sampled_from([AluOp.MIN, AluOp.MAX, AluOp.ADD, AluOp.SHR]), st.booleans(),
       st.integers(-(2**15), 2**15 - 1), st.integers(0, 1000))
def test_alu_matches_sequential_reference(uops, iter_out, iter_in, factors, op, use_imm, imm, seed):
    """Includes repeated dst and src reading an entry written earlier in the instruction."""
    if op is AluOp.SHR:  # shift amounts (imm or ACC values) must lie in -31..31
        imm = imm % 63 - 31
        path = datapath(seed, acc_range=(-31, 31))
        if not use_imm:  # read amounts from a region the instruction does not write
            uops = [Uop(u.dst_idx, u.src_idx + 200, u.wgt_idx) for u in uops]
    else:
        path = datapath(seed)
    set_uops(path, uops)
    insn = AluInsn(alu_op=op, uop_bgn=0, uop_end=len(uops), iter_out=iter_out, iter_in=iter_in,
                   dst_factor_out=factors[0], dst_factor_in=factors[1], src_factor_out=factors[2],
                   src_factor_in=factors[3], use_imm=use_imm, imm=imm)
    assert_matches_reference(path, insn)


def test_alu_chain_reading_own_writes_is_sequential():
    """ACC[k+1] += ACC[k] for k = 0..4 in one instruction: a running (prefix) sum."""
    path = datapath(3)
    path.sram[MemId.ACC][:6] = np.arange(1, 7)[:, None, None]
    set_uops(path, [Uop(dst_idx=1, src_idx=0)])
    path.execute(AluInsn(alu_op=AluOp.ADD, uop_bgn=0, uop_end=1, iter_in=5, dst_factor_in=1,
                         src_factor_in=1))
    assert path.sram[MemId.ACC][:6, 0, 0].tolist() == [1, 3, 6, 10, 15, 21]


def test_alu_repeated_dst_with_immediate_applies_each_time():
    path = datapath(4, acc_range=(0, 0))
    set_uops(path, [Uop(0), Uop(1), Uop(2), Uop(0)])  # dst 0 again, 3 steps later: no hazard
    path.check_hazards = True
    path.execute(AluInsn(alu_op=AluOp.ADD, uop_bgn=0, uop_end=4, use_imm=True, imm=5))
    assert path.sram[MemId.ACC][:3, 0, 0].tolist() == [10, 5, 5]


def test_alu_negative_shift_and_sign_extended_immediate():
    path = datapath(5)
    path.sram[MemId.ACC][0] = np.arange(-8, 8)[None]
    set_uops(path, [Uop(0)])
    shr = decode(encode(AluInsn(alu_op=AluOp.SHR, uop_bgn=0, uop_end=1, use_imm=True, imm=-2)))
    path.execute(shr)
    np.testing.assert_array_equal(path.sram[MemId.ACC][0, 0], np.arange(-8, 8) * 4)
    path.execute(AluInsn(alu_op=AluOp.SHR, uop_bgn=0, uop_end=1, use_imm=True, imm=3))
    np.testing.assert_array_equal(path.sram[MemId.ACC][0, 0], np.arange(-8, 8) // 2)  # arithmetic
    path.execute(decode(encode(AluInsn(alu_op=AluOp.MAX, uop_bgn=0, uop_end=1, use_imm=True,
                                       imm=-1))))
    np.testing.assert_array_equal(path.sram[MemId.ACC][0, 0], np.maximum(np.arange(-8, 8) // 2, -1))
    path.sram[MemId.ACC][1] = INT32.max
    set_uops(path, [Uop(1)])
    path.execute(AluInsn(alu_op=AluOp.ADD, uop_bgn=0, uop_end=1, use_imm=True, imm=1))
    assert (path.sram[MemId.ACC][1] == INT32.min).all()
    assert (path.sram[MemId.OUT][1] == 0).all()  # low 8 bits of 0x80000000


def test_out_holds_low_byte_not_saturated():
    path = datapath(6)
    path.sram[MemId.ACC][0] = np.array([127, 128, 255, 256, -129, 300, -1, 1000] * 2)[None]
    set_uops(path, [Uop(0)])
    path.execute(AluInsn(alu_op=AluOp.ADD, uop_bgn=0, uop_end=1, use_imm=True, imm=0))
    assert path.sram[MemId.OUT][0, 0, :8].tolist() == [127, -128, -1, 0, 127, 44, -1, -24]


@pytest.mark.parametrize("insn, message", [
    (AluInsn(alu_op=AluOp.MUL, uop_bgn=0, uop_end=1, use_imm=True, imm=2), "MUL is not supported"),
    (AluInsn(alu_op=AluOp.SHR, uop_bgn=0, uop_end=1, use_imm=True, imm=32), "-31..31"),
    (AluInsn(alu_op=AluOp.SHR, uop_bgn=0, uop_end=1), "-31..31"),  # ACC[0] as shift amount
    (GemmInsn(uop_bgn=0, uop_end=1, iter_out=2, dst_factor_out=2047), "ACC\\[2048\\]"),
    (GemmInsn(uop_bgn=0, uop_end=1, iter_out=3, src_factor_out=1024), "INP\\[2048\\]"),
    (GemmInsn(uop_bgn=0, uop_end=1, iter_in=3, wgt_factor_in=1000), "WGT\\[2000\\]"),
    (GemmInsn(uop_bgn=8190, uop_end=8200), "UOP SRAM elements 8190..8199"),
])
def test_invalid_compute_instructions(insn, message):
    path = datapath(7)
    path.sram[MemId.ACC][0] = 40
    set_uops(path, [Uop(1)])
    with pytest.raises(SimulationError, match=message):
        path.execute(insn)


def test_empty_loops_are_no_ops():
    path = datapath(8)
    before = snapshot(path)
    for insn in (GemmInsn(uop_bgn=5, uop_end=5), GemmInsn(uop_bgn=0, uop_end=3, iter_out=0),
                 AluInsn(alu_op=AluOp.ADD, uop_bgn=3, uop_end=1, use_imm=True, imm=1)):
        assert path.execute(insn) == []
    for mem in MemId:
        np.testing.assert_array_equal(path.sram[mem], before[mem])


def test_hazard_rule_follows_loop_order():
    path = datapath(9, check_hazards=True)
    set_uops(path, [Uop(0), Uop(1), Uop(2)])
    path.execute(GemmInsn(uop_bgn=0, uop_end=3, iter_out=4))  # 0 1 2 0 1 2 ...: fine
    with pytest.raises(SimulationError, match=r"hazard.*i_out=1, i_in=0, uop 0.*2 step"):
        path.execute(GemmInsn(uop_bgn=0, uop_end=2, iter_out=2))  # 0 1 0 1
    with pytest.raises(SimulationError, match=r"hazard.*i_out=0, i_in=1, uop 0.*1 step"):
        path.execute(AluInsn(alu_op=AluOp.ADD, uop_bgn=0, uop_end=1, iter_in=2, use_imm=True))
    path.execute(GemmInsn(reset=True, uop_bgn=0, uop_end=1, iter_in=2))  # reset: no hazard
    path.check_hazards = False
    path.execute(GemmInsn(uop_bgn=0, uop_end=2, iter_out=2))


def mem_insn(opcode=Opcode.LOAD, mem=MemId.INP, **fields):
    base = dict(sram_base=0, dram_base=0, y_size=1, x_size=1, x_stride=1)
    return MemInsn(opcode=opcode, mem=mem, **{**base, **fields})


def test_load_with_padding_and_stride():
    path = datapath(10, inp=40)
    path.dram.inp[:] = np.arange(40, dtype=np.int8)[:, None, None]
    path.sram[MemId.INP][:] = 99
    accesses = path.execute(mem_insn(sram_base=3, dram_base=2, y_size=2, x_size=3, x_stride=10,
                                     y_pad_0=1, y_pad_1=0, x_pad_0=2, x_pad_1=1))
    block = path.sram[MemId.INP][3:3 + 3 * 6, 0, 0].reshape(3, 6)
    assert block.tolist() == [[0] * 6, [0, 0, 2, 3, 4, 0], [0, 0, 12, 13, 14, 0]]
    assert (path.sram[MemId.INP][:3] == 99).all() and (path.sram[MemId.INP][21:] == 99).all()
    assert accesses[0].write and accesses[0].index.tolist() == list(range(3, 21))
    assert path.execute(mem_insn(x_size=0, y_pad_0=3, sram_base=0)) == []  # x_size 0: no-op
    assert (path.sram[MemId.INP][:3] == 99).all()


def test_load_other_memories():
    path = datapath(11, wgt=2, acc=3, uop=4)
    path.dram.wgt[:] = 7
    path.dram.acc[:] = -(2**31)
    path.dram.uop[:] = [1, 2, 3, 4]
    path.execute(mem_insn(mem=MemId.WGT, sram_base=10, x_size=2, x_stride=2))
    path.execute(mem_insn(mem=MemId.ACC, sram_base=1, x_size=3, x_pad_0=1))
    path.execute(mem_insn(mem=MemId.UOP, sram_base=5, x_size=4))
    assert (path.sram[MemId.WGT][10:12] == 7).all()
    assert (path.sram[MemId.ACC][1] == 0).all() and (path.sram[MemId.ACC][2:5] == -(2**31)).all()
    assert path.sram[MemId.UOP][5:9].tolist() == [1, 2, 3, 4]


def test_store_strided_rows():
    path = datapath(12, out=20)
    path.sram[MemId.OUT][:6] = np.arange(6, dtype=np.int8)[:, None, None]
    path.execute(mem_insn(Opcode.STORE, MemId.OUT, sram_base=0, dram_base=1, y_size=2, x_size=3,
                          x_stride=10))
    assert path.dram.out[:, 0, 0].tolist() == [0, 0, 1, 2] + [0] * 7 + [3, 4, 5] + [0] * 6


@pytest.mark.parametrize("insn, message", [
    (mem_insn(mem=MemId.WGT, x_pad_0=1), "LOAD WGT takes no padding"),
    (mem_insn(mem=MemId.OUT), "LOAD into OUT"),
    (mem_insn(Opcode.STORE, MemId.ACC), "STORE supports memory type OUT only"),
    (mem_insn(Opcode.STORE, MemId.OUT, y_pad_1=1), "STORE takes no padding"),
    (mem_insn(dram_base=3, y_size=2, x_size=2, x_stride=4), "DRAM INP elements up to 8.*has 8"),
    (mem_insn(sram_base=2047, x_size=2), "INP SRAM elements 2047..2048"),
    (mem_insn(sram_base=2040, x_size=2, y_size=2, y_pad_0=2, x_pad_1=1), "INP SRAM elements 2040..2051"),
    (mem_insn(Opcode.STORE, MemId.OUT, dram_base=8), "DRAM OUT elements up to 8"),
])
def test_invalid_memory_instructions(insn, message):
    path = datapath(13, inp=8, wgt=8, acc=8, out=8)
    with pytest.raises(SimulationError, match=message):
        path.execute(insn)

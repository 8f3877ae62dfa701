"""Test helpers: a complete "matrix multiply on VTA" program and sequential reference
semantics written directly from vta.md (loops, no vectorisation) to check the simulator."""

from __future__ import annotations

import numpy as np

from accelc.targets.fpga import AluOp, DramImage, MemId, Program, ProgramBuilder, Uop, VTAConfig
from accelc.targets.fpga.isa import AluInsn, GemmInsn, unpack_uops


def requantize_reference(a: np.ndarray, b: np.ndarray, shift: int) -> np.ndarray:
    """``clip((A @ B.T + 2^(shift-1)) >> shift, -128, 127)`` with int32 accumulation."""
    acc = (a.astype(np.int64) @ b.astype(np.int64).T + (1 << (shift - 1))).astype(np.int32)
    return np.clip(acc >> shift, -128, 127).astype(np.int8)


def matmul_program(config: VTAConfig, a: np.ndarray, b: np.ndarray, shift: int,
                   rows_per_tile: int | None = None) -> tuple[Program, DramImage]:
    """``requantize_reference(a, b, shift)`` as a VTA program.

    ``a`` is [M, K], ``b`` is [N, K] (int8); M a multiple of BATCH, K of BLOCK_IN, N of
    BLOCK_OUT. The weights stay in WGT; the rows are processed in tiles of
    ``rows_per_tile`` (default: all) rows, double-buffered over two halves of INP and
    ACC/OUT with the usual RAW/WAR tokens.
    """
    batch, block_in, block_out = config.BATCH, config.BLOCK_IN, config.BLOCK_OUT
    m, k = a.shape
    n = b.shape[0]
    rows, kb, nb = m // batch, k // block_in, n // block_out
    tile = rows_per_tile or rows
    tiles = [(r, min(tile, rows - r)) for r in range(0, rows, tile)]
    inp_half, acc_half = tile * kb, tile * nb

    dram_inp = np.ascontiguousarray(
        a.reshape(rows, batch, kb, block_in).transpose(0, 2, 1, 3).reshape(rows * kb, batch, block_in))
    dram_wgt = np.ascontiguousarray(
        b.reshape(nb, block_out, kb, block_in).transpose(0, 2, 1, 3).reshape(nb * kb, block_out, block_in))

    builder = ProgramBuilder()
    # Per buffer half h, uop j: ACC/OUT row j of the half, its INP row, weight block j.
    uops = [Uop(dst_idx=h * acc_half + j, src_idx=h * inp_half, wgt_idx=j * kb)
            for h in (0, 1) for j in range(nb)]
    builder.load(MemId.UOP, sram=0, dram=builder.add_uops(uops), x=len(uops))
    builder.load(MemId.WGT, sram=0, dram=0, x=nb * kb)
    for t, (row0, count) in enumerate(tiles):
        half = t % 2
        half_uops = (half * nb, half * nb + nb)
        reuse_in_two = t + 2 < len(tiles)  # tile t+2 reuses this half
        builder.load(MemId.INP, sram=half * inp_half, dram=row0 * kb, x=count * kb,
                     pop_next=t >= 2, push_next=True)
        builder.gemm(reset=True, uops=half_uops, iters=(1, count), dst=(0, nb), pop_next=t >= 2)
        builder.gemm(uops=half_uops, iters=(kb, count), dst=(0, nb), src=(1, kb), wgt=(1, 0),
                     pop_prev=True, push_prev=reuse_in_two)
        elementwise = dict(uops=half_uops, iters=(1, count), dst=(0, nb))
        builder.alu(AluOp.ADD, imm=1 << (shift - 1), **elementwise)
        builder.alu(AluOp.SHR, imm=shift, **elementwise)
        builder.alu(AluOp.MAX, imm=-128, **elementwise)
        builder.alu(AluOp.MIN, imm=127, push_next=True, **elementwise)
        builder.store(sram=half * acc_half, dram=row0 * nb, x=count * nb, pop_prev=True,
                      push_prev=reuse_in_two or t == len(tiles) - 1)
    builder.load(MemId.UOP, sram=0, dram=0, x=0, pop_next=True)  # wait for the last store
    builder.finish()
    program = builder.build()
    out = np.zeros((rows * nb, batch, block_out), np.int8)
    return program, program.dram_image(config, inp=dram_inp, wgt=dram_wgt, out=out)


def unpack_matmul_output(config: VTAConfig, out: np.ndarray, m: int, n: int) -> np.ndarray:
    rows, nb = m // config.BATCH, n // config.BLOCK_OUT
    return out.reshape(rows, nb, config.BATCH, config.BLOCK_OUT).transpose(0, 2, 1, 3).reshape(m, n)


def _iterations(insn: GemmInsn | AluInsn, uop_sram: np.ndarray):
    dst0, src0, wgt0 = unpack_uops(uop_sram)
    for i_out in range(insn.iter_out):
        for i_in in range(insn.iter_in):
            for k in range(insn.uop_bgn, insn.uop_end):
                dst = int(dst0[k]) + i_out * insn.dst_factor_out + i_in * insn.dst_factor_in
                src = int(src0[k]) + i_out * insn.src_factor_out + i_in * insn.src_factor_in
                wgt = (int(wgt0[k]) + i_out * getattr(insn, "wgt_factor_out", 0)
                       + i_in * getattr(insn, "wgt_factor_in", 0))
                yield dst, src, wgt


def _to_int32(value: int) -> int:
    return (value + (1 << 31)) % (1 << 32) - (1 << 31)


_ALU_REFERENCE = {
    AluOp.MIN: min,
    AluOp.MAX: max,
    AluOp.ADD: lambda a, b: a + b,
    AluOp.SHR: lambda a, b: a >> b if b >= 0 else a << -b,
}


def reference_execute(insn: GemmInsn | AluInsn, sram: dict) -> None:
    """One GEMM/ALU executed uop-iteration by uop-iteration on ``sram`` (dict MemId→array)."""
    acc, out = sram[MemId.ACC], sram[MemId.OUT]
    for dst, src, wgt in _iterations(insn, sram[MemId.UOP]):
        for b in range(acc.shape[1]):
            for o in range(acc.shape[2]):
                a = int(acc[dst, b, o])
                if isinstance(insn, GemmInsn):
                    dot = int(np.dot(sram[MemId.INP][src, b].astype(np.int64),
                                     sram[MemId.WGT][wgt, o].astype(np.int64)))
                    value = 0 if insn.reset else a + dot
                else:
                    rhs = insn.imm if insn.use_imm else int(acc[src, b, o])
                    value = _ALU_REFERENCE[insn.alu_op](a, rhs)
                value = _to_int32(value)
                acc[dst, b, o] = value
                out[dst, b, o] = _to_int32(value << 24) >> 24  # low 8 bits, signed

"""Instruction generation for one accelerator layer (conv2d / linear, fused epilogue).

:func:`lower_layer` picks the tiling (:mod:`.tiling`), and :meth:`LoweredLayer.emit` writes
the layer's instructions for given DRAM addresses. The program of a layer is:

* prologue (compute): LOAD UOP of the layer's micro-op pool, LOAD ACC of its constant rows;
* per step (:mod:`.schedule`): a load group — LOAD INP of the input chunk, one instruction
  per channel block with ``y_pad``/``x_pad`` only where the tile touches the image border;
  LOAD INP of the residual tile; LOAD WGT of the weight chunk; in the first step also the
  constants (bias/identity weight blocks, the constant INP element) — then a compute group:
  GEMM reset at a tile's first step, the convolution GEMM, and at its last step the epilogue
  (:mod:`.epilogue`); after the last step, one STORE per output-channel block.
* The last STORE pushes a store→compute token; whoever emits the next instruction (the next
  layer's barrier or the final FINISH) must pop it (see :mod:`.network`).

The convolution GEMM of a step covers the whole tile × chunk in one instruction. With ``d``
output positions in the tile, ``co`` output blocks and ``ci`` input blocks:

* ``d ≥ 3``: uops enumerate (kernel row, kernel column, y, x); ``iter_out`` runs over output
  blocks and ``iter_in`` over input blocks. Consecutive uops write distinct accumulators
  (the ``d`` positions cycle innermost), so the hazard rule holds by construction.
* ``d < 3 ≤ co·d``: the output blocks move into the uops (innermost with the positions).
* ``co·d < 3``: the reduction is unrolled into the uops and spread round-robin over
  ``R = ceil(3/(co·d))`` partial accumulators, which ALU ADDs combine before the epilogue.

To shorten the start, the layer's first step loads its weights one output block at a time
and runs one GEMM per output block, each waiting only for its own block.

Depthwise layers use block-diagonal weights: each output block reduces over its own input
block (``iter_out`` steps input, weight and output together), at 1/BLOCK of peak.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from accelc.errors import TargetError, UnsupportedError
from accelc.targets.fpga.config import VTAConfig
from accelc.targets.fpga.dram import DramImage
from accelc.targets.fpga.isa import AluInsn, AluOp, FinishInsn, GemmInsn, Insn, MemId, MemInsn, Opcode
from accelc.targets.fpga.lower.epilogue import AluStep, Epilogue
from accelc.targets.fpga.lower.layer import AccelLayer, ConvGeometry, unsupported_reason
from accelc.targets.fpga.lower.layout import ceil_div
from accelc.targets.fpga.lower.schedule import Step, build_schedule
from accelc.targets.fpga.lower.tiling import Estimate, SramPlan, Tiling, estimate, plan_sram, search
from accelc.targets.fpga.lower.uops import UopOverflow, UopPool
from accelc.targets.fpga.sim import simulate


@dataclass(frozen=True)
class LayerAddresses:
    """DRAM bases of a layer's data, in elements of their memory."""

    inp: int  # activation element of the input tensor
    out: int  # activation element of the output tensor
    res: int = 0  # activation element of the residual tensor
    ones: int = 0  # activation element holding the constant INP element
    wgt: int = 0  # WGT block of the packed weights
    wgt_const: int = 0  # WGT block of the constant blocks
    acc_const: int = 0  # ACC row of the constant rows
    uop: int = 0  # UOP word of the micro-op pool


def _loop(iters: int, factor: int) -> int:
    """A loop factor, 0 when the loop runs once (so it never exceeds its field)."""
    return factor if iters > 1 else 0


def _with_flags(insns: list[Insn], index: int, **flags: bool) -> None:
    names = tuple(sorted(k for k, v in flags.items() if v))
    if names:
        insns[index] = _flagged(insns[index], names)


# Instructions are immutable and validated on construction; programs repeat many of them,
# so the constructors below are memoised (this dominates the cost of a tiling evaluation).
@lru_cache(maxsize=1 << 16)
def _flagged(insn: Insn, names: tuple[str, ...]) -> Insn:
    return dataclasses.replace(insn, **dict.fromkeys(names, True))


@lru_cache(maxsize=1 << 16)
def _gemm(uops: tuple[int, int], iters=(1, 1), dst=(0, 0), src=(0, 0), wgt=(0, 0), reset=False) -> GemmInsn:
    return GemmInsn(reset=reset, uop_bgn=uops[0], uop_end=uops[1], iter_out=iters[0], iter_in=iters[1],
                    dst_factor_out=_loop(iters[0], dst[0]), dst_factor_in=_loop(iters[1], dst[1]),
                    src_factor_out=_loop(iters[0], src[0]), src_factor_in=_loop(iters[1], src[1]),
                    wgt_factor_out=_loop(iters[0], wgt[0]), wgt_factor_in=_loop(iters[1], wgt[1]))


@lru_cache(maxsize=1 << 16)
def _alu(op: AluOp, uops: tuple[int, int], iters, dst, src=(0, 0), imm: int | None = None) -> AluInsn:
    return AluInsn(alu_op=op, uop_bgn=uops[0], uop_end=uops[1], iter_out=iters[0], iter_in=iters[1],
                   dst_factor_out=_loop(iters[0], dst[0]), dst_factor_in=_loop(iters[1], dst[1]),
                   src_factor_out=_loop(iters[0], src[0]), src_factor_in=_loop(iters[1], src[1]),
                   use_imm=imm is not None, imm=0 if imm is None else imm)


@lru_cache(maxsize=1 << 16)
def _mem(opcode: Opcode, mem: MemId, sram: int, dram: int, y: int, x: int, stride: int,
         pad=(0, 0, 0, 0)) -> MemInsn:
    return MemInsn(opcode=opcode, mem=mem, sram_base=sram, dram_base=dram, y_size=y, x_size=x,
                   x_stride=stride, y_pad_0=pad[0], y_pad_1=pad[1], x_pad_0=pad[2], x_pad_1=pad[3])


def sync_insn(**flags: bool) -> MemInsn:
    """A compute-module instruction that moves nothing (``LOAD UOP x=0``), for tokens only."""
    return dataclasses.replace(_mem(Opcode.LOAD, MemId.UOP, 0, 0, 1, 0, 0), **flags)


@dataclass
class LoweredLayer:
    layer: AccelLayer
    config: VTAConfig
    geometry: ConvGeometry
    epilogue: Epilogue
    tiling: Tiling
    sram: SramPlan
    schedule: list[Step]
    estimate: Estimate | None = None
    standalone: object = None  # SimStats of the layer alone (timing model)
    uop_words: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))

    # ---- addresses of the chunks of a step -------------------------------------------
    def _spans(self, step: Step):
        t, g = step.tile, self.geometry
        return g.input_span(t.y0, t.th, "y"), g.input_span(t.x0, t.tw, "x")

    def _acc_size(self, step: Step) -> tuple[int, int]:
        """(accumulators per replica, replicas) of the step's tile."""
        d = step.tile.co_n * step.tile.th * step.tile.tw
        return d, (ceil_div(3, d) if d < 3 else 1)

    # ---- load / store groups ---------------------------------------------------------
    def _load_group(self, step: Step, a: LayerAddresses, wait_previous: bool) -> list[Insn]:
        g, sram, t, e = self.geometry, self.sram, step.tile, self.epilogue
        load = Opcode.LOAD
        insns: list[Insn] = []
        if step.index == 0:
            if e.needs_ones:
                insns.append(_mem(load, MemId.INP, sram.inp_ones, a.ones, 1, 1, 1))
            if len(e.wgt_blocks):
                n = len(e.wgt_blocks)
                insns.append(_mem(load, MemId.WGT, sram.wgt_const, a.wgt_const, 1, n, n))
        if step.load_inp:
            (r0, rn, rp0, rp1), (c0, cn, cp0, cp1) = self._spans(step)
            ih, iw = rp0 + rn + rp1, cp0 + cn + cp1
            base = sram.inp_chunk[step.inp_half]
            first_block = t.nb * g.cb + step.ci0
            whole = (rn, cn) == (g.h, g.w) and not (rp0 or rp1 or cp0 or cp1 or g.rows_subsampled)
            if whole:  # whole images, contiguous in DRAM and SRAM: one DMA
                insns.append(_mem(load, MemId.INP, base, a.inp + first_block * g.h * g.w,
                                  step.ci_n * g.h, g.w, g.w))
            else:
                for q in range(step.ci_n):
                    dram = a.inp + ((first_block + q) * g.h + r0) * g.w + c0
                    insns.append(_mem(load, MemId.INP, base + q * ih * iw, dram, rn, cn, g.input_row_pitch,
                                      (rp0, rp1, cp0, cp1)))
        if step.load_res:
            insns += self._tile_transfers(load, MemId.INP, sram.inp_res[step.res_half], a.res, t)
        pushes = []
        if step.load_wgt:
            wgt = sram.wgt_chunk[step.wgt_half]
            if self._split_start(step):  # one output block at a time, each announced to compute
                pitch = step.ci_n * g.taps
                for q in range(t.co_n):
                    dram = a.wgt + ((t.co0 + q) * g.cb + step.ci0) * g.taps
                    pushes.append(len(insns))
                    insns.append(_mem(load, MemId.WGT, wgt + q * pitch, dram, 1, pitch, pitch))
            else:
                if g.depthwise:
                    x, y, dram = t.co_n * g.taps, 1, a.wgt + t.co0 * g.taps
                elif step.ci_n == g.cb:
                    x, y, dram = t.co_n * g.cb * g.taps, 1, a.wgt + t.co0 * g.cb * g.taps
                else:
                    x, y, dram = step.ci_n * g.taps, t.co_n, a.wgt + (t.co0 * g.cb + step.ci0) * g.taps
                insns.append(_mem(load, MemId.WGT, wgt, dram, y, x, g.cb * g.taps if y > 1 else x))
        if insns:
            _with_flags(insns, 0, pop_next=step.load_pop or (step.index == 0 and wait_previous))
            for index in set(pushes + [len(insns) - 1]):
                _with_flags(insns, index, push_next=True)
        return insns

    def _split_start(self, step: Step) -> bool:
        """Whether the layer's first step streams its weights output block by output block,
        with one convolution GEMM per block, so compute starts after the first block."""
        t = step.tile
        return (step.index == 0 and step.load_wgt and not self.geometry.depthwise and t.co_n > 1
                and t.th * t.tw >= 3)

    def _tile_transfers(self, opcode: Opcode, mem: MemId, sram: int, dram: int, t) -> list[Insn]:
        """Transfers of an output-shaped tile ([co][y][x] in SRAM) to/from its DRAM tensor."""
        g = self.geometry
        d = t.th * t.tw
        first = (t.nb * g.ob + t.co0) * g.ho
        if (t.th, t.tw) == (g.ho, g.wo):
            return [_mem(opcode, mem, sram, dram + first * g.wo, t.co_n * g.ho, g.wo, g.wo)]
        return [_mem(opcode, mem, sram + q * d, dram + (first + q * g.ho + t.y0) * g.wo + t.x0,
                     t.th, t.tw, g.wo) for q in range(t.co_n)]

    def _store_group(self, step: Step, a: LayerAddresses, last_tile: bool) -> list[Insn]:
        insns = self._tile_transfers(Opcode.STORE, MemId.OUT, self.sram.acc_tile[step.acc_half], a.out,
                                     step.tile)
        _with_flags(insns, 0, pop_prev=True)
        _with_flags(insns, len(insns) - 1, push_prev=step.store_push or last_tile)
        return insns

    # ---- compute group ----------------------------------------------------------------
    def _conv_gemms(self, step: Step, pool: UopPool) -> list[GemmInsn]:
        """The step's convolution GEMM, or one per output block (each popping the token of
        its weights, but the first) when the step streams its weights."""
        if not self._split_start(step):
            return [self._conv_gemm(step, pool)]
        gemms = [self._conv_gemm(step, pool, block) for block in range(step.tile.co_n)]
        return gemms[:1] + [_flagged(gemm, ("pop_prev",)) for gemm in gemms[1:]]

    def _conv_gemm(self, step: Step, pool: UopPool, block: int | None = None) -> GemmInsn:
        g, t, sram = self.geometry, step.tile, self.sram
        th, tw, d = t.th, t.tw, t.th * t.tw
        (_, rn, rp0, rp1), (_, cn, cp0, cp1) = self._spans(step)
        iw, ihiw = cp0 + cn + cp1, (rp0 + rn + rp1) * (cp0 + cn + cp1)
        acc, inp, wgt = sram.acc_tile[step.acc_half], sram.inp_chunk[step.inp_half], sram.wgt_chunk[step.wgt_half]
        dw = g.depthwise
        red = 1 if dw else step.ci_n  # input blocks reduced in this step
        co_pitch = red * g.taps  # weight blocks per output block in the chunk
        sh, sw, kw = g.sram_row_step, g.sw, g.kw

        def grid(*extents):
            return [a.ravel() for a in np.meshgrid(*map(np.arange, extents), indexing="ij")]

        if d >= 3:
            if block is not None:  # output block `block` alone
                acc, wgt = acc + block * d, wgt + block * co_pitch

            def build():
                i, j, y, x = grid(g.kh, g.kw, th, tw)
                return acc + y * tw + x, inp + (y * sh + i) * iw + x * sw + j, wgt + i * kw + j
            uops = pool.kernel(("conv", th, tw, iw, acc, inp, wgt), build)
            if block is not None:
                return _gemm(uops, (1, red), src=(0, ihiw), wgt=(0, g.taps))
            if dw:
                return _gemm(uops, (t.co_n, 1), dst=(d, 0), src=(ihiw, 0), wgt=(co_pitch, 0))
            return _gemm(uops, (t.co_n, red), dst=(d, 0), src=(0, ihiw), wgt=(co_pitch, g.taps))
        if t.co_n * d >= 3:
            def build():
                i, j, co, y, x = grid(g.kh, g.kw, t.co_n, th, tw)
                src = inp + (co * ihiw if dw else 0) + (y * sh + i) * iw + x * sw + j
                return acc + co * d + y * tw + x, src, wgt + co * co_pitch + i * kw + j
            uops = pool.kernel(("conv-co", th, tw, iw, ihiw, t.co_n, co_pitch, acc, inp, wgt), build)
            return _gemm(uops, (1, red), src=(0, ihiw), wgt=(0, g.taps))
        per_replica, replicas = self._acc_size(step)

        def build():
            ci, i, j, co, y, x = grid(red, g.kh, g.kw, t.co_n, th, tw)
            k = (ci * g.kh + i) * g.kw + j  # reduction item, round-robin over the replicas
            src = inp + (co if dw else ci) * ihiw + (y * sh + i) * iw + x * sw + j
            dst = acc + (k % replicas) * per_replica + co * d + y * tw + x
            return dst, src, wgt + co * co_pitch + ci * g.taps + i * kw + j
        uops = pool.kernel(("conv-unrolled", th, tw, iw, ihiw, t.co_n, red, co_pitch, acc, inp, wgt), build)
        return _gemm(uops)

    def _epilogue(self, step: Step, pool: UopPool) -> tuple[list[Insn], int | None]:
        """The epilogue instructions and the index of the last that reads INP/WGT."""
        t, sram = step.tile, self.sram
        acc = sram.acc_tile[step.acc_half]
        d = t.th * t.tw
        insns: list[Insn] = []
        reader = None
        per_replica, replicas = self._acc_size(step)
        for r in range(1, replicas):  # combine partial accumulators
            insns.append(_alu(AluOp.ADD, pool.single(acc, acc + r * per_replica), (1, per_replica),
                              (0, 1), (0, 1)))
        whole = dict(iters=(t.co_n, d), dst=(d, 1))
        for op in self.epilogue.steps:
            if isinstance(op, AluStep):
                src = 0 if op.row is None else sram.acc_const + op.row + (t.co0 if op.per_block else 0)
                insns.append(_alu(op.op, pool.single(acc, src), src=(int(op.per_block), 0), imm=op.imm,
                                  **whole))
            elif op.kind == "bias":
                uops = pool.single(acc, sram.inp_ones, sram.wgt_const + t.co0)
                reader = len(insns)
                insns.append(_gemm(uops, wgt=(1, 0), **whole))
            else:
                res = sram.inp_res[step.res_half]
                uops = pool.single(acc, res, sram.wgt_const + self.epilogue.identity_block)
                reader = len(insns)
                insns.append(_gemm(uops, src=(d, 1), **whole))
        return insns, reader

    def _compute_group(self, step: Step, pool: UopPool) -> list[Insn]:
        insns: list[Insn] = []
        acc = self.sram.acc_tile[step.acc_half]
        if step.first:
            per_replica, replicas = self._acc_size(step)
            insns.append(_gemm(pool.single(acc), (1, per_replica * replicas), dst=(0, 1), reset=True))
        insns += self._conv_gemms(step, pool)
        reader = len(insns) - 1
        if step.last:
            epilogue, epilogue_reader = self._epilogue(step, pool)
            if epilogue_reader is not None:
                reader = len(insns) + epilogue_reader
            insns += epilogue
        _with_flags(insns, 0, pop_prev=step.has_loads, pop_next=step.first and step.acc_pop)
        _with_flags(insns, reader, push_prev=step.war_push)
        _with_flags(insns, len(insns) - 1, push_next=step.last)
        return insns

    # ---- the layer ---------------------------------------------------------------------
    def emit(self, a: LayerAddresses, *, wait_previous: bool) -> list[Insn]:
        """The layer's instructions. ``wait_previous``: its first load pops a compute→load
        token (pushed by the barrier after the previous layer). Sets :attr:`uop_words`."""
        pool = UopPool(self.config)
        steps = self.schedule
        loads = [self._load_group(s, a, wait_previous) for s in steps]
        body: list[Insn] = list(loads[0])
        for k, step in enumerate(steps):
            nxt = steps[k + 1] if k + 1 < len(steps) else None
            if nxt is not None and nxt.load_early:
                body += loads[k + 1]
            body += self._compute_group(step, pool)
            if step.last:
                body += self._store_group(step, a, last_tile=k == len(steps) - 1)
            if nxt is not None and not nxt.load_early:
                body += loads[k + 1]
        prologue: list[Insn] = [_mem(Opcode.LOAD, MemId.UOP, 0, a.uop, 1, pool.size, pool.size)]
        rows = len(self.epilogue.acc_rows)
        if rows:
            prologue.append(_mem(Opcode.LOAD, MemId.ACC, self.sram.acc_const, a.acc_const, 1, rows, rows))
        self.uop_words = pool.words()
        return prologue + body

    # ---- standalone program (cost model) -------------------------------------------------
    def standalone_addresses(self) -> LayerAddresses:
        """Addresses of the layer alone in a DRAM image (for :meth:`standalone_program`)."""
        g = self.geometry
        inp = 1
        out = inp + g.nb * g.cb * g.h * g.w
        res = out + g.nb * g.ob * g.ho * g.wo
        wgt_const = g.ob * g.reduction_blocks * g.taps
        return LayerAddresses(inp=inp, out=out, res=res, ones=0, wgt=0, wgt_const=wgt_const)

    def standalone_program(self) -> list[Insn]:
        insns = self.emit(self.standalone_addresses(), wait_previous=False)
        return insns + [sync_insn(pop_next=True), FinishInsn()]


def lower_layer(layer: AccelLayer, config: VTAConfig, tiling: Tiling | None = None) -> LoweredLayer:
    """The layer with its tiling chosen (or the given one) and its schedule built."""
    reason = unsupported_reason(layer, config)
    if reason is not None:
        raise UnsupportedError(f"layer {layer.name} cannot run on the accelerator: {reason}")
    geometry = ConvGeometry.of(layer, config)
    epilogue = Epilogue.of(layer, config)
    residual = layer.residual is not None
    empty = DramImage(config)

    def make(t: Tiling) -> LoweredLayer | None:
        sram = plan_sram(geometry, epilogue, t, config, residual)
        if sram is None:
            return None
        return LoweredLayer(layer, config, geometry, epilogue, t, sram, build_schedule(geometry, t, residual))

    def timed(lowered: LoweredLayer | None):
        if lowered is None:
            return None
        try:
            program = lowered.standalone_program()
        except UopOverflow:
            return None
        lowered.standalone = simulate(program, empty, execute=False)
        return lowered.standalone

    if tiling is not None:
        lowered = make(tiling)
        if lowered is None or timed(lowered) is None:
            raise TargetError(f"layer {layer.name}: tiling {tiling} does not fit the accelerator buffers")
        lowered.estimate = estimate(geometry, epilogue, tiling, config, residual)
        return lowered
    evaluated: dict[Tiling, LoweredLayer] = {}

    def evaluate(t: Tiling):
        lowered = make(t)
        stats = timed(lowered)
        if stats is not None:
            evaluated[t] = lowered
        return stats

    best, best_estimate, _ = search(geometry, epilogue, config, residual, evaluate, layer_name=layer.name)
    lowered = evaluated[best]
    lowered.estimate = best_estimate
    return lowered

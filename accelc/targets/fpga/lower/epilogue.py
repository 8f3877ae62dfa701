"""The fused epilogue of a layer: what happens to a tile's int32 accumulators before STORE.

Requantization ``clip(rshift_round(acc, s[o]), lo, hi)`` with ``acc = bias + Σ x·w`` is
computed as ``clip((Σ x·w + bias') >> s[o], lo, hi)`` with ``bias' = bias + 2^(s[o]-1)``
(``bias`` for s = 0): folding the rounding term into the bias is exact, since int32
addition (with wraparound) is associative. ``bias'`` enters ACC after the convolution GEMMs,
in one of three ways (:attr:`Epilogue.bias_mode`):

* ``"gemm"`` — one GEMM uop-iteration per output element: a constant INP element
  ``u = [1, 127, …, 127]`` times a per-block weight ``W`` with ``Σ_i u_i·W[o][i] = bias'[o]``
  (1 cycle per element; possible when every ``|bias'| ≤ 127·127·(BLOCK_IN-1) + 63``);
* ``"alu"`` — ALU ADD from an ACC-resident row per output block (2 cycles per element);
* ``"none"`` — every ``bias'`` is 0.

Then SHR (immediate when all channels share the shift, else per channel from ACC rows),
MIN hi, MAX lo. A fused residual (``QAdd(t, r)``, see :class:`~.layer.Residual`) follows on
the clipped ``t``: SHR by ``-(ea-em)`` (a left shift), a GEMM adding ``r`` from INP times the
identity weight ``2^(eb-em)·I``, ADD ``2^(ey-em-1)``, SHR ``ey-em``, MIN, MAX — exactly the
two-step reference. The last operation is always a clip, so the low 8 bits that every
GEMM/ALU writes to OUT are the int8 result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from accelc.targets.fpga.config import VTAConfig
from accelc.targets.fpga.isa import AluOp
from accelc.targets.fpga.lower.layer import AccelLayer
from accelc.targets.fpga.lower.layout import ceil_div, channel_rows
from accelc.targets.fpga.lower.reference import wrap_int32

IMM_MIN, IMM_MAX = -(1 << 15), (1 << 15) - 1
#: Value of the non-leading channels of the constant INP element of the "gemm" bias mode.
ONES_SCALE = 127


@dataclass(frozen=True)
class AluStep:
    """One ALU op over a tile: operand ``imm``, or ACC const row ``row`` (+ the output
    block index when ``per_block``)."""

    op: AluOp
    imm: int | None = None
    row: int | None = None
    per_block: bool = False


@dataclass(frozen=True)
class GemmStep:
    """A one-iteration-per-element GEMM: ``"bias"`` (constant INP element × bias block of
    the output block) or ``"residual"`` (residual tile in INP × identity block)."""

    kind: str


def bias_weight_blocks(bias: np.ndarray, block_out: int, block_in: int) -> np.ndarray | None:
    """Blocks ``W[ob, BO, BI]`` with ``Σ_i u_i·W[o][i] = bias[o]`` for ``u`` of
    :func:`ones_element`, or None when some value is out of the representable range."""
    values = np.zeros(ceil_div(bias.size, block_out) * block_out, np.int64)
    values[: bias.size] = bias
    blocks = np.zeros((values.size, block_in), np.int64)
    if block_in == 1:
        if values.min() < -128 or values.max() > 127:
            return None
        blocks[:, 0] = values
    else:
        digits = block_in - 1
        tens = np.floor_divide(values + ONES_SCALE // 2, ONES_SCALE)
        if np.abs(tens).max() > 127 * digits:
            return None
        blocks[:, 0] = values - ONES_SCALE * tens
        magnitude = np.clip(np.abs(tens)[:, None] - 127 * np.arange(digits)[None, :], 0, 127)
        blocks[:, 1:] = np.sign(tens)[:, None] * magnitude
    return blocks.astype(np.int8).reshape(-1, block_out, block_in)


def ones_element(config: VTAConfig) -> np.ndarray:
    """The constant INP element ``u = [1, 127, …, 127]`` (every batch row)."""
    row = np.full(config.BLOCK_IN, ONES_SCALE, np.int8)
    row[0] = 1
    return np.ascontiguousarray(np.broadcast_to(row, (config.BATCH, config.BLOCK_IN)))


@dataclass(frozen=True)
class Epilogue:
    bias_mode: str
    steps: tuple  # AluStep | GemmStep, in order
    acc_rows: np.ndarray  # int32 [n, BATCH, BLOCK_OUT]: the layer's ACC constants
    wgt_blocks: np.ndarray  # int8 [n, BLOCK_OUT, BLOCK_IN]: bias blocks, then identity
    identity_block: int | None  # index in wgt_blocks
    needs_ones: bool

    @classmethod
    def of(cls, layer: AccelLayer, config: VTAConfig) -> "Epilogue":
        batch, bo, bi = config.BATCH, config.BLOCK_OUT, config.BLOCK_IN
        shift = np.asarray(layer.shift, np.int64)
        rounding = np.where(shift > 0, np.int64(1) << np.maximum(shift - 1, 0), 0)
        bias = wrap_int32(np.asarray(layer.bias, np.int64) + rounding)
        rows: list[np.ndarray] = []
        blocks: list[np.ndarray] = []

        def add_rows(values) -> int:
            offset = sum(len(r) for r in rows)
            rows.append(channel_rows(values, batch, bo))
            return offset

        steps: list = []
        bias_mode = "none"
        if np.any(bias != 0):
            bias_blocks = bias_weight_blocks(bias, bo, bi)
            if bias_blocks is not None:
                bias_mode = "gemm"
                blocks.append(bias_blocks)
                steps.append(GemmStep("bias"))
            else:
                bias_mode = "alu"
                steps.append(AluStep(AluOp.ADD, row=add_rows(bias), per_block=True))
        if np.any(shift != 0):
            if np.all(shift == shift[0]):
                steps.append(AluStep(AluOp.SHR, imm=int(shift[0])))
            else:
                steps.append(AluStep(AluOp.SHR, row=add_rows(shift), per_block=True))
        steps += [AluStep(AluOp.MIN, imm=layer.hi), AluStep(AluOp.MAX, imm=layer.lo)]

        identity = None
        r = layer.residual
        if r is not None:
            if r.t_shift:
                steps.append(AluStep(AluOp.SHR, imm=-r.t_shift))
            identity = sum(len(b) for b in blocks)
            blocks.append(((1 << r.r_shift) * np.eye(bo, bi, dtype=np.int64)).astype(np.int8)[None])
            steps.append(GemmStep("residual"))
            if r.out_shift > 0:
                half = 1 << (r.out_shift - 1)
                steps.append(AluStep(AluOp.ADD, imm=half) if half <= IMM_MAX else
                             AluStep(AluOp.ADD, row=add_rows(np.full(bo, half))))
            if r.out_shift:
                steps.append(AluStep(AluOp.SHR, imm=r.out_shift))
            steps += [AluStep(AluOp.MIN, imm=r.hi), AluStep(AluOp.MAX, imm=r.lo)]

        acc_rows = np.concatenate(rows) if rows else np.zeros((0, batch, bo), np.int32)
        wgt_blocks = np.concatenate(blocks) if blocks else np.zeros((0, bo, bi), np.int8)
        return cls(bias_mode=bias_mode, steps=tuple(steps), acc_rows=acc_rows, wgt_blocks=wgt_blocks,
                   identity_block=identity, needs_ones=bias_mode == "gemm")

    @property
    def alu_ops_per_element(self) -> int:
        return sum(isinstance(s, AluStep) for s in self.steps)

    @property
    def gemm_ops_per_element(self) -> int:
        return sum(isinstance(s, GemmStep) for s in self.steps)

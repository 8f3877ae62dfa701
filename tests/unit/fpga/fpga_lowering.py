"""Helpers for the lowering tests: random quantized layers, running them through the
accelerator program, and token-order checks written from vta.md."""

from __future__ import annotations

import numpy as np

from accelc.targets.fpga import VTAConfig
from accelc.targets.fpga.isa import FinishInsn, MemId, MemInsn, Opcode
from accelc.targets.fpga.lower import AccelLayer, Residual, compile_network

CONFIG = VTAConfig.default()


def config_with(**changes) -> VTAConfig:
    data = CONFIG.to_dict()
    data.update(changes)
    return VTAConfig.from_dict(data)


#: Buffers so small that every layer below must be tiled (INP 32, WGT 16, ACC 16 elements, 512 uops).
TINY = config_with(LOG_INP_BUFF_SIZE=9, LOG_WGT_BUFF_SIZE=12, LOG_ACC_BUFF_SIZE=10, LOG_UOP_BUFF_SIZE=11)
#: BATCH 2, BLOCK 8.
BATCH2 = config_with(LOG_BATCH=1, LOG_BLOCK_IN=3, LOG_BLOCK_OUT=3, LOG_WGT_BUFF_SIZE=16)


def random_conv(rng, n, c, h, w, o, k, stride=1, padding=0, *, groups=1, bias="small", shift="channel",
                clip=(-128, 127), residual=None, name="conv", kind="conv") -> AccelLayer:
    """A conv (or linear, ``kind="linear"`` with ``h = w = k = 1``) with realistic magnitudes:
    the shifts are chosen so that outputs span the int8 range (clips are exercised)."""
    cg = c // groups
    weight = rng.integers(-128, 128, (o, cg, k, k), dtype=np.int8)
    typical = np.sqrt(cg * k * k) * 70 * 70  # std of the accumulator
    base_shift = max(int(np.log2(typical / 64)), 0)
    if bias == "large":  # beyond the bias GEMM's range (the ALU adds it); shifts keep outputs unsaturated
        base_shift = max(base_shift + 3, 0)
    shift = {"channel": rng.integers(max(base_shift - 2, 0), base_shift + 2, o),
             "uniform": np.full(o, base_shift), "zero": np.zeros(o, int)}[shift]
    bias = {"none": None, "small": rng.integers(-int(typical), int(typical) + 1, o),
            "large": rng.integers(-(1 << 19), 1 << 19, o)}[bias]
    ho, wo = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    if kind == "linear":
        return AccelLayer(name, "linear", "x", (n, c), "y", (n, o), weight[:, :, 0, 0], bias, shift,
                          clip[0], clip[1], residual=residual)
    return AccelLayer(name, "conv", "x", (n, c, h, w), "y", (n, o, ho, wo), weight, bias, shift, clip[0], clip[1],
                      stride=stride, padding=padding, groups=groups, residual=residual)


def run_layer(layer: AccelLayer, rng, config: VTAConfig = CONFIG, tiling=None):
    """Compile ``layer`` alone, simulate it with every check on, return (output, reference,
    program, stats)."""
    program = compile_network([layer], config, tilings={layer.name: tiling} if tiling else None)
    x = rng.integers(-128, 128, layer.input_shape, dtype=np.int8)
    inputs = {layer.input: x}
    r = None
    if layer.residual is not None:
        r = inputs[layer.residual.tensor] = rng.integers(-128, 128, layer.output_shape, dtype=np.int8)
    outputs, stats = program.run(inputs)
    return outputs[layer.output], layer.reference(x, r), program, stats


def pops_follow_pushes(insns) -> bool:
    """True when every popped token was pushed by an instruction earlier in program order
    (deadlock-free with in-order dispatch into bounded queues)."""
    def module(insn):
        if isinstance(insn, MemInsn):
            if insn.opcode is Opcode.STORE:
                return 2
            return 0 if insn.mem in (MemId.INP, MemId.WGT) else 1
        return 1

    pending = {}
    for insn in insns:
        m = module(insn)
        for flag, other in (("pop_prev", m - 1), ("pop_next", m + 1)):
            if getattr(insn, flag):
                if pending.get((other, m), 0) == 0:
                    return False
                pending[(other, m)] -= 1
        for flag, other in (("push_prev", m - 1), ("push_next", m + 1)):
            if getattr(insn, flag):
                pending[(m, other)] = pending.get((m, other), 0) + 1
    return isinstance(insns[-1], FinishInsn) and not any(pending.values())


__all__ = ["BATCH2", "CONFIG", "Residual", "TINY", "compile_network", "config_with", "pops_follow_pushes",
           "random_conv", "run_layer"]


def dram_order_violations(insns) -> list[tuple[int, int]]:
    """(earlier, later) instruction pairs touching the same activation DRAM element — a STORE
    then a LOAD INP (RAW) or a LOAD INP then a STORE (WAR), in program order — that no token
    chain orders (the simulator's race detector covers SRAM only). Knowledge is tracked with
    vector clocks over the token FIFOs, so the verdict does not depend on the interleaving."""
    def module(insn):
        if isinstance(insn, MemInsn):
            return 2 if insn.opcode is Opcode.STORE else (0 if insn.mem in (MemId.INP, MemId.WGT) else 1)
        return 1

    def elements(insn):
        rows = insn.dram_base + insn.x_stride * np.arange(insn.y_size)
        return (rows[:, None] + np.arange(insn.x_size)).ravel().tolist()

    queues = [[i for i, insn in enumerate(insns) if module(insn) == m] for m in range(3)]
    position, known = [0, 0, 0], [[0, 0, 0] for _ in range(3)]
    fifos = {(a, b): [] for a in range(3) for b in range(3) if abs(a - b) == 1}
    known_at, seq = {}, {}
    progressed = True
    while progressed:
        progressed = False
        for m in range(3):
            while position[m] < len(queues[m]):
                index = queues[m][position[m]]
                insn = insns[index]
                pops = [(m - 1, m)] * insn.pop_prev + [(m + 1, m)] * insn.pop_next
                if not all(fifos[f] for f in pops):
                    break
                for f in pops:
                    known[m] = [max(a, b) for a, b in zip(known[m], fifos[f].pop(0))]
                known_at[index] = list(known[m])
                position[m] += 1
                seq[index] = known[m][m] = position[m]
                for f in [(m, m - 1)] * insn.push_prev + [(m, m + 1)] * insn.push_next:
                    fifos[f].append(list(known[m]))
                progressed = True
    assert all(p == len(q) for p, q in zip(position, queues)), "deadlock"
    writer: dict[int, int] = {}
    readers: dict[int, list[int]] = {}
    violations = set()
    for index, insn in enumerate(insns):
        if not isinstance(insn, MemInsn) or not insn.x_size:
            continue
        if insn.opcode is Opcode.LOAD and insn.mem is MemId.INP:
            for e in elements(insn):
                if e in writer and known_at[index][2] < seq[writer[e]]:
                    violations.add((writer[e], index))
                readers.setdefault(e, []).append(index)
        elif insn.opcode is Opcode.STORE:
            for e in elements(insn):
                violations.update((r, index) for r in readers.pop(e, []) if known_at[index][0] < seq[r])
                writer[e] = index
    return sorted(violations)

"""Whole-network lowering: a chain of accelerator layers in one DRAM image and one program.

:func:`compile_network` lowers each :class:`~.layer.AccelLayer` (tiling search, schedule)
and lays the network out in DRAM:

* activations (graph inputs, intermediate tensors, outputs, residuals) in one packed int8
  arena that serves as both the INP and the OUT region (``BLOCK_IN == BLOCK_OUT``), so layer
  k's STOREs write exactly what layer k+1's LOADs read — no host repacking. Every tensor has
  its own region (no reuse), element 0 holds the constant INP element of the bias GEMM.
  When ``BLOCK_IN != BLOCK_OUT`` the INP and OUT regions are separate arrays and a layer may
  not consume another layer's output (:class:`~accelc.errors.UnsupportedError`).
* weights (``OIHW{BO}o{BI}i`` int8 blocks, then the layer's constant blocks) in WGT,
  constant rows (int32) in ACC, each layer's micro-op pool in UOP.

The program is the layers' instructions in order; between two layers a compute-module
barrier (``LOAD UOP x=0``) pops the last STORE's token and pushes one that the next layer's
first LOAD pops, so the next layer reads its input only after it is in DRAM and overwrites
SRAM only after the previous layer is done with it. The program ends with such a barrier
(without the push) and FINISH.

The result is a :class:`NetworkProgram`: instructions, micro-ops, DRAM regions, the memory
map, a per-layer table, ``run`` (see :mod:`.runtime`) and ``save``/``load`` of the artifact
files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from accelc.errors import TargetError, UnsupportedError
from accelc.targets.fpga.config import VTAConfig
from accelc.targets.fpga.isa import FinishInsn, Insn, MemId, decode_uops
from accelc.targets.fpga.lower.codegen import LayerAddresses, LoweredLayer, lower_layer, sync_insn
from accelc.targets.fpga.lower.epilogue import ones_element
from accelc.targets.fpga.lower.layer import AccelLayer
from accelc.targets.fpga.lower.layout import (
    activation_view,
    pack_depthwise_weights,
    pack_weights,
    packed_activation_shape,
)
from accelc.targets.fpga.lower.tiling import Tiling

ONES = "__ones__"


@dataclass(frozen=True)
class TensorInfo:
    """Where an activation lives: ``arena`` ("act", or "inp"/"out" when they are separate),
    first element ``base``, packed as ``packed_shape`` (see :mod:`.layout`)."""

    name: str
    shape: tuple
    arena: str
    base: int
    packed_shape: tuple
    role: str  # "input", "output", "intermediate" (an input or intermediate may also be an output)

    @property
    def elements(self) -> int:
        return int(np.prod(self.packed_shape[:4]))

    @property
    def block(self) -> int:
        return self.packed_shape[5]


@dataclass
class NetworkProgram:
    """A compiled accelerator segment (see the module doc)."""

    config: VTAConfig
    instructions: list[Insn]
    uop_words: np.ndarray  # uint32 [n]
    wgt: np.ndarray  # int8 [n, BLOCK_OUT, BLOCK_IN]
    acc: np.ndarray  # int32 [n, BATCH, BLOCK_OUT]
    arenas: dict  # arena name -> elements
    constants: dict  # name -> (arena, base, int8 [BATCH, BLOCK] value)
    tensors: dict  # name -> TensorInfo
    inputs: list
    outputs: list
    regions: dict = field(default_factory=dict)  # name -> memory-map entry of WGT/ACC/UOP data
    layer_table: list = field(default_factory=list)
    layers: list = field(default_factory=list)  # LoweredLayer (absent after load)

    @property
    def memory_map(self) -> dict:
        c = self.config
        tensors = {}
        for t in self.tensors.values():
            elem = c.elem_bytes(MemId.INP if t.block == c.BLOCK_IN and t.arena != "out" else MemId.OUT)
            tensors[t.name] = dict(memory=t.arena, base=t.base, base_bytes=t.base * elem, elements=t.elements,
                                   shape=list(t.shape), packed_shape=list(t.packed_shape),
                                   layout=f"NCHW{c.BATCH}n{t.block}c", dtype="int8", role=t.role)
        constants = {name: dict(memory=arena, base=base, values=value.tolist())
                     for name, (arena, base, value) in self.constants.items()}
        sizes = {"wgt": (len(self.wgt), c.elem_bytes(MemId.WGT)), "acc": (len(self.acc), c.elem_bytes(MemId.ACC)),
                 "uop": (len(self.uop_words), c.elem_bytes(MemId.UOP))}
        sizes.update({name: (n, c.elem_bytes(MemId.INP if name != "out" else MemId.OUT))
                      for name, n in self.arenas.items()})
        return dict(version=1, config=c.to_dict(), inputs=list(self.inputs), outputs=list(self.outputs),
                    memories={k: dict(elements=n, element_bytes=b, bytes=n * b) for k, (n, b) in sizes.items()},
                    tensors=tensors, constants=constants, data=self.regions)

    @property
    def uops(self) -> list:
        """The micro-ops of every layer's pool, in DRAM order (decoded :class:`~.isa.Uop`)."""
        return decode_uops(self.uop_words.astype("<u4").tobytes())

    def dram_image(self, inputs: Mapping[str, np.ndarray]):
        """A fresh :class:`~.dram.DramImage` with the program's data and the packed inputs."""
        from accelc.targets.fpga.lower.runtime import dram_image
        return dram_image(self, inputs)

    def run(self, inputs: Mapping[str, np.ndarray], **options):
        """Simulate on host inputs (plain NCHW / NC int8): ``(outputs, SimStats)``."""
        from accelc.targets.fpga.lower.runtime import run
        return run(self, inputs, **options)

    def files(self) -> dict:
        """The artifact files' contents: file name → bytes (see :mod:`.runtime`)."""
        from accelc.targets.fpga.lower.runtime import files
        return files(self)

    def save(self, directory) -> list:
        from accelc.targets.fpga.lower.runtime import save
        return save(self, directory)

    @classmethod
    def load(cls, directory) -> "NetworkProgram":
        from accelc.targets.fpga.lower.runtime import load
        return load(directory)


def _roles(layers: list[AccelLayer], outputs: Iterable[str] | None) -> tuple[list, list, dict]:
    produced: dict[str, AccelLayer] = {}
    shapes: dict[str, tuple] = {}
    graph_inputs: list[str] = []

    def declare(name: str, shape: tuple, who: str) -> None:
        if shapes.setdefault(name, shape) != shape:
            raise TargetError(f"tensor {name}: {who} uses it with shape {list(shape)}, elsewhere "
                              f"{list(shapes[name])}")

    for layer in layers:
        reads = [(layer.input, layer.input_shape)]
        if layer.residual is not None:
            reads.append((layer.residual.tensor, layer.output_shape))
        for name, shape in reads:
            declare(name, shape, f"layer {layer.name}")
            if name not in produced and name not in graph_inputs:
                graph_inputs.append(name)
        if layer.output in produced or layer.output in graph_inputs:
            raise TargetError(f"tensor {layer.output} is written by layer {layer.name} but is already "
                              "an input or another layer's output; give every tensor one producer")
        declare(layer.output, layer.output_shape, f"layer {layer.name}")
        produced[layer.output] = layer
    consumed = {name for layer in layers for name in
                [layer.input] + ([layer.residual.tensor] if layer.residual else [])}
    if outputs is None:
        graph_outputs = [name for name in produced if name not in consumed]
    else:
        graph_outputs = list(outputs)
        unknown = [n for n in graph_outputs if n not in produced]
        if unknown:
            raise TargetError(f"requested outputs {unknown} are not produced by any layer")
    return graph_inputs, graph_outputs, shapes


def compile_network(layers: list[AccelLayer], config: VTAConfig | None = None, *,
                    outputs: Iterable[str] | None = None,
                    tilings: Mapping[str, Tiling] | None = None) -> NetworkProgram:
    """Lower ``layers`` (in execution order) into one program (see the module doc).

    ``outputs``: tensors the host reads back (default: produced and not consumed);
    ``tilings``: forced tilings by layer name (default: searched)."""
    config = config or VTAConfig.default()
    if not layers:
        raise TargetError("compile_network needs at least one layer")
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
        raise TargetError(f"layer names must be unique: {names}")
    graph_inputs, graph_outputs, shapes = _roles(layers, outputs)
    shared = config.BLOCK_IN == config.BLOCK_OUT
    if not shared:
        chained = [layer.name for layer in layers if layer.input not in graph_inputs or layer.residual]
        if chained:
            raise UnsupportedError(
                f"layers {chained} read tensors the accelerator writes, but BLOCK_IN != BLOCK_OUT "
                "means OUT and INP layouts differ; run them as separate segments")
    lowered = [lower_layer(layer, config, (tilings or {}).get(layer.name)) for layer in layers]

    batch = config.BATCH
    arenas = {"act": 0} if shared else {"inp": 0, "out": 0}
    tensors: dict[str, TensorInfo] = {}
    constants = {}
    if any(low.epilogue.needs_ones for low in lowered):
        arena = "act" if shared else "inp"
        constants[ONES] = (arena, 0, ones_element(config))
        arenas[arena] = 1
    produced = {layer.output for layer in layers}
    for name, shape in shapes.items():
        role = "input" if name not in produced else "output" if name in graph_outputs else "intermediate"
        arena = "act" if shared else ("out" if name in produced else "inp")
        block = config.BLOCK_OUT if name in produced else config.BLOCK_IN
        packed = packed_activation_shape(activation_view(shape, batch), batch, block)
        tensors[name] = TensorInfo(name, shape, arena, arenas[arena], packed, role)
        arenas[arena] += int(np.prod(packed[:4]))

    insns: list[Insn] = []
    wgt_parts, acc_parts, uop_parts = [], [], []
    wgt_at = acc_at = uop_at = 0
    regions = {}
    for i, low in enumerate(lowered):
        layer = low.layer
        weights = (pack_depthwise_weights(layer.weight, config.BLOCK_OUT) if layer.depthwise else
                   pack_weights(layer.weight, config.BLOCK_OUT, config.BLOCK_IN))
        blocks = weights.reshape(-1, config.BLOCK_OUT, config.BLOCK_IN)
        consts, rows = low.epilogue.wgt_blocks, low.epilogue.acc_rows
        a = LayerAddresses(inp=tensors[layer.input].base, out=tensors[layer.output].base,
                           res=tensors[layer.residual.tensor].base if layer.residual else 0,
                           ones=constants[ONES][1] if ONES in constants else 0,
                           wgt=wgt_at, wgt_const=wgt_at + len(blocks), acc_const=acc_at, uop=uop_at)
        insns += low.emit(a, wait_previous=i > 0)
        insns.append(sync_insn(pop_next=True, push_prev=i + 1 < len(lowered)))
        regions[f"{layer.name}.weight"] = dict(
            memory="wgt", base=a.wgt, base_bytes=a.wgt * config.elem_bytes(MemId.WGT), blocks=len(blocks),
            shape=list(layer.weight.shape), packed_shape=list(weights.shape),
            layout=(f"OIHW{config.BLOCK_OUT}o{config.BLOCK_IN}i" + (" block-diagonal" if layer.depthwise else "")))
        if len(consts):
            regions[f"{layer.name}.wgt_const"] = dict(memory="wgt", base=a.wgt_const, blocks=len(consts),
                                                      contents="bias blocks, then residual identity")
        if len(rows):
            regions[f"{layer.name}.acc_const"] = dict(memory="acc", base=acc_at, rows=len(rows),
                                                      contents="per-channel bias/shift rows")
        regions[f"{layer.name}.uops"] = dict(memory="uop", base=uop_at, count=int(low.uop_words.size))
        wgt_parts += [blocks, consts]
        acc_parts.append(rows)
        uop_parts.append(low.uop_words)
        wgt_at += len(blocks) + len(consts)
        acc_at += len(rows)
        uop_at += low.uop_words.size
    insns.append(FinishInsn())
    program = NetworkProgram(
        config=config, instructions=insns, uop_words=np.concatenate(uop_parts).astype(np.uint32),
        wgt=np.concatenate(wgt_parts), acc=np.concatenate(acc_parts), arenas=arenas, constants=constants,
        tensors=tensors, inputs=graph_inputs, outputs=graph_outputs, regions=regions, layers=lowered)
    program.layer_table = [layer_row(low) for low in lowered]
    return program


def layer_row(low: LoweredLayer) -> dict:
    """One row of the per-layer table: tiling, the model's estimate, the simulated timing
    of the layer alone (cycle model, no data) and the utilisation it implies."""
    layer, g, stats = low.layer, low.geometry, low.standalone
    row = dict(name=layer.name, kind=layer.kind, input=layer.input, output=layer.output,
               input_shape=list(layer.input_shape), output_shape=list(layer.output_shape),
               kernel=[g.kh, g.kw], stride=[g.sh, g.sw], padding=[g.ph, g.pw], groups=layer.groups,
               residual=layer.residual.tensor if layer.residual else None,
               tiling=low.tiling.to_dict(), bias_mode=low.epilogue.bias_mode, sram_elements=low.sram.usage,
               uops=int(low.uop_words.size), conv_gemm_ops=g.gemm_ops)
    if low.estimate is not None:
        row["model"] = dict(bytes=low.estimate.bytes, cycles=low.estimate.cycles)
    if stats is not None:
        row["sim"] = dict(cycles=stats.total_cycles, latency_s=stats.latency_s, gemm_ops=stats.gemm_counter,
                          alu_ops=stats.alu_counter, inp_bytes=stats.inp_load_nbytes,
                          wgt_bytes=stats.wgt_load_nbytes, acc_bytes=stats.acc_load_nbytes,
                          uop_bytes=stats.uop_load_nbytes, out_bytes=stats.out_store_nbytes,
                          gemm_utilization=stats.gemm_utilization,
                          conv_utilization=g.gemm_ops / stats.total_cycles if stats.total_cycles else 0.0)
    return row

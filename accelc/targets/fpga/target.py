"""``fpga``: a VTA-architecture accelerator — int8 conv/linear layers as VTA programs run by
accelc's bit-exact simulator (cycle model included), everything else on the host CPU.

Lowering: the pow2-quantized graph is placed (:mod:`.placement`); each accelerator segment is
compiled to a VTA program (:mod:`.lower`) and replaced in the graph by one
``accelc.fpga_segment`` call; the rest — the host part — is compiled by the same TVM code
as the ``cpu`` target, with the segments as external calls. So the int8 parts are exact by
construction and the float host parts run the very same code as on ``cpu``.

Artifact: ``lib.so`` + ``params.safetensors`` (host), and per segment ``fpga/<segment>/``
with ``instructions.bin`` (128-bit words), ``uops.bin``, ``weights.bin`` (OIHW16o16i int8),
``acc.bin`` (int32 biases/constants), ``memory_map.json``; ``placement`` and the per-layer
table (tiles, bytes, ops, cycles) go into report.json.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
import torch.fx as fx

from accelc.compiler.analysis.shapes import propagate_shapes
from accelc.compiler.context import CompileContext
from accelc.errors import PipelineError, UsageError
from accelc.targets.base import Runner, Support, Target, register_target
from accelc.targets.fpga.config import VTAConfig
from accelc.targets.fpga.lower import NetworkProgram, compile_network
from accelc.targets.fpga import segment_op
from accelc.targets.fpga.placement import Placement, place
from accelc.targets.tvm_backend.build import compile_relax, save_payload
from accelc.targets.tvm_backend.importer import to_relax
from accelc.targets.tvm_backend.runner import TVMRunner

SEGMENTS_DIR = "fpga"


@dataclass
class FPGAOptions:
    config: str | None = field(default=None, metadata={"help": "VTA config JSON (default: 1x16_i8w8a32_15_15_18_17, "
                                                                "PYNQ-Z1 100 MHz)"})
    first_conv: Literal["auto", "host", "fpga"] = field(default="auto", metadata={
        "help": "auto/host: a first conv with few input channels stays on the host; fpga: force it"})


def load_config(path: str | None) -> VTAConfig:
    if path is None:
        return VTAConfig.default()
    if not Path(path).is_file():
        raise UsageError(f"--fpga-config {path}: no such file")
    return VTAConfig.from_json(path)


def build_placed_graph(gm: fx.GraphModule, placement: Placement, names: list[str]) -> fx.GraphModule:
    """A copy of ``gm`` where each segment is one ``fpga_segment`` call (at its last node)."""
    import copy

    placed = copy.deepcopy(gm)
    by_name = {n.name: n for n in placed.graph.nodes}
    for seg, name in zip(placement.segments, names):
        nodes = [by_name[n.name] for n in seg.nodes]
        inputs = [by_name[n.name] for n in seg.inputs()]
        outputs = [by_name[n.name] for n in seg.outputs()]
        with placed.graph.inserting_after(nodes[-1]):
            call = placed.graph.call_function(torch.ops.accelc.fpga_segment.default, (inputs, name))
        for i, out in enumerate(outputs):
            with placed.graph.inserting_after(call):
                item = placed.graph.call_function(operator.getitem, (call, i))
            out.replace_all_uses_with(item, delete_user_cb=lambda u: u is not item)
        for n in reversed(nodes):
            placed.graph.erase_node(n)
    placed.graph.lint()
    placed.delete_all_unused_submodules()
    placed.recompile()
    return placed


@register_target
class FPGATarget(Target):
    name = "fpga"
    description = "VTA-style int8 accelerator (instruction stream + bit-exact simulator); host parts via TVM LLVM"
    default_pipeline = "fuse,quantize(scheme=pow2)"
    Options = FPGAOptions

    def __init__(self, options=None):
        super().__init__(options)
        self.vta = load_config(self.options.config)
        self._extras: dict = {}

    def check_pipeline(self, pipeline) -> None:
        specs = [s for s in pipeline if s.name == "quantize"]
        if not specs or specs[-1].options.scheme != "pow2":
            raise PipelineError("the fpga target needs pow2 int8 quantization in the pipeline",
                                hint="add quantize(scheme=pow2), e.g. --pipeline 'fuse,quantize(scheme=pow2)' "
                                     "(the target's default), with --calib data")

    def support_map(self, gm: fx.GraphModule, example_inputs: Sequence[torch.Tensor]) -> dict[str, Support]:
        propagate_shapes(gm, example_inputs)
        placement = place(gm, self.vta, first_conv=self.options.first_conv)
        return {n: Support(w == "fpga", reason) for n, (w, reason) in placement.where.items()}

    def host_target(self):
        from accelc.targets.cpu import CPUTarget

        return CPUTarget().tvm_target()

    def lower(self, gm: fx.GraphModule, ctx: CompileContext, out_dir: Path) -> dict[str, Any]:
        propagate_shapes(gm, ctx.example_inputs)
        placement = place(gm, self.vta, first_conv=self.options.first_conv)
        programs, names = [], []
        for i, seg in enumerate(placement.segments):
            outputs = [n.name for n in seg.outputs()]
            program = compile_network(seg.layers, self.vta, outputs=outputs)
            name = segment_op.segment_name(program, i)
            segment_op.register(name, program)
            programs.append(program)
            names.append(name)
        placed = build_placed_graph(gm, placement, names)
        mod, params = to_relax(placed, ctx.example_inputs)
        executable = compile_relax(mod, self.host_target())
        payload = save_payload(executable, params, out_dir)
        segments = []
        for name, program in zip(names, programs):
            program.save(out_dir / SEGMENTS_DIR / name)
            segments.append({"name": name, "dir": f"{SEGMENTS_DIR}/{name}", "inputs": list(program.inputs),
                             "outputs": list(program.outputs)})
        payload["fpga_segments"] = segments
        self._extras = {"fpga": {"config": self.vta.to_dict(), "config_name": self.vta.name,
                                 "placement": {n: {"on": w, "why": r} for n, (w, r) in placement.where.items()},
                                 "layers": [row for p in programs for row in p.layer_table],
                                 "segments": segments}}
        return {"payload": payload}

    def report_extras(self) -> dict:
        return self._extras

    def runtime_report(self, runner: "FPGARunner") -> dict:
        """Simulator statistics of the last sample run: per segment and in total."""
        stats = runner.last_stats()
        if not stats:
            return {}
        cycles = sum(s["total_cycles"] for s in stats.values())
        gemm = sum(s["gemm_counter"] for s in stats.values())
        return {"fpga_run": {"segments": stats, "total_cycles": cycles, "clock_mhz": self.vta.clock_mhz,
                             "accelerator_latency_ms": cycles / (self.vta.clock_mhz * 1e3),
                             "gemm_utilization": gemm / cycles if cycles else 0.0}}

    @classmethod
    def load(cls, art_dir: Path, manifest: dict) -> Runner:
        return FPGARunner(art_dir, manifest)


class FPGARunner(TVMRunner):
    """The host library with the segments' external calls bound to the simulator."""

    def __init__(self, art_dir: Path, manifest: dict):
        import tvm

        self.segments = []
        for seg in manifest["payload"].get("fpga_segments", []):
            program = NetworkProgram.load(art_dir / seg["dir"])
            segment_op.register(seg["name"], program)
            segment_op.register_extern(seg["name"])
            self.segments.append(seg["name"])
        super().__init__(art_dir, manifest, tvm.cpu(0))

    def last_stats(self) -> dict[str, dict]:
        """Simulator statistics of each segment's most recent run."""
        return {n: segment_op.LAST_STATS[n].to_dict() for n in self.segments if n in segment_op.LAST_STATS}

"""Stage plans: choose the split of a graph into pipeline stages and describe it.

:func:`plan_stages` prices every node (:mod:`.costs`), lays the graph out as a sequence
(:mod:`.sequence`), splits it optimally (:mod:`.solver`) and returns a :class:`StagePlan`:
per stage its node range, FLOPs and seconds of forward+backward compute, communication
seconds, parameters, activation bytes, and the bytes crossing each cut. ``balance`` is
``max / mean`` of the stages' compute seconds (1.0 is perfect). Given ``bounds``, it
describes that split instead of choosing one (to compare other splitting rules).

Memory per stage is reported as parameter bytes (parameters and buffers, once) plus
activation bytes (every node output of the stage, for one microbatch): what the stage holds
for a microbatch in flight, before gradients and optimizer state.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.fx as fx

from accelc.cli.common import human
from accelc.compiler.analysis.shapes import propagate_shapes
from accelc.compiler.options import in_range
from accelc.compiler.printing import format_table
from accelc.errors import UsageError
from accelc.passes.partition.costs import DEFAULT_DEVICE_FLOPS, estimated_costs, profiled_costs
from accelc.passes.partition.sequence import NodeSequence
from accelc.passes.partition.solver import InfeasibleSplit, split_sequence
from accelc.passes.partition.stages import build_stages, stage_interfaces

DEFAULT_BANDWIDTH = 1e10  # bytes/s between neighbouring stages


@dataclass
class PartitionOptions:
    """How to split: the number of stages, where costs come from, and the machine model."""

    stages: int = field(default=2, metadata={"help": "number of pipeline stages", "check": in_range(1)})
    profile: bool = field(default=False, metadata={
        "help": "measure forward+backward time per node on the example inputs instead of using the cost model"})
    bandwidth: float = field(default=DEFAULT_BANDWIDTH, metadata={
        "help": "bytes/s between neighbouring stages; each crossing byte costs 2/bandwidth s "
                "(activation forward, gradient back)", "check": in_range(0, lo_open=True)})
    device_flops: float = field(default=DEFAULT_DEVICE_FLOPS, metadata={
        "help": "FLOP/s of one stage's device, to turn cost-model FLOPs into seconds",
        "check": in_range(0, lo_open=True)})
    repeats: int = field(default=5, metadata={"help": "timed runs per node with profile", "check": in_range(1)})

    @property
    def seconds_per_byte(self) -> float:
        return 2.0 / self.bandwidth


@dataclass
class StageInfo:
    index: int
    start: int  # first node position (inclusive)
    stop: int  # last node position (exclusive)
    first_node: str
    last_node: str
    flops: int  # forward + backward
    compute_seconds: float
    comm_seconds: float  # receiving inputs and sending outputs, both directions
    params: int
    param_bytes: int
    activation_bytes: int
    in_bytes: int
    out_bytes: int
    inputs: list[str]
    outputs: list[str]

    @property
    def nodes(self) -> int:
        return self.stop - self.start

    @property
    def seconds(self) -> float:
        return self.compute_seconds + self.comm_seconds

    @property
    def memory_bytes(self) -> int:
        return self.param_bytes + self.activation_bytes


@dataclass
class StagePlan:
    """A split into stages (see the module docstring); printable as a table or JSON."""

    stages: list[StageInfo]
    cost_source: str  # "flops" (cost model) or "profile" (measured)
    options: PartitionOptions
    total_nodes: int
    sequence: NodeSequence | None = field(default=None, repr=False, compare=False)

    @property
    def bounds(self) -> tuple[int, ...]:
        return tuple([s.start for s in self.stages] + [self.stages[-1].stop])

    @property
    def cut_bytes(self) -> list[int]:
        return [s.out_bytes for s in self.stages[:-1]]

    @property
    def balance(self) -> float:
        times = [s.compute_seconds for s in self.stages]
        mean = sum(times) / len(times)
        return max(times) / mean if mean > 0 else 1.0

    @property
    def bottleneck_seconds(self) -> float:
        return max(s.seconds for s in self.stages)

    def stage_modules(self) -> list[fx.GraphModule]:
        """The stage GraphModules (see :mod:`.stages`); their composition equals the graph."""
        if self.sequence is None:
            raise ValueError("this plan was loaded from JSON; re-plan the graph to build its stages")
        return build_stages(self.sequence, self.bounds)

    def to_dict(self) -> dict:
        return {"stages": [dict(dataclasses.asdict(s), nodes=s.nodes, seconds=s.seconds, memory_bytes=s.memory_bytes)
                           for s in self.stages],
                "bounds": list(self.bounds), "cut_bytes": self.cut_bytes, "balance": self.balance,
                "bottleneck_seconds": self.bottleneck_seconds, "cost_source": self.cost_source,
                "total_nodes": self.total_nodes, "options": dataclasses.asdict(self.options)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def table(self) -> str:
        rows = [[str(s.index), f"{s.first_node} … {s.last_node}", str(s.nodes), human(s.flops),
                 f"{s.compute_seconds * 1e3:.3f}", f"{s.comm_seconds * 1e3:.3f}", human(s.params),
                 human(s.activation_bytes), human(s.out_bytes) if s.index < len(self.stages) - 1 else "-"]
                for s in self.stages]
        header = ["stage", "nodes", "#", "FLOPs f+b", "compute ms", "comm ms", "params", "act bytes", "bytes out"]
        unit = "measured" if self.cost_source == "profile" else f"at {human(self.options.device_flops)}FLOP/s"
        return (format_table(rows, header)
                + f"\nbalance (max/mean compute) {self.balance:.3f}; bottleneck {self.bottleneck_seconds * 1e3:.3f} ms "
                  f"per microbatch (compute {unit}, links {human(self.options.bandwidth)}B/s)")


def plan_stages(gm: fx.GraphModule, example_inputs: Sequence[torch.Tensor], options: PartitionOptions | None = None,
                *, bounds: Sequence[int] | None = None) -> StagePlan:
    """The optimal stage plan for ``gm`` on ``example_inputs`` (one microbatch), or the plan of
    the given ``bounds``. Annotates ``gm``'s nodes with shapes; does not otherwise change it."""
    options = options or PartitionOptions()
    propagate_shapes(gm, example_inputs)
    costs = (profiled_costs(gm, example_inputs, options.repeats) if options.profile
             else estimated_costs(gm, example_inputs, options.device_flops))
    seq = NodeSequence(gm, costs)
    if bounds is None:
        try:
            bounds = split_sequence(seq.seconds, seq.cut_bytes, seq.allowed, options.stages,
                                    options.seconds_per_byte).bounds
        except InfeasibleSplit as e:
            raise UsageError(f"cannot split the model into {options.stages} stages: {e}",
                             hint=_infeasible_hint(seq)) from None
    else:
        bounds = tuple(bounds)
        _check_bounds(seq, bounds)
    return describe(seq, bounds, options, "profile" if options.profile else "flops")


def _infeasible_hint(seq: NodeSequence) -> str:
    reasons = sorted({b.reason for b in seq.blocks})
    hint = f"the graph has {len(seq)} compute nodes; use fewer stages"
    if reasons:
        hint += "; cuts are blocked where " + "; ".join(reasons[:3]) + ("; …" if len(reasons) > 3 else "")
    return hint


def _check_bounds(seq: NodeSequence, bounds: tuple[int, ...]) -> None:
    if bounds[0] != 0 or bounds[-1] != len(seq) or any(a >= b for a, b in zip(bounds, bounds[1:])):
        raise ValueError(f"bounds {bounds} are not increasing from 0 to {len(seq)}")
    for p in bounds[1:-1]:
        if not seq.allowed[p]:
            raise ValueError(f"cut at {p} is not allowed: {seq.block_reason(p)}")


def describe(seq: NodeSequence, bounds: tuple[int, ...], options: PartitionOptions, cost_source: str) -> StagePlan:
    """The :class:`StagePlan` of ``bounds`` over ``seq``."""
    stages = []
    beta = options.seconds_per_byte
    for k, ((a, b), (received, sent)) in enumerate(zip(zip(bounds, bounds[1:]), stage_interfaces(seq, bounds))):
        in_bytes, out_bytes = int(seq.cut_bytes[a]), int(seq.cut_bytes[b])
        stages.append(StageInfo(
            index=k, start=a, stop=b, first_node=seq.nodes[a].name, last_node=seq.nodes[b - 1].name,
            flops=int(seq.flops[a:b].sum()), compute_seconds=float(seq.seconds[a:b].sum()),
            comm_seconds=beta * (in_bytes + out_bytes), params=int(seq.params[a:b].sum()),
            param_bytes=int(seq.param_bytes[a:b].sum()), activation_bytes=int(seq.activation_bytes[a:b].sum()),
            in_bytes=in_bytes, out_bytes=out_bytes, inputs=received, outputs=sent))
    return StagePlan(stages, cost_source, options, len(seq), seq)

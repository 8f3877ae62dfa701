"""Compute cost of each graph node for one training step (forward + backward).

Two sources, both returning :class:`NodeCompute` per node name:

* :func:`estimated_costs` — from the cost model (:mod:`accelc.compiler.analysis.cost`),
  evaluated on a canonical copy of the graph (canonicalization keeps node names, so costs
  map back onto the graph being partitioned even when it is not canonical). The backward
  pass is priced by a fixed rule: **2× the forward FLOPs for nodes that own parameters**
  (gradient w.r.t. the input and w.r.t. the weights, each a product as large as the
  forward), **1× for the others** (gradient w.r.t. the input only). Seconds are
  ``FLOPs / device_flops``.
* :func:`profiled_costs` — measured: each node runs on its real inputs (recorded from one
  run of the graph on the example inputs), forward and then backward with unit output
  gradients, ``repeats`` times after one warm-up; the median forward+backward wall time is
  its cost. Nodes run one at a time, so the numbers include per-op overhead and exclude
  cross-op fusion. The graph itself is not modified (it runs on a deep copy, in train mode).
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.fx as fx

from accelc.compiler.analysis.cost import graph_cost
from accelc.compiler.canonicalize import canonicalize

COMPUTE_OPS = ("call_module", "call_function", "call_method")
DEFAULT_DEVICE_FLOPS = 1e11  # FLOP/s assumed per stage device when costs come from the cost model


@dataclass(frozen=True)
class NodeCompute:
    """Forward+backward cost of one node: FLOPs by the cost model, and seconds (estimated or measured)."""

    flops: int
    seconds: float


def training_flops(forward_flops: int, owns_parameters: bool) -> int:
    """Forward + backward FLOPs by the rule above: ×3 with parameters, ×2 without."""
    return forward_flops * (3 if owns_parameters else 2)


def forward_flops(gm: fx.GraphModule, example_inputs: Sequence[torch.Tensor]) -> dict[str, int]:
    """Forward FLOPs of every node by name (0 for nodes the cost model has no rule for)."""
    canonical = copy.deepcopy(gm)
    try:
        canonical = canonicalize(canonical, example_inputs)
    except Exception:  # a graph canonicalization cannot handle is still costed as written
        canonical = copy.deepcopy(gm)
    return {c.name: c.flops for c in graph_cost(canonical, example_inputs).nodes}


def _owns_parameters(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return any(True for _ in gm.get_submodule(node.target).parameters())
    return any(a.op == "get_attr" and isinstance(_attr(gm, a.target), torch.nn.Parameter)
               for a in node.all_input_nodes)


def _attr(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def estimated_costs(gm: fx.GraphModule, example_inputs: Sequence[torch.Tensor],
                    device_flops: float = DEFAULT_DEVICE_FLOPS) -> dict[str, NodeCompute]:
    """Cost-model costs of every compute node (see the module docstring for the rule)."""
    fwd = forward_flops(gm, example_inputs)
    out = {}
    for node in gm.graph.nodes:
        if node.op in COMPUTE_OPS:
            flops = training_flops(fwd.get(node.name, 0), _owns_parameters(gm, node))
            out[node.name] = NodeCompute(flops, flops / device_flops)
    return out


class _NodeTimer(fx.Interpreter):
    """Runs the graph once; times every compute node on its actual inputs, forward + backward."""

    def __init__(self, gm: fx.GraphModule, repeats: int):
        super().__init__(gm)
        self.repeats = repeats
        self.seconds: dict[str, float] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if n.op in COMPUTE_OPS:
            self.seconds[n.name] = self._time(n)
        return out

    def _time(self, n: fx.Node) -> float:
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        leaves = []

        def fresh(a):
            if isinstance(a, torch.Tensor) and a.is_floating_point():
                leaf = a.detach().requires_grad_(True)
                leaves.append(leaf)
                return leaf.clone()  # not a leaf, so in-place ops are allowed on it
            return a

        samples = []
        for i in range(self.repeats + 1):
            leaves.clear()
            a, k = fx.node.map_aggregate(args, fresh), fx.node.map_aggregate(kwargs, fresh)
            with torch.enable_grad():
                t0 = time.perf_counter()
                y = getattr(self, n.op)(n.target, a, k)
                if isinstance(y, torch.Tensor) and y.requires_grad:
                    y.backward(torch.ones_like(y))
                elapsed = time.perf_counter() - t0
            if i:  # the first run is a warm-up
                samples.append(elapsed)
        for p in self.module.parameters():
            p.grad = None
        return statistics.median(samples)


def profiled_costs(gm: fx.GraphModule, example_inputs: Sequence[torch.Tensor],
                   repeats: int = 5) -> dict[str, NodeCompute]:
    """Measured forward+backward seconds of every compute node (FLOPs from the cost model)."""
    fwd = forward_flops(gm, example_inputs)
    timer = _NodeTimer(copy.deepcopy(gm).train(), repeats)
    with torch.random.fork_rng():
        with torch.no_grad():
            timer.run(*example_inputs)
    nodes = {n.name: n for n in gm.graph.nodes}
    return {name: NodeCompute(training_flops(fwd.get(name, 0), _owns_parameters(gm, nodes[name])), secs)
            for name, secs in timer.seconds.items()}

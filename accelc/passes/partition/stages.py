"""Stage GraphModules: one per stage of a split, whose composition is the original graph.

Stage ``k`` of a split with bounds ``[p_0 = 0, p_1, …, p_S = n]`` is a GraphModule that

* takes, as positional inputs, the values crossing cut ``p_k`` in :class:`NodeSequence`
  order (stage 0: the graph's own inputs, in order);
* computes the nodes at positions ``[p_k, p_{k+1})`` exactly as the original graph does
  (the same node operations, modules and attributes under the same qualified names, so a
  stage's ``state_dict`` keys are the original model's keys);
* returns the tuple of values crossing cut ``p_{k+1}`` — including the ones it only passes
  on (skip connections) — and the last stage returns the original output structure.

So ``compose(stages)(*inputs)`` computes the same operations in the same order as the
original graph and returns bit-identical outputs.
"""

from __future__ import annotations

from typing import Any

import torch.fx as fx
import torch.nn as nn

from accelc.passes.partition.sequence import NodeSequence


def build_stages(seq: NodeSequence, bounds: tuple[int, ...] | list[int]) -> list[fx.GraphModule]:
    """The stage GraphModules for ``bounds`` (see the module docstring)."""
    n_stages = len(bounds) - 1
    output_node = next(n for n in seq.gm.graph.nodes if n.op == "output")
    modules = []
    for k in range(n_stages):
        start, stop = bounds[k], bounds[k + 1]
        received = seq.inputs if k == 0 else seq.crossing(start)
        graph = fx.Graph()
        env: dict[fx.Node, fx.Node] = {}
        for value in received:
            ph = graph.placeholder(value.name)
            ph.meta = dict(value.meta)
            env[value] = ph

        def lookup(node: fx.Node) -> fx.Node:
            if node not in env:
                if node.op != "get_attr":
                    raise AssertionError(f"stage {k}: {node.name} is neither received nor computed here")
                env[node] = graph.node_copy(node)
            return env[node]

        for node in seq.nodes[start:stop]:
            env[node] = graph.node_copy(node, lookup)
        if k == n_stages - 1:
            graph.output(fx.node.map_arg(output_node.args[0], lookup))
        else:
            graph.output(tuple(lookup(v) for v in seq.crossing(stop)))
        gm = fx.GraphModule(seq.gm, graph, class_name=f"Stage{k}")
        gm.training = seq.gm.training  # the submodules, shared with the original, keep their own modes
        modules.append(gm)
    return modules


def stage_interfaces(seq: NodeSequence, bounds: tuple[int, ...] | list[int]) -> list[tuple[list[str], list[str]]]:
    """For every stage, the names of the values it receives and the names it sends on."""
    out = []
    for k in range(len(bounds) - 1):
        received = seq.inputs if k == 0 else seq.crossing(bounds[k])
        sent = seq.crossing(bounds[k + 1]) if k < len(bounds) - 2 else []
        out.append(([v.name for v in received], [v.name for v in sent]))
    return out


class ComposedStages(nn.Module):
    """Runs stage modules one after another, each on the previous one's outputs."""

    def __init__(self, stages: list[nn.Module]):
        super().__init__()
        self.stages = nn.ModuleList(stages)

    def forward(self, *inputs: Any) -> Any:
        values: Any = inputs
        for stage in self.stages[:-1]:
            values = stage(*values)
        return self.stages[-1](*values)


def compose(stages: list[nn.Module]) -> ComposedStages:
    """A module computing what the original graph computes, from its stage modules."""
    return ComposedStages(stages)

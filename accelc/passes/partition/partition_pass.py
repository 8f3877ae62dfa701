"""``partition``: choose pipeline stages for model-parallel training and record the plan."""

from __future__ import annotations

import torch.fx as fx

from accelc.compiler.context import CompileContext
from accelc.passes.base import Pass, register_pass
from accelc.passes.partition.plan import PartitionOptions, plan_stages

STAGE_META = "pipeline_stage"


@register_pass
class Partition(Pass):
    """Split the graph into pipeline stages contiguous in topological order, minimising the
    slowest stage's forward+backward time plus its communication (optimal for that order).

    Exact: the graph is returned unchanged except that every compute node's
    ``meta["pipeline_stage"]`` names its stage. The stage plan (per-stage node range, FLOPs,
    seconds, parameters, activation bytes, bytes per cut, balance) is in the pass record's
    details; ``accelc.passes.partition.plan_stages`` builds the stage GraphModules.
    """

    name = "partition"
    exact = True
    Options = PartitionOptions

    def run(self, gm: fx.GraphModule, ctx: CompileContext) -> fx.GraphModule:
        plan = plan_stages(gm, ctx.example_inputs, self.options)
        for stage in plan.stages:
            for node in plan.sequence.nodes[stage.start:stage.stop]:
                node.meta[STAGE_META] = stage.index
        self.details = plan.to_dict()
        return gm

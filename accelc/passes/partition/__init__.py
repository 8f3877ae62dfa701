"""Balanced pipeline partitioning: stage plans and stage GraphModules for model-parallel training.

>>> plan = plan_stages(gm, (x,), PartitionOptions(stages=4))
>>> print(plan.table())              # per-stage cost, params, bytes per cut, balance
>>> stages = plan.stage_modules()    # GraphModules; compose(stages)(x) == gm(x)

See :mod:`.costs` (node costs), :mod:`.sequence` (cuts and what crosses them),
:mod:`.solver` (the dynamic program), :mod:`.stages` (stage GraphModules) and
:mod:`.plan` (the plan); the ``partition`` pass records a plan in a compile pipeline.
"""

from accelc.passes.partition.costs import NodeCompute, estimated_costs, profiled_costs
from accelc.passes.partition.partition_pass import STAGE_META, Partition
from accelc.passes.partition.plan import PartitionOptions, StageInfo, StagePlan, describe, plan_stages
from accelc.passes.partition.sequence import NodeSequence
from accelc.passes.partition.solver import InfeasibleSplit, Split, split_sequence
from accelc.passes.partition.stages import ComposedStages, build_stages, compose, stage_interfaces

__all__ = ["ComposedStages", "InfeasibleSplit", "NodeCompute", "NodeSequence", "Partition", "PartitionOptions",
           "STAGE_META", "Split", "StageInfo", "StagePlan", "build_stages", "compose", "describe",
           "estimated_costs", "plan_stages", "profiled_costs", "split_sequence", "stage_interfaces"]

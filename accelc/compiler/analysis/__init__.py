"""Graph analyses: shape propagation, cost model, channel dependency graph."""

from accelc.compiler.analysis.channels import ChannelGraph, Group, Member, channel_graph
from accelc.compiler.analysis.cost import GraphCost, NodeCost, graph_cost
from accelc.compiler.analysis.shapes import propagate_shapes, output_meta

__all__ = ["ChannelGraph", "Group", "Member", "channel_graph", "GraphCost", "NodeCost", "graph_cost", "propagate_shapes", "output_meta"]

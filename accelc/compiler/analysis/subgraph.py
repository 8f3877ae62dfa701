"""Extract one node (or a node range) of a graph as a standalone GraphModule."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.fx as fx

from accelc.compiler.analysis.shapes import output_meta


def single_node_module(gm: fx.GraphModule, node: fx.Node) -> tuple[fx.GraphModule, tuple[torch.Tensor, ...]]:
    """A GraphModule computing just ``node`` from its tensor inputs, and example inputs for it
    (zeros of the recorded shapes; the graph must be shape-propagated)."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    examples = []
    root = torch.nn.Module()
    for i, arg in enumerate(node.all_input_nodes):
        meta = output_meta(arg)
        if meta is None:
            raise ValueError(f"input {arg.name} of {node.name} is not a single tensor")
        env[arg] = graph.placeholder(f"in{i}")
        examples.append(torch.zeros(meta.shape, dtype=meta.dtype))
    if node.op == "call_module":
        root.add_module("m", copy.deepcopy(gm.get_submodule(node.target)))
        out = graph.call_module("m", fx.node.map_arg(node.args, lambda n: env[n]),
                                fx.node.map_arg(node.kwargs, lambda n: env[n]))
    else:
        new: Any = graph.node_copy(node, lambda n: env[n])
        if node.op == "get_attr":
            raise ValueError("get_attr nodes have no computation")
        out = new
    graph.output(out)
    return fx.GraphModule(root, graph), tuple(examples)

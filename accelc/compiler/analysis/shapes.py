"""Shape propagation: run the graph once on example inputs and record each node's output
shape and dtype in ``node.meta["tensor_meta"]`` (torch.fx's ShapeProp convention)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.fx as fx
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata


def propagate_shapes(gm: fx.GraphModule, example_inputs: Sequence[torch.Tensor]) -> fx.GraphModule:
    """Annotate every node of ``gm`` with ``meta["tensor_meta"]``; returns ``gm``."""
    with torch.no_grad():
        ShapeProp(gm).propagate(*example_inputs)
    return gm


def output_meta(node: fx.Node) -> TensorMetadata | None:
    """The node's single-tensor output metadata, or None (tuples, non-tensors, unknown)."""
    meta = node.meta.get("tensor_meta")
    return meta if isinstance(meta, TensorMetadata) else None


def shape_of(node: Any) -> tuple[int, ...] | None:
    """Output shape of an fx node argument, or None if it is not a single tensor."""
    if not isinstance(node, fx.Node):
        return None
    meta = output_meta(node)
    return tuple(meta.shape) if meta is not None else None


def is_tensor_node(node: Any) -> bool:
    return shape_of(node) is not None

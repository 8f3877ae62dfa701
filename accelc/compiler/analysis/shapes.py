"""Shape propagation: run the graph once on example inputs and record each node's output
shape and dtype in ``node.meta["tensor_meta"]`` (torch.fx's ShapeProp convention).

Propagation changes nothing but the metadata: the graph runs in eval mode (batch-norm
statistics stay put) with the global RNG state saved and restored.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import torch
import torch.fx as fx
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata


@contextlib.contextmanager
def evaluation_mode(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Every submodule in eval mode, and the RNG state untouched, for the duration; each
    submodule's own train/eval flag is restored afterwards."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.random.fork_rng():
            yield module
    finally:
        for m, training in modes:
            m.training = training


def propagate_shapes(gm: fx.GraphModule, example_inputs: Sequence[torch.Tensor], *,
                     grad: bool = False) -> fx.GraphModule:
    """Annotate every node of ``gm`` with ``meta["tensor_meta"]``; returns ``gm``. With
    ``grad``, autograd is on, so ``requires_grad`` in the metadata is what training sees."""
    with evaluation_mode(gm), torch.set_grad_enabled(grad):
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

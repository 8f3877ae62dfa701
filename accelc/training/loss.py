"""The training loss, by name or chosen from the model's output.

``auto`` picks ``nll`` when the model ends in log-softmax (its outputs are log-probabilities),
``mse`` for floating-point labels, and ``cross-entropy`` (on logits) otherwise. Every loss
averages over its microbatch; the pipeline schedule divides gradients by the number of
microbatches and data parallelism averages over replicas, so a step's gradient is that of
the mean loss over the global batch.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from accelc.errors import TrainingError

LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cross-entropy": F.cross_entropy,
    "nll": F.nll_loss,
    "mse": lambda output, target: F.mse_loss(output, target.reshape(output.shape).to(output.dtype)),
}


def ends_in_log_softmax(gm: fx.GraphModule) -> bool:
    out = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    if not isinstance(out, fx.Node):
        return False
    if out.op == "call_module":
        return isinstance(gm.get_submodule(out.target), nn.LogSoftmax)
    name = out.target if isinstance(out.target, str) else getattr(out.target, "__name__", "")
    return name in ("log_softmax", "_log_softmax") or "log_softmax" in str(out.target)


def check_single_output(gm: fx.GraphModule) -> None:
    out = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    if not isinstance(out, fx.Node):
        raise TrainingError("the model returns several values; training needs one output tensor for the loss",
                            hint="wrap the model so that forward() returns the tensor the loss applies to")


def choose_loss(name: str, gm: fx.GraphModule, labels: torch.Tensor) -> str:
    if name != "auto":
        return name
    if ends_in_log_softmax(gm):
        return "nll"
    return "mse" if labels.is_floating_point() else "cross-entropy"


def loss_function(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return LOSSES[name]

"""Layers with a fused activation epilogue.

The ``fuse`` pass turns ``conv → relu`` into one ``ConvAct2d`` node (likewise for Linear) so
that later passes and targets see a single node carrying its epilogue. They subclass the
plain layers, so any pass written for ``nn.Conv2d``/``nn.Linear`` also handles them; the
epilogue is the ``activation`` attribute: ``"none"``, ``"relu"`` or ``"relu6"``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

ACTIVATIONS = ("none", "relu", "relu6")


def apply_activation(x: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "relu":
        return F.relu(x)
    if activation == "relu6":
        return F.relu6(x)
    return x


class ConvAct2d(nn.Conv2d):
    """``activation(conv2d(x))`` — a Conv2d with an epilogue."""

    activation: str = "none"

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, activation: str = "none") -> "ConvAct2d":
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}")
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.__dict__.update({k: v for k, v in conv.__dict__.items() if k not in ("_parameters", "_buffers", "_modules")})
        new._parameters = dict(conv._parameters)
        new._buffers = dict(conv._buffers)
        new._modules = dict(conv._modules)
        new.activation = activation
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return apply_activation(self._conv_forward(x, self.weight, self.bias), self.activation)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", activation={self.activation}"


class LinearAct(nn.Linear):
    """``activation(linear(x))`` — a Linear with an epilogue."""

    activation: str = "none"

    @classmethod
    def from_linear(cls, linear: nn.Linear, activation: str = "none") -> "LinearAct":
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}")
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.in_features, new.out_features = linear.in_features, linear.out_features
        new._parameters = dict(linear._parameters)
        new.activation = activation
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return apply_activation(F.linear(x, self.weight, self.bias), self.activation)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", activation={self.activation}"


def activation_of(module: nn.Module) -> str:
    """The fused epilogue of a layer (``"none"`` for plain layers)."""
    return getattr(module, "activation", "none")

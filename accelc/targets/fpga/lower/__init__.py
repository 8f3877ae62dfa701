"""Lowering of int8 conv2d / linear layers to VTA instruction streams.

Public API: :func:`compile_network` (layers → :class:`NetworkProgram`), :class:`AccelLayer`
and :class:`Residual` (what is lowered), :func:`unsupported_reason` (placement),
:func:`lower_layer` / :class:`Tiling` (one layer, optionally with a forced tiling), the
integer references in :mod:`.reference` and the layouts in :mod:`.layout`.
"""

from accelc.targets.fpga.lower.codegen import LoweredLayer, lower_layer
from accelc.targets.fpga.lower.layer import AccelLayer, ConvGeometry, Residual, unsupported_reason
from accelc.targets.fpga.lower.network import NetworkProgram, TensorInfo, compile_network
from accelc.targets.fpga.lower.tiling import Tiling

__all__ = ["AccelLayer", "ConvGeometry", "LoweredLayer", "NetworkProgram", "Residual", "TensorInfo",
           "Tiling", "compile_network", "lower_layer", "unsupported_reason"]

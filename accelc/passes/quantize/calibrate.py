"""Calibration: run the float graph over calibration batches and gather, per observed node,
its range statistics — and, for bias correction, the mean output shift that weight
quantization causes per channel (Nagel et al. 2019, empirical variant)."""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
import torch.fx as fx
import torch.nn.functional as F

from accelc.errors import DataError
from accelc.passes.quantize.observers import Observer, ObserverSpec
from accelc.progress import progress


class _Tap(fx.Interpreter):
    """Interpreter calling ``hook(node, args, output)`` for the nodes of interest."""

    def __init__(self, gm: fx.GraphModule, names: set[str], hook: Callable):
        super().__init__(gm)
        self.names, self.hook = names, hook

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        if n.name in self.names:
            args = self.map_nodes_to_values(n.args, n)
            self.hook(n, args, out)
        return out


def observe(gm: fx.GraphModule, names: Sequence[str], batches: list[tuple[torch.Tensor, ...]], spec: ObserverSpec,
            *, quiet: bool = True) -> dict[str, Observer]:
    """Observers for the outputs of ``names`` over ``batches`` (two passes for histograms)."""
    observers = {n: Observer(spec) for n in names}

    def ranges(node, args, out):
        try:
            observers[node.name].update_range(out)
        except FloatingPointError:
            raise DataError(f"calibration: node {node.name} produced NaN/Inf on the calibration data",
                            hint="check the data's scale/normalisation, or skip that layer with quantize(skip=[...])")

    _run(gm, set(names), batches, ranges, "calibrate", quiet)
    if spec.needs_histogram:
        _run(gm, set(names), batches, lambda node, args, out: observers[node.name].update_hist(out),
             f"calibrate ({spec})", quiet)
    return observers


def bias_shift(gm: fx.GraphModule, layers: dict[str, tuple[torch.Tensor, Callable]],
               batches: list[tuple[torch.Tensor, ...]], *, quiet: bool = True) -> dict[str, torch.Tensor]:
    """Per-channel mean of ``f(x, ΔW)`` over the calibration data, for each layer name mapped to
    ``(ΔW = W_q − W, f)`` where f applies the layer's linear map without bias."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook(node, args, out):
        delta_w, apply = layers[node.name]
        with torch.no_grad():
            d = apply(args[0].double(), delta_w)
        reduce_dims = [i for i in range(d.dim()) if i != (1 if d.dim() == 4 else d.dim() - 1)]
        sums[node.name] = sums.get(node.name, 0) + d.sum(dim=reduce_dims)
        counts[node.name] = counts.get(node.name, 0) + d.numel() // d.shape[1 if d.dim() == 4 else -1]

    _run(gm, set(layers), batches, hook, "bias correction", quiet)
    return {k: sums[k] / counts[k] for k in sums}


def conv_apply(conv) -> Callable:
    return lambda x, w: F.conv2d(x, w, None, conv.stride, conv.padding, conv.dilation, conv.groups)


def linear_apply(_linear) -> Callable:
    return lambda x, w: F.linear(x, w)


def _run(gm, names, batches: Iterable, hook, desc: str, quiet: bool) -> None:
    tap = _Tap(gm, names, hook)
    with torch.no_grad():
        for batch in progress(batches, desc=desc, quiet=quiet):
            tap.run(*batch)

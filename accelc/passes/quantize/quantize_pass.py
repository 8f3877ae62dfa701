"""The ``quantize`` pass: calibrated static post-training int8 quantization."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.fx as fx
import torch.nn as nn

from accelc.compiler.analysis.shapes import propagate_shapes
from accelc.compiler.batching import dataset_batches
from accelc.compiler.context import CompileContext
from accelc.compiler.options import in_range
from accelc.compiler.verify import compare, run_samples
from accelc.errors import PipelineError, UsageError
from accelc.passes.base import Pass, register_pass
from accelc.passes.quantize.calibrate import bias_shift, conv_apply, linear_apply, observe
from accelc.passes.quantize.cle import equalize
from accelc.passes.quantize.observers import parse_observer
from accelc.passes.quantize.plan import inherit_qparams, make_plan
from accelc.passes.quantize.qparams import QParams, activation_qparams
from accelc.passes.quantize.rewrite import Rewriter, quantize_layer_weights


def _observer_check(v: str):
    try:
        parse_observer(v)
    except ValueError as e:
        return str(e)
    return None


@dataclass
class QuantizeOptions:
    scheme: Literal["fixed", "pow2"] = field(default="fixed", metadata={
        "help": "requantization: fixed (int32 multiplier + shift) or pow2 (power-of-two scales, shift only)"})
    observer: str = field(default="minmax", metadata={
        "help": "activation ranges: minmax | percentile(p) | mse | entropy", "check": _observer_check})
    percentile: float = field(default=99.99, metadata={"help": "p for observer=percentile",
                                                       "check": in_range(0, 100, lo_open=True)})
    per_channel: bool = field(default=True, metadata={"help": "per-output-channel weight scales"})
    symmetric: bool = field(default=True, metadata={"help": "symmetric activations (zero point 0)"})
    cle: bool = field(default=False, metadata={"help": "cross-layer equalization before quantizing"})
    bias_correction: bool = field(default=False, metadata={"help": "correct the bias shift weight rounding causes"})
    skip: list[str] = field(default_factory=list, metadata={"help": "layers kept in float"})
    sensitivity: bool = field(default=True, metadata={"help": "per-layer sensitivity analysis in the report"})
    calib_samples: int = field(default=256, metadata={"help": "calibration samples used", "check": in_range(1)})


@register_pass
class QuantizePass(Pass):
    """Static post-training int8 quantization from calibration data (``--calib``).

    Weights int8 symmetric per output channel, activations int8 per tensor, bias int32;
    conv/linear/add/cat/pools/flatten run as integer ops whose semantics are defined once in
    ``accelc.passes.quantize.ops``; everything else stays float between Quantize/Dequantize.
    Lossy: the record reports output error and top-1 agreement; details hold the per-layer
    scales, the float-kept nodes with reasons, and the per-layer sensitivity.
    """

    name = "quantize"
    Options = QuantizeOptions

    def run(self, gm: fx.GraphModule, ctx: CompileContext) -> fx.GraphModule:
        o = self.options
        pow2 = o.scheme == "pow2"
        spec = parse_observer(o.observer, o.percentile)
        if ctx.calib is None:
            raise UsageError("quantize needs calibration data", hint="pass --calib data.npz (inputs, optional "
                             "labels) or --calib digits; in Python: accelc.compile(..., calib=...)")
        propagate_shapes(gm, ctx.example_inputs)
        self._check_skip(gm, o.skip)
        details: dict = {"scheme": o.scheme, "observer": str(spec), "activations": "symmetric" if (o.symmetric or pow2)
                         else "asymmetric", "weights": "per-channel" if o.per_channel else "per-tensor"}
        if o.cle:
            details["cle"] = equalize(gm)
        plan = make_plan(gm, skip=set(o.skip))
        if not any(k in ("conv", "linear") for k in plan.kinds.values()):
            details["note"] = "no conv/linear layer to quantize"
        layers = {n.name: gm.get_submodule(n.target) for n in gm.graph.nodes if plan.kinds.get(n.name) in ("conv", "linear")}
        weights = {name: quantize_layer_weights(m, per_channel=o.per_channel, pow2=pow2) for name, m in layers.items()}
        batches = dataset_batches(gm, ctx.calib, ctx.batch_size, limit=o.calib_samples)
        observers = observe(gm, plan.observed, batches, spec, quiet=ctx.quiet)
        exits = _region_exits(gm, plan) | {n.name for n in gm.graph.nodes if n.op == "placeholder"}
        ranges = {name: ((obs.min, obs.max) if name in exits and obs.count else obs.range())
                  for name, obs in observers.items()}
        if spec.needs_histogram:
            details["unclipped_exits"] = sorted(exits & set(observers))
        qparams = inherit_qparams(gm, plan, {name: activation_qparams(*r, symmetric=o.symmetric, pow2=pow2)
                                             for name, r in ranges.items()})
        details["constant_activations"] = [n for n, obs in observers.items() if obs.amax == 0.0]
        shifts = None
        if o.bias_correction:
            shifts = bias_shift(gm, {name: (weights[name].dequantized(m.weight).double() - m.weight.double(),
                                            conv_apply(m) if isinstance(m, nn.Conv2d) else linear_apply(m))
                                     for name, m in layers.items()}, batches, quiet=ctx.quiet)
        build = lambda p: Rewriter(gm, p, qparams, weights, pow2=pow2, scheme=o.scheme, bias_shift=shifts)  # noqa: E731
        rewriter = build(plan)
        qgm = rewriter.run()
        details["float_nodes"] = dict(plan.float_nodes)
        details["layers"] = self._layer_table(gm, qgm, rewriter, plan, layers, qparams, batches[0])
        if o.sensitivity:
            details["sensitivity"] = self._sensitivity(gm, ctx, plan, build, o.skip)
        self.details = details
        return qgm

    @staticmethod
    def _check_skip(gm: fx.GraphModule, skip: list[str]) -> None:
        names = {n.name for n in gm.graph.nodes} | {str(n.target) for n in gm.graph.nodes if n.op == "call_module"}
        unknown = [s for s in skip if s not in names]
        if unknown:
            layers = [str(n.target) for n in gm.graph.nodes if n.op == "call_module"]
            raise PipelineError(f"quantize: skip names unknown layer(s) {', '.join(unknown)}",
                                hint=f"layers: {', '.join(layers)}")

    @staticmethod
    def _layer_table(gm, qgm, rewriter: Rewriter, plan, layers, qparams, batch) -> list[dict]:
        """Per int8 layer: scales, requantization range and its output SQNR vs float."""
        float_vals = _node_values(gm, batch, set(layers))
        targets = {name: rewriter.env[name] for name in layers}
        q_vals = _node_values(qgm, batch, {n.name for n in targets.values()})
        table = []
        for name, mod in layers.items():
            qmod = qgm.get_submodule(targets[name].target)
            qp: QParams = rewriter.qp_of[name]
            deq = (q_vals[targets[name].name].double() - qp.zero_point) * qp.scale
            m = compare([[float_vals[name]]], [[deq.float()]])
            table.append({"layer": name, "kind": plan.kinds[name], "input_scale": qmod.input_scale,
                          "output_scale": qmod.output_scale, "output_zero_point": qmod.y_zp,
                          "weight_scale_min": float(qmod.weight_scale.min()),
                          "weight_scale_max": float(qmod.weight_scale.max()),
                          "shift_min": int(qmod.shift.min()), "shift_max": int(qmod.shift.max()),
                          "output_sqnr_db": m.sqnr_db})
        return table

    @staticmethod
    def _sensitivity(gm, ctx: CompileContext, plan, build, skip) -> list[dict]:
        """Each compute layer quantized alone: output SQNR vs float, and top-1 accuracy when
        labelled data is at hand (eval, else calibration)."""
        data = ctx.eval if ctx.eval is not None and ctx.eval.labels is not None else (
            ctx.calib if ctx.calib.labels is not None else None)
        samples = ctx.samples()
        reference = run_samples(gm, samples)
        result = []
        labelled = None
        if data is not None:
            labelled = dataset_batches(gm, data, ctx.batch_size, limit=256)
            labels = torch.from_numpy(data.labels[:256])
        for name, kind in plan.kinds.items():
            if kind not in ("conv", "linear", "add", "cat"):
                continue
            single = build(make_plan(gm, skip=set(skip), only={name})).run()
            entry = {"layer": name, "kind": kind, "sqnr_db": compare(reference, run_samples(single, samples)).sqnr_db}
            if labelled is not None:
                from accelc.compiler.verify import top1_accuracy
                entry["top1"] = round(top1_accuracy(run_samples(single, labelled), labels), 6)
            result.append(entry)
        return result


def _region_exits(gm: fx.GraphModule, plan) -> set[str]:
    """Observed tensors that leave the int8 region (consumed by float nodes or the output),
    followed through scale-preserving int8 ops. Clipping observers (percentile, mse, entropy)
    suit inner activations, but clipping what leaves — typically the logits — would flatten the
    very values the model's answer is read from, so these keep their full range (as do the
    model's inputs: clipping the data itself, e.g. the bright pixels of an image whose
    background dominates the histogram, destroys information no layer can recover)."""
    inherits = ("relu", "maxpool", "avgpool", "pass")
    exits = set()
    for node in reversed(list(gm.graph.nodes)):
        if node.name not in plan.kinds and node.name not in plan.absorbed:
            continue
        leaves = any(not plan.is_int8(u) for u in node.users) or any(
            u.name in exits and plan.kinds.get(u.name) in inherits for u in node.users)
        if leaves:
            exits.add(node.name)
            if node.name in plan.absorbed:
                exits.add(plan.absorbed[node.name])
    return exits


def _node_values(gm: fx.GraphModule, batch, names: set[str]) -> dict[str, torch.Tensor]:
    values = {}

    class Rec(fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if n.name in names:
                values[n.name] = out.detach()
            return out

    with torch.no_grad():
        Rec(gm).run(*batch)
    return values

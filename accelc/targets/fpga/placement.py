"""Placement: which nodes of a pow2-quantized graph run on the accelerator, grouped into
segments that become one VTA program each.

A node goes to the accelerator when it is a ``QConv2d`` (groups 1 or depthwise) or a 2-D
``QLinear`` with pow2 requantization (multiplier 1, shifts 0..31, zero points 0) that the
lowering accepts for the configuration (:func:`unsupported_reason`). A ``QAdd`` whose one
operand is such a layer's output (and used by nothing else) is fused into that layer as a
residual epilogue. By default a first convolution with fewer than BLOCK_IN/4 input channels
stays on the host: padded to BLOCK_IN channels its GEMMs would run at C/BLOCK_IN utilisation
(the original VTA flow keeps it on the CPU too).

Segments are maximal runs, in topological order, of accelerator nodes; every other node
(pooling, flatten, float islands, quantize/dequantize, unsupported layers) is a host node.
Each decision carries its reason, for the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch.fx as fx

from accelc.compiler.analysis.shapes import shape_of
from accelc.passes.quantize.modules import QAdd, QConv2d, QLinear
from accelc.targets.fpga.config import VTAConfig
from accelc.targets.fpga.lower import AccelLayer, Residual, unsupported_reason


@dataclass
class Segment:
    nodes: list[fx.Node] = field(default_factory=list)  # accelerator nodes (layers and fused adds)
    layers: list[AccelLayer] = field(default_factory=list)

    def inputs(self) -> list[fx.Node]:
        inside = set(self.nodes)
        seen: dict[fx.Node, None] = {}
        for n in self.nodes:
            for a in n.all_input_nodes:
                if a not in inside:
                    seen[a] = None
        return list(seen)

    def outputs(self) -> list[fx.Node]:
        inside = set(self.nodes)
        return [n for n in self.nodes if any(u not in inside for u in n.users) and not self._fused_into_add(n)]

    def _fused_into_add(self, n: fx.Node) -> bool:
        """A layer whose int8 output only feeds its fused residual add is not a segment output."""
        return any(layer.name == n.name and layer.residual is not None for layer in self.layers)


@dataclass
class Placement:
    segments: list[Segment]
    where: dict[str, tuple[str, str]]  # node name → ("fpga" | "host", reason)


def _exponent(scale: float) -> int | None:
    e = math.log2(scale) if scale > 0 else math.nan
    return int(e) if e == int(e) else None


def _layer_reason(m, x_shape, cfg: VTAConfig, first_conv: str, is_first: bool) -> str | None:
    if m.scheme != "pow2" or bool((m.mult != 1).any()):
        return "not pow2-quantized (the accelerator requantizes by shifting only)"
    if m.x_zp or m.y_zp:
        return "asymmetric zero points (the accelerator assumes zero point 0)"
    if int(m.shift.min()) < 0 or int(m.shift.max()) > 31:
        return f"requantization shifts {int(m.shift.min())}..{int(m.shift.max())} outside the ALU's 0..31"
    if isinstance(m, QLinear) and len(x_shape) != 2:
        return "linear layer on a tensor of rank > 2"
    if isinstance(m, QConv2d) and is_first and first_conv != "fpga" and x_shape[1] < cfg.BLOCK_IN // 4:
        return (f"first conv with {x_shape[1]} input channel(s): padded to {cfg.BLOCK_IN} its GEMMs would run at "
                f"{x_shape[1]}/{cfg.BLOCK_IN} utilisation (kept on the host, as in the original VTA flow)")
    return None


def _accel_layer(node: fx.Node, m) -> AccelLayer:
    x = node.args[0]
    kind = "conv" if isinstance(m, QConv2d) else "linear"
    extra = dict(stride=m.stride, padding=m.padding, groups=m.groups) if kind == "conv" else {}
    return AccelLayer(name=node.name, kind=kind, input=x.name, input_shape=shape_of(x), output=node.name,
                      output_shape=shape_of(node), weight=m.weight.numpy(), bias=m.bias.numpy(),
                      shift=m.shift.numpy().astype(np.int64), lo=m.lo, hi=m.hi, **extra)


def _fusable_add(gm: fx.GraphModule, node: fx.Node, layer_out: fx.Node) -> Residual | None:
    if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), QAdd) or len(layer_out.users) != 1:
        return None
    add: QAdd = gm.get_submodule(node.target)
    a, b = node.args
    t_scale, r_scale, other = (add.a_scale, add.b_scale, b) if a is layer_out else (add.b_scale, add.a_scale, a)
    ea, eb, ey = _exponent(t_scale), _exponent(r_scale), _exponent(add.output_scale)
    if None in (ea, eb, ey) or add.a_zp or add.b_zp or add.y_zp or other is layer_out:
        return None
    return Residual(tensor=other.name, ea=ea, eb=eb, ey=ey, lo=add.lo, hi=add.hi)


def place(gm: fx.GraphModule, cfg: VTAConfig, *, first_conv: str = "auto") -> Placement:
    """Decide placement for a shape-propagated, quantized graph (see module doc)."""
    where: dict[str, tuple[str, str]] = {}
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    accel: dict[str, AccelLayer] = {}
    fused_add: dict[str, str] = {}  # add node → layer node it is fused into
    seen_conv = False
    for node in gm.graph.nodes:
        if node.op != "call_module":
            if node.op in ("call_function", "call_method"):
                where[node.name] = ("host", "no accelerator kernel")
            continue
        m = gm.get_submodule(node.target)
        if not isinstance(m, (QConv2d, QLinear)):
            if node.name not in fused_add:
                where[node.name] = ("host", "no accelerator kernel" if not isinstance(m, QAdd) else
                                    "residual add not fusable into a preceding accelerator layer")
            continue
        x_shape = shape_of(node.args[0])
        reason = _layer_reason(m, x_shape, cfg, first_conv, is_first=not seen_conv)
        seen_conv = seen_conv or isinstance(m, QConv2d)
        layer = None
        if reason is None:
            layer = _accel_layer(node, m)
            user = next(iter(node.users)) if len(node.users) == 1 else None
            residual = _fusable_add(gm, user, node) if user is not None and user.name not in fused_add else None
            # the other operand must already exist when this layer runs: fuse into the later layer
            if residual is not None and order[next(a for a in user.args if a is not node)] < order[node]:
                fused = AccelLayer(**{**_fields(layer), "output": user.name, "residual": residual})
                if unsupported_reason(fused, cfg) is None:
                    layer = fused
                    fused_add[user.name] = node.name
            reason = unsupported_reason(layer, cfg)
        if reason is None:
            accel[node.name] = layer
            where[node.name] = ("fpga", "int8 GEMM layer")
            if node.name in fused_add.values():
                add = next(a for a, n in fused_add.items() if n == node.name)
                where[add] = ("fpga", f"residual add fused into {node.name}")
        else:
            where[node.name] = ("host", reason)
    segments = _segments(gm, accel, fused_add)
    placed = {n.name for seg in segments for n in seg.nodes}
    for add, layer_name in fused_add.items():
        if add not in placed:  # host work between the layer and its add: run them unfused
            seg = next(sg for sg in segments if any(n.name == layer_name for n in sg.nodes))
            i = next(i for i, la in enumerate(seg.layers) if la.name == layer_name)
            layer = seg.layers[i]
            seg.layers[i] = AccelLayer(**{**_fields(layer), "output": layer_name})
            where[add] = ("host", "residual add separated from its layer by host work")
    return Placement(segments, where)


def _fields(layer: AccelLayer) -> dict:
    return dict(name=layer.name, kind=layer.kind, input=layer.input, input_shape=layer.input_shape,
                output=layer.output, output_shape=layer.output_shape, weight=layer.weight, bias=layer.bias,
                shift=layer.shift, lo=layer.lo, hi=layer.hi, stride=layer.stride, padding=layer.padding,
                groups=layer.groups)


def _segments(gm: fx.GraphModule, accel: dict[str, AccelLayer], fused_add: dict[str, str]) -> list[Segment]:
    """Runs of accelerator nodes in graph order. A host node between them breaks the run only
    if it consumes a value produced inside it; otherwise it can run before the segment (the
    segment's call is placed where its last node was)."""
    segments: list[Segment] = []
    current: Segment | None = None
    inside: set[fx.Node] = set()
    for node in gm.graph.nodes:
        if node.name in accel or (node.name in fused_add and current is not None
                                  and any(n.name == fused_add[node.name] for n in current.nodes)):
            if current is None:
                current, inside = Segment(), set()
                segments.append(current)
            current.nodes.append(node)
            inside.add(node)
            if node.name in accel:
                current.layers.append(accel[node.name])
        elif node.op in ("call_module", "call_function", "call_method", "output") and current is not None:
            if any(a in inside for a in node.all_input_nodes) or node.op == "output":
                current = None
    return segments

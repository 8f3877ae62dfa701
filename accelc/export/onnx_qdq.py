"""Quantized fx graph → ONNX in QDQ form (QuantizeLinear/DequantizeLinear around float ops).

The int8 tensors of accelc's graph stay int8 tensors in ONNX: each int8 layer becomes
``DequantizeLinear(x) → Conv/Gemm/Add (float, on DequantizeLinear'd int8 weights and int32
bias) → [Relu/Clip] → QuantizeLinear``, the pattern ONNX Runtime fuses into QLinearConv /
QLinearMatMul / QLinearAdd. Max-pool, flatten, reshape and concat run on int8 directly.
Float islands (softmax, unquantized layers, …) are exported as float ONNX ops.

What can differ from accelc's integer reference is the requantization rounding: ORT
requantizes with a float32 multiplier and rounds half to even, accelc with a 31-bit
fixed-point multiplier rounding half up (pow2: an exact shift). The agreement check in
:mod:`accelc.export.agreement` measures it.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from accelc.compiler.fused import activation_of
from accelc.errors import UnsupportedError
from accelc.passes.quantize.modules import (Dequantize, QAdd, QAvgPool2d, QConv2d, QLinear, QMaxPool2d, Quantize,
                                            Requantize)

OPSET = 17


class _Builder:
    def __init__(self, gm: fx.GraphModule):
        self.gm = gm
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.names: dict[str, str] = {}  # fx node name → onnx value name
        self.counter = 0

    def fresh(self, base: str) -> str:
        self.counter += 1
        return f"{base}__{self.counter}"

    def const(self, base: str, value: np.ndarray) -> str:
        name = self.fresh(base)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], base: str, **attrs) -> str:
        out = self.fresh(base)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    # QDQ helpers -------------------------------------------------------------------------
    def dq(self, x: str, scale, zp, base: str, axis: int | None = None) -> str:
        s = self.const(f"{base}_scale", np.asarray(scale, dtype=np.float32))
        z = self.const(f"{base}_zp", np.asarray(zp, dtype=np.int8 if np.asarray(zp).dtype != np.int32 else np.int32))
        kw = {"axis": axis} if axis is not None else {}
        return self.node("DequantizeLinear", [x, s, z], f"{base}_dq", **kw)

    def q(self, x: str, scale: float, zp: int, base: str) -> str:
        s = self.const(f"{base}_scale", np.float32(scale))
        z = self.const(f"{base}_zp", np.int8(zp))
        return self.node("QuantizeLinear", [x, s, z], f"{base}_q")

    def activation(self, x: str, act: str, base: str) -> str:
        if act == "relu":
            return self.node("Relu", [x], f"{base}_relu")
        if act == "relu6":
            return self.node("Clip", [x, self.const("zero", np.float32(0)), self.const("six", np.float32(6))],
                             f"{base}_relu6")
        return x


def _pair(v):
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


def int8_probes(gm: fx.GraphModule) -> list[str]:
    """fx names of the int8 values that leave the int8 region (inputs of Dequantize nodes)."""
    return [n.args[0].name for n in gm.graph.nodes
            if n.op == "call_module" and isinstance(gm.get_submodule(n.target), Dequantize)]


def export_onnx(gm: fx.GraphModule, example_inputs: tuple[torch.Tensor, ...], path: str,
                *, probes: list[str] | None = None) -> onnx.ModelProto:
    """Write ``gm`` (a canonical, possibly quantized graph) as an ONNX model at ``path``.

    ``probes`` names fx values to expose as extra int8 outputs ``int8:<name>`` (used by the
    agreement check to compare integer tensors, not just the final floats)."""
    b = _Builder(gm)
    inputs, outputs = [], []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            t = example_inputs[len(inputs)]
            inputs.append(helper.make_tensor_value_info(node.name, helper.np_dtype_to_tensor_dtype(
                t.numpy().dtype), list(t.shape)))
            b.names[node.name] = node.name
        elif node.op == "output":
            vals = node.args[0] if isinstance(node.args[0], (tuple, list)) else [node.args[0]]
            for i, v in enumerate(vals):
                name = "output" if len(vals) == 1 else f"output_{i}"
                b.nodes.append(helper.make_node("Identity", [b.names[v.name]], [name]))
                meta = v.meta.get("tensor_meta")
                dtype = helper.np_dtype_to_tensor_dtype(torch.empty(0, dtype=meta.dtype).numpy().dtype) if meta \
                    else TensorProto.FLOAT
                outputs.append(helper.make_tensor_value_info(name, dtype, list(meta.shape) if meta else None))
        elif node.op == "call_module":
            b.names[node.name] = _module(b, node, gm.get_submodule(node.target))
        elif node.op == "call_function":
            b.names[node.name] = _function(b, node)
        else:
            raise UnsupportedError(f"ONNX export: node {node.name} ({node.op}) is not supported")
    by_name = {n.name: n for n in gm.graph.nodes}
    for name in probes or []:
        out = f"int8:{name}"
        b.nodes.append(helper.make_node("Identity", [b.names[name]], [out]))
        meta = by_name[name].meta.get("tensor_meta")
        outputs.append(helper.make_tensor_value_info(out, TensorProto.INT8, list(meta.shape) if meta else []))
    graph = helper.make_graph(b.nodes, "accelc", inputs, outputs, b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="accelc")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return model


def _arg(b: _Builder, node: fx.Node, i: int = 0) -> str:
    return b.names[node.args[i].name]


def _module(b: _Builder, node: fx.Node, m: nn.Module) -> str:
    x = _arg(b, node)
    base = node.name
    if isinstance(m, Quantize):
        return b.q(x, m.scale, m.zero_point, base)
    if isinstance(m, Dequantize):
        return b.dq(x, np.float32(m.scale), np.int8(m.zero_point), base)
    if isinstance(m, (QConv2d, QLinear)):
        xf = b.dq(x, np.float32(m.input_scale), np.int8(m.x_zp), f"{base}_in")
        w = b.dq(b.const(f"{base}_w", m.weight.numpy()), m.weight_scale.numpy(),
                 np.zeros(m.out_channels, np.int8), f"{base}_w", axis=0)
        bias_scale = (np.float32(m.input_scale) * m.weight_scale.numpy()).astype(np.float32)
        bias = b.dq(b.const(f"{base}_b", m.bias.numpy()), bias_scale, np.zeros(m.out_channels, np.int32),
                    f"{base}_b", axis=0)
        if isinstance(m, QConv2d):
            y = b.node("Conv", [xf, w, bias], base, strides=list(m.stride), group=m.groups,
                       pads=[m.padding[0], m.padding[1], m.padding[0], m.padding[1]], kernel_shape=list(m.kernel_size))
        elif len(node.args[0].meta["tensor_meta"].shape) == 2:
            y = b.node("Gemm", [xf, w, bias], base, transB=1)
        else:
            wt = b.node("Transpose", [w], f"{base}_wt", perm=[1, 0])
            y = b.node("Add", [b.node("MatMul", [xf, wt], base), bias], base)
        return b.q(b.activation(y, m.activation, base), m.output_scale, m.y_zp, base)
    if isinstance(m, QAdd):
        a = b.dq(x, np.float32(m.a_scale), np.int8(m.a_zp), f"{base}_a")
        c = b.dq(_arg(b, node, 1), np.float32(m.b_scale), np.int8(m.b_zp), f"{base}_b")
        y = b.activation(b.node("Add", [a, c], base), m.activation, base)
        return b.q(y, m.output_scale, m.y_zp, base)
    if isinstance(m, Requantize):
        y = b.dq(x, np.float32(m.input_scale), np.int8(m.x_zp), base)
        if m.lo > -128 and m.lo == m.y_zp:
            y = b.node("Relu", [y], f"{base}_relu")
        return b.q(y, m.output_scale, m.y_zp, base)
    if isinstance(m, QMaxPool2d):
        return b.node("MaxPool", [x], base, kernel_shape=list(m.kernel), strides=list(m.stride),
                      pads=[m.padding[0], m.padding[1], m.padding[0], m.padding[1]], ceil_mode=int(m.ceil_mode))
    if isinstance(m, QAvgPool2d):
        # int8 average pooling through QDQ: DQ → AveragePool → Q at the same scale
        y = b.dq(x, np.float32(m.scale), np.int8(m.zero_point), base)
        y = b.node("AveragePool", [y], base, kernel_shape=list(m.kernel), strides=list(m.kernel))
        return b.q(y, m.scale, m.zero_point, base)
    if isinstance(m, nn.Conv2d):
        w = b.const(f"{base}_w", m.weight.detach().numpy())
        ins = [x, w] + ([b.const(f"{base}_b", m.bias.detach().numpy())] if m.bias is not None else [])
        y = b.node("Conv", ins, base, strides=list(m.stride), group=m.groups, dilations=list(m.dilation),
                   pads=[m.padding[0], m.padding[1], m.padding[0], m.padding[1]], kernel_shape=list(m.kernel_size))
        return b.activation(y, activation_of(m), base)
    if isinstance(m, nn.Linear):
        ins = [x, b.const(f"{base}_w", m.weight.detach().numpy())]
        if m.bias is not None:
            ins.append(b.const(f"{base}_b", m.bias.detach().numpy()))
        return b.activation(b.node("Gemm", ins, base, transB=1), activation_of(m), base)
    raise UnsupportedError(f"ONNX export: layer {node.target} ({type(m).__name__}) has no ONNX mapping")


def _function(b: _Builder, node: fx.Node) -> str:
    t, base = node.target, node.name
    if t is torch.flatten:
        start = node.kwargs.get("start_dim", node.args[1] if len(node.args) > 1 else 0)
        return b.node("Flatten", [_arg(b, node)], base, axis=start)
    if t is torch.reshape:
        return b.node("Reshape", [_arg(b, node), b.const(f"{base}_shape", np.array(node.args[1], np.int64))], base)
    if t is torch.cat:
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        return b.node("Concat", [b.names[a.name] for a in node.args[0]], base, axis=dim)
    unary = {torch.relu: "Relu", torch.sigmoid: "Sigmoid", torch.tanh: "Tanh", torch.exp: "Exp"}
    if t in unary:
        return b.node(unary[t], [_arg(b, node)], base)
    if t in (torch.log_softmax, torch.softmax):
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else -1)
        return b.node("LogSoftmax" if t is torch.log_softmax else "Softmax", [_arg(b, node)], base, axis=dim)
    if t in (torch.add, torch.mul, torch.sub):
        op = {torch.add: "Add", torch.mul: "Mul", torch.sub: "Sub"}[t]
        ins = [b.names[a.name] if isinstance(a, fx.Node) else b.const(f"{base}_c", np.float32(a)) for a in node.args[:2]]
        return b.node(op, ins, base)
    if t is F.adaptive_avg_pool2d:
        return b.node("GlobalAveragePool", [_arg(b, node)], base)
    if t is F.max_pool2d:
        k = _pair(node.kwargs.get("kernel_size", node.args[1] if len(node.args) > 1 else None))
        s = node.kwargs.get("stride") or k
        return b.node("MaxPool", [_arg(b, node)], base, kernel_shape=k, strides=_pair(s))
    if t is F.relu6:
        return b.activation(_arg(b, node), "relu6", base)
    raise UnsupportedError(f"ONNX export: function {getattr(t, '__name__', t)} (node {node.name}) has no ONNX mapping",
                           hint="keep the exported graph to conv/linear/pool/add/cat/activations, or extend "
                                "accelc.export.onnx_qdq")


__all__ = ["OPSET", "export_onnx", "int8_probes"]

"""How closely ONNX Runtime reproduces accelc's integer reference on an exported model.

Two measurements, in units of the int8 least significant bit (LSB):

* **per layer** — each int8 layer exported on its own and fed the reference's own int8
  inputs, so rounding differences are measured where they arise and cannot compound;
* **end to end** — the whole model; every int8 tensor leaving the int8 region is exposed as an
  extra ONNX output, plus the final float outputs (top-1 agreement).

The verdict (per layer) is ``exact``, ``within 1 LSB`` or ``differs by up to k LSB``; when not
exact the report says why.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.fx as fx

from accelc.compiler.analysis.shapes import propagate_shapes
from accelc.compiler.analysis.subgraph import single_node_module
from accelc.compiler.verify import compare, flat_outputs
from accelc.errors import UsageError
from accelc.passes.quantize.modules import QAdd, QAvgPool2d, QConv2d, QLinear, QMaxPool2d, Requantize

WHY = ("ONNX Runtime requantizes with a float32 multiplier (input_scale·weight_scale/output_scale) and rounds "
       "half to even; accelc's reference uses a 31-bit fixed-point multiplier and rounds half up (pow2: an "
       "exact shift, so exact .5 ties are common and are the usual 1-LSB difference). ORT's average pool "
       "rounds in float. End to end, a 1-LSB difference in one layer changes the next layer's input, so "
       "differences compound with depth; the per-layer figures isolate the rounding rule.")
_INT8_LAYERS = (QConv2d, QLinear, QAdd, Requantize, QAvgPool2d, QMaxPool2d)


def _session(path):
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise UsageError("the agreement check needs onnxruntime", hint="pip install onnxruntime") from e
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _record(gm: fx.GraphModule, batch) -> tuple[list[np.ndarray], dict[str, torch.Tensor]]:
    values: dict[str, torch.Tensor] = {}

    class Rec(fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            values[n.name] = out.detach() if isinstance(out, torch.Tensor) else out
            return out

    with torch.no_grad():
        outs = flat_outputs(Rec(gm).run(*batch))
    return [o.numpy() for o in outs], values


def _lsb(got: np.ndarray, want: np.ndarray) -> tuple[int, int, int]:
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    return diff.size, int((diff > 0).sum()), int(diff.max()) if diff.size else 0


def _add(rec: dict, stats: tuple[int, int, int]) -> None:
    rec["elements"] += stats[0]
    rec["differing"] += stats[1]
    rec["max_lsb"] = max(rec["max_lsb"], stats[2])


def layer_agreement(gm: fx.GraphModule, recorded: list[dict[str, torch.Tensor]], workdir: Path) -> dict[str, dict]:
    from accelc.export.onnx_qdq import export_onnx

    result = {}
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), _INT8_LAYERS):
            continue
        sub, examples = single_node_module(gm, node)
        propagate_shapes(sub, examples)
        path = workdir / f"{node.name}.onnx"
        export_onnx(sub, examples, str(path))
        sess = _session(path)
        names = [i.name for i in sess.get_inputs()]
        rec = {"kind": type(gm.get_submodule(node.target)).__name__, "elements": 0, "differing": 0, "max_lsb": 0}
        for values in recorded:
            feed = {n: values[a.name].numpy() for n, a in zip(names, node.all_input_nodes)}
            (got,) = sess.run(None, feed)
            _add(rec, _lsb(got, values[node.name].numpy()))
        result[node.name] = rec
    return result


def ort_agreement(onnx_path: str | Path, gm: fx.GraphModule, batches: list[tuple[torch.Tensor, ...]],
                  probes: list[str]) -> dict:
    sess = _session(onnx_path)
    in_names = [i.name for i in sess.get_inputs()]
    out_names = [o.name for o in sess.get_outputs()]
    n_final = sum(1 for n in out_names if not n.startswith("int8:"))
    end_to_end = {p: {"elements": 0, "differing": 0, "max_lsb": 0} for p in probes}
    ref_final, ort_final, recorded = [], [], []
    for batch in batches:
        got = sess.run(None, {n: t.numpy() for n, t in zip(in_names, batch)})
        ref_out, values = _record(gm, batch)
        recorded.append(values)
        ref_final.append([torch.from_numpy(o) for o in ref_out])
        ort_final.append([torch.from_numpy(o) for o in got[:n_final]])
        for name, value in zip(out_names[n_final:], got[n_final:]):
            _add(end_to_end[name.removeprefix("int8:")], _lsb(value, values[name.removeprefix("int8:")].numpy()))
    with tempfile.TemporaryDirectory() as d:
        per_layer = layer_agreement(gm, recorded[:8], Path(d))
    worst = max((r["max_lsb"] for r in per_layer.values()), default=0)
    verdict = "exact" if worst == 0 else ("within 1 LSB" if worst <= 1 else f"differs by up to {worst} LSB")
    import onnxruntime as ort

    result = {"verdict": verdict, "samples": sum(int(b[0].shape[0]) for b in batches), "onnxruntime": ort.__version__,
              "per_layer": per_layer, "end_to_end": {"int8_tensors": end_to_end,
                                                     "final_outputs": compare(ref_final, ort_final).to_dict()}}
    if verdict != "exact" or any(r["max_lsb"] for r in end_to_end.values()):
        result["why"] = WHY
    return result

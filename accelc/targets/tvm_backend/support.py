"""Which nodes TVM's PyTorch frontend can lower: each op node is exported on its own and the
aten ops it becomes are looked up in the frontend's converter table (plus accelc's own
converters). Results are cached per (op, argument shapes)."""

from __future__ import annotations

import functools

import torch
import torch.fx as fx

from accelc.compiler.analysis.subgraph import single_node_module
from accelc.targets.base import Support
from accelc.targets.tvm_backend.importer import custom_converters, export_graph


@functools.lru_cache(maxsize=1)
def frontend_ops() -> frozenset[str]:
    from tvm.relax.frontend.torch.exported_program_translator import ExportedProgramImporter

    return frozenset(ExportedProgramImporter().create_convert_map())


def _op_key(target) -> str:
    if isinstance(target, torch._ops.OpOverload):
        name = target._schema.name.split("::")[-1]
        ns = target.namespace
        base = f"{name}.{target._overloadname}"
        return base if ns == "aten" else f"{ns}.{base}"
    return getattr(target, "__name__", str(target))


def tvm_support_map(gm: fx.GraphModule) -> dict[str, Support]:
    """Support of every call node of a shape-propagated graph."""
    known = frontend_ops() | frozenset(custom_converters())
    cache: dict[tuple, Support] = {}
    result = {}
    for node in gm.graph.nodes:
        if node.op not in ("call_module", "call_function", "call_method"):
            continue
        key = _signature(gm, node)
        if key not in cache:
            cache[key] = _check(gm, node, known)
        result[node.name] = cache[key]
    return result


def _signature(gm, node) -> tuple:
    shapes = tuple(tuple(a.meta["tensor_meta"].shape) if "tensor_meta" in a.meta else None
                   for a in node.all_input_nodes)
    what = type(gm.get_submodule(node.target)) if node.op == "call_module" else node.target
    consts = tuple(repr(a) for a in node.args if not isinstance(a, fx.Node))
    return (node.op, what, shapes, consts, repr(sorted(node.kwargs.items(), key=lambda kv: kv[0])))


def _check(gm: fx.GraphModule, node: fx.Node, known: frozenset[str]) -> Support:
    try:
        sub, examples = single_node_module(gm, node)
        ep = export_graph(sub, examples)
    except Exception as e:  # noqa: BLE001 - any failure means "cannot tell / cannot lower"
        return Support(False, f"cannot be exported on its own ({type(e).__name__})")
    missing = sorted({_op_key(n.target) for n in ep.graph.nodes
                      if n.op == "call_function" and _op_key(n.target) not in known
                      and not _op_key(n.target).startswith("_operator")})
    return Support(not missing, f"no TVM converter for {', '.join(missing)}" if missing else "")

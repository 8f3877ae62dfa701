"""A graph seen as a sequence: its compute nodes in topological order, and what each cut costs.

Stages are contiguous ranges of this order. Positions ``0 … n−1`` are the compute nodes
(``call_module``/``call_function``/``call_method``) in the graph's own order, which torch.fx
keeps topological; a *cut at p* (``0 < p < n``) separates positions ``< p`` from ``≥ p``.

For every cut the sequence knows:

* the **values crossing it** — every graph input or node output defined before the cut and
  used at or after it (the graph's outputs count as used at the end). Skip connections
  therefore cross every cut they span, and a stage passes on the ones it does not use;
* the **bytes crossing it** (per microbatch, from the recorded shapes);
* whether it is **allowed**: not when a crossing value is not a single tensor (a tuple or a
  Python value cannot be sent between processes), and not when it would separate two uses
  of one parameter or module state (tied weights, a module called twice): every parameter
  and buffer must live in exactly one stage, or training would update copies apart.

``get_attr`` nodes are not positions: each stage that reads a constant gets its own copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.fx as fx

from accelc.compiler.analysis.shapes import output_meta
from accelc.passes.partition.costs import COMPUTE_OPS, NodeCompute


@dataclass(frozen=True)
class CutBlock:
    """Why cuts in ``(start, stop]`` are not allowed."""

    start: int
    stop: int
    reason: str


def _tensor_bytes(node: fx.Node) -> int | None:
    meta = output_meta(node)
    if meta is None:
        return None
    return int(np.prod(meta.shape, dtype=np.int64)) * meta.dtype.itemsize


class NodeSequence:
    """The compute nodes of ``gm`` in order, with per-node costs and per-cut crossing values.

    ``gm`` must carry shape metadata (``propagate_shapes``); ``costs`` maps node names to
    their forward+backward cost (nodes missing from it cost nothing).
    """

    def __init__(self, gm: fx.GraphModule, costs: dict[str, NodeCompute]):
        self.gm = gm
        self.nodes: list[fx.Node] = [n for n in gm.graph.nodes if n.op in COMPUTE_OPS]
        self.inputs: list[fx.Node] = [n for n in gm.graph.nodes if n.op == "placeholder"]
        self.position = {n: i for i, n in enumerate(self.nodes)}
        n = len(self.nodes)
        zero = NodeCompute(0, 0.0)
        self.flops = np.array([costs.get(v.name, zero).flops for v in self.nodes], dtype=np.int64)
        self.seconds = np.array([costs.get(v.name, zero).seconds for v in self.nodes], dtype=np.float64)
        self.activation_bytes = np.array([_tensor_bytes(v) or 0 for v in self.nodes], dtype=np.int64)
        self.params = np.zeros(n, dtype=np.int64)
        self.param_bytes = np.zeros(n, dtype=np.int64)
        self.blocks: list[CutBlock] = []
        self._attribute_state()
        self._find_crossings()

    def __len__(self) -> int:
        return len(self.nodes)

    # ------------------------------------------------------------------ state ownership
    def _state_used_by(self, node: fx.Node) -> list[tuple[str, torch.Tensor]]:
        """Parameters and buffers ``node`` reads that must stay in one stage, with their names."""
        if node.op == "call_module":
            mod = self.gm.get_submodule(node.target)
            prefix = f"{node.target}."
            return ([(prefix + k, t) for k, t in mod.named_parameters(remove_duplicate=False)]
                    + [(prefix + k, t) for k, t in mod.named_buffers(remove_duplicate=False)])
        used = []
        for a in node.all_input_nodes:
            if a.op == "get_attr":
                t = self.gm.get_parameter(a.target) if _is_parameter(self.gm, a.target) else None
                if t is not None:
                    used.append((a.target, t))
        return used

    def _attribute_state(self) -> None:
        """Params/bytes go to the first node using them; multiple users pin a range together."""
        uses: dict[int, tuple[str, list[int], torch.Tensor]] = {}
        for i, node in enumerate(self.nodes):
            for name, t in self._state_used_by(node):
                entry = uses.setdefault(id(t), (name, [], t))
                entry[1].append(i)
        for name, positions, t in uses.values():
            first = positions[0]
            if isinstance(t, torch.nn.Parameter):
                self.params[first] += t.numel()
            self.param_bytes[first] += t.numel() * t.element_size()
            if positions[-1] > first:
                self.blocks.append(CutBlock(first, positions[-1],
                                            f"{name} is used by {self.nodes[first].name} and "
                                            f"{self.nodes[positions[-1]].name}, which must share a stage"))

    # ------------------------------------------------------------------ crossing values
    def _find_crossings(self) -> None:
        """Each value's live range ``(defined, last use]`` in cut positions, and bytes per cut."""
        n = len(self.nodes)
        end = n  # the output node uses values "at the end"
        self.live: list[tuple[fx.Node, int, int]] = []  # (value, defined at, last used at)
        delta = np.zeros(n + 2, dtype=np.int64)
        for value in self.inputs + self.nodes:
            defined = -1 if value.op == "placeholder" else self.position[value]
            last = max((end if u.op == "output" else self.position.get(u, -1) for u in value.users), default=-1)
            if last <= defined:
                continue
            self.live.append((value, defined, last))
            nbytes = _tensor_bytes(value)
            if nbytes is None:
                self.blocks.append(CutBlock(defined, last, f"{value.name} is not a single tensor "
                                                           "and cannot be sent between stages"))
                continue
            delta[defined + 1] += nbytes
            delta[last + 1] -= nbytes
        # cut_bytes[p] for p in 0..n: bytes live across cut p (0 and n are the pipeline's ends)
        self.cut_bytes = np.cumsum(delta)[: n + 1]
        self.cut_bytes[0] = 0
        self.cut_bytes[n] = 0
        self.allowed = np.ones(n + 1, dtype=bool)
        for b in self.blocks:
            self.allowed[b.start + 1: b.stop + 1] = False
        self.allowed[0] = self.allowed[n] = True

    def crossing(self, p: int) -> list[fx.Node]:
        """Values crossing the cut at ``p``, in graph order (inputs first)."""
        return [v for v, defined, last in self.live if defined < p <= last]

    def block_reason(self, p: int) -> str | None:
        return next((b.reason for b in self.blocks if b.start < p <= b.stop), None)


def _is_parameter(gm: fx.GraphModule, target: str) -> bool:
    owner, _, attr = target.rpartition(".")
    mod = gm.get_submodule(owner) if owner else gm
    return attr in mod._parameters

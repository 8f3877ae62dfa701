"""Layered (Sugiyama-style) layout of a DAG, for drawing computation graphs top to bottom.

1. Layers: longest path from the sources (networkx ``topological_generations``); a source that
   is not pinned to the top (e.g. a constant) moves down to just above its first consumer.
2. Edges that span several layers get a chain of dummy points, one per layer they cross, so
   they route between the nodes instead of through them.
3. Order within a layer: barycenter sweeps (down, up, …) to reduce crossings; ties keep the
   previous order, so the result is deterministic.
4. x positions: each sweep moves every node towards the mean x of its neighbours in the
   adjacent layer, keeping the order and the minimum gaps (an isotonic regression, solved
   exactly by pool-adjacent-violators).

Pure data in, pure data out; :mod:`accelc.report.graph_svg` draws the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import networkx as nx

NODE_H = 34.0
LAYER_GAP = 30.0
NODE_GAP = 18.0
DUMMY_W = 8.0
MARGIN = 12.0
SWEEPS = 6


@dataclass
class Box:
    id: str
    x: float          # centre
    y: float          # top
    width: float
    height: float
    layer: int
    dummy: bool = False


@dataclass
class Edge:
    src: str
    dst: str
    points: list[tuple[float, float]]   # from the bottom of src to the top of dst, via dummies


@dataclass
class Layout:
    boxes: dict[str, Box]
    edges: list[Edge]
    width: float
    height: float
    layers: int
    order: list[list[str]] = field(default_factory=list)   # real and dummy ids per layer


def _layers(g: nx.DiGraph, index: dict[str, int], pinned: set[str]) -> dict[str, int]:
    layer = {}
    for i, gen in enumerate(nx.topological_generations(g)):
        for n in gen:
            layer[n] = i
    # pull unpinned sources down next to their first consumer (reverse topological order, so a
    # chain of sources moves together)
    for n in reversed(list(nx.topological_sort(g))):
        if g.in_degree(n) == 0 and n not in pinned and g.out_degree(n) > 0:
            layer[n] = min(layer[s] for s in g.successors(n)) - 1
    return layer


def _isotonic(desired: Sequence[float], gaps: Sequence[float]) -> list[float]:
    """Positions closest (least squares) to ``desired`` with x[i+1] - x[i] ≥ gaps[i]."""
    offsets = [0.0]
    for gap in gaps:
        offsets.append(offsets[-1] + gap)
    target = [d - o for d, o in zip(desired, offsets)]
    blocks: list[list[float]] = []          # [sum, count]
    for t in target:
        blocks.append([t, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
    y = [s / c for s, c in blocks for _ in range(int(c))]
    return [v + o for v, o in zip(y, offsets)]


def layered_layout(nodes: Sequence[tuple[str, float]], edges: Iterable[tuple[str, str]], *,
                   pinned_top: Iterable[str] = ()) -> Layout:
    """Lay out ``nodes`` (``(id, width)``, in a topological or any stable order) and ``edges``.

    Edges to unknown nodes and self-loops are ignored. A graph with a cycle is laid out in the
    given node order (each node one layer below the previous).
    """
    index = {n: i for i, (n, _) in enumerate(nodes)}
    widths = {n: float(w) for n, w in nodes}
    g = nx.DiGraph()
    g.add_nodes_from(index)
    g.add_edges_from((u, v) for u, v in edges if u in index and v in index and u != v)
    if nx.is_directed_acyclic_graph(g):
        layer = _layers(g, index, set(pinned_top) & set(index))
    else:
        layer = {n: i for n, i in index.items()}
    # dummy chains for long edges; up/down adjacency between consecutive layers
    up: dict[str, list[str]] = {n: [] for n in index}
    down: dict[str, list[str]] = {n: [] for n in index}
    chains: list[tuple[str, str, list[str]]] = []
    for u, v in sorted(g.edges, key=lambda e: (index[e[1]], index[e[0]])):
        a, b = (u, v) if layer[u] < layer[v] else (v, u)
        path = [a]
        for k in range(layer[a] + 1, layer[b]):
            d = f"\0{u}\0{v}\0{k}"
            layer[d] = k
            widths[d] = DUMMY_W
            up[d], down[d] = [], []
            path.append(d)
        path.append(b)
        for p, q in zip(path, path[1:]):
            down[p].append(q)
            up[q].append(p)
        chains.append((u, v, path[1:-1]))
    n_layers = max(layer.values(), default=-1) + 1
    order: list[list[str]] = [[] for _ in range(n_layers)]
    for n in sorted(layer, key=lambda n: (index.get(n, -1), n)):
        order[layer[n]].append(n)
    # dummies were appended after all real nodes of their layer; start them next to their source
    for k in range(1, n_layers):
        pos = {n: i for i, n in enumerate(order[k - 1])}
        cur = {n: i for i, n in enumerate(order[k])}
        order[k].sort(key=lambda n: (_mean([pos[p] for p in up[n]], cur[n]), cur[n]))

    def sweep(layers: range, nbrs: dict[str, list[str]], adj: int) -> None:
        for k in layers:
            pos = {n: i for i, n in enumerate(order[k + adj])}
            cur = {n: i for i, n in enumerate(order[k])}
            order[k].sort(key=lambda n: (_mean([pos[p] for p in nbrs[n]], cur[n]), cur[n]))

    for s in range(SWEEPS):
        if s % 2 == 0:
            sweep(range(1, n_layers), up, -1)
        else:
            sweep(range(n_layers - 2, -1, -1), down, +1)

    # x: start packed, then pull towards neighbours keeping order and gaps
    x: dict[str, float] = {}
    for row in order:
        pos = 0.0
        for n in row:
            x[n] = pos + widths[n] / 2
            pos += widths[n] + NODE_GAP

    def place(layers: range, nbrs: dict[str, list[str]]) -> None:
        for k in layers:
            row = order[k]
            desired = [_mean([x[p] for p in nbrs[n]], x[n]) for n in row]
            gaps = [(widths[a] + widths[b]) / 2 + NODE_GAP for a, b in zip(row, row[1:])]
            for n, v in zip(row, _isotonic(desired, gaps)):
                x[n] = v

    for s in range(SWEEPS):
        if s % 2 == 0:
            place(range(1, n_layers), up)
        else:
            place(range(n_layers - 2, -1, -1), down)
    left = min((x[n] - widths[n] / 2 for n in x), default=0.0)
    shift = MARGIN - left
    boxes = {}
    for n in x:
        boxes[n] = Box(n, round(x[n] + shift, 1), round(MARGIN + layer[n] * (NODE_H + LAYER_GAP), 1), widths[n],
                       NODE_H, layer[n], dummy=n not in index)
    out_edges = []
    for u, v, dummies in chains:
        a, b = boxes[u], boxes[v]
        if a.layer > b.layer:      # only when the graph had a cycle
            a, b = b, a
        pts = [(a.x, a.y + a.height)] + [(boxes[d].x, boxes[d].y + NODE_H / 2) for d in dummies] + [(b.x, b.y)]
        out_edges.append(Edge(u, v, pts))
    width = max((bx.x + bx.width / 2 for bx in boxes.values()), default=0.0) + MARGIN
    height = MARGIN * 2 + max(n_layers, 1) * (NODE_H + LAYER_GAP) - LAYER_GAP
    real = {n: b for n, b in boxes.items() if not b.dummy}
    return Layout(real, out_edges, round(width, 1), round(height, 1), n_layers, order)


def _mean(values: list[float], default: float) -> float:
    return sum(values) / len(values) if values else default

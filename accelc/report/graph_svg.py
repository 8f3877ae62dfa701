"""Draw a computation graph (``report.json``'s ``graphs`` node lists) as inline SVG, laid out
by :func:`accelc.report.layout.layered_layout`. Each node is a ``g.node`` with its op and
output shape; the full name, kind, FLOPs, params and (fpga) placement are in its tooltip and
``data-*`` attributes. Nodes are coloured by role, or by placement (host/fpga) when given."""

from __future__ import annotations

from typing import Mapping, Sequence

from accelc.report import fmt
from accelc.report.layout import Layout, layered_layout
from accelc.report.markup import Raw, svg_el

CHAR_W = 6.4
MIN_W, MAX_W = 84.0, 210.0
MAX_CHARS = 30


def node_label(node: Mapping) -> tuple[str, str]:
    op = str(node.get("op") or node.get("kind") or "?")
    if node.get("kind") in ("placeholder", "output"):
        op = f"{node['kind']} {node['name']}" if node["kind"] == "placeholder" else "output"
    return op, fmt.shape(node.get("shape"))


def node_width(node: Mapping) -> float:
    longest = max(len(s[:MAX_CHARS]) for s in node_label(node))
    return max(MIN_W, min(MAX_W, round(longest * CHAR_W + 18)))


def node_class(node: Mapping, placement: Mapping[str, Mapping] | None) -> str:
    if node.get("kind") in ("placeholder", "output"):
        return "io"
    if placement is not None and node["name"] in placement:
        return f"on-{placement[node['name']].get('on', 'host')}"
    return "compute" if node.get("flops") else "other"


def layout_graph(nodes: Sequence[Mapping]) -> Layout:
    names = {n["name"] for n in nodes}
    return layered_layout([(n["name"], node_width(n)) for n in nodes],
                          [(i, n["name"]) for n in nodes for i in n.get("inputs", []) if i in names],
                          pinned_top=[n["name"] for n in nodes if n.get("kind") == "placeholder"])


def _path(points: Sequence[tuple[float, float]]) -> str:
    (x0, y0), rest = points[0], points[1:]
    d = [f"M{x0:g},{y0:g}"]
    for x1, y1 in rest:
        my = round((y0 + y1) / 2, 1)
        d.append(f"C{x0:g},{my:g} {x1:g},{my:g} {x1:g},{y1:g}")
        x0, y0 = x1, y1
    return " ".join(d)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"


def graph_svg(nodes: Sequence[Mapping], *, id: str, title: str,
              placement: Mapping[str, Mapping] | None = None) -> Raw:
    """An ``<svg id=id class="graph">`` drawing of ``nodes`` (name/kind/op/inputs/shape/flops/params)."""
    lay = layout_graph(nodes)
    marker = f"{id}-arrow"
    parts: list[Raw] = [svg_el("title", title),
                        svg_el("defs", svg_el("marker", svg_el("path", d="M0,0 L8,4 L0,8 z", class_="arrowhead"),
                                              id=marker, viewBox="0 0 8 8", refX=8, refY=4, markerWidth=7,
                                              markerHeight=7, orient="auto"))]
    edges = [svg_el("path", d=_path(e.points), class_="edge", data_src=e.src, data_dst=e.dst,
                    marker_end=f"url(#{marker})") for e in lay.edges]
    parts.append(svg_el("g", edges, class_="edges"))
    drawn = []
    for n in nodes:
        box = lay.boxes[n["name"]]
        op, shp = node_label(n)
        cls = node_class(n, placement)
        tip = [f"{n['name']} ({n.get('kind')})", f"op: {n.get('op')}", f"shape: {shp}"]
        if n.get("flops"):
            tip.append(f"FLOPs: {n['flops']:,}")
        if n.get("params"):
            tip.append(f"params: {n['params']:,}")
        if placement is not None and n["name"] in placement:
            tip.append(f"on {placement[n['name']].get('on')}: {placement[n['name']].get('why', '')}")
        left = box.x - box.width / 2
        drawn.append(svg_el(
            "g",
            svg_el("title", "\n".join(tip)),
            svg_el("rect", x=f"{left:g}", y=f"{box.y:g}", width=f"{box.width:g}", height=f"{box.height:g}", rx=5),
            svg_el("text", _clip(op), x=f"{box.x:g}", y=f"{box.y + 14:g}", class_="op"),
            svg_el("text", _clip(shp), x=f"{box.x:g}", y=f"{box.y + 27:g}", class_="shape"),
            class_=f"node {cls}", data_name=n["name"], data_layer=box.layer))
    parts.append(svg_el("g", drawn, class_="nodes"))
    return svg_el("svg", parts, id=id, class_="graph", width=f"{lay.width:g}", height=f"{lay.height:g}",
                  viewBox=f"0 0 {lay.width:g} {lay.height:g}", role="img", aria_label=title,
                  data_nodes=len(nodes), data_edges=len(lay.edges), data_layers=lay.layers)

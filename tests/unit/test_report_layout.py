"""The report's graph layout and drawing: layers, dummy points for long edges, no overlaps,
determinism, and the SVG it turns into."""

import re

import networkx as nx
from hypothesis import given
from hypothesis import strategies as st

from accelc.report.graph_svg import graph_svg, layout_graph
from accelc.report.layout import NODE_GAP, _isotonic, layered_layout


def _nodes(names, w=100):
    return [(n, w) for n in names]


def test_chain_is_one_straight_column():
    lay = layered_layout(_nodes("abcd"), [("a", "b"), ("b", "c"), ("c", "d")])
    assert [lay.boxes[n].layer for n in "abcd"] == [0, 1, 2, 3]
    assert len({lay.boxes[n].x for n in "abcd"}) == 1
    ys = [lay.boxes[n].y for n in "abcd"]
    assert ys == sorted(ys) and len(set(ys)) == 4
    assert all(len(e.points) == 2 for e in lay.edges)


def test_diamond_branches_side_by_side_and_join_centred():
    lay = layered_layout(_nodes("abcd"), [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")])
    b, c = lay.boxes["b"], lay.boxes["c"]
    assert b.layer == c.layer == 1 and abs(b.x - c.x) >= 100 + NODE_GAP - 1e-6
    assert abs(lay.boxes["d"].x - (b.x + c.x) / 2) < 1.0
    assert abs(lay.boxes["a"].x - lay.boxes["d"].x) < 1.0


def test_long_edge_routes_through_dummy_points_beside_the_nodes():
    # a → b → c → d plus a skip edge a → d (a residual connection)
    lay = layered_layout(_nodes("abcd"), [("a", "b"), ("b", "c"), ("c", "d"), ("a", "d")])
    skip = next(e for e in lay.edges if (e.src, e.dst) == ("a", "d"))
    assert len(skip.points) == 4                       # bottom of a, 2 dummies (layers 1, 2), top of d
    for (x, _), n in zip(skip.points[1:-1], "bc"):
        box = lay.boxes[n]
        assert abs(x - box.x) >= box.width / 2          # the dummy is not inside b or c
    assert skip.points[0] == (lay.boxes["a"].x, lay.boxes["a"].y + lay.boxes["a"].height)
    assert skip.points[-1] == (lay.boxes["d"].x, lay.boxes["d"].y)


def test_unpinned_source_moves_next_to_its_consumer():
    # "w" (a constant) only feeds the last node; inputs stay on top
    lay = layered_layout(_nodes(["x", "a", "b", "w", "c"]), [("x", "a"), ("a", "b"), ("b", "c"), ("w", "c")],
                         pinned_top=["x"])
    assert lay.boxes["x"].layer == 0
    assert lay.boxes["w"].layer == lay.boxes["c"].layer - 1


def test_cycle_and_unknown_edges_do_not_break_the_layout():
    lay = layered_layout(_nodes("abc"), [("a", "b"), ("b", "c"), ("c", "a"), ("a", "zz"), ("b", "b")])
    assert set(lay.boxes) == {"a", "b", "c"} and lay.layers == 3
    empty = layered_layout([], [])
    assert empty.boxes == {} and empty.layers == 0


def test_isotonic_keeps_order_and_gaps_closest_to_wishes():
    assert _isotonic([0, 0, 0], [10, 10]) == [-10, 0, 10]
    assert _isotonic([0, 50, 100], [10, 10]) == [0, 50, 100]


@st.composite
def dags(draw):
    n = draw(st.integers(1, 25))
    edges = [(f"n{i}", f"n{j}") for j in range(n) for i in range(j)
             if draw(st.floats(0, 1)) < 0.2]
    widths = [draw(st.sampled_from([84, 120, 200])) for _ in range(n)]
    return [(f"n{i}", w) for i, w in enumerate(widths)], edges


@given(dags())
def test_random_dags_layers_respect_edges_and_boxes_never_overlap(graph):
    nodes, edges = graph
    lay = layered_layout(nodes, edges, pinned_top=["n0"])
    for u, v in edges:
        assert lay.boxes[u].layer < lay.boxes[v].layer
    by_layer = {}
    for b in lay.boxes.values():
        assert b.x - b.width / 2 >= 0 and b.x + b.width / 2 <= lay.width
        assert b.y + b.height <= lay.height
        by_layer.setdefault(b.layer, []).append(b)
    for row in by_layer.values():
        row.sort(key=lambda b: b.x)
        for a, b in zip(row, row[1:]):
            assert b.x - a.x >= (a.width + b.width) / 2 + NODE_GAP - 0.2
    assert len(lay.edges) == len(set(edges))
    assert layered_layout(nodes, edges, pinned_top=["n0"]) == lay          # deterministic


# --------------------------------------------------------------------------- drawing
GRAPH = [
    {"name": "x", "kind": "placeholder", "op": "placeholder", "inputs": [], "shape": [1, 3, 8, 8], "flops": 0,
     "params": 0},
    {"name": "conv", "kind": "call_module", "op": "Conv2d", "inputs": ["x"], "shape": [1, 4, 8, 8], "flops": 1000,
     "params": 112},
    {"name": "relu", "kind": "call_function", "op": "relu", "inputs": ["conv"], "shape": [1, 4, 8, 8], "flops": 256,
     "params": 0},
    {"name": "add", "kind": "call_function", "op": "add<&\"'>", "inputs": ["relu", "conv"], "shape": [1, 4, 8, 8],
     "flops": 256, "params": 0},
    {"name": "output", "kind": "output", "op": "output", "inputs": ["add"], "shape": None, "flops": 0, "params": 0},
]


def test_graph_svg_draws_every_node_and_edge_escaped():
    svg = graph_svg(GRAPH, id="g1", title="t <1>")
    assert svg.startswith('<svg id="g1" class="graph"')
    assert len(re.findall(r'<g class="node ', svg)) == 5
    assert len(re.findall(r'<path d="M[^"]*" class="edge"', svg)) == 5
    assert 'data-nodes="5"' in svg and 'data-edges="5"' in svg
    assert "add&lt;&amp;&quot;&#x27;&gt;" in svg and "add<&" not in svg
    assert "t &lt;1&gt;" in svg
    assert 'class="node io" data-name="x"' in svg and 'class="node compute" data-name="conv"' in svg
    assert "1×4×8×8" in svg and 'marker-end="url(#g1-arrow)"' in svg


def test_graph_svg_colours_by_placement():
    placement = {"conv": {"on": "fpga", "why": "int8 GEMM layer"}, "relu": {"on": "host", "why": "no kernel"}}
    svg = graph_svg(GRAPH, id="g2", title="t", placement=placement)
    assert 'class="node on-fpga" data-name="conv"' in svg
    assert 'class="node on-host" data-name="relu"' in svg
    assert "on fpga: int8 GEMM layer" in svg


def test_layout_of_a_summary_matches_the_networkx_dependency_graph():
    lay = layout_graph(GRAPH)
    g = nx.DiGraph([(i, n["name"]) for n in GRAPH for i in n["inputs"]])
    assert {e.src + ">" + e.dst for e in lay.edges} == {u + ">" + v for u, v in g.edges}
    assert lay.boxes["add"].layer == 3 and lay.boxes["output"].layer == 4

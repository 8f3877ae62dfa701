"""Horizontal bar charts as inline SVG: one row per item (a layer, a kernel, a pass), one or
more series per row (e.g. modelled vs simulated cycles). Rows keep the order given, so a chart
of layers reads top to bottom in execution order. Every bar is a ``rect.bar`` with
``data-value``; the chart carries ``data-rows`` and ``data-series`` for tests and scripts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

from accelc.report.markup import Raw, svg_el

ROW_H = 18          # px per series within a row
ROW_GAP = 6
LABEL_W = 260
BAR_W = 440
VALUE_W = 90
TOP = 26            # room for the axis labels
LABEL_CHARS = 38


@dataclass
class Row:
    label: str
    values: Sequence[float]
    tooltip: str = ""
    classes: str = ""                    # extra CSS classes for this row's bars (e.g. "on-fpga")
    value_text: Sequence[str] | None = None
    node: str | None = None              # the graph node this row is about (click → show it)


@dataclass
class Chart:
    id: str
    title: str
    rows: list[Row]
    series: list[str] = field(default_factory=lambda: ["value"])
    fmt: Callable[[float], str] = lambda v: f"{v:g}"
    max_value: float | None = None       # fix the scale (e.g. 1.0 for utilisation)
    graph: str | None = None             # id of the graph <svg> the rows' nodes are in


def nice_ticks(vmax: float, count: int = 4) -> list[float]:
    """Round tick values 0, s, 2s, … covering ``vmax`` with about ``count`` steps (s in 1/2/5×10^k)."""
    if vmax <= 0 or not math.isfinite(vmax):
        return [0.0]
    raw = vmax / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    n = int(math.floor(vmax / step + 1e-9))
    return [round(i * step, 12) for i in range(n + 1)]


def truncate(text: str, n: int = LABEL_CHARS) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _px(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def bar_chart(chart: Chart) -> Raw:
    """Render ``chart`` as an ``<svg>`` element (width fixed, height grows with the rows)."""
    n_series = len(chart.series)
    row_h = ROW_H * n_series + ROW_GAP
    legend_h = 20 if n_series > 1 else 0
    height = TOP + legend_h + row_h * len(chart.rows) + 6
    width = LABEL_W + BAR_W + VALUE_W
    finite = [v for r in chart.rows for v in r.values if v is not None and math.isfinite(v)]
    vmax = chart.max_value if chart.max_value is not None else max(finite, default=0.0)
    scale = BAR_W / vmax if vmax > 0 else 0.0
    top = TOP + legend_h
    parts: list[Raw] = [svg_el("title", chart.title)]
    if n_series > 1:
        x = LABEL_W
        for i, name in enumerate(chart.series):
            parts.append(svg_el("rect", x=x, y=4, width=12, height=12, class_=f"swatch s{i}"))
            parts.append(svg_el("text", name, x=x + 16, y=14, class_="legend"))
            x += 24 + 7 * len(name)
    axis = []
    for t in nice_ticks(vmax):
        x = LABEL_W + t * scale
        axis.append(svg_el("line", x1=_px(x), x2=_px(x), y1=top - 4, y2=height - 4, class_="grid"))
        axis.append(svg_el("text", chart.fmt(t), x=_px(x), y=top - 8, class_="tick"))
    parts.append(svg_el("g", axis, class_="axis"))
    rows = []
    for j, row in enumerate(chart.rows):
        y0 = top + j * row_h
        items: list[Raw] = [svg_el("title", row.tooltip or row.label),
                            svg_el("text", truncate(row.label), x=LABEL_W - 6, y=_px(y0 + row_h / 2 + 1),
                                   class_="label")]
        for i, value in enumerate(row.values):
            y = y0 + i * ROW_H
            v = value if value is not None and math.isfinite(value) else 0.0
            w = max(v * scale, 1.0 if v > 0 else 0.0)
            text = row.value_text[i] if row.value_text else chart.fmt(v)
            items.append(svg_el("rect", x=LABEL_W, y=_px(y + 2), width=_px(w), height=ROW_H - 4,
                                class_=" ".join(c for c in ("bar", f"s{i}", row.classes) if c),
                                data_value=repr(float(v))))
            items.append(svg_el("text", text, x=_px(LABEL_W + w + 4), y=_px(y + ROW_H / 2 + 1), class_="value"))
        rows.append(svg_el("g", items, class_="row", data_node=row.node))
    parts.append(svg_el("g", rows, class_="rows"))
    return svg_el("svg", parts, id=chart.id, class_="chart bar-chart", width=width, height=height,
                  viewBox=f"0 0 {width} {height}", role="img", aria_label=chart.title,
                  data_rows=len(chart.rows), data_series=n_series, data_graph=chart.graph)

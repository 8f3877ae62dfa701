"""HTML tables for the report: header cells, numeric columns right-aligned, optional
per-row CSS classes; every cell escaped unless it is :class:`~accelc.report.markup.Raw`."""

from __future__ import annotations

from typing import Any, Sequence

from accelc.report.markup import Raw, el


class Num(str):
    """A cell rendered right-aligned with tabular figures."""


def table(head: Sequence[str | Num], rows: Sequence[Sequence[Any]], *, id: str | None = None,
          row_classes: Sequence[str | None] | None = None, class_: str | None = None) -> Raw:
    ths = [el("th", h, class_="num" if isinstance(h, Num) else None) for h in head]
    body = []
    for i, row in enumerate(rows):
        tds = [el("td", c, class_="num" if isinstance(c, Num) or isinstance(head[j], Num) else None)
               for j, c in enumerate(row)]
        body.append(el("tr", tds, class_=row_classes[i] if row_classes else None))
    return el("table", el("thead", el("tr", ths)), el("tbody", body), id=id, class_=class_)


def kv_table(pairs: Sequence[tuple[str, Any]], *, id: str | None = None) -> Raw:
    """A two-column key/value table (th per row)."""
    return el("table", el("tbody", [el("tr", el("th", k), el("td", v)) for k, v in pairs]), id=id, class_="kv")

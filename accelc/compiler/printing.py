"""Human-readable graph dumps for ``--print-after``: fx code or a table."""

from __future__ import annotations

import torch.fx as fx

from accelc.compiler.analysis.cost import op_label
from accelc.compiler.analysis.shapes import shape_of


def format_table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def graph_table(gm: fx.GraphModule) -> str:
    rows = []
    for n in gm.graph.nodes:
        args = ", ".join(a.name if isinstance(a, fx.Node) else repr(a) for a in n.args)
        shape = shape_of(n)
        rows.append([n.name, n.op, op_label(gm, n) if n.op != "placeholder" else "input",
                     "x".join(map(str, shape)) if shape else "", args])
    return format_table(rows, ["node", "kind", "op", "shape", "args"])


def graph_text(gm: fx.GraphModule, fmt: str = "code") -> str:
    if fmt == "table":
        return graph_table(gm)
    return gm.print_readable(print_output=False)

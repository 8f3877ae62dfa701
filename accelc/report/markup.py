"""A tiny element builder for HTML and SVG: every text and attribute value is escaped,
already-rendered markup is wrapped in :class:`Raw`. Output is deterministic (attributes in
the order given, ``None``/``False`` attributes dropped)."""

from __future__ import annotations

import html
from typing import Iterable, Union

VOID = frozenset({"br", "hr", "img", "input", "meta", "link", "col"})


class Raw(str):
    """Markup that is already safe; inserted as is."""


Child = Union["Raw", str, int, float, None, Iterable]


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def render(children: Child) -> Raw:
    """Concatenate children: Raw as is, other scalars escaped, iterables flattened, None skipped."""
    if children is None or children is False:
        return Raw("")
    if isinstance(children, Raw):
        return children
    if isinstance(children, (str, int, float)):
        return Raw(esc(children))
    return Raw("".join(render(c) for c in children))


def attrs(**kw) -> str:
    parts = []
    for key, value in kw.items():
        if value is None or value is False:
            continue
        name = key.rstrip("_").replace("_", "-")
        parts.append(f" {name}" if value is True else f' {name}="{esc(value)}"')
    return "".join(parts)


def el(tag: str, *children: Child, **kw) -> Raw:
    """``el("td", "a<b", class_="num")`` → ``<td class="num">a&lt;b</td>``. Keyword names lose
    a trailing underscore and map ``_`` to ``-`` (``data_id`` → ``data-id``)."""
    if tag in VOID:
        return Raw(f"<{tag}{attrs(**kw)}>")
    return Raw(f"<{tag}{attrs(**kw)}>{render(children)}</{tag}>")


def svg_el(tag: str, *children: Child, **kw) -> Raw:
    """Like :func:`el`, but childless elements are self-closed (``<rect .../>``)."""
    inner = render(children)
    return Raw(f"<{tag}{attrs(**kw)}/>") if not inner else Raw(f"<{tag}{attrs(**kw)}>{inner}</{tag}>")

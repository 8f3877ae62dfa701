"""Number formatting for the report: short, fixed precision, deterministic."""

from __future__ import annotations

import math


def si(n: float | int | None, unit: str = "") -> str:
    """4615990 → '4.62M'; None → '—'."""
    if n is None:
        return "—"
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n:.3g}{unit}" if isinstance(n, float) else f"{n}{unit}"


def num(x: float | int | None, digits: int = 4) -> str:
    """A value with ``digits`` significant digits; None → '—'; NaN/inf spelled out."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return f"{x:,}"
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return f"{x:.{digits}g}"


def pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{100 * x:.{digits}f}%"


def ms(seconds: float | None) -> str:
    """Seconds → a readable duration."""
    if seconds is None:
        return "—"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def change(before: float | int | None, after: float | int | None) -> str:
    """'4.62M → 4.59M (−0.6%)'."""
    if before is None or after is None:
        return "—"
    text = f"{si(before)} → {si(after)}"
    if before and before != after:
        delta = (after - before) / before
        text += f" ({'+' if delta > 0 else '−'}{abs(delta) * 100:.1f}%)"
    return text


def shape(s) -> str:
    if s is None:
        return "?"
    if isinstance(s, (list, tuple)) and s and isinstance(s[0], (list, tuple)):
        return ", ".join(shape(x) for x in s)
    return "×".join(str(d) for d in s) if s else "scalar"

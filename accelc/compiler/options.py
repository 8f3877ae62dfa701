"""Typed pass options: a dataclass per pass, values parsed from pipeline text.

A pass declares ``Options`` as a dataclass; each field's type drives parsing (``int``,
``float``, ``bool``, ``str``, ``Literal[...]``, ``list[str]``, unions such as ``float | int``,
``X | None``) and ``field(metadata={"help": ..., "check": fn})`` adds a description and a
validator (``fn(value) -> error message | None``). Unknown names and bad values raise
:class:`PipelineError` listing what is valid.
"""

from __future__ import annotations

import dataclasses
import keyword
import types
import typing
from typing import Any, Literal, get_args, get_origin

from accelc.errors import PipelineError


def _split_list(text: str) -> list[str]:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return [t.strip() for t in text.replace("|", ",").split(",") if t.strip()]


def _parse_scalar(text: str, tp) -> Any:
    if tp is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if tp is int:
        return int(text)
    if tp is float:
        return float(text)
    if tp is str:
        return text
    if get_origin(tp) is Literal:
        choices = get_args(tp)
        if text in choices:
            return text
        raise ValueError(f"expected one of {', '.join(map(str, choices))}")
    raise TypeError(f"unsupported option type {tp}")


def parse_value(text: Any, tp) -> Any:
    """Parse ``text`` (a string from a pipeline, or an already-typed value) as ``tp``."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        alts = [a for a in get_args(tp) if a is not type(None)]
        if isinstance(text, str) and text.lower() in ("none", "null") and len(alts) < len(get_args(tp)):
            return None
        if text is None:
            return None
        # try int before float so rank=8 stays an integer while rank=0.5 is a fraction
        alts.sort(key=lambda a: {bool: 0, int: 1, float: 2}.get(a, 3))
        errors = []
        for alt in alts:
            try:
                return parse_value(text, alt)
            except (ValueError, TypeError) as e:
                errors.append(str(e))
        raise ValueError("; ".join(errors))
    if origin in (list, tuple):
        (elem,) = get_args(tp)[:1]
        items = _split_list(text) if isinstance(text, str) else list(text)
        return [parse_value(i, elem) for i in items]
    if not isinstance(text, str):
        if tp is float and isinstance(text, (int, float)) and not isinstance(text, bool):
            return float(text)
        if tp in (int, bool, str) and type(text) is tp:
            return text
        text = str(text)
    return _parse_scalar(text, tp)


def type_name(tp) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "|".join(map(str, get_args(tp)))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in get_args(tp) if a is not type(None))
    if origin in (list, tuple):
        return f"list of {type_name(get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def option_name(field_name: str) -> str:
    """The option's spelling in pipelines: a field named ``global_`` is the option ``global``
    (option names that are Python keywords get a trailing underscore in the dataclass)."""
    base = field_name[:-1] if field_name.endswith("_") else field_name
    return base if keyword.iskeyword(base) else field_name


def _field_name(option: str) -> str:
    return option + "_" if keyword.iskeyword(option) else option


def describe_options(cls) -> list[str]:
    """One line per option: ``name: type = default — help``."""
    hints = typing.get_type_hints(cls)
    lines = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "required")
        help_ = f.metadata.get("help", "")
        lines.append(f"{option_name(f.name)}: {type_name(hints[f.name])} = {default!r}" + (f" — {help_}" if help_ else ""))
    return lines


def build_options(cls, raw: dict[str, Any], *, owner: str) -> Any:
    """Instantiate the options dataclass ``cls`` from raw (string or typed) values."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for option, text in raw.items():
        key = _field_name(option)
        if key not in fields:
            valid = ", ".join(option_name(f) for f in fields) or "none"
            raise PipelineError(f"{owner}: unknown option {option!r}", hint=f"valid options of {owner}: {valid}")
        try:
            value = parse_value(text, hints[key])
        except (ValueError, TypeError) as e:
            raise PipelineError(f"{owner}: bad value {text!r} for option {option!r} ({e})",
                                hint=f"{option} takes {type_name(hints[key])}") from None
        check = fields[key].metadata.get("check")
        problem = check(value) if check else None
        if problem:
            raise PipelineError(f"{owner}: bad value {text!r} for option {option!r}: {problem}")
        values[key] = value
    return cls(**values)


def options_dict(opts) -> dict[str, Any]:
    if not dataclasses.is_dataclass(opts):
        return {}
    return {option_name(k): v for k, v in dataclasses.asdict(opts).items()}


def in_range(lo: float | None = None, hi: float | None = None, *, lo_open=False, hi_open=False):
    """A validator for numbers in [lo, hi] (open ends optional)."""
    def check(v):
        if v is None:
            return None
        if lo is not None and (v < lo or (lo_open and v == lo)):
            return f"must be {'>' if lo_open else '>='} {lo}"
        if hi is not None and (v > hi or (hi_open and v == hi)):
            return f"must be {'<' if hi_open else '<='} {hi}"
        return None
    return check

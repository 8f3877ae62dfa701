"""Pieces shared by the subcommands: option declaration with config-file support, model
options, small output helpers."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from accelc.errors import UsageError

DEFAULTS = "_accelc_defaults"


def add(parser: argparse.ArgumentParser, *flags: str, default: Any = None, **kw) -> None:
    """``add_argument`` whose default is applied only after the config file (see cli.main)."""
    action = parser.add_argument(*flags, default=argparse.SUPPRESS, **kw)
    getattr(parser, DEFAULTS)[action.dest] = default


def new_parser(sub, name: str, help_: str, description: str | None = None) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_, description=description or help_,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    setattr(p, DEFAULTS, {})
    add(p, "--config", metavar="FILE", help="accelc.toml or pyproject.toml with [tool.accelc] "
                                            "(default: ./accelc.toml or ./pyproject.toml if present)")
    add(p, "--quiet", "-q", action="store_true", default=False, help="no progress bars or chatter")
    add(p, "--debug", action="store_true", default=False, help="show Python tracebacks on errors")
    return p


def add_model_options(p: argparse.ArgumentParser, *, positional: bool = True) -> None:
    if positional:
        p.add_argument("model", nargs="?", default=None, metavar="MODEL",
                       help="model file: torch.export program (.pt2), or a pickled module with --trust-pickle")
    add(p, "--entry", metavar="FILE.py:FACTORY", help="build the model by calling FACTORY() from a Python file/module")
    add(p, "--weights", metavar="STATE.pt", help="state_dict for the --entry model (loaded with weights_only=True)")
    add(p, "--trust-pickle", action="store_true", default=False,
        help="allow loading a fully pickled module (executes code from the file)")
    add(p, "--input-shape", action="append", metavar="SHAPE[:DTYPE]", default=None,
        help="input shape such as 1x1x28x28 or 1x128:int64; repeat for several inputs")


def load_cli_model(args):
    from accelc.compiler.capture import load_model

    return load_model(args.model, entry=args.entry, weights=args.weights, trust_pickle=args.trust_pickle)


def parse_key_values(items: list[str] | dict | None, option: str) -> dict[str, str]:
    """``["k=v", ...]`` (or a TOML table) → dict."""
    if not items:
        return {}
    if isinstance(items, dict):
        return {str(k): v for k, v in items.items()}
    out = {}
    for item in items:
        for part in str(item).split(","):
            key, eq, value = part.partition("=")
            if not eq or not key.strip():
                raise UsageError(f"{option} {item!r}: expected key=value")
            out[key.strip().replace("-", "_")] = value.strip()
    return out


def split_list(values: list[str] | str | None) -> list[str]:
    """Repeatable options that also accept comma lists: ``--print-after fuse,quantize``."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [v.strip() for item in values for v in str(item).split(",") if v.strip()]


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def human(n: float) -> str:
    """1234567 → '1.23M'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:g}" if isinstance(n, float) else str(n)

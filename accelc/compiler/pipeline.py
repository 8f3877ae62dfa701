"""Textual pipelines: ``fuse,dsconv(rank=0.5),prune(ratio=0.3,round_to=16),quantize(scheme=pow2)``.

Grammar: ``pipeline := "" | spec ("," spec)*``; ``spec := NAME ["(" [opt ("," opt)*] ")"]``;
``opt := KEY "=" VALUE`` where VALUE may be a bracketed list ``[a,b]``. Parsing validates
pass names and options against the registry, so a typo fails before any work is done.
``str(Pipeline.parse(s))`` is the canonical spelling stored in manifests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from accelc.compiler.options import build_options, options_dict
from accelc.errors import PipelineError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def _split_top(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside parentheses and brackets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth < 0:
                raise PipelineError(f"unbalanced {ch!r} in pipeline {text!r}")
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise PipelineError(f"unbalanced parentheses in pipeline {text!r}")
    parts.append("".join(cur))
    return parts


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_fmt(x) for x in v) + "]"
    return str(v)


@dataclass(frozen=True)
class PassSpec:
    """One pipeline element: a pass name and its (validated) options."""

    name: str
    raw: tuple[tuple[str, str], ...] = ()
    options: Any = field(default=None, compare=False, hash=False)

    def __str__(self) -> str:
        if not self.raw:
            return self.name
        opts = options_dict(self.options)
        return f"{self.name}(" + ",".join(f"{k}={_fmt(opts.get(k, v))}" for k, v in self.raw) + ")"


class Pipeline:
    """An ordered list of passes with options."""

    def __init__(self, specs: list[PassSpec]):
        self.specs = list(specs)

    @classmethod
    def parse(cls, text: str) -> "Pipeline":
        from accelc.passes import get_pass  # registry lives with the passes

        text = (text or "").strip()
        if text in ("", "none"):
            return cls([])
        specs = []
        for part in _split_top(text):
            part = part.strip()
            if not part:
                raise PipelineError(f"empty pass name in pipeline {text!r}", hint="remove the stray comma")
            name, _, rest = part.partition("(")
            name = name.strip()
            if not _NAME.match(name):
                raise PipelineError(f"bad pass name {name!r} in pipeline {text!r}")
            raw: list[tuple[str, str]] = []
            if _:
                if not rest.endswith(")"):
                    raise PipelineError(f"missing ')' after options of {name!r} in pipeline {text!r}")
                body = rest[:-1].strip()
                for opt in _split_top(body) if body else []:
                    key, eq, value = opt.partition("=")
                    if not eq or not key.strip():
                        raise PipelineError(f"{name}: option {opt.strip()!r} is not key=value")
                    raw.append((key.strip(), value.strip()))
            pass_cls = get_pass(name)
            keys = [k for k, _ in raw]
            if len(set(keys)) != len(keys):
                raise PipelineError(f"{name}: an option is given twice in {part!r}")
            options = build_options(pass_cls.Options, dict(raw), owner=name)
            specs.append(PassSpec(name, tuple(raw), options))
        return cls(specs)

    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def __iter__(self):
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def __str__(self) -> str:
        return ",".join(str(s) for s in self.specs)

    def __repr__(self) -> str:
        return f"Pipeline({str(self)!r})"

"""Textual pipelines and typed options."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from accelc.compiler.options import build_options, in_range
from accelc.compiler.pipeline import Pipeline
from accelc.errors import PipelineError


def test_parse_and_print_round_trip():
    p = Pipeline.parse(" fuse ")
    assert p.names() == ["fuse"] and str(p) == "fuse"
    assert str(Pipeline.parse("")) == "" and len(Pipeline.parse("none")) == 0


@pytest.mark.parametrize("text, pattern", [
    ("fuse,bogus", r"unknown pass 'bogus'"),
    ("fuse(x=1)", r"unknown option 'x'"),
    ("fuse(", r"unbalanced"),
    ("fuse,,fuse", r"empty pass name"),
    ("fu se", r"bad pass name"),
])
def test_errors_name_the_problem(text, pattern):
    with pytest.raises(PipelineError, match=pattern):
        Pipeline.parse(text)


def test_unknown_pass_lists_available():
    with pytest.raises(PipelineError) as e:
        Pipeline.parse("nope")
    assert "fuse" in e.value.hint


@dataclass
class Opts:
    ratio: float = field(default=0.5, metadata={"check": in_range(0, 1, hi_open=True)})
    rank: float | int = 0.5
    scheme: Literal["fixed", "pow2"] = "fixed"
    per_channel: bool = True
    skip: list[str] = field(default_factory=list)
    limit: int | None = None


def test_typed_options():
    o = build_options(Opts, {"ratio": "0.25", "rank": "8", "scheme": "pow2", "per_channel": "false",
                             "skip": "[conv1,fc]", "limit": "none"}, owner="t")
    assert o == Opts(0.25, 8, "pow2", False, ["conv1", "fc"], None)
    assert isinstance(build_options(Opts, {"rank": "0.5"}, owner="t").rank, float)


@pytest.mark.parametrize("key, value, pattern", [
    ("ratio", "1.0", "must be < 1"), ("ratio", "abc", "bad value"), ("scheme", "pow3", "fixed, pow2"),
    ("per_channel", "maybe", "true or false"), ("nope", "1", "valid options of t: ratio, rank"),
])
def test_bad_option_values(key, value, pattern):
    with pytest.raises(PipelineError, match=pattern):
        build_options(Opts, {key: value}, owner="t")

"""Progress bars for long work: shown on a terminal, silent with --quiet, in CI or when piped."""

from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

T = TypeVar("T")


def progress_enabled(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty() and not os.environ.get("CI")


def progress(it: Iterable[T], *, desc: str, total: int | None = None, quiet: bool = True) -> Iterable[T]:
    if not progress_enabled(quiet):
        return it
    from tqdm import tqdm

    return tqdm(it, desc=desc, total=total, leave=False, dynamic_ncols=True)

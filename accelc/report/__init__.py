"""``accelc report``: a self-contained HTML page about a compiled artifact — the pass
pipeline and its records, per-layer charts, the graph before and after, accuracy and latency,
fpga placement/utilisation and quantization sensitivity when present.

``render_report(dir)`` returns the page as text; ``write_report(dir, out)`` writes it
atomically. Without ``measure`` the page depends only on the artifact's manifest.json and
report.json (same artifact → same bytes); ``measure=N`` times the artifact on this machine.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from accelc.compiler.artifact import read_manifest, read_report

DEFAULT_NAME = "report.html"


def render_report(art_dir: str | Path, *, measure: int = 0) -> str:
    from accelc.report.page import render_page

    manifest = read_manifest(art_dir)
    report = read_report(art_dir)
    measured = None
    if measure:
        from accelc.report.measure import measure_artifact

        measured = measure_artifact(art_dir, measure)
    return render_page(Path(art_dir).resolve().name, manifest, report, measured)


def write_report(art_dir: str | Path, output: str | Path | None = None, *, measure: int = 0) -> Path:
    """Write the page to ``output`` (default ``DIR/report.html``; an existing directory gets a
    ``report.html`` inside); returns its path."""
    text = render_report(art_dir, measure=measure)
    out = Path(output) if output is not None else Path(art_dir)
    if out.is_dir():
        out = out / DEFAULT_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out

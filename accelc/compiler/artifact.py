"""Artifacts are directories: ``manifest.json`` + payload files + ``report.json``.

* Written atomically: everything goes to a temporary sibling directory that is renamed
  into place at the end; on any error the temporary directory is removed and an existing
  artifact is left untouched.
* Deterministic: JSON is written with sorted keys; payload writers must not embed times or
  paths. Every file except ``report.json`` (which holds wall-clock timings) is
  byte-identical for the same model, options and tool versions.
* Self-checking: the manifest records the sha256 of every payload file (all but itself and
  the report); loading verifies them.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from accelc.errors import ArtifactError

FORMAT = "accelc-artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REPORT = "report.json"


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, sort_keys=True, indent=2, default=_json_default) + "\n")


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tool_versions() -> dict[str, str]:
    import numpy
    import torch

    import accelc

    versions = {"accelc": accelc.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
                "python": platform.python_version()}
    try:
        import tvm

        versions["tvm"] = tvm.__version__
    except Exception:  # pragma: no cover - tvm is a dependency
        pass
    return versions


def _is_artifact(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def write_artifact(out_dir: str | Path, fill: Callable[[Path], dict], report: Callable[[], dict] | dict) -> dict:
    """Create the artifact directory ``out_dir`` atomically.

    ``fill(tmp_dir)`` writes the payload into ``tmp_dir`` and returns the manifest fields;
    ``report`` (dict or callable, evaluated after ``fill``) becomes report.json. Returns the
    manifest.
    """
    out = Path(out_dir).absolute()
    if out.exists() and not (out.is_dir() and (_is_artifact(out) or not any(out.iterdir()))):
        raise ArtifactError(f"output directory {out} exists and is not an accelc artifact",
                            hint="choose another -o directory, or remove it first")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        fields = fill(tmp)
        write_json(tmp / REPORT, report() if callable(report) else report)
        files = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*"))
                 if p.is_file() and p.name not in (MANIFEST, REPORT)}
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **fields,
                    "tools": tool_versions(), "files": files}
        write_json(tmp / MANIFEST, manifest)
        os.chmod(tmp, 0o755)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _replace_dir(src: Path, dst: Path) -> None:
    if dst.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
        os.rmdir(old)
        os.rename(dst, old)
        os.rename(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(src, dst)


def read_manifest(art_dir: str | Path, *, verify: bool = True) -> dict:
    """Read and check an artifact's manifest (format, version, file hashes)."""
    d = Path(art_dir)
    if not d.is_dir():
        raise ArtifactError(f"{d} is not a directory", hint="pass the directory written by `accelc compile -o DIR`")
    path = d / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{d} has no {MANIFEST}: not an accelc artifact")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path} is corrupt ({e})", hint="recompile the artifact") from None
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"{path} is not an accelc manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{d} has artifact format version {manifest.get('format_version')}; this accelc reads "
                            f"version {FORMAT_VERSION}", hint="recompile with this version of accelc")
    if verify:
        for name, digest in manifest.get("files", {}).items():
            f = d / name
            if not f.is_file():
                raise ArtifactError(f"{d}: file {name} listed in the manifest is missing", hint="recompile")
            if sha256_file(f) != digest:
                raise ArtifactError(f"{d}: {name} does not match its sha256 in the manifest (modified or corrupt)",
                                    hint="recompile the artifact")
    return manifest


def read_report(art_dir: str | Path) -> dict:
    p = Path(art_dir) / REPORT
    return json.loads(p.read_text()) if p.is_file() else {}

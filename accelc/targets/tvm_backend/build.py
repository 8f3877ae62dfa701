"""Building Relax modules with ``tvm.compile`` and writing/reading the compiled payload.

Payload files: ``lib.so`` (``Executable.export_library``) and ``params.safetensors`` (the
detached weights, ``p0000``, ``p0001``, … in the order ``main`` takes them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from accelc.compiler.tensorfile import load_tensors, save_tensors
from accelc.errors import TargetError

LIBRARY = "lib.so"
PARAMS = "params.safetensors"


def host_cpu() -> str:
    """LLVM's name for this machine's CPU (e.g. ``sapphirerapids``), for ``mcpu``."""
    from tvm.target import codegen

    return str(codegen.llvm_get_system_cpu())


def check_mcpu(mcpu: str) -> None:
    from tvm.target import codegen

    try:
        valid = [str(c) for c in codegen.llvm_get_cpu_archlist(_host_target())]
    except Exception:  # archlist not available: accept
        return
    if valid and mcpu not in valid:
        close = sorted(valid, key=lambda c: (not c.startswith(mcpu[:3]), c))[:8]
        raise TargetError(f"--target-opt mcpu={mcpu}: LLVM does not know this CPU",
                          hint=f"for example: {', '.join(close)} (the host is {host_cpu()})")


def _host_target():
    import tvm

    return tvm.target.Target({"kind": "llvm"})


def compile_relax(mod, target, *, relax_pipeline="default"):
    """``tvm.compile`` with errors turned into TargetError."""
    import tvm

    try:
        return tvm.compile(mod, target=target, relax_pipeline=relax_pipeline)
    except Exception as e:  # TVM raises plain RuntimeError/TVMError from C++
        raise TargetError(f"TVM build for {target.kind.name} failed: {_first_line(e)}",
                          hint="run with --debug for TVM's full message") from e


def _first_line(e: Exception) -> str:
    """The line of a TVM error that says what went wrong (its last one)."""
    return str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__


def save_payload(executable, params: Sequence[np.ndarray], out_dir: Path) -> dict:
    """Write lib.so and params; returns the manifest's ``payload`` entry."""
    lib = (out_dir / LIBRARY).resolve()
    try:
        executable.export_library(str(lib))
    except Exception as e:  # the host compiler/linker failed
        raise TargetError(f"linking {LIBRARY} failed: {str(e).strip().splitlines()[0]}",
                          hint="check that a C++ compiler (g++) is installed; --debug shows the full command") from e
    save_tensors(out_dir / PARAMS, {f"p{i:04d}": np.asarray(p) for i, p in enumerate(params)})
    return {"library": LIBRARY, "params": PARAMS, "num_params": len(params)}


def load_params(art_dir: Path, manifest: dict) -> list[np.ndarray]:
    tensors = load_tensors(art_dir / manifest["payload"]["params"])
    return [tensors[k] for k in sorted(tensors)]

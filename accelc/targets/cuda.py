"""``cuda``: the whole graph compiled by TVM Relax to CUDA with the default GPU schedules
(dlight: matmul, GEMV, reduction, fallback). Builds without a GPU; running needs one."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field

from accelc.errors import DeviceUnavailableError
from accelc.targets.base import register_target
from accelc.targets.tvm_backend.target import TVMTarget

DEFAULT_ARCH = "sm_80"


def _arch_check(v: str):
    return None if v is None or re.fullmatch(r"sm_\d+[a-z]?", v) else "must look like sm_80 or sm_90a"


def detect_arch() -> str | None:
    """The compute capability of the first visible GPU (``sm_90``), or None without one."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"sm_{out[0].replace('.', '')}" if out and re.fullmatch(r"\d+\.\d+", out[0].strip()) else None


@dataclass
class CUDAOptions:
    arch: str | None = field(default=None, metadata={
        "help": f"GPU architecture (default: the local GPU's, else {DEFAULT_ARCH})", "check": _arch_check})


@register_target
class CUDATarget(TVMTarget):
    name = "cuda"
    description = "NVIDIA GPU via TVM Relax → CUDA (dlight default schedules)"
    default_pipeline = "fuse"
    Options = CUDAOptions

    def __init__(self, options=None):
        super().__init__(options)
        if self.options.arch is None:
            self.options.arch = detect_arch() or DEFAULT_ARCH

    def tvm_target(self):
        import tvm

        return tvm.target.Target({"kind": "cuda", "arch": self.options.arch},
                                 host={"kind": "llvm"})

    @classmethod
    def device(cls):
        import tvm

        dev = tvm.cuda(0)
        if not dev.exist:
            raise DeviceUnavailableError("this artifact runs on a CUDA GPU, and none is available here",
                                         hint="run it on a machine with an NVIDIA GPU and driver, or compile with "
                                              "--target cpu")
        return dev

"""``cpu``: the whole graph compiled by TVM Relax to LLVM for the host CPU."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from accelc.compiler.options import in_range
from accelc.targets.base import register_target
from accelc.targets.tvm_backend.build import check_mcpu, host_cpu
from accelc.targets.tvm_backend.target import TVMTarget


@dataclass
class CPUOptions:
    mcpu: str | None = field(default=None, metadata={"help": "LLVM CPU name (default: this machine's)"})
    num_cores: int | None = field(default=None, metadata={"help": "cores the code may use (default: all)",
                                                          "check": in_range(1)})


@register_target
class CPUTarget(TVMTarget):
    name = "cpu"
    description = "host CPU via TVM Relax → LLVM"
    default_pipeline = "fuse"
    Options = CPUOptions

    def __init__(self, options=None):
        super().__init__(options)
        if self.options.mcpu is None:
            self.options.mcpu = host_cpu()
        else:
            check_mcpu(self.options.mcpu)
        if self.options.num_cores is None:
            self.options.num_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    def tvm_target(self):
        import tvm

        return tvm.target.Target({"kind": "llvm", "mcpu": self.options.mcpu, "num-cores": self.options.num_cores})

    def int8_lowering(self) -> str:
        from accelc.targets.tvm_backend.vnni import target_has_vnni

        return "vnni" if target_has_vnni(self.tvm_target()) else "reference"

    @classmethod
    def device(cls):
        import tvm

        return tvm.cpu(0)

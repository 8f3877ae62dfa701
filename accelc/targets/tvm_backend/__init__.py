"""Shared TVM Relax machinery for the cpu and cuda targets: import, build, run, support."""

from accelc.targets.tvm_backend.threads import claim_cores

claim_cores()

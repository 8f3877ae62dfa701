"""Imports the built-in targets so that each registers itself."""

from accelc.targets import cpu, cuda  # noqa: F401
from accelc.targets.fpga import target as fpga  # noqa: F401

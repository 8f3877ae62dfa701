"""Imports every built-in pass module so that each registers itself."""

from accelc.passes import fuse, partition, quantize  # noqa: F401

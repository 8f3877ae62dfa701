"""Imports every built-in pass module so that each registers itself."""

from accelc.passes import distill, dsconv, fuse, partition, prune, quantize  # noqa: F401

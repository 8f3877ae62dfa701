"""Imports every built-in pass module so that each registers itself."""

from accelc.passes import fuse, partition  # noqa: F401

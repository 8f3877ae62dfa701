"""Imports every built-in pass module so that each registers itself."""

from accelc.passes import fuse  # noqa: F401
from accelc.passes import quantize  # noqa: F401,E402

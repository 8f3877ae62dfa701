"""Imports every built-in pass module so that each registers itself."""

from accelc.passes import fuse  # noqa: F401
from accelc.passes import prune  # noqa: F401
from accelc.passes import dsconv  # noqa: F401
from accelc.passes import distill  # noqa: F401

"""Graph-to-graph passes over canonical fx GraphModules, and their registry."""

from accelc.passes.base import Pass, available_passes, get_pass, register_pass

__all__ = ["Pass", "available_passes", "get_pass", "register_pass"]

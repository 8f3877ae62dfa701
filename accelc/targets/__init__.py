"""Targets: plug-ins that lower a GraphModule to an artifact and run it."""

from accelc.targets.base import Runner, Support, Target, available_targets, get_target_class, make_target

__all__ = ["Runner", "Support", "Target", "available_targets", "get_target_class", "make_target"]

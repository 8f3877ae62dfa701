"""Shared TVM Relax machinery for the cpu and cuda targets: import, build, run, support."""

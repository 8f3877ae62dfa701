"""Compilation targets (cpu, cuda, fpga)."""

"""accelc — an ahead-of-time acceleration compiler for PyTorch models."""

__version__ = "0.1.0"

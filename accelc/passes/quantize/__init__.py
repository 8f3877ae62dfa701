"""int8 post-training quantization: the ``quantize`` pass and the integer semantics."""

from accelc.passes.quantize.quantize_pass import QuantizePass

__all__ = ["QuantizePass"]

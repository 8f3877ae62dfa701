"""Exporting accelc graphs to other runtimes (ONNX QDQ)."""

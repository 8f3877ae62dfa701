"""Model capture, the pass manager, verification, analyses and artifacts."""

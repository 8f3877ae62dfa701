"""Pipeline-parallel training on torch.distributed: balanced stages (``accelc.passes.partition``)
run with ``torch.distributed.pipelining``, data-parallel replicas, checkpoints.

>>> from accelc.training import TrainConfig, train
>>> train(TrainConfig(entry="models.py:net", train="data.npz", stages=2, dp=2, microbatches=4, steps=100))

Outside torchrun, :func:`train` starts ``stages × dp`` local workers itself; under torchrun
(e.g. across nodes) each process runs its own part. See :mod:`.runtime` (the worker),
:mod:`.checkpoint` (files), :mod:`.data` (which samples each step uses), :mod:`.launch`.
"""

from __future__ import annotations

from accelc.training.config import TrainConfig
from accelc.training.distributed import under_torchrun


def train(config: TrainConfig) -> None:
    """Validate ``config`` and run the job: launch local workers, or be one under torchrun."""
    config.validate()
    if under_torchrun():
        from accelc.training.runtime import run_worker

        run_worker(config)
    else:
        from accelc.training.launch import launch

        launch(config)


__all__ = ["TrainConfig", "train", "under_torchrun"]

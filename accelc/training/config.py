"""TrainConfig: every option of a training run, validated once, passed to each worker as JSON."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from accelc.errors import UsageError
from accelc.passes.partition.plan import DEFAULT_BANDWIDTH, PartitionOptions
from accelc.passes.partition.costs import DEFAULT_DEVICE_FLOPS

Schedule = Literal["gpipe", "1f1b"]
LossName = Literal["auto", "cross-entropy", "nll", "mse"]
OptimizerName = Literal["sgd", "adam"]


@dataclass
class TrainConfig:
    # model
    model: str | None = None
    entry: str | None = None
    weights: str | None = None
    trust_pickle: bool = False
    input_shapes: list[str] | None = None  # per input; the batch dimension is ignored
    # data
    train: str | None = None
    batch_size: int = 32  # global: over all replicas and microbatches
    steps: int | None = None  # total optimizer steps (a resumed run continues up to it)
    epochs: int | None = None
    # parallelism
    stages: int = 1
    dp: int = 1
    microbatches: int = 1
    schedule: Schedule = "1f1b"
    # optimisation
    loss: LossName = "auto"
    optimizer: OptimizerName = "sgd"
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    seed: int = 0
    # partitioning
    profile: bool = False
    bandwidth: float = DEFAULT_BANDWIDTH
    device_flops: float = DEFAULT_DEVICE_FLOPS
    # checkpoints and output
    checkpoint: str | None = None
    checkpoint_every: int | None = None
    resume: str | None = None
    metrics: str | None = None  # JSON lines: one per step, then a summary
    timeout: float = 300.0  # seconds a collective or send/recv may wait for a peer
    quiet: bool = False
    debug: bool = False  # tracebacks and library warnings from the workers

    @property
    def world_size(self) -> int:
        return self.stages * self.dp

    @property
    def microbatch_size(self) -> int:
        return self.batch_size // (self.dp * self.microbatches)

    def partition_options(self) -> PartitionOptions:
        return PartitionOptions(stages=self.stages, profile=self.profile, bandwidth=self.bandwidth,
                                device_flops=self.device_flops)

    def validate(self) -> "TrainConfig":
        if self.model is None and self.entry is None:
            raise UsageError("no model given", hint="pass --entry file.py:factory (or a .pt2 program)")
        if self.train is None:
            raise UsageError("no training data given", hint="pass --train data.npz (inputs, labels) or --train digits")
        for name in ("stages", "dp", "microbatches", "batch_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
        if self.batch_size % (self.dp * self.microbatches):
            raise UsageError(f"--batch-size {self.batch_size} is not divisible by --dp {self.dp} × --microbatches "
                             f"{self.microbatches}", hint="every replica splits its share into equal microbatches")
        if self.schedule == "1f1b" and self.microbatches < self.stages:
            raise UsageError(f"--schedule 1f1b needs at least as many microbatches as stages "
                             f"({self.microbatches} < {self.stages})", hint="raise --microbatches or use --schedule gpipe")
        if self.steps is not None and self.epochs is not None:
            raise UsageError("pass --steps or --epochs, not both")
        if (self.steps is not None and self.steps < 1) or (self.epochs is not None and self.epochs < 1):
            raise UsageError("--steps and --epochs must be at least 1")
        if self.checkpoint_every is not None and (self.checkpoint_every < 1 or self.checkpoint is None):
            raise UsageError("--checkpoint-every needs --checkpoint PATH and a positive number of steps")
        if self.lr <= 0:
            raise UsageError("--lr must be positive")
        if self.timeout <= 0:
            raise UsageError("--timeout must be positive")
        if self.resume is not None and not Path(self.resume).is_file():
            raise UsageError(f"--resume {self.resume}: no such file")
        return self

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        return cls(**json.loads(text))

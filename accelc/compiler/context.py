"""CompileContext: everything a pass may read besides the graph, passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx

from accelc.compiler.data import Dataset
from accelc.compiler.inputs import InputSpec


@dataclass
class PassRecord:
    """What one pass did: its options, cost, effect on the graph and on the outputs."""

    name: str
    options: dict[str, Any]
    seconds: float
    flops_before: int
    flops_after: int
    params_before: int
    params_after: int
    max_abs_err: float
    sqnr_db: float | None
    top1_agreement: float | None
    exact: bool
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class CompileContext:
    """Example inputs, data sets, target, options and the growing list of pass records.

    ``samples`` are the input batches verify-each runs every graph on: the first
    ``num_samples`` samples of the eval (else calibration) data, batched like the example
    inputs, or seeded random inputs when no data is given.
    """

    example_inputs: tuple[torch.Tensor, ...]
    target: str = "cpu"
    calib: Dataset | None = None
    eval: Dataset | None = None
    train: Dataset | None = None
    seed: int = 0
    quiet: bool = True
    num_samples: int = 16
    records: list[PassRecord] = field(default_factory=list)
    reference: fx.GraphModule | None = None  # the graph before the first pass (teacher for distill)
    options: dict[str, Any] = field(default_factory=dict)  # target/global options passes may read

    @property
    def input_specs(self) -> list[InputSpec]:
        return [InputSpec.of(t) for t in self.example_inputs]

    @property
    def batch_size(self) -> int:
        return int(self.example_inputs[0].shape[0]) if self.example_inputs[0].dim() else 1

    def samples(self) -> list[tuple[torch.Tensor, ...]]:
        data = self.eval or self.calib
        if data is not None:
            n = max(self.batch_size, self.num_samples)
            got = list(data.batches(self.batch_size, limit=n, pad=True))
            if got:
                return got
        specs = self.input_specs
        n_batches = max(1, self.num_samples // self.batch_size)
        return [tuple(s.example(self.seed + 1000 * b + i) for i, s in enumerate(specs)) for b in range(n_batches)]

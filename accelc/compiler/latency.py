"""Measured latency of graphs as cpu artifacts: build each with the cpu target (TVM, no
passes) and time ``main`` with TVM's time evaluator. Used by ``prune(measure_latency=true)``
and the compression benchmark to report before→after speed, not just FLOPs."""

from __future__ import annotations

import statistics
from typing import Mapping, Sequence

import torch
import torch.fx as fx


def cpu_latency_of(gm: fx.GraphModule, example_inputs: Sequence[torch.Tensor], *, number: int = 20,
                   repeat: int = 5) -> float:
    """Median milliseconds per call of ``gm`` compiled for the cpu target."""
    import accelc

    compiled = accelc.compile(gm, tuple(example_inputs), target="cpu", pipeline="none", verify_each=False)
    return artifact_latency_ms(compiled, example_inputs, number=number, repeat=repeat)


def artifact_latency_ms(compiled, example_inputs: Sequence[torch.Tensor], *, number: int = 20, repeat: int = 5) -> float:
    """Median milliseconds per call of a compiled TVM artifact (``accelc.compile``'s result)."""
    arrays = [t.detach().numpy() for t in example_inputs]
    compiled.runner.time_call(arrays, number=2, repeat=1)  # warm-up
    return 1000.0 * statistics.median(compiled.runner.time_call(arrays, number=number, repeat=repeat))


def cpu_latency(graphs: Mapping[str, fx.GraphModule], example_inputs: Sequence[torch.Tensor], **timing) -> dict:
    """``{name: ms}`` for each graph, plus ``speedup`` (first / last) when there are several."""
    result = {name: round(cpu_latency_of(gm, example_inputs, **timing), 4) for name, gm in graphs.items()}
    times = list(result.values())
    if len(times) > 1 and times[-1] > 0:
        result["speedup"] = round(times[0] / times[-1], 3)
    return result

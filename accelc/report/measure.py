"""``accelc report --measure N``: time the artifact itself on this machine.

Two honest numbers, both from running the artifact's ``main`` through its runner on one
seeded random input of the compiled shape:

* **end to end** — wall-clock of ``runner.run(inputs)`` (what ``accelc.load(DIR)(x)`` costs:
  input copy, every kernel, output copy); median/p10/p90 of N runs after warm-up;
* **per kernel** — the Relax VM calls each compiled kernel (a TVM ``PrimFunc``, often several
  fused graph nodes, or a VM builtin such as an allocation, or an fpga segment's external
  call) through one instruction; an instrument hook (``VirtualMachine.set_instrument``) takes
  ``perf_counter`` before and after each call (with a device sync for GPUs). Per kernel name,
  the time summed over its calls in one run, median over N runs. The hook costs about a
  microsecond per call, so the instrumented sum is above the end-to-end time.

Kernels are named by TVM, not by graph node: TVM's fusion and legalisation do not keep a
node → kernel map, so the report shows them in call order rather than guessing one.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from accelc.errors import UsageError

BUILTIN_PREFIX = "vm.builtin."
FPGA_PREFIX = "accelc_fpga."


def example_arrays(manifest: dict, seed: int = 0) -> list[np.ndarray]:
    from accelc.compiler.inputs import DTYPES, InputSpec

    return [InputSpec(tuple(s["shape"]), DTYPES[s["dtype"]]).example(seed=seed + i).numpy()
            for i, s in enumerate(manifest["inputs"])]


def kernel_kind(name: str) -> str:
    if name.startswith(BUILTIN_PREFIX):
        return "vm builtin"
    if name.startswith(FPGA_PREFIX):
        return "fpga segment (simulator, host wall time)"
    return "kernel"


def _output_shapes(runner, arrays) -> dict[str, list[int]]:
    """Shape of each kernel's last argument (its output: kernels are destination-passing) at its
    first call, from one untimed run."""
    shapes: dict[str, list[int]] = {}

    def hook(func, symbol, before, ret, *args):
        name = str(symbol)
        if before and name not in shapes and not name.startswith(BUILTIN_PREFIX) and args:
            try:
                shapes[name] = [int(d) for d in args[-1].shape]
            except (AttributeError, TypeError, ValueError):
                pass
        return 0

    runner.vm.set_instrument(hook)
    runner.run(arrays)
    return shapes


def _instrumented_runs(runner, arrays, runs: int) -> list[list[tuple[str, float]]]:
    vm = runner.vm
    device = getattr(runner, "device", None)
    sync = device.sync if device is not None and device.dlpack_device_type() != 1 else None  # 1: kDLCPU
    stack: list[float] = []
    events: list[tuple[str, float]] = []

    def hook(func, symbol, before, ret, *args):
        if before:
            stack.append(time.perf_counter())
        else:
            if sync is not None:
                sync()
            events.append((str(symbol), time.perf_counter() - stack.pop()))
        return 0

    per_run = []
    vm.set_instrument(hook)
    try:
        runner.run(arrays)  # warm-up
        for _ in range(runs):
            events = []
            runner.run(arrays)
            per_run.append(events)
    finally:
        vm.set_instrument(lambda *a: 0)   # a no-op hook (the runner may be used again)
    return per_run


def measure_artifact(art_dir: str | Path, runs: int) -> dict:
    """End-to-end and per-kernel times of the artifact in ``art_dir`` (see module doc)."""
    from accelc.api import load
    from accelc.runtime import measure

    if runs < 1:
        raise UsageError(f"--measure {runs}: needs a positive number of runs")
    compiled = load(art_dir)
    runner = compiled.runner
    arrays = example_arrays(compiled.manifest)
    result: dict = {"runs": runs, "input": "seeded random input (seed 0) of the compiled shape",
                    "device": str(getattr(runner, "device", "cpu")),
                    "end_to_end_ms": measure(lambda: runner.run(arrays), runs=runs, warmup=min(5, runs)).to_dict()}
    if getattr(runner, "vm", None) is None:
        return result
    shapes = _output_shapes(runner, arrays)
    per_run = _instrumented_runs(runner, arrays, runs)
    order: list[str] = []
    sums: list[dict[str, float]] = []
    calls: dict[str, int] = {}
    for events in per_run:
        totals: dict[str, float] = {}
        for name, sec in events:
            if name not in calls:
                order.append(name)
                calls[name] = 0
            totals[name] = totals.get(name, 0.0) + sec
        sums.append(totals)
    for name, _ in per_run[0]:
        calls[name] += 1
    result["kernels"] = [{"name": n, "kind": kernel_kind(n), "calls": calls[n], "output_shape": shapes.get(n),
                          "median_s": statistics.median(s.get(n, 0.0) for s in sums)} for n in order]
    result["instrumented_total_ms"] = statistics.median(sum(s.values()) for s in sums) * 1e3
    return result

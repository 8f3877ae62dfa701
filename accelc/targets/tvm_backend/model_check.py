"""The whole tuned model against the untuned one (CPU), timed in turns; the faster build is kept.

MetaSchedule judges each operator alone: run again and again with its inputs and weights hot
in cache, and crowned by the fastest of many noisy measurements. Neither holds in the model,
where weights come from memory and one lucky measurement does not make a kernel faster. On
this 2-core VM, int8 ResNet-18 b1 tuned from an empty database ran 13.2 ms against 8.2 ms
untuned (benchmarks/RESULTS.md) although no operator's record was slower than its default.
So a tuned CPU build is also built untuned, both run on the same random inputs in alternating
rounds, and the tuned build is the artifact only if it is faster by more than
:data:`MARGIN` (the VM drifts by ±30% between processes: ResNet-18 b8 fp32, kept tuned at
compile time, ran 189 ms in the benchmark against 136 ms untuned).

The decision is stored in the tuning database (``accelc_builds.json``, keyed by the records
applied and the untuned module): a later compile that applies the same records makes the same
choice without measuring, so artifacts stay deterministic for a given database.

Preserves: the computation — both builds compute the same function; only schedules and the
weights' packed layouts differ.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

CHOICES_FILE = "accelc_builds.json"
ROUNDS = 7
MARGIN = 0.05  # the tuned build must be this much faster to be kept


def model_inputs(mod, n_params: int) -> list[np.ndarray]:
    """Seeded random arrays for the inputs of ``mod["main"]`` (its parameters other than the
    ``n_params`` weights at the end)."""
    main = mod["main"]
    rng = np.random.default_rng(0)
    out = []
    for p in list(main.params)[:len(main.params) - n_params]:
        shape = [int(d) for d in p.ty.shape]
        dtype = np.dtype(str(p.ty.dtype))
        out.append(rng.standard_normal(shape).astype(dtype) if dtype.kind == "f" else np.zeros(shape, dtype))
    return out


def runner(executable, params, inputs) -> Callable[[], object]:
    """A call of the executable's ``main`` on ``inputs`` and ``params`` (already on the CPU)."""
    import tvm
    from tvm import relax

    dev = tvm.cpu()
    vm = relax.VirtualMachine(executable, dev)
    args = [tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in [*inputs, *params]]
    main = vm["main"]
    return lambda: main(*args)


def time_in_turns(calls: dict[str, Callable[[], object]], rounds: int = ROUNDS) -> dict[str, float]:
    """Median ms of each call: ``rounds`` rounds that visit every call in turn (so a slow phase
    of the machine hits both), each the median of a few runs after one warm-up run."""
    first = {}
    for name, call in calls.items():
        t = time.perf_counter()
        call()
        first[name] = time.perf_counter() - t
    runs = max(1, min(7, int(0.3 / max(max(first.values()), 1e-6))))
    medians: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            call()
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                call()
                times.append(time.perf_counter() - t)
            medians[name].append(float(np.median(times)) * 1e3)
    return {name: round(float(np.median(v)), 4) for name, v in medians.items()}


def choose(db_dir: Path, key: str, measure: Callable[[], dict[str, float]]) -> dict:
    """The stored decision for ``key``, or measure ``{"tuned": ms, "default": ms}`` now and store
    it (tuned only if faster by more than :data:`MARGIN`). Returns ``{"kept": "tuned"|"default",
    "tuned_ms", "default_ms", "from_database"}``."""
    from accelc.targets.tvm_backend.tuning import lock_db_dir, unlock_db_dir

    db_dir = Path(db_dir)
    lock = lock_db_dir(db_dir)
    try:
        path = db_dir / CHOICES_FILE
        choices = json.loads(path.read_text()) if path.is_file() else {}
        if key in choices:
            return {**choices[key], "from_database": True}
        ms = measure()
        choice = {"kept": "tuned" if ms["tuned"] < ms["default"] * (1 - MARGIN) else "default",
                  "tuned_ms": ms["tuned"], "default_ms": ms["default"]}
        choices[key] = choice
        tmp = db_dir / f".{CHOICES_FILE}.tmp"
        tmp.write_text(json.dumps(choices, indent=1, sort_keys=True))
        tmp.replace(path)
        return {**choice, "from_database": False}
    finally:
        unlock_db_dir(lock)

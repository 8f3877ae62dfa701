"""Pipeline partitioning: accelc's plan against the splits people write today, and the bubble.

Splits compared, on a ResNet-style and a transformer-style model (``tests/pipeline_models.py``):

* **accelc** — ``plan_stages``: the optimal contiguous split by the cost model (FLOPs).
* **manual (equal blocks)** — what a torch.distributed.pipelining user writes by hand: split
  points at the repeated blocks (``layers.N`` / ``blocks.N``) so every stage gets the same
  number of blocks (the extra ones to the first stages); the stem goes with the first stage
  and the head with the last.
* **DeepSpeed parameters** — ``PipelineModule(partition_method="parameters")``: the model as
  a list of top-level layers (stem, each block, head), each weighted by its trainable
  parameter count, split by DeepSpeed's ``partition_balanced`` rule (re-implemented here:
  contiguous parts minimising the spread max − min of the part weights; DeepSpeed is not
  needed to run this).

For each: balance (max / mean stage compute by the cost model), the same measured (every
stage module timed forward+backward on its real inputs, one CPU thread, median of 5), and
the bytes crossing the cuts per microbatch. Then the pipeline bubble: ``accelc train`` with
2 stages on 2 CPU processes (gloo), GPipe and 1F1B, M microbatches; measured bubble is
``1 − busy / wall`` per stage over the steady-state steps (busy = time inside the stage's
forward/backward), averaged over the stages, next to the theoretical (S−1)/(M+S−1).

Run: ``PYTHONPATH=. python benchmarks/partition_bench.py`` (a few minutes on 2 cores);
writes ``benchmarks/results/partition.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from accelc.compiler.capture import load_model  # noqa: E402
from accelc.passes.partition import PartitionOptions, StagePlan, describe, plan_stages  # noqa: E402
from accelc.training.model import training_graph  # noqa: E402

MODELS_FILE = ROOT / "tests" / "pipeline_models.py"
MODELS = {  # name: (factory, microbatch shape, repeated-block container, top-level layers in order)
    "ResNet-style": ("resnet_style_large", (16, 3, 32, 32), "layers", ["stem", "layers", "pool", "fc"]),
    "transformer-style": ("transformer_style_large", (16, 1, 32, 32), "blocks", ["embed", "blocks", "norm", "head"]),
}


# --------------------------------------------------------------------------- the other splitting rules
def deepspeed_partition_balanced(weights: list[int], parts: int) -> list[int]:
    """DeepSpeed's ``partition_balanced``: boundaries [0, …, n] of ``parts`` contiguous parts that
    minimise max(part weight) − min(part weight) (the later split point wins ties, as there)."""
    n = len(weights)
    if n <= parts:
        return [min(p, n) for p in range(parts + 1)]
    prefix = np.concatenate([[0], np.cumsum(weights)])
    inf = float("inf")
    hi = np.full((n + 1, parts + 1), inf)
    lo = np.full((n + 1, parts + 1), inf)
    spread = np.full((n + 1, parts + 1), inf)
    arg = np.zeros((n + 1, parts + 1), dtype=int)
    hi[0, 0], spread[0, 0] = 0, 0
    for i in range(1, n + 1):
        for j in range(1, min(i, parts) + 1):
            for k in range(i):
                part = prefix[i] - prefix[k]
                mx, mn = max(hi[k, j - 1], part), min(lo[k, j - 1], part)
                if spread[i, j] >= mx - mn:
                    spread[i, j], hi[i, j], lo[i, j], arg[i, j] = mx - mn, mx, mn, k
    bounds = [n]
    for j in range(parts, 0, -1):
        bounds.append(int(arg[bounds[-1], j]))
    return bounds[::-1]


def _unit_of_nodes(plan: StagePlan, model: torch.nn.Module, block_container: str, top_level: list[str]):
    """For every position, the index of its top-level layer (stem, block i, head …), and those layers."""
    layers = []
    for name in top_level:
        if name == block_container:
            layers += [f"{name}.{i}" for i in range(len(getattr(model, name)))]
        else:
            layers.append(name)
    index, unit = [], 0
    for node in plan.sequence.nodes:
        scopes = list(node.meta.get("nn_module_stack", {}))
        target = node.target if node.op in ("call_module", "get_attr") else (scopes[-1] if scopes else None)
        if isinstance(target, str):
            target = target.split("@")[0]
            match = [i for i, layer in enumerate(layers) if target == layer or target.startswith(layer + ".")]
            if match:
                unit = match[0]
        index.append(unit)  # functional ops between layers belong to the layer before them
    return index, layers


def _bounds_from_units(unit_of: list[int], unit_bounds: list[int]) -> tuple[int, ...]:
    cuts = [unit_of.index(u) for u in unit_bounds[1:-1]]
    return (0, *cuts, len(unit_of))


def manual_units(layers: list[str], block_container: str, stages: int) -> list[int]:
    """Equal numbers of blocks per stage; stem with the first stage, head with the last."""
    blocks = [i for i, layer in enumerate(layers) if layer.startswith(block_container + ".")]
    sizes = [len(part) for part in np.array_split(blocks, stages)]
    starts = np.cumsum([0] + sizes[:-1]) + blocks[0]
    return [0, *[int(s) for s in starts[1:]], len(layers)]


def deepspeed_units(plan: StagePlan, unit_of: list[int], n_layers: int, stages: int) -> list[int]:
    """``partition_method="parameters"``: each layer weighted by the parameters its nodes own."""
    weights = [0] * n_layers
    for position, unit in enumerate(unit_of):
        weights[unit] += int(plan.sequence.params[position])
    return deepspeed_partition_balanced(weights, stages)


# --------------------------------------------------------------------------- measurements
def measured_stage_seconds(plan: StagePlan, x: torch.Tensor, repeats: int = 10) -> list[float]:
    """Forward+backward wall time of every stage module on its real inputs (fastest of ``repeats``)."""
    stages = plan.stage_modules()
    inputs, times = (x,), []
    for stage in stages:
        samples = []
        for _ in range(repeats + 1):
            leaves = tuple(t.detach().requires_grad_(t.is_floating_point()) for t in inputs)
            t0 = time.perf_counter()
            out = stage(*leaves)
            outs = [o for o in (out if isinstance(out, tuple) else (out,)) if o.requires_grad]
            torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])
            samples.append(time.perf_counter() - t0)
        times.append(min(samples[1:]))
        with torch.no_grad():
            inputs = stage(*inputs)
            inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    return times


def compare_splits(name: str, stages: int) -> list[dict]:
    factory, shape, container, top_level = MODELS[name]
    torch.manual_seed(0)
    model = load_model(entry=f"{MODELS_FILE}:{factory}").model
    x = torch.randn(*shape)
    gm = training_graph(model, (x,)).graph
    options = PartitionOptions(stages=stages)
    ours = plan_stages(gm, (x,), options)
    profiled = plan_stages(gm, (x,), PartitionOptions(stages=stages, profile=True))
    unit_of, layers = _unit_of_nodes(ours, model, container, top_level)
    manual = _bounds_from_units(unit_of, manual_units(layers, container, stages))
    deepspeed = _bounds_from_units(unit_of, deepspeed_units(ours, unit_of, len(layers), stages))
    rows, measured = [], {}
    for rule, plan in (("accelc", ours), ("accelc --profile", profiled),
                       ("manual (equal blocks)", describe(ours.sequence, manual, options, "flops")),
                       ("DeepSpeed parameters", describe(ours.sequence, deepspeed, options, "flops"))):
        if plan.bounds not in measured:  # the same split is timed once
            measured[plan.bounds] = measured_stage_seconds(plan, x)
        seconds = measured[plan.bounds]
        balance = plan.balance if plan.cost_source == "flops" else describe(ours.sequence, plan.bounds, options,
                                                                             "flops").balance
        rows.append({"model": name, "stages": stages, "rule": rule, "balance": balance,
                     "measured_balance": max(seconds) / statistics.mean(seconds),
                     "cut_bytes": plan.cut_bytes, "params_per_stage": [s.params for s in plan.stages],
                     "bounds": list(plan.bounds)})
    return rows


def bubble(stages: int, schedule: str, microbatches: int, workdir: Path, steps: int = 6, microbatch: int = 16) -> dict:
    """Measured vs theoretical bubble of an ``accelc train`` run of the ResNet-style model."""
    batch = microbatch * microbatches
    data = workdir / f"data_{batch}.npz"
    if not data.exists():
        rng = np.random.default_rng(0)
        np.savez(data, inputs=rng.standard_normal((batch * steps, 3, 32, 32)).astype(np.float32),
                 labels=rng.integers(0, 10, batch * steps))
    metrics = workdir / f"bubble_{stages}_{schedule}_{microbatches}.jsonl"
    metrics.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "accelc", "train", "-q", "--entry", f"{MODELS_FILE}:resnet_style_large",
           "--train", str(data), "--stages", str(stages), "--microbatches", str(microbatches), "--schedule", schedule,
           "--batch-size", str(batch), "--steps", str(steps), "--metrics", str(metrics)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    end = [json.loads(line) for line in metrics.read_text().splitlines() if '"event": "end"' in line][-1]
    return {"stages": stages, "schedule": schedule, "microbatches": microbatches, **end["timing"]}


# --------------------------------------------------------------------------- report
def _mb(n: int) -> str:
    return f"{n / 2**20:.2f}"


def markdown(split_rows: list[dict], bubble_rows: list[dict], seconds: float, loads: tuple[float, float]) -> str:
    lines = [
        "# Pipeline partitioning: stage balance, cut bytes, bubble",
        "",
        f"Generated by `benchmarks/partition_bench.py` in {seconds:.0f} s on {platform.machine()} "
        f"({os.cpu_count()} CPU cores), torch {torch.__version__}, gloo. Microbatch: 16 samples. Load average "
        f"(1 min) {loads[0]:.2f} at the start, {loads[1]:.2f} at the end: other work on the machine makes measured "
        "times noisier and stages look less balanced than they are.",
        "",
        "## Stage balance and bytes crossing the cuts",
        "",
        "balance = max / mean of the stages' forward+backward compute (1.00 is perfect; the pipeline runs at the "
        "pace of its slowest stage). *by cost model*: FLOPs, forward + backward (2× forward for layers with "
        "weights, 1× otherwise); *measured*: each stage module timed forward+backward on one CPU thread. "
        "Cut bytes: activations (and skip tensors) sent from each stage to the next per microbatch, in MiB.",
        "",
        "| model | stages | split | balance (cost model) | balance (measured) | cut MiB per microbatch | params per stage |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in split_rows:
        cuts = " / ".join(_mb(b) for b in r["cut_bytes"])
        params = " / ".join(f"{p / 1e3:.1f}K" for p in r["params_per_stage"])
        lines.append(f"| {r['model']} | {r['stages']} | {r['rule']} | {r['balance']:.3f} | "
                     f"{r['measured_balance']:.3f} | {cuts} | {params} |")
    lines += [
        "",
        "## Pipeline bubble (ResNet-style, accelc's split)",
        "",
        "`accelc train --stages S` with one CPU process per stage (1 thread each, gloo), 6 steps, the first left "
        "out. Measured bubble = 1 − busy / wall per stage (busy: inside the stage's forward and backward; wall: "
        "the whole step, including send/receive waits and the optimizer step), averaged over the stages.",
        "",
        "| stages S | schedule | microbatches M | measured bubble | theoretical (S−1)/(M+S−1) | per stage |",
        "|---|---|---|---|---|---|",
    ]
    for r in bubble_rows:
        lines.append(f"| {r['stages']} | {r['schedule']} | {r['microbatches']} | {r['bubble_fraction']:.3f} | "
                     f"{r['theoretical_bubble_fraction']:.3f} | "
                     f"{' / '.join(f'{b:.3f}' for b in r['bubble_fraction_per_stage'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "partition.md"))
    ap.add_argument("--microbatches", default="1,2,4,8", help="M values for the bubble runs")
    ap.add_argument("--bubble-stages", default="2", help="S values for the bubble runs (one CPU process per stage)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0, load0 = time.time(), os.getloadavg()[0]
    split_rows = [row for name in MODELS for stages in (2, 4) for row in compare_splits(name, stages)]
    with tempfile.TemporaryDirectory() as tmp:
        bubble_rows = [bubble(int(s), schedule, int(m), Path(tmp)) for s in args.bubble_stages.split(",")
                       for schedule in ("gpipe", "1f1b") for m in args.microbatches.split(",")
                       if not (schedule == "1f1b" and int(m) < int(s))]
    text = markdown(split_rows, bubble_rows, time.time() - t0, (load0, os.getloadavg()[0]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps({"splits": split_rows, "bubble": bubble_rows}, indent=2))
    print(text)


if __name__ == "__main__":
    main()

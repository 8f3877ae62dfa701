"""Torch-Pruning baseline for ``compress_bench.py``: prune one example model and save it.

Runs in a separate environment that has ``torch-pruning`` installed (it is never a dependency
of accelc); ``compress_bench.py`` calls it with that environment's Python::

    python3 -m venv /tmp/tpvenv && /tmp/tpvenv/bin/pip install torch==2.13.0 torch-pruning
    /tmp/tpvenv/bin/python benchmarks/tp_prune.py resnet_tiny 0.5 /tmp/tp_resnet_tiny.pt

The pruned ``nn.Module`` is saved whole with ``torch.save`` (it holds only torch.nn layers and
classes from ``examples/models.py``); the benchmark loads it, since it wrote it itself.
Pruning is uniform per layer with L1 filter importance (``MagnitudeImportance(p=1)``), the
classifier's output layer ignored — the same setting as accelc's ``prune(ratio=R)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch_pruning as tp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from examples.models import INPUT_SHAPES, MODELS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", choices=sorted(MODELS))
    ap.add_argument("ratio", type=float)
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = MODELS[args.model](pretrained=True)
    example = torch.zeros(1, *INPUT_SHAPES[args.model])
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    pruner = tp.pruner.MagnitudePruner(model, example, importance=tp.importance.MagnitudeImportance(p=1),
                                       pruning_ratio=args.ratio, ignored_layers=[last])
    macs_before, params_before = tp.utils.count_ops_and_params(model, example)
    pruner.step()
    macs_after, params_after = tp.utils.count_ops_and_params(model, example)
    torch.save(model.eval(), args.out)
    print(json.dumps({"torch_pruning": tp.__version__, "macs": [macs_before, macs_after],
                      "params": [params_before, params_after]}))


if __name__ == "__main__":
    main()

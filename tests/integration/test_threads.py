"""TVM's thread pool: accelc runs CPU artifacts on every core it may use (TVM alone would take
half the vCPUs on x86), and leaves an explicit thread count alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# compile a tiny model, run it, report the pool TVM's kernels ran on
SCRIPT = """
import json, os, torch, accelc
from accelc.targets.tvm_backend.threads import pool_threads
m = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU()).eval()
x = torch.randn(1, 3, 8, 8)
c = accelc.compile(m, (x,), pipeline="fuse", quiet=True)
c(x)
print(json.dumps({"pool": pool_threads(), "cores": len(os.sched_getaffinity(0))}))
"""


def _pool(env_update: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TVM_NUM_THREADS", "OMP_NUM_THREADS")}
    env.update(env_update, PYTHONPATH=str(ROOT), CI="1")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300,
                          check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to tell")
def test_artifacts_run_on_every_core():
    seen = _pool({})
    assert seen["pool"] == seen["cores"] >= 2


def test_an_explicit_thread_count_stands():
    assert _pool({"TVM_NUM_THREADS": "1"})["pool"] == 1

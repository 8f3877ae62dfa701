import os
import subprocess
import sys
from pathlib import Path

# one TVM thread per test process, like torch below (the runner uses one process per core);
# set before accelc is imported, which would otherwise claim every core for TVM's pool
os.environ.setdefault("TVM_NUM_THREADS", "1")

import pytest
import torch
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

settings.register_profile("default", deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", deadline=None, max_examples=15, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default"))
torch.set_num_threads(1)


def run_cli(*args, cwd=None, check=None, timeout=600):
    """Run ``accelc`` as a subprocess (the real console entry point)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), CI="1")
    proc = subprocess.run([sys.executable, "-m", "accelc", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


@pytest.fixture
def cli():
    return run_cli


def pytest_collection_modifyitems(config, items):
    from accelc.targets.cuda import detect_arch

    if detect_arch() is None:
        skip = pytest.mark.skip(reason="no CUDA GPU here")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small models run far faster on one intra-op thread than on two contended ones (and the
    test runner already uses one process per core)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

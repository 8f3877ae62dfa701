"""The runtime-only runner (benchmarks/gpu.sh uses it on machines without the TVM wheel): a
cpu artifact runs with tvm_ffi + TVM's runtime libraries in a process that never imports the
``tvm`` package, and gives the artifact's outputs; the nvcc callback compiles the CUDA source
that a cuda artifact built here carries."""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import accelc
from accelc.targets.tvm_backend import lite_runner
from tests.models import tiny_lenet

LITE = Path(lite_runner.__file__)


def tvm_lib_dir() -> Path:
    spec = importlib.util.find_spec("tvm")
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


def test_cpu_artifact_runs_without_the_tvm_package(tmp_path):
    x = torch.randn(1, 1, 28, 28)
    compiled = accelc.compile(tiny_lenet(), (x,), output=tmp_path / "a")
    np.save(tmp_path / "x.npy", x.numpy())
    # a copy of the file outside the package: the runner must not need accelc either
    script = tmp_path / "lite_runner.py"
    shutil.copy(LITE, script)
    proc = subprocess.run([sys.executable, "-I", str(script), str(tmp_path / "a"), "--libs", str(tvm_lib_dir()),
                           "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"), "--bench", "5",
                           "--profile", "2", "--json"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["tvm_imported"] is False and summary["median_ms"] > 0
    kernels = [r for r in summary["profile"] if not r["name"].startswith("vm.builtin")]
    assert kernels and all(r["ms"] > 0 and r["calls"] >= 1 for r in kernels)  # the per-kernel profile
    assert any("conv" in r["name"] for r in kernels)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), compiled(x).numpy())


def test_safetensors_reader_matches_the_artifact_writer(tmp_path):
    from accelc.compiler.tensorfile import save_tensors

    arrays = {"p0000": np.arange(6, dtype=np.int8).reshape(2, 3), "p0001": np.ones((4,), np.float32),
              "p0002": np.array([1, -2], np.int64)}
    save_tensors(tmp_path / "t.safetensors", arrays)
    back = lite_runner.read_safetensors(tmp_path / "t.safetensors")
    for k, v in arrays.items():
        np.testing.assert_array_equal(back[k], v)
        assert back[k].dtype == v.dtype


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc here")
def test_nvcc_callback_compiles_the_cuda_source_of_an_artifact():
    from accelc.targets.cuda import CUDATarget
    from accelc.targets.tvm_backend.importer import to_relax
    from accelc.targets.tvm_backend.pipeline import build_module
    from accelc.compiler.capture import capture

    x = torch.randn(1, 1, 28, 28)
    gm = capture(tiny_lenet(), (x,))
    mod, params = to_relax(gm, (x,))
    result = build_module(mod, params, CUDATarget({"arch": "sm_90"}).tvm_target())
    def modules(m):
        yield m
        for sub in m.imports:
            yield from modules(sub)

    sources = [m.inspect_source("cuda") for m in modules(result.executable.mod) if m.kind == "cuda"]
    assert sources and "__global__" in sources[0]
    cubin = lite_runner.nvcc_compile(sources[0], arch="sm_90")
    assert cubin[:4] == b"\x7fELF"

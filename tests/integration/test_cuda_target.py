"""cuda target: builds here without a GPU and carries CUDA device code; runs where a GPU is."""

import pytest
import torch

import accelc
from accelc.errors import DeviceUnavailableError
from tests.models import tiny_resnet


def test_cuda_build_without_gpu_carries_device_code(tmp_path):
    x = torch.randn(2, 1, 16, 16)
    compiled = accelc.compile(tiny_resnet(), (x,), target="cuda", output=tmp_path / "a",
                              target_options={"arch": "sm_80"})
    lib = (tmp_path / "a" / "lib.so").read_bytes()
    assert b"cuda" in lib  # the imported CUDA module's type key
    # Built where TVM has no CUDA runtime, the module carries the generated CUDA C kernels
    # (TVM's fallback module); a CUDA-enabled TVM compiles them when the artifact is loaded.
    assert lib.count(b'extern "C" __global__') >= 3
    assert compiled.manifest["target_options"] == {"arch": "sm_80"}
    if not torch.cuda.is_available():
        assert "skipped" in compiled.report["artifact_check"]
        with pytest.raises(DeviceUnavailableError, match="CUDA GPU"):
            compiled(x)


@pytest.mark.gpu
def test_cuda_artifact_runs_on_gpu(tmp_path):
    x = torch.randn(2, 1, 16, 16)
    model = tiny_resnet()
    compiled = accelc.compile(model, (x,), target="cuda", output=tmp_path / "a")
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-4)


def test_cuda_builds_quantized_graphs(tmp_path):
    """The int8 converters lower to integer Relax that the GPU pipeline schedules too."""
    from tests.helpers import random_dataset

    x = torch.randn(1, 1, 16, 16)
    calib = tmp_path / "calib.npz"
    import numpy as np

    np.savez(calib, inputs=random_dataset(x.shape, 8).inputs[0])
    accelc.compile(tiny_resnet(), (x,), target="cuda", target_options={"arch": "sm_90"},
                              pipeline="fuse,quantize(sensitivity=false)", calib=calib, output=tmp_path / "q")
    lib = (tmp_path / "q" / "lib.so").read_bytes()
    assert b"__global__" in lib and b"int8_t" in lib

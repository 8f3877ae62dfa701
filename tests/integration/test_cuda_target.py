"""cuda target: builds here without a GPU and carries CUDA device code; runs where a GPU is."""

import re

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


def test_depthwise_convs_run_one_thread_per_output(tmp_path):
    """Short reductions (a depthwise 3×3 conv: 9 products per output; a 3×3 pool) get one thread
    per output, not dlight's block-wide reductions (a thread block for 9 products: MobileNetV2
    b8 spent 15 of 16.5 ms in its depthwise convs on an H100); the 1×1 conv keeps the matmul
    rule."""
    from accelc.targets.tvm_backend.defaults import SHORT_REDUCTION

    model = torch.nn.Sequential(torch.nn.Conv2d(16, 16, 3, padding=1, groups=16), torch.nn.ReLU6(),
                                torch.nn.MaxPool2d(3, 1, 1), torch.nn.Conv2d(16, 96, 1)).eval()
    x = torch.randn(2, 16, 12, 12)
    accelc.compile(model, (x,), target="cuda", output=tmp_path / "a", target_options={"arch": "sm_80"})
    source = (tmp_path / "a" / "lib.so").read_bytes().decode("latin-1")
    kernels = {}
    for m in re.finditer(r"__global__ void __launch_bounds__\(\d+\) (\w+)\([^)]*\) \{", source):
        kernels[m.group(1)] = source[m.end():source.index("\n}", m.end())]  # name → body
    short = [k for k in kernels if k.startswith(("fused_conv2d_", "max_pool2d"))]
    assert {k.split("_kernel")[0] for k in short} == {"fused_conv2d_add_tir_clip", "max_pool2d"}, sorted(kernels)
    for name in short:  # no cross-thread reduction: each thread sums its own window
        assert "red_buf" not in kernels[name] and "__shfl" not in kernels[name], name
    pointwise = [k for k in kernels if k.startswith("fused_conv2d1_")]
    assert pointwise and "shared" in kernels[pointwise[0]]  # dlight's matmul rule, tiled in shared memory
    assert SHORT_REDUCTION < 16 * 9  # a dense 3×3 conv over 16 channels is not short

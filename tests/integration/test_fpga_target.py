"""The fpga target end to end: placement, VTA programs in the artifact, the simulator behind the
host library; bit-exact against the int8 reference and identical to the cpu artifact."""

import json

import numpy as np
import pytest
import torch

import accelc
from accelc.errors import PipelineError
from examples.models import lenet
from tests.conftest import ROOT
from tests.helpers import random_dataset
from tests.models import tiny_resnet

PIPELINE = "fuse,quantize(scheme=pow2,sensitivity=false)"


@pytest.fixture(scope="module")
def resnet_artifacts(tmp_path_factory):
    d = tmp_path_factory.mktemp("fpga")
    x = torch.randn(1, 1, 16, 16)
    calib = d / "calib.npz"
    np.savez(calib, inputs=random_dataset(x.shape, 32).inputs[0])
    model = tiny_resnet()
    fpga = accelc.compile(model, (x,), target="fpga", pipeline=PIPELINE, calib=calib, output=d / "fpga",
                          target_options={"first_conv": "fpga"})
    cpu = accelc.compile(model, (x,), target="cpu", pipeline=PIPELINE, calib=calib, output=d / "cpu")
    return d, fpga, cpu


def test_fpga_and_cpu_artifacts_agree_exactly(resnet_artifacts):
    _, fpga, cpu = resnet_artifacts
    for seed in range(3):
        x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2
        np.testing.assert_array_equal(fpga(x).numpy(), cpu(x).numpy())
    assert fpga.report["artifact_check"]["vs_final_graph"]["max_abs_err"] == 0.0


def test_placement_and_artifact_files(resnet_artifacts):
    d, fpga, _ = resnet_artifacts
    report = fpga.report
    placement = report["fpga"]["placement"]
    on_fpga = {n for n, p in placement.items() if p["on"] == "fpga"}
    assert {"stem_0", "layer1_conv1", "layer2_down_0", "fc"} <= on_fpga
    assert "residual add fused" in placement["add"]["why"]
    assert all(p["why"] for p in placement.values())
    segments = report["fpga"]["segments"]
    assert len(segments) == 2  # the convolutions; then, after the host's pooling, the classifier
    for seg in segments:
        files = {p.name for p in (d / "fpga" / seg["dir"]).iterdir()}
        assert files == {"instructions.bin", "uops.bin", "weights.bin", "acc.bin", "memory_map.json"}
        assert (d / "fpga" / seg["dir"] / "instructions.bin").stat().st_size % 16 == 0
        mm = json.loads((d / "fpga" / seg["dir"] / "memory_map.json").read_text())
        assert mm["tensors"] and all(t["layout"] == "NCHW1n16c" for t in mm["tensors"].values())
    rows = report["fpga"]["layers"]
    assert all({"tiling", "sim", "model"} <= set(r) for r in rows if r["kind"] == "conv")
    run = report["fpga_run"]
    assert run["total_cycles"] > 0 and 0 < run["gemm_utilization"] <= 1


def test_disasm_and_run_cli(cli, resnet_artifacts):
    d, _, _ = resnet_artifacts
    listing = cli("fpga", "disasm", d / "fpga", check=0).stdout
    assert "LOAD WGT" in listing and "GEMM" in listing and "ALU SHR" in listing and "FINISH" in listing
    np.save(d / "x.npy", np.random.default_rng(0).standard_normal((1, 1, 16, 16)).astype(np.float32))
    out = cli("run", d / "fpga", "--input", d / "x.npy", "--json", check=0).stdout
    assert json.loads(out)["fpga"]["total_cycles_last_batch"] > 0


def test_fpga_requires_pow2_quantization():
    with pytest.raises(PipelineError, match="pow2"):
        accelc.compile(tiny_resnet(), (torch.randn(1, 1, 16, 16),), target="fpga", pipeline="fuse,quantize",
                       calib="digits")


def test_invalid_fpga_config_is_rejected(cli, tmp_path):
    from accelc.targets.fpga.config import VTAConfig

    (tmp_path / "bad.json").write_text(json.dumps({**VTAConfig.default().to_dict(), "LOG_INP_WIDTH": 4}))
    proc = cli("compile", "--entry", "examples/models.py:lenet", "--input-shape", "1x1x28x28", "--target", "fpga",
               "--fpga-config", tmp_path / "bad.json", "--calib", "digits", "-o", tmp_path / "o", cwd=ROOT)
    assert proc.returncode == 2 and "LOG_INP_WIDTH" in proc.stderr


@pytest.mark.slow
def test_simulated_lenet_digits_accuracy_equals_int8_reference(tmp_path):
    compiled = accelc.compile(lenet(pretrained=True), (torch.randn(1, 1, 28, 28),), target="fpga",
                              pipeline=PIPELINE, calib="digits", eval="digits", output=tmp_path / "a")
    acc = compiled.report["accuracy"]
    assert acc["samples"] == 359 and acc["artifact"] == acc["final_graph"]

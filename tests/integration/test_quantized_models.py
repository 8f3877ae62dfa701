"""Quantized models end to end on the cpu target: int8 outputs bit-identical to the reference,
accuracy on held-out digits within 0.5 points of fp32."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings

import accelc
from examples.models import lenet
from tests.helpers import random_dataset, run_pipeline
from tests.strategies import models


@pytest.mark.parametrize("scheme", ["fixed", "pow2"])
def test_digits_lenet_int8(scheme, tmp_path):
    compiled = accelc.compile(lenet(pretrained=True), (torch.randn(1, 1, 28, 28),), target="cpu",
                              pipeline=f"fuse,quantize(scheme={scheme},sensitivity=false)", calib="digits",
                              eval="digits", output=tmp_path / "a")
    report = compiled.report
    assert report["artifact_check"]["vs_final_graph"]["max_abs_err"] == 0.0  # int8 exact → dequantized exact
    acc = report["accuracy"]
    assert acc["artifact"] == acc["final_graph"] and acc["artifact"] >= acc["original"] - 0.005
    # weights shrink ~4x: int8 weights + int32 bias in the artifact
    assert report["graph"]["final"]["param_bytes"] < report["graph"]["original"]["param_bytes"] / 3.5


@settings(max_examples=3, deadline=None)
@given(model_and_inputs=models(max_blocks=5))
def test_random_cnns_int8_artifacts_are_exact(model_and_inputs, tmp_path_factory):
    """The artifact against the quantized fx graph (the reference), computed independently."""
    model, (x,) = model_and_inputs
    ds = random_dataset(x.shape, 16)
    calib = tmp_path_factory.mktemp("calib") / "calib.npz"
    np.savez(calib, inputs=ds.inputs[0])
    for scheme in ("fixed", "pow2"):
        pipeline = f"fuse,quantize(scheme={scheme},sensitivity=false)"
        compiled = accelc.compile(model, (x,), pipeline=pipeline, calib=calib)
        reference, _ = run_pipeline(model, (x,), pipeline, ds)  # same data, deterministic → same int8 graph
        for seed in range(2):
            xi = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)) * 2
            np.testing.assert_array_equal(compiled(xi).numpy(), reference(xi).detach().numpy())


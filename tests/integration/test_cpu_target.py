"""cpu target end to end with real TVM builds: artifact output equals PyTorch to 1e-4."""

import json

import numpy as np
import pytest
import torch

import accelc
from accelc.compiler.artifact import read_manifest
from accelc.errors import ArtifactError, DataError
from tests.models import tiny_depthwise, tiny_lenet, tiny_resnet

CASES = {
    "lenet": (tiny_lenet, (1, 1, 28, 28)),
    "resnet": (tiny_resnet, (2, 1, 16, 16)),
    "depthwise": (tiny_depthwise, (1, 3, 16, 16)),
}


@pytest.mark.parametrize("name", CASES)
def test_artifact_matches_pytorch(name, tmp_path):
    factory, shape = CASES[name]
    model = factory()
    x = torch.randn(shape)
    compiled = accelc.compile(model, (x,), target="cpu", output=tmp_path / name)
    for seed in range(3):
        xi = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(compiled(xi), model(xi), rtol=1e-4, atol=1e-4)
    report = compiled.report
    assert report["artifact_check"]["vs_original"]["max_abs_err"] < 1e-4
    assert report["pipeline"] == "fuse" and report["passes"][0]["name"] == "fuse"
    # save → load → run, with numpy in and out
    saved = compiled.save(tmp_path / f"{name}-copy")
    reloaded = accelc.load(saved)
    out = reloaded(x.numpy())
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, model(x).detach().numpy(), rtol=1e-4, atol=1e-4)


def test_manifest_contents_and_hashes(tmp_path):
    x = torch.randn(1, 1, 28, 28)
    accelc.compile(tiny_lenet(), (x,), output=tmp_path / "a")
    m = read_manifest(tmp_path / "a")
    assert m["format_version"] == 1 and m["target"] == "cpu" and m["pipeline"] == "fuse"
    assert m["inputs"] == [{"name": "x", "shape": [1, 1, 28, 28], "dtype": "float32"}]
    assert m["outputs"] == [{"name": "output", "shape": [1, 10], "dtype": "float32"}]
    assert set(m["files"]) == {"lib.so", "params.safetensors"}
    assert {"accelc", "torch", "tvm"} <= set(m["tools"])
    # tampering is detected
    p = tmp_path / "a" / "params.safetensors"
    p.write_bytes(p.read_bytes()[:-1] + b"\x01")
    with pytest.raises(ArtifactError, match="sha256"):
        accelc.load(tmp_path / "a")


def test_deterministic_builds(tmp_path):
    x = torch.randn(1, 3, 16, 16)
    for d in ("one", "two"):
        accelc.compile(tiny_depthwise(), (x,), output=tmp_path / d, reproducible=True)
    files = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert files == ["lib.so", "manifest.json", "params.safetensors", "report.json"]
    for f in files:
        assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes(), f


def test_failed_compile_leaves_nothing_half_written(tmp_path):
    x = torch.randn(1, 1, 28, 28)
    accelc.compile(tiny_lenet(), (x,), output=tmp_path / "a")
    before = (tmp_path / "a" / "manifest.json").read_bytes()
    with pytest.raises(accelc.AccelcError):
        accelc.compile(tiny_lenet(), (x,), output=tmp_path / "a", pipeline="fuse,nope")
    with pytest.raises(accelc.AccelcError):
        accelc.compile(tiny_lenet(), (x,), output=tmp_path / "a", eval=tmp_path / "missing.npz")
    assert (tmp_path / "a" / "manifest.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a"]  # no temporary directories left behind


def test_wrong_input_shape_is_a_clear_error(tmp_path):
    compiled = accelc.compile(tiny_lenet(), (torch.randn(1, 1, 28, 28),), output=tmp_path / "a")
    with pytest.raises(DataError, match=r"compiled for \(1, 1, 28, 28\)"):
        compiled(torch.randn(2, 1, 28, 28))


def test_eval_accuracy_reported(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 1, 28, 28, generator=g).numpy()
    model = tiny_lenet()
    labels = model(torch.from_numpy(x)).argmax(-1).numpy()  # the model is 100% right on its own labels
    np.savez(tmp_path / "eval.npz", inputs=x, labels=labels)
    compiled = accelc.compile(model, (torch.randn(1, 1, 28, 28),), output=tmp_path / "a", eval=tmp_path / "eval.npz")
    acc = compiled.report["accuracy"]
    assert acc["samples"] == 20 and acc["original"] == 1.0 and acc["artifact"] == 1.0
    assert json.loads((tmp_path / "a" / "report.json").read_text())["accuracy"] == acc


def _aligned_copy(a: np.ndarray, offset: int) -> np.ndarray:
    """``a`` copied to an address ``offset`` bytes past a 64-byte boundary."""
    buf = np.empty(a.nbytes + 128, np.uint8)
    start = (-buf.ctypes.data) % 64 + offset
    out = buf[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


@pytest.mark.parametrize("in_place_bytes", [0, None])
def test_inputs_in_place_or_staged_outputs_owned(in_place_bytes, tmp_path, monkeypatch):
    """The runner uses a 64-byte-aligned input in place (when it is large: here forced with a
    threshold of 0) and copies any other into an aligned array it keeps per input; a float64
    input is converted; either way the results are the same, and an output that is a view of
    the input (here: flatten) stays what it was after later calls."""
    from accelc.targets.tvm_backend import runner as tvm_runner

    if in_place_bytes is not None:
        monkeypatch.setattr(tvm_runner, "IN_PLACE_BYTES", in_place_bytes)

    class Twice(torch.nn.Module):
        def forward(self, x):
            return torch.flatten(x, 1), torch.relu(x) * 2

    x = torch.randn(2, 3, 4, 4)
    runner = accelc.compile(Twice().eval(), (x,), pipeline="fuse", output=tmp_path / "art", quiet=True).runner
    first = [_aligned_copy(x.numpy() + k, off) for k, off in ((0, 0), (1, 4), (2, 0), (3, 8))]
    first.append((x.numpy() + 4).astype(np.float64))
    outs = [runner.run([a]) for a in first]
    for k, (flat, twice) in enumerate(outs):
        ref = x.numpy() + k
        np.testing.assert_array_equal(flat, ref.reshape(2, -1))
        np.testing.assert_allclose(twice, np.maximum(ref, 0) * 2, rtol=1e-6)

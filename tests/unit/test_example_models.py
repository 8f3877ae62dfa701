"""examples/models.py, examples/train_digits.py and the shipped digit weights."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.fx
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `examples` lives at the repository root, outside the package
    sys.path.insert(0, str(ROOT))

from accelc.datasets import load_digits  # noqa: E402
from examples import models  # noqa: E402
from examples.models import DIGITS_MODELS, INPUT_SHAPES, MODELS, weights_path  # noqa: E402
from examples.train_digits import BACKGROUND, augment, evaluate, train  # noqa: E402

#: Test-split top-1 of the shipped weights must reach these (measured: see weights/README.md).
MIN_ACCURACY = {"lenet": 0.98, "mobilenet_tiny": 0.97, "resnet_tiny": 0.98, "transformer_tiny": 0.97}
#: The layers the examples may use (the transformer adds LayerNorm).
ALLOWED_LEAVES = {nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.MaxPool2d, nn.AdaptiveAvgPool2d,
                  nn.Flatten, nn.Linear, nn.LogSoftmax, nn.Dropout, nn.LayerNorm}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: tests run in parallel (pytest -n), and oversubscribed OpenMP
    threads make small CPU kernels many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _check_traces(name: str, batch: int = 2) -> None:
    model = MODELS[name]()
    x = torch.randn(batch, *INPUT_SHAPES[name])
    with torch.no_grad():
        expected = model(x)
        gm = torch.fx.symbolic_trace(model)
        torch.testing.assert_close(gm(x), expected, rtol=0, atol=0)
        ep = torch.export.export(model, (x,))
        torch.testing.assert_close(ep.module()(x), expected, rtol=1e-5, atol=1e-5)
    assert expected.shape == (batch, 10 if name in DIGITS_MODELS else 1000)
    assert torch.isfinite(expected).all()


def test_registry():
    assert set(DIGITS_MODELS) <= set(MODELS)
    assert set(INPUT_SHAPES) == set(MODELS)
    assert DIGITS_MODELS == ("lenet", "mobilenet_tiny", "resnet_tiny", "transformer_tiny")


@pytest.mark.parametrize("name", DIGITS_MODELS)
def test_digit_model_traces_with_fx_and_export(name):
    _check_traces(name)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_imagenet_model_traces_with_fx_and_export(name):
    _check_traces(name, batch=1)


@pytest.mark.parametrize("name", list(MODELS))
def test_models_use_only_the_allowed_layers_and_start_in_eval_mode(name):
    model = MODELS[name]()
    assert not model.training
    leaves = {type(m) for m in model.modules() if not list(m.children())}
    assert leaves <= ALLOWED_LEAVES, leaves - ALLOWED_LEAVES
    if name != "transformer_tiny":
        assert nn.LayerNorm not in leaves


@pytest.mark.parametrize("name, count", [
    ("lenet", 431_080), ("resnet18", 11_689_512), ("mobilenet_v2", 3_504_872),
])
def test_parameter_counts(name, count):
    assert sum(p.numel() for p in MODELS[name]().parameters()) == count


def test_imagenet_models_have_torchvision_layout():
    r18 = models.resnet18().state_dict()
    for key in ("conv1.weight", "bn1.running_var", "layer1.1.conv2.weight", "layer2.0.downsample.0.weight",
                "layer4.1.bn2.bias", "fc.weight"):
        assert key in r18
    assert "layer1.0.downsample.0.weight" not in r18
    assert len([k for k in r18 if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]) == 62
    mv2 = models.mobilenet_v2(num_classes=10).state_dict()
    for key in ("features.0.0.weight", "features.1.conv.0.0.weight", "features.2.conv.3.running_mean",
                "features.18.1.weight", "classifier.1.weight"):
        assert key in mv2
    assert mv2["classifier.1.weight"].shape == (10, 1280)
    assert mv2["features.18.0.weight"].shape == (1280, 320, 1, 1)


@pytest.fixture(scope="module")
def digits_test():
    return load_digits("test")


@pytest.mark.parametrize("name", DIGITS_MODELS)
def test_shipped_weights(name, digits_test):
    state = torch.load(weights_path(name), map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    fresh = MODELS[name]()
    fresh.load_state_dict(state)  # strict: the keys match the current architecture
    model = MODELS[name](pretrained=True)
    assert not model.training
    assert evaluate(model, *digits_test) >= MIN_ACCURACY[name]


def test_pretrained_missing_weights_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="train_digits.py lenet"):
        models.lenet(pretrained=True)


def test_augment_keeps_shape_and_background():
    x = torch.full((4, 1, 28, 28), BACKGROUND)
    x[:, :, 10:18, 10:18] = 2.0
    out = augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    torch.testing.assert_close(out[:, :, :2], x[:, :, :2])  # border stays background
    assert not torch.equal(out, x)


def test_training_is_deterministic_and_learns():
    model_a, acc_a = train("lenet", epochs=1, log=lambda *_: None)
    model_b, acc_b = train("lenet", epochs=1, log=lambda *_: None)
    assert not model_a.training
    assert acc_a == acc_b > 0.5  # chance is 0.1; one epoch reaches about 0.9
    for (ka, va), (kb, vb) in zip(model_a.state_dict().items(), model_b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)

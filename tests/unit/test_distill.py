"""The distill pass: KD fine-tuning against the reference graph."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

from accelc.compiler.capture import capture
from accelc.compiler.context import CompileContext
from accelc.compiler.data import Dataset
from accelc.compiler.pass_manager import PassManager
from accelc.compiler.pipeline import Pipeline
from accelc.errors import PipelineError


def teacher(output="log_softmax"):
    torch.manual_seed(0)
    layers = [nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 9, 5)]
    if output == "log_softmax":
        layers.append(nn.LogSoftmax(1))
    elif output == "softmax":
        layers.append(nn.Softmax(1))
    model = nn.Sequential(*layers).eval()
    with torch.no_grad():
        model[4].weight.mul_(8)  # confident predictions, so that pruning visibly hurts
    return model


def data(model, n=128, labels=True):
    x = np.random.default_rng(0).standard_normal((n, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).argmax(1).numpy()
    return Dataset((x,), y if labels else None, "synthetic")


X = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(3))


def run(model, pipeline, train, x=X):
    gm = capture(model, (x,))
    ctx = CompileContext((x,), train=train)
    return PassManager(Pipeline.parse(pipeline)).run(gm, ctx), ctx


@pytest.mark.parametrize("output", ["log_softmax", "softmax", "logits"])
def test_distill_reduces_the_kd_loss(output):
    model = teacher(output)
    reference_state = copy.deepcopy(model.state_dict())
    gm, ctx = run(model, "fuse,prune(ratio=0.5),distill(epochs=4,lr=0.01)", data(model))
    d = ctx.records[-1].details
    assert d["kd_after"] < 0.7 * d["kd_before"]
    assert len(d["history"]) == 4 and d["alpha"] == 0.5
    assert ctx.records[-1].top1_agreement is not None
    for k, v in ctx.reference.state_dict().items():  # the teacher is untouched
        torch.testing.assert_close(v, reference_state[k])


def test_pure_distillation_without_labels_and_seeded_results():
    model = teacher()
    unlabelled = data(model, labels=False)
    a, ctx = run(model, "prune(ratio=0.5),distill(epochs=2,alpha=0,seed=7)", unlabelled)
    b, _ = run(model, "prune(ratio=0.5),distill(epochs=2,alpha=0,seed=7)", unlabelled)
    assert ctx.records[-1].details["history"][0]["ce_loss"] is None
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


def test_literal_batch_size_in_the_graph_falls_back_to_the_example_batch():
    class ViewNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.fc = nn.Linear(4 * 36, 3)

        def forward(self, x):
            y = torch.relu(self.conv(x))
            return self.fc(y.view(y.size(0), -1))  # capture folds y.size(0) to the example batch

    model = ViewNet().eval()
    _, ctx = run(model, "distill(epochs=1,batch_size=32)", data(model, n=16))
    assert ctx.records[-1].details["batch_size"] == 1 and ctx.records[-1].details["steps"] == 16


def test_errors_name_the_missing_data():
    model = teacher()
    with pytest.raises(PipelineError, match="distill needs training data") as e:
        run(model, "distill", None)
    assert "--train" in e.value.hint
    with pytest.raises(PipelineError, match=r"alpha=0.3.*needs labels"):
        run(model, "distill(alpha=0.3)", data(model, labels=False))
    for bad in ("distill(epochs=0)", "distill(lr=0)", "distill(alpha=2)", "distill(temperature=-1)"):
        with pytest.raises(PipelineError):
            Pipeline.parse(bad)

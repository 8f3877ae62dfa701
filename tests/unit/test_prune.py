"""The prune pass: criteria, ratios, round_to, ignore, errors, and cpu compilation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import accelc
from accelc.compiler.capture import capture
from accelc.compiler.context import CompileContext
from accelc.compiler.data import Dataset
from accelc.compiler.pass_manager import PassManager
from accelc.compiler.pipeline import Pipeline
from accelc.errors import PipelineError
from accelc.passes.prune import keep_count


class SmallResNet(nn.Module):
    """conv-bn-relu stem, one residual block, a concat, flatten → linear → log-softmax."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.a = nn.Conv2d(16, 16, 3, padding=1)
        self.b = nn.Conv2d(16, 16, 3, padding=1)
        self.c = nn.Conv2d(16, 8, 1)
        self.fc1 = nn.Linear(24 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, 10)
        with torch.no_grad():
            self.bn.weight.uniform_(0.2, 1.5)
            self.bn.running_mean.normal_(0, 0.1)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        x = torch.relu(x + self.b(torch.relu(self.a(x))))
        x = F.max_pool2d(torch.cat([x, self.c(x)], 1), 2)
        return torch.log_softmax(self.fc2(torch.relu(self.fc1(torch.flatten(x, 1)))), 1)


def run(model, pipeline, x, **ctx_kw):
    gm = capture(model, (x,))
    ctx = CompileContext((x,), **ctx_kw)
    out = PassManager(Pipeline.parse(pipeline)).run(gm, ctx)
    return out, ctx


def digits_like(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return Dataset((rng.standard_normal((n, 1, 8, 8)).astype(np.float32),), rng.integers(0, 10, n), "synthetic")


@pytest.fixture
def model():
    torch.manual_seed(0)
    return SmallResNet().eval()


X = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def test_zeroed_filters_are_the_ones_removed_and_outputs_do_not_change():
    """Channels whose filters (and biases) are all zero are the least important under l1;
    pruning exactly them must leave the outputs unchanged."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Flatten(),
                      nn.Linear(8 * 16, 4)).eval()
    with torch.no_grad():
        for conv, dead in ((m[0], [1, 4, 6, 7]), (m[2], [0, 2, 3, 5])):
            conv.weight[dead] = 0
            conv.bias[dead] = 0
    x = torch.randn(3, 1, 8, 8)
    pruned, ctx = run(m, "fuse,prune(ratio=0.5)", x)
    assert pruned.get_submodule("0").out_channels == 4 and pruned.get_submodule("2").out_channels == 4
    assert pruned.get_submodule("5").in_features == 4 * 16
    torch.testing.assert_close(pruned(x), m(x), rtol=1e-5, atol=1e-6)
    assert ctx.records[-1].max_abs_err < 1e-5


def test_prune_removes_channels_and_reports_cost(model):
    pruned, ctx = run(model, "fuse,prune(ratio=0.5)", X)
    rec = ctx.records[-1]
    assert rec.flops_after < 0.5 * rec.flops_before and rec.params_after < rec.params_before
    d = rec.details
    assert d["flops_reduction"] > 0.5
    assert {tuple(g["layers"]): g["channels"] for g in d["groups"]} == {
        ("stem", "a", "b", "c", "fc1"): "16→8", ("a", "b"): "16→8", ("c", "fc1"): "8→4", ("fc1", "fc2"): "32→16"}
    assert pruned.stem.in_channels == 1  # the model input is never pruned
    assert pruned.fc2.out_features == 10  # nor the logits
    assert "fc2" in d["frozen_layers"]
    assert pruned(X).shape == (1, 10)


def test_round_to_and_never_to_zero(model):
    pruned, ctx = run(model, "fuse,prune(ratio=0.9,round_to=16)", X)
    chans = {tuple(g["layers"]): g["channels"] for g in ctx.records[-1].details["groups"]}
    assert chans[("stem", "a", "b", "c", "fc1")] == "16→16"  # 1.6 → rounded up to 16
    assert chans[("fc1", "fc2")] == "32→16"
    assert chans[("c", "fc1")] == "8→8"  # fewer than round_to: kept
    pruned, ctx = run(model, "fuse,prune(ratio=0.99)", X)
    assert all(g["channels"].endswith("→1") for g in ctx.records[-1].details["groups"])
    assert pruned(X).shape == (1, 10)


@pytest.mark.parametrize("n,ratio,round_to,keep", [(10, 0.5, 1, 5), (10, 0.99, 1, 1), (50, 0.5, 16, 32),
                                                    (8, 0.5, 16, 8), (20, 0.0, 1, 20), (3, 0.34, 1, 2)])
def test_keep_count(n, ratio, round_to, keep):
    assert keep_count(n, ratio, round_to) == keep


def test_global_ratio_removes_that_share_of_all_channels(model):
    _, ctx = run(model, "fuse,prune(ratio=0.5,global=true)", X)
    groups = ctx.records[-1].details["groups"]
    before = sum(int(g["channels"].split("→")[0]) for g in groups)
    after = sum(int(g["channels"].split("→")[1]) for g in groups)
    assert after == before - before // 2
    assert ctx.records[-1].options["global"] is True


def test_ignore_keeps_output_channels_of_the_layer(model):
    pruned, ctx = run(model, "fuse,prune(ratio=0.5,ignore=[a])", X)
    assert pruned.a.out_channels == 16 and pruned.b.in_channels == 16
    assert pruned.stem.out_channels == 8  # other groups are still pruned
    assert "a" in ctx.records[-1].details["frozen_layers"]


@pytest.mark.parametrize("criterion", ["l2", "taylor"])
def test_criteria(model, criterion):
    data = digits_like()
    pruned, ctx = run(model, f"fuse,prune(ratio=0.5,criterion={criterion})", X, calib=data)
    assert ctx.records[-1].details["criterion"] == criterion
    assert pruned.stem.out_channels == 8


def test_bn_scale_prunes_by_gamma_before_fuse(model):
    with torch.no_grad():
        model.bn.weight.copy_(torch.arange(1, 17, dtype=torch.float32))
    pruned, ctx = run(model, "prune(ratio=0.25,criterion=bn_scale),fuse", X)
    assert ctx.records[0].details["skipped"]  # groups without BatchNorm are listed, not pruned silently
    assert pruned.stem.out_channels == 12 and pruned.a.out_channels == 16


@pytest.mark.parametrize("pipeline,match", [
    ("prune(ratio=1)", r"option 'ratio': must be in \[0, 1\)"),
    ("prune(ratio=1.5)", r"must be in \[0, 1\)"),
    ("prune(ratio=-0.1)", r"must be in \[0, 1\)"),
    ("prune(round_to=0)", "round_to"),
    ("prune(criterion=l3)", "criterion"),
    ("prune(globl=true)", "unknown option 'globl'"),
])
def test_bad_options_fail_at_parse_time(pipeline, match):
    with pytest.raises(PipelineError, match=match):
        Pipeline.parse(pipeline)


def test_unknown_ignore_layer_is_a_pipeline_error(model):
    with pytest.raises(PipelineError, match="ignore='nope' names no layer") as e:
        run(model, "fuse,prune(ignore=[nope])", X)
    assert "stem" in e.value.hint


def test_bn_scale_after_fuse_says_why(model):
    with pytest.raises(PipelineError, match="BatchNorm") as e:
        run(model, "fuse,prune(criterion=bn_scale)", X)
    assert "before fuse" in e.value.hint


def test_taylor_without_data_says_what_to_pass(model):
    with pytest.raises(PipelineError, match="taylor") as e:
        run(model, "fuse,prune(criterion=taylor)", X)
    assert "--calib" in e.value.hint


def test_pruned_graph_exports_and_compiles_for_cpu(model):
    """The pruned graph runs through torch.export and the real TVM cpu build, and the
    artifact computes what the pruned fx graph computes."""
    pruned, _ = run(model, "fuse,prune(ratio=0.5)", X)
    ep = torch.export.export(copy.deepcopy(pruned), (X,))
    torch.testing.assert_close(ep.module()(X), pruned(X), rtol=1e-5, atol=1e-5)
    compiled = accelc.compile(pruned, (X,), target="cpu", pipeline="none")
    np.testing.assert_allclose(compiled(X.numpy()), pruned(X).detach().numpy(), rtol=1e-4, atol=1e-4)


def test_measure_latency_reports_cpu_artifact_times(model):
    _, ctx = run(model, "fuse,prune(ratio=0.5,measure_latency=true)", X)
    lat = ctx.records[-1].details["cpu_latency_ms"]
    assert lat["before"] > 0 and lat["after"] > 0 and lat["speedup"] > 0

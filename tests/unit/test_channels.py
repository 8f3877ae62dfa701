"""The channel-coupling dependency graph (accelc.compiler.analysis.channels)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from accelc.compiler.analysis.channels import channel_graph  # noqa: E402
from accelc.compiler.capture import capture  # noqa: E402
from accelc.compiler.context import CompileContext  # noqa: E402
from accelc.passes.channel_surgery import remove_units  # noqa: E402
from accelc.passes.fuse import Fuse  # noqa: E402
from accelc.passes.prune import Prune, PruneOptions, keep_count  # noqa: E402
from tests.strategies import random_cnns  # noqa: E402


def groups_by_layers(cg):
    return {frozenset(f"{m.layer}.{m.kind}" for m in g.members): g for g in cg.groups}


def zero_unit(gm, group, u):
    """Make unit ``u`` of ``group`` identically zero: zero the producing rows and biases, and
    the BatchNorm shift, so that removing the unit cannot change any output."""
    with torch.no_grad():
        for m in group.members:
            mod = gm.get_submodule(m.layer)
            idx = list(m.indices[u])
            if m.kind != "out":
                continue
            if isinstance(mod, nn.BatchNorm2d):
                mod.bias[idx] = 0
                mod.running_mean[idx] = 0
            else:
                mod.weight[idx] = 0
                if mod.bias is not None:
                    mod.bias[idx] = 0


# --------------------------------------------------------------------------- hand-built graphs
class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.down = nn.Conv2d(8, 16, 1, stride=2)
        self.c = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        x = torch.relu(x + self.b(torch.relu(self.a(x))))
        x = torch.relu(self.down(x) + self.c(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def test_residual_adds_couple_both_branches_and_the_consumers():
    x = torch.randn(1, 3, 8, 8)
    gm = capture(Residual().eval(), (x,))
    groups = groups_by_layers(channel_graph(gm, (x,)))
    assert set(groups) == {
        frozenset({"stem.out", "bn.out", "a.in", "b.out", "down.in", "c.in"}),  # the identity stage
        frozenset({"a.out", "b.in"}),  # inside the block
        frozenset({"down.out", "c.out", "fc.in"}),  # the projection stage (add of two convs)
    }
    assert all(g.size == 8 for k, g in groups.items() if "stem.out" in k or "a.out" in k)
    assert groups[frozenset({"down.out", "c.out", "fc.in"})].size == 16


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 6, 1)
        self.c = nn.Conv2d(10, 5, 3)

    def forward(self, x):
        return torch.flatten(F.adaptive_avg_pool2d(self.c(torch.cat([torch.relu(self.a(x)), self.b(x)], 1)), 1), 1)


def test_concat_maps_each_input_to_its_offset_range():
    x = torch.randn(1, 3, 8, 8)
    gm = capture(Concat().eval(), (x,))
    cg = channel_graph(gm, (x,))
    groups = groups_by_layers(cg)
    ga, gb = groups[frozenset({"a.out", "c.in"})], groups[frozenset({"b.out", "c.in"})]
    in_a = next(m for m in ga.members if m.layer == "c")
    in_b = next(m for m in gb.members if m.layer == "c")
    assert in_a.indices == tuple((i,) for i in range(4))
    assert in_b.indices == tuple((4 + i,) for i in range(6))
    assert "c" not in {m.layer for g in cg.groups for m in g.members if m.kind == "out"}  # feeds the output


class Depthwise(nn.Module):
    def __init__(self, mult=1):
        super().__init__()
        self.pw1 = nn.Conv2d(3, 6, 1)
        self.dw = nn.Conv2d(6, 6 * mult, 3, padding=1, groups=6)
        self.pw2 = nn.Conv2d(6 * mult, 4, 1)

    def forward(self, x):
        return torch.mean(self.pw2(F.relu6(self.dw(F.relu6(self.pw1(x))))), (2, 3))


@pytest.mark.parametrize("mult", [1, 2])
def test_depthwise_conv_couples_its_input_and_output_channels(mult):
    x = torch.randn(1, 3, 6, 6)
    gm = capture(Depthwise(mult).eval(), (x,))
    cg = channel_graph(gm, (x,))
    (g,) = cg.groups
    assert {(m.layer, m.kind) for m in g.members} == {("pw1", "out"), ("dw", "out"), ("pw2", "in")}
    assert g.size == 6
    dw = next(m for m in g.members if m.layer == "dw")
    assert dw.indices[1] == tuple(range(mult, 2 * mult))  # input channel 1 → its multiplier block


def test_grouped_conv_units_are_whole_groups():
    m = nn.Sequential(nn.Conv2d(2, 8, 1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1, groups=2), nn.Conv2d(4, 3, 1),
                      nn.Flatten(), nn.Linear(3 * 16, 2)).eval()
    x = torch.randn(1, 2, 4, 4)
    gm = capture(m, (x,))
    (g,) = [g for g in channel_graph(gm, (x,)).groups if any(mm.layer == "0" for mm in g.members)]
    assert g.size == 2  # one unit per group: 4 input and 2 output channels each
    first = {mm.layer: mm.indices[0] for mm in g.members}
    assert first == {"0": (0, 1, 2, 3), "2": (0, 1), "3": (0, 1)}


def test_flatten_to_linear_maps_channels_to_spatial_blocks():
    m = nn.Sequential(nn.Conv2d(1, 5, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(5 * 9, 3)).eval()
    x = torch.randn(1, 1, 8, 8)
    gm = capture(m, (x,))
    (g,) = channel_graph(gm, (x,)).groups
    fc_in = next(mm for mm in g.members if mm.layer == "4")
    assert fc_in.kind == "in" and fc_in.indices[2] == tuple(range(18, 27))


def test_literal_reshape_is_recorded_and_rewritten():
    class ViewNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 6, 3)
            self.fc = nn.Linear(6 * 4, 2)

        def forward(self, x):
            y = torch.relu(self.conv(x))
            return self.fc(y.view(y.size(0), -1 if False else 24))

    x = torch.randn(2, 1, 4, 4)
    gm = capture(ViewNet().eval(), (x,))
    cg = channel_graph(gm, (x,))
    assert len(cg.reshapes) == 1
    (g,) = cg.groups
    remove_units(gm, cg, [(g, [0, 3])])
    assert gm(x).shape == (2, 2) and gm.fc.in_features == 16


def test_inputs_outputs_softmax_and_shared_layers_are_frozen():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 4, 1)
            self.s = nn.Conv2d(4, 4, 1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            y = self.s(self.s(self.a(x)))
            return torch.log_softmax(self.fc(torch.mean(y, (2, 3))), 1)

    x = torch.randn(1, 3, 4, 4)
    gm = capture(Shared().eval(), (x,))
    cg = channel_graph(gm, (x,))
    assert cg.frozen["x"] == "model input"
    assert not cg.groups  # a and s are tied through the shared layer; fc feeds log_softmax over classes
    assert any("several places" in r for r in cg.frozen.values())


def test_ignore_freezes_the_layer_output():
    x = torch.randn(1, 3, 8, 8)
    gm = capture(Residual().eval(), (x,))
    groups = groups_by_layers(channel_graph(gm, (x,), ignore=["a"]))
    assert frozenset({"a.out", "b.in"}) not in groups and len(groups) == 2


# --------------------------------------------------------------------------- random nets
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=random_cnns(), fuse=st.booleans(), data=st.data())
def test_removing_a_zeroed_unit_keeps_the_outputs(net, fuse, data):
    """On random nets: zero one unit of every group (producers, biases, BN shift), then remove
    those units physically — the outputs must not change."""
    model, x = net
    gm = capture(model, (x,))
    if fuse:
        gm = Fuse().run(gm, CompileContext((x,)))
        gm.recompile()
    cg = channel_graph(gm, (x,))
    removal = []
    for g in cg.groups:
        if g.size > 1:
            u = data.draw(st.integers(0, g.size - 1))
            zero_unit(gm, g, u)
            removal.append((g, [u]))
    with torch.no_grad():
        expected = gm(x)
    remove_units(gm, cg, removal)
    with torch.no_grad():
        got = gm(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=random_cnns(), ratio=st.floats(0.0, 0.95), glob=st.booleans(), round_to=st.sampled_from([1, 1, 4]))
def test_pruned_random_nets_run_with_the_expected_channel_counts(net, ratio, glob, round_to):
    model, x = net
    gm = capture(model, (x,))
    with torch.no_grad():
        out_shape = gm(x).shape
    cg = channel_graph(copy.deepcopy(gm), (x,))
    sizes = {tuple(g.layers): g.size for g in cg.groups if g.size > 1}
    p = Prune(PruneOptions(ratio=ratio, global_=glob, round_to=round_to))
    pruned = p.run(gm, CompileContext((x,)))
    with torch.no_grad():
        assert pruned(x).shape == out_shape
    for entry in p.details["groups"]:
        before, after = map(int, entry["channels"].split("→"))
        assert before == sizes[tuple(entry["layers"])]
        assert 1 <= after <= before
        if not glob:
            assert after == keep_count(before, ratio, round_to)
        elif round_to > 1 and after < before:
            assert after % round_to == 0
    for name, mod in pruned.named_modules():  # every layer is consistent with its neighbours (it ran) and non-empty
        if isinstance(mod, nn.Conv2d):
            assert mod.weight.shape[0] == mod.out_channels >= 1
            assert mod.weight.shape[1] * mod.groups == mod.in_channels >= 1
        elif isinstance(mod, nn.Linear):
            assert tuple(mod.weight.shape) == (mod.out_features, mod.in_features)

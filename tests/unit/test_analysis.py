"""Shape propagation and the cost model against hand-computed numbers."""

import torch
import torch.nn as nn

from accelc.compiler.analysis.cost import graph_cost
from accelc.compiler.capture import capture
from tests.models import tiny_lenet


def test_lenet_costs_by_hand():
    x = torch.randn(1, 1, 28, 28)
    gm = capture(tiny_lenet(), (x,))
    cost = graph_cost(gm, (x,)).by_name()
    conv1 = cost["conv1"]
    assert conv1.shape == (1, 6, 24, 24)
    assert conv1.macs == 6 * 24 * 24 * 1 * 25 and conv1.flops == 2 * conv1.macs
    assert conv1.params == 6 * 25 + 6 and conv1.param_bytes == 4 * conv1.params
    assert conv1.activation_bytes == 4 * 6 * 24 * 24
    assert cost["fc1"].macs == 256 * 32
    total = graph_cost(gm, (x,))
    assert total.params == sum(p.numel() for p in tiny_lenet().parameters())


def test_grouped_conv_macs():
    m = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8)).eval()
    x = torch.randn(2, 8, 5, 5)
    gm = capture(m, (x,))
    (node,) = [c for c in graph_cost(gm, (x,)).nodes if c.op == "Conv2d"]
    assert node.macs == 2 * 8 * 5 * 5 * 9

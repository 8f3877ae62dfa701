"""Hypothesis strategies for random, valid small CNNs — the shared differential-testing
workload: every pass, now and later, is run on these and must preserve (exact passes) or
boundedly change (lossy passes) the outputs.

A model is a plan: a list of blocks (conv incl. grouped/depthwise, bn, relu/relu6, pools,
residual add, cat of two conv branches) followed by a head (flatten → linear, or global
average pool → linear). ``RandomNet(plan)`` interprets the plan in ``forward`` with a static
Python loop, so torch.fx and torch.export both trace it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import strategies as st


@dataclass(frozen=True)
class Block:
    kind: str  # conv | bn | relu | relu6 | maxpool | avgpool | residual | cat
    out_channels: int = 0
    kernel: int = 1
    stride: int = 1
    groups: int = 1


@dataclass(frozen=True)
class Plan:
    in_channels: int
    size: int
    blocks: tuple[Block, ...]
    head: str  # flatten | gap
    classes: int


def _init_bn(bn: nn.BatchNorm2d, gen: torch.Generator) -> nn.BatchNorm2d:
    c = bn.num_features
    bn.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
    bn.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
    bn.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
    bn.bias.data.copy_(torch.randn(c, generator=gen) * 0.1)
    return bn


class RandomNet(nn.Module):
    def __init__(self, plan: Plan, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.plan = plan
        self.layers = nn.ModuleList()
        c, s = plan.in_channels, plan.size
        for b in plan.blocks:
            if b.kind == "conv":
                self.layers.append(nn.Conv2d(c, b.out_channels, b.kernel, b.stride, b.kernel // 2, groups=b.groups))
                c = b.out_channels
                s = (s + 2 * (b.kernel // 2) - b.kernel) // b.stride + 1
            elif b.kind == "bn":
                self.layers.append(_init_bn(nn.BatchNorm2d(c), gen))
            elif b.kind == "residual":
                self.layers.append(nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), _init_bn(nn.BatchNorm2d(c), gen)))
            elif b.kind == "cat":
                self.layers.append(nn.ModuleList([nn.Conv2d(c, b.out_channels, 1), nn.Conv2d(c, b.out_channels, 3, 1, 1)]))
                c = 2 * b.out_channels
            elif b.kind in ("maxpool", "avgpool"):
                self.layers.append(nn.Identity())
                s = s // 2
            else:
                self.layers.append(nn.Identity())
        feat = c if plan.head == "gap" else c * s * s
        self.fc = nn.Linear(feat, plan.classes)
        self.eval()

    def forward(self, x):
        for b, layer in zip(self.plan.blocks, self.layers):
            if b.kind in ("conv", "bn"):
                x = layer(x)
            elif b.kind == "relu":
                x = F.relu(x)
            elif b.kind == "relu6":
                x = F.relu6(x)
            elif b.kind == "maxpool":
                x = F.max_pool2d(x, 2)
            elif b.kind == "avgpool":
                x = F.avg_pool2d(x, 2)
            elif b.kind == "residual":
                x = F.relu(x + layer(x))
            elif b.kind == "cat":
                x = torch.cat([layer[0](x), layer[1](x)], dim=1)
        if self.plan.head == "gap":
            x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


@st.composite
def plans(draw, max_blocks: int = 7) -> Plan:
    in_c = draw(st.sampled_from([1, 3, 4]))
    size = draw(st.sampled_from([8, 12, 16]))
    c, s = in_c, size
    blocks = []
    for _ in range(draw(st.integers(1, max_blocks))):
        options = ["conv", "conv", "bn", "relu", "relu6", "residual", "cat"]
        if s >= 4:
            options += ["maxpool", "avgpool"]
        kind = draw(st.sampled_from(options))
        if kind == "conv":
            depthwise = c > 1 and draw(st.booleans())
            if depthwise:
                out, groups = c, c
            else:
                groups = draw(st.sampled_from([g for g in (1, 2) if c % g == 0]))
                out = groups * draw(st.integers(1, 6))
            k = draw(st.sampled_from([1, 3]))
            stride = draw(st.sampled_from([1, 2])) if s >= 4 else 1
            blocks.append(Block("conv", out, k, stride, groups))
            c, s = out, (s + 2 * (k // 2) - k) // stride + 1
        elif kind == "cat":
            out = draw(st.integers(1, 4))
            blocks.append(Block("cat", out))
            c = 2 * out
        else:
            blocks.append(Block(kind))
            if kind in ("maxpool", "avgpool"):
                s //= 2
    return Plan(in_c, size, tuple(blocks), draw(st.sampled_from(["flatten", "gap"])), draw(st.integers(2, 10)))


@st.composite
def models(draw, max_blocks: int = 7, batch: int = 2):
    """(model, example_inputs) for a random plan, with seeded weights and inputs."""
    plan = draw(plans(max_blocks))
    seed = draw(st.integers(0, 2**16))
    model = RandomNet(plan, seed)
    x = torch.randn(batch, plan.in_channels, plan.size, plan.size, generator=torch.Generator().manual_seed(seed))
    return model, (x,)

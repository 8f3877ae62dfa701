"""Hypothesis strategies shared by the tests: random small, valid CNNs.

``random_cnns()`` draws ``(model, example_input)`` pairs. A model is a chain of blocks drawn
from: conv (1×1 or 3×3, stride 1/2, with or without bias, groups 1 / grouped / depthwise),
BatchNorm (random statistics, so it is not an identity), relu / relu6, max/avg pooling, a
residual block (``relu(x + conv(relu(bn(conv(x)))))``) and a concat block
(``cat([conv_a(x), conv_b(x)], 1)``); then a head: global average pool → flatten → linear,
or flatten → linear → relu → linear. Every model runs on its example input (eval mode).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import strategies as st


@dataclass
class CNNSpec:
    in_channels: int
    size: int
    blocks: list[tuple] = field(default_factory=list)
    head: str = "pool"  # "pool" (avg pool → flatten → fc) or "flatten" (flatten → fc → relu → fc)
    hidden: int = 8
    classes: int = 5
    seed: int = 0


def _bn(c: int, gen: torch.Generator) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c)
    bn.weight.data = torch.rand(c, generator=gen) + 0.5
    bn.bias.data = torch.randn(c, generator=gen) * 0.1
    bn.running_mean = torch.randn(c, generator=gen) * 0.1
    bn.running_var = torch.rand(c, generator=gen) + 0.5
    return bn


class RandomCNN(nn.Module):
    """The model a :class:`CNNSpec` describes."""

    def __init__(self, spec: CNNSpec):
        super().__init__()
        torch.manual_seed(spec.seed)
        gen = torch.Generator().manual_seed(spec.seed)
        self.spec = spec
        self.layers = nn.ModuleDict()
        c, s = spec.in_channels, spec.size
        for i, block in enumerate(spec.blocks):
            kind = block[0]
            if kind == "conv":
                _, cout, k, stride, groups, bias = block
                self.layers[f"conv{i}"] = nn.Conv2d(c, cout, k, stride, k // 2, groups=groups, bias=bias)
                c, s = cout, (s + 2 * (k // 2) - k) // stride + 1
            elif kind == "bn":
                self.layers[f"bn{i}"] = _bn(c, gen)
            elif kind in ("maxpool", "avgpool"):
                s //= 2
            elif kind == "res":
                self.layers[f"res{i}a"] = nn.Conv2d(c, c, 3, 1, 1)
                self.layers[f"res{i}bn"] = _bn(c, gen)
                self.layers[f"res{i}b"] = nn.Conv2d(c, c, 3, 1, 1, bias=False)
            elif kind == "cat":
                _, ca, cb = block
                self.layers[f"cat{i}a"] = nn.Conv2d(c, ca, 3, 1, 1)
                self.layers[f"cat{i}b"] = nn.Conv2d(c, cb, 1)
                c = ca + cb
        if spec.head == "pool":
            self.fc = nn.Linear(c, spec.classes)
        else:
            self.fc1 = nn.Linear(c * s * s, spec.hidden)
            self.fc = nn.Linear(spec.hidden, spec.classes)
        self.eval()

    def forward(self, x):
        for i, block in enumerate(self.spec.blocks):
            kind = block[0]
            if kind in ("conv", "bn"):
                x = self.layers[f"{kind}{i}"](x)
            elif kind == "relu":
                x = torch.relu(x)
            elif kind == "relu6":
                x = F.relu6(x)
            elif kind == "maxpool":
                x = F.max_pool2d(x, 2)
            elif kind == "avgpool":
                x = F.avg_pool2d(x, 2)
            elif kind == "res":
                y = torch.relu(self.layers[f"res{i}bn"](self.layers[f"res{i}a"](x)))
                x = torch.relu(x + self.layers[f"res{i}b"](y))
            elif kind == "cat":
                x = torch.cat([self.layers[f"cat{i}a"](x), self.layers[f"cat{i}b"](x)], 1)
        if self.spec.head == "pool":
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        return self.fc(torch.relu(self.fc1(torch.flatten(x, 1))))


@st.composite
def cnn_specs(draw, max_blocks: int = 6) -> CNNSpec:
    """A random :class:`CNNSpec` (channels ≤ 12, spatial size 6…12)."""
    spec = CNNSpec(in_channels=draw(st.integers(1, 3)), size=draw(st.integers(6, 12)),
                   head=draw(st.sampled_from(["pool", "flatten"])), hidden=draw(st.integers(3, 8)),
                   classes=draw(st.integers(2, 6)), seed=draw(st.integers(0, 2 ** 16)))
    c, s = spec.in_channels, spec.size
    kinds = ["conv", "conv", "bn", "relu", "relu6", "maxpool", "avgpool", "res", "cat"]
    spec.blocks.append(("conv", draw(st.integers(2, 8)), 3, 1, 1, True))  # a first conv off the input
    c = spec.blocks[0][1]
    for _ in range(draw(st.integers(0, max_blocks))):
        kind = draw(st.sampled_from(kinds))
        if kind == "conv":
            k = draw(st.sampled_from([1, 3]))
            stride = draw(st.sampled_from([1, 2])) if s >= 4 else 1
            style = draw(st.sampled_from(["dense", "dense", "depthwise", "grouped"]))
            if style == "depthwise":
                groups, cout = c, c * draw(st.sampled_from([1, 1, 2]))
            elif style == "grouped" and c % 2 == 0 and c >= 4:
                groups = 2
                cout = 2 * draw(st.integers(1, 4))
            else:
                groups, cout = 1, draw(st.integers(2, 12))
            spec.blocks.append(("conv", cout, k, stride, groups, draw(st.booleans())))
            c, s = cout, (s + 2 * (k // 2) - k) // stride + 1
        elif kind in ("maxpool", "avgpool"):
            if s >= 2:
                spec.blocks.append((kind,))
                s //= 2
        elif kind == "cat":
            ca, cb = draw(st.integers(1, 6)), draw(st.integers(1, 6))
            spec.blocks.append(("cat", ca, cb))
            c = ca + cb
        else:
            spec.blocks.append((kind,))
    return spec


def random_cnns(max_blocks: int = 6):
    """``(model, example_input)`` pairs of random valid CNNs (batch 2)."""
    def build(spec: CNNSpec):
        x = torch.randn(2, spec.in_channels, spec.size, spec.size, generator=torch.Generator().manual_seed(spec.seed))
        return RandomCNN(spec), x

    return cnn_specs(max_blocks).map(build)


def models(max_blocks: int = 6):
    """``(model, (example_input,))`` — :func:`random_cnns` in the call form compile() takes."""
    return random_cnns(max_blocks).map(lambda pair: (pair[0], (pair[1],)))

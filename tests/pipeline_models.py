"""Small trainable models for the partitioning and pipeline-training tests (no batch norm, so
micro-batched training equals full-batch training exactly). Each factory is usable as
``--entry tests/pipeline_models.py:NAME``."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    """ResNet basic block with GroupNorm; a 1×1 projection on the skip when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm1 = nn.GroupNorm(4, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(4, cout)
        self.relu = nn.ReLU(inplace=True)
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.GroupNorm(4, cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        out += self.skip(x)
        return self.relu(out)


class ResNetStyle(nn.Module):
    def __init__(self, in_channels: int = 1, width: int = 8, blocks: tuple[int, ...] = (2, 2, 2), classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.GroupNorm(4, width),
                                  nn.ReLU(inplace=True))
        layers, cin = [], width
        for i, n in enumerate(blocks):
            cout = width * 2 ** i
            for j in range(n):
                layers.append(BasicBlock(cin, cout, 2 if (j == 0 and i > 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


class EncoderBlock(nn.Module):
    """Pre-norm transformer encoder block: self-attention written out with matmuls, then an MLP."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5, dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.norm2(x))


class TransformerStyle(nn.Module):
    """Rows of a 1×H×W image as a sequence of H tokens of W features."""

    def __init__(self, width: int = 8, tokens: int = 8, dim: int = 32, depth: int = 4, heads: int = 4, classes: int = 10):
        super().__init__()
        self.embed = nn.Linear(width, dim)
        self.pos = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.embed(x.flatten(1, 2)) + self.pos
        x = self.norm(self.blocks(x))
        return torch.log_softmax(self.head(x.mean(dim=1)), dim=-1)


def resnet_style() -> nn.Module:
    return ResNetStyle()


def transformer_style() -> nn.Module:
    return TransformerStyle()


def resnet_style_large() -> nn.Module:
    """For stage-balance tests and the benchmark: 3×32×32 inputs, 3 stages of 2 blocks."""
    return ResNetStyle(in_channels=3, width=16, blocks=(2, 2, 2))


def transformer_style_large() -> nn.Module:
    """For stage-balance tests and the benchmark: 32 tokens of 32 features, 8 blocks."""
    return TransformerStyle(width=32, tokens=32, dim=64, depth=8, heads=4)


class BatchNormNet(nn.Module):
    """With batch norm, to check that BN models train (not for exactness: BN statistics per
    microbatch differ from the full batch's)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).flatten(1))


def batchnorm_net() -> nn.Module:
    return BatchNormNet()


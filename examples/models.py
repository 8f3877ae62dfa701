"""Example models for accelc: small digit classifiers with trained weights, and two standard
ImageNet architectures (random weights) for benchmarks.

Every factory returns an ``nn.Module`` in eval mode (inference is what accelc compiles; call
``.train()`` to train it), so each can be named on the command line::

    accelc compile --entry examples/models.py:lenet ...

This file imports nothing but torch, so it works both as ``examples.models`` and when loaded
by path. All models trace with ``torch.fx.symbolic_trace`` and ``torch.export.export`` and use
only Conv2d, BatchNorm2d, ReLU/ReLU6, MaxPool2d, AdaptiveAvgPool2d, flatten, Linear, residual
``+``, LogSoftmax and Dropout — plus LayerNorm, softmax, matmul, transpose, (un)flatten and
mean in the transformer.

Digit models (input ``(N, 1, 28, 28)``, normalised as :func:`accelc.datasets.load_digits`
returns it; output ``(N, 10)``) take ``pretrained=True`` to load the weights shipped in
``examples/weights/`` (produced by ``examples/train_digits.py``, see its README):

==================  ==========================================================================
``lenet``            classic LeNet: conv5-relu-pool ×2, fc 800→500→10, log-softmax output
``mobilenet_tiny``   MobileNet-v1 style: stem + 3 depthwise-separable blocks (16/32/64 ch.)
``resnet_tiny``      ResNet style: stem + 3 BasicBlocks (16/32/64 channels)
``transformer_tiny`` ViT style: 7×7 patches, 2 pre-norm encoder blocks (dim 64, 4 heads)
==================  ==========================================================================

ImageNet models (input ``(N, 3, 224, 224)``, output ``(N, num_classes)``), with the same
layer structure, state-dict keys and parameter counts as torchvision's:

==================  ==========================================================================
``resnet18``         11,689,512 parameters
``mobilenet_v2``     3,504,872 parameters (width 1.0)
==================  ==========================================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn as nn

#: Where ``examples/train_digits.py`` writes, and ``pretrained=True`` reads, the weights.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


# --------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------


def conv_bn_act(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: int = 1,
    groups: int = 1,
    activation: type[nn.Module] | None = nn.ReLU6,
) -> nn.Sequential:
    """``Conv2d (no bias, "same" padding) → BatchNorm2d → activation`` (torchvision's
    ``Conv2dNormActivation``); ``activation=None`` leaves the activation out."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2,
                  groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if activation is not None:
        layers.append(activation())
    return nn.Sequential(*layers)


def depthwise_separable(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """MobileNet-v1 block: depthwise 3×3 (``groups=in_channels``) → BN → ReLU6, then
    pointwise 1×1 → BN → ReLU6."""
    return nn.Sequential(
        conv_bn_act(in_channels, in_channels, 3, stride, groups=in_channels),
        conv_bn_act(in_channels, out_channels, 1),
    )


class BasicBlock(nn.Module):
    """ResNet basic block: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.

    The shortcut is the identity, or ``downsample`` = 1×1 conv → BN when the stride or the
    channel count changes. Attribute names match torchvision's ``BasicBlock``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + identity)


class ResNet(nn.Module):
    """ResNet of :class:`BasicBlock` stages, with torchvision's attribute names.

    ``blocks[i]`` blocks of width ``widths[i]`` per stage; every stage but the first starts
    with stride 2. The stem is ``conv(stem_kernel, stem_stride) → BN → ReLU`` followed, if
    ``stem_pool``, by a 3×3 stride-2 max-pool.
    """

    def __init__(
        self,
        blocks: Sequence[int],
        widths: Sequence[int],
        num_classes: int,
        in_channels: int = 3,
        stem_kernel: int = 7,
        stem_stride: int = 2,
        stem_pool: bool = True,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], stem_kernel, stem_stride,
                               stem_kernel // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem_pool else None
        channels = widths[0]
        for i, (n, width) in enumerate(zip(blocks, widths)):
            stage = []
            for j in range(n):
                stage.append(BasicBlock(channels, width, stride=2 if i > 0 and j == 0 else 1))
                channels = width
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.num_stages = len(blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1×1 expand (unless ``expand_ratio == 1``) → 3×3 depthwise →
    1×1 linear projection, plus the input when the shape is unchanged. Attribute names
    match torchvision's."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_act(in_channels, hidden, 1))
        layers += [
            conv_bn_act(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2, width 1.0 (Sandler et al. 2018), laid out like torchvision's."""

    # expansion t, output channels c, repeats n, first stride s
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        channels, last = 32, 1280
        features: list[nn.Module] = [conv_bn_act(3, channels, 3, 2)]
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                features.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
                channels = c
        features.append(conv_bn_act(channels, last, 1))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class SelfAttention(nn.Module):
    """Multi-head self-attention from plain Linear layers and tensor ops (fx-traceable,
    unlike ``nn.MultiheadAttention``): ``proj(softmax(q kᵀ / √d) v)`` per head."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim ** -0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, dim) → (N, heads, T, head_dim)"""
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self._heads(self.q(x)) * self.scale
        k = self._heads(self.k(x))
        v = self._heads(self.v(x))
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)), dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).flatten(2)  # (N, T, dim)
        return self.proj(out)


class EncoderBlock(nn.Module):
    """Pre-norm transformer encoder block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, dim: int, heads: int, mlp_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(mlp_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class TransformerTiny(nn.Module):
    """ViT-style classifier: non-overlapping patches (a strided conv) + learned position
    embedding → encoder blocks → LayerNorm → mean over tokens → linear head."""

    def __init__(self, image_size: int = 28, patch: int = 7, in_channels: int = 1,
                 dim: int = 64, depth: int = 2, heads: int = 4, mlp_dim: int = 128,
                 num_classes: int = 10):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image size {image_size} is not a multiple of patch {patch}")
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, (image_size // patch) ** 2, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.Sequential(*(EncoderBlock(dim, heads, mlp_dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed  # (N, T, dim)
        x = self.norm(self.blocks(x))
        return self.head(torch.mean(x, dim=1))


def init_weights(model: nn.Module) -> nn.Module:
    """torchvision-style initialisation for the ImageNet models: Kaiming-normal (fan-out) convs,
    BatchNorm weight 1 / bias 0, Linear N(0, 0.01) with bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    return model


# --------------------------------------------------------------------------------------
# Factories
# --------------------------------------------------------------------------------------


def weights_path(name: str) -> Path:
    """Path of the shipped state dict of digit model ``name``."""
    return WEIGHTS_DIR / f"{name}.pt"


def _digits_model(model: nn.Module, name: str, pretrained: bool) -> nn.Module:
    if pretrained:
        path = weights_path(name)
        if not path.is_file():
            raise FileNotFoundError(
                f"no weights for {name!r} at {path}; run `python examples/train_digits.py {name}`")
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def lenet(pretrained: bool = False) -> nn.Module:
    """Classic LeNet for ``(N, 1, 28, 28)``: conv 1→20 5×5 → ReLU → max-pool 2, conv 20→50
    5×5 → ReLU → max-pool 2, flatten, fc 800→500 → ReLU, fc 500→10, log-softmax
    (431,080 parameters). Activations come before pooling (same result: both commute)."""
    model = nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(800, 500), nn.ReLU(),
        nn.Linear(500, 10),
        nn.LogSoftmax(dim=1),
    )
    return _digits_model(model, "lenet", pretrained)


def mobilenet_tiny(pretrained: bool = False) -> nn.Module:
    """MobileNet-v1-style digits net: stem conv 3×3/2 (1→16) → BN → ReLU6, depthwise-separable
    blocks 16→32, 32→64 (stride 2), 64→64, global average pool, linear 64→10."""
    model = nn.Sequential(
        conv_bn_act(1, 16, 3, stride=2),  # 28 → 14
        depthwise_separable(16, 32),
        depthwise_separable(32, 64, stride=2),  # 14 → 7
        depthwise_separable(64, 64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )
    return _digits_model(model, "mobilenet_tiny", pretrained)


def resnet_tiny(pretrained: bool = False) -> nn.Module:
    """ResNet-style digits net: stem conv 3×3 (1→16) → BN → ReLU, BasicBlocks 16 (28×28),
    32 (14×14), 64 (7×7) with 1×1-conv downsample shortcuts, average pool, linear 64→10."""
    model = ResNet(blocks=(1, 1, 1), widths=(16, 32, 64), num_classes=10, in_channels=1,
                   stem_kernel=3, stem_stride=1, stem_pool=False)
    return _digits_model(model, "resnet_tiny", pretrained)


def transformer_tiny(pretrained: bool = False) -> nn.Module:
    """ViT-style digits net: 16 patches of 7×7, dim 64, 2 encoder blocks of 4 heads with MLP
    64→128→64, mean-pool, linear 64→10."""
    return _digits_model(TransformerTiny(), "transformer_tiny", pretrained)


def resnet18(num_classes: int = 1000) -> nn.Module:
    """ResNet-18 (He et al. 2016) for ``(N, 3, 224, 224)``, random weights; same structure,
    state-dict keys and parameter count (11,689,512 at 1000 classes) as torchvision's."""
    model = ResNet(blocks=(2, 2, 2, 2), widths=(64, 128, 256, 512), num_classes=num_classes)
    return init_weights(model).eval()


def mobilenet_v2(num_classes: int = 1000) -> nn.Module:
    """MobileNetV2 width 1.0 for ``(N, 3, 224, 224)``, random weights; same structure,
    state-dict keys and parameter count (3,504,872 at 1000 classes) as torchvision's."""
    return init_weights(MobileNetV2(num_classes)).eval()


#: Every factory by name.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet": lenet,
    "mobilenet_tiny": mobilenet_tiny,
    "resnet_tiny": resnet_tiny,
    "transformer_tiny": transformer_tiny,
    "resnet18": resnet18,
    "mobilenet_v2": mobilenet_v2,
}
#: The digit classifiers (trained weights shipped in ``examples/weights/``).
DIGITS_MODELS = ("lenet", "mobilenet_tiny", "resnet_tiny", "transformer_tiny")
#: Input shape (without the batch dimension) of every model.
INPUT_SHAPES: dict[str, tuple[int, int, int]] = {
    **{name: (1, 28, 28) for name in DIGITS_MODELS},
    "resnet18": (3, 224, 224),
    "mobilenet_v2": (3, 224, 224),
}

"""Retrain the digit example models and write ``examples/weights/<name>.pt``.

    python examples/train_digits.py                      # all four digit models
    python examples/train_digits.py lenet resnet_tiny --epochs 10

Training is deterministic (fixed seeds, one CPU thread by default, deterministic torch
algorithms): it uses the ``"train"`` split of :func:`accelc.datasets.load_digits`, augmented
with small random affine transforms (rotation ±10°, scale ±10 %, shift ±2 px), AdamW and a
one-cycle learning-rate schedule. BatchNorm layers train in train mode; the model is then put
in eval mode, scored on the ``"test"`` split, and saved as a plain ``state_dict`` (loadable
with ``torch.load(path, weights_only=True)``). A Markdown summary table is printed at the end
(it is the one in ``examples/weights/README.md``).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `accelc` and `examples` importable
    sys.path.insert(0, str(ROOT))

from accelc.datasets import MEAN, STD, load_digits  # noqa: E402
from examples.models import DIGITS_MODELS, MODELS, weights_path  # noqa: E402

#: Per model: (epochs, peak learning rate).
RECIPES = {
    "lenet": (30, 2e-3),
    "mobilenet_tiny": (60, 1e-2),
    "resnet_tiny": (30, 5e-3),
    "transformer_tiny": (80, 2e-3),
}
BATCH_SIZE = 64
WEIGHT_DECAY = 1e-4
SEED = 0
#: Pixel value of the blank background after normalisation (what augmentation fills in).
BACKGROUND = (0.0 - MEAN) / STD


def augment(x: torch.Tensor, gen: torch.Generator, max_degrees: float = 10.0,
            max_scale: float = 0.1, max_shift: float = 2.0) -> torch.Tensor:
    """Random per-image rotation, scaling and shift (in pixels), filling with background."""
    n, _, h, w = x.shape
    u = torch.rand(n, 4, generator=gen) * 2 - 1  # uniform in [-1, 1]
    angle = u[:, 0] * math.radians(max_degrees)
    scale = 1 + u[:, 1] * max_scale
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    tx, ty = u[:, 2] * max_shift * 2 / w, u[:, 3] * max_shift * 2 / h  # normalised coords
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x - BACKGROUND, grid, align_corners=False) + BACKGROUND


@torch.no_grad()
def evaluate(model: nn.Module, inputs, labels, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` (as it is: call ``.eval()`` first) on numpy/torch data."""
    inputs, labels = torch.as_tensor(inputs), torch.as_tensor(labels)
    correct = 0
    for i in range(0, len(inputs), batch_size):
        correct += (model(inputs[i:i + batch_size]).argmax(1) == labels[i:i + batch_size]).sum().item()
    return correct / len(inputs)


def train(name: str, epochs: int | None = None, seed: int = SEED, log=print) -> tuple[nn.Module, float]:
    """Train digit model ``name`` from scratch; returns (model in eval mode, test accuracy)."""
    default_epochs, lr = RECIPES[name]
    epochs = default_epochs if epochs is None else epochs
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_train, y_train = map(torch.from_numpy, load_digits("train"))
    x_test, y_test = load_digits("test")

    model = MODELS[name]().train()
    steps_per_epoch = math.ceil(len(x_train) / BATCH_SIZE)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, epochs=epochs,
                                                steps_per_epoch=steps_per_epoch)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        total_loss = 0.0
        for i in range(0, len(perm), BATCH_SIZE):
            idx = perm[i:i + BATCH_SIZE]
            loss = F.cross_entropy(model(augment(x_train[idx], gen)), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item() * len(idx)
        if (epoch + 1) % 10 == 0 or epoch + 1 == epochs:
            acc = evaluate(model.eval(), x_test, y_test)
            log(f"  {name} epoch {epoch + 1}/{epochs}: loss {total_loss / len(perm):.4f}, "
                f"test top-1 {acc:.4f}")
    model.eval()
    return model, evaluate(model, x_test, y_test)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", metavar="name", default=list(DIGITS_MODELS),
                        help=f"models to train (default: all of {', '.join(DIGITS_MODELS)})")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs for every model (default: per-model recipe)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (default 1: results are bit-reproducible per thread count)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default: examples/weights)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in DIGITS_MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(DIGITS_MODELS)}")
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be at least 1")

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    rows = []
    for name in args.names:
        start = time.perf_counter()
        model, acc = train(name, args.epochs, args.seed)
        path = weights_path(name) if args.out is None else args.out / f"{name}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), path)
        params = sum(p.numel() for p in model.parameters())
        secs = time.perf_counter() - start
        print(f"{name}: test top-1 {acc:.4f} ({params:,} params, {secs:.0f} s) -> {path}")
        rows.append(f"| `{name}` | {params:,} | {acc * 100:.2f} % | {path.stat().st_size / 1e3:,.0f} kB |")
    print("\n| model | params | test top-1 | file size |\n|---|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

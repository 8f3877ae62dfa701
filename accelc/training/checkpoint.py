"""Checkpoints: one ordinary ``state_dict`` of the whole model, and a training-state sidecar.

``PATH`` holds exactly what ``model.state_dict()`` of the original module holds — the same
keys in the same order, gathered from every pipeline stage (and, for parameters and buffers
no stage uses, from the model as loaded) — written with ``torch.save``. Plain PyTorch loads it:
``model.load_state_dict(torch.load(PATH))``.

``PATH.train`` (the *sidecar*) holds what resuming needs besides the weights: the number of
steps taken, the optimizer's state per parameter *name* (so a run may resume with another
number of stages or replicas), and the SHA-256 of ``PATH``'s bytes, which ties the pair
together. Both files are written atomically (temporary file in the same directory, fsync,
rename) by rank 0, sidecar first; a checkpoint whose halves disagree is refused on resume.
With data parallelism all replicas hold the same parameters; batch-norm running statistics,
which each replica keeps for itself, are saved from replica 0.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from accelc.errors import TrainingError

SIDECAR_SUFFIX = ".train"
FORMAT = "accelc-train-state"
VERSION = 1


def sidecar_path(path: str | Path) -> Path:
    return Path(str(path) + SIDECAR_SUFFIX)


def write_atomic(data: bytes, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _to_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def optimizer_state_by_name(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, dict]:
    """The optimizer's per-parameter state keyed by parameter name (tensors cloned to CPU)."""
    out = {}
    for name, p in module.named_parameters():
        state = optimizer.state.get(p)
        if state:
            out[name] = {k: v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
    return out


def load_optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer, by_name: dict[str, dict]) -> None:
    """Give ``optimizer`` (over ``module.parameters()``) the saved state of its parameters."""
    names = [name for name, _ in module.named_parameters()]
    current = optimizer.state_dict()
    state = {i: by_name[name] for i, name in enumerate(names) if name in by_name}
    optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})


def stage_payload(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """What one stage contributes to a checkpoint: its weights and its optimizer state."""
    return {"model": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
            "optimizer": optimizer_state_by_name(module, optimizer)}


def save_checkpoint(path: str | Path, payloads: list[dict], *, keys: list[str], unused: dict[str, torch.Tensor],
                    step: int, optimizer: str, data: dict) -> None:
    """Write the model state_dict (in ``keys`` order) and its sidecar (rank 0 only)."""
    merged: dict[str, torch.Tensor] = dict(unused)
    optim: dict[str, dict] = {}
    for p in payloads:
        merged.update(p["model"])
        optim.update(p["optimizer"])
    missing = [k for k in keys if k not in merged]
    if missing:
        raise TrainingError(f"internal: checkpoint would lack {', '.join(missing[:5])}")
    model_bytes = _to_bytes({k: merged[k] for k in keys})
    sidecar = {"format": FORMAT, "version": VERSION, "step": step, "optimizer": optimizer,
               "optimizer_state": optim, "data": data, "model_sha256": hashlib.sha256(model_bytes).hexdigest()}
    path = Path(path)
    write_atomic(_to_bytes(sidecar), sidecar_path(path))
    write_atomic(model_bytes, path)


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The state_dict and the training state of a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    side = sidecar_path(path)
    if not side.is_file():
        raise TrainingError(f"--resume {path}: no training state next to it ({side.name})",
                            hint=f"resuming needs both files; to start a new run from these weights pass --weights {path}")
    model_bytes = path.read_bytes()
    try:
        state = torch.load(io.BytesIO(model_bytes), map_location="cpu", weights_only=True)
        train = torch.load(side, map_location="cpu", weights_only=True)
    except Exception as e:
        raise TrainingError(f"--resume {path}: unreadable checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(train, dict) or train.get("format") != FORMAT:
        raise TrainingError(f"--resume {path}: {side.name} is not an accelc training state")
    if train["model_sha256"] != hashlib.sha256(model_bytes).hexdigest():
        raise TrainingError(f"--resume {path}: the weights and {side.name} come from different saves",
                            hint="a save was interrupted between its two files; resume from another checkpoint")
    return state, train

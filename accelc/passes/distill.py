"""``distill``: recover accuracy after lossy passes by knowledge distillation.

The graph being compiled (the student) is fine-tuned in place to match the graph as it was
before the first pass (``ctx.reference``, the teacher) on the ``--train`` data:
``loss = (1 − α) · T² · KL(softmax(teacher/T) ‖ softmax(student/T)) + α · CE(student, labels)``
(Hinton et al., 2015), with Adam and a cosine learning-rate decay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.fx as fx
import torch.nn as nn

from accelc.compiler.context import CompileContext
from accelc.compiler.data import Dataset
from accelc.compiler.options import in_range
from accelc.errors import PipelineError
from accelc.passes.base import Pass, register_pass
from accelc.passes.training import batch_size_for, batches, kd_loss, label_loss, logits_fn
from accelc.progress import progress


@dataclass
class DistillOptions:
    epochs: int = field(default=3, metadata={"help": "passes over the training data", "check": in_range(1)})
    lr: float = field(default=5e-3, metadata={"help": "Adam learning rate (cosine-decayed to 0)",
                                              "check": in_range(0.0, lo_open=True)})
    batch_size: int = field(default=64, metadata={"help": "training batch size", "check": in_range(1)})
    temperature: float = field(default=4.0, metadata={"help": "softening temperature T of the logits",
                                                      "check": in_range(0.0, lo_open=True)})
    alpha: float | None = field(default=None, metadata={
        "help": "weight of the label loss (0: pure distillation); default 0.5 when the data has labels, else 0",
        "check": in_range(0.0, 1.0)})
    weight_decay: float = field(default=0.0, metadata={"help": "Adam weight decay", "check": in_range(0.0)})
    seed: int | None = field(default=None, metadata={"help": "shuffling seed (default: the compile seed)"})
    bn: Literal["train", "frozen"] = field(default="train", metadata={
        "help": "BatchNorm layers still in the graph (e.g. prune before fuse): re-estimate their statistics while "
                "training (train) or keep them (frozen)"})


@dataclass
class _Epoch:
    kd: float = 0.0
    ce: float = 0.0
    batches: int = 0


def mean_kd(student: fx.GraphModule, teacher: fx.GraphModule, data: Dataset, batch: int, temperature: float) -> float:
    """The distillation loss averaged over ``data`` (no gradients)."""
    s_logits, t_logits = logits_fn(student), logits_fn(teacher)
    total, n = 0.0, 0
    with torch.no_grad():
        for inputs, _ in batches(data, batch):
            total += float(kd_loss(s_logits(student(*inputs)), t_logits(teacher(*inputs)), temperature))
            n += 1
    return total / max(n, 1)


def distill(student: fx.GraphModule, teacher: fx.GraphModule, data: Dataset, o: DistillOptions, *,
            seed: int, fallback_batch: int, quiet: bool = True) -> dict:
    """Fine-tune ``student``'s parameters in place against ``teacher``; returns the loss history.

    Only BatchNorm layers of the student are put in train mode (with ``bn="train"`` and
    batches of more than one sample), so that they follow the pruned network's activation
    statistics; everything else, and the teacher, stays in eval mode (dropout is off, as in
    the compiled graph). The student is left in eval mode.
    """
    alpha = o.alpha if o.alpha is not None else (0.5 if data.labels is not None else 0.0)
    if alpha > 0 and data.labels is None:
        raise PipelineError(f"distill(alpha={alpha}) needs labels in the training data ({data.source} has none)",
                            hint="add a 'labels' array to the .npz, or pass alpha=0 for pure distillation")
    student.eval()
    teacher.eval()
    bs = batch_size_for(student, data, o.batch_size, fallback_batch)
    norms = [m for m in student.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    train_bn = o.bn == "train" and bs > 1 and bool(norms)
    steps_per_epoch = max(1, len(data) // bs)
    params = [p for p in student.parameters() if p.is_floating_point()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + math.cos(math.pi * step / (o.epochs * steps_per_epoch))))
    s_logits, t_logits = logits_fn(student), logits_fn(teacher)
    kd_before = mean_kd(student, teacher, data, bs, o.temperature)
    history = []
    for m in norms if train_bn else ():
        m.train()
    with torch.enable_grad():
        for epoch in range(o.epochs):
            ep = _Epoch()
            it = progress(batches(data, bs, seed=seed + epoch), desc=f"distill {epoch + 1}/{o.epochs}",
                          total=steps_per_epoch, quiet=quiet)
            for inputs, labels in it:
                with torch.no_grad():
                    target = t_logits(teacher(*inputs))
                logits = s_logits(student(*inputs))
                kd = kd_loss(logits, target, o.temperature)
                ce = label_loss(logits, labels) if alpha > 0 else torch.zeros(())
                loss = (1 - alpha) * kd + alpha * ce
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                ep.kd, ep.ce, ep.batches = ep.kd + kd.item(), ep.ce + ce.item(), ep.batches + 1
            history.append({"epoch": epoch + 1, "kd_loss": round(ep.kd / max(ep.batches, 1), 6),
                            "ce_loss": round(ep.ce / max(ep.batches, 1), 6) if alpha > 0 else None})
    student.eval()
    for p in params:
        p.grad = None
    return {"alpha": alpha, "batch_size": bs, "bn_train": train_bn, "steps": o.epochs * steps_per_epoch, "history": history,
            "kd_before": round(kd_before, 6), "kd_after": round(mean_kd(student, teacher, data, bs, o.temperature), 6)}


@register_pass
class Distill(Pass):
    """Knowledge-distillation fine-tuning of the graph against the graph before the first pass
    (the teacher) on --train data: KL on temperature-softened logits plus an optional label
    loss, a few epochs of Adam, seeded shuffling.

    Changes only parameter values (the graph's structure, inputs and outputs are kept);
    place it after lossy passes: ``dsconv(rank=0.5),prune(ratio=0.5),distill(epochs=3)``.
    Log-softmax and softmax outputs are handled (converted to logits). Details: the KD loss
    on the training data before→after, and the per-epoch losses.
    """

    name = "distill"
    Options = DistillOptions

    def run(self, gm: fx.GraphModule, ctx: CompileContext) -> fx.GraphModule:
        if ctx.train is None:
            raise PipelineError("distill needs training data",
                                hint="pass --train data.npz (inputs and labels; --train digits for the demo)")
        if ctx.reference is None:
            raise PipelineError("distill has no teacher: the context has no reference graph",
                                hint="run distill inside a pipeline (accelc compile / accelc.compile)")
        seed = self.options.seed if self.options.seed is not None else ctx.seed
        torch.manual_seed(seed)
        self.details = distill(gm, ctx.reference, ctx.train, self.options, seed=seed,
                               fallback_batch=ctx.batch_size, quiet=ctx.quiet)
        return gm

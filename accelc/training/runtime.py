"""The training worker: one process per (replica, pipeline stage), under torchrun.

Every process loads the data and the model (seeded, so all hold the same initial weights),
traces the training graph for one microbatch, and takes the split rank 0 chose (rank 0 plans;
the bounds are broadcast, so a measured ``--profile`` plan is the same everywhere). It keeps
its own stage's GraphModule and runs it as a ``torch.distributed.pipelining.PipelineStage``
with static shapes (no warm-up forward, which would move batch-norm statistics) under
``ScheduleGPipe`` or ``Schedule1F1B``. With ``--dp D`` the stage module is wrapped in
``DistributedDataParallel`` over the stage's dp group: the schedule accumulates gradients
over the microbatches without synchronising and DDP averages them across replicas during
the last backward. ``--stages 1`` is the same machinery with one stage: plain DDP with
gradient accumulation.

Per step: the global batch of :func:`accelc.training.data.batch_indices`, split across
replicas and microbatches; zero grads; ``schedule.step``; ``optimizer.step()``; the loss (mean
over the global batch) is all-reduced so that rank 0 can report it. The RNG is reseeded
from ``(seed, step, rank)`` before each step, so dropout masks do not depend on where a run
was resumed.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.fx as fx
import torch.nn as nn
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe
from torch.fx.passes.shape_prop import TensorMetadata
from torch.nn.parallel import DistributedDataParallel

from accelc.compiler.analysis.shapes import propagate_shapes
from accelc.errors import AccelcError, TrainingError
from accelc.passes.partition.plan import StagePlan, plan_stages
from accelc.passes.partition.stages import stage_interfaces
from accelc.training import checkpoint as ckpt
from accelc.training.config import TrainConfig
from accelc.training.data import batch_indices, load_training_data, replica_batch, steps_per_epoch
from accelc.training.distributed import Topology, gather_on_rank0, init_topology, shutdown
from accelc.training.loss import check_single_output, choose_loss, loss_function
from accelc.training.model import TrainableModel, load_module, training_graph

SCHEDULES = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}


class TimedPipelineStage(PipelineStage):
    """A PipelineStage that adds up the time it spends computing (forward and backward of its
    microbatches, not waiting for its neighbours): the busy time behind the bubble fraction."""

    busy_seconds = 0.0

    def forward_one_chunk(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return super().forward_one_chunk(*args, **kwargs)
        finally:
            self.busy_seconds += time.perf_counter() - t0

    def backward_one_chunk(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return super().backward_one_chunk(*args, **kwargs)
        finally:
            self.busy_seconds += time.perf_counter() - t0


def value_metas(gm: fx.GraphModule, example_inputs: tuple[torch.Tensor, ...]) -> dict[str, TensorMetadata]:
    """Shape, dtype and requires_grad of every value of ``gm`` on a microbatch."""
    propagate_shapes(gm, example_inputs, grad=True)
    return {n.name: n.meta["tensor_meta"] for n in gm.graph.nodes if isinstance(n.meta.get("tensor_meta"), TensorMetadata)}


def _example(meta: TensorMetadata, device: torch.device) -> torch.Tensor:
    return torch.empty(meta.shape, dtype=meta.dtype, device=device).requires_grad_(meta.requires_grad)


def _data_parallel(module: nn.Module, topo: Topology) -> DistributedDataParallel:
    """DDP over the stage's dp group; replicas keep their own buffers (batch-norm statistics)."""
    kwargs: dict[str, Any] = {"process_group": topo.dp_group,
                              "device_ids": [topo.device.index] if topo.device.type == "cuda" else None}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
        kwargs["forward_sync_buffers"] = False  # newer torch: broadcast_buffers is deprecated
    else:
        kwargs["broadcast_buffers"] = False
    return DistributedDataParallel(module, **kwargs)


def _step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 1_009 + rank) % (2 ** 63)


def _make_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


class Worker:
    """One process's share of the run (see the module docstring)."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.data = load_training_data(config.train, config.input_shapes)
        mb = config.microbatch_size
        self.examples = tuple(torch.from_numpy(a[:mb].copy()) for a in self.data.inputs)
        if any(t.shape[0] != mb for t in self.examples):
            raise TrainingError(f"the training data has fewer samples than one microbatch ({mb})")
        model, self.source = load_module(config.model, entry=config.entry, weights=config.weights,
                                         trust_pickle=config.trust_pickle, seed=config.seed)
        self.start_step, self.resumed = 0, None
        if config.resume:
            state, self.resumed = ckpt.load_checkpoint(config.resume)
            self.start_step = int(self.resumed["step"])
        self.trainable: TrainableModel = training_graph(model, self.examples)
        if config.resume:
            self._load_weights(state)
        check_single_output(self.trainable.graph)
        self.loss_name = choose_loss(config.loss, self.trainable.graph, torch.from_numpy(self.data.labels[:1]))
        self.total_steps = config.steps or (config.epochs or 1) * steps_per_epoch(len(self.data), config.batch_size)

    def _load_weights(self, state: dict[str, torch.Tensor]) -> None:
        try:
            self.trainable.module.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise TrainingError(f"--resume {self.config.resume}: the checkpoint does not fit this model: "
                                f"{str(e).splitlines()[0]}") from e

    # ------------------------------------------------------------------ distributed set-up
    def setup(self, topo: Topology) -> None:
        self.topo = topo
        config, gm = self.config, self.trainable.graph
        self.plan = self._agreed_plan()
        seq, bounds = self.plan.sequence, self.plan.bounds
        metas = value_metas(gm, self.examples)
        modules = self.plan.stage_modules()
        self.keys = list(self.trainable.module.state_dict().keys())
        used = set().union(*(m.state_dict().keys() for m in modules))
        self.unused = {k: v.detach().clone() for k, v in self.trainable.module.state_dict().items() if k not in used}
        self.module: nn.Module = modules[topo.stage].to(topo.device)
        del modules
        received, sent = stage_interfaces(seq, bounds)[topo.stage]
        output = next(n for n in gm.graph.nodes if n.op == "output").args[0]
        inputs = (tuple(t.to(topo.device) for t in self.examples) if topo.is_first_stage
                  else tuple(_example(metas[name], topo.device) for name in received))
        outputs = tuple(_example(metas[name], topo.device) for name in (sent or [output.name]))
        submod: nn.Module = self.module
        if topo.dp > 1 and any(p.requires_grad for p in self.module.parameters()):
            submod = _data_parallel(self.module, topo)
        self.stage = TimedPipelineStage(submod, topo.stage, topo.stages, topo.device, input_args=inputs,
                                        output_args=outputs, group=topo.pp_group)
        self.schedule = SCHEDULES[config.schedule](self.stage, n_microbatches=config.microbatches,
                                                   loss_fn=loss_function(self.loss_name))
        self.optimizer = _make_optimizer(config, self.module.parameters())
        if self.resumed is not None:
            if self.resumed["optimizer"] != config.optimizer:
                raise TrainingError(f"--resume {config.resume}: saved with --optimizer {self.resumed['optimizer']}, "
                                    f"not {config.optimizer}")
            ckpt.load_optimizer_state(self.module, self.optimizer, self.resumed["optimizer_state"])

    def _agreed_plan(self) -> StagePlan:
        """Rank 0's plan; the others describe the same bounds (without profiling again)."""
        options = self.config.partition_options()
        gm = self.trainable.graph
        holder: list[Any] = [None]
        if self.topo.rank == 0:
            plan = plan_stages(gm, self.examples, options)
            holder[0] = plan.bounds
        dist.broadcast_object_list(holder, src=0)
        if self.topo.rank == 0:
            return plan
        options.profile = False
        return plan_stages(gm, self.examples, options, bounds=holder[0])

    # ------------------------------------------------------------------ training loop
    def train(self) -> None:
        config, topo = self.config, self.topo
        log = _Log(config, topo.rank == 0)
        log.start(self)
        busy0, wall, saved_at = self.stage.busy_seconds, 0.0, None
        for step in range(self.start_step, self.total_steps):
            idx = batch_indices(len(self.data), config.batch_size, step, config.seed)
            x, y = replica_batch(self.data, idx, topo.replica, topo.dp)
            torch.manual_seed(_step_seed(config.seed, step, topo.rank))
            t0 = time.perf_counter()
            loss = self._step(x, y)
            seconds = time.perf_counter() - t0
            if step > self.start_step:  # the first step includes one-off set-up
                wall += seconds
            else:
                busy0 = self.stage.busy_seconds
            log.step(step + 1, self.total_steps, loss, seconds)
            if config.checkpoint and config.checkpoint_every and (step + 1) % config.checkpoint_every == 0:
                self.save(step + 1)
                saved_at = step + 1
        if config.checkpoint and saved_at != self.total_steps:
            self.save(self.total_steps)
        log.finish(self._timing(self.stage.busy_seconds - busy0, wall))

    def _step(self, x: tuple[torch.Tensor, ...], y: torch.Tensor) -> float:
        topo = self.topo
        self.optimizer.zero_grad(set_to_none=True)
        losses: list[torch.Tensor] = []
        args = tuple(t.to(topo.device) for t in x) if topo.is_first_stage else ()
        kwargs = {"target": y.to(topo.device), "losses": losses} if topo.is_last_stage else {}
        self.schedule.step(*args, return_outputs=False, **kwargs)
        self.optimizer.step()
        mine = torch.stack([l.detach().double() for l in losses]).mean() if losses else torch.zeros((), dtype=torch.float64)
        total = mine.reshape(1).to(topo.device)
        dist.all_reduce(total)  # the last stage of each replica contributes its replica's mean loss
        return float(total.item()) / topo.dp

    def _timing(self, busy: float, wall: float) -> dict | None:
        """Per-stage busy time over the steady-state steps, gathered on rank 0 (replica 0's stages)."""
        mine = {"stage": self.topo.stage, "busy": busy, "wall": wall} if self.topo.replica == 0 else None
        gathered = gather_on_rank0(mine)
        if gathered is None or not wall:
            return None
        gathered.sort(key=lambda g: g["stage"])
        S, M = self.topo.stages, self.config.microbatches
        bubble = [1.0 - g["busy"] / g["wall"] for g in gathered]
        return {"stage_busy_seconds": [g["busy"] for g in gathered], "wall_seconds": [g["wall"] for g in gathered],
                "bubble_fraction": sum(bubble) / len(bubble), "bubble_fraction_per_stage": bubble,
                "theoretical_bubble_fraction": (S - 1) / (M + S - 1)}

    def save(self, step: int) -> None:
        payload = ckpt.stage_payload(self.module, self.optimizer) if self.topo.replica == 0 else None
        payloads = gather_on_rank0(payload)
        if payloads is not None:
            ckpt.save_checkpoint(self.config.checkpoint, payloads, keys=self.keys, unused=self.unused, step=step,
                                 optimizer=self.config.optimizer,
                                 data={"seed": self.config.seed, "batch_size": self.config.batch_size})


class _Log:
    """Progress and per-step loss on rank 0 (stdout unless --quiet; JSON lines with --metrics)."""

    def __init__(self, config: TrainConfig, active: bool):
        self.config, self.active = config, active
        self.file = open(config.metrics, "a") if active and config.metrics else None

    def _say(self, text: str) -> None:
        if self.active and not self.config.quiet:
            print(text, flush=True)

    def _record(self, obj: dict) -> None:
        if self.file:
            self.file.write(json.dumps(obj) + "\n")
            self.file.flush()

    def start(self, worker: Worker) -> None:
        c = self.config
        self._say(f"training {worker.source}: {c.stages} stage(s) × {c.dp} replica(s), schedule {c.schedule}, "
                  f"{c.microbatches} microbatch(es) of {c.microbatch_size}, loss {worker.loss_name}, "
                  f"{c.optimizer} lr {c.lr}")
        if c.stages > 1:
            self._say(worker.plan.table())
        if worker.start_step:
            self._say(f"resuming from {c.resume} at step {worker.start_step}")
        self._record({"event": "start", "plan": worker.plan.to_dict() if self.active else None,
                      "start_step": worker.start_step, "loss_function": worker.loss_name,
                      "backend": dist.get_backend(), "device": str(worker.topo.device),
                      "world_size": worker.topo.world_size})

    def step(self, step: int, total: int, loss: float, seconds: float) -> None:
        self._say(f"step {step}/{total}  loss {loss:.6f}  {self.config.batch_size / seconds:.1f} samples/s")
        self._record({"step": step, "loss": loss, "seconds": seconds})

    def finish(self, timing: dict | None) -> None:
        if timing:
            self._say(f"pipeline bubble {timing['bubble_fraction']:.3f} measured, "
                      f"{timing['theoretical_bubble_fraction']:.3f} theoretical (S−1)/(M+S−1)")
        self._record({"event": "end", "timing": timing})
        if self.file:
            self.file.close()


def _first_sentence(e: BaseException) -> str:
    """The backend's message without its source location and boilerplate."""
    text = re.sub(r"\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", str(e).strip().splitlines()[0])
    return text.split(". This is typically")[0]


def _comm_failure(e: BaseException) -> bool:
    text = str(e).lower()
    return isinstance(e, dist.DistError) or any(
        s in text for s in ("connection", "gloo", "nccl", "timed out", "timeout", "peer", "broken pipe"))


def run_worker(config: TrainConfig) -> None:
    """Run this process's part of the job (raises AccelcError with a message for people)."""
    run_distributed(Worker(config))


def run_distributed(worker: Worker) -> None:
    """Join the job, set up this process's stage, train (see the module docstring)."""
    config = worker.config
    topo = init_topology(config.stages, config.dp, config.timeout)
    phase = "set-up"
    try:
        worker.setup(topo)
        phase = "training"
        worker.train()
        dist.barrier()
    except AccelcError:
        raise
    except Exception as e:  # noqa: BLE001 — every failure becomes a message naming the rank and phase
        if not _comm_failure(e):
            cause = e.__cause__ if e.__cause__ is not None else e  # the schedule wraps the model's own error
            raise TrainingError(f"rank {topo.rank} (stage {topo.stage} of replica {topo.replica}) failed during "
                                f"{phase}: {type(cause).__name__}: {_first_sentence(cause)}",
                                hint="check the model, --loss and the labels; --debug shows the traceback") from e
        raise TrainingError(f"rank {topo.rank} (stage {topo.stage} of replica {topo.replica}) lost contact with "
                            f"its peers during {phase}: {_first_sentence(e)}",
                            hint="another worker failed or was killed (see its message), or a peer did not answer "
                                 f"within --timeout {config.timeout:g} s") from e
    finally:
        shutdown()


def worker_main(config_path: str) -> int:
    """Entry point of a worker process; returns its exit code. Errors in the local preparation
    (data, model, tracing) are the same on every rank and reported by rank 0 only."""
    config = TrainConfig.from_json(Path(config_path).read_text())
    rank = int(os.environ.get("RANK", "0"))
    if not config.debug:  # as the CLI does: library deprecation chatter is not for users
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    every_rank_alike = True
    try:
        worker = Worker(config)
        every_rank_alike = False
        run_distributed(worker)
    except AccelcError as e:
        if config.debug:
            traceback.print_exc()
        if rank == 0 or not every_rank_alike:
            print(f"accelc: error: [rank {rank}] {e}", file=sys.stderr, flush=True)
        return e.exit_code
    return 0

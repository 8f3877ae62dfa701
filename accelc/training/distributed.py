"""Process groups for pipeline × data parallelism.

World rank ``r`` runs pipeline stage ``r mod S`` of replica ``r div S``: a
``DeviceMesh`` of shape ``(dp, pp)`` with dimensions named ``"dp"`` and ``"pp"``. The
``pp`` group of a replica carries activations and gradients between its stages; the ``dp``
group of a stage all-reduces that stage's gradients across replicas (through DDP).
Backend: NCCL when CUDA is available (one GPU per local rank), gloo on CPU. Every group is
created with ``timeout``, so a peer that stops answering fails the job instead of hanging it
(a peer that dies outright is noticed at once by the launcher, which stops the others).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh

from accelc.errors import UsageError

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def under_torchrun() -> bool:
    """True inside a process started by torchrun / torch.distributed.run."""
    return all(k in os.environ for k in TORCHRUN_ENV)


@dataclass
class Topology:
    rank: int
    world_size: int
    stages: int
    dp: int
    device: torch.device
    mesh: DeviceMesh

    @property
    def stage(self) -> int:
        return self.rank % self.stages

    @property
    def replica(self) -> int:
        return self.rank // self.stages

    @property
    def is_first_stage(self) -> bool:
        return self.stage == 0

    @property
    def is_last_stage(self) -> bool:
        return self.stage == self.stages - 1

    @property
    def pp_group(self) -> dist.ProcessGroup:
        return self.mesh.get_group("pp")

    @property
    def dp_group(self) -> dist.ProcessGroup:
        return self.mesh.get_group("dp")


def init_topology(stages: int, dp: int, timeout: float) -> Topology:
    """Join the torchrun job and build the (dp, pp) mesh; checks the world size."""
    world = int(os.environ["WORLD_SIZE"])
    if world != stages * dp:
        raise UsageError(f"the job has {world} processes, but --stages {stages} × --dp {dp} needs {stages * dp}",
                         hint=f"start it with torchrun --nproc-per-node {stages * dp} (per node), "
                              "or run accelc train without torchrun and it launches itself")
    if torch.cuda.is_available():
        local_rank, per_node = int(os.environ["LOCAL_RANK"]), int(os.environ.get("LOCAL_WORLD_SIZE", world))
        if per_node > torch.cuda.device_count():
            raise UsageError(f"{per_node} processes on this node but {torch.cuda.device_count()} GPU(s); "
                             "each process needs a GPU of its own",
                             hint="use fewer --stages × --dp per node, or train on the CPU: CUDA_VISIBLE_DEVICES=''")
        torch.cuda.set_device(local_rank)
        backend, device = "nccl", torch.device("cuda", local_rank)
    else:
        backend, device = "gloo", torch.device("cpu")
    wait = timedelta(seconds=timeout)
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=wait)
    return Topology(dist.get_rank(), world, stages, dp, device, _mesh(device.type, stages, dp, wait))


def _mesh(device_type: str, stages: int, dp: int, timeout: timedelta) -> DeviceMesh:
    """The (dp, pp) mesh, from subgroups made here so that they carry ``timeout`` too
    (``init_device_mesh`` would give them the 30-minute default)."""
    layout = torch.arange(stages * dp).reshape(dp, stages)
    rank = dist.get_rank()
    mine = {}
    for dim, rows in (("dp", layout.t()), ("pp", layout)):
        for ranks in rows.tolist():  # every process creates every group, in the same order
            group = dist.new_group(ranks, timeout=timeout)
            if rank in ranks:
                mine[dim] = group
    return DeviceMesh.from_group([mine["dp"], mine["pp"]], device_type, layout, mesh_dim_names=("dp", "pp"))


def gather_on_rank0(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` on rank 0, in rank order, leaving out ``None``s; ``None`` elsewhere."""
    gathered: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, gathered, dst=0)
    return [o for o in gathered if o is not None] if gathered is not None else None


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()

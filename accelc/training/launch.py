"""Start a training job on this machine: ``stages × dp`` worker processes via torch.distributed.run.

``accelc train`` outside torchrun calls :func:`launch`: it writes the validated
:class:`TrainConfig` to a temporary JSON file and starts ``python -m accelc.training.worker``
once per rank with torch.distributed's elastic launcher (standalone rendezvous on a free
local port, no restarts). Under torchrun (several nodes, or a launcher of your own) the CLI
runs the worker directly instead.

When a worker fails — an error, a crash, or killed by a signal — the launcher stops the
others and :func:`launch` raises :class:`TrainingError` naming the ranks that failed and how;
the job never waits on a dead worker.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import uuid
from pathlib import Path

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from accelc.errors import TrainingError
from accelc.training.config import TrainConfig

SHUTDOWN_SECONDS = 5  # on an interrupt, how long workers get to exit before SIGKILL (torch waits 30 s
# after a worker failure, whatever is set here)
_ELASTIC_LOGGERS = ("torch.distributed.elastic", "torch.distributed.launcher", "torch.distributed.run")


def _describe_failure(rank: int, failure, config: TrainConfig) -> str:
    where = f"rank {rank} (stage {rank % config.stages} of replica {rank // config.stages}, pid {failure.pid})"
    if failure.exitcode < 0:
        try:
            how = f"was killed by {signal.Signals(-failure.exitcode).name}"
        except ValueError:
            how = f"was killed by signal {-failure.exitcode}"
    else:
        how = f"exited with code {failure.exitcode}"
    return f"{where} {how}"


def _root_cause(failures: dict) -> tuple[int, object]:
    """The failure that most likely started it: a worker killed by a signal (its peers then fail
    for want of it), else the earliest, else the lowest rank. The launcher's own SIGTERMs last."""
    def key(item):
        rank, f = item
        return (f.exitcode == -signal.SIGTERM, f.exitcode >= 0, f.timestamp or float("inf"), rank)

    return min(failures.items(), key=key)


def launch(config: TrainConfig) -> None:
    """Run the job described by ``config`` on this machine; raises TrainingError if it fails."""
    world = config.world_size
    if not config.debug:
        for name in _ELASTIC_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // world)))
    with tempfile.TemporaryDirectory(prefix="accelc-train-") as tmp:
        cfg_path = Path(tmp) / "config.json"
        cfg_path.write_text(config.to_json())
        newer = {"shutdown_timeout": SHUTDOWN_SECONDS} if "shutdown_timeout" in LaunchConfig.__dataclass_fields__ else {}
        launch_config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=world, run_id=str(uuid.uuid4()),
                                     rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                                     monitor_interval=0.1, role="accelc-train", **newer)
        try:
            elastic_launch(launch_config, entrypoint=sys.executable)("-u", "-m", "accelc.training.worker",
                                                                    str(cfg_path))
        except ChildFailedError as e:
            first_rank, first = _root_cause(e.failures)
            others = [_describe_failure(r, f, config) for r, f in sorted(e.failures.items())
                      if r != first_rank and f.exitcode not in (-signal.SIGTERM, -signal.SIGKILL)]
            message = f"training failed: {_describe_failure(first_rank, first, config)}"
            if others:
                message += "; then " + ", ".join(others)
            raise TrainingError(message + "; the remaining workers were stopped",
                                hint="the failing worker's own message, if it printed one, is above") from None

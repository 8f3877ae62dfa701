"""How many threads TVM's CPU kernels run on.

TVM sizes its thread pool once, when the first parallel kernel of the process runs: from
``TVM_NUM_THREADS``, else ``OMP_NUM_THREADS``, else *half* the hardware threads on x86 (it
assumes every core is hyper-threaded). On a VM whose vCPUs are whole cores — this 2-vCPU
machine, most cloud instances — that is half the machine: every accelc CPU artifact ran on
one core of two (ResNet-18 b1: 40 ms on one thread, 18 ms on two).

:func:`claim_cores` sets ``TVM_NUM_THREADS`` to the number of CPUs this process may run on
(its affinity mask, so ``taskset``/cgroup pinning is respected) unless the user set either
variable. It runs when :mod:`accelc.targets.tvm_backend` is imported, which is before accelc
runs any TVM kernel; MetaSchedule's measurement workers inherit the variable, so tuning
measures what the artifact will run with.
"""

from __future__ import annotations

import os

VARIABLES = ("TVM_NUM_THREADS", "OMP_NUM_THREADS")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def claim_cores() -> int | None:
    """Set ``TVM_NUM_THREADS`` to :func:`available_cores` unless a thread count is already
    given; returns the count set, or None when the user's setting stands."""
    if any(os.environ.get(v) for v in VARIABLES):
        return None
    cores = available_cores()
    os.environ["TVM_NUM_THREADS"] = str(cores)
    return cores


def pool_threads() -> int:
    """The threads TVM's pool runs with in this process (creates the pool if none exists)."""
    import tvm

    return int(tvm.get_global_func("runtime.NumThreads")())

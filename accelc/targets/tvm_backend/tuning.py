"""MetaSchedule tuning with a persistent database (``--tune``, ``--tuning-db``, ``--tune-budget``).

A *task* is one fused operator (a PrimFunc of the legalized, fused Relax module) with its
shapes; MetaSchedule searches schedules for it and measures each candidate on this machine.
Semantics:

* ``trials`` — measured candidates per task. A task counts as tuned at level N once a session
  asked for N trials and finished it (search spaces smaller than N end early); a later compile
  that asks for ≤ N tunes nothing for it, one that asks for more continues from the database
  (its best schedules seed the search). A task whose candidates all failed to build or run
  has no schedule in the database and keeps its default code; it counts as tried at level N.
* ``db`` — a directory with MetaSchedule's JSON database (``database_workload.json``,
  ``database_tuning_record.json``) plus ``accelc_trials.json`` (the levels above). Default:
  ``$ACCELC_CACHE_DIR`` or ``$XDG_CACHE_HOME/accelc`` or ``~/.cache/accelc``, then
  ``tuning/<target key>`` — one directory per target (kind, CPU/arch, cores) and TVM version.
  A compile with ``trials=0`` and an explicit ``db`` applies it without tuning.
  Concurrent compiles serialize on a lock file in the directory.
* ``budget_s`` — wall-clock limit for measuring. Tasks take turns, heaviest (FLOPs × uses)
  first, one batch each; after the deadline no batch is started and candidates of the batch
  in flight are no longer built or measured. What was measured is kept, and a task cut short
  is continued by the next compile.
* The default schedule is a candidate: before a task is searched for the first time, the
  schedule an untuned build would give it (:mod:`.defaults`) is measured like any candidate
  and stored in the database. A search that finds nothing faster (small budgets, tasks outside
  accelc's sketches, where MetaSchedule's generic space is large) therefore leaves the task
  with its default code instead of the best of a few poor samples; the report says so per
  task (``kept_default``).
* The compiled module takes, for every task, the fastest schedule in the database (ties are
  impossible in practice: run times are measured floats), so the same database and model give
  the same library bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelc.errors import TargetError, UsageError
from accelc.targets.tvm_backend.irmod import with_functions

TRIALS_FILE = "accelc_trials.json"
SKIPPED = "skipped: --tune-budget reached"


@dataclass
class TuningOptions:
    trials: int = 0
    db: str | None = None
    budget_s: float | None = None
    seed: int = 0

    def __post_init__(self):
        if self.trials < 0:
            raise UsageError(f"--tune {self.trials}: the number of trials must be ≥ 0")
        if self.budget_s is not None and self.budget_s <= 0:
            raise UsageError(f"--tune-budget {self.budget_s}: must be a positive number of seconds")

    @property
    def active(self) -> bool:
        return self.trials > 0 or self.db is not None


def mean_us(run_secs) -> float:
    """Mean of a measurement's run times (seconds, as MetaSchedule records them) in µs."""
    secs = [float(s) for s in run_secs]
    return sum(secs) / len(secs) * 1e6


def cache_dir() -> Path:
    if os.environ.get("ACCELC_CACHE_DIR"):
        return Path(os.environ["ACCELC_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "accelc"


def target_key(target) -> str:
    """``llvm-sapphirerapids-2c-<hash>``: readable, and distinct per target and TVM version."""
    import tvm

    config = {k: str(v) for k, v in sorted(target.export().items())}
    digest = hashlib.sha256(json.dumps([config, tvm.__version__], sort_keys=True).encode()).hexdigest()[:12]
    what = [target.kind.name]
    attrs = target.attrs
    for key in ("mcpu", "arch"):
        if key in attrs and str(attrs[key]):
            what.append(str(attrs[key]))
    if "num-cores" in attrs:
        what.append(f"{int(attrs['num-cores'])}c")
    return "-".join(what + [digest])


def default_db_dir(target) -> Path:
    return cache_dir() / "tuning" / target_key(target)


# ----------------------------------------------------------------------------- database
def lock_db_dir(path: Path):
    """Create ``path`` if needed and take its exclusive lock (concurrent compiles wait); the
    open lock file, for :func:`unlock_db_dir`."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        lock = open(path / ".lock", "w")  # noqa: SIM115 - held by the caller
    except OSError as e:
        raise UsageError(f"--tuning-db {path}: cannot use this directory ({e.strerror})") from e
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def unlock_db_dir(lock) -> None:
    """Release and close a lock from :func:`lock_db_dir`."""
    fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()


class TuningDatabase:
    """MetaSchedule's JSON database in ``path`` plus accelc's per-workload trial levels, held
    under an exclusive lock while open."""

    def __init__(self, path: Path):
        from tvm.s_tir import meta_schedule as ms

        self.path = Path(path)
        self._lock = lock_db_dir(self.path)
        self.ms = ms.database.JSONDatabase(path_workload=str(self.path / "database_workload.json"),
                                           path_tuning_record=str(self.path / "database_tuning_record.json"),
                                           module_equality="structural")
        levels = self.path / TRIALS_FILE
        self.levels: dict[str, int] = json.loads(levels.read_text()) if levels.is_file() else {}

    @staticmethod
    def key(task_mod) -> str:
        import tvm_ffi

        return f"{tvm_ffi.structural_hash(task_mod) & (2**64 - 1):016x}"

    def level(self, task_mod) -> int:
        return int(self.levels.get(self.key(task_mod), 0))

    def records(self, task_mod) -> list:
        """Every record of ``task_mod``'s workload, fastest first."""
        if not self.ms.has_workload(task_mod):
            return []
        return list(self.ms.get_top_k(self.ms.commit_workload(task_mod), 1 << 20))

    def chosen_record(self, task_mod, default_trace: str | None):
        """The record a build applies to ``task_mod``: the fastest one, never a *stale default*
        (the default schedule of an earlier accelc: a default record whose trace differs from
        today's ``default_trace``). When a stale default is the fastest and today's default
        was never measured, None: today's default is used rather than a record that the
        stale one beat."""
        records = self.records(task_mod)

        def stale(r) -> bool:
            return is_default_record(r) and str(r.trace) != default_trace

        fresh = [r for r in records if not stale(r)]
        today_measured = any(is_default_record(r) for r in fresh)
        if not fresh or (stale(records[0]) and not today_measured):
            return None
        return fresh[0]

    def close(self) -> None:
        tmp = self.path / f".{TRIALS_FILE}.tmp"
        tmp.write_text(json.dumps(self.levels, indent=1, sort_keys=True))
        tmp.replace(self.path / TRIALS_FILE)
        unlock_db_dir(self._lock)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def is_default_record(record) -> bool:
    """Whether ``record`` was committed by :func:`_measure_defaults`: its trace is a default
    schedule's, as written (MetaSchedule's own records always pass its postprocessors)."""
    return not any(inst.kind.name == "EnterPostproc" for inst in record.trace.insts)


def default_trace(task_mod, target) -> str | None:
    """Today's default schedule of the task, as a trace's text (None when no rule applies)."""
    from accelc.targets.tvm_backend.defaults import default_schedule

    with target:
        sch = default_schedule(task_mod["main"], target)
    return None if sch is None else str(sch.trace)


# ----------------------------------------------------------------------------- the session
@dataclass
class TaskRow:
    name: str
    weight: int
    flops: float
    trials_new: int = 0
    level: int = 0
    best_us: float | None = None
    default_us: float | None = None  # the default schedule, when measured by this session
    source: str = "none"  # tuned (searched now) | default (only its default measured now) | database | none

    @property
    def kept_default(self) -> bool:
        """Searched this session, and nothing found beat the default schedule."""
        return (self.trials_new > 0 and self.default_us is not None and self.best_us is not None
                and self.best_us >= self.default_us)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("best_us", "default_us"):
            d[key] = None if d[key] is None else round(d[key], 3)
        d["kept_default"] = self.kept_default
        return d


@dataclass
class TuningReport:
    db: str
    trials: int
    budget_s: float | None
    seconds: float = 0.0
    budget_reached: bool = False
    tasks: list[TaskRow] = field(default_factory=list)
    model_check: dict | None = None  # the whole tuned model against the untuned one (model_check.py)
    applied: str = ""  # sha256 of the records applied (task names and traces): what the build got

    def to_dict(self, reproducible: bool = False) -> dict[str, Any]:
        rows = [t.to_dict() for t in self.tasks]
        return {"db": self.db, "trials_per_task": self.trials, "budget_s": self.budget_s,
                "seconds": 0.0 if reproducible else round(self.seconds, 2), "budget_reached": self.budget_reached,
                "tasks_total": len(rows), "tasks_tuned": sum(r["source"] == "tuned" for r in rows),
                "db_hits": sum(r["source"] == "database" for r in rows),
                "tasks_default_only": sum(r["source"] == "default" for r in rows),
                "tasks_untuned": sum(r["source"] == "none" for r in rows),
                "tasks_kept_default": sum(r["kept_default"] for r in rows),
                "new_trials": sum(r["trials_new"] for r in rows), "model_check": self.model_check, "tasks": rows}


def tune_and_apply(mod, target, options: TuningOptions, *, quiet: bool = True):
    """Tune the tasks of ``mod`` that the database lacks (at ``options.trials``), then apply the
    database. Returns ``(mod, TuningReport)``; ``mod`` must be legalized and fused."""
    import tvm
    from tvm import relax
    from tvm.s_tir import analysis
    from tvm.s_tir import meta_schedule as ms

    from accelc.targets.tvm_backend import cpu_conv, vnni
    from accelc.targets.tvm_backend.ms_glue import load_tensor_intrinsics

    load_tensor_intrinsics()
    vnni.register_sketch()
    db_dir = Path(options.db) if options.db else default_db_dir(target)
    report = TuningReport(db=str(db_dir), trials=options.trials, budget_s=options.budget_s)
    start = time.monotonic()
    mod = strip_foreign_schedule_rules(mod)
    if target.kind.name == "llvm":
        mod = cpu_conv.annotate_for_tuning(mod, target)
    with TuningDatabase(db_dir) as db:
        # functions scheduled before tuning (Winograd convs) are not tasks
        tasks = [t for t in ms.relax_integration.extract_tasks(mod, target)
                 if not t.dispatched[0]["main"].attrs.get("tirx.is_scheduled")]
        rows, todo = [], []
        for t in tasks:
            task_mod = t.dispatched[0]
            row = TaskRow(t.task_name, int(t.weight), float(analysis.estimate_tir_flops(task_mod)),
                          level=db.level(task_mod))
            rows.append(row)
            if options.trials > row.level:
                todo.append((t, row))
        if todo:
            # heaviest first: MetaSchedule's first round visits the tasks in this order, so under a
            # --tune-budget the operators that dominate the run time are the ones tuned
            todo.sort(key=lambda tr: -tr[1].flops * tr[1].weight)
            if target.kind.name == "cuda":
                _require_gpu()
            _run_metaschedule(todo, target, options, db, report, quiet=quiet)
        chosen = ms.database.MemoryDatabase(module_equality="structural")
        applied = hashlib.sha256()
        for t, row in zip(tasks, rows):
            task_mod = t.dispatched[0]
            row.level = db.level(task_mod)
            rec = db.chosen_record(task_mod, default_trace(task_mod, target))
            if rec is not None:
                chosen.commit_tuning_record(ms.database.TuningRecord(
                    rec.trace, chosen.commit_workload(task_mod), rec.run_secs, target, rec.args_info))
            row.best_us = mean_us(rec.run_secs) if rec is not None and rec.run_secs else None
            applied.update(f"{t.task_name}\n{rec.trace if rec is not None else ''}\n".encode())
            if row.source != "tuned" and row.best_us is not None:
                row.source = "default" if row.default_us is not None else "database"
        with target, chosen, tvm.transform.PassContext(opt_level=3):
            mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
    report.tasks = rows
    report.applied = applied.hexdigest()
    report.seconds = time.monotonic() - start
    return mod, report


def strip_foreign_schedule_rules(mod):
    """TOPI tags some blocks (pooling) with ``schedule_rule`` names that no registered rule
    implements; MetaSchedule then warns once per block and falls back to its default rules.
    Dropping those tags up front gives the same search space without the warnings."""
    import tvm
    from tvm import s_tir, tirx

    from accelc.targets.tvm_backend.vnni import RULE

    updates = {}
    for gv, func in mod.functions.items():
        if not isinstance(func, tirx.PrimFunc) or "schedule_rule" not in func.script():
            continue
        sch = s_tir.Schedule(tvm.IRModule({"main": func}))
        changed, todo = False, list(sch.get_child_blocks(sch.get_sblock("root")))
        while todo:
            block = todo.pop()
            rule = sch.get(block).annotations.get("schedule_rule")
            if rule is not None and str(rule) not in (RULE, "None"):
                sch.unannotate(block, "schedule_rule")
                changed = True
            todo.extend(sch.get_child_blocks(block))
        if changed:
            updates[gv] = sch.mod["main"]
    return with_functions(mod, updates)


def _require_gpu() -> None:
    import tvm

    if not tvm.cuda(0).exist:
        raise TargetError("--tune for cuda measures candidates on a CUDA GPU, and none is available here",
                          hint="tune on a machine with a GPU and reuse its database with --tuning-db DIR "
                               "(--tune 0 applies a database without tuning)")


def _run_metaschedule(todo, target, options: TuningOptions, db: TuningDatabase, report: TuningReport,
                      *, quiet: bool) -> None:
    from tvm.s_tir import meta_schedule as ms

    from accelc.targets.tvm_backend.ms_glue import in_process_builder, quiet_metaschedule_logs

    per_task = max(options.trials - row.level for _, row in todo)
    deadline = None if options.budget_s is None else time.monotonic() + options.budget_s
    progress = _Progress(total=sum(min(per_task, options.trials - row.level) for _, row in todo), quiet=quiet)
    measured = [0] * len(todo)
    skipped: set[int] = set()

    def on_measured(task_id, builder_results) -> None:
        n = sum(1 for b in builder_results if not (b.error_msg and str(b.error_msg).startswith(SKIPPED)))
        measured[task_id] += n
        progress.update(n, todo[task_id][0].task_name)
        if n < len(builder_results):
            skipped.add(task_id)

    builder, runner = in_process_builder(deadline=deadline, skipped=SKIPPED), _runner(target)
    _measure_defaults(todo, target, db, builder, runner)
    keep = os.environ.get("ACCELC_TUNING_LOGS")  # MetaSchedule's own logs, for debugging the tuner
    with (contextlib.nullcontext(keep) if keep else tempfile.TemporaryDirectory(prefix="accelc-ms-")) as work, \
            quiet_metaschedule_logs():
        extracted = [t for t, _ in todo]
        population = max(64, min(512, 8 * per_task))  # small trial counts need no large population
        strategy = ms.search_strategy.EvolutionarySearch(
            population_size=population, init_min_unmeasured=min(50, population // 2),
            genetic_num_iters=4 if per_task >= 32 else 2)
        contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
            extracted, work, strategy=strategy, seed=options.seed, num_threads=_cores(target))
        try:
            ms.tune_tasks(
                tasks=contexts, task_weights=weights, work_dir=work,
                max_trials_global=per_task * len(contexts), max_trials_per_task=per_task,
                num_trials_per_iter=min(64, per_task), builder=builder, runner=runner, database=db.ms,
                measure_callbacks=[*ms.MeasureCallback.create("default"), _callback(on_measured)],
                task_scheduler=_budget_round_robin(deadline))
        finally:
            progress.close()
    out_of_time = deadline is not None and time.monotonic() > deadline
    for i, (t, row) in enumerate(todo):
        row.trials_new = measured[i]
        row.source = "tuned" if measured[i] else row.source
        key = db.key(t.dispatched[0])
        if i in skipped or (out_of_time and measured[i] < options.trials - row.level):
            db.levels[key] = row.level + measured[i]
            report.budget_reached = True
        else:
            db.levels[key] = max(row.level, options.trials)


def _measure_defaults(todo, target, db: TuningDatabase, builder, runner) -> None:
    """Measure today's default schedule of every task whose database records do not include
    it, with the tuner's own builder and runner, and commit it as a tuning record (its trace
    replays the default schedule). Sets ``row.default_us``; a default that fails to build or
    run (or is skipped by the deadline) is simply not recorded."""
    from tvm.s_tir import meta_schedule as ms

    from accelc.targets.tvm_backend.defaults import default_schedule

    picked = []
    with target:
        for t, row in todo:
            task_mod = t.dispatched[0]
            sch = default_schedule(task_mod["main"], target)
            if sch is None or any(is_default_record(r) and str(r.trace) == str(sch.trace)
                                  for r in db.records(task_mod)):
                continue
            picked.append((task_mod, row, sch))
    if not picked:
        return
    built = builder.build([ms.builder.BuilderInput(sch.mod, target) for _, _, sch in picked])
    ok = [(p, b) for p, b in zip(picked, built) if b.error_msg is None]
    device = "cpu" if target.kind.name == "llvm" else target.kind.name
    inputs = [ms.runner.RunnerInput(b.artifact_path, device,
                                    ms.arg_info.ArgInfo.from_entry_func(sch.mod, remove_preproc=True))
              for (_, _, sch), b in ok]
    for ((task_mod, row, sch), _), future in zip(ok, runner.run(inputs) if inputs else []):
        result = future.result()
        if result.error_msg is not None or not result.run_secs:
            continue
        db.ms.commit_tuning_record(ms.database.TuningRecord(
            sch.trace, db.ms.commit_workload(task_mod), result.run_secs, target,
            ms.arg_info.ArgInfo.from_prim_func(task_mod["main"])))
        row.default_us = mean_us(result.run_secs)


def _budget_round_robin(deadline: float | None):
    """MetaSchedule task scheduler: one batch per task in turn, in the order given (heaviest
    first), and no new batch once ``deadline`` (``time.monotonic()``) has passed — MetaSchedule
    then joins what is in flight and ends. (Its own schedulers can only be stopped by
    terminating tasks from a callback, which races with their own bookkeeping, and every task
    left would still pay a round of candidate generation.)"""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.task_scheduler import PyTaskScheduler

    @derived_object  # methods not overridden here (tune, join_running_task) stay MetaSchedule's own
    class BudgetRoundRobin(PyTaskScheduler):
        def __init__(self):
            super().__init__()
            self.last = -1

        def next_task_id(self) -> int:
            sched = self._outer()
            records = sched.tasks_
            for i in range(len(records)):
                sched.touch_task(i)  # joins finished batches (the CPU runner finishes before returning)
            if deadline is not None and time.monotonic() > deadline:
                return -1
            for _ in range(len(records)):
                self.last = (self.last + 1) % len(records)
                rec = records[self.last]
                if not rec.is_terminated:
                    if rec.measure_candidates is not None:  # a batch still in flight (cuda runner)
                        sched.join_running_task(self.last)
                    return self.last
            return -1

    return BudgetRoundRobin()


def _cores(target) -> int:
    attrs = target.attrs
    if "num-cores" in attrs:
        return int(attrs["num-cores"])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _runner(target):
    from accelc.targets.tvm_backend.ms_glue import sync_local_runner

    if target.kind.name == "cuda":
        from tvm.s_tir import meta_schedule as ms

        return ms.runner.LocalRunner(timeout_sec=60)
    return sync_local_runner()


def _callback(fn):
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    @derived_object
    class _Measured(PyMeasureCallback):
        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            fn(task_id, builder_results)

    return _Measured()


class _Progress:
    def __init__(self, total: int, quiet: bool):
        from accelc.progress import progress_enabled

        self.bar = None
        if progress_enabled(quiet):
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="tune", unit="trial", leave=False, dynamic_ncols=True)

    def update(self, n: int, task: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(task[:40], refresh=False)
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

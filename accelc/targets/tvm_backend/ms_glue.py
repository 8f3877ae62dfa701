"""MetaSchedule plumbing that accelc needs on small, shared machines.

* :func:`load_tensor_intrinsics` — registers TVM's tensor intrinsics (the x86 VNNI
  ``dot_16x4_vnni`` among them, which MetaSchedule's default x86 rules require). TVMScript
  parses each of the ~250 intrinsics with ``inspect.stack()``, which reads source context for
  every frame and scans ``sys.modules`` per frame; with torch loaded that alone takes minutes.
  The frames are only needed for their objects, so the import runs with ``inspect.stack`` and
  ``getouterframes`` that walk the frames without looking up any source (the import went from
  ~70 s to a few; TVM's behaviour is otherwise unchanged).
* :class:`InProcessBuilder` — builds candidates in this process. TVM's ``LocalBuilder``
  starts fresh worker processes for every batch, and each worker pays the intrinsic import
  above again (≈100 s per batch on a 2-core machine).
* :class:`SyncRunner` — TVM's ``LocalRunner`` (a separate, persistent process, so a faulty
  candidate cannot crash the compiler), but waits for the measurements before the next batch
  is built: on a 2-core machine, building next to a measurement skews it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import sys
import time


def _frames_from(frame) -> list:
    """``inspect.FrameInfo`` records from ``frame`` outwards, without source context: what
    ``inspect.stack(0)`` returns, minus its per-frame ``getsourcefile`` → ``getmodule`` (a
    scan of ``sys.modules``, which with torch loaded made the intrinsic import take ~70 s)."""
    out = []
    while frame is not None:
        out.append(inspect.FrameInfo(frame, frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name, None, None))
        frame = frame.f_back
    return out


@contextlib.contextmanager
def _context_free_stack():
    stack, outer = inspect.stack, inspect.getouterframes
    inspect.stack = lambda context=1: _frames_from(sys._getframe(1))
    inspect.getouterframes = lambda frame, context=1: _frames_from(frame)
    try:
        yield
    finally:
        inspect.stack, inspect.getouterframes = stack, outer


@functools.lru_cache(maxsize=1)
def load_tensor_intrinsics() -> None:
    """Register TVM's tensor intrinsics (once per process), with the VNNI fix below."""
    with _context_free_stack():
        import tvm.s_tir.tensor_intrin  # noqa: F401
        _fix_vnni_intrinsic()


def _fix_vnni_intrinsic() -> None:
    """LLVM 22 changed ``llvm.x86.avx512.vpdpbusd.512`` to take its byte operands as
    ``<64 x i8>`` (they were ``<16 x i32>``); TVM 0.27's ``dot_16x4_vnni`` still passes
    ``int32x16``, so every candidate that uses it fails LLVM verification. Re-register the
    intrinsic under the same name (MetaSchedule's x86 rules refer to it by name) with the byte
    operands reinterpreted as ``int8x64``. Same instruction, same semantics (u8·s8 products,
    4 per lane, summed into int32 without saturation)."""
    from tvm.s_tir import TensorIntrin
    from tvm.s_tir.tensor_intrin.x86 import VNNI_DOT_16x4_INTRIN, dot_product_16x4_u8i8i32_desc
    from tvm.script import tirx as T
    from tvm.target import codegen

    if codegen.llvm_version_major() < 22:
        return

    @T.prim_func(s_tir=True)
    def impl(A: T.Buffer((4,), "uint8", offset_factor=1), B: T.Buffer((16, 4), "int8", offset_factor=1),
             C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            a_i32 = T.reinterpret(A.vload([0], "uint8x4"), dtype="int32")
            a_u8x64 = T.reinterpret(T.broadcast(a_i32, 16), dtype="uint8x64")
            b_i8x64 = B.vload([0, 0], dtype="int8x64")
            C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                C.vload([0], dtype="int32x16"), a_u8x64, b_i8x64, dtype="int32x16")

    TensorIntrin.register(VNNI_DOT_16x4_INTRIN, dot_product_16x4_u8i8i32_desc, impl, override=True)


def _classes():
    """The MetaSchedule subclasses are created lazily (importing tvm is slow)."""
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.builder.local_builder import default_build, default_export
    from tvm.s_tir.meta_schedule.runner import PyRunner, PyRunnerFuture, RunnerResult
    from tvm.ir.utils import derived_object

    @derived_object
    class InProcessBuilder(PyBuilder):
        def __init__(self, deadline=None, skipped="skipped"):
            super().__init__()
            self.deadline, self.skipped = deadline, skipped

        def build(self, build_inputs):
            results = []
            for inp in build_inputs:
                if self.deadline is not None and time.monotonic() > self.deadline:
                    results.append(BuilderResult(None, self.skipped))
                    continue
                try:
                    results.append(BuilderResult(default_export(default_build(inp.mod, inp.target, None)), None))
                except Exception as e:  # noqa: BLE001 - a candidate that does not build is a result
                    results.append(BuilderResult(None, f"InProcessBuilder: {type(e).__name__}: {e}"))
            return results

    @derived_object
    class DoneFuture(PyRunnerFuture):
        def __init__(self, result):
            super().__init__()
            self._result = result

        def done(self):
            return True

        def result(self):
            return self._result

    @derived_object
    class SyncRunner(PyRunner):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def run(self, runner_inputs):
            futures = self.inner.run(runner_inputs)
            results = []
            for f in futures:
                r = f.result()
                results.append(DoneFuture(RunnerResult(r.run_secs, r.error_msg)))
            return results

    return InProcessBuilder, SyncRunner


def in_process_builder(*, deadline: float | None = None, skipped: str = "skipped"):
    """Builds in this process; after ``deadline`` (``time.monotonic()``) every candidate is
    answered with the error ``skipped`` instead of being built."""
    return _classes()[0](deadline, skipped)


def sync_local_runner(*, number: int = 3, repeat: int = 1, min_repeat_ms: int = 50, timeout_s: float = 60.0):
    from tvm.s_tir.meta_schedule.runner import EvaluatorConfig, LocalRunner

    inner = LocalRunner(timeout_sec=timeout_s, evaluator_config=EvaluatorConfig(
        number=number, repeat=repeat, min_repeat_ms=min_repeat_ms, enable_cpu_cache_flush=False))
    return _classes()[1](inner)


@contextlib.contextmanager
def quiet_metaschedule_logs():
    """MetaSchedule prints its per-task tables to stdout at INFO; keep them in its log files
    only (the console handler takes the level the logger has when tuning starts). The logger's
    own handlers are set aside while tuning: MetaSchedule's logging setup lists them by name and
    fails on one without a name (e.g. left by an earlier session or a test harness)."""
    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    level, saved = logger.level, list(logger.handlers)
    for h in saved:
        logger.removeHandler(h)
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        names = [n for n in logging.root.manager.loggerDict if n.startswith("tvm.s_tir.meta_schedule")]
        for name in names:  # file handlers point into the session's temporary work dir
            lg = logging.getLogger(name)
            for h in list(lg.handlers):
                if lg is logger or isinstance(h, logging.FileHandler):
                    lg.removeHandler(h)
                    h.close()
        for h in saved:
            logger.addHandler(h)
        logger.setLevel(level)

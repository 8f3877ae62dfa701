"""Run a cpu/cuda artifact with TVM's *runtime* only: ``apache-tvm-ffi`` plus TVM's runtime
shared libraries, no ``tvm`` Python package (no compiler, no LLVM) — for machines where the
full TVM wheel cannot be installed (see benchmarks/gpu.sh).

This file imports nothing from accelc or tvm, so it can be copied and run on its own::

    python lite_runner.py ARTIFACT_DIR --libs DIR_WITH_libtvm_runtime.so [--device cuda] \\
        [--input x.npy] [--output y.npy] [--bench N] [--profile N] [--json]

What it does (the same steps as ``tvm.runtime.vm.VirtualMachine``):

1. load ``libtvm_runtime.so`` (RTLD_GLOBAL, after ``tvm_ffi``), and for cuda
   ``libtvm_runtime_cuda.so`` (its ``libcudart`` is preloaded from ``--libs`` when present);
2. for cuda, register ``tvm_callback_cuda_compile``: a library built on a machine without a
   GPU carries its kernels as CUDA C source, which the CUDA runtime module compiles when it is
   loaded, through this callback (``nvcc`` → cubin for the local GPU's architecture);
3. ``lib.so`` → ``vm_load_executable`` → ``vm_initialization(device, pooled allocator)``;
4. weights from ``params.safetensors`` (read here with numpy), inputs/outputs through DLPack.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

KDL_CPU, KDL_CUDA = 1, 2
POOLED_ALLOCATOR = 2
_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I8": np.int8, "U8": np.uint8, "I16": np.int16,
           "I32": np.int32, "I64": np.int64, "BOOL": np.bool_}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(raw[base + start:base + end], dtype=_DTYPES[info["dtype"]]).reshape(info["shape"]).copy()
    return out


def load_params(art_dir: Path, payload: dict) -> dict[str, np.ndarray]:
    """The artifact's weights; or, where only ``params_spec.json`` (names, shapes, dtypes) was
    kept to save space (benchmarks/gpu_build.py), seeded random weights of those shapes —
    enough for timing, not for accuracy."""
    path = Path(art_dir) / payload["params"]
    if path.is_file():
        return read_safetensors(path)
    spec = json.loads((Path(art_dir) / "params_spec.json").read_text())
    rng = np.random.default_rng(0)
    out = {}
    for name, info in spec.items():
        dt = np.dtype(info["dtype"])
        if dt.kind == "f":
            out[name] = (rng.standard_normal(info["shape"]) * 0.05).astype(dt)
        else:
            out[name] = rng.integers(-8, 8, info["shape"]).astype(dt)
    return out


def aligned(a: np.ndarray, alignment: int = 64) -> np.ndarray:
    """A C-contiguous copy of ``a`` whose data starts on an ``alignment``-byte boundary."""
    raw = np.empty(a.nbytes + alignment, dtype=np.uint8)
    start = -raw.ctypes.data % alignment
    out = raw[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def gpu_arch() -> str:
    """``sm_90`` for the first visible GPU (nvidia-smi), else ``sm_80``."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30).stdout.split()
        return "sm_" + out[0].replace(".", "")
    except (OSError, subprocess.SubprocessError, IndexError):
        return "sm_80"


def nvcc_compile(source: str, arch: str | None = None) -> bytes:
    """CUDA C source → cubin for ``arch`` (the local GPU's by default)."""
    nvcc = os.environ.get("NVCC") or shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    arch = arch or gpu_arch()
    with tempfile.TemporaryDirectory(prefix="accelc-nvcc-") as d:
        src, out = Path(d) / "kernels.cu", Path(d) / "kernels.cubin"
        src.write_text(source)
        cmd = [nvcc, "--cubin", "-O3", f"-arch={arch}", "-o", str(out), str(src)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"nvcc failed ({' '.join(cmd)}):\n{res.stderr[-4000:]}")
        return out.read_bytes()


def load_runtime(lib_dir: Path, cuda: bool = False):
    """Load TVM's runtime libraries into this process; returns the ``tvm_ffi`` module."""
    import tvm_ffi  # loads libtvm_ffi.so, which the runtime links against

    lib_dir = Path(lib_dir)
    ctypes.CDLL(str(lib_dir / "libtvm_runtime.so"), mode=ctypes.RTLD_GLOBAL)
    if cuda:
        for dep in sorted(lib_dir.glob("libcudart.so*")):
            ctypes.CDLL(str(dep), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(str(lib_dir / "libtvm_runtime_cuda.so"), mode=ctypes.RTLD_GLOBAL)
        compiled: dict[int, bytes] = {}

        def compile_cuda(source):
            key = hash(str(source))
            if key not in compiled:
                compiled[key] = nvcc_compile(str(source))
            return tvm_ffi.Bytes(compiled[key]) if hasattr(tvm_ffi, "Bytes") else bytearray(compiled[key])

        tvm_ffi.register_global_func("tvm_callback_cuda_compile", compile_cuda, override=True)
    return tvm_ffi


class LiteRunner:
    """``LiteRunner(art_dir, lib_dir, device="cpu"|"cuda")(*numpy_arrays) -> list of numpy arrays``."""

    def __init__(self, art_dir, lib_dir, device: str = "cpu"):
        self.art_dir = Path(art_dir)
        self.cuda = device == "cuda"
        self.ffi = load_runtime(Path(lib_dir), cuda=self.cuda)
        self.manifest = json.loads((self.art_dir / "manifest.json").read_text())
        payload = self.manifest["payload"]
        lib = self.ffi.load_module(str(self.art_dir / payload["library"]))
        self.vm = lib["vm_load_executable"]()
        init = [KDL_CUDA, 0, POOLED_ALLOCATOR, KDL_CPU, 0, POOLED_ALLOCATOR] if self.cuda else [KDL_CPU, 0, POOLED_ALLOCATOR]
        self.vm["vm_initialization"](*init)
        self._main = self.vm["main"]
        params = load_params(self.art_dir, payload)
        self.params = [self.to_device(params[k]) for k in sorted(params)]

    def to_device(self, a: np.ndarray):
        if not self.cuda:  # TVM's CPU code assumes 64-byte aligned buffers (aligned vector loads)
            return self.ffi.from_dlpack(aligned(a))
        a = np.ascontiguousarray(a)
        import torch  # the GPU machine has torch; it moves the data and keeps it alive

        t = torch.from_numpy(a).cuda()
        self._keep = getattr(self, "_keep", []) + [t]
        return self.ffi.from_dlpack(t)

    def call(self, *inputs):
        """Run ``main`` on device tensors; returns the raw result (a tvm_ffi object)."""
        return self._main(*inputs, *self.params)

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        result = self.call(*[self.to_device(a) for a in arrays])
        return [self._to_numpy(r) for r in _flatten(result)]

    def _to_numpy(self, t) -> np.ndarray:
        if self.cuda:
            import torch

            return torch.from_dlpack(t).cpu().numpy()
        return np.from_dlpack(t).copy()

    def bench(self, *arrays: np.ndarray, warmup: int = 10, runs: int = 50) -> dict:
        """Median ms per call (device-synchronised) after warm-up."""
        inputs = [self.to_device(a) for a in arrays]
        return timed(lambda: self.call(*inputs), sync=_cuda_sync if self.cuda else None, warmup=warmup, runs=runs)


    def profile(self, *arrays: np.ndarray, runs: int = 5) -> list[dict]:
        """Per VM call (kernel or builtin): mean ms per model run over ``runs`` runs, slowest
        first. Each call is timed between device synchronisations, so the figures add up to
        more than a plain run (no overlap of launches), but they rank the kernels."""
        sync = _cuda_sync if self.cuda else (lambda: None)
        inputs = [self.to_device(a) for a in arrays]
        self.call(*inputs)
        totals: dict[str, float] = {}
        counts: dict[str, int] = {}
        started: dict[str, float] = {}

        def instrument(func, symbol, before, ret, *args):
            sync()
            if before:
                started[symbol] = time.perf_counter()
            else:
                totals[symbol] = totals.get(symbol, 0.0) + time.perf_counter() - started[symbol]
                counts[symbol] = counts.get(symbol, 0) + 1
            return 0

        self.vm["set_instrument"](self.ffi.convert(instrument))
        try:
            for _ in range(runs):
                self.call(*inputs)
            sync()
        finally:
            self.vm["set_instrument"](self.ffi.convert(lambda *a: 0))  # a no-op (None is not accepted everywhere)
        return sorted(({"name": k, "ms": v / runs * 1e3, "calls": counts[k] // runs} for k, v in totals.items()),
                      key=lambda r: -r["ms"])


def timed(fn, *, sync=None, warmup: int = 10, runs: int = 50) -> dict:
    """Median and minimum ms of ``runs`` calls of ``fn`` after ``warmup`` calls, each call
    followed by ``sync()`` (a device synchronisation) when given."""
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {"median_ms": times[len(times) // 2], "min_ms": times[0], "runs": runs}


def _cuda_sync():
    import torch

    torch.cuda.synchronize()


def _flatten(result) -> list:
    if hasattr(result, "shape") and hasattr(result, "dtype"):
        return [result]
    out = []
    for r in result:
        out.extend(_flatten(r))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("artifact")
    p.add_argument("--libs", required=True, help="directory with libtvm_runtime.so (and libtvm_runtime_cuda.so)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--input", help=".npy input (default: seeded random of the manifest's shape)")
    p.add_argument("--output", help="write the first output here (.npy)")
    p.add_argument("--bench", type=int, default=0, metavar="N", help="time N calls after warm-up")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="time every VM call (kernel) over N runs; the slowest in the summary")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    args = p.parse_args(argv)
    runner = LiteRunner(args.artifact, args.libs, args.device)
    spec = runner.manifest["inputs"][0]
    x = np.load(args.input) if args.input else \
        np.random.default_rng(0).standard_normal(spec["shape"]).astype(spec["dtype"])
    outs = runner(x)
    if args.output:
        np.save(args.output, outs[0])
    summary = {"device": args.device, "outputs": [list(o.shape) for o in outs],
               "tvm_imported": "tvm" in sys.modules}
    if args.bench:
        summary.update(runner.bench(x, runs=args.bench))
    if args.profile:
        summary["profile"] = runner.profile(x, runs=args.profile)[:20]
    print(json.dumps(summary) if args.json else summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())

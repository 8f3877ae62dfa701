#!/usr/bin/env bash
# accelc's cuda target against PyTorch eager and torch.compile on one GPU.
#
# The GPU machine has PyTorch and nvcc but not TVM, and cannot download it; the full TVM wheel
# (100+ MB) is more than can be carried. So the work is split in three steps:
#
#   benchmarks/gpu.sh prepare        # here, no GPU needed (make setup first):
#                                    #   builds the cuda artifacts (kernels as CUDA C source) and
#                                    #   copies TVM's runtime libraries and the tvm-ffi wheel for the
#                                    #   GPU machine's Python into .gpucarry/ (about 20 MiB)
#   benchmarks/gpu.sh run OUT_DIR    # on the GPU machine, with .gpucarry/ beside the repo:
#                                    #   times every artifact next to eager and torch.compile,
#                                    #   trains LeNet with NCCL (and on the CPU, to compare)
#                                    #   and writes OUT_DIR/gpu_results.json
#   benchmarks/gpu.sh record FILE    # here: adds FILE to benchmarks/results.json and RESULTS.md
#
# Through the workplace's device tool:  run(command="benchmarks/gpu.sh run $OUT", carry=[".gpucarry"])
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpucarry
PYVER=${GPU_PYTHON_VERSION:-3.12}   # the GPU machine's python3
ARCH=${GPU_ARCH:-sm_90}             # H100/H200; the runner recompiles for the local GPU anyway

case "${1:-}" in
prepare)
    rm -rf "$CARRY" && mkdir -p "$CARRY/libs" "$CARRY/wheels"
    .venv/bin/python benchmarks/gpu_build.py --arch "$ARCH" --out "$CARRY/artifacts"
    tvmlib=$(.venv/bin/python -c 'import tvm, os; print(os.path.join(os.path.dirname(tvm.__file__), "lib"))')
    cp "$tvmlib/libtvm_runtime.so" "$tvmlib/libtvm_runtime_cuda.so" "$CARRY/libs/"
    cudart=$(ldd "$tvmlib/libtvm_runtime_cuda.so" | awk '/libcudart/ {print $3}')
    [ -n "$cudart" ] && cp -L "$cudart" "$CARRY/libs/"
    ffi=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("apache-tvm-ffi"))')
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
        -d "$CARRY/wheels" "apache-tvm-ffi==$ffi"
    du -sh "$CARRY"
    ;;
run)
    out=${2:?usage: gpu.sh run OUT_DIR}
    mkdir -p "$out"
    {
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader || true
    python3 --version; nvcc --version | tail -1 || true
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/accelc-site "$CARRY"/wheels/*.whl
    PYTHONPATH=/tmp/accelc-site PYTHONUNBUFFERED=1 python3 benchmarks/gpu_bench.py --carry "$CARRY" \
        --out "$out/gpu_results.json" ${GPU_BENCH_ARGS:-}
    } 2>&1 | tee "$out/gpu_log.txt"
    ;;
record)
    .venv/bin/python benchmarks/bench_report.py --gpu "${2:?usage: gpu.sh record gpu_results.json}"
    ;;
*)
    sed -n '2,17p' "$0"
    exit 2
    ;;
esac

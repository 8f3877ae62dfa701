"""benchmarks/results.json → benchmarks/RESULTS.md (see bench.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.bench import LABELS, OURS, PEERS

# Peak throughput assumed for "% of peak" (stated in the output):
SIMD_FP32 = 16        # AVX-512: 16 fp32 lanes
FMA_PORTS = 2         # 2 FMA units per core (ports 0 and 5 on Sapphire/Emerald Rapids)
VNNI_MACS = 64        # vpdpbusd zmm: 64 u8·s8 multiply-adds
VNNI_PORTS = 2


def peaks(machine: dict) -> dict:
    ghz = machine["mhz_bogomips_half"] / 1000
    cores = machine["cpus"]
    return {"ghz": ghz, "cores": cores, "fp32_gflops": cores * SIMD_FP32 * FMA_PORTS * 2 * ghz,
            "int8_gops": cores * VNNI_MACS * VNNI_PORTS * 2 * ghz}


def write_markdown(results: dict, out: Path) -> None:
    m, s = results["machine"], results["settings"]
    pk = peaks(m)
    lines = ["# accelc benchmark results", "",
             f"Machine: {m['cpu']}, {m['cpus']} CPUs ({m['threads_per_core']} thread per core, {m['hypervisor']} VM), "
             f"ISA {', '.join(m['isa'])}, L2 {m['l2']}. Python {m['python']}, torch {m['torch']}, onnxruntime "
             f"{m['onnxruntime']}, apache-tvm {m['tvm']} (tvm-ffi {m['tvm_ffi']}), numpy {m['numpy']}.", "",
             f"Median wall-clock ms of {s['runs']} calls after {s['warmup']} warm-up calls, each engine in its own "
             f"process, all threads of the machine. Tuned builds: `--tune {s['trials']} --tune-budget {s['budget_s']:g}` "
             "per model, precision and batch (MetaSchedule, database reused across runs). Cells: ms · speed-up over the "
             "fastest peer (> 1 is faster) · % of the CPU's peak.", "",
             f"Peak assumed: {pk['cores']} cores × {pk['ghz']:.2f} GHz (the VM's TSC/base clock; turbo is not visible "
             f"inside the VM, so real peaks may be higher and the percentages lower) — fp32: × {SIMD_FP32} lanes × "
             f"{FMA_PORTS} FMA ports × 2 = {pk['fp32_gflops']:.0f} GFLOP/s; int8: × {VNNI_MACS} MACs per vpdpbusd × "
             f"{VNNI_PORTS} ports × 2 = {pk['int8_gops']:.0f} GOP/s. FLOPs = 2 × MACs of conv/linear layers (accelc's "
             "cost model); int8 engines are held against the int8 peak, the others against fp32.", ""]
    engines = PEERS + OURS
    lines.append("| model | batch | GFLOP | " + " | ".join(LABELS[e] for e in engines) + " |")
    lines.append("|---|---|---|" + "---|" * len(engines))
    tuning_rows = []
    for key, entry in results["runs"].items():
        name, batch = key.split("/b")
        gflop = entry["flops"] / 1e9
        peer_ms = [entry[e]["median_ms"] for e in PEERS if "median_ms" in entry.get(e, {})]
        fastest = min(peer_ms) if peer_ms else None
        cells = []
        for e in engines:
            r = entry.get(e, {})
            if "median_ms" not in r:
                cells.append("failed" if "error" in r else "–")
                continue
            ms = r["median_ms"]
            peak = pk["int8_gops"] if e in ("ort_int8", "accelc_int8") else pk["fp32_gflops"]
            pct = gflop / (ms / 1e3) / peak * 100
            speed = f" · {fastest / ms:.2f}×" if fastest else ""
            cells.append(f"{ms:.3f}{speed} · {pct:.0f}%")
            if "tuning" in r:
                t = r["tuning"]
                tuning_rows.append(f"| {name} | {batch} | {LABELS[e]} | {t['seconds']:.0f} | {r['compile_s']:.0f} | "
                                   f"{t['tasks_total']} | {t['tasks_tuned']} | {t['db_hits']} | {t['new_trials']} | "
                                   f"{'yes' if t['budget_reached'] else 'no'} |")
        lines.append(f"| {name} | {batch} | {gflop:.3f} | " + " | ".join(cells) + " |")
    lines += ["", "Tuning (this run; a task found in the database is not tuned again):", "",
              "| model | batch | build | tuning s | compile s | tasks | tuned now | from database | trials | budget hit |",
              "|---|---|---|---|---|---|---|---|---|---|", *tuning_rows, ""]
    if "bench_wall_s" in results:
        lines.append(f"Whole run: {results['bench_wall_s'] / 60:.0f} min.")
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    root = Path(__file__).resolve().parent
    write_markdown(json.loads((root / "results.json").read_text()), Path(sys.argv[1]) if len(sys.argv) > 1
                   else root / "RESULTS.md")

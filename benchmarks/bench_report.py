"""benchmarks/results.json → benchmarks/RESULTS.md (see bench.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.bench import LABELS, OURS, PEERS  # noqa: E402

# Peak throughput assumed for "% of peak" (stated in the output), per core and clock cycle:
SIMD_FP32 = 16        # AVX-512: 16 fp32 lanes
VNNI_MACS = 64        # vpdpbusd zmm: 64 u8·s8 multiply-adds
# 512-bit FMAs and vpdpbusds issued per cycle, by vendor: Sapphire/Emerald Rapids have two 512-bit
# FMA units (ports 0 and 5); Zen 4 runs a 512-bit op as two halves on its two 256-bit pipes.
ISSUE = {"GenuineIntel": (2, 2, "2 FMA ports (Sapphire/Emerald Rapids ports 0 and 5)"),
         "AuthenticAMD": (1, 1, "1 (Zen 4: a 512-bit op takes both 256-bit FMA pipes)")}


def peaks(machine: dict) -> dict:
    ghz = machine["mhz_bogomips_half"] / 1000
    cores = machine["cpus"]
    fma, vnni, why = ISSUE.get(machine.get("vendor", "GenuineIntel"), ISSUE["GenuineIntel"])
    return {"ghz": ghz, "cores": cores, "fp32_gflops": cores * SIMD_FP32 * fma * 2 * ghz,
            "int8_gops": cores * VNNI_MACS * vnni * 2 * ghz, "fma": fma, "vnni": vnni, "why": why}


def _method(s: dict) -> str:
    """How the cells were measured, from the run's settings."""
    if s.get("interleaved"):
        return (f"Median wall-clock ms of one call over all calls of {s['rounds']} turns per engine, {s['slice_s']:g} s "
                f"of calls each: every engine of a (model, batch) is set up in its own process ({s['warmup']} warm-up "
                f"calls), all stay alive, and they take turns (the order rotating, {s['gap_s']:g} s idle before each), so "
                "that the VM's drifting speed is shared among them. All threads of the machine.")
    return (f"Median wall-clock ms of at least {s['runs']} calls (and at least {s.get('min_seconds', 0):g} s of them) "
            f"after {s['warmup']} warm-up calls and a {s.get('pause_s', 0):g}-s pause, each engine in its own "
            "process, one after the other, all threads of the machine.")


def write_markdown(results: dict, out: Path) -> None:
    m, s = results["machine"], results["settings"]
    pk = peaks(m)
    lines = ["# accelc benchmark results", "",
             f"Machine: {m['cpu']}, {m['cpus']} CPUs ({m['threads_per_core']} thread per core, {m['hypervisor']} VM), "
             f"ISA {', '.join(m['isa'])}, L2 {m['l2']}. Python {m['python']}, torch {m['torch']}, onnxruntime "
             f"{m['onnxruntime']}, apache-tvm {m['tvm']} (tvm-ffi {m['tvm_ffi']}), numpy {m['numpy']}.", "",
             f"{_method(s)} Tuned builds: `--tune {s['trials']}` with the `--tune-budget` given in "
             "the tuning table, per model, precision and batch (MetaSchedule, database reused across runs). Cells: ms · speed-up over the "
             "fastest peer (> 1 is faster) · % of the CPU's peak.", "",
             f"Peak assumed: {pk['cores']} cores × {pk['ghz']:.2f} GHz (the VM's TSC/base clock; turbo is not visible "
             f"inside the VM, so real peaks may be higher and the percentages lower) — fp32: × {SIMD_FP32} lanes × "
             f"{pk['why']} × 2 = {pk['fp32_gflops']:.0f} GFLOP/s; int8: × {VNNI_MACS} MACs per vpdpbusd × "
             f"{pk['vnni']} per cycle × 2 = {pk['int8_gops']:.0f} GOP/s. FLOPs = 2 × MACs of conv/linear layers (accelc's "
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
            peak = pk["int8_gops"] if e in ("ort_int8", "accelc_int8", "accelc_int8_default") else pk["fp32_gflops"]
            pct = gflop / (ms / 1e3) / peak * 100
            speed = f" · {fastest / ms:.2f}×" if fastest else ""
            cells.append(f"{ms:.3f}{speed} · {pct:.0f}%")
            if "tuning" in r:
                t = r["tuning"]
                tuning_rows.append(f"| {name} | {batch} | {LABELS[e]} | {t.get('budget_s') or '–'} | {t['seconds']:.0f} | {r['compile_s']:.0f} | "
                                   f"{t['tasks_total']} | {t['tasks_tuned']} | {t['db_hits']} | {t['new_trials']} | "
                                   f"{'yes' if t['budget_reached'] else 'no'} |")
        lines.append(f"| {name} | {batch} | {gflop:.3f} | " + " | ".join(cells) + " |")
    lines += ["", "Tuning (this run; a task found in the database is not tuned again):", "",
              "| model | batch | build | budget s | tuning s | compile s | tasks | tuned now | from database | trials | budget hit |",
              "|---|---|---|---|---|---|---|---|---|---|---|", *tuning_rows, ""]
    lines += [f"* {note}" for note in results.get("notes", [])]
    if "bench_wall_s" in results:
        lines.append(f"Whole run: {results['bench_wall_s'] / 60:.0f} min.")
    lines += ["", *gpu_section(results.get("gpu"))]
    out.write_text("\n".join(lines) + "\n")


def gpu_section(gpu: dict | None) -> list[str]:
    """The cuda target on a GPU (benchmarks/gpu.sh), or why there are no figures yet."""
    lines = ["## GPU (cuda target)", ""]
    if not gpu:
        return lines + ["No GPU figures yet: `benchmarks/gpu.sh` is prepared (build here, run on a GPU machine, "
                        "record here) but has not been run on a GPU. See its header for the three steps.", ""]
    g = gpu["gpu"]
    lines += [f"{g['name']} ({g['sms']} SMs, {g['arch']}), torch {g['torch']}. Median ms of {g['runs']} calls after "
              f"{g['warmup']} warm-up calls, each followed by a device synchronisation. accelc: the cuda artifact "
              "(TVM's default GPU schedules, untuned) run with TVM's runtime only.", "",
              "| model | batch | PyTorch eager | torch.compile | accelc cuda | vs fastest peer | max abs err vs eager |",
              "|---|---|---|---|---|---|---|"]
    for key, r in gpu["runs"].items():
        name, batch = key.split("/b")
        if "error" in r:
            lines.append(f"| {name} | {batch} | | | failed: {r['error'][:80]} | | |")
            continue
        fastest = min(r[k] for k in ("eager", "inductor") if k in r)
        err = r.get("max_abs_err_vs_eager")
        inductor = f"{r['inductor']:.3f}" if "inductor" in r else r.get("inductor_error", "–")
        lines.append(f"| {name} | {batch} | {r['eager']:.3f} | {inductor} | {r['accelc_cuda']:.3f} | "
                     f"{fastest / r['accelc_cuda']:.2f}× | {'–' if err is None else f'{err:.2e}'} |")
    profiled = [(k, r["accelc_profile"]) for k, r in gpu["runs"].items() if r.get("accelc_profile")]
    if profiled:
        lines += ["", "Slowest accelc kernels per run (ms, each VM call timed between device synchronisations, "
                      "so launch overlap is lost; `accelc_profile` in results.json has 15 per model):", ""]
        for key, prof in profiled:
            kernels = [p for p in prof if not p["name"].startswith("vm.builtin")][:4]
            lines.append(f"* {key}: " + ", ".join(f"{p['name']} {p['ms']:.3f}" for p in kernels))
    lines += [""] + [f"* {note}" for note in gpu.get("notes", [])]
    return lines + ["", "The peers run as PyTorch configures them by default: cuDNN convolutions may use TF32 tensor "
                        "cores (`torch.backends.cudnn.allow_tf32` is on), matmuls stay fp32. accelc's kernels are "
                        "fp32 on the CUDA cores; its load time includes nvcc for the local GPU "
                        "(`accelc_load_s` in results.json).", "", *training_section(gpu.get("training"))]


def training_section(training: dict | None) -> list[str]:
    """``accelc train`` on the GPU (NCCL) next to the same job on the CPU (gloo)."""
    if not training:
        return []
    lines = ["Training on the GPU machine (`accelc train`, LeNet on digits, one process, 2 microbatches; "
             "the same job with `CUDA_VISIBLE_DEVICES=''` for the CPU row):", "",
             "| where | backend | device | steps | median step ms | final loss | wall s |", "|---|---|---|---|---|---|---|"]
    for where in ("cuda", "cpu"):
        r = training.get(where, {})
        if "error" in r:
            lines.append(f"| {where} | failed: {r['error'][-120:]!r} | | | | | |")
        elif r:
            lines.append(f"| {where} | {r['backend']} | {r['device']} | {len(r['losses'])} | {r['median_step_ms']:.2f} | "
                         f"{r['losses'][-1]:.4f} | {r['wall_s']} |")
    if "max_abs_loss_diff" in training:
        first = next(i for i, (a, b) in enumerate(zip(training["cuda"]["losses"], training["cpu"]["losses"]))
                     if abs(a - b) > 1e-3) if training["max_abs_loss_diff"] > 1e-3 else None
        lines += ["", f"Largest per-step loss difference between the two runs: {training['max_abs_loss_diff']:.2e}"
                  + (f" (the runs agree within 1e-3 up to step {first}; from there TF32 convolutions and "
                     "reduction order make SGD trajectories drift apart, as between any two devices)."
                     if first is not None else ".")]
    return lines + [""]


def main(argv=None) -> int:
    import argparse

    root = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--results", type=Path, default=root / "results.json")
    p.add_argument("--out", type=Path, default=root / "RESULTS.md")
    p.add_argument("--gpu", type=Path, help="gpu_results.json from `benchmarks/gpu.sh run`, to record")
    args = p.parse_args(argv)
    results = json.loads(args.results.read_text())
    if args.gpu:
        results["gpu"] = json.loads(args.gpu.read_text())
        args.results.write_text(json.dumps(results, indent=1, sort_keys=True))
    write_markdown(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

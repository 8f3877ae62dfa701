"""``accelc compile MODEL --target cpu -o build/``"""

from __future__ import annotations

import sys

from accelc.cli.common import add, add_model_options, new_parser, parse_key_values, print_json, split_list

NAME = "compile"


def add_parser(sub):
    p = new_parser(sub, NAME, "compile a model into an artifact directory",
                   "Trace MODEL, run the pass pipeline with verification, lower it for --target and write the\n"
                   "artifact directory (manifest.json, payload, report.json).\n\n"
                   "examples:\n"
                   "  accelc compile model.pt2 --target cpu -o build/model\n"
                   "  accelc compile --entry examples/models.py:lenet --weights examples/weights/lenet.pt \\\n"
                   "      --input-shape 1x1x28x28 --eval digits -o build/lenet")
    add_model_options(p)
    add(p, "--target", "-t", default="cpu", help="cpu | cuda | fpga (default: cpu)")
    add(p, "--target-opt", action="append", metavar="KEY=VALUE", help="target option, e.g. mcpu=skylake-avx512")
    add(p, "--fpga-config", metavar="FILE", help="VTA configuration JSON for --target fpga")
    add(p, "--pipeline", "-p", metavar="PIPELINE", help="pass pipeline, e.g. 'fuse,quantize(scheme=pow2)' "
                                                         "(default: the target's)")
    add(p, "--output", "-o", metavar="DIR", help="artifact directory to write (required)")
    add(p, "--calib", metavar="DATA", help="calibration data (.npz) or 'digits'")
    add(p, "--eval", metavar="DATA", help="labelled data (.npz) or 'digits': report top-1 accuracy")
    add(p, "--train", metavar="DATA", help="training data (.npz) or 'digits' for passes that fine-tune")
    add(p, "--print-after", action="append", metavar="PASS|all", help="print the graph after a pass")
    add(p, "--print-format", default="code", choices=["code", "table"], help="graph dump format (default: code)")
    add(p, "--no-verify", action="store_true", default=False, help="skip verify-each (faster, less safe)")
    add(p, "--seed", type=int, default=0, help="seed for everything random (default: 0)")
    add(p, "--reproducible", action="store_true", default=False,
        help="record no wall-clock times, so report.json is byte-identical too")
    add(p, "--json", action="store_true", default=False, help="print report.json to stdout")
    _add_tuning_options(p)
    return p


def _add_tuning_options(p) -> None:
    """MetaSchedule tuning (cpu, cuda); see accelc/targets/tvm_backend/tuning.py."""
    add(p, "--tune", type=int, default=0, metavar="TRIALS",
        help="tune each operator with MetaSchedule, measuring up to TRIALS schedules (default: 0 = off)")
    add(p, "--tuning-db", metavar="DIR", help="tuning database directory, reused across compiles "
                                              "(default: ~/.cache/accelc/tuning/<target>)")
    add(p, "--tune-budget", type=float, metavar="SECONDS", help="stop measuring after SECONDS")


def run(args) -> int:
    from accelc.api import compile
    from accelc.errors import UsageError

    if not args.output:
        raise UsageError("compile needs an output directory", hint="pass -o DIR (or set output in the config file)")
    if args.model is None and args.entry is None:
        raise UsageError("no model given", hint="pass MODEL (a .pt2 file) or --entry file.py:factory")
    target_options = parse_key_values(args.target_opt, "--target-opt")
    if args.fpga_config:
        if args.target != "fpga":
            raise UsageError("--fpga-config applies to --target fpga only")
        target_options["config"] = args.fpga_config
    compiled = compile(
        args.model, target=args.target, pipeline=args.pipeline, output=args.output, entry=args.entry,
        weights=args.weights, trust_pickle=args.trust_pickle, input_shapes=split_list(args.input_shape) or None,
        target_options=target_options, calib=args.calib, eval=args.eval,
        train=args.train, verify_each=not args.no_verify, print_after=split_list(args.print_after),
        print_format=args.print_format, seed=args.seed, quiet=args.quiet, reproducible=args.reproducible,
        tune=args.tune, tuning_db=args.tuning_db, tune_budget=args.tune_budget)
    report = compiled.report
    if args.json:
        print_json(report)
    elif not args.quiet:
        _summary(report, args.output)
    return 0


def _summary(report: dict, out: str) -> None:
    from accelc.cli.common import human

    w = sys.stdout.write
    w(f"compiled for {report['target']} with pipeline '{report['pipeline'] or '(none)'}' → {out}\n")
    for r in report["passes"]:
        err = r["max_abs_err"]
        w(f"  {r['name']:<10} {r['seconds'] * 1e3:8.1f} ms  FLOPs {human(r['flops_before'])} → {human(r['flops_after'])}"
          f"  params {human(r['params_before'])} → {human(r['params_after'])}"
          + (f"  max|Δ| {err:.3g}" if err is not None else "")
          + (f"  top-1 agree {r['top1_agreement']:.3f}" if r.get("top1_agreement") is not None else "") + "\n")
    check = report.get("artifact_check", {})
    if "vs_original" in check:
        v = check["vs_original"]
        w(f"  artifact vs original model: max|Δ| {v['max_abs_err']:.3g}"
          + (f", top-1 agreement {v['top1_agreement']:.3f}" if v.get("top1_agreement") is not None else "")
          + f" on {check['samples']} samples\n")
    elif "skipped" in check:
        w(f"  artifact not run here: {check['skipped']}\n")
    run = report.get("fpga_run")
    if run:
        placed = report["fpga"]["placement"]
        on = sum(1 for v in placed.values() if v["on"] == "fpga")
        w(f"  fpga: {on}/{len(placed)} nodes on the accelerator in {len(report['fpga']['segments'])} segment(s); "
          f"simulated {run['total_cycles']:,} cycles = {run['accelerator_latency_ms']:.3f} ms at "
          f"{run['clock_mhz']:g} MHz, GEMM utilisation {run['gemm_utilization'] * 100:.1f}%\n")
    tuning = report.get("tuning")
    if tuning:
        w(f"  tuning: {tuning['tasks_tuned']} task(s) tuned ({tuning['new_trials']} trials, default kept in "
          f"{tuning['tasks_kept_default']}), {tuning['tasks_default_only']} with only the default measured (budget), "
          f"{tuning['db_hits']} from the database, {tuning['tasks_untuned']} untuned, {tuning['seconds']:.0f} s; "
          f"database {tuning['db']}\n")
        check = tuning.get("model_check")
        if check:
            w(f"  whole model: tuned {check['tuned_ms']:.3f} ms, untuned {check['default_ms']:.3f} ms → kept the "
              f"{'tuned' if check['kept'] == 'tuned' else 'untuned'} build"
              f"{' (decision from the database)' if check['from_database'] else ''}\n")
    acc = report.get("accuracy")
    if acc:
        parts = [f"{k} {acc[k] * 100:.2f}%" for k in ("original", "final_graph", "artifact") if k in acc]
        w(f"  top-1 on {acc['dataset']} ({acc['samples']} samples): {', '.join(parts)}\n")

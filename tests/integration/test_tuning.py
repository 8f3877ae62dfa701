"""Tuned builds: the persistent database (a second compile tunes nothing and builds the same
bytes), tuned artifacts as exact as untuned ones, int8 on AVX512-VNNI (vpdpbusd in the code,
outputs bit-identical to the reference ops), options and errors."""

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

import accelc
from accelc.errors import UsageError
from tests.helpers import random_dataset, run_pipeline


class Tiny(nn.Module):
    """conv → relu → strided conv → relu → linear: every kind of VNNI layer, small shapes."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 24, 3, stride=2, padding=1)
        self.fc = nn.Linear(24 * 4 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x))
        return self.fc(torch.flatten(x, 1))


def _model():
    torch.manual_seed(0)
    return Tiny().eval(), torch.randn(1, 3, 8, 8)


def _calib(tmp_path, shape):
    path = tmp_path / "calib.npz"
    np.savez(path, inputs=random_dataset(shape, 16).inputs[0])
    return path


INT8 = "fuse,quantize(sensitivity=false)"


def _has_vnni() -> bool:
    from accelc.targets.cpu import CPUTarget
    from accelc.targets.tvm_backend.vnni import target_has_vnni

    return target_has_vnni(CPUTarget().tvm_target())


def test_second_compile_reuses_the_database(tmp_path):
    """int8 model, 2 trials per task: the first compile measures, the second measures nothing,
    takes every schedule from the database and writes the same library; both exact."""
    model, x = _model()
    calib = _calib(tmp_path, x.shape)
    db = tmp_path / "db"
    reports = []
    for name in ("one", "two"):
        c = accelc.compile(model, (x,), pipeline=INT8, calib=calib, output=tmp_path / name, tune=2, tuning_db=db,
                           reproducible=True)
        reports.append(c.report)
        assert c.report["artifact_check"]["vs_final_graph"]["max_abs_err"] == 0.0
    first, second = (r["tuning"] for r in reports)
    assert first["new_trials"] > 0 and first["tasks_tuned"] == first["tasks_total"] > 0
    assert second["new_trials"] == 0 and second["tasks_tuned"] == 0
    # every task with a measured schedule comes from the database (a task whose 2 candidates
    # both failed to build or run has none, and keeps its default code)
    with_record = {t["name"] for t in first["tasks"] if t["best_us"] is not None}
    assert len(with_record) >= first["tasks_total"] - 1
    assert {t["name"] for t in second["tasks"] if t["source"] == "database"} == with_record
    assert second["tasks_total"] == first["tasks_total"] and all(t["level"] == 2 for t in second["tasks"])
    for f in ("lib.so", "params.safetensors", "manifest.json", "report.json"):
        if f == "report.json":  # only the per-session counts differ
            continue
        assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes(), f
    assert (db / "database_tuning_record.json").stat().st_size > 0 and (db / "accelc_trials.json").is_file()
    if first["model_check"] is not None:  # the whole-model decision is reused, not re-measured
        assert first["model_check"]["from_database"] is False and second["model_check"]["from_database"] is True
        assert first["model_check"]["kept"] == second["model_check"]["kept"]


def test_the_faster_whole_model_is_kept(tmp_path, monkeypatch):
    """A tuned CPU build is kept only if the whole model runs faster than untuned by more than
    the margin (a 2% win is noise: the untuned build stays). The timing is
    forced here (a real one is noise on a tiny model); the decision is stored, and a compile
    that finds it reuses it and writes the same files."""
    from accelc.targets.tvm_backend import model_check

    model, x = _model()
    untuned = accelc.compile(model, (x,), output=tmp_path / "untuned")
    cases = (({"tuned": 2.0, "default": 1.0}, "default"), ({"tuned": 0.98, "default": 1.0}, "default"),
             ({"tuned": 1.0, "default": 2.0}, "tuned"))
    for case, (forced, kept) in enumerate(cases):
        measured = []

        def fake(calls, rounds=model_check.ROUNDS, forced=forced, measured=measured):
            for call in calls.values():
                call()  # both builds really run
            measured.append(sorted(calls))
            return forced

        monkeypatch.setattr(model_check, "time_in_turns", fake)
        db, out = tmp_path / f"db_{case}", tmp_path / f"{kept}_{case}"
        c = accelc.compile(model, (x,), output=out, tune=2, tuning_db=db)
        check = c.report["tuning"]["model_check"]
        assert measured == [["default", "tuned"]] and check["kept"] == kept and not check["from_database"]
        np.testing.assert_allclose(c(x).numpy(), untuned(x).numpy(), rtol=1e-5, atol=1e-5)
        same_lib = (out / "lib.so").read_bytes() == (tmp_path / "untuned" / "lib.so").read_bytes()
        assert same_lib == (kept == "default")
        monkeypatch.undo()
        again = accelc.compile(model, (x,), output=tmp_path / f"again_{case}", tune=2, tuning_db=db)
        assert again.report["tuning"]["model_check"] == {**check, "from_database": True}
        assert (tmp_path / f"again_{case}" / "lib.so").read_bytes() == (out / "lib.so").read_bytes()


def test_the_default_schedule_is_a_candidate(tmp_path):
    """Each task's default schedule is measured and stored before the search: no task ends up
    with a schedule measured slower than its default, and a task where the default won gets
    exactly the default's code back from the database (its trace replays)."""
    import tvm_ffi
    from tvm import relax

    from accelc.targets.cpu import CPUTarget
    from accelc.targets.tvm_backend import cpu_conv
    from accelc.targets.tvm_backend.defaults import default_schedule
    from accelc.targets.tvm_backend.importer import to_relax
    from accelc.targets.tvm_backend.layout import to_nhwc
    from accelc.targets.tvm_backend.params import fold_param_transforms
    from accelc.targets.tvm_backend.pipeline import legalize_and_fuse
    from accelc.targets.tvm_backend.tuning import TuningOptions, strip_foreign_schedule_rules, tune_and_apply

    model, x = _model()
    target = CPUTarget().tvm_target()
    mod, params = to_relax(torch.fx.symbolic_trace(model), (x,))
    mod, _ = fold_param_transforms(to_nhwc(mod), params)
    mod = relax.transform.AttachAttrLayoutFreeBuffers()(legalize_and_fuse(mod, target))
    tuned, report = tune_and_apply(mod, target, TuningOptions(trials=1, db=str(tmp_path / "db")))
    rows = {r.name: r for r in report.tasks}
    assert rows and all(r.default_us is not None and r.best_us <= r.default_us for r in rows.values())
    annotated = cpu_conv.annotate_for_tuning(strip_foreign_schedule_rules(mod), target)
    kept = [n for n, r in rows.items() if r.kept_default]
    assert kept  # one trial of the generic search space does not beat the matmul sketch
    for name in kept:
        func = tuned[name]
        assert func.attrs.get("tirx.is_scheduled")
        with target:
            expected = default_schedule(annotated[name], target).mod["main"]
        assert tvm_ffi.structural_equal(func.body, expected.body), name
    assert report.to_dict()["tasks_kept_default"] == len(kept)


def test_a_stale_default_in_the_database_is_not_applied(tmp_path):
    """A database keeps the default schedules it measured. When accelc's default for a task
    changes, the old default's record (faster on paper: it may have been measured in another
    phase) must not be applied; the build uses today's default, and MetaSchedule's records
    compete with today's default only."""
    from tvm import relax, s_tir
    from tvm.s_tir import meta_schedule as ms

    from accelc.targets.cpu import CPUTarget
    from accelc.targets.tvm_backend import cpu_conv
    from accelc.targets.tvm_backend.defaults import default_schedule
    from accelc.targets.tvm_backend.importer import to_relax
    from accelc.targets.tvm_backend.layout import to_nhwc
    from accelc.targets.tvm_backend.params import fold_param_transforms
    from accelc.targets.tvm_backend.pipeline import legalize_and_fuse
    from accelc.targets.tvm_backend.tuning import (TuningDatabase, TuningOptions, is_default_record,
                                                   strip_foreign_schedule_rules, tune_and_apply)

    model, x = _model()
    target = CPUTarget().tvm_target()
    mod, params = to_relax(torch.fx.symbolic_trace(model), (x,))
    mod, _ = fold_param_transforms(to_nhwc(mod), params)
    mod = relax.transform.AttachAttrLayoutFreeBuffers()(legalize_and_fuse(mod, target))
    db_dir = tmp_path / "db"
    _, report = tune_and_apply(mod, target, TuningOptions(trials=1, db=str(db_dir)))
    name = next(r.name for r in report.tasks if r.kept_default)
    annotated = cpu_conv.annotate_for_tuning(strip_foreign_schedule_rules(mod), target)
    task_mod = next(t.dispatched[0] for t in ms.relax_integration.extract_tasks(annotated, target)
                    if t.task_name == name)
    with TuningDatabase(db_dir) as db:  # an "old default": TVM's naive loops, measured at 1 ns
        old = s_tir.Schedule(task_mod)
        db.ms.commit_tuning_record(ms.database.TuningRecord(
            old.trace, db.ms.commit_workload(task_mod), [1e-9], target,
            ms.arg_info.ArgInfo.from_prim_func(task_mod["main"])))
        assert is_default_record(db.records(task_mod)[0])
    applied, _ = tune_and_apply(mod, target, TuningOptions(trials=0, db=str(db_dir)))
    with target:
        expected = default_schedule(annotated[name], target).mod["main"].with_attr("tirx.is_scheduled", True)
    # the trace went through the database's JSON, which writes the annotation True as 1
    assert applied[name].script().replace("preproc\": 1", "preproc\": True") == expected.script(), name


def test_tuned_int8_is_bit_exact_with_the_reference_ops(tmp_path):
    """The tuned artifact against the quantized fx graph on fresh inputs (not the samples)."""
    model, x = _model()
    calib = _calib(tmp_path, x.shape)
    compiled = accelc.compile(model, (x,), pipeline=INT8, calib=calib, tune=2, tuning_db=tmp_path / "db")
    reference, _ = run_pipeline(model, (x,), INT8, random_dataset(x.shape, 16))
    for seed in range(3):
        xi = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)) * 3
        np.testing.assert_array_equal(compiled(xi).numpy(), reference(xi).detach().numpy())


@pytest.mark.skipif(not _has_vnni(), reason="the host CPU has no AVX512-VNNI")
def test_int8_layers_use_vpdpbusd_and_stay_exact():
    from accelc.targets.cpu import CPUTarget
    from accelc.targets.tvm_backend.importer import to_relax
    from accelc.targets.tvm_backend.pipeline import build_module

    model, x = _model()
    gm, _ = run_pipeline(model, (x,), INT8, random_dataset(x.shape, 16))
    target = CPUTarget()
    assert target.int8_lowering() == "vnni"
    mod, params = to_relax(gm, (x,), int8="vnni")
    names = [gv.name_hint for gv in mod.get_global_vars()]
    assert sum(n.startswith("qconv2d_vnni") for n in names) == 2 and any(n.startswith("qlinear_vnni") for n in names)
    result = build_module(mod, params, target.tvm_target())
    llvm = [m for m in result.executable.mod.imports if m.kind == "llvm"]
    asm = "".join(m.inspect_source("asm") for m in llvm)
    assert asm.count("vpdpbusd") >= 3
    from tests.helpers import tvm_run

    out = tvm_run(gm, (x,))[0]
    np.testing.assert_array_equal(out, gm(x).detach().numpy())


def test_tuned_fp32_within_tolerance(tmp_path):
    model, x = _model()
    compiled = accelc.compile(model, (x,), tune=2, tuning_db=tmp_path / "db")
    assert compiled.report["tuning"]["tasks_tuned"] > 0
    np.testing.assert_allclose(compiled(x).numpy(), model(x).detach().numpy(), rtol=1e-4, atol=1e-4)


def test_database_without_tuning_and_option_errors(tmp_path):
    model, x = _model()
    # --tuning-db with --tune 0 applies what is there (here: nothing) and tunes nothing
    c = accelc.compile(model, (x,), tuning_db=tmp_path / "empty")
    t = c.report["tuning"]
    assert t["new_trials"] == 0 and t["tasks_untuned"] == t["tasks_total"] > 0
    with pytest.raises(UsageError, match="--tune-budget"):
        accelc.compile(model, (x,), tune_budget=10)
    with pytest.raises(UsageError, match="≥ 0"):
        accelc.compile(model, (x,), tune=-1)
    with pytest.raises(UsageError, match="cpu and cuda"):
        accelc.compile(model, (x,), target="fpga", tune=4)


def test_default_database_location(monkeypatch, tmp_path):
    from accelc.targets.cpu import CPUTarget
    from accelc.targets.tvm_backend.tuning import default_db_dir

    monkeypatch.setenv("ACCELC_CACHE_DIR", str(tmp_path))
    d = default_db_dir(CPUTarget({"mcpu": "skylake-avx512", "num_cores": 2}).tvm_target())
    assert d.parent == tmp_path / "tuning" and d.name.startswith("llvm-skylake-avx512-2c-")
    assert default_db_dir(CPUTarget({"mcpu": "skylake-avx512", "num_cores": 2}).tvm_target()) == d
    assert default_db_dir(CPUTarget({"mcpu": "icelake-server", "num_cores": 2}).tvm_target()) != d


@pytest.mark.slow
def test_budget_stops_tuning_and_the_next_compile_continues(tmp_path):
    model, x = _model()
    first = accelc.compile(model, (x,), tune=64, tune_budget=1, tuning_db=tmp_path / "db").report["tuning"]
    assert first["budget_reached"]
    second = accelc.compile(model, (x,), tune=64, tune_budget=600, tuning_db=tmp_path / "db").report["tuning"]
    assert second["new_trials"] > 0 and not second["budget_reached"]


def test_cli_tuning_flags(cli, tmp_path):
    from tests.conftest import ROOT

    out = tmp_path / "a"
    proc = cli("compile", "--entry", "examples/models.py:lenet", "--input-shape", "1x1x28x28", "-o", out,
               "--tuning-db", tmp_path / "db", "--no-verify", cwd=ROOT, check=0)
    assert "tuning: 0 task(s) tuned" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["tuning"]["db"] == str(tmp_path / "db") and report["tuning"]["new_trials"] == 0
    proc = cli("compile", "--entry", "examples/models.py:lenet", "--input-shape", "1x1x28x28", "-o", out,
               "--tune-budget", "10", cwd=ROOT, check=2)
    assert "--tune-budget needs --tune" in proc.stderr

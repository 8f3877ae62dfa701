"""The peer benchmark's harness (benchmarks/bench.py): engines set up in their own processes,
measured in turns, results and the Markdown table written. Real engines, tiny settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_engines_are_measured_in_turns(tmp_path):
    """Three engines of LeNet b1, three turns each: every engine has at least one call per turn
    (a median, p10 ≤ median ≤ p90), its set-up facts (accelc's compile time and artifact
    error), and the table states the interleaved method; an unknown engine is refused."""
    engines = ["eager", "ort_fp32", "accelc_fp32_default"]
    results, out = tmp_path / "results.json", tmp_path / "RESULTS.md"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--models", "lenet", "--batches", "1",
           "--engines", ",".join(engines), "--rounds", "3", "--slice", "0.05", "--results", str(results),
           "--out", str(out), "--work", str(tmp_path / "work"), "--tuning-db", str(tmp_path / "db")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(results.read_text())
    assert data["settings"]["interleaved"] and data["settings"]["rounds"] == 3
    entry = data["runs"]["lenet/b1"]
    for engine in engines:
        r = entry[engine]
        assert "error" not in r, r
        assert r["runs"] >= 3 and 0 < r["p10_ms"] <= r["median_ms"] <= r["p90_ms"], r
    assert entry["accelc_fp32_default"]["artifact_max_abs_err_vs_final_graph"] < 1e-4
    assert "take turns" in out.read_text()

    bad = subprocess.run(cmd[:2] + ["--engines", "eager,nonsense"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "unknown engine" in bad.stderr

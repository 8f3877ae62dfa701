"""The command line end to end, as a subprocess: exit codes, messages, config files."""

import json

import numpy as np
import pytest
import torch

from tests.conftest import ROOT
from tests.models import tiny_lenet

ENTRY = ["--entry", "examples/models.py:lenet", "--weights", "examples/weights/lenet.pt", "--input-shape", "1x1x28x28"]


@pytest.fixture(scope="module")
def pt2(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    torch.export.save(torch.export.export(tiny_lenet(), (torch.randn(1, 1, 28, 28),)), d / "lenet.pt2")
    torch.save(tiny_lenet(), d / "pickled.pt")
    np.save(d / "x.npy", np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32))
    return d


def test_compile_run_inspect(cli, pt2, tmp_path):
    out = tmp_path / "art"
    proc = cli("compile", *ENTRY, "--eval", "digits", "-o", out, cwd=ROOT, check=0)
    assert "top-1 on digits:test" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["accuracy"]["artifact"] == report["accuracy"]["original"] > 0.97
    proc = cli("run", out, "--input", pt2 / "x.npy", "--output", tmp_path / "y.npy", check=0)
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (1, 10)
    proc = cli("run", out, "--input", "digits", "--json", check=0)
    assert json.loads(proc.stdout)["top1_accuracy"] > 0.97
    proc = cli("inspect", pt2 / "lenet.pt2", "--json", check=0)
    info = json.loads(proc.stdout)
    conv1 = next(layer for layer in info["layers"] if layer["op"] == "Conv2d")
    assert conv1["shape"] == [1, 6, 24, 24] and conv1["params"] == 156 and set(conv1["supported_by"]) >= {"cpu", "cuda"}
    table = cli("inspect", pt2 / "lenet.pt2", check=0).stdout
    assert "total" in table and "FLOPs" in table


def test_determinism_via_cli(cli, pt2, tmp_path):
    for d in ("a", "b"):
        cli("compile", pt2 / "lenet.pt2", "-o", tmp_path / d, "--reproducible", "-q", check=0)
    for f in ("manifest.json", "lib.so", "params.safetensors", "report.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


@pytest.mark.parametrize("args, code, message", [
    (["compile", "{pt2}/lenet.pt2"], 2, "needs an output directory"),
    (["compile", "{pt2}/lenet.pt2", "-o", "{tmp}/o", "--pipeline", "fuse,nope"], 2, "unknown pass 'nope'"),
    (["compile", "{pt2}/lenet.pt2", "-o", "{tmp}/o", "--pipeline", "fuse(level=3)"], 2, "unknown option 'level'"),
    (["compile", "{pt2}/lenet.pt2", "-o", "{tmp}/o", "--target", "tpu"], 2, "unknown target 'tpu'"),
    (["compile", "{pt2}/lenet.pt2", "-o", "{tmp}/o", "--target-opt", "mcpu=pentium9000"], 1, "LLVM does not know"),
    (["compile", "{pt2}/missing.pt2", "-o", "{tmp}/o"], 1, "does not exist"),
    (["compile", "{pt2}/pickled.pt", "-o", "{tmp}/o"], 1, "--trust-pickle"),
    (["compile", *ENTRY[:4], "-o", "{tmp}/o"], 2, "--input-shape"),
    (["compile", *ENTRY[:4], "--input-shape", "1x1x28", "-o", "{tmp}/o"], 1, "model fails on the example inputs"),
    (["compile", *ENTRY[:4], "--input-shape", "1xAx28", "-o", "{tmp}/o"], 2, "is not a shape"),
    (["compile", *ENTRY, "--eval", "{pt2}/x.npy", "-o", "{tmp}/o"], 2, "no 'labels'"),
    (["run", "{tmp}/nothing", "--input", "{pt2}/x.npy"], 1, "not a directory"),
    (["frobnicate"], 2, "invalid choice"),
])
def test_errors_and_exit_codes(cli, pt2, tmp_path, args, code, message):
    args = [a.format(pt2=pt2, tmp=tmp_path) for a in args]
    proc = cli(*args, cwd=ROOT)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_debug_shows_traceback(cli, pt2, tmp_path):
    proc = cli("compile", pt2 / "missing.pt2", "-o", tmp_path / "o", "--debug")
    assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_print_after(cli, pt2, tmp_path):
    proc = cli("compile", pt2 / "lenet.pt2", "-o", tmp_path / "o", "--print-after", "fuse", "--print-format", "table",
               check=0)
    assert "graph after fuse" in proc.stdout and "ConvAct2d" in proc.stdout


def test_config_file_and_precedence(cli, pt2, tmp_path):
    (tmp_path / "accelc.toml").write_text(
        f'target = "cpu"\npipeline = "none"\n[compile]\noutput = "{tmp_path / "from-config"}"\n'
        f'input-shape = ["1x1x28x28"]\n')
    cli("compile", pt2 / "lenet.pt2", "-q", cwd=tmp_path, check=0)
    manifest = json.loads((tmp_path / "from-config" / "manifest.json").read_text())
    assert manifest["pipeline"] == ""  # from the config file
    cli("compile", pt2 / "lenet.pt2", "-q", "--pipeline", "fuse", "-o", tmp_path / "cli", cwd=tmp_path, check=0)
    assert json.loads((tmp_path / "cli" / "manifest.json").read_text())["pipeline"] == "fuse"  # CLI wins


def test_pyproject_tool_table(cli, pt2, tmp_path):
    (tmp_path / "pyproject.toml").write_text(f'[project]\nname = "x"\n[tool.accelc]\npipeline = "none"\n'
                                             f'output = "{tmp_path / "pp"}"\n')
    cli("compile", pt2 / "lenet.pt2", "-q", cwd=tmp_path, check=0)
    assert json.loads((tmp_path / "pp" / "manifest.json").read_text())["pipeline"] == ""


def test_bad_config_keys(cli, pt2, tmp_path):
    (tmp_path / "accelc.toml").write_text('targt = "cpu"\n')
    proc = cli("compile", pt2 / "lenet.pt2", "-o", tmp_path / "o", cwd=tmp_path)
    assert proc.returncode == 2 and "unknown key 'targt'" in proc.stderr and "target" in proc.stderr


def test_list(cli):
    proc = cli("list", "--json", check=0)
    info = json.loads(proc.stdout)
    assert "fuse" in info["passes"] and {"cpu", "cuda"} <= set(info["targets"])

"""Pipeline-parallel training with real gloo process groups (``accelc train`` launching
torchrun workers) against single-process training on the same global batches.

Models without batch norm (micro-batching changes batch-norm statistics, nothing else), SGD
with momentum (so resuming must restore optimizer state). Equal means within 1e-5.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
import pipeline_models  # noqa: E402
from pipeline_fixtures import one_torch_thread  # noqa: E402,F401  (autouse fixture)

from accelc.training.data import batch_indices  # noqa: E402

MODELS = str(ROOT / "tests" / "pipeline_models.py")
TOL = 1e-5
COMMON = dict(batch_size=16, lr=0.05, momentum=0.9, seed=3)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from sklearn.datasets import load_digits

    d = load_digits()
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, inputs=(d.images / 16.0).astype(np.float32)[:, None], labels=d.target.astype(np.int64))
    return path


def accelc_train(*args, check=True, **popen):
    cmd = [sys.executable, "-m", "accelc", "train", "-q", *map(str, args)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    if popen:
        return subprocess.Popen(cmd, env=env, cwd=ROOT, text=True, **popen)
    done = subprocess.run(cmd, env=env, cwd=ROOT, text=True, capture_output=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def train_args(model, data, steps, stages, dp, microbatches, schedule, out: Path, **extra):
    opts = dict(COMMON, steps=steps, stages=stages, dp=dp, microbatches=microbatches, schedule=schedule,
                metrics=out.with_suffix(".jsonl"), checkpoint=out, **extra)
    args = ["--entry", f"{MODELS}:{model}", "--train", data]
    for k, v in opts.items():
        args += [f"--{k.replace('_', '-')}", v]
    return args


def step_losses(metrics: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, metrics.read_text().splitlines()) if "step" in r]


def single_process(model, data, steps, replicas, microbatches, loss):
    """Plain PyTorch: every global batch as replicas × microbatches chunks, gradients accumulated."""
    d = np.load(data)
    x, y = torch.from_numpy(d["inputs"]), torch.from_numpy(d["labels"])
    torch.manual_seed(COMMON["seed"])
    net = getattr(pipeline_models, model)().train()
    opt = torch.optim.SGD(net.parameters(), lr=COMMON["lr"], momentum=COMMON["momentum"])
    losses, chunks = [], replicas * microbatches
    for step in range(steps):
        idx = torch.from_numpy(batch_indices(len(x), COMMON["batch_size"], step, COMMON["seed"]))
        opt.zero_grad()
        total = 0.0
        for part in idx.chunk(chunks):
            value = loss(net(x[part]), y[part])
            (value / chunks).backward()
            total += value.item()
        opt.step()
        losses.append(total / chunks)
    return losses, net.state_dict()


def assert_matches(metrics, checkpoint, reference):
    ref_losses, ref_state = reference
    assert np.allclose(step_losses(metrics), ref_losses, rtol=0, atol=TOL)
    state = torch.load(checkpoint)
    assert list(state) == list(ref_state)  # an ordinary state_dict of the whole model
    for k, v in ref_state.items():
        assert torch.allclose(state[k], v, rtol=0, atol=TOL), k


@pytest.fixture(scope="module")
def two_stage_run(digits, tmp_path_factory):
    """2 stages (world 2), GPipe, 6 steps, uninterrupted."""
    out = tmp_path_factory.mktemp("gpipe") / "model.pt"
    accelc_train(*train_args("resnet_style", digits, 6, 2, 1, 2, "gpipe", out))
    return out


def test_two_stages_gpipe_match_single_process(two_stage_run, digits):
    assert_matches(two_stage_run.with_suffix(".jsonl"), two_stage_run,
                   single_process("resnet_style", digits, 6, 1, 2, F.cross_entropy))


def test_two_stages_1f1b_with_resume_continue_identically(two_stage_run, digits, tmp_path):
    """1F1B for 3 steps, checkpoint, resume up to 6: the same as the uninterrupted run."""
    first, second = tmp_path / "first.pt", tmp_path / "second.pt"
    accelc_train(*train_args("resnet_style", digits, 3, 2, 1, 2, "1f1b", first))
    accelc_train(*train_args("resnet_style", digits, 6, 2, 1, 2, "1f1b", second, resume=first))
    losses = step_losses(first.with_suffix(".jsonl")) + step_losses(second.with_suffix(".jsonl"))
    ref_losses, ref_state = single_process("resnet_style", digits, 6, 1, 2, F.cross_entropy)
    assert np.allclose(losses, ref_losses, rtol=0, atol=TOL)
    resumed, uninterrupted = torch.load(second), torch.load(two_stage_run)
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)  # bit for bit


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_two_stages_two_replicas_match_single_process(schedule, digits, tmp_path):
    out = tmp_path / "model.pt"
    accelc_train(*train_args("transformer_style", digits, 4, 2, 2, 2, schedule, out))
    assert_matches(out.with_suffix(".jsonl"), out, single_process("transformer_style", digits, 4, 2, 2, F.nll_loss))


def test_one_stage_is_ddp_with_gradient_accumulation(digits, tmp_path):
    out = tmp_path / "model.pt"
    accelc_train(*train_args("resnet_style", digits, 3, 1, 2, 2, "gpipe", out))
    assert_matches(out.with_suffix(".jsonl"), out, single_process("resnet_style", digits, 3, 2, 2, F.cross_entropy))


def test_killed_worker_fails_the_job_with_a_clear_message(digits, tmp_path):
    out = tmp_path / "model.pt"
    metrics = out.with_suffix(".jsonl")
    job = accelc_train(*train_args("resnet_style", digits, 100000, 2, 1, 2, "1f1b", out),
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (metrics.exists() and '"step"' in metrics.read_text()):
            assert job.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.2)
        workers = [p for p in psutil.Process(job.pid).children(recursive=True)
                   if "accelc.training.worker" in " ".join(p.cmdline())]
        assert len(workers) == 2
        victim = workers[1]
        victim.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        _, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 1
    assert time.monotonic() - killed < 60
    assert f"pid {victim.pid}) was killed by SIGKILL" in err, err
    assert "training failed" in err


def test_exported_program_trains_like_its_module(digits, tmp_path):
    """A .pt2 without batch norm trains; its checkpoint loads into the program's module."""
    torch.manual_seed(COMMON["seed"])
    net = pipeline_models.transformer_style().eval()
    program = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(net, (torch.randn(8, 1, 8, 8),)), program)  # 8 = one microbatch
    out = tmp_path / "model.pt"
    args = train_args("transformer_style", digits, 3, 2, 1, 2, "1f1b", out)
    args[:2] = [program]  # the program instead of --entry
    accelc_train(*args)
    assert_matches(out.with_suffix(".jsonl"), out, single_process("transformer_style", digits, 3, 1, 2, F.nll_loss))
    torch.export.load(program).module().load_state_dict(torch.load(out))


def test_batch_norm_model_trains(digits, tmp_path):
    """Batch norm trains (its statistics are per microbatch, so no exactness claim)."""
    out = tmp_path / "model.pt"
    accelc_train(*train_args("batchnorm_net", digits, 2, 2, 1, 2, "gpipe", out))
    assert all(np.isfinite(step_losses(out.with_suffix(".jsonl"))))
    state = torch.load(out)
    assert state["bn.num_batches_tracked"] == 2 * 2 and state["bn.running_mean"].abs().sum() > 0
    pipeline_models.batchnorm_net().load_state_dict(state)

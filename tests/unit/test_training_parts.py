"""The single-process parts of the training runtime: the training graph, losses, data order,
checkpoint files."""

import operator
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pipeline_models  # noqa: E402
from pipeline_fixtures import one_torch_thread  # noqa: E402,F401  (autouse fixture)

from accelc.errors import TrainingError, UnsupportedError  # noqa: E402
from accelc.training import checkpoint as ckpt  # noqa: E402
from accelc.training.data import batch_indices  # noqa: E402
from accelc.training.loss import choose_loss  # noqa: E402
from accelc.training.model import check_exported_trainable, training_graph  # noqa: E402


def test_training_graph_is_out_of_place_and_trains_like_the_module():
    torch.manual_seed(0)
    model = pipeline_models.resnet_style()
    x = torch.randn(4, 1, 8, 8)
    gm = training_graph(model, (x,)).graph
    assert not any(n.target in (operator.iadd,) for n in gm.graph.nodes)
    assert not any(getattr(m, "inplace", False) for m in gm.modules())
    torch.manual_seed(0)
    reference = pipeline_models.resnet_style().train()
    gm(x).sum().backward()
    reference(x).sum().backward()
    for (name, p), (_, q) in zip(gm.named_parameters(), reference.named_parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name


def test_inplace_rewrite_redirects_later_readers():
    class Mutates(nn.Module):
        def forward(self, x):
            y = x * 2
            y.relu_()
            return y + 1  # reads the mutated y

    x = torch.randn(3, 4)
    gm = training_graph(Mutates(), (x,)).graph
    assert torch.equal(gm(x), Mutates()(x))
    assert [n.target for n in gm.graph.nodes if n.op == "call_method"] == ["relu"]


def test_shape_arithmetic_is_folded_for_the_microbatch():
    torch.manual_seed(0)
    gm = training_graph(pipeline_models.transformer_style(), (torch.randn(4, 1, 8, 8),)).graph
    assert not any(n.target in (getattr, "size") for n in gm.graph.nodes)


def test_exported_program_with_inference_batch_norm_is_refused():
    model = pipeline_models.batchnorm_net().eval()
    ep = torch.export.export(model, (torch.randn(2, 1, 8, 8),))
    with pytest.raises(UnsupportedError, match="exported for inference"):
        check_exported_trainable(ep, "model.pt2")
    plain = torch.export.export(pipeline_models.transformer_style().eval(), (torch.randn(2, 1, 8, 8),))
    check_exported_trainable(plain, "model.pt2")  # no batch norm: accepted


def test_loss_follows_the_output():
    x = torch.randn(2, 1, 8, 8)
    logits = training_graph(pipeline_models.resnet_style(), (x,)).graph
    log_probs = training_graph(pipeline_models.transformer_style(), (x,)).graph
    labels = torch.tensor([1])
    assert choose_loss("auto", logits, labels) == "cross-entropy"
    assert choose_loss("auto", log_probs, labels) == "nll"
    assert choose_loss("auto", logits, torch.tensor([0.5])) == "mse"
    assert choose_loss("nll", logits, labels) == "nll"


def test_batches_are_a_function_of_seed_and_step():
    a = batch_indices(100, 32, 4, seed=7)
    assert np.array_equal(a, batch_indices(100, 32, 4, seed=7))
    epoch = np.concatenate([batch_indices(100, 32, s, seed=7) for s in range(3)])
    assert len(set(epoch.tolist())) == 96  # one epoch visits distinct samples
    assert not np.array_equal(batch_indices(100, 32, 0, seed=7), batch_indices(100, 32, 3, seed=7))


def test_checkpoint_files(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    first = nn.Sequential(model[0])  # two "stages" holding the original keys
    payloads = [{"model": {"0.weight": model[0].weight, "0.bias": model[0].bias},
                 "optimizer": ckpt.optimizer_state_by_name(first, opt)},
                {"model": {"1.weight": model[1].weight, "1.bias": model[1].bias}, "optimizer": {}}]
    path = tmp_path / "sub" / "model.pt"
    ckpt.save_checkpoint(path, payloads, keys=list(model.state_dict()), unused={}, step=3, optimizer="adam", data={})
    fresh = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    fresh.load_state_dict(torch.load(path))  # plain PyTorch reads it
    state, train = ckpt.load_checkpoint(path)
    assert train["step"] == 3 and list(state) == list(model.state_dict())
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt", "model.pt.train"]  # no temp files left
    path.write_bytes(path.read_bytes() + b"x")  # the halves no longer belong together
    with pytest.raises(TrainingError, match="different saves"):
        ckpt.load_checkpoint(path)
    ckpt.sidecar_path(path).unlink()
    with pytest.raises(TrainingError, match="--weights"):
        ckpt.load_checkpoint(path)


def test_optimizer_state_round_trips_by_name():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    saved = ckpt.optimizer_state_by_name(model, opt)
    other = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ckpt.load_optimizer_state(model, other, saved)
    assert torch.equal(other.state[model.weight]["momentum_buffer"], opt.state[model.weight]["momentum_buffer"])

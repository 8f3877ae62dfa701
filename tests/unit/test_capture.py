"""capture: input formats, safety refusals, tracing fallback, clear errors."""

import torch
import torch.nn as nn
import torch.nn.functional as F
import pytest

from accelc.compiler.capture import capture, load_model
from accelc.errors import ModelLoadError, TraceError, UnsafeModelError
from tests.models import TinyResNet, tiny_lenet, tiny_resnet

X = torch.randn(1, 1, 28, 28)


def _ops(gm):
    return [n for n in gm.graph.nodes if n.op in ("call_module", "call_function", "call_method")]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    m = tiny_lenet()
    torch.export.save(torch.export.export(m, (X,)), d / "lenet.pt2")
    torch.save(m.state_dict(), d / "lenet_state.pt")
    torch.save(m, d / "lenet_pickled.pt")
    torch.jit.save(torch.jit.trace(m, X), d / "lenet_script.pt")
    (d / "corrupt.pt2").write_bytes(b"PK\x03\x04 definitely not a zip")
    (d / "entry.py").write_text("from tests.models import tiny_lenet\n"
                                "def build():\n    return tiny_lenet()\n"
                                "def not_a_module():\n    return 3\n")
    return d


def test_exported_program_carries_example_inputs(files):
    loaded = load_model(files / "lenet.pt2")
    assert isinstance(loaded.model, torch.export.ExportedProgram)
    assert [tuple(t.shape) for t in loaded.example_inputs] == [(1, 1, 28, 28)]
    gm = capture(loaded.model, loaded.example_inputs)
    torch.testing.assert_close(gm(X), tiny_lenet()(X))


def test_entry_with_weights(files):
    loaded = load_model(entry=f"{files / 'entry.py'}:build", weights=files / "lenet_state.pt")
    assert isinstance(loaded.model, nn.Module) and loaded.example_inputs is None


def test_pickled_module_refused_without_trust(files):
    with pytest.raises(UnsafeModelError) as e:
        load_model(files / "lenet_pickled.pt")
    msg = str(e.value)
    assert "pickle" in msg and "run code" in msg and "--trust-pickle" in msg and "torch.export" in msg


def test_pickled_module_loads_with_trust(files):
    loaded = load_model(files / "lenet_pickled.pt", trust_pickle=True)
    torch.testing.assert_close(loaded.model(X), tiny_lenet()(X))


def test_torchscript_gets_export_advice(files):
    with pytest.raises(ModelLoadError, match="(?s)TorchScript.*torch.export"):
        load_model(files / "lenet_script.pt")


def test_state_dict_alone_asks_for_entry(files):
    with pytest.raises(ModelLoadError, match="(?s)state_dict.*--entry"):
        load_model(files / "lenet_state.pt")


@pytest.mark.parametrize("path, pattern", [("missing.pt2", "does not exist"), ("corrupt.pt2", "not a model file")])
def test_bad_paths(files, path, pattern):
    with pytest.raises(ModelLoadError, match=pattern):
        load_model(files / path)


def test_bad_entries(files):
    with pytest.raises(ModelLoadError, match="form"):
        load_model(entry="no_colon")
    with pytest.raises(ModelLoadError, match="no attribute 'nope'"):
        load_model(entry=f"{files / 'entry.py'}:nope")
    with pytest.raises(ModelLoadError, match="not an nn.Module"):
        load_model(entry=f"{files / 'entry.py'}:not_a_module")
    with pytest.raises(ModelLoadError, match="does not fit the model"):
        torch.save(TinyResNet().state_dict(), files / "wrong.pt")
        load_model(entry=f"{files / 'entry.py'}:build", weights=files / "wrong.pt")


def test_canonical_form_is_the_same_for_fx_and_export():
    m = tiny_resnet()
    x = torch.randn(2, 1, 16, 16)
    via_fx = capture(m, (x,))
    via_export = capture(torch.export.export(m, (x,)), (x,))

    def shape(gm):
        return [(n.op, type(gm.get_submodule(n.target)).__name__ if n.op == "call_module" else n.target)
                for n in _ops(gm)]

    assert shape(via_fx) == shape(via_export)
    assert all(n.op != "call_method" for n in _ops(via_fx))
    torch.testing.assert_close(via_export(x), m(x))


class ShapeBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        if x.shape[1] == 3:  # fx cannot trace a branch on a shape; export can
            x = x * 2
        return F.relu(self.conv(x))


class DataBranch(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x


def test_shape_dependent_branch_falls_back_to_export():
    x = torch.randn(1, 3, 8, 8)
    m = ShapeBranch().eval()
    gm = capture(m, (x,))
    torch.testing.assert_close(gm(x), m(x))
    assert any(n.op == "call_module" for n in gm.graph.nodes)  # conv lifted back to a module


def test_data_dependent_branch_is_a_clear_error():
    with pytest.raises(TraceError) as e:
        capture(DataBranch(), (torch.randn(4),))
    msg = str(e.value)
    assert "test_capture.py" in msg and "if x.sum() > 0" in msg and "torch.where" in msg


def test_functional_layers_become_modules():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 3, 3, 3))
            self.fw = nn.Parameter(torch.randn(5, 4))

        def forward(self, x):
            y = F.conv2d(x, self.w, padding=1).mean((2, 3))
            return F.linear(y, self.fw)

    m = Functional()
    x = torch.randn(2, 3, 6, 6)
    gm = capture(m, (x,))
    kinds = {type(gm.get_submodule(n.target)) for n in gm.graph.nodes if n.op == "call_module"}
    assert kinds == {nn.Conv2d, nn.Linear}
    torch.testing.assert_close(gm(x), m(x))

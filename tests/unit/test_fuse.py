"""fuse: exact on conv/bn/relu nets, including hypothesis-generated random CNNs."""

import torch
import torch.nn as nn
from hypothesis import given

from accelc.compiler.capture import capture
from accelc.compiler.context import CompileContext
from accelc.compiler.fused import ConvAct2d, LinearAct
from accelc.compiler.pass_manager import PassManager
from accelc.compiler.pipeline import Pipeline
from tests.models import tiny_depthwise, tiny_lenet, tiny_resnet
from tests.strategies import models


def _fuse(model, x):
    gm = capture(model, (x,))
    ctx = CompileContext((x,))
    return PassManager(Pipeline.parse("fuse")).run(gm, ctx), ctx


def _module_types(gm):
    return [type(gm.get_submodule(n.target)) for n in gm.graph.nodes if n.op == "call_module"]


def test_resnet_bn_folded_and_relu_attached():
    m = tiny_resnet()
    x = torch.randn(2, 1, 16, 16)
    gm, ctx = _fuse(m, x)
    types = _module_types(gm)
    assert nn.BatchNorm2d not in types
    assert types.count(ConvAct2d) == 3  # stem, and conv1 of each block; block outputs add before relu
    torch.testing.assert_close(gm(x), m(x), rtol=1e-4, atol=1e-5)


def test_lenet_linear_epilogue():
    m = tiny_lenet()
    x = torch.randn(1, 1, 28, 28)
    gm, _ = _fuse(m, x)
    assert LinearAct in _module_types(gm)
    torch.testing.assert_close(gm(x), m(x))


def test_depthwise_relu6():
    m = tiny_depthwise()
    x = torch.randn(1, 3, 16, 16)
    gm, _ = _fuse(m, x)
    acts = [gm.get_submodule(n.target).activation for n in gm.graph.nodes if n.op == "call_module"
            and isinstance(gm.get_submodule(n.target), ConvAct2d)]
    assert acts == ["relu6", "relu6", "relu6"]
    torch.testing.assert_close(gm(x), m(x), rtol=1e-4, atol=1e-5)


def test_shared_layer_is_not_rewritten():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn(self.conv(x)) + self.conv(x)

    m = Shared().eval()
    m.bn.running_var.fill_(4.0)
    x = torch.randn(1, 4, 8, 8)
    gm, _ = _fuse(m, x)
    torch.testing.assert_close(gm(x), m(x))
    assert nn.BatchNorm2d in _module_types(gm)


@given(models())
def test_fuse_is_exact_on_random_cnns(model_and_inputs):
    model, (x,) = model_and_inputs
    gm, ctx = _fuse(model, x)  # verify-each inside already enforces the declared tolerance
    torch.testing.assert_close(gm(x), model(x), rtol=1e-4, atol=1e-4)
    assert ctx.records[0].exact

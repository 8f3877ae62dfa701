"""Pass manager: verify-each records, tolerance enforcement, print-after."""

import copy

import pytest
import torch
import torch.nn as nn

from accelc.compiler.capture import capture
from accelc.compiler.context import CompileContext
from accelc.compiler.pass_manager import PassManager
from accelc.compiler.pipeline import Pipeline
from accelc.errors import UsageError, VerificationError
from accelc.passes.base import Pass, register_pass
from tests.models import tiny_resnet


@register_pass
class _BreakFirstConv(Pass):
    """Test-only pass that claims to be exact but perturbs the first conv's weights."""

    name = "test-break-conv"
    exact = True

    def run(self, gm, ctx):
        conv = next(m for m in gm.modules() if isinstance(m, nn.Conv2d))
        with torch.no_grad():
            conv.weight.add_(0.05)
        return gm


@register_pass
class _HonestLossy(Pass):
    """Test-only lossy pass: halves the last linear layer's bias."""

    name = "test-lossy"

    def run(self, gm, ctx):
        fc = [m for m in gm.modules() if isinstance(m, nn.Linear)][-1]
        with torch.no_grad():
            fc.bias.mul_(0.5)
        return gm


def _setup():
    x = torch.randn(2, 1, 16, 16)
    gm = capture(tiny_resnet(), (x,))
    return gm, CompileContext((x,))


def test_records_filled():
    gm, ctx = _setup()
    PassManager(Pipeline.parse("fuse,test-lossy")).run(gm, ctx)
    fuse, lossy = ctx.records
    assert fuse.name == "fuse" and fuse.exact and fuse.params_after < fuse.params_before  # BN params folded away
    assert fuse.max_abs_err < 1e-4 and fuse.top1_agreement == 1.0 and fuse.sqnr_db > 80
    assert fuse.details["bn_folded"] == 6 and fuse.seconds >= 0
    assert lossy.max_abs_err > 0 and lossy.sqnr_db is not None and lossy.flops_before == lossy.flops_after
    assert set(fuse.to_dict()) >= {"name", "options", "seconds", "flops_before", "flops_after", "params_before",
                                   "params_after", "max_abs_err", "sqnr_db", "top1_agreement"}


def test_verify_each_catches_a_wrong_exact_pass():
    gm, ctx = _setup()
    with pytest.raises(VerificationError, match="test-break-conv is exact but changed the outputs"):
        PassManager(Pipeline.parse("fuse,test-break-conv")).run(gm, ctx)


def test_verification_can_be_disabled():
    gm, ctx = _setup()
    PassManager(Pipeline.parse("test-break-conv"), verify_each=False).run(gm, ctx)
    assert ctx.records[0].max_abs_err is None


def test_reference_is_kept_for_later_passes():
    gm, ctx = _setup()
    before = copy.deepcopy(gm)
    PassManager(Pipeline.parse("test-lossy")).run(gm, ctx)
    x = ctx.example_inputs[0]
    torch.testing.assert_close(ctx.reference(x), before(x))


def test_print_after(capsys):
    gm, ctx = _setup()
    out = []
    PassManager(Pipeline.parse("fuse"), print_after=["fuse"], print_format="table", printer=out.append).run(gm, ctx)
    assert len(out) == 1 and "graph after fuse" in out[0] and "ConvAct2d" in out[0]
    with pytest.raises(UsageError, match="not a pass of this pipeline"):
        PassManager(Pipeline.parse("fuse"), print_after=["quantize"])

"""Winograd F(2×2, 3×3) for stride-1 3×3 convs on CPU (targets/tvm_backend/winograd.py):
the transforms, which convs take it, the schedule, and real builds against PyTorch."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import accelc
from accelc.targets.tvm_backend import winograd
from tests.helpers import compile_and_compare


class Block(nn.Module):
    """3×3 conv (any padding) + bias + ReLU, then a second 3×3 conv with a residual add."""

    def __init__(self, cin: int, cout: int, padding: int):
        super().__init__()
        self.a = nn.Conv2d(cin, cout, 3, 1, padding)
        self.b = nn.Conv2d(cout, cout, 3, 1, 1)

    def forward(self, x):
        y = torch.relu(self.a(x))
        return torch.relu(self.b(y) + y)


def _rewritten(model, x, lanes: int = 16, accumulators: int = winograd.NHWC_ACCUMULATORS):
    """The Relax module of ``model`` after the CPU layout steps and the Winograd rewrite."""
    from accelc.targets.tvm_backend.importer import to_relax
    from accelc.targets.tvm_backend.layout import to_nhwc

    mod, _ = to_relax(torch.fx.symbolic_trace(model), (x,))
    return winograd.to_winograd(to_nhwc(mod), lanes, accumulators)


def _winograd_funcs(mod) -> list[str]:
    return sorted(gv.name_hint for gv in mod.get_global_vars() if gv.name_hint.startswith(winograd.FUNC))


def test_transforms_compute_a_correlation_exactly():
    """Aᵀ[(G g) ⊙ (Bᵀ d)] is the 3-tap correlation of d with g, in exact arithmetic (1-D; the
    2-D transform is this one applied along rows and columns)."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        d = [Fraction(int(v)) for v in rng.integers(-9, 10, winograd.ALPHA)]
        g = [Fraction(int(v)) for v in rng.integers(-9, 10, 3)]
        gg = [sum(Fraction(c) * v for c, v in zip(row, g)) for row in winograd.G]
        bd = [sum(Fraction(c) * v for c, v in zip(row, d)) for row in winograd.BT]
        y = [sum(Fraction(c) * a * b for c, a, b in zip(row, gg, bd)) for row in winograd.AT]
        assert y == [sum(d[i + j] * g[j] for j in range(3)) for i in range(winograd.M)]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.integers(1, 2), size=st.integers(6, 15), cin=st.sampled_from([3, 16, 40, 80]),
       cout=st.sampled_from([16, 32, 48]), padding=st.integers(0, 2), seed=st.integers(0, 1000))
def test_builds_match_pytorch(batch, size, cin, cout, padding, seed, tmp_path_factory):
    """Whatever the batch, odd or even size (the last tile row/column cut short), input
    channels (one chunk, several, a chunk that is not 64) and padding (0: smaller output, 2:
    larger), the Winograd build with its fused bias, ReLU and residual computes what PyTorch
    does."""
    torch.manual_seed(seed)
    model = Block(cin, cout, padding).eval()
    x = torch.randn(batch, cin, size, size)
    tiles = batch * ((size + 2 * padding - 2 + 1) // 2) ** 2
    assert _winograd_funcs(_rewritten(model, x)) or tiles < winograd.MIN_TILES
    compile_and_compare(model, x, tmp_path_factory.mktemp("w"))


def test_error_is_that_of_a_direct_conv():
    """Measured error bound: against a float64 conv, the Winograd build's largest error is at
    most twice the direct build's (fp32 summation in another order; F(2×2, 3×3)'s constants are
    0, ±1, ±½)."""
    torch.manual_seed(0)
    model = nn.Conv2d(128, 128, 3, 1, 1).eval()
    x = torch.randn(1, 128, 28, 28)
    with torch.no_grad():
        ref = model.double()(x.double()).numpy()
    model.float()
    errors = {}
    for name, min_tiles in (("winograd", winograd.MIN_TILES), ("direct", 10**9)):
        old, winograd.MIN_TILES = winograd.MIN_TILES, min_tiles
        try:
            compiled = accelc.compile(model, (x,), pipeline="fuse", verify_each=False, quiet=True)
        finally:
            winograd.MIN_TILES = old
        errors[name] = float(np.abs(compiled.runner.run([x.numpy()])[0] - ref).max())
    assert errors["winograd"] <= 2 * errors["direct"], errors


@pytest.mark.parametrize("conv,size,batch,taken", [
    (nn.Conv2d(16, 32, 3, 1, 1), 16, 1, True),
    (nn.Conv2d(16, 32, 3, 2, 1), 16, 1, False),  # stride 2
    (nn.Conv2d(16, 32, 1), 16, 1, False),  # 1×1
    (nn.Conv2d(16, 32, 3, 1, 2, dilation=2), 16, 1, False),  # dilated
    (nn.Conv2d(32, 32, 3, 1, 1, groups=2), 16, 1, False),  # grouped
    (nn.Conv2d(16, 24, 3, 1, 1), 16, 1, False),  # 24 output channels: no whole vectors of 16
    (nn.Conv2d(16, 32, 3, 1, 1), 7, 1, False),  # 16 tiles: the weights, 16/9 larger, barely reused
    (nn.Conv2d(16, 32, 3, 1, 1), 7, 2, True),  # the same layer at batch 2: 32 tiles
])
def test_which_convs_take_it(conv, size, batch, taken):
    x = torch.randn(batch, conv.in_channels, size, size)
    assert bool(_winograd_funcs(_rewritten(nn.Sequential(conv).eval(), x))) == taken


@pytest.mark.parametrize("mcpu", ["skylake-avx512", "znver4"])
def test_schedule_is_parallel_vectorised_and_prefetches(mcpu):
    """The scheduled function runs one parallel loop of tasks, vectorised, the products
    register-tiled; the chunk loop prefetches the next chunk of transformed weights; and no
    transform coefficient is left as a runtime select (the unrolled loops fold them). On an
    Intel and an AMD CPU, whose register tiles differ (the weights are laid out for the tile)."""
    import tvm
    from tvm import tirx

    from accelc.targets.tvm_backend.defaults import apply_default_schedules
    from accelc.targets.tvm_backend.pipeline import legalize_and_fuse
    from accelc.targets.tvm_backend.prefetch import insert_weight_prefetch

    from accelc.targets.tvm_backend.cpu_conv import nhwc_accumulators

    model = Block(64, 64, 1).eval()
    x = torch.randn(1, 64, 28, 28)
    target = tvm.target.Target({"kind": "llvm", "mcpu": mcpu, "num-cores": 2})
    rewritten = _rewritten(model, x, accumulators=nhwc_accumulators(target))
    scheduled = insert_weight_prefetch(apply_default_schedules(legalize_and_fuse(rewritten, target), target))
    funcs = {gv.name_hint: f for gv, f in scheduled.functions.items()
             if isinstance(f, tirx.PrimFunc) and winograd.FUNC in gv.name_hint}
    assert len(funcs) == 2, list(funcs)  # both convs, each with its epilogue fused in
    for name, func in funcs.items():
        assert func.attrs.get("tirx.is_scheduled"), name
        script = func.script()
        assert script.count("T.parallel") == 1 and "T.vectorized(T.int64(16))" in script, name
        assert "llvm.prefetch" in script and "relu" in name, name
    with target, tvm.transform.PassContext(opt_level=3):
        func = next(iter(funcs.values())).with_attr("global_symbol", "main")
        ex = tvm.compile(tvm.ir.IRModule({"main": func}), target=target)
    asm = ex.mod.inspect_source("asm")
    assert "vfmadd" in asm and "vblendm" not in asm and "vcmpps" not in asm


def test_tuned_build_keeps_winograd(tmp_path):
    """With --tune the Winograd functions keep their schedule (they are not tuning tasks) and
    the tuned build still computes what PyTorch does."""
    torch.manual_seed(0)
    model = Block(16, 32, 1).eval()
    x = torch.randn(1, 16, 14, 14)
    compiled = compile_and_compare(model, x, tmp_path, tune=4, tuning_db=str(tmp_path / "db"), tune_budget=60)
    tasks = [t["name"] for t in compiled.report["tuning"]["tasks"]]
    assert not any(winograd.FUNC in t for t in tasks), tasks

"""MobileNet blocks as one kernel (targets/tvm_backend/separable.py): which chains are grouped
(depthwise → 1×1 pairs, and whole blocks when bands of rows are tall enough), the band-per-task
schedule, and outputs against PyTorch (real TVM builds)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelc.targets.tvm_backend import layout, separable
from accelc.targets.tvm_backend.importer import to_relax
from tests.helpers import compile_and_compare


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1×1 expand + ReLU6 (none when ``expand`` is 1), depthwise 3×3 +
    ReLU6, 1×1 project, a residual add when the shape allows; ``tap`` also returns the
    depthwise output (used twice)."""

    def __init__(self, cin: int, expand: int, cout: int, stride: int, tap: bool = False, window: int = 3):
        super().__init__()
        hidden = cin * expand
        self.expand = nn.Conv2d(cin, hidden, 1) if expand > 1 else None
        self.dw = nn.Conv2d(hidden, hidden, window, stride, window // 2, groups=hidden)
        self.project = nn.Conv2d(hidden, cout, 1)
        self.residual = stride == 1 and cin == cout
        self.tap = tap

    def forward(self, x):
        h = F.relu6(self.dw(F.relu6(self.expand(x)) if self.expand is not None else x))
        y = self.project(h)
        y = x + y if self.residual else y
        return (y, h.mean()) if self.tap else y


def _fused_functions(model, x):
    """Names of the block sets of the fused PrimFuncs accelc's CPU pipeline makes of ``model``."""
    import tvm
    from tvm import tirx

    from accelc.targets.tvm_backend.cpu_conv import _block_names
    from accelc.targets.tvm_backend.pipeline import legalize_and_fuse

    mod, _ = to_relax(torch.fx.symbolic_trace(model), (x,))
    target = tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512", "num-cores": 2})
    fused = legalize_and_fuse(separable.group_separable(layout.to_nhwc(mod)), target)
    return {gv.name_hint: f for gv, f in fused.functions.items() if isinstance(f, tirx.PrimFunc)}, _block_names


def _dense_convs(func) -> int:
    from accelc.targets.tvm_backend.cpu_conv import _block_names

    return sum(name.startswith("conv2d_nhwc") for name in _block_names(func))


@pytest.mark.parametrize("stride,cout", [(1, 16), (2, 24)])
def test_pairs_are_grouped_and_compute_what_pytorch_does(stride, cout, tmp_path):
    torch.manual_seed(0)
    model = InvertedResidual(16, 6, cout, stride).eval()
    x = torch.randn(1, 16, 28, 28)
    funcs, names = _fused_functions(model, x)
    pairs = [n for n, f in funcs.items() if separable.is_separable(f)]
    assert len(pairs) == 1 and _dense_convs(funcs[pairs[0]]) == 1, sorted(funcs)  # 2 rows a task: no expand
    assert not any("group_conv2d_nhwc" in names(f) for n, f in funcs.items() if n not in pairs)
    compile_and_compare(model, x, tmp_path)


def test_a_depthwise_output_used_elsewhere_is_not_grouped(tmp_path):
    torch.manual_seed(0)
    model = InvertedResidual(16, 6, 16, 1, tap=True).eval()
    x = torch.randn(1, 16, 14, 14)
    funcs, _ = _fused_functions(model, x)
    assert not any(separable.is_separable(f) for f in funcs.values())
    compile_and_compare(model, x, tmp_path)


def test_too_few_rows_for_the_cores_are_not_grouped():
    torch.manual_seed(0)
    model = InvertedResidual(32, 6, 32, 1).eval()
    funcs, _ = _fused_functions(model, torch.randn(1, 32, 7, 7))
    assert not any(separable.is_separable(f) for f in funcs.values())
    funcs, _ = _fused_functions(model, torch.randn(2, 32, 7, 7))
    assert any(separable.is_separable(f) for f in funcs.values())


@pytest.mark.parametrize("stride", [1, 2])
def test_tall_bands_group_the_expand_conv_too(stride, tmp_path):
    """At batch 8 a task takes 14 output rows, so recomputing the expand rows at the band's
    edges costs at most 2/14 of them: the whole block is one function."""
    torch.manual_seed(0)
    model = InvertedResidual(16, 6, 16, stride).eval()
    x = torch.randn(8, 16, 28 * stride, 28 * stride)
    funcs, _ = _fused_functions(model, x)
    blocks = [f for f in funcs.values() if separable.is_separable(f)]
    assert len(blocks) == 1 and _dense_convs(blocks[0]) == 2, sorted(funcs)
    compile_and_compare(model, x, tmp_path)


def _scheduled(model, x):
    from accelc.targets.tvm_backend import cpu_conv

    funcs, _ = _fused_functions(model, x)
    func = next(f for f in funcs.values() if separable.is_separable(f))
    sch = cpu_conv._try(func, lambda s: separable.separable_sketch(s, 16))
    assert sch is not None
    return sch.mod["main"].script().splitlines()


def test_each_task_computes_one_depthwise_row():
    """A pair: one parallel loop over (image, row); the depthwise block runs inside it, so the
    wide intermediate is a row, not the tensor."""
    torch.manual_seed(0)
    lines = _scheduled(InvertedResidual(96, 1, 24, 1).eval(), torch.randn(2, 96, 28, 28))
    parallel = [i for i, line in enumerate(lines) if "T.parallel" in line]
    assert len(parallel) == 1 and "T.parallel(T.int64(56))" in lines[parallel[0]], lines[parallel[0]]
    dw = next(i for i, line in enumerate(lines) if 'T.sblock("group_conv2d_nhwc_update")' in line)
    assert dw > parallel[0]


def test_a_whole_block_runs_a_band_per_task():
    """Batch 2, 28 rows: bands of 7 rows (8 tasks), the expand conv's rows computed in each."""
    torch.manual_seed(0)
    lines = _scheduled(InvertedResidual(16, 6, 16, 1).eval(), torch.randn(2, 16, 28, 28))
    parallel = [i for i, line in enumerate(lines) if "T.parallel" in line]
    assert len(parallel) == 1 and "T.parallel(T.int64(8))" in lines[parallel[0]], lines[parallel[0]]
    updates = [i for i, line in enumerate(lines) if "update" in line and "T.sblock(" in line]
    assert len(updates) == 3 and min(updates) > parallel[0], updates


@pytest.mark.parametrize("window,whole", [(3, True), (5, False)])
def test_the_halo_follows_the_window(window, whole, tmp_path):
    """Batch 2, 28 rows: bands of 7. A 3×3 window recomputes 2 expanded rows of 7 (29%, the
    block is grouped whole); a 5×5 window 4 of 7 (57%: only the pair is)."""
    torch.manual_seed(0)
    model = InvertedResidual(16, 6, 16, 1, window=window).eval()
    x = torch.randn(2, 16, 28, 28)
    funcs, _ = _fused_functions(model, x)
    groups = [f for f in funcs.values() if separable.is_separable(f)]
    assert len(groups) == 1 and _dense_convs(groups[0]) == (2 if whole else 1)
    compile_and_compare(model, x, tmp_path)


def test_rows_per_task():
    assert separable.rows_per_task(1, 56) == 7 and separable.rows_per_task(8, 56) == 14
    assert separable.rows_per_task(1, 28) == 2 and separable.rows_per_task(1, 7) == 1


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cin=st.sampled_from([8, 16, 24]), expand=st.sampled_from([1, 2, 6]), cout=st.sampled_from([8, 16, 24, 32]),
       stride=st.sampled_from([1, 2]), size=st.integers(8, 20), batch=st.sampled_from([1, 2, 8]))
def test_grouped_blocks_preserve_semantics(cin, expand, cout, stride, size, batch, tmp_path_factory):
    torch.manual_seed(0)
    model = InvertedResidual(cin, expand, cout, stride).eval()
    compile_and_compare(model, torch.randn(batch, cin, size, size), tmp_path_factory.mktemp("sep"))

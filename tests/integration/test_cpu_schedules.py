"""Default CPU schedules (targets/tvm_backend/cpu_conv.py) and the NHWC layout step
(targets/tvm_backend/layout.py): real TVM builds, outputs against PyTorch."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelc.targets.tvm_backend import cpu_conv, layout
from tests.helpers import compile_and_compare


class ConvChain(nn.Module):
    """conv layers (dense or depthwise, 1×1/3×3, stride 1/2), each followed by relu / relu6 /
    nothing, optionally with a residual add; global pool + linear head."""

    def __init__(self, cin: int, layers: list[tuple], classes: int = 7):
        super().__init__()
        self.convs = nn.ModuleList()
        self.plan = []
        c = cin
        for cout, k, stride, depthwise, act, residual in layers:
            if depthwise:
                cout = c
            self.convs.append(nn.Conv2d(c, cout, k, stride, k // 2, groups=c if depthwise else 1))
            self.plan.append((act, residual and cout == c and stride == 1))
            c = cout
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        for conv, (act, residual) in zip(self.convs, self.plan):
            y = conv(x)
            y = torch.relu(y) if act == "relu" else F.relu6(y) if act == "relu6" else y
            x = x + y if residual else y
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


layer = st.tuples(st.sampled_from([8, 13, 16, 24, 32, 48, 60]), st.sampled_from([1, 3]), st.sampled_from([1, 2]),
                  st.booleans(), st.sampled_from(["relu", "relu6", "none"]), st.booleans())


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cin=st.sampled_from([3, 8, 16]), size=st.integers(5, 17), layers=st.lists(layer, min_size=1, max_size=4),
       seed=st.integers(0, 1000))
def test_random_conv_chains_match_pytorch(cin, size, layers, seed, tmp_path_factory):
    """Whatever the channel counts, strides, kernels and widths (odd, prime), the default
    schedules (NHWC when every conv's channels divide into vectors, NCHW otherwise; 13 and 60
    channels and the 7-wide head zero-padded to 16 lanes, padding.py) compute what PyTorch does."""
    torch.manual_seed(seed)
    model = ConvChain(cin, layers).eval()
    x = torch.randn(1, cin, size, size)
    compile_and_compare(model, x, tmp_path_factory.mktemp("chain"))


def test_every_conv_is_scheduled_and_weights_packed():
    """ResNet-style fp32 graph: no PrimFunc is left to TVM's naive loops, conv weights are
    stored pre-packed ([O/16, KH, KW, C, 16]) and the graph runs in NHWC."""
    import tvm
    from tvm import tirx

    from accelc.targets.tvm_backend.importer import to_relax
    from accelc.targets.tvm_backend.params import fold_param_transforms
    from accelc.targets.tvm_backend.pipeline import apply_default_schedules, legalize_and_fuse

    model = ConvChain(16, [(32, 3, 1, False, "relu", False), (32, 3, 1, True, "relu6", True),
                           (64, 1, 2, False, "none", False)]).eval()
    x = torch.randn(2, 16, 12, 12)
    mod, params = to_relax(torch.fx.symbolic_trace(model), (x,))
    target = tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512", "num-cores": 2})
    assert layout.wants_nhwc(mod)
    mod, params = fold_param_transforms(layout.to_nhwc(mod), params)
    mod = apply_default_schedules(legalize_and_fuse(mod, target), target)
    funcs = {gv.name_hint: f for gv, f in mod.functions.items() if isinstance(f, tirx.PrimFunc)}
    assert all(f.attrs.get("tirx.is_scheduled") for f in funcs.values()), \
        [n for n, f in funcs.items() if not f.attrs.get("tirx.is_scheduled")]
    scripts = {n: f.script() for n, f in funcs.items()}
    assert sum("conv2d_nhwc" in s for s in scripts.values()) >= 2
    assert all("layout_rewrite_preproc" in s for s in scripts.values() if "conv2d_nhwc\"" in s)
    assert any("T.vectorized(T.int64(16))" in s for s in scripts.values())


def test_wide_convs_reduce_in_channel_chunks(tmp_path, monkeypatch):
    """3×3 convs over more than 16 input channels (48: three chunks, 64: four) reduce chunk by
    chunk with the accumulators in memory between chunks: the artifact equals PyTorch, and
    their weights are stored [O/(ro·16), C/16, KH, KW, 16, ro·16] (a tile's chunk contiguous);
    a 1×1 conv keeps the whole reduction per tile ([O/16, 1, 1, C, 16]). (Winograd off: these
    stride-1 convs would otherwise take it. An Intel CPU's tiles, ro = 4, whatever the host.)"""
    import json

    from accelc.targets.tvm_backend import winograd
    from accelc.targets.tvm_backend.build import load_params

    monkeypatch.setattr(winograd, "MIN_TILES", 10**9)
    torch.manual_seed(0)
    model = ConvChain(48, [(64, 3, 1, False, "relu", False), (64, 3, 1, False, "none", True),
                           (32, 1, 1, False, "relu", False)]).eval()
    compile_and_compare(model, torch.randn(2, 48, 14, 14), tmp_path, target_options={"mcpu": "skylake-avx512"})
    art = tmp_path / "art"
    shapes = {p.shape for p in load_params(art, json.loads((art / "manifest.json").read_text()))}
    assert {(1, 3, 3, 3, 16, 64), (1, 4, 3, 3, 16, 64), (2, 1, 1, 64, 16)} <= shapes, shapes


@pytest.mark.parametrize("batch", [1, 8])
def test_linear_layers_pack_weights_into_panels(batch, tmp_path):
    """Linear layers whose widths fill 16-lane vectors (64), 8-lane vectors (24) or neither (10,
    500): the artifact equals PyTorch and every matmul's weights are stored packed
    ``[N/width, K, width]``, the widths that fill no vector padded to 16 lanes with zero
    columns (10 → 16, 500 → 512: 4 panels of 8 vectors)."""
    import json

    from accelc.targets.tvm_backend.build import load_params

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 64), nn.ReLU(), nn.Linear(64, 24), nn.Linear(24, 10), nn.ReLU(),
                          nn.Linear(10, 500)).eval()
    compiled = compile_and_compare(model, torch.randn(batch, 40), tmp_path)
    art = tmp_path / "art"
    params = load_params(art, json.loads((art / "manifest.json").read_text()))
    packed = {p.shape for p in params if p.ndim == 3}
    assert packed == {(1, 40, 64), (1, 64, 24), (1, 24, 16), (4, 10, 128)}, packed
    pad = next(p for p in params if p.shape == (1, 24, 16))
    assert not pad[..., 10:].any()  # the padding columns are zero
    assert compiled.report["artifact_check"]["vs_final_graph"]["max_abs_err"] < 1e-4


@pytest.mark.parametrize("batch", [1, 3])
def test_odd_conv_widths_pad_within_the_limit(batch, tmp_path):
    """NCHW convs whose output channels fill no vector are padded with zero filters to a
    multiple of 16 when that adds at most 30% of the work (20→50 becomes 64 filters and gets the
    channel-vector schedule, which packs them [4, 20, 5, 5, 16]); 1→20 (→ 32: 1.6×) is not. The
    artifact equals PyTorch, and only real channels are stored."""
    import json

    from accelc.targets.tvm_backend import padding
    from accelc.targets.tvm_backend.build import load_params

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.ReLU(),
                          nn.Flatten(), nn.Linear(50 * 8 * 8, 16)).eval()
    compile_and_compare(model, torch.randn(batch, 1, 28, 28), tmp_path)
    art = tmp_path / "art"
    shapes = {p.shape for p in load_params(art, json.loads((art / "manifest.json").read_text()))}
    assert (4, 20, 5, 5, 16) in shapes and (20, 1, 5, 5) in shapes, shapes
    assert 64 / 50 <= padding.CONV_PAD_LIMIT < 32 / 20


def test_nhwc_only_when_channels_fill_vectors():
    from accelc.targets.tvm_backend.importer import to_relax

    x = torch.randn(1, 3, 8, 8)
    ok = ConvChain(3, [(16, 3, 1, False, "relu", False), (8, 1, 1, False, "none", False)]).eval()
    odd = ConvChain(3, [(16, 3, 1, False, "relu", False), (12, 1, 1, False, "none", False)]).eval()
    assert layout.wants_nhwc(to_relax(torch.fx.symbolic_trace(ok), (x,))[0])
    assert not layout.wants_nhwc(to_relax(torch.fx.symbolic_trace(odd), (x,))[0])


def test_clip_rewrite_is_exact():
    """ReLU6 as minimum(maximum(x, 0), 6) gives bit-identical results (values at and beyond
    both bounds included)."""
    import tvm
    from tvm import relax

    from accelc.targets.tvm_backend.importer import to_relax

    class M(nn.Module):
        def forward(self, x):
            return F.relu6(x) * 2 + F.hardtanh(x, -1.5, 0.25)

    x = torch.tensor([[-7.0, -1.5, -0.0, 0.0, 0.25, 3.0, 6.0, 6.5, float("inf"), float("-inf")]])
    mod, _ = to_relax(torch.fx.symbolic_trace(M()), (x,))
    rewritten = layout.clip_as_min_max(mod)
    assert "clip" in mod["main"].script() and "clip" not in rewritten["main"].script()
    outs = []
    for m in (mod, rewritten):
        vm = relax.VirtualMachine(tvm.compile(m, target=tvm.target.Target({"kind": "llvm"})), tvm.cpu())
        outs.append(vm["main"](tvm.runtime.tensor(x.numpy()))[0].numpy())
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[1], M()(x).numpy())


@pytest.mark.parametrize("width,vectors", [(56, 4), (28, 8), (14, 16), (7, 32), (112, 2), (13, 3), (1, 1)])
def test_conv_tile_fits_registers(width, vectors):
    rw, ro = cpu_conv.conv_tile(width, vectors)
    assert width % rw == 0 and vectors % ro == 0
    assert rw * ro <= cpu_conv.MAX_ACCUMULATORS
    assert rw * ro >= min(8, width * vectors)  # enough independent FMAs to hide latency


def test_tuned_conv_uses_the_sketch(tmp_path):
    """With --tune, MetaSchedule searches the conv sketch's tiles (the rule is registered and
    the tuned library equals PyTorch)."""
    torch.manual_seed(0)
    model = ConvChain(16, [(32, 3, 2, False, "relu", False)]).eval()
    x = torch.randn(1, 16, 14, 14)
    compiled = compile_and_compare(model, x, tmp_path, tune=4, tuning_db=str(tmp_path / "db"), tune_budget=120)
    assert compiled.report["tuning"]["tasks_tuned"] >= 1
    lines = (tmp_path / "db" / "database_workload.json").read_text().splitlines()
    workloads = [base64.b64decode(json.loads(line)[1]) for line in lines]
    assert any(cpu_conv.RULE.encode() in w for w in workloads)


class _Elementwise(nn.Module):
    def forward(self, x, y):
        return torch.clamp(x * 3.0 + y * 0.5, -1.0, 6.0) - torch.sigmoid(y)


def test_elementwise_chains_make_one_pass():
    """A fused chain of elementwise operators is one loop nest (parallel, vectorised) after
    the default schedule: no intermediate buffer per operator. (Quantized residual adds were
    12 operators on int64 intermediates, 10× slower than one pass.) And it still computes
    the same."""
    import tvm
    from tvm import tirx

    from accelc.targets.tvm_backend.importer import to_relax
    from accelc.targets.tvm_backend.pipeline import apply_default_schedules, legalize_and_fuse

    x, y = torch.randn(2, 8, 6, 32), torch.randn(2, 8, 6, 32)
    mod, _ = to_relax(torch.fx.symbolic_trace(_Elementwise()), (x, y))
    target = tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512", "num-cores": 2})
    mod = apply_default_schedules(legalize_and_fuse(mod, target), target)
    funcs = [f for f in mod.functions.values() if isinstance(f, tirx.PrimFunc)]
    assert len(funcs) == 1
    script = funcs[0].script()
    blocks = script.count("with T.sblock(") - script.count("# with T.sblock(")  # the root is a comment
    assert blocks == 1 and "sblock_alloc_buffer" not in script, script
    assert "T.parallel" in script and "T.vectorized" in script
    from tvm import relax

    lib = tvm.compile(mod, target=target)
    vm = relax.VirtualMachine(lib, tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x.numpy()), tvm.runtime.tensor(y.numpy()))
    out = out.numpy() if hasattr(out, "numpy") else out[0].numpy()
    np.testing.assert_allclose(out, _Elementwise()(x, y).numpy(), rtol=1e-5, atol=1e-6)


class _TransposeFlatten(nn.Module):
    def forward(self, x):
        return torch.flatten(x.permute(0, 3, 1, 2), 1) * 2


@pytest.mark.parametrize("channels", [50, 67])
def test_long_rows_vectorise_in_pieces(channels):
    """A long injective row (NHWC → NCHW then flatten: 800 or 1072 elements) is vectorised in
    pieces of at most 64 lanes that divide it (a 1072 row: 67 × 16), not as one 800-lane gather,
    which LLVM took 148 s to compile; it still computes the same."""
    import re

    import tvm
    from tvm import relax, tirx

    from accelc.targets.tvm_backend.importer import to_relax
    from accelc.targets.tvm_backend.pipeline import apply_default_schedules, legalize_and_fuse

    x = torch.randn(1, 4, 4, channels)
    mod, _ = to_relax(torch.fx.symbolic_trace(_TransposeFlatten()), (x,))
    target = tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512", "num-cores": 2})
    mod = apply_default_schedules(legalize_and_fuse(mod, target), target)
    script = "".join(f.script() for f in mod.functions.values() if isinstance(f, tirx.PrimFunc))
    lanes = [int(n) for n in re.findall(r"T\.vectorized\(T\.int64\((\d+)\)\)", script)]
    assert lanes and max(lanes) <= cpu_conv.MAX_VECTOR and (channels * 16) % max(lanes) == 0, script
    vm = relax.VirtualMachine(tvm.compile(mod, target=target), tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x.numpy()))
    out = out.numpy() if hasattr(out, "numpy") else out[0].numpy()
    np.testing.assert_array_equal(out, _TransposeFlatten()(x).numpy())


def test_odd_channel_convs_tile_rows_and_channels():
    """A conv whose channels do not fill vectors (LeNet's 20→50, 5×5, as it would run unpadded:
    see the next test) runs NCHW with a register tile of 10 output channels × 2 rows of 8-wide
    vectors: 20 independent accumulators (8 left its FMA chains latency-bound: 49 against 30 µs)."""
    import tvm

    from accelc.targets.tvm_backend.importer import to_relax
    from accelc.targets.tvm_backend.pipeline import legalize_and_fuse

    model = nn.Sequential(nn.Conv2d(20, 50, 5), nn.ReLU()).eval()
    mod, _ = to_relax(torch.fx.symbolic_trace(model), (torch.randn(1, 20, 12, 12),))
    target = tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512", "num-cores": 2})
    assert not layout.wants_nhwc(mod)
    fused = legalize_and_fuse(mod, target)
    conv = next(f for gv, f in fused.functions.items() if "conv2d" in gv.name_hint)
    script = cpu_conv.schedule_func(conv, 16).mod["main"].script()
    assert "T.unroll(T.int64(2))" in script and "T.unroll(T.int64(10))" in script
    assert "T.vectorized(T.int64(8))" in script


@pytest.mark.parametrize("channels,size", [(64, 16), (16, 9)])
def test_pools_run_in_parallel(channels, size, tmp_path):
    """NHWC pools — a 3×3/2 max pool with padding (ResNet's stem) and a global average pool —
    get the window schedule: outer loops parallel, channels vectorised under the window (dlight's
    CPU reduction rule, which took them before, ran ResNet-18's max pool on one core: 144 µs
    against 74). And they still compute what PyTorch does (padding is -inf, not 0)."""
    import tvm
    from tvm import tirx

    from accelc.targets.tvm_backend.defaults import default_schedule
    from accelc.targets.tvm_backend.importer import to_relax
    from accelc.targets.tvm_backend.pipeline import legalize_and_fuse

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, channels, 3, padding=1), nn.MaxPool2d(3, 2, 1),
                          nn.Conv2d(channels, channels, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    x = torch.randn(2, 16, size, size) - 2.0  # mostly negative: a zero padding would show
    compile_and_compare(model, x, tmp_path)
    mod, _ = to_relax(torch.fx.symbolic_trace(model), (x,))
    target = tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512", "num-cores": 2})
    assert layout.wants_nhwc(mod)
    fused = legalize_and_fuse(layout.to_nhwc(mod), target)
    pools = {gv.name_hint: f for gv, f in fused.functions.items()
             if isinstance(f, tirx.PrimFunc) and ("pool" in gv.name_hint or "mean" in gv.name_hint)}
    assert len(pools) == 2, list(pools)
    with target:
        for name, func in pools.items():
            script = default_schedule(func, target).mod["main"].script()
            assert "T.parallel" in script and "T.vectorized" in script, name


@pytest.mark.parametrize("stride", [1, 2])
def test_strided_chunked_convs_pad_per_block(stride, tmp_path, monkeypatch):
    """A chunked 3×3 conv with stride 2 builds its padded input inside each parallel block (just
    the rows the block reads); with stride 1 the padded input is one parallel pass before the
    conv. Both compute what PyTorch does, at odd sizes too (15×15: the last block's rows)."""
    import tvm
    from tvm import tirx

    from accelc.targets.tvm_backend.importer import to_relax
    from accelc.targets.tvm_backend.pipeline import legalize_and_fuse

    from accelc.targets.tvm_backend import winograd

    monkeypatch.setattr(winograd, "MIN_TILES", 10**9)  # the stride-1 conv would take Winograd
    torch.manual_seed(0)
    model = ConvChain(32, [(64, 3, stride, False, "relu", False)]).eval()
    x = torch.randn(1, 32, 15, 15)
    compile_and_compare(model, x, tmp_path)
    mod, _ = to_relax(torch.fx.symbolic_trace(model), (x,))
    target = tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512", "num-cores": 2})
    fused = legalize_and_fuse(layout.to_nhwc(mod), target)
    conv = next(f for gv, f in fused.functions.items() if isinstance(f, tirx.PrimFunc) and "conv2d" in gv.name_hint)
    script = cpu_conv.schedule_func(conv, 16).mod["main"].script()
    lines = script.splitlines()
    pad = next(i for i, line in enumerate(lines) if 'T.sblock("pad_temp")' in line)
    parallel = [i for i, line in enumerate(lines) if "T.parallel" in line]
    conv_loop = next(i for i, line in enumerate(lines) if "prefetch_next_chunk" in line)
    indent = lambda i: len(lines[i]) - len(lines[i].lstrip())  # noqa: E731
    block_loop = max(i for i in parallel if i < conv_loop)
    inside = block_loop < pad < conv_loop and indent(pad) > indent(block_loop)
    assert inside == (stride == 2), script


@pytest.mark.parametrize("cin,cout", [(16, 96), (256, 256)])
def test_unchunked_convs_split_rows_between_cores(cin, cout, tmp_path):
    """1×1 convs, with small weights (16→96: 6 KB) or large (256→256: 256 KB), split rows
    between the cores before blocks of output channels, so at batch 1 each core reads the rows
    it wrote in the layer before, not half the channels of every row. Both compute what PyTorch
    does."""
    import tvm
    from tvm import tirx

    from accelc.targets.tvm_backend.importer import to_relax
    from accelc.targets.tvm_backend.pipeline import legalize_and_fuse

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(cin, cout, 1), nn.ReLU()).eval()
    x = torch.randn(1, cin, 28, 28)
    compile_and_compare(model, x, tmp_path)
    mod, _ = to_relax(torch.fx.symbolic_trace(model), (x,))
    target = tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512", "num-cores": 2})
    fused = legalize_and_fuse(layout.to_nhwc(mod), target)
    conv = next(f for gv, f in fused.functions.items() if isinstance(f, tirx.PrimFunc) and "conv2d" in gv.name_hint)
    parallel = [line for line in cpu_conv.schedule_func(conv, 16).mod["main"].script().splitlines() if "T.parallel" in line]
    assert len(parallel) == 1
    assert "yy_ff" in parallel[0] and "ff_0_0_yy" not in parallel[0], parallel


@pytest.mark.parametrize("mcpu, limit", [("skylake-avx512", cpu_conv.NHWC_ACCUMULATORS),
                                         ("znver4", cpu_conv.ZEN_ACCUMULATORS)])
def test_register_tiles_fit_the_registers_of_each_cpu(mcpu, limit):
    """An NHWC 1×1 conv's register tile stays within the target CPU's accumulator limit, and
    the built loop keeps its accumulators in registers: under LLVM's Zen 4 tuning a 7×4 tile
    (the Intel limit) spilled 57 vectors to the stack (the whole model 1.5× slower);
    under Intel tuning it spills one (5 stores in all)."""
    import re

    import tvm
    from tvm import tirx

    from accelc.targets.tvm_backend.importer import to_relax
    from accelc.targets.tvm_backend.pipeline import legalize_and_fuse

    model = nn.Sequential(nn.Conv2d(320, 1280, 1), nn.ReLU6()).eval()
    x = torch.randn(1, 320, 7, 7)
    mod, _ = to_relax(torch.fx.symbolic_trace(model), (x,))
    target = tvm.target.Target({"kind": "llvm", "mcpu": mcpu, "num-cores": 2})
    assert cpu_conv.nhwc_accumulators(target) == limit
    fused = legalize_and_fuse(layout.to_nhwc(mod), target)
    conv = next(f for gv, f in fused.functions.items() if isinstance(f, tirx.PrimFunc) and "conv2d" in gv.name_hint)
    func = cpu_conv.schedule_func(conv, 16, limit).mod["main"]
    rw, ro = cpu_conv.conv_tile(7, 1280 // 16, limit)
    assert rw * ro <= limit
    with target, tvm.transform.PassContext(opt_level=3):
        asm = tvm.compile(tvm.ir.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target).mod.inspect_source("asm")
    spills = [line for line in asm.splitlines() if re.search(r"vmov\w+\s+%zmm\d+, -?\w*\(%rsp\)", line)]
    assert asm.count("vfmadd") >= rw * ro and len(spills) <= 8, spills[:8]

"""Lowered layers run bit-exactly on the simulator (hazard and race checks on)."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelc.errors import TargetError, UnsupportedError
from accelc.targets.fpga import DramImage, GemmInsn, MemId, SimulationError, simulate
from accelc.targets.fpga.lower import AccelLayer, ConvGeometry, Tiling, lower_layer, unsupported_reason
from accelc.targets.fpga.lower.epilogue import Epilogue
from accelc.targets.fpga.lower.runtime import dram_image
from accelc.targets.fpga.lower.schedule import build_schedule, version_counts
from accelc.targets.fpga.lower.tiling import plan_sram
from fpga_lowering import BATCH2, CONFIG, TINY, Residual, config_with, pops_follow_pushes, random_conv, run_layer

RELU, RELU6, NONE = (0, 127), (0, 96), (-128, 127)

LAYERS = {
    "conv1x1": dict(args=(2, 32, 6, 5, 48, 1), kw={}),
    "conv3x3": dict(args=(1, 32, 9, 8, 32, 3, 1, 1), kw=dict(clip=RELU)),
    "conv3x3-s2-relu6": dict(args=(1, 24, 11, 9, 40, 3, 2, 1), kw=dict(clip=RELU6)),
    "conv5x5-s2-nobias": dict(args=(1, 16, 13, 12, 16, 5, 2, 2), kw=dict(bias="none")),
    "conv7x7-s2-rgb": dict(args=(1, 3, 20, 18, 16, 7, 2, 3), kw=dict(shift="uniform")),
    "conv3x3-nopad": dict(args=(1, 16, 7, 7, 16, 3), kw=dict(shift="uniform", bias="none")),
    "conv3x3-large-bias": dict(args=(1, 16, 6, 6, 32, 3, 1, 1), kw=dict(bias="large")),
    "linear": dict(args=(4, 70, 1, 1, 30, 1), kw=dict(kind="linear", clip=RELU)),
    "linear-single-output-block": dict(args=(1, 64, 1, 1, 10, 1), kw=dict(kind="linear")),
    "depthwise3x3": dict(args=(1, 32, 9, 9, 32, 3, 1, 1), kw=dict(groups=32, clip=RELU6)),
    "depthwise3x3-s2": dict(args=(1, 20, 8, 8, 20, 3, 2, 1), kw=dict(groups=20)),
    "residual": dict(args=(1, 32, 7, 7, 32, 3, 1, 1), kw=dict(residual=Residual("r", -5, -6, -5, 0, 127))),
    "residual-shift-t": dict(args=(1, 16, 6, 6, 16, 3, 1, 1), kw=dict(residual=Residual("r", -3, -5, -4))),
    "residual-large-out-shift": dict(args=(1, 16, 4, 4, 16, 1), kw=dict(residual=Residual("r", 0, -17, 0))),
    "residual-left-out-shift": dict(args=(1, 16, 4, 4, 16, 1), kw=dict(residual=Residual("r", -4, -3, -6))),
}


@pytest.mark.parametrize("name", LAYERS)
def test_layer_kinds_are_bit_exact(name):
    rng = np.random.default_rng(abs(hash(name)) % 1000)
    spec = LAYERS[name]
    layer = random_conv(rng, *spec["args"], **spec["kw"], name=name)
    out, ref, program, stats = run_layer(layer, rng)
    np.testing.assert_array_equal(out, ref)
    assert len(np.unique(ref)) > 3  # not degenerate
    low = program.layers[0]
    if "large-bias" in name:
        assert low.epilogue.bias_mode == "alu"
    elif "nobias" not in name and "nopad" not in name:
        assert low.epilogue.bias_mode == "gemm"
    assert pops_follow_pushes(program.instructions)
    assert stats.gemm_counter >= low.geometry.gemm_ops


@pytest.mark.parametrize("config", [TINY, BATCH2], ids=["tiny-buffers", "batch2-block8"])
@pytest.mark.parametrize("name", ["conv3x3-s2-relu6", "linear", "depthwise3x3", "residual", "conv3x3-large-bias"])
def test_other_configs_are_bit_exact(config, name):
    rng = np.random.default_rng(7)
    spec = LAYERS[name]
    layer = random_conv(rng, *spec["args"], **spec["kw"], name=name)
    out, ref, program, _ = run_layer(layer, rng, config)
    np.testing.assert_array_equal(out, ref)
    if config is TINY and name != "linear":  # the buffers force real tiling
        t = program.layers[0].tiling
        g = program.layers[0].geometry
        assert (t.tile_h, t.tile_w, t.tile_co) != (g.ho, g.wo, g.ob) or t.tile_ci < g.cb


def test_block_in_differs_from_block_out():
    config = config_with(LOG_BLOCK_IN=3, LOG_BLOCK_OUT=4, LOG_INP_BUFF_SIZE=14, LOG_WGT_BUFF_SIZE=17)
    rng = np.random.default_rng(3)
    layer = random_conv(rng, 1, 20, 6, 6, 24, 3, 1, 1, clip=RELU)
    out, ref, _, _ = run_layer(layer, rng, config)
    np.testing.assert_array_equal(out, ref)
    r = random_conv(rng, 1, 16, 4, 4, 16, 1, residual=Residual("r", 0, 0, 0))
    assert "BLOCK_IN == BLOCK_OUT" in unsupported_reason(r, config)


@st.composite
def layer_cases(draw):
    kind = draw(st.sampled_from(["conv", "conv", "conv", "depthwise", "linear"]))
    n = draw(st.integers(1, 2))
    c = draw(st.integers(1, 40))
    o = c if kind == "depthwise" else draw(st.integers(1, 40))
    if kind == "linear":
        h = w = k = 1
        stride = pad = 0
    else:
        k = draw(st.sampled_from([1, 2, 3, 5]))
        h, w = draw(st.integers(k, 9)), draw(st.integers(k, 9))
        stride, pad = draw(st.integers(1, 2)), draw(st.integers(0, k - 1))
    residual = None
    if kind != "linear" and draw(st.booleans()):
        ea, eb = draw(st.integers(-8, -2)), draw(st.integers(-8, -2))
        residual = Residual("r", ea, eb, max(ea, eb) + draw(st.integers(-2, 2)), draw(st.sampled_from([-128, 0])), 127)
    return dict(args=(n, c, h, w, o, k, max(stride, 1), pad),
                kw=dict(kind="linear" if kind == "linear" else "conv", groups=c if kind == "depthwise" else 1,
                        bias=draw(st.sampled_from(["none", "small", "small", "large"])),
                        shift=draw(st.sampled_from(["channel", "uniform", "zero"])),
                        clip=draw(st.sampled_from([RELU, RELU6, NONE])), residual=residual),
                tiling=draw(st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 3), st.integers(1, 3),
                                      st.sampled_from([1, 2]), st.sampled_from(["spatial", "co"]))),
                seed=draw(st.integers(0, 2**16)))


@settings(max_examples=int(__import__("os").environ.get("FPGA_EXAMPLES", 30)))
@given(layer_cases())
def test_random_layers_and_tilings_are_bit_exact(case):
    rng = np.random.default_rng(case["seed"])
    layer = random_conv(rng, *case["args"], **case["kw"])
    g = ConvGeometry.of(layer, CONFIG)
    th, tw, co, ci, threads, order = case["tiling"]
    tiling = Tiling(min(th, g.ho), min(tw, g.wo), min(co, g.ob), min(ci, g.cb), threads, order)
    if plan_sram(g, Epilogue.of(layer, CONFIG), tiling, CONFIG, layer.residual is not None) is None:
        tiling = None  # let the search choose
    try:
        out, ref, program, _ = run_layer(layer, rng, CONFIG, tiling)
    except TargetError as e:  # the forced tiling's micro-ops overflow the UOP buffer
        assert tiling is not None and "does not fit" in str(e)
        out, ref, program, _ = run_layer(layer, np.random.default_rng(case["seed"]), CONFIG, None)
    np.testing.assert_array_equal(out, ref)
    assert pops_follow_pushes(program.instructions)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("order", ["spatial", "co"])
def test_schedule_tokens_pair_up(threads, order):
    rng = np.random.default_rng(0)
    layer = random_conv(rng, 2, 48, 9, 7, 40, 3, 1, 1, residual=Residual("r", -4, -4, -4))
    g = ConvGeometry.of(layer, CONFIG)
    tiling = Tiling(4, 3, 2, 2, threads, order)
    steps = build_schedule(g, tiling, residual=True)
    counts = version_counts(g, tiling)
    assert sum(s.load_inp for s in steps) == counts["inp"] and sum(s.load_wgt for s in steps) == counts["wgt"]
    assert sum(s.load_res for s in steps) == counts["res"] == len({s.tile.index for s in steps})
    assert sum(s.load_pop for s in steps) == sum(s.war_push for s in steps) > 0
    assert all(s.has_loads for s in steps if s.first)  # every tile needs new data here
    if threads == 2:
        assert any(s.load_early for s in steps)
    out, ref, program, stats = run_layer(layer, rng, CONFIG, tiling)
    np.testing.assert_array_equal(out, ref)
    if threads == 2:  # double buffering overlaps the modules
        assert stats.total_cycles < sum(stats.busy_cycles.values())


def test_a_missing_war_token_is_caught_by_the_race_checker():
    rng = np.random.default_rng(1)
    layer = random_conv(rng, 1, 32, 8, 8, 32, 3, 1, 1)
    _, _, program, _ = run_layer(layer, rng, CONFIG, Tiling(2, 8, 2, 2, 2, "spatial"))
    insns = program.instructions
    war_gemm = next(i for i, insn in enumerate(insns) if isinstance(insn, GemmInsn) and insn.push_prev)
    war_load = next(i for i, insn in enumerate(insns) if getattr(insn, "mem", None) in (MemId.INP, MemId.WGT)
                    and insn.pop_next)
    insns[war_gemm] = dataclasses.replace(insns[war_gemm], push_prev=False)
    insns[war_load] = dataclasses.replace(insns[war_load], pop_next=False)
    x = rng.integers(-128, 128, layer.input_shape, dtype=np.int8)
    with pytest.raises(SimulationError, match="race on (INP|WGT)"):
        simulate(insns, dram_image(program, {"x": x}))


def test_uop_hazard_rule_holds_for_tiny_outputs():
    rng = np.random.default_rng(2)
    for args in [(1, 64, 1, 1, 16, 1), (2, 48, 1, 1, 32, 1), (1, 16, 2, 1, 16, 1)]:
        layer = random_conv(rng, *args)
        out, ref, program, _ = run_layer(layer, rng)  # the simulator checks the hazard rule
        np.testing.assert_array_equal(out, ref)


def test_unsupported_layers_say_why():
    rng = np.random.default_rng(0)
    big_pad = random_conv(rng, 1, 16, 40, 40, 16, 33, 1, 16)
    assert "pad fields" in unsupported_reason(big_pad, CONFIG)
    with pytest.raises(UnsupportedError, match="pad fields"):
        lower_layer(big_pad, CONFIG)
    shifty = random_conv(rng, 1, 16, 4, 4, 16, 1, residual=Residual("r", -9, 0, 0))
    assert "left shift of 9" in unsupported_reason(shifty, CONFIG)
    huge = random_conv(rng, 1, 16, 9, 9, 16, 7, 1, 3)
    assert "does not fit" in unsupported_reason(huge, TINY)
    assert unsupported_reason(random_conv(rng, 1, 16, 9, 9, 16, 3, 1, 1), TINY) is None
    with pytest.raises(TargetError, match="does not fit"):
        lower_layer(random_conv(rng, 1, 64, 9, 9, 64, 3, 1, 1), TINY, Tiling(9, 9, 4, 4))


def test_malformed_layers_are_rejected():
    w = np.zeros((16, 16, 3, 3), np.int8)
    with pytest.raises(TargetError, match="output shape"):
        AccelLayer("l", "conv", "x", (1, 16, 8, 8), "y", (1, 16, 8, 8), w)
    with pytest.raises(TargetError, match="shift must lie in 0..31"):
        AccelLayer("l", "conv", "x", (1, 16, 8, 8), "y", (1, 16, 6, 6), w, shift=32)
    with pytest.raises(TargetError, match="groups=2"):
        AccelLayer("l", "conv", "x", (1, 16, 8, 8), "y", (1, 16, 6, 6), w[:, :8], groups=2)
    with pytest.raises(TargetError, match="clip bounds"):
        AccelLayer("l", "conv", "x", (1, 16, 8, 8), "y", (1, 16, 6, 6), w, lo=5, hi=4)
    with pytest.raises(TargetError, match="distinct"):
        AccelLayer("l", "conv", "x", (1, 16, 8, 8), "x", (1, 16, 6, 6), w)


def test_timing_only_simulation_matches_the_functional_run():
    rng = np.random.default_rng(3)
    layer = random_conv(rng, 1, 32, 10, 10, 48, 3, 1, 1, residual=Residual("r", -4, -4, -4))
    _, _, program, stats = run_layer(layer, rng)
    timing = simulate(program.instructions, DramImage(CONFIG), execute=False)
    assert timing.to_dict() == stats.to_dict()
    assert program.layer_table[0]["sim"]["cycles"] == stats.total_cycles

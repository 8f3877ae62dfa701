"""Whole networks: chained layers in one program and one DRAM image, artifacts, memory map."""

import dataclasses
import json

import numpy as np
import pytest

from accelc.errors import DataError, TargetError, UnsupportedError
from accelc.targets.fpga import decode_program, disassemble, encode_program
from accelc.targets.fpga.lower import AccelLayer, NetworkProgram, Residual, compile_network
from fpga_lowering import BATCH2, CONFIG, config_with, dram_order_violations, pops_follow_pushes


def weights(rng, o, c, k):
    return rng.integers(-128, 128, (o, c, k, k), dtype=np.int8)


def basic_block(rng):
    """A ResNet-style basic block with a strided conv, a 1×1 downsample and a fused residual."""
    b = lambda o: rng.integers(-3000, 3000, o)  # noqa: E731
    return [
        AccelLayer("stem", "conv", "x", (1, 8, 12, 12), "a", (1, 32, 12, 12), weights(rng, 32, 8, 3), b(32),
                   rng.integers(8, 11, 32), lo=0, padding=1),
        AccelLayer("conv1", "conv", "a", (1, 32, 12, 12), "b", (1, 48, 6, 6), weights(rng, 48, 32, 3), b(48), 11,
                   lo=0, stride=2, padding=1),
        AccelLayer("down", "conv", "a", (1, 32, 12, 12), "d", (1, 48, 6, 6), weights(rng, 48, 32, 1), b(48), 9,
                   stride=2),
        AccelLayer("conv2", "conv", "b", (1, 48, 6, 6), "c", (1, 48, 6, 6), weights(rng, 48, 48, 3), b(48),
                   rng.integers(10, 13, 48), padding=1, residual=Residual("d", -4, -5, -4, 0, 127)),
    ]


def block_reference(layers, x):
    a = layers[0].reference(x)
    b, d = layers[1].reference(a), layers[2].reference(a)
    return {"a": a, "b": b, "d": d, "c": layers[3].reference(b, d)}


def test_chained_network_is_bit_exact_without_host_repacking():
    rng = np.random.default_rng(0)
    layers = basic_block(rng)
    program = compile_network(layers, outputs=["c", "a"])
    assert program.inputs == ["x"] and program.outputs == ["c", "a"]
    x = rng.integers(-128, 128, (1, 8, 12, 12), dtype=np.int8)
    outputs, stats = program.run({"x": x})
    expected = block_reference(layers, x)
    np.testing.assert_array_equal(outputs["c"], expected["c"])
    np.testing.assert_array_equal(outputs["a"], expected["a"])
    assert pops_follow_pushes(program.instructions)
    assert dram_order_violations(program.instructions) == []
    # one stream, one FINISH, all layers' work counted
    assert sum(row["sim"]["gemm_ops"] for row in program.layer_table) == stats.gemm_counter
    assert stats.total_cycles <= sum(row["sim"]["cycles"] for row in program.layer_table) + 2 * len(layers)
    text = disassemble(program.instructions)
    assert text.count("FINISH") == 1


def test_memory_map_describes_disjoint_regions():
    rng = np.random.default_rng(1)
    program = compile_network(basic_block(rng))
    memory_map = json.loads(json.dumps(program.memory_map))
    tensors = memory_map["tensors"]
    assert set(tensors) == {"x", "a", "b", "d", "c"}
    assert tensors["x"]["role"] == "input" and tensors["c"]["role"] == "output"
    assert tensors["a"]["layout"] == "NCHW1n16c" and tensors["a"]["packed_shape"] == [1, 2, 12, 12, 1, 16]
    spans = sorted((t["base"], t["base"] + t["elements"]) for t in tensors.values())
    spans.insert(0, (0, 1))  # the constant INP element
    assert memory_map["constants"]["__ones__"]["base"] == 0
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert spans[-1][1] == memory_map["memories"]["act"]["elements"]
    data = memory_map["data"]
    assert data["conv1.weight"]["layout"] == "OIHW16o16i" and data["conv1.weight"]["packed_shape"] == [3, 2, 3, 3, 16, 16]
    wgt = sorted((d["base"], d["base"] + d["blocks"]) for d in data.values() if d["memory"] == "wgt")
    assert all(a[1] <= b[0] for a, b in zip(wgt, wgt[1:])) and wgt[-1][1] == len(program.wgt)
    assert sum(d["count"] for d in data.values() if d["memory"] == "uop") == len(program.uop_words)
    row = program.layer_table[3]
    assert row["residual"] == "d" and row["bias_mode"] == "gemm"
    assert {"tile_h", "tile_w", "tile_co", "tile_ci", "threads", "order"} == set(row["tiling"])
    assert row["sim"]["cycles"] > 0 and 0 < row["sim"]["conv_utilization"] <= 1
    assert row["model"]["bytes"]["wgt"] >= 48 * 48 * 9


def test_artifact_files_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    layers = basic_block(rng)
    program = compile_network(layers)
    paths = program.save(tmp_path)
    assert sorted(p.name for p in paths) == sorted(
        ["instructions.bin", "uops.bin", "weights.bin", "acc.bin", "memory_map.json"])
    raw = (tmp_path / "instructions.bin").read_bytes()
    assert len(raw) == 16 * len(program.instructions) and decode_program(raw) == program.instructions
    weights_bin = np.frombuffer((tmp_path / "weights.bin").read_bytes(), np.int8)
    base = program.memory_map["data"]["stem.weight"]["base"] * 256
    assert weights_bin[base + 16 * 0 + 2] == layers[0].weight[0, 2, 0, 0]  # OIHW16o16i: block 0, o=0, i=2
    loaded = NetworkProgram.load(tmp_path)
    x = rng.integers(-128, 128, (1, 8, 12, 12), dtype=np.int8)
    out1, stats1 = program.run({"x": x})
    out2, stats2 = loaded.run({"x": x})
    np.testing.assert_array_equal(out1["c"], out2["c"])
    assert stats1.to_dict() == stats2.to_dict()
    assert encode_program(loaded.instructions) == raw
    assert loaded.uops == program.uops and len(program.uops) == len(program.uop_words)
    assert loaded.files() == program.files()
    assert compile_network(layers).files() == program.files()  # deterministic
    program.save(tmp_path / "again")
    for name in ("instructions.bin", "uops.bin", "weights.bin", "acc.bin", "memory_map.json"):
        assert (tmp_path / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


@pytest.mark.parametrize("config", [CONFIG, BATCH2], ids=["default", "batch2-block8"])
def test_linear_chain(config):
    rng = np.random.default_rng(3)
    n = 3
    layers = [
        AccelLayer("fc1", "linear", "x", (n, 100), "h1", (n, 40), rng.integers(-128, 128, (40, 100), dtype=np.int8),
                   rng.integers(-2000, 2000, 40), rng.integers(9, 12, 40), lo=0),
        AccelLayer("fc2", "linear", "h1", (n, 40), "h2", (n, 24), rng.integers(-128, 128, (24, 40), dtype=np.int8),
                   rng.integers(-2000, 2000, 24), 9, lo=0),
        AccelLayer("fc3", "linear", "h2", (n, 24), "y", (n, 10), rng.integers(-128, 128, (10, 24), dtype=np.int8),
                   None, 8),
    ]
    program = compile_network(layers, config)
    x = rng.integers(-128, 128, (n, 100), dtype=np.int8)
    outputs, _ = program.run({"x": x})
    expected = layers[2].reference(layers[1].reference(layers[0].reference(x)))
    np.testing.assert_array_equal(outputs["y"], expected)
    assert dram_order_violations(program.instructions) == []


def test_inputs_are_validated():
    rng = np.random.default_rng(4)
    program = compile_network(basic_block(rng))
    with pytest.raises(DataError, match="missing \\['x'\\]"):
        program.run({})
    with pytest.raises(DataError, match="expected int8 \\[1, 8, 12, 12\\]"):
        program.run({"x": np.zeros((1, 8, 12, 12), np.float32)})


def test_network_structure_errors():
    rng = np.random.default_rng(5)
    layers = basic_block(rng)
    twice = AccelLayer("again", "conv", "b", (1, 48, 6, 6), "a", (1, 48, 6, 6), weights(rng, 48, 48, 1))
    with pytest.raises(TargetError, match="tensor a is written by layer again but is already"):
        compile_network(layers + [twice])
    with pytest.raises(TargetError, match="unique"):
        compile_network([layers[0], layers[0]])
    with pytest.raises(TargetError, match="not produced"):
        compile_network(layers, outputs=["zzz"])
    other = AccelLayer("bad", "conv", "a", (1, 32, 6, 6), "e", (1, 16, 6, 6), weights(rng, 16, 32, 1))
    with pytest.raises(TargetError, match="tensor a"):
        compile_network(layers[:1] + [other])
    split = config_with(LOG_BLOCK_IN=3, LOG_BLOCK_OUT=4, LOG_INP_BUFF_SIZE=14, LOG_WGT_BUFF_SIZE=17)
    with pytest.raises(UnsupportedError, match="BLOCK_IN != BLOCK_OUT"):
        compile_network(layers[:2], split)


def test_layer_barriers_order_dram_between_layers():
    rng = np.random.default_rng(6)
    first = basic_block(rng)[1]
    second = AccelLayer("next", "conv", "b", (1, 48, 6, 6), "e", (1, 16, 6, 6), weights(rng, 16, 48, 1))
    program = compile_network([first, second])  # `next` reads data of `conv1`'s last tile first
    assert dram_order_violations(program.instructions) == []
    insns = list(program.instructions)
    barrier = next(i for i, insn in enumerate(insns) if getattr(insn, "x_size", 1) == 0 and insn.push_prev)
    first_load = next(i for i in range(barrier + 1, len(insns)) if getattr(insns[i], "pop_next", False))
    insns[barrier] = dataclasses.replace(insns[barrier], push_prev=False)
    insns[first_load] = dataclasses.replace(insns[first_load], pop_next=False)
    assert dram_order_violations(insns)  # the next layer could read its input before it is stored


@pytest.mark.slow
def test_resnet18_sized_basic_blocks_are_bit_exact():
    """conv3_x-sized blocks (28×28×128) with a strided entry, downsample and fused residuals."""
    rng = np.random.default_rng(7)
    b = lambda o: rng.integers(-(1 << 14), 1 << 14, o)  # noqa: E731
    w = lambda o, c, k: np.clip(rng.normal(0, 20, (o, c, k, k)).round(), -128, 127).astype(np.int8)  # noqa: E731
    layers = [
        AccelLayer("l2a", "conv", "x", (1, 64, 56, 56), "a", (1, 128, 28, 28), w(128, 64, 3), b(128),
                   rng.integers(9, 12, 128), lo=0, stride=2, padding=1),
        AccelLayer("l2ds", "conv", "x", (1, 64, 56, 56), "d", (1, 128, 28, 28), w(128, 64, 1), b(128),
                   rng.integers(7, 10, 128), stride=2),
        AccelLayer("l2b", "conv", "a", (1, 128, 28, 28), "c", (1, 128, 28, 28), w(128, 128, 3), b(128),
                   rng.integers(10, 13, 128), padding=1, residual=Residual("d", -4, -4, -4, 0, 127)),
        AccelLayer("l2c", "conv", "c", (1, 128, 28, 28), "e", (1, 128, 28, 28), w(128, 128, 3), b(128),
                   rng.integers(10, 13, 128), lo=0, padding=1),
        AccelLayer("l2d", "conv", "e", (1, 128, 28, 28), "f", (1, 128, 28, 28), w(128, 128, 3), b(128),
                   rng.integers(10, 13, 128), padding=1, residual=Residual("c", -4, -3, -3, 0, 127)),
    ]
    program = compile_network(layers)
    x = rng.integers(-128, 128, (1, 64, 56, 56), dtype=np.int8)
    outputs, stats = program.run({"x": x})
    a, d = layers[0].reference(x), layers[1].reference(x)
    c = layers[2].reference(a, d)
    f = layers[4].reference(layers[3].reference(c), c)
    np.testing.assert_array_equal(outputs["f"], f)
    assert len(np.unique(f)) > 50
    assert dram_order_violations(program.instructions) == []
    assert stats.gemm_utilization > 0.7

"""Whole-program simulation: execution model, tokens, checks, statistics, cycle model."""

import dataclasses

import numpy as np
import pytest
from fpga_programs import matmul_program, requantize_reference, unpack_matmul_output

from accelc.targets.fpga import (
    CycleModel,
    DramImage,
    GemmInsn,
    MemId,
    SimulationError,
    VTAConfig,
    assemble,
    decode_program,
    encode_program,
    simulate,
)

CONFIG = VTAConfig.default()


def random_matmul(config, m, k, n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(-128, 128, (m, k), dtype=np.int8),
            rng.integers(-128, 128, (n, k), dtype=np.int8))


@pytest.mark.parametrize("m, k, n, rows_per_tile, shift",
                         [(4, 32, 48, None, 9), (40, 64, 32, 6, 10), (9, 16, 16, 2, 7)])
def test_matmul_program_is_bit_exact(m, k, n, rows_per_tile, shift):
    a, b = random_matmul(CONFIG, m, k, n)
    program, dram = matmul_program(CONFIG, a, b, shift, rows_per_tile)
    stats = simulate(program.insns, dram)
    result = unpack_matmul_output(CONFIG, dram.out, m, n)
    np.testing.assert_array_equal(result, requantize_reference(a, b, shift))
    assert -128 in result and 127 in result  # the clip was exercised
    kb, nb = k // 16, n // 16
    assert stats.gemm_counter == m * kb * nb
    assert stats.alu_counter == 4 * m * nb
    assert stats.inp_load_nbytes == m * k and stats.wgt_load_nbytes == n * k
    assert stats.out_store_nbytes == m * n and stats.acc_load_nbytes == 0
    assert stats.uop_load_nbytes == 4 * 2 * nb
    assert stats.insn_counter == len(program.insns)


def test_matmul_on_a_batch2_block8_config():
    data = CONFIG.to_dict()
    data.update(LOG_BATCH=1, LOG_BLOCK_IN=3, LOG_BLOCK_OUT=3, LOG_WGT_BUFF_SIZE=16)
    config = VTAConfig.from_dict(data)
    a, b = random_matmul(config, 12, 24, 16, seed=1)
    program, dram = matmul_program(config, a, b, 7, rows_per_tile=2)
    simulate(program.insns, dram)
    np.testing.assert_array_equal(unpack_matmul_output(config, dram.out, 12, 16),
                                  requantize_reference(a, b, 7))


def test_binary_round_trip_program_runs_identically():
    a, b = random_matmul(CONFIG, 8, 32, 32, seed=2)
    program, dram = matmul_program(CONFIG, a, b, 8, rows_per_tile=2)
    decoded = decode_program(encode_program(program.insns))
    _, dram2 = matmul_program(CONFIG, a, b, 8, rows_per_tile=2)
    assert simulate(decoded, dram2).to_dict() == simulate(program.insns, dram).to_dict()
    np.testing.assert_array_equal(dram.out, dram2.out)


def test_double_buffering_overlaps_modules():
    a, b = random_matmul(CONFIG, 64, 128, 32, seed=3)
    program, dram = matmul_program(CONFIG, a, b, 10, rows_per_tile=8)
    stats = simulate(program.insns, dram)
    busy = stats.busy_cycles
    assert stats.total_cycles < busy["load"] + busy["compute"] + busy["store"]
    assert stats.total_cycles >= max(busy.values())
    assert 0 < stats.gemm_utilization < 1
    assert stats.latency_s == pytest.approx(stats.total_cycles / 100e6)
    report = stats.to_dict()
    assert report["gemm_utilization"] == stats.gemm_utilization
    assert set(report["busy_cycles"]) == {"load", "compute", "store"}


def run(text: str, uops=(), **dram_sizes):
    program = assemble(text)
    dram = DramImage.zeros(CONFIG, **dram_sizes)
    if uops:
        dram = DramImage(CONFIG, inp=dram.inp, wgt=dram.wgt, acc=dram.acc, out=dram.out,
                         uop=np.array(uops, np.uint32))
    return simulate(program, dram)


def test_cycle_model_follows_tokens_exactly():
    model = CycleModel()
    stats = run("""
        LOAD INP sram=0 dram=0 y=1 x=64 stride=64 | push_next
        LOAD UOP sram=0 dram=0 y=1 x=3 stride=3
        GEMM uop=[0,3) iter=(10,1) src=(1,0) | pop_prev push_next
        STORE OUT sram=0 dram=0 y=1 x=3 stride=3 | pop_prev push_prev
        LOAD UOP sram=0 dram=0 y=1 x=0 stride=0 | pop_next
        FINISH
    """, uops=[0, 1, 2], inp=64, out=3)
    load_end = model.dma_latency_cycles + 64 * 16 // 8
    uop_load = model.dma_latency_cycles + 2  # 12 bytes at 8 bytes/cycle
    gemm_end = max(load_end, uop_load) + model.compute_latency_cycles + 30
    store_end = gemm_end + model.dma_latency_cycles + 6
    finish_end = store_end + 2 * model.nop_cycles
    assert stats.busy_cycles == {"load": load_end, "store": store_end - gemm_end,
                                 "compute": uop_load + model.compute_latency_cycles + 30 + 2}
    assert stats.total_cycles == finish_end
    assert stats.gemm_counter == 30


def test_dependency_only_loads_are_free_of_data():
    stats = run("""
        LOAD INP sram=0 dram=0 y=0 x=0 stride=0 | push_next
        LOAD UOP sram=0 dram=0 y=1 x=0 stride=0 | pop_prev
        FINISH
    """)
    assert stats.inp_load_nbytes == 0 and stats.total_cycles == 3


def test_deadlock_is_reported_with_blocked_instructions():
    with pytest.raises(SimulationError) as info:
        run("""
            LOAD INP sram=0 dram=0 y=1 x=0 stride=1 | pop_next push_next
            GEMM uop=[0,0) | pop_prev push_prev
            FINISH
        """)
    message = str(info.value)
    assert "deadlock" in message
    assert "load: instruction 0 `LOAD INP" in message and "compute→load" in message
    assert "compute: instruction 1 `GEMM" in message and "load→compute" in message
    assert "store: done" in message


def test_pop_without_any_push_deadlocks():
    with pytest.raises(SimulationError, match="(?s)deadlock.*instruction 0 `GEMM.*load→compute"):
        run("GEMM uop=[0,0) | pop_prev\nFINISH")


@pytest.mark.parametrize("text, message", [
    ("FINISH | pop_prev", "instruction 0 `FINISH \\| pop_prev`: FINISH must not pop"),
    ("LOAD INP sram=0 dram=0 y=1 x=0 stride=0 | pop_prev\nFINISH",
     "pop_prev is invalid — it runs on the load module, which has no prev neighbour"),
    ("STORE OUT sram=0 dram=0 y=1 x=0 stride=0 | push_next\nFINISH", "no next neighbour"),
    ("GEMM uop=[0,0) | push_next\nFINISH",
     "instruction 0 `GEMM.*pushes a compute→store token that no instruction pops"),
    ("GEMM uop=[0,0)", "no FINISH"),
    ("FINISH\nGEMM uop=[0,0)", "FINISH must be the last instruction"),
    ("FINISH\nFINISH", "appear once"),
])
def test_token_misuse_is_rejected(text, message):
    with pytest.raises(SimulationError, match=message):
        run(text)


def test_finish_must_be_ordered_after_stores():
    with pytest.raises(SimulationError, match="instruction 2 `FINISH` is not ordered after instruction 1 `STORE"):
        run("""
            GEMM uop=[0,0) | push_next
            STORE OUT sram=0 dram=0 y=1 x=0 stride=0 | pop_prev
            FINISH
        """)


def _drop_flags(program, index, **flags):
    program.insns[index] = dataclasses.replace(program.insns[index], **flags)


def test_missing_war_token_is_a_race():
    a, b = random_matmul(CONFIG, 24, 32, 16, seed=4)
    program, dram = matmul_program(CONFIG, a, b, 8, rows_per_tile=4)
    # Tile 2's INP load may no longer wait for tile 0's GEMM to finish reading that half.
    gemm0 = next(i for i, insn in enumerate(program.insns) if isinstance(insn, GemmInsn) and insn.push_prev)
    load2 = next(i for i, insn in enumerate(program.insns) if getattr(insn, "pop_next", False)
                 and getattr(insn, "mem", None) is MemId.INP)
    _drop_flags(program, gemm0, push_prev=False)
    _drop_flags(program, load2, pop_next=False)
    with pytest.raises(SimulationError, match="race on INP") as info:
        simulate(program.insns, dram)
    assert f"instruction {gemm0} `GEMM" in str(info.value)
    assert f"instruction {load2} `LOAD INP" in str(info.value)
    _, dram = matmul_program(CONFIG, a, b, 8, rows_per_tile=4)
    simulate(program.insns, dram, check_races=False)  # runs; the result is what hardware may not give


def test_missing_raw_token_is_a_race():
    synchronised = """
        LOAD UOP sram=0 dram=0 y=1 x=1 stride=1
        LOAD INP sram=0 dram=0 y=1 x=1 stride=1 | push_next
        GEMM uop=[0,1) | pop_prev
        FINISH
    """
    run(synchronised, uops=[0], inp=1)
    unsynchronised = """
        LOAD UOP sram=0 dram=0 y=1 x=1 stride=1
        LOAD INP sram=0 dram=0 y=1 x=1 stride=1
        GEMM uop=[0,1)
        LOAD INP sram=0 dram=0 y=1 x=0 stride=1 | push_next
        LOAD UOP sram=0 dram=0 y=1 x=0 stride=1 | pop_prev
        FINISH
    """
    with pytest.raises(SimulationError, match="race on INP\\[0\\]") as info:
        run(unsynchronised, uops=[0], inp=1)
    assert "instruction 2 `GEMM" in str(info.value) and "instruction 1 `LOAD INP" in str(info.value)


def test_hazard_error_names_instruction_and_can_be_disabled():
    text = """
        LOAD UOP sram=0 dram=0 y=1 x=1 stride=1
        GEMM uop=[0,1) iter=(2,1)
        FINISH
    """
    with pytest.raises(SimulationError, match=r"instruction 1 `GEMM uop=\[0,1\) iter=\(2,1\).*hazard"):
        run(text, uops=[0])
    simulate(assemble(text), DramImage(CONFIG, uop=np.zeros(1, np.uint32)), check_hazards=False)


def test_datapath_errors_name_the_instruction():
    with pytest.raises(SimulationError, match=r"instruction 0 `LOAD UOP.*DRAM UOP elements up to 4"):
        run("LOAD UOP sram=0 dram=0 y=1 x=5 stride=5\nFINISH", uops=[0, 0, 0, 0])


def test_dram_image_is_validated_and_shared():
    with pytest.raises(Exception, match="INP region must be int8 of shape \\[n, 1, 16\\]"):
        DramImage(CONFIG, inp=np.zeros((4, 16), np.int8))
    with pytest.raises(Exception, match="ACC region must be int32"):
        DramImage(CONFIG, acc=np.zeros((4, 1, 16), np.int64))
    shared = np.zeros((4, 1, 16), np.int8)
    image = DramImage(CONFIG, inp=shared, out=shared)
    assert image.inp is shared and image.out is shared and image[MemId.OUT] is shared

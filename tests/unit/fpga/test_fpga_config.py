import json

import pytest

from accelc.errors import ConfigError
from accelc.targets.fpga import MemId, VTAConfig
from accelc.targets.fpga.config import DEFAULT_CONFIG_PATH


def default_dict() -> dict:
    return VTAConfig.default().to_dict()


def test_default_is_vta_1x16_i8w8a32():
    config = VTAConfig.default()
    assert config.name == "1x16_i8w8a32_15_15_18_17"
    assert (config.target, config.clock_mhz, config.dram_bytes_per_cycle) == ("pynq", 100, 8)
    assert (config.BATCH, config.BLOCK_IN, config.BLOCK_OUT) == (1, 16, 16)
    assert (config.INP_WIDTH, config.WGT_WIDTH, config.ACC_WIDTH, config.OUT_WIDTH) == (8, 8, 32, 8)
    assert config.peak_ops_per_cycle == 256


@pytest.mark.parametrize(
    "mem, elem_bytes, buff_bytes, depth, index_bits, shape",
    [
        (MemId.INP, 16, 32 * 1024, 2048, 11, (1, 16)),
        (MemId.WGT, 256, 256 * 1024, 1024, 10, (16, 16)),
        (MemId.ACC, 64, 128 * 1024, 2048, 11, (1, 16)),
        (MemId.OUT, 16, 32 * 1024, 2048, 11, (1, 16)),
        (MemId.UOP, 4, 32 * 1024, 8192, 13, ()),
    ],
)
def test_default_buffer_sizes_match_vta_table(mem, elem_bytes, buff_bytes, depth, index_bits, shape):
    config = VTAConfig.default()
    assert config.elem_bytes(mem) == elem_bytes
    assert config.buff_bytes(mem) == buff_bytes
    assert config.depth(mem) == depth
    assert config.index_bits(mem) == index_bits
    assert config.elem_shape(mem) == shape


def test_json_round_trip(tmp_path):
    config = VTAConfig.default()
    assert VTAConfig.from_dict(config.to_dict()) == config
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config.to_dict()))
    assert VTAConfig.from_json(path) == config
    assert VTAConfig.from_json(DEFAULT_CONFIG_PATH) == config


def test_log_block_sets_both_and_custom_config_derives_sizes():
    data = default_dict()
    del data["LOG_BLOCK_IN"], data["LOG_BLOCK_OUT"]
    data.update(LOG_BLOCK=3, LOG_BATCH=1, LOG_INP_BUFF_SIZE=12, LOG_WGT_BUFF_SIZE=16,
                clock_mhz=333, target="ultra96")
    config = VTAConfig.from_dict(data)
    assert (config.BATCH, config.BLOCK_IN, config.BLOCK_OUT) == (2, 8, 8)
    assert config.elem_bytes(MemId.INP) == 16 and config.depth(MemId.INP) == 256
    assert config.elem_bytes(MemId.WGT) == 64 and config.depth(MemId.WGT) == 1024
    assert config.elem_bytes(MemId.ACC) == 64 and config.depth(MemId.ACC) == 2048
    assert config.name == "2x8_i8w8a32_15_12_16_17"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"LOG_INP_WIDTH": 4}, "int8 inputs"),
        ({"LOG_ACC_WIDTH": 4}, "int32 accumulators"),
        ({"LOG_BATCH": -1}, "LOG_BATCH must be an integer >= 0"),
        ({"LOG_BLOCK_IN": 2.0}, "LOG_BLOCK_IN must be an integer"),
        ({"LOG_INP_BUFF_SIZE": 3}, "cannot hold one"),
        ({"LOG_ACC_BUFF_SIZE": 18}, "ACC buffer is 4096 elements deep"),
        ({"LOG_WGT_BUFF_SIZE": 19}, "wgt_idx field"),
        ({"LOG_UOP_BUFF_SIZE": 16}, "uop_bgn"),
        ({"clock_mhz": 0}, "clock_mhz must be a positive number"),
        ({"dram_bytes_per_cycle": 0}, "dram_bytes_per_cycle must be an integer >= 1"),
        ({"target": ""}, "target"),
        ({"LOG_BLOCK": 3}, "contradicts"),
    ],
)
def test_invalid_configs_are_rejected_with_reason(change, message):
    data = default_dict()
    data.update(change)
    with pytest.raises(ConfigError, match=message):
        VTAConfig.from_dict(data)


def test_unknown_key_lists_known_keys():
    data = default_dict()
    data["LOG_FOO"] = 1
    with pytest.raises(ConfigError, match="LOG_FOO") as info:
        VTAConfig.from_dict(data)
    assert "LOG_ACC_BUFF_SIZE" in str(info.value) and "dram_bytes_per_cycle" in str(info.value)


def test_missing_key_and_bad_file(tmp_path):
    data = default_dict()
    del data["LOG_ACC_WIDTH"]
    with pytest.raises(ConfigError, match="missing key.*LOG_ACC_WIDTH"):
        VTAConfig.from_dict(data)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json"):
        VTAConfig.from_json(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        VTAConfig.from_json(tmp_path / "absent.json")


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        VTAConfig.default().LOG_BATCH = 1  # type: ignore[misc]

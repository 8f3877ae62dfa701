"""VTA hardware configuration: the one source of every size the fpga target uses.

A :class:`VTAConfig` holds the parameters of VTA's ``vta_config.json`` (log2 widths, block
and buffer sizes) plus what the cost model needs (clock, DRAM bandwidth) and derives the
rest: BATCH/BLOCK sizes, element bytes, buffer bytes and depths, index widths. The default,
``configs/default.json``, is VTA's ``1x16_i8w8a32_15_15_18_17`` on a PYNQ-Z1 at 100 MHz.

Guarantees: a constructed config is valid — integer fields are non-negative ints, the data
widths are int8 inputs/weights and int32 accumulators (accelc's integer semantics), each
buffer holds at least one element, and every buffer depth is addressable by the fixed
128-bit instruction / 32-bit micro-op layout of :mod:`.isa`. Anything else raises
:class:`~accelc.errors.ConfigError` with the reason.

``dram_bytes_per_cycle`` defaults to 8: PYNQ-Z1's Zynq-7020 connects VTA to DRAM through a
64-bit AXI HP port, i.e. at most 8 bytes per fabric clock cycle.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from accelc.errors import ConfigError
from accelc.targets.fpga.isa import INDEX_FIELDS, UOP_BYTES, MemId

DEFAULT_CONFIG_PATH = Path(__file__).parent / "configs" / "default.json"

#: Data widths accelc's integer semantics require: int8 × int8 → int32 accumulation.
_REQUIRED_LOG_WIDTHS = {"LOG_INP_WIDTH": 3, "LOG_WGT_WIDTH": 3, "LOG_ACC_WIDTH": 5}


@dataclass(frozen=True, kw_only=True)
class VTAConfig:
    target: str = "pynq"
    LOG_INP_WIDTH: int
    LOG_WGT_WIDTH: int
    LOG_ACC_WIDTH: int
    LOG_BATCH: int
    LOG_BLOCK_IN: int
    LOG_BLOCK_OUT: int
    LOG_UOP_BUFF_SIZE: int
    LOG_INP_BUFF_SIZE: int
    LOG_WGT_BUFF_SIZE: int
    LOG_ACC_BUFF_SIZE: int
    clock_mhz: float = 100.0
    dram_bytes_per_cycle: int = 8

    def __post_init__(self) -> None:
        if not isinstance(self.target, str) or not self.target:
            raise ConfigError(f"VTA config: target must be a non-empty string, not {self.target!r}")
        for f in fields(self):
            if f.name.startswith("LOG_"):
                _check_int(f.name, getattr(self, f.name), minimum=0)
        _check_int("dram_bytes_per_cycle", self.dram_bytes_per_cycle, minimum=1)
        clock = self.clock_mhz
        if isinstance(clock, bool) or not isinstance(clock, (int, float)) or not clock > 0:
            raise ConfigError(f"VTA config: clock_mhz must be a positive number, not {clock!r}")
        for name, required in _REQUIRED_LOG_WIDTHS.items():
            if getattr(self, name) != required:
                raise ConfigError(
                    f"VTA config: {name} = {getattr(self, name)} is unsupported; accelc's integer "
                    f"semantics need int8 inputs/weights and int32 accumulators "
                    + ", ".join(f"{k} = {v}" for k, v in _REQUIRED_LOG_WIDTHS.items())
                )
        for mem in MemId:
            size, elem = self.buff_bytes(mem), self.elem_bytes(mem)
            if size < elem:
                raise ConfigError(
                    f"VTA config: the {mem.name} buffer ({size} bytes) cannot hold one "
                    f"{elem}-byte element; raise its LOG_*_BUFF_SIZE or lower LOG_BATCH/LOG_BLOCK"
                )
            for what, field in INDEX_FIELDS[mem]:
                if self.depth(mem) > 1 << field.width:
                    raise ConfigError(
                        f"VTA config: the {mem.name} buffer is {self.depth(mem)} elements deep, "
                        f"which needs {self.index_bits(mem)}-bit indices, but the {what} field "
                        f"of the instruction layout has {field.width} bits; use a smaller "
                        f"buffer (at most {1 << field.width} elements)"
                    )

    # ---- loading / saving -------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "VTAConfig":
        """Build from a JSON-like mapping; ``LOG_BLOCK`` sets both LOG_BLOCK_IN and _OUT."""
        data = dict(data)
        if "LOG_BLOCK" in data:
            block = data.pop("LOG_BLOCK")
            for key in ("LOG_BLOCK_IN", "LOG_BLOCK_OUT"):
                if data.setdefault(key, block) != block:
                    raise ConfigError(f"VTA config: LOG_BLOCK = {block} contradicts {key} = {data[key]}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(
                f"VTA config: unknown key(s) {', '.join(unknown)}",
                hint=f"known keys: {', '.join(known)}, LOG_BLOCK",
            )
        missing = [f.name for f in fields(cls) if f.name.startswith("LOG_") and f.name not in data]
        if missing:
            raise ConfigError(f"VTA config: missing key(s) {', '.join(missing)}")
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | Path) -> "VTAConfig":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read VTA config {path}: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"VTA config {path}: expected a JSON object")
        try:
            return cls.from_dict(data)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err.message}", hint=err.hint) from None

    @classmethod
    def default(cls) -> "VTAConfig":
        return _load_default()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # ---- derived sizes ---------------------------------------------------------------
    @property
    def name(self) -> str:
        """VTA's configuration name, e.g. ``1x16_i8w8a32_15_15_18_17``."""
        return (
            f"{self.BATCH}x{self.BLOCK_IN}_i{self.INP_WIDTH}w{self.WGT_WIDTH}a{self.ACC_WIDTH}_"
            f"{self.LOG_UOP_BUFF_SIZE}_{self.LOG_INP_BUFF_SIZE}_{self.LOG_WGT_BUFF_SIZE}_"
            f"{self.LOG_ACC_BUFF_SIZE}"
        )

    @property
    def INP_WIDTH(self) -> int:
        return 1 << self.LOG_INP_WIDTH

    @property
    def WGT_WIDTH(self) -> int:
        return 1 << self.LOG_WGT_WIDTH

    @property
    def ACC_WIDTH(self) -> int:
        return 1 << self.LOG_ACC_WIDTH

    @property
    def OUT_WIDTH(self) -> int:
        return self.INP_WIDTH

    @property
    def BATCH(self) -> int:
        return 1 << self.LOG_BATCH

    @property
    def BLOCK_IN(self) -> int:
        return 1 << self.LOG_BLOCK_IN

    @property
    def BLOCK_OUT(self) -> int:
        return 1 << self.LOG_BLOCK_OUT

    def elem_shape(self, mem: MemId) -> tuple[int, ...]:
        """Shape of one element of ``mem`` (a UOP element is a scalar uint32)."""
        return {
            MemId.UOP: (),
            MemId.WGT: (self.BLOCK_OUT, self.BLOCK_IN),
            MemId.INP: (self.BATCH, self.BLOCK_IN),
            MemId.ACC: (self.BATCH, self.BLOCK_OUT),
            MemId.OUT: (self.BATCH, self.BLOCK_OUT),
        }[mem]

    def elem_bytes(self, mem: MemId) -> int:
        bits = {
            MemId.UOP: UOP_BYTES * 8,
            MemId.WGT: self.WGT_WIDTH,
            MemId.INP: self.INP_WIDTH,
            MemId.ACC: self.ACC_WIDTH,
            MemId.OUT: self.OUT_WIDTH,
        }[mem]
        return math.prod(self.elem_shape(mem)) * bits // 8

    def buff_bytes(self, mem: MemId) -> int:
        """SRAM buffer size in bytes; OUT is ACC's size scaled by OUT_WIDTH / ACC_WIDTH."""
        if mem is MemId.OUT:
            return self.buff_bytes(MemId.ACC) * self.OUT_WIDTH // self.ACC_WIDTH
        log_size = {
            MemId.UOP: self.LOG_UOP_BUFF_SIZE,
            MemId.WGT: self.LOG_WGT_BUFF_SIZE,
            MemId.INP: self.LOG_INP_BUFF_SIZE,
            MemId.ACC: self.LOG_ACC_BUFF_SIZE,
        }[mem]
        return 1 << log_size

    def depth(self, mem: MemId) -> int:
        """Number of elements the SRAM buffer of ``mem`` holds."""
        return self.buff_bytes(mem) // self.elem_bytes(mem)

    def index_bits(self, mem: MemId) -> int:
        """Bits needed to index every element of the ``mem`` buffer."""
        return max(1, (self.depth(mem) - 1).bit_length())

    @property
    def peak_ops_per_cycle(self) -> int:
        """Multiply-accumulates of one GEMM uop-iteration (BATCH × BLOCK_IN × BLOCK_OUT)."""
        return self.BATCH * self.BLOCK_IN * self.BLOCK_OUT


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"VTA config: {name} must be an integer >= {minimum}, not {value!r}")


@lru_cache(maxsize=1)
def _load_default() -> VTAConfig:
    return VTAConfig.from_json(DEFAULT_CONFIG_PATH)

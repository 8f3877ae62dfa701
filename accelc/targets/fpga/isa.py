"""VTA instruction set: instruction and micro-op records and their binary encoding.

The bit layout is the reference layout of ``shared/reference/vta.md``: an instruction is
128 bits stored little-endian as two 64-bit words (no field crosses bit 64), a micro-op
is 32 bits. The layout tables below are the only place where bit positions appear.

Guarantees:
  * Constructing an instruction or micro-op checks every field against its bit width
    (unsigned fields: ``0 <= v < 2**w``; ``imm``: signed 16-bit) and raises
    :class:`~accelc.errors.TargetError` naming the instruction and the field. Nothing is
    ever truncated silently. Values are normalised to ``int``/``bool``/enums.
  * ``decode(encode(i)) == i`` for every valid instruction, and ``decode`` rejects
    unknown opcodes, memory ids, ALU opcodes and set reserved bits.

ALU instructions carry no ``reset`` flag: bit 7 (GEMM's ``reset_reg``) is reserved in
an ALU instruction, since what it would do differs between VTA's implementations.

Whether an instruction makes sense for a given configuration (buffer bounds, which
memories a LOAD may target, ...) is checked by the simulator, not here.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from enum import IntEnum
from typing import Iterable, Sequence, Union

import numpy as np

from accelc.errors import TargetError

INSN_BYTES = 16
UOP_BYTES = 4


class Opcode(IntEnum):
    LOAD = 0
    STORE = 1
    GEMM = 2
    FINISH = 3
    ALU = 4


class MemId(IntEnum):
    UOP = 0
    WGT = 1
    INP = 2
    ACC = 3
    OUT = 4


class AluOp(IntEnum):
    MIN = 0
    MAX = 1
    ADD = 2
    SHR = 3
    MUL = 4  # exists in VTA's functional simulator only; the simulator rejects it


@dataclass(frozen=True)
class BitField:
    name: str
    lsb: int
    width: int
    signed: bool = False

    @property
    def lowest(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def highest(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1


_HEADER = (
    BitField("opcode", 0, 3),
    BitField("pop_prev", 3, 1),
    BitField("pop_next", 4, 1),
    BitField("push_prev", 5, 1),
    BitField("push_next", 6, 1),
)
_MEM_LAYOUT = _HEADER + (
    BitField("mem", 7, 3),
    BitField("sram_base", 10, 16),
    BitField("dram_base", 26, 32),
    BitField("y_size", 64, 16),
    BitField("x_size", 80, 16),
    BitField("x_stride", 96, 16),
    BitField("y_pad_0", 112, 4),
    BitField("y_pad_1", 116, 4),
    BitField("x_pad_0", 120, 4),
    BitField("x_pad_1", 124, 4),
)
_LOOP_FIELDS = (
    BitField("uop_bgn", 8, 13),
    BitField("uop_end", 21, 14),
    BitField("iter_out", 35, 14),
    BitField("iter_in", 49, 14),
    BitField("dst_factor_out", 64, 11),
    BitField("dst_factor_in", 75, 11),
    BitField("src_factor_out", 86, 11),
    BitField("src_factor_in", 97, 11),
)
_GEMM_LAYOUT = _HEADER + (BitField("reset", 7, 1),) + _LOOP_FIELDS + (
    BitField("wgt_factor_out", 108, 10),
    BitField("wgt_factor_in", 118, 10),
)
_ALU_LAYOUT = _HEADER + _LOOP_FIELDS + (
    BitField("alu_op", 108, 3),
    BitField("use_imm", 111, 1),
    BitField("imm", 112, 16, signed=True),
)
_FINISH_LAYOUT = _HEADER
UOP_LAYOUT = (
    BitField("dst_idx", 0, 11),
    BitField("src_idx", 11, 11),
    BitField("wgt_idx", 22, 10),
)

_ENUM_FIELDS = {"opcode": Opcode, "mem": MemId, "alu_op": AluOp}


def _field(layout: Sequence[BitField], name: str) -> BitField:
    return next(f for f in layout if f.name == name)


def _normalise(owner: str, field: BitField, value: object) -> object:
    """Check one field value against its bit width; return it as int/bool/enum."""
    if isinstance(value, float) or not hasattr(value, "__index__"):
        raise TargetError(f"{owner}: field {field.name} = {value!r} is not an integer")
    number = operator.index(value)
    if not field.lowest <= number <= field.highest:
        raise TargetError(
            f"{owner}: field {field.name} = {number} does not fit its {field.width}-bit "
            f"{'signed ' if field.signed else ''}field ({field.lowest}..{field.highest})"
        )
    if field.width == 1:  # flags: pop/push, reset, use_imm
        return bool(number)
    if field.name in _ENUM_FIELDS:
        enum = _ENUM_FIELDS[field.name]
        try:
            return enum(number)
        except ValueError:
            known = ", ".join(f"{e.name}={e.value}" for e in enum)
            raise TargetError(f"{owner}: {field.name} = {number} is not one of {known}") from None
    return number


class _Record:
    """Validating frozen dataclass base: every field named in ``_layout`` is checked."""

    _layout: tuple[BitField, ...] = ()

    def __post_init__(self) -> None:
        owner = self._describe()
        for field in self._layout:
            if field.name in self.__dataclass_fields__:
                value = _normalise(owner, field, getattr(self, field.name))
                object.__setattr__(self, field.name, value)

    def _describe(self) -> str:
        return type(self).__name__


@dataclass(frozen=True, kw_only=True)
class _Insn(_Record):
    """Dependency-token flags common to all instructions (see vta.md, Execution model)."""

    pop_prev: bool = False
    pop_next: bool = False
    push_prev: bool = False
    push_next: bool = False

    def _describe(self) -> str:
        return f"{self.opcode.name} instruction"  # type: ignore[attr-defined]


@dataclass(frozen=True, kw_only=True)
class MemInsn(_Insn):
    """LOAD or STORE of a 2-D block; ``dram_base`` is in element units of ``mem``."""

    opcode: Opcode
    mem: MemId
    sram_base: int
    dram_base: int
    y_size: int
    x_size: int
    x_stride: int
    y_pad_0: int = 0
    y_pad_1: int = 0
    x_pad_0: int = 0
    x_pad_1: int = 0

    _layout = _MEM_LAYOUT

    def __post_init__(self) -> None:
        opcode = _normalise("memory instruction", _field(_HEADER, "opcode"), self.opcode)
        if opcode not in (Opcode.LOAD, Opcode.STORE):
            raise TargetError(f"MemInsn: opcode must be LOAD or STORE, not {opcode.name}")
        super().__post_init__()

    def _describe(self) -> str:
        return f"{Opcode(self.opcode).name} instruction"


@dataclass(frozen=True, kw_only=True)
class GemmInsn(_Insn):
    """GEMM over uops [uop_bgn, uop_end) inside an (iter_out, iter_in) loop nest."""

    reset: bool = False
    uop_bgn: int
    uop_end: int
    iter_out: int = 1
    iter_in: int = 1
    dst_factor_out: int = 0
    dst_factor_in: int = 0
    src_factor_out: int = 0
    src_factor_in: int = 0
    wgt_factor_out: int = 0
    wgt_factor_in: int = 0

    _layout = _GEMM_LAYOUT
    opcode = Opcode.GEMM


@dataclass(frozen=True, kw_only=True)
class AluInsn(_Insn):
    """Element-wise ALU op on ACC: ``ACC[dst] = op(ACC[dst], imm if use_imm else ACC[src])``."""

    alu_op: AluOp
    uop_bgn: int
    uop_end: int
    iter_out: int = 1
    iter_in: int = 1
    dst_factor_out: int = 0
    dst_factor_in: int = 0
    src_factor_out: int = 0
    src_factor_in: int = 0
    use_imm: bool = False
    imm: int = 0

    _layout = _ALU_LAYOUT
    opcode = Opcode.ALU


@dataclass(frozen=True, kw_only=True)
class FinishInsn(_Insn):
    """End of program; must be the last instruction."""

    _layout = _FINISH_LAYOUT
    opcode = Opcode.FINISH


@dataclass(frozen=True)
class Uop(_Record):
    """Micro-op: ACC index ``dst_idx``, INP (GEMM) / ACC (ALU) index ``src_idx``, WGT ``wgt_idx``."""

    dst_idx: int
    src_idx: int = 0
    wgt_idx: int = 0

    _layout = UOP_LAYOUT


Insn = Union[MemInsn, GemmInsn, AluInsn, FinishInsn]

_LAYOUTS: dict[Opcode, tuple[type[_Insn], tuple[BitField, ...]]] = {
    Opcode.LOAD: (MemInsn, _MEM_LAYOUT),
    Opcode.STORE: (MemInsn, _MEM_LAYOUT),
    Opcode.GEMM: (GemmInsn, _GEMM_LAYOUT),
    Opcode.ALU: (AluInsn, _ALU_LAYOUT),
    Opcode.FINISH: (FinishInsn, _FINISH_LAYOUT),
}

#: For each SRAM buffer, the fields that carry an index into it (besides the 16-bit
#: ``sram_base``). A configuration whose buffer is deeper than one of them can address is
#: rejected by the config.
INDEX_FIELDS: dict[MemId, tuple[tuple[str, BitField], ...]] = {
    MemId.UOP: (("GEMM/ALU uop_bgn", _field(_LOOP_FIELDS, "uop_bgn")),),
    MemId.WGT: (
        ("micro-op wgt_idx", _field(UOP_LAYOUT, "wgt_idx")),
        ("GEMM wgt_factor_*", _field(_GEMM_LAYOUT, "wgt_factor_out")),
    ),
    MemId.INP: (
        ("micro-op src_idx", _field(UOP_LAYOUT, "src_idx")),
        ("GEMM src_factor_*", _field(_LOOP_FIELDS, "src_factor_out")),
    ),
    MemId.ACC: (
        ("micro-op dst_idx", _field(UOP_LAYOUT, "dst_idx")),
        ("micro-op src_idx (ALU)", _field(UOP_LAYOUT, "src_idx")),
        ("GEMM/ALU dst_factor_*", _field(_LOOP_FIELDS, "dst_factor_out")),
    ),
    MemId.OUT: (("micro-op dst_idx", _field(UOP_LAYOUT, "dst_idx")),),
}
for _mem in MemId:
    INDEX_FIELDS[_mem] += (("LOAD/STORE sram_base", _field(_MEM_LAYOUT, "sram_base")),)


def _pack(record: _Record, layout: Sequence[BitField]) -> int:
    word = 0
    for field in layout:
        value = int(getattr(record, field.name))
        word |= (value & ((1 << field.width) - 1)) << field.lsb
    return word


def _unpack(word: int, layout: Sequence[BitField]) -> dict[str, int]:
    values = {}
    for field in layout:
        value = (word >> field.lsb) & ((1 << field.width) - 1)
        if field.signed and value >> (field.width - 1):
            value -= 1 << field.width
        values[field.name] = value
    return values


def _layout_mask(layout: Sequence[BitField]) -> int:
    return sum(((1 << f.width) - 1) << f.lsb for f in layout)


def encode(insn: Insn) -> bytes:
    """The 16-byte little-endian encoding of one instruction."""
    if not isinstance(insn, (MemInsn, GemmInsn, AluInsn, FinishInsn)):
        raise TargetError(f"cannot encode {insn!r}: not a VTA instruction")
    _, layout = _LAYOUTS[insn.opcode]
    return _pack(insn, layout).to_bytes(INSN_BYTES, "little")


def decode(data: bytes) -> Insn:
    """Inverse of :func:`encode`; rejects unknown enum values and set reserved bits."""
    if len(data) != INSN_BYTES:
        raise TargetError(f"an instruction is {INSN_BYTES} bytes, got {len(data)}")
    word = int.from_bytes(data, "little")
    opcode_bits = _unpack(word, _HEADER)["opcode"]
    if opcode_bits not in Opcode._value2member_map_:
        raise TargetError(f"unknown opcode {opcode_bits} in instruction 0x{word:032x}")
    cls, layout = _LAYOUTS[Opcode(opcode_bits)]
    reserved = word & ~_layout_mask(layout)
    if reserved:
        raise TargetError(
            f"{Opcode(opcode_bits).name} instruction 0x{word:032x} has reserved bits set "
            f"(mask 0x{reserved:032x})"
        )
    values = _unpack(word, layout)
    if cls is not MemInsn:
        del values["opcode"]
    return cls(**values)


def encode_program(insns: Iterable[Insn]) -> bytes:
    """Concatenated encodings; an error names the instruction's index."""
    chunks = []
    for index, insn in enumerate(insns):
        try:
            chunks.append(encode(insn))
        except TargetError as err:
            raise TargetError(f"instruction {index}: {err.message}") from None
    return b"".join(chunks)


def decode_program(data: bytes) -> list[Insn]:
    if len(data) % INSN_BYTES:
        raise TargetError(f"instruction stream length {len(data)} is not a multiple of {INSN_BYTES}")
    insns = []
    for index in range(len(data) // INSN_BYTES):
        try:
            insns.append(decode(data[index * INSN_BYTES : (index + 1) * INSN_BYTES]))
        except TargetError as err:
            raise TargetError(f"instruction {index}: {err.message}") from None
    return insns


def pack_uops(uops: Iterable[Uop]) -> np.ndarray:
    """Micro-ops as a uint32 array (the DRAM/SRAM representation)."""
    return np.array([_pack(u, UOP_LAYOUT) for u in uops], dtype=np.uint32)


def pack_uop_fields(dst_idx, src_idx, wgt_idx) -> np.ndarray:
    """Vectorised :func:`pack_uops` for index arrays (broadcast together), as uint32.

    Raises :class:`~accelc.errors.TargetError` naming the field when a value does not fit."""
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=np.int64) for a in (dst_idx, src_idx, wgt_idx)))
    word = np.zeros(arrays[0].shape, dtype=np.int64)
    for field, values in zip(UOP_LAYOUT, arrays):
        if values.size and (values.min() < field.lowest or values.max() > field.highest):
            bad = values[(values < field.lowest) | (values > field.highest)].flat[0]
            raise TargetError(
                f"micro-op: field {field.name} = {int(bad)} does not fit its {field.width}-bit "
                f"field ({field.lowest}..{field.highest})"
            )
        word |= values << field.lsb
    return word.astype(np.uint32)


def unpack_uops(words: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised field extraction: ``(dst_idx, src_idx, wgt_idx)`` as int64 arrays."""
    words = np.asarray(words, dtype=np.uint32).astype(np.int64)
    return tuple((words >> f.lsb) & ((1 << f.width) - 1) for f in UOP_LAYOUT)  # type: ignore[return-value]


def encode_uops(uops: Iterable[Uop]) -> bytes:
    return pack_uops(uops).astype("<u4").tobytes()


def decode_uops(data: bytes) -> list[Uop]:
    if len(data) % UOP_BYTES:
        raise TargetError(f"micro-op stream length {len(data)} is not a multiple of {UOP_BYTES}")
    words = np.frombuffer(data, dtype="<u4")
    return [Uop(**_unpack(int(w), UOP_LAYOUT)) for w in words]


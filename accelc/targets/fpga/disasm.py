"""Human-readable listing of VTA instruction and micro-op streams, and its parser.

One instruction per line::

    12: LOAD INP sram=0 dram=1024 y=4 x=16 stride=28 pad=(1,1,1,1) | pop_next
    13: GEMM reset uop=[0,16) iter=(4,2) dst=(16,1) src=(18,1) wgt=(0,0) | pop_prev push_next
    14: ALU SHR uop=[0,4) iter=(2,1) dst=(4,1) src=(4,1) imm=-3
    15: FINISH

Loop factors are printed as ``(out,in)`` pairs, dependency flags after ``|``. For ALU,
``imm=`` appears when ``use_imm`` is set; an immediate that is present in the encoding
but unused is kept as ``unused_imm=`` so nothing is lost. Micro-ops: ``3: dst=1 src=2 wgt=0``.

Guarantee: ``assemble(disassemble(p)) == p`` and ``assemble_uops(disassemble_uops(u)) == u``.
The parser also accepts hand-written text: the ``N:`` prefix is optional (when present it
must equal the line's position), ``#`` starts a comment, ``pad``/flags/``reset``/loop
fields may be left out (zero, or 1 for ``iter``); errors name the line.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

from accelc.errors import TargetError
from accelc.targets.fpga.isa import (
    AluInsn,
    AluOp,
    FinishInsn,
    GemmInsn,
    Insn,
    MemId,
    MemInsn,
    Opcode,
    Uop,
)

_FLAGS = ("pop_prev", "pop_next", "push_prev", "push_next")
_LOOP_PAIRS = {"iter": ("iter_out", "iter_in"), "dst": ("dst_factor_out", "dst_factor_in"),
               "src": ("src_factor_out", "src_factor_in"), "wgt": ("wgt_factor_out", "wgt_factor_in")}
_MEM_KEYS = {"sram": "sram_base", "dram": "dram_base", "y": "y_size", "x": "x_size", "stride": "x_stride"}
_PAD_FIELDS = ("y_pad_0", "y_pad_1", "x_pad_0", "x_pad_1")
_UOP_OPTIONAL = {"src": "src_idx", "wgt": "wgt_idx"}


def _pair(insn: Insn, key: str) -> str:
    out, inner = _LOOP_PAIRS[key]
    return f"{key}=({getattr(insn, out)},{getattr(insn, inner)})"


def format_insn(insn: Insn) -> str:
    """One instruction as text, without the index prefix."""
    if isinstance(insn, MemInsn):
        words = [insn.opcode.name, insn.mem.name]
        words += [f"{key}={getattr(insn, name)}" for key, name in _MEM_KEYS.items()]
        words.append("pad=({})".format(",".join(str(getattr(insn, p)) for p in _PAD_FIELDS)))
    elif isinstance(insn, (GemmInsn, AluInsn)):
        if isinstance(insn, GemmInsn):
            words = ["GEMM"] + (["reset"] if insn.reset else [])
        else:
            words = ["ALU", insn.alu_op.name]
        words.append(f"uop=[{insn.uop_bgn},{insn.uop_end})")
        words += [_pair(insn, key) for key in ("iter", "dst", "src")]
        if isinstance(insn, GemmInsn):
            words.append(_pair(insn, "wgt"))
        elif insn.use_imm:
            words.append(f"imm={insn.imm}")
        elif insn.imm:
            words.append(f"unused_imm={insn.imm}")
    else:
        words = ["FINISH"]
    flags = [f for f in _FLAGS if getattr(insn, f)]
    return " ".join(words) + (" | " + " ".join(flags) if flags else "")


def disassemble(insns: Iterable[Insn]) -> str:
    return "".join(f"{i}: {format_insn(insn)}\n" for i, insn in enumerate(insns))


def disassemble_uops(uops: Iterable[Uop]) -> str:
    return "".join(
        f"{i}: dst={u.dst_idx} src={u.src_idx} wgt={u.wgt_idx}\n" for i, u in enumerate(uops)
    )


# ---- parsing -------------------------------------------------------------------------
_NUMBER = r"-?\d+"
_VALUE = re.compile(rf"^(?:(?P<int>{_NUMBER})|\((?P<tuple>{_NUMBER}(?:,{_NUMBER})*)\)"
                    rf"|\[(?P<range>{_NUMBER},{_NUMBER})\))$")


def _parse_value(text: str) -> int | tuple[int, ...]:
    match = _VALUE.match(text)
    if not match:
        raise ValueError(f"cannot read value {text!r}")
    if match["int"] is not None:
        return int(match["int"])
    return tuple(int(v) for v in (match["tuple"] or match["range"]).split(","))


def _key_values(words: Sequence[str]) -> dict[str, int | tuple[int, ...]]:
    values: dict[str, int | tuple[int, ...]] = {}
    for word in words:
        key, eq, text = word.partition("=")
        if not eq:
            raise ValueError(f"expected key=value, got {word!r}")
        if key in values:
            raise ValueError(f"{key} given twice")
        values[key] = _parse_value(text)
    return values


def _take(values: dict, key: str, length: int, default: tuple[int, ...] | None = None) -> tuple[int, ...]:
    if key not in values:
        if default is None:
            raise ValueError(f"missing {key}=")
        return default
    value = values.pop(key)
    if not isinstance(value, tuple) or len(value) != length:
        raise ValueError(f"{key} needs {length} values")
    return value


def _take_int(values: dict, key: str) -> int:
    if key not in values:
        raise ValueError(f"missing {key}=")
    value = values.pop(key)
    if not isinstance(value, int):
        raise ValueError(f"{key} needs one integer")
    return value


def _enum(enum, name: str):
    try:
        return enum[name]
    except KeyError:
        raise ValueError(f"unknown {enum.__name__} {name!r}; known: {', '.join(enum.__members__)}") from None


def _parse_insn(body: str, flag_words: Sequence[str]) -> Insn:
    unknown_flags = sorted(set(flag_words) - set(_FLAGS))
    if unknown_flags:
        raise ValueError(f"unknown flag(s) {', '.join(unknown_flags)}; known: {', '.join(_FLAGS)}")
    flags = {f: f in flag_words for f in _FLAGS}
    words = body.split()
    if not words:
        raise ValueError("missing opcode")
    opcode = _enum(Opcode, words[0])
    fields: dict[str, object] = dict(flags)
    if opcode in (Opcode.LOAD, Opcode.STORE):
        if len(words) < 2:
            raise ValueError("missing memory type")
        values = _key_values(words[2:])
        fields.update(opcode=opcode, mem=_enum(MemId, words[1]))
        fields.update({name: _take_int(values, key) for key, name in _MEM_KEYS.items()})
        fields.update(zip(_PAD_FIELDS, _take(values, "pad", 4, (0, 0, 0, 0))))
        cls: type = MemInsn
    elif opcode in (Opcode.GEMM, Opcode.ALU):
        rest = words[1:]
        if opcode is Opcode.GEMM:
            cls = GemmInsn
            fields["reset"] = bool(rest) and rest[0] == "reset"
            rest = rest[1:] if fields["reset"] else rest
            pairs = ("dst", "src", "wgt")
        else:
            cls = AluInsn
            if not rest:
                raise ValueError("missing ALU opcode")
            fields["alu_op"] = _enum(AluOp, rest[0])
            rest = rest[1:]
            pairs = ("dst", "src")
        values = _key_values(rest)
        fields["uop_bgn"], fields["uop_end"] = _take(values, "uop", 2)
        fields.update(zip(_LOOP_PAIRS["iter"], _take(values, "iter", 2, (1, 1))))
        for key in pairs:
            fields.update(zip(_LOOP_PAIRS[key], _take(values, key, 2, (0, 0))))
        if opcode is Opcode.ALU:
            if "imm" in values and "unused_imm" in values:
                raise ValueError("give imm= or unused_imm=, not both")
            fields["use_imm"] = "imm" in values
            if "imm" in values or "unused_imm" in values:
                fields["imm"] = _take_int(values, "imm" if "imm" in values else "unused_imm")
    else:
        cls, values = FinishInsn, _key_values(words[1:])
    if values:
        raise ValueError(f"unexpected field(s) {', '.join(values)} for {opcode.name}")
    return cls(**fields)


def _lines(text: str) -> Iterable[tuple[int, int | None, str]]:
    """(line number, index prefix or None, body) of each non-empty line."""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if line:
            match = re.match(r"^(?:(\d+)\s*:)?\s*(.*)$", line)
            index = int(match[1]) if match[1] is not None else None
            yield number, index, match[2]


def _parse_lines(text: str, parse) -> list:
    items = []
    for number, index, body in _lines(text):
        try:
            if index is not None and index != len(items):
                raise ValueError(f"index {index} where {len(items)} was expected")
            items.append(parse(body))
        except (ValueError, TargetError) as err:
            message = err.message if isinstance(err, TargetError) else str(err)
            raise TargetError(f"line {number} ({body!r}): {message}") from None
    return items


def assemble(text: str) -> list[Insn]:
    """Parse a listing produced by :func:`disassemble` (or written by hand)."""

    def parse(body: str) -> Insn:
        insn_text, _, flag_text = body.partition("|")
        return _parse_insn(insn_text, flag_text.split())

    return _parse_lines(text, parse)


def assemble_uops(text: str) -> list[Uop]:
    def parse(body: str) -> Uop:
        values = _key_values(body.split())
        fields = {"dst_idx": _take_int(values, "dst")}
        fields.update({name: _take_int(values, key) for key, name in _UOP_OPTIONAL.items() if key in values})
        uop = Uop(**fields)
        if values:
            raise ValueError(f"unexpected field(s) {', '.join(values)}")
        return uop

    return _parse_lines(text, parse)

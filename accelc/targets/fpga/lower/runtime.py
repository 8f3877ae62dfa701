"""Running and storing a :class:`~.network.NetworkProgram`.

:func:`run` packs host tensors (plain NCHW / NC int8) into a fresh DRAM image, simulates
the program (hazard and race checks on by default) and unpacks the outputs.

:func:`save` writes the artifact files — ``instructions.bin`` (128-bit words),
``uops.bin`` (32-bit words), ``weights.bin`` (int8 WGT region: OIHW16o16i blocks and
constant blocks), ``acc.bin`` (int32 ACC region), ``memory_map.json`` — all little-endian;
:func:`load` reads them back into a program that runs identically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np

from accelc.errors import ArtifactError, DataError
from accelc.targets.fpga.config import VTAConfig
from accelc.targets.fpga.dram import DramImage
from accelc.targets.fpga.isa import decode_program, encode_program
from accelc.targets.fpga.lower.layout import pack_activation, unpack_activation
from accelc.targets.fpga.lower.network import NetworkProgram, TensorInfo
from accelc.targets.fpga.sim import simulate
from accelc.targets.fpga.stats import SimStats

FILES = ("instructions.bin", "uops.bin", "weights.bin", "acc.bin", "memory_map.json")


def dram_image(program: NetworkProgram, inputs: Mapping[str, np.ndarray]) -> DramImage:
    """A DRAM image with the program's data and ``inputs`` packed into their regions."""
    c = program.config
    missing = [name for name in program.inputs if name not in inputs]
    unknown = [name for name in inputs if name not in program.inputs]
    if missing or unknown:
        raise DataError(f"accelerator inputs: expected {program.inputs}"
                        + (f", missing {missing}" if missing else "") + (f", unknown {unknown}" if unknown else ""))
    arenas = {name: np.zeros((n, c.BATCH, c.BLOCK_OUT if name == "out" else c.BLOCK_IN), np.int8)
              for name, n in program.arenas.items()}
    for arena, base, value in program.constants.values():
        arenas[arena][base] = value
    for name in program.inputs:
        info: TensorInfo = program.tensors[name]
        x = np.asarray(inputs[name])
        if x.dtype != np.int8 or tuple(x.shape) != tuple(info.shape):
            raise DataError(f"accelerator input {name}: expected int8 {list(info.shape)}, got "
                            f"{x.dtype} {list(x.shape)}")
        packed = pack_activation(x, c.BATCH, info.block).reshape(-1, c.BATCH, info.block)
        arenas[info.arena][info.base: info.base + len(packed)] = packed
    inp = arenas.get("act", arenas.get("inp"))
    out = arenas.get("act", arenas.get("out"))
    return DramImage(c, inp=inp, out=out, wgt=program.wgt, acc=program.acc, uop=program.uop_words)


def read_tensor(program: NetworkProgram, dram: DramImage, name: str) -> np.ndarray:
    """Tensor ``name`` unpacked from a (simulated) DRAM image."""
    c, info = program.config, program.tensors[name]
    region = dram.inp if info.arena == "inp" else dram.out
    return unpack_activation(region[info.base: info.base + info.elements], info.shape, c.BATCH, info.block)


def run(program: NetworkProgram, inputs: Mapping[str, np.ndarray], *, check_hazards: bool = True,
        check_races: bool = True) -> tuple[dict, SimStats]:
    dram = dram_image(program, inputs)
    stats = simulate(program.instructions, dram, check_hazards=check_hazards, check_races=check_races)
    return {name: read_tensor(program, dram, name) for name in program.outputs}, stats


def files(program: NetworkProgram) -> dict[str, bytes]:
    """The artifact files (:data:`FILES`) as bytes; equal programs give equal bytes."""
    return {
        "instructions.bin": encode_program(program.instructions),
        "uops.bin": program.uop_words.astype("<u4").tobytes(),
        "weights.bin": program.wgt.astype(np.int8).tobytes(),
        "acc.bin": program.acc.astype("<i4").tobytes(),
        "memory_map.json": (json.dumps(program.memory_map, indent=1, sort_keys=True) + "\n").encode(),
    }


def save(program: NetworkProgram, directory) -> list[Path]:
    """Write :func:`files` into ``directory`` (created if needed); returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in files(program).items():
        (directory / name).write_bytes(data)
        paths.append(directory / name)
    return paths


def load(directory) -> NetworkProgram:
    """A program from :func:`save`'s files (without the lowering details and layer table)."""
    directory = Path(directory)
    try:
        blobs = {name: (directory / name).read_bytes() for name in FILES}
        memory_map = json.loads(blobs["memory_map.json"])
    except (OSError, ValueError) as err:
        raise ArtifactError(f"cannot read the fpga program in {directory}: {err}") from None
    config = VTAConfig.from_dict(memory_map["config"])
    bo, bi, batch = config.BLOCK_OUT, config.BLOCK_IN, config.BATCH
    tensors = {name: TensorInfo(name, tuple(t["shape"]), t["memory"], t["base"], tuple(t["packed_shape"]), t["role"])
               for name, t in memory_map["tensors"].items()}
    constants = {}
    for name, entry in memory_map["constants"].items():
        constants[name] = (entry["memory"], entry["base"], np.array(entry["values"], np.int8))
    arenas = {name: m["elements"] for name, m in memory_map["memories"].items() if name in ("act", "inp", "out")}
    return NetworkProgram(
        config=config, instructions=decode_program(blobs["instructions.bin"]),
        uop_words=np.frombuffer(blobs["uops.bin"], "<u4").astype(np.uint32),
        wgt=np.frombuffer(blobs["weights.bin"], np.int8).reshape(-1, bo, bi).copy(),
        acc=np.frombuffer(blobs["acc.bin"], "<i4").astype(np.int32).reshape(-1, batch, bo),
        arenas=arenas, constants=constants, tensors=tensors, inputs=memory_map["inputs"],
        outputs=memory_map["outputs"], regions=memory_map["data"])

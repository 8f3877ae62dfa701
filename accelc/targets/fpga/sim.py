"""VTA simulator: the load/compute/store modules, their dependency tokens, and statistics.

Execution model (``shared/reference/vta.md``): instructions are dispatched in program order
to three queues — LOAD INP/WGT to the *load* module; LOAD UOP/ACC, GEMM, ALU, FINISH to
*compute*; STORE to *store*. Modules talk only through four FIFOs of 1-bit tokens,
load→compute, compute→load, compute→store, store→compute. Each module has a *prev* and a
*next* neighbour (load: –/compute, compute: load/store, store: compute/–); ``pop_prev`` /
``pop_next`` pop a token sent by that neighbour before the instruction runs,
``push_prev`` / ``push_next`` push one to it after. Queues and FIFOs are unbounded.

:func:`simulate` runs the modules cooperatively — a module executes its next instruction
as soon as the tokens it pops are available — and raises :class:`SimulationError`, naming
the instruction and its disassembly, when the program is invalid:

* statically: no FINISH, FINISH not last or not unique, pop flags on FINISH, a flag that
  names a neighbour the module does not have, a push whose token nothing pops;
* while running: deadlock (no module can proceed, instructions remain — each blocked
  module and the FIFO it waits on are listed), FINISH not ordered by tokens after every
  load and store instruction (the host would see "done" while they may still run), the
  datapath's checks (bounds, memory types, hazards — see :mod:`.datapath`) and, when
  ``check_races``, SRAM accesses that the tokens leave unordered (see :mod:`.races`).

DRAM is read and written in place. The returned :class:`~.stats.SimStats` holds fsim's
counters and the cycle model's estimate (see :mod:`.stats`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import IntEnum
from typing import Sequence

from accelc.targets.fpga.datapath import Datapath, SimulationError
from accelc.targets.fpga.disasm import format_insn
from accelc.targets.fpga.dram import DramImage
from accelc.targets.fpga.isa import FinishInsn, Insn, MemId, MemInsn, Opcode
from accelc.targets.fpga.races import RaceDetector
from accelc.targets.fpga.stats import MODULES, CycleModel, SimStats

__all__ = ["Module", "SimulationError", "module_of", "simulate"]


class Module(IntEnum):
    LOAD = 0
    COMPUTE = 1
    STORE = 2


#: (prev, next) neighbour of each module.
_NEIGHBOURS = {
    Module.LOAD: (None, Module.COMPUTE),
    Module.COMPUTE: (Module.LOAD, Module.STORE),
    Module.STORE: (Module.COMPUTE, None),
}

Fifo = tuple[Module, Module]  # (sender, receiver)


def _fifo_name(fifo: Fifo) -> str:
    return f"{MODULES[fifo[0]]}→{MODULES[fifo[1]]}"


def module_of(insn: Insn) -> Module:
    """The module whose queue receives ``insn``."""
    if isinstance(insn, MemInsn):
        if insn.opcode is Opcode.STORE:
            return Module.STORE
        return Module.LOAD if insn.mem in (MemId.INP, MemId.WGT) else Module.COMPUTE
    return Module.COMPUTE


@dataclass(frozen=True)
class _Token:
    time: int  # cycle at which it was pushed
    known: tuple[int, ...]  # the pusher's knowledge of completed instructions (see races)


@dataclass(frozen=True)
class _Routing:
    """Where an instruction runs and which FIFOs it pops from / pushes to."""

    module: Module
    pops: tuple[Fifo, ...]
    pushes: tuple[Fifo, ...]


def _describe(insns: Sequence[Insn], index: int) -> str:
    return f"instruction {index} `{format_insn(insns[index])}`"


def _route(insns: Sequence[Insn], index: int) -> _Routing:
    insn = insns[index]
    module = module_of(insn)
    prev, next_ = _NEIGHBOURS[module]
    pops, pushes = [], []
    for flag, neighbour, pop in (("pop_prev", prev, True), ("pop_next", next_, True),
                                 ("push_prev", prev, False), ("push_next", next_, False)):
        if not getattr(insn, flag):
            continue
        if neighbour is None:
            side = flag.split("_")[1]
            raise SimulationError(
                f"{_describe(insns, index)}: {flag} is invalid — it runs on the "
                f"{MODULES[module]} module, which has no {side} neighbour"
            )
        (pops if pop else pushes).append((neighbour, module) if pop else (module, neighbour))
    if isinstance(insn, FinishInsn) and pops:
        raise SimulationError(f"{_describe(insns, index)}: FINISH must not pop tokens")
    return _Routing(module, tuple(pops), tuple(pushes))


def _check_program(insns: Sequence[Insn]) -> list[_Routing]:
    """Static checks; returns each instruction's routing."""
    finishes = [i for i, insn in enumerate(insns) if isinstance(insn, FinishInsn)]
    if not finishes:
        raise SimulationError("the program has no FINISH instruction; end it with one")
    if finishes != [len(insns) - 1]:
        raise SimulationError(
            f"FINISH must be the last instruction and appear once; found at {finishes} "
            f"in a program of {len(insns)} instructions"
        )
    routes = [_route(insns, i) for i in range(len(insns))]
    pushes: dict[Fifo, list[int]] = {}
    pop_counts: dict[Fifo, int] = {}
    for index, route in enumerate(routes):
        for fifo in route.pushes:
            pushes.setdefault(fifo, []).append(index)
        for fifo in route.pops:
            pop_counts[fifo] = pop_counts.get(fifo, 0) + 1
    for fifo, pushers in pushes.items():
        popped = pop_counts.get(fifo, 0)
        if len(pushers) > popped:
            raise SimulationError(
                f"{_describe(insns, pushers[popped])} pushes a {_fifo_name(fifo)} token that no "
                f"instruction pops ({len(pushers)} pushes, {popped} pops on that FIFO)"
            )
    return routes


def simulate(
    insns: Sequence[Insn],
    dram: DramImage,
    *,
    check_hazards: bool = True,
    check_races: bool = True,
    cycle_model: CycleModel = CycleModel(),
    execute: bool = True,
) -> SimStats:
    """Run a program on ``dram`` (modified in place); see the module doc for the checks.

    With ``execute=False`` only the token schedule, counters and cycle model run (no data
    moves, no datapath or race checks): the same :class:`SimStats`, for cost estimates."""
    config = dram.config
    routes = _check_program(insns)
    queues = [[i for i, r in enumerate(routes) if r.module is m] for m in Module]
    datapath = Datapath(dram, check_hazards=check_hazards) if execute else None
    races = (
        RaceDetector(config, MODULES, queues, lambda i: format_insn(insns[i]))
        if check_races and execute else None
    )
    fifos: dict[Fifo, deque[_Token]] = {
        (a, b): deque() for a in Module for b in _NEIGHBOURS[a] if b is not None
    }
    position = [0] * len(Module)
    clock = [0] * len(Module)
    known = [[0] * len(Module) for _ in Module]  # known[m][n]: n's insns m knows complete
    stats = SimStats(clock_mhz=config.clock_mhz)

    def step(module: Module) -> bool:
        """Execute ``module``'s next instruction if its tokens are there."""
        index = queues[module][position[module]]
        insn, route = insns[index], routes[index]
        if not all(fifos[fifo] for fifo in route.pops):
            return False
        start = clock[module]
        for fifo in route.pops:
            token = fifos[fifo].popleft()
            start = max(start, token.time)
            known[module] = [max(a, b) for a, b in zip(known[module], token.known)]
        if isinstance(insn, FinishInsn):
            _check_finish_ordered(insns, index, queues, known[module])
        try:
            accesses = datapath.execute(insn) if execute else []
            if races is not None:
                races.check(module, known[module], accesses)
        except SimulationError as err:
            raise SimulationError(f"{_describe(insns, index)}: {err.message}", hint=err.hint) from None
        cycles = cycle_model.insn_cycles(insn, config)
        clock[module] = start + cycles
        stats.busy_cycles[MODULES[module]] += cycles
        stats.count(insn, config)
        known[module][module] += 1
        for fifo in route.pushes:
            fifos[fifo].append(_Token(clock[module], tuple(known[module])))
        position[module] += 1
        return True

    while any(position[m] < len(queues[m]) for m in Module):
        progressed = False
        for module in Module:
            while position[module] < len(queues[module]) and step(module):
                progressed = True
        if not progressed:
            raise SimulationError(_deadlock_report(insns, routes, queues, position, fifos))
    stats.total_cycles = max(clock)
    return stats


def _check_finish_ordered(insns, finish: int, queues, known: Sequence[int]) -> None:
    for module in (Module.LOAD, Module.STORE):
        if known[module] < len(queues[module]):
            pending = queues[module][known[module]]
            raise SimulationError(
                f"{_describe(insns, finish)} is not ordered after {_describe(insns, pending)} "
                f"({MODULES[module]} module): the host could see the program finish before it ran",
                hint="make the last load/store instructions push tokens that a compute "
                "instruction before FINISH pops",
            )


def _deadlock_report(insns, routes, queues, position, fifos) -> str:
    lines = ["deadlock: no module can proceed"]
    for module in Module:
        if position[module] == len(queues[module]):
            lines.append(f"  {MODULES[module]}: done")
            continue
        index = queues[module][position[module]]
        empty = [_fifo_name(f) for f in routes[index].pops if not fifos[f]]
        lines.append(
            f"  {MODULES[module]}: {_describe(insns, index)} waits for a token on {', '.join(empty)}"
        )
    return "\n".join(lines)

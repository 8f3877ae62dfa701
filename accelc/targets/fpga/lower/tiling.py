"""Per-layer tiling: the knobs, the SRAM they need, an analytic cost model, and the search.

A :class:`Tiling` fixes ``tile_h × tile_w`` output positions, ``tile_co`` output-channel
blocks per tile, ``tile_ci`` input-channel blocks per reduction chunk, ``threads`` (1, or 2
for double buffering — the "virtual threads" of VTA) and the tile ``order`` (see
:func:`.schedule.tiles`). :func:`plan_sram` lays the layer out in the INP/WGT/ACC buffers
(halved where double buffered; constants first) or returns None when it does not fit.

:func:`search` enumerates tilings (each knob over the distinct values ``ceil(n/k)``), keeps
those that fit, ranks them with :func:`estimate` (DRAM bytes and a cycle estimate from the
simulator's cycle model: compute = GEMM + ALU + per-instruction latency; load/store = DMA
latency + bytes / bandwidth; overlapped when double buffered) and then asks ``evaluate``
for the exact cycles and bytes of the best few — the caller generates their programs and runs
the simulator's timing model on them — and returns the fastest, except that among tilings
within :data:`CYCLE_TOLERANCE` of the fastest the one moving the fewest DRAM bytes wins.
Candidates whose micro-ops do not fit the UOP buffer are rejected by ``evaluate``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Callable, Iterator

from accelc.errors import UnsupportedError
from accelc.targets.fpga.config import VTAConfig
from accelc.targets.fpga.isa import MemId
from accelc.targets.fpga.lower.epilogue import Epilogue
from accelc.targets.fpga.lower.layer import ConvGeometry
from accelc.targets.fpga.lower.layout import ceil_div
from accelc.targets.fpga.lower.schedule import halves, version_counts
from accelc.targets.fpga.stats import CycleModel, SimStats

#: Largest ACC region a tile with fewer than 3 distinct accumulators needs (see codegen).
MIN_ACC_TILE = 4
#: Simulated cycle counts within this fraction of the fastest count as equally fast; among
#: those the search takes the one that moves the fewest DRAM bytes.
CYCLE_TOLERANCE = 0.005


@dataclass(frozen=True)
class Tiling:
    tile_h: int
    tile_w: int
    tile_co: int
    tile_ci: int
    threads: int = 2
    order: str = "spatial"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SramPlan:
    """Element/block bases of the layer's regions; a tuple holds one base per half."""

    inp_ones: int
    inp_chunk: tuple[int, ...]
    inp_res: tuple[int, ...]
    wgt_const: int
    wgt_chunk: tuple[int, ...]
    acc_const: int
    acc_tile: tuple[int, ...]
    usage: dict  # elements used per buffer


@dataclass(frozen=True)
class Estimate:
    """The analytic model's DRAM bytes (per memory) and cycles for one tiling."""

    bytes: dict
    cycles: int

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())


@lru_cache(maxsize=64)
def _buffers(config: VTAConfig) -> dict:
    """Element bytes and depths of every memory (hot in the search)."""
    return {"bytes": {m: config.elem_bytes(m) for m in MemId}, "depth": {m: config.depth(m) for m in MemId}}


def tile_input_dims(g: ConvGeometry, th: int, tw: int) -> tuple[int, int]:
    """Rows and columns of the (padded) input block a ``th × tw`` output tile reads."""
    return (th - 1) * g.sram_row_step + g.kh, (tw - 1) * g.sw + g.kw


def plan_sram(g: ConvGeometry, epilogue: Epilogue, t: Tiling, config: VTAConfig,
              residual: bool) -> SramPlan | None:
    counts = version_counts(g, t)
    ih, iw = tile_input_dims(g, t.tile_h, t.tile_w)
    blocks = t.tile_co if g.depthwise else t.tile_ci
    chunk = blocks * ih * iw
    res = t.tile_co * t.tile_h * t.tile_w if residual else 0
    wgt = t.tile_co * (1 if g.depthwise else t.tile_ci) * g.taps
    acc = max(t.tile_co * t.tile_h * t.tile_w, MIN_ACC_TILE)

    def layout(first: int, *regions: tuple[int, int]) -> list[tuple[int, ...]]:
        bases, at = [], first
        for size, count in regions:
            bases.append(tuple(at + h * size for h in range(count)))
            at += size * count
        bases.append((at,))
        return bases

    ones = 1 if epilogue.needs_ones else 0
    inp_chunk, inp_res, (inp_end,) = layout(ones, (chunk, halves(t.threads, counts["inp"])),
                                            (res, halves(t.threads, counts["res"])))
    wgt_const = 0
    wgt_chunk, (wgt_end,) = layout(len(epilogue.wgt_blocks), (wgt, halves(t.threads, counts["wgt"])))
    acc_tile, (acc_end,) = layout(len(epilogue.acc_rows), (acc, halves(t.threads, counts["acc"])))
    usage = {"INP": inp_end, "WGT": wgt_end, "ACC": acc_end}
    depth = _buffers(config)["depth"]
    if inp_end > depth[MemId.INP] or wgt_end > depth[MemId.WGT] or acc_end > depth[MemId.ACC]:
        return None
    return SramPlan(inp_ones=0, inp_chunk=inp_chunk, inp_res=inp_res, wgt_const=wgt_const,
                    wgt_chunk=wgt_chunk, acc_const=0, acc_tile=acc_tile, usage=usage)


def _sizes(n: int) -> list[int]:
    return sorted({ceil_div(n, k) for k in range(1, n + 1)})


@lru_cache(maxsize=4096)
def _span_sum(g: ConvGeometry, out: int, tile: int, axis: str) -> int:
    return sum(g.input_span(start, min(tile, out - start), axis)[1] for start in range(0, out, tile))


def estimate(g: ConvGeometry, epilogue: Epilogue, t: Tiling, config: VTAConfig, residual: bool,
             model: CycleModel = CycleModel()) -> Estimate:
    counts = version_counts(g, t)
    n_y, n_x = ceil_div(g.ho, t.tile_h), ceil_div(g.wo, t.tile_w)
    n_sp, n_co = g.nb * n_y * n_x, ceil_div(g.ob, t.tile_co)
    n_ci = 1 if g.depthwise else ceil_div(g.cb, t.tile_ci)
    tiles = n_sp * n_co
    in_blocks = g.ob if g.depthwise else g.cb
    sizes = _buffers(config)["bytes"]
    e_inp, e_wgt, e_out, e_acc = (sizes[m] for m in (MemId.INP, MemId.WGT, MemId.OUT, MemId.ACC))
    pass_elems = g.nb * in_blocks * _span_sum(g, g.ho, t.tile_h, "y") * _span_sum(g, g.wo, t.tile_w, "x")
    inp_passes = counts["inp"] / (n_sp * (n_co if g.depthwise else n_ci))
    wgt_blocks = g.ob * (1 if g.depthwise else g.cb) * g.taps
    wgt_passes = counts["wgt"] / (n_co * n_ci)
    elems = g.nb * g.ob * g.ho * g.wo
    traffic = {
        "inp": int(inp_passes * pass_elems * e_inp) + (e_inp if epilogue.needs_ones else 0)
        + (elems * e_out if residual else 0),
        "wgt": int(wgt_passes * wgt_blocks * e_wgt) + len(epilogue.wgt_blocks) * e_wgt,
        "acc": len(epilogue.acc_rows) * e_acc,
        "out": elems * e_out,
    }
    bandwidth, latency = config.dram_bytes_per_cycle, model.dma_latency_cycles
    chunk_blocks = t.tile_co if g.depthwise else t.tile_ci
    load_insns = counts["inp"] * chunk_blocks + counts["wgt"] + (tiles * t.tile_co if residual else 0)
    load = (traffic["inp"] + traffic["wgt"]) / bandwidth + latency * load_insns
    store = traffic["out"] / bandwidth + latency * tiles * t.tile_co
    insns = counts["steps"] + tiles * (1 + len(epilogue.steps))
    # convolution kernels: one per combination of buffer halves in use (at most one per step)
    inp_h, wgt_h = halves(t.threads, counts["inp"]), halves(t.threads, counts["wgt"])
    kernels = min(counts["steps"], max(inp_h, wgt_h) * halves(t.threads, counts["acc"]))
    uops = kernels * g.taps * t.tile_h * t.tile_w * (t.tile_co if t.tile_h * t.tile_w < 3 else 1)
    traffic["uop"] = uops * sizes[MemId.UOP]
    compute = (g.gemm_ops + elems * (1 + epilogue.gemm_ops_per_element)
               + model.alu_cycles_per_op * elems * epilogue.alu_ops_per_element
               + model.compute_latency_cycles * insns + (traffic["acc"] + traffic["uop"]) / bandwidth)
    ih, iw = tile_input_dims(g, t.tile_h, t.tile_w)
    split_start = not g.depthwise and t.tile_h * t.tile_w >= 3  # see codegen: weights stream per block
    if split_start:
        uops += (t.tile_co - 1) * g.taps * t.tile_h * t.tile_w
        compute += (t.tile_co - 1) * g.taps * t.tile_h * t.tile_w * sizes[MemId.UOP] / bandwidth
    first_load = (chunk_blocks * ih * iw * e_inp + (1 if split_start else t.tile_co)
                  * (1 if g.depthwise else t.tile_ci) * g.taps * e_wgt) / bandwidth + latency * (chunk_blocks + 1)
    last_store = t.tile_co * t.tile_h * t.tile_w * e_out / bandwidth + latency * t.tile_co
    if t.threads == 2:
        cycles = max(compute, load, store) + first_load + last_store
    else:
        cycles = compute + load + store
    return Estimate(traffic, int(cycles))


def candidates(g: ConvGeometry, epilogue: Epilogue, config: VTAConfig, residual: bool) -> Iterator[Tiling]:
    """Every tiling (over the knob values of the module doc) whose buffers fit."""
    ci_values = [1] if g.depthwise else _sizes(g.cb)
    for threads in (2, 1):
        for order in ("spatial", "co"):
            for co in _sizes(g.ob):
                for ci in ci_values:
                    for th in _sizes(g.ho):
                        for tw in _sizes(g.wo):
                            tiling = Tiling(th, tw, co, ci, threads, order)
                            if plan_sram(g, epilogue, tiling, config, residual) is not None:
                                yield tiling
                            elif plan_sram(g, epilogue, replace(tiling, threads=1), config, residual) is None:
                                break  # even single-buffered usage (monotone in tw) is too big


def search(g: ConvGeometry, epilogue: Epilogue, config: VTAConfig, residual: bool,
           evaluate: Callable[[Tiling], SimStats | None], *, top: int = 8,
           tolerance: float = CYCLE_TOLERANCE, layer_name: str = "") -> tuple[Tiling, Estimate, SimStats]:
    """The best tiling: ``(tiling, its estimate, its simulated stats)`` (see module doc).

    ``evaluate(tiling)`` returns the simulated stats, or None when the tiling cannot be
    lowered. Evaluated: the ``top`` fastest by the estimate, and the ``top // 2`` with the
    least DRAM traffic among those estimated within twice ``tolerance`` of the fastest.
    Chosen: the least traffic among those simulated within ``tolerance`` of the fastest."""
    ranked = sorted(((estimate(g, epilogue, t, config, residual), t)
                     for t in candidates(g, epilogue, config, residual)),
                    key=lambda et: (et[0].cycles, et[0].total_bytes))
    if not ranked:
        raise UnsupportedError(
            f"layer {layer_name}: no tiling fits the accelerator buffers of config {config.name}",
            hint="use a configuration with larger buffers or keep this layer on the host")
    limit = ranked[0][0].cycles * (1 + 2 * tolerance)
    frugal = sorted((et for et in ranked if et[0].cycles <= limit), key=lambda et: et[0].total_bytes)
    results = []
    for group, wanted in ((ranked, top), (frugal, top // 2)):
        found = 0
        for est, tiling in group:
            if found >= wanted:
                break
            if any(tiling == r[0] for r in results):
                found += 1
                continue
            stats = evaluate(tiling)
            if stats is not None:
                results.append((tiling, est, stats))
                found += 1
    if not results:
        raise UnsupportedError(f"layer {layer_name}: no tiling's micro-ops fit the UOP buffer of config "
                               f"{config.name}", hint="keep this layer on the host")
    fastest = min(stats.total_cycles for _, _, stats in results)
    eligible = [r for r in results if r[2].total_cycles <= fastest * (1 + tolerance)]
    return min(eligible, key=lambda r: (dram_bytes(r[2]), r[2].total_cycles))


def dram_bytes(stats: SimStats) -> int:
    """Bytes a simulated program moved between DRAM and the accelerator."""
    return (stats.inp_load_nbytes + stats.wgt_load_nbytes + stats.acc_load_nbytes + stats.uop_load_nbytes
            + stats.out_store_nbytes)

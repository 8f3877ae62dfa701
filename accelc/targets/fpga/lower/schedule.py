"""The order in which a layer's tiles are computed, and the dependency tokens between them.

A :class:`~.tiling.Tiling` cuts the output into tiles (batch group × output-channel blocks ×
rows × columns) and each tile's reduction into chunks of input-channel blocks. One *step*
computes one (tile, chunk): its load group brings the data it needs into INP/WGT, its
compute group runs the GEMMs, and the tile's last step also runs the epilogue; the tile is
then stored.

Each SRAM region whose contents change — the INP chunk, the WGT chunk, the residual tile, the
ACC tile — is a sequence of *versions* (a new version whenever a step needs different data;
consecutive steps needing the same data share it, e.g. weights resident across tiles).
With two threads a region has two halves and versions alternate between them (double
buffering); otherwise one.

Tokens (guaranteed by :func:`build_schedule`, checked by the simulator's race detector):
* load→compute: every non-empty load group pushes once; its step's compute group pops.
* compute→load: a load group that overwrites a half waits for the step that last read the
  version it replaces. Waits are made monotone (a later load waits at least as long) and a
  group pops only when it waits longer than the previous pop, so pushes and pops pair up in
  FIFO order; the pushing step is always earlier than the popping group's step.
* compute→store: a tile's epilogue pushes, its first STORE pops.
* store→compute: the reset of a tile that reuses an ACC half pops the token pushed by the
  store of the tile that used it before.
Every pop's matching push precedes it in program order (see ``load_early``), so the program
is also deadlock-free on hardware with bounded instruction queues.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from accelc.targets.fpga.lower.layer import ConvGeometry
from accelc.targets.fpga.lower.layout import ceil_div


@dataclass(frozen=True)
class Tile:
    index: int
    nb: int  # batch group
    co0: int  # first output channel block
    co_n: int
    y0: int  # first output row
    th: int
    x0: int  # first output column
    tw: int


@dataclass
class Step:
    index: int
    tile: Tile
    ci0: int  # first input channel block of the chunk (depthwise: = co0)
    ci_n: int
    first: bool  # first step of its tile
    last: bool  # last step of its tile
    inp_half: int = 0
    wgt_half: int = 0
    res_half: int = 0
    acc_half: int = 0
    load_inp: bool = False
    load_wgt: bool = False
    load_res: bool = False
    load_pop: bool = False  # the load group pops compute→load
    war_push: bool = False  # the compute group pushes compute→load
    acc_pop: bool = False  # the tile's reset pops store→compute
    store_push: bool = False  # the tile's last STORE pushes store→compute
    load_early: bool = False  # the load group is emitted before the previous compute group

    @property
    def has_loads(self) -> bool:
        return self.load_inp or self.load_wgt or self.load_res


def _splits(total: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(size, total - start)) for start in range(0, total, size)]


def tiles(geometry: ConvGeometry, tiling) -> list[Tile]:
    """The tiles in execution order (``tiling.order``: ``"spatial"`` = output channels
    innermost, so an input tile is reused; ``"co"`` = spatial innermost, weights reused)."""
    g = geometry
    spatial = [(nb, y0, th, x0, tw) for nb in range(g.nb) for y0, th in _splits(g.ho, tiling.tile_h)
               for x0, tw in _splits(g.wo, tiling.tile_w)]
    channels = _splits(g.ob, tiling.tile_co)
    if tiling.order == "spatial":
        pairs = [(s, c) for s in spatial for c in channels]
    else:
        pairs = [(s, c) for c in channels for s in spatial]
    return [Tile(i, s[0], c[0], c[1], s[1], s[2], s[3], s[4]) for i, (s, c) in enumerate(pairs)]


class _Versions:
    """A region holding versions of some data, in ``halves`` alternating halves."""

    def __init__(self, halves: int):
        self.halves = halves
        self.key = object()
        self.count = 0
        self.last_reader: list[int] = []

    def use(self, key, step: int) -> tuple[int, bool, int]:
        """Record that ``step`` reads the data ``key``: ``(half, loaded now, step that must
        finish before the load, or -1)``."""
        loaded = key != self.key
        need = -1
        if loaded:
            self.key = key
            if self.count >= self.halves:
                need = self.last_reader[self.count - self.halves]
            self.count += 1
            self.last_reader.append(step)
        self.last_reader[-1] = step
        return (self.count - 1) % self.halves, loaded, need


def halves(threads: int, versions: int) -> int:
    return 2 if threads == 2 and versions > 1 else 1


@lru_cache(maxsize=1 << 14)
def version_counts(geometry: ConvGeometry, tiling) -> dict[str, int]:
    """Number of versions of each region (what :func:`build_schedule` will create)."""
    g = geometry
    extents = {"sp": g.nb * ceil_div(g.ho, tiling.tile_h) * ceil_div(g.wo, tiling.tile_w),
               "co": ceil_div(g.ob, tiling.tile_co),
               "ci": 1 if g.depthwise else ceil_div(g.cb, tiling.tile_ci)}
    order = ["sp", "co", "ci"] if tiling.order == "spatial" else ["co", "sp", "ci"]

    def runs(key: set) -> int:
        loops = [name for name in order if extents[name] > 1]
        inner = [i for i, name in enumerate(loops) if name in key]
        count = 1
        for name in loops[: inner[-1] + 1] if inner else []:
            count *= extents[name]
        return count

    tiles_count = extents["sp"] * extents["co"]
    return {"inp": runs({"sp", "co"} if g.depthwise else {"sp", "ci"}), "wgt": runs({"co", "ci"}),
            "res": tiles_count, "acc": tiles_count, "steps": tiles_count * extents["ci"]}


def build_schedule(geometry: ConvGeometry, tiling, residual: bool) -> list[Step]:
    g = geometry
    counts = version_counts(geometry, tiling)
    inp, wgt = _Versions(halves(tiling.threads, counts["inp"])), _Versions(halves(tiling.threads, counts["wgt"]))
    res = _Versions(halves(tiling.threads, counts["res"]))
    acc_halves = halves(tiling.threads, counts["acc"])
    tile_list = tiles(geometry, tiling)
    steps: list[Step] = []
    needs: list[int] = []
    for tile in tile_list:
        chunks = [(tile.co0, tile.co_n)] if g.depthwise else _splits(g.cb, tiling.tile_ci)
        for c, (ci0, ci_n) in enumerate(chunks):
            k = len(steps)
            step = Step(k, tile, ci0, ci_n, first=c == 0, last=c == len(chunks) - 1)
            spatial = (tile.nb, tile.y0, tile.th, tile.x0, tile.tw)
            inp_key = (spatial, tile.co0, tile.co_n) if g.depthwise else (spatial, ci0, ci_n)
            step.inp_half, step.load_inp, need_inp = inp.use(inp_key, k)
            step.wgt_half, step.load_wgt, need_wgt = wgt.use((tile.co0, tile.co_n, ci0, ci_n), k)
            need = max(need_inp, need_wgt)
            if residual and step.first:
                step.res_half, step.load_res, need_res = res.use(tile.index, k)
                need = max(need, need_res)
            if residual and step.last:  # the residual is read by the tile's last step
                step.res_half = res.use(tile.index, k)[0]
            step.acc_half = tile.index % acc_halves
            if step.first:
                step.acc_pop = tile.index >= acc_halves
            if step.last:
                step.store_push = tile.index + acc_halves < len(tile_list)
            steps.append(step)
            needs.append(need)
    _assign_war_tokens(steps, needs)
    return steps


def _assign_war_tokens(steps: list[Step], needs: list[int]) -> None:
    waited = -1
    for step, need in zip(steps, needs):
        if not step.has_loads:
            continue
        assert need < step.index, "a load would wait for its own step"
        if need > waited:
            step.load_pop = True
            steps[need].war_push = True
            waited = need
        # emit before the previous compute group when everything it waits for precedes it
        step.load_early = step.index > 0 and waited <= step.index - 2

"""Accelerator layers: the unit :func:`~.network.compile_network` lowers, and their geometry.

An :class:`AccelLayer` is one pow2-quantized conv2d or linear layer with its fused epilogue
(bias, per-channel rounding shift, clip) and optionally a fused residual add
(:class:`Residual`, the QAdd that consumes the layer's int8 output). Its meaning is exactly
:meth:`AccelLayer.reference` (see :mod:`.reference`).

Construction normalises and checks the layer itself (dtypes, shapes, ranges) and raises
:class:`~accelc.errors.TargetError` when it is malformed. Whether a given accelerator
configuration can run it is a separate question, answered by :func:`unsupported_reason`
(a sentence, or None) — the graph-level target uses it to keep such layers on the host.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from accelc.errors import TargetError
from accelc.targets.fpga.config import VTAConfig
from accelc.targets.fpga.lower import reference
from accelc.targets.fpga.lower.layout import activation_view, ceil_div

#: Largest left shift of the residual operand that fits an int8 identity weight (2^6 = 64).
MAX_RESIDUAL_WEIGHT_SHIFT = 6


@dataclass(frozen=True)
class Residual:
    """A QAdd fused into the layer's epilogue: ``out = QAdd(t, r)`` where ``t`` is the
    layer's own int8 output (exponent ``ea``) and ``r`` the int8 tensor ``tensor``
    (exponent ``eb``, same shape as the output); ``ey`` is the sum's exponent."""

    tensor: str
    ea: int
    eb: int
    ey: int
    lo: int = -128
    hi: int = 127

    @property
    def em(self) -> int:
        return min(self.ea, self.eb)

    @property
    def t_shift(self) -> int:
        """Left shift applied to the conv output ``t``."""
        return self.ea - self.em

    @property
    def r_shift(self) -> int:
        """Left shift applied to the residual ``r``."""
        return self.eb - self.em

    @property
    def out_shift(self) -> int:
        """``rshift_round`` amount of the sum."""
        return self.ey - self.em


def _pair(value, what: str, layer: str) -> tuple[int, int]:
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise TargetError(f"layer {layer}: {what} must be an int or a pair of ints, not {value!r}")
    return int(pair[0]), int(pair[1])


def _int_array(value, dtype, what: str, layer: str, lo: int, hi: int) -> np.ndarray:
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.integer):
        raise TargetError(f"layer {layer}: {what} must be integers, got {array.dtype}")
    if array.size and (array.min() < lo or array.max() > hi):
        raise TargetError(f"layer {layer}: {what} must lie in {lo}..{hi}, got "
                          f"{array.min()}..{array.max()}")
    return np.ascontiguousarray(array.astype(dtype))


@dataclass(eq=False)
class AccelLayer:
    """One int8 conv2d (``kind="conv"``, NCHW) or linear (``kind="linear"``, [N, C]) layer."""

    name: str
    kind: str
    input: str
    input_shape: tuple
    output: str
    output_shape: tuple
    weight: np.ndarray  # int8 OIHW (conv) or OI (linear)
    bias: np.ndarray | None = None  # int32 [O]
    shift: np.ndarray | int = 0  # per output channel, 0..31
    lo: int = -128
    hi: int = 127
    stride: int | tuple = 1
    padding: int | tuple = 0
    groups: int = 1
    residual: Residual | None = None
    stride_hw: tuple[int, int] = field(init=False)
    padding_hw: tuple[int, int] = field(init=False)

    def __post_init__(self) -> None:
        name = self.name
        if self.kind not in ("conv", "linear"):
            raise TargetError(f"layer {name}: kind must be 'conv' or 'linear', not {self.kind!r}")
        self.input_shape = tuple(int(s) for s in self.input_shape)
        self.output_shape = tuple(int(s) for s in self.output_shape)
        rank = 4 if self.kind == "conv" else 2
        self.weight = _int_array(self.weight, np.int8, "weight", name, -128, 127)
        if self.weight.ndim != rank or len(self.input_shape) != rank:
            raise TargetError(f"layer {name}: a {self.kind} layer needs a {rank}-D input and weight, "
                              f"got input {list(self.input_shape)} and weight {list(self.weight.shape)}")
        out_channels = self.weight.shape[0]
        self.bias = (np.zeros(out_channels, np.int32) if self.bias is None else
                     _int_array(self.bias, np.int32, "bias", name, -(1 << 31), (1 << 31) - 1))
        shift = _int_array(self.shift, np.int64, "shift", name, 0, 31)
        self.shift = np.broadcast_to(shift, (out_channels,)).copy()
        if self.bias.shape != (out_channels,):
            raise TargetError(f"layer {name}: bias must have shape [{out_channels}], got {list(self.bias.shape)}")
        if not -128 <= self.lo <= self.hi <= 127:
            raise TargetError(f"layer {name}: clip bounds must satisfy -128 <= lo <= hi <= 127, "
                              f"got lo={self.lo}, hi={self.hi}")
        self.stride_hw = _pair(self.stride, "stride", name)
        self.padding_hw = _pair(self.padding, "padding", name)
        if self.kind == "linear" and (self.stride_hw != (1, 1) or self.padding_hw != (0, 0) or self.groups != 1):
            raise TargetError(f"layer {name}: a linear layer has no stride, padding or groups")
        if min(self.stride_hw) < 1 or min(self.padding_hw) < 0:
            raise TargetError(f"layer {name}: stride must be >= 1 and padding >= 0")
        channels = self.input_shape[1]
        if self.groups not in (1, channels) or (self.groups == channels > 1 and (
                out_channels != channels or self.weight.shape[1] != 1)):
            raise TargetError(f"layer {name}: groups={self.groups} is not supported; groups must be 1 "
                              "or equal to the input channels with one output channel per group")
        if self.groups == 1 and self.weight.shape[1] != channels:
            raise TargetError(f"layer {name}: weight {list(self.weight.shape)} does not match "
                              f"{channels} input channels")
        expected = self._expected_output_shape()
        if self.output_shape != expected:
            raise TargetError(f"layer {name}: output shape {list(self.output_shape)} does not match "
                              f"the computed {list(expected)}")
        if self.residual is not None:
            r = self.residual
            if r.tensor in (self.input, self.output) or self.input == self.output:
                raise TargetError(f"layer {name}: input, output and residual must be distinct tensors")
            if not -128 <= r.lo <= r.hi <= 127:
                raise TargetError(f"layer {name}: residual clip bounds must satisfy -128 <= lo <= hi <= 127")
        elif self.input == self.output:
            raise TargetError(f"layer {name}: input and output must be distinct tensors")

    def _expected_output_shape(self) -> tuple:
        if self.kind == "linear":
            return (self.input_shape[0], self.weight.shape[0])
        n, _, h, w = self.input_shape
        (sh, sw), (ph, pw) = self.stride_hw, self.padding_hw
        kh, kw = self.weight.shape[2:]
        return (n, self.weight.shape[0], (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)

    @property
    def depthwise(self) -> bool:
        return self.groups > 1

    def reference(self, x: np.ndarray, residual: np.ndarray | None = None) -> np.ndarray:
        """The int8 output by the normative integer semantics of :mod:`.reference`."""
        if self.kind == "linear":
            t = reference.qlinear(x, self.weight, self.bias, self.shift, self.lo, self.hi)
        else:
            t = reference.qconv2d(x, self.weight, self.bias, self.shift, self.lo, self.hi,
                                  stride=self.stride_hw, padding=self.padding_hw, groups=self.groups)
        if self.residual is None:
            return t
        if residual is None:
            raise TargetError(f"layer {self.name}: the residual tensor {self.residual.tensor} is needed")
        r = self.residual
        return reference.qadd(t, residual, r.ea, r.eb, r.ey, r.lo, r.hi)


@dataclass(frozen=True)
class ConvGeometry:
    """A layer as a conv over packed 4-D views, in units of accelerator elements/blocks."""

    n: int
    c: int
    h: int
    w: int
    o: int
    ho: int
    wo: int
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    depthwise: bool
    nb: int  # batch groups
    cb: int  # input channel blocks (BLOCK_IN)
    ob: int  # output channel blocks (BLOCK_OUT)

    @classmethod
    def of(cls, layer: AccelLayer, config: VTAConfig) -> "ConvGeometry":
        n, c, h, w = activation_view(layer.input_shape, config.BATCH)
        _, o, ho, wo = activation_view(layer.output_shape, config.BATCH)
        weight = layer.weight if layer.weight.ndim == 4 else layer.weight[:, :, None, None]
        (sh, sw), (ph, pw) = layer.stride_hw, layer.padding_hw
        return cls(n=n, c=c, h=h, w=w, o=o, ho=ho, wo=wo, kh=weight.shape[2], kw=weight.shape[3],
                   sh=sh, sw=sw, ph=ph, pw=pw, depthwise=layer.depthwise,
                   nb=ceil_div(n, config.BATCH), cb=ceil_div(c, config.BLOCK_IN),
                   ob=ceil_div(o, config.BLOCK_OUT))

    @property
    def taps(self) -> int:
        return self.kh * self.kw

    @property
    def reduction_blocks(self) -> int:
        """Input channel blocks each output block reduces over (1 for depthwise)."""
        return 1 if self.depthwise else self.cb

    @property
    def gemm_ops(self) -> int:
        """GEMM uop-iterations of the convolution proper (padded channels included)."""
        return self.nb * self.ho * self.wo * self.ob * self.reduction_blocks * self.taps

    @property
    def rows_subsampled(self) -> bool:
        """A strided 1-row kernel reads every ``sh``-th input row only; those rows are
        loaded alone (DRAM row stride ``sh·W``), not the rows between them."""
        return self.kh == 1 and self.sh > 1

    @property
    def sram_row_step(self) -> int:
        """Input rows between consecutive output rows in an INP tile."""
        return 1 if self.rows_subsampled else self.sh

    @property
    def input_row_pitch(self) -> int:
        """DRAM elements between the input rows an INP tile holds (the LOAD x_stride)."""
        return self.w * (self.sh if self.rows_subsampled else 1)

    def input_span(self, out_first: int, out_count: int, axis: str) -> tuple[int, int, int, int]:
        """Rows (``axis="y"``) or columns (``"x"``) of input that ``out_count`` outputs from
        ``out_first`` read: ``(first real index, real count, pad before, pad after)``; for
        subsampled rows the count is of rows ``sh`` apart."""
        if axis == "y" and self.rows_subsampled:
            return out_first * self.sh, out_count, 0, 0
        stride, pad, kernel, size = ((self.sh, self.ph, self.kh, self.h) if axis == "y"
                                     else (self.sw, self.pw, self.kw, self.w))
        start = out_first * stride - pad
        stop = start + (out_count - 1) * stride + kernel
        first, last = max(start, 0), min(stop, size)
        return first, last - first, first - start, stop - last


def unsupported_reason(layer: AccelLayer, config: VTAConfig) -> str | None:
    """Why ``layer`` cannot run on an accelerator with ``config`` (None when it can)."""
    g = ConvGeometry.of(layer, config)
    max_pad = 15  # 4-bit pad fields of LOAD
    if g.ph > max_pad or g.pw > max_pad:
        return f"padding {g.ph, g.pw} exceeds the LOAD pad fields' maximum of {max_pad}"
    if g.ph >= g.kh or g.pw >= g.kw:
        return f"padding {g.ph, g.pw} is not smaller than the kernel {g.kh, g.kw}"
    if max(g.input_row_pitch, g.wo) >= 1 << 16:
        return "rows longer than 65535 elements do not fit the LOAD/STORE x_stride field"
    if g.depthwise and config.BLOCK_IN != config.BLOCK_OUT:
        return "depthwise convolution needs BLOCK_IN == BLOCK_OUT (block-diagonal weights)"
    r = layer.residual
    if r is not None:
        if config.BLOCK_IN != config.BLOCK_OUT:
            return "a fused residual add needs BLOCK_IN == BLOCK_OUT (identity weight block)"
        if r.r_shift > MAX_RESIDUAL_WEIGHT_SHIFT:
            return (f"the residual operand needs a left shift of {r.r_shift} (> "
                    f"{MAX_RESIDUAL_WEIGHT_SHIFT}, the largest power of two in an int8 weight)")
        if r.t_shift > 31 or abs(r.out_shift) > 31:
            return "the residual add's shifts exceed the ALU's -31..31 shift range"
    from accelc.targets.fpga.lower.epilogue import Epilogue  # (they build on this module)
    from accelc.targets.fpga.lower.tiling import Tiling, plan_sram

    smallest = Tiling(1, 1, 1, 1, threads=1)
    if plan_sram(g, Epilogue.of(layer, config), smallest, config, r is not None) is None:
        return (f"even a 1x1-position, one-channel-block tile of this {g.kh}x{g.kw} "
                f"{'depthwise ' if g.depthwise else ''}layer does not fit the INP/WGT/ACC buffers "
                f"of config {config.name}")
    return None

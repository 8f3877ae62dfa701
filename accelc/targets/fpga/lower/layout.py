"""Data layouts of the accelerator: packing host tensors into DRAM element arrays and back.

* Activations NCHW → ``NCHW{B}n{K}c``: ``[ceil(N/B), ceil(C/K), H, W, B, K]`` with
  ``B = BATCH`` and ``K = BLOCK_IN`` (a tensor read by the accelerator) or ``BLOCK_OUT``
  (written by it); batch and channels are zero-padded. Flattened over the first four axes
  this is the DRAM INP/OUT element array (element ``((n·Cb + c)·H + y)·W + x``).
* 2-D activations ``[N, C]`` (linear layers) are viewed as 4-D by :func:`activation_view`:
  ``[1, C, 1, N]`` on a BATCH = 1 accelerator (the samples become the positions of a row, so
  one weight block serves N of them), ``[N, C, 1, 1]`` otherwise.
* Weights OIHW → ``OIHW{BO}o{BI}i``: ``[ceil(O/BO), ceil(I/BI), kh, kw, BO, BI]`` (the WGT
  element is ``[out][in]``). Depthwise weights ``[C, 1, kh, kw]`` become block-diagonal
  blocks ``[ceil(C/BO), 1, kh, kw, BO, BO]``.
* Per-channel vectors (int32) → ACC rows ``[ceil(O/BO), B, BO]``, replicated over the batch.

Every pack has an exact inverse on the unpadded part; padding is zero.
"""

from __future__ import annotations

import numpy as np

from accelc.errors import TargetError


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def activation_view(shape, batch: int) -> tuple[int, int, int, int]:
    """The 4-D NCHW shape under which a 2-D or 4-D activation is packed (see module doc)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 4:
        return shape  # type: ignore[return-value]
    if len(shape) == 2:
        n, c = shape
        return (1, c, 1, n) if batch == 1 else (n, c, 1, 1)
    raise TargetError(f"activations must be 2-D [N, C] or 4-D [N, C, H, W], got shape {list(shape)}")


def to_view(x: np.ndarray, batch: int) -> np.ndarray:
    """``x`` reshaped/transposed to :func:`activation_view`."""
    if x.ndim == 2 and batch == 1:
        return x.T[None, :, None, :]
    return x.reshape(activation_view(x.shape, batch))


def from_view(x4: np.ndarray, shape, batch: int) -> np.ndarray:
    """Inverse of :func:`to_view` for a tensor of original ``shape``."""
    if len(shape) == 2 and batch == 1:
        return np.ascontiguousarray(x4[0, :, 0, :].T)
    return x4.reshape(shape)


def packed_activation_shape(view, batch: int, block: int) -> tuple[int, ...]:
    n, c, h, w = view
    return (ceil_div(n, batch), ceil_div(c, block), h, w, batch, block)


def pack_activation(x: np.ndarray, batch: int, block: int) -> np.ndarray:
    """int8 ``x`` (2-D or 4-D) → ``[Nb, Cb, H, W, batch, block]`` (see module doc)."""
    x4 = to_view(np.asarray(x), batch)
    if x4.dtype != np.int8:
        raise TargetError(f"activations must be int8, got {x4.dtype}")
    n, c, h, w = x4.shape
    nb, cb = ceil_div(n, batch), ceil_div(c, block)
    padded = np.zeros((nb * batch, cb * block, h, w), np.int8)
    padded[:n, :c] = x4
    return np.ascontiguousarray(padded.reshape(nb, batch, cb, block, h, w).transpose(0, 2, 4, 5, 1, 3))


def unpack_activation(packed: np.ndarray, shape, batch: int, block: int) -> np.ndarray:
    """Inverse of :func:`pack_activation` for a tensor of original ``shape``."""
    n, c, h, w = view = activation_view(shape, batch)
    packed = np.asarray(packed).reshape(packed_activation_shape(view, batch, block))
    nb, cb = packed.shape[:2]
    x4 = packed.transpose(0, 4, 1, 5, 2, 3).reshape(nb * batch, cb * block, h, w)[:n, :c]
    return from_view(np.ascontiguousarray(x4), shape, batch)


def pack_weights(w: np.ndarray, block_out: int, block_in: int) -> np.ndarray:
    """int8 OIHW (or OI) → ``[Ob, Ib, kh, kw, block_out, block_in]``."""
    w = np.asarray(w)
    if w.ndim == 2:
        w = w[:, :, None, None]
    o, i, kh, kw = w.shape
    ob, ib = ceil_div(o, block_out), ceil_div(i, block_in)
    padded = np.zeros((ob * block_out, ib * block_in, kh, kw), np.int8)
    padded[:o, :i] = w
    return np.ascontiguousarray(
        padded.reshape(ob, block_out, ib, block_in, kh, kw).transpose(0, 2, 4, 5, 1, 3))


def unpack_weights(packed: np.ndarray, shape) -> np.ndarray:
    """Inverse of :func:`pack_weights` for weights of original ``shape`` (OIHW or OI)."""
    ob, ib, kh, kw, bo, bi = packed.shape
    w = packed.transpose(0, 4, 1, 5, 2, 3).reshape(ob * bo, ib * bi, kh, kw)
    return np.ascontiguousarray(w[: shape[0], : shape[1]].reshape(shape))


def pack_depthwise_weights(w: np.ndarray, block: int) -> np.ndarray:
    """int8 ``[C, 1, kh, kw]`` → block-diagonal ``[Cb, 1, kh, kw, block, block]``."""
    w = np.asarray(w)
    c, _, kh, kw = w.shape
    cb = ceil_div(c, block)
    diag = np.zeros((cb * block, kh, kw), np.int8)
    diag[:c] = w[:, 0]
    diag = diag.reshape(cb, block, kh, kw).transpose(0, 2, 3, 1)  # [Cb, kh, kw, block]
    packed = np.zeros((cb, 1, kh, kw, block, block), np.int8)
    index = np.arange(block)
    packed[:, 0, :, :, index, index] = diag.transpose(3, 0, 1, 2)
    return packed


def channel_rows(values, batch: int, block_out: int) -> np.ndarray:
    """int32 per-channel vector → ACC rows ``[ceil(O/block_out), batch, block_out]``."""
    values = np.asarray(values, np.int64)
    rows = np.zeros(ceil_div(values.size, block_out) * block_out, np.int32)
    rows[: values.size] = values
    return np.ascontiguousarray(np.broadcast_to(
        rows.reshape(-1, 1, block_out), (rows.size // block_out, batch, block_out)))

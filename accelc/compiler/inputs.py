"""Input specifications: ``--input-shape 1x1x28x28[:dtype]`` and example-input construction."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from accelc.errors import UsageError

DTYPES = {
    "float32": torch.float32, "f32": torch.float32, "float": torch.float32,
    "float16": torch.float16, "f16": torch.float16, "bfloat16": torch.bfloat16,
    "float64": torch.float64, "int64": torch.int64, "int32": torch.int32,
    "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool,
}
_SHAPE_RE = re.compile(r"^\d+(x\d+)*$")


@dataclass(frozen=True)
class InputSpec:
    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32

    @classmethod
    def parse(cls, text: str) -> "InputSpec":
        """Parse ``1x1x28x28`` or ``1x16:int64``."""
        shape_text, _, dtype_text = text.strip().partition(":")
        if not _SHAPE_RE.match(shape_text):
            raise UsageError(
                f"--input-shape {text!r} is not a shape",
                hint="write dimensions separated by 'x', optionally with a dtype: 1x3x224x224 or 1x128:int64",
            )
        dtype = torch.float32
        if dtype_text:
            if dtype_text not in DTYPES:
                raise UsageError(f"--input-shape {text!r}: unknown dtype {dtype_text!r}",
                                 hint=f"use one of: {', '.join(sorted(DTYPES))}")
            dtype = DTYPES[dtype_text]
        shape = tuple(int(d) for d in shape_text.split("x"))
        if any(d == 0 for d in shape):
            raise UsageError(f"--input-shape {text!r} has a zero dimension")
        return cls(shape, dtype)

    @classmethod
    def of(cls, t: torch.Tensor) -> "InputSpec":
        return cls(tuple(t.shape), t.dtype)

    def example(self, seed: int = 0) -> torch.Tensor:
        """A deterministic example tensor of this shape and dtype."""
        g = torch.Generator().manual_seed(seed)
        if self.dtype.is_floating_point:
            return torch.randn(self.shape, generator=g).to(self.dtype)
        if self.dtype == torch.bool:
            return torch.randint(0, 2, self.shape, generator=g).bool()
        return torch.randint(0, 10, self.shape, generator=g).to(self.dtype)

    def __str__(self) -> str:
        return "x".join(map(str, self.shape)) + f":{str(self.dtype).removeprefix('torch.')}"


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")

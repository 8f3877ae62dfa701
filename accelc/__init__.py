"""accelc — an ahead-of-time acceleration compiler for PyTorch models.

>>> import accelc
>>> compiled = accelc.compile(model, (x,), target="cpu", pipeline="fuse")
>>> compiled(x)                       # runs the TVM artifact
>>> compiled.save("build/model")
>>> accelc.load("build/model")(x)
"""

__version__ = "0.1.0"

from accelc.api import CompiledModel, compile, load  # noqa: E402
from accelc.compiler.pipeline import Pipeline  # noqa: E402
from accelc.errors import AccelcError  # noqa: E402
from accelc.targets.base import available_targets  # noqa: E402

__all__ = ["AccelcError", "CompiledModel", "Pipeline", "available_targets", "compile", "load", "__version__"]

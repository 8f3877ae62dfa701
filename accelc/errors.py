"""The one exception family users see.

Every failure a user can cause raises an :class:`AccelcError` subclass whose message names
the file, node or option at fault and says what to do. The CLI prints ``str(err)`` and
exits with ``err.exit_code``: 2 for usage errors (bad option, bad pipeline string), 1 for
everything else (bad model, compile failure, unsupported op, bad data).
"""

from __future__ import annotations


class AccelcError(Exception):
    """Base class. ``hint`` is the "what to do" part, printed on its own line."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UsageError(AccelcError):
    """A command-line option, config key or pipeline string is invalid."""

    exit_code = 2


class PipelineError(UsageError):
    """Unknown pass, unknown pass option or bad option value in a pipeline string."""


class ConfigError(UsageError):
    """A config file (accelc.toml / [tool.accelc]) is unreadable or has unknown keys."""


class ModelLoadError(AccelcError):
    """A model file or entry point could not be loaded."""


class UnsafeModelError(ModelLoadError):
    """Loading the file would execute arbitrary code (pickle) and it was not trusted."""


class TraceError(AccelcError):
    """Neither torch.fx nor torch.export could capture the model."""


class DataError(AccelcError):
    """A data file (.npz / .npy) is missing, malformed, or does not fit the model."""


class VerificationError(AccelcError):
    """A pass changed the model's outputs by more than it declares it may."""


class UnsupportedError(AccelcError):
    """An operator or model feature that the selected target cannot handle."""


class TargetError(AccelcError):
    """Lowering or building for a target failed."""


class DeviceUnavailableError(AccelcError):
    """The artifact needs a device (e.g. a CUDA GPU) that this machine lacks."""


class ArtifactError(AccelcError):
    """An artifact directory is missing, incomplete, corrupted or of an unknown version."""


class TrainingError(AccelcError):
    """Distributed training failed (bad plan, a worker died, bad checkpoint)."""

"""gammabeta's exceptions: each names the layer or file, what it got and what it expected."""


class GammabetaError(Exception):
    """Base class of every error gammabeta raises on purpose."""


class ShapeError(GammabetaError, ValueError):
    """An array has the wrong rank, size or number of channels for a layer."""


class DTypeError(GammabetaError, TypeError):
    """An array has a dtype a layer refuses (integers, booleans, objects)."""


class NonFiniteError(GammabetaError, ValueError):
    """A NaN or an infinity appeared where finite numbers were required."""


class StateDictError(GammabetaError, ValueError):
    """A state dict (or checkpoint) does not match the model: keys, shapes or dtypes."""


class CheckpointError(GammabetaError, ValueError):
    """A checkpoint file is missing, truncated, not safetensors, or from another model."""


class DataError(GammabetaError, ValueError):
    """A data file or array cannot be used: bad format, bad shape, bad labels."""


class UnseededWarning(UserWarning):
    """Random numbers were drawn from a generator nobody seeded (a layer built without
    ``rng=``): the run cannot be repeated. Shown once per process."""


class ConfigError(GammabetaError, ValueError):
    """An option, initializer name or configuration value is not valid."""


class OutputError(GammabetaError, OSError):
    """An output file or folder cannot be written (permissions, full disk, ...)."""


class TrainingInterrupted(GammabetaError):
    """Training stopped on request (Ctrl-C) after writing a checkpoint; resume from it."""

    def __init__(self, message: str, epoch: int = 0, step: int = 0):
        super().__init__(message)
        self.epoch, self.step = epoch, step

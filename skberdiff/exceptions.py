"""Warnings and errors raised by skberdiff."""

__all__ = ["DeviceFallbackWarning", "MissingWeightsError", "UnsafeModelFileError",
           "CorruptCheckpointError", "TrainingDivergedError"]


class DeviceFallbackWarning(UserWarning):
    """A model saved on an accelerator was loaded where that device is missing.

    The model falls back to the CPU. Outputs are the same up to floating-point
    differences between devices.
    """


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights needed by a component were not found locally.

    Nothing is ever downloaded at run time; the message says where the weights
    were looked for and how to provide them.
    """


class UnsafeModelFileError(ValueError):
    """A saved model file failed its format, validation, checksum or signature check.

    Raised by :func:`skberdiff.load` for every malformed, out-of-range, corrupted or
    wrongly signed file, before anything from it is used.
    """


class CorruptCheckpointError(ValueError):
    """A training checkpoint is truncated, corrupted or not a skberdiff checkpoint.

    The message names the file; delete it to restart training from the beginning.
    """


class TrainingDivergedError(RuntimeError):
    """A training loss became NaN or infinite.

    The message says which network, between which steps, and what to lower.
    """

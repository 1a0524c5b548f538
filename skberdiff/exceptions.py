"""Warnings and errors raised by skberdiff."""

__all__ = ["DeviceFallbackWarning", "MissingWeightsError", "UnsafeModelFileError"]


class DeviceFallbackWarning(UserWarning):
    """A model saved on an accelerator was loaded where that device is missing.

    The model falls back to the CPU. Outputs are the same up to floating-point
    differences between devices.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warnings.warn("no CUDA here", DeviceFallbackWarning)
    >>> caught[0].category.__name__
    'DeviceFallbackWarning'
    """


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights needed by a component were not found locally.

    Nothing is ever downloaded at run time; the message says where the weights
    were looked for and how to provide them.

    Examples
    --------
    >>> issubclass(MissingWeightsError, FileNotFoundError)
    True
    """


class UnsafeModelFileError(ValueError):
    """A saved model file failed its integrity or format check and was refused.

    Examples
    --------
    >>> issubclass(UnsafeModelFileError, ValueError)
    True
    """

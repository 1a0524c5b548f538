"""Device and precision handling shared by training and inference (the single resolver)."""

import contextlib
import warnings

import torch

from .exceptions import DeviceFallbackWarning

__all__ = ["resolve_device", "check_precision", "autocast", "PRECISIONS"]

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device="auto", *, fallback: bool = False) -> torch.device:
    """Turn a device specification into a :class:`torch.device`.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "cuda:N", "mps"} or torch.device, default="auto"
        ``"auto"`` picks CUDA when available, else the CPU. Resolved at each call, so a
        saved estimator keeps ``"auto"`` and adapts to the machine that loads it.
    fallback : bool, default=False
        When the requested accelerator is missing, warn with
        :class:`~skberdiff.exceptions.DeviceFallbackWarning` and return the CPU instead of
        raising (used when loading a model saved on another machine).

    Returns
    -------
    device : torch.device

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        spec = device
    elif device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif isinstance(device, str):
        try:
            spec = torch.device(device)
        except RuntimeError as exc:
            raise ValueError(
                f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device, got "
                f"{device!r}."
            ) from exc
    else:
        raise TypeError(f"device must be a string or torch.device, got {type(device).__name__}.")
    missing = None
    if spec.type == "cuda":
        if not torch.cuda.is_available():
            missing = "CUDA is not available on this machine"
        elif spec.index is not None and spec.index >= torch.cuda.device_count():
            missing = f"there is no CUDA device {spec.index}"
    elif spec.type == "mps" and not (hasattr(torch.backends, "mps")
                                     and torch.backends.mps.is_available()):
        missing = "MPS is not available on this machine"
    if missing:
        if fallback:
            warnings.warn(f"{missing}; falling back to the CPU (device={str(spec)!r}).",
                          DeviceFallbackWarning, stacklevel=3)
            return torch.device("cpu")
        raise ValueError(f"device={str(spec)!r} was requested but {missing}.")
    return spec


def check_precision(precision: str, device: torch.device) -> str:
    """Validate ``precision`` for ``device``.

    ``"fp16"`` needs CUDA (it trains with a gradient scaler); ``"bf16"`` works on CUDA and
    CPU (slow on most CPUs).

    Examples
    --------
    >>> check_precision("bf16", torch.device("cpu"))
    'bf16'
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision='fp16' needs a CUDA device; use 'bf16' or 'fp32' on "
                         f"{device.type}.")
    return precision


def autocast(device: torch.device, precision: str):
    """An autocast context for ``precision`` (a no-op for ``"fp32"``).

    Examples
    --------
    >>> with autocast(torch.device("cpu"), "fp32"):
    ...     pass
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "tf32":
        return _tf32(device)
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


@contextlib.contextmanager
def _tf32(device: torch.device):
    """TF32 tensor-core math for fp32 matmuls and cuDNN convolutions, restored on exit.

    PyTorch's defaults already allow TF32 in cuDNN convolutions but not in matmuls; this
    turns on both. Elsewhere than CUDA it changes nothing.
    """
    if device.type != "cuda":
        yield
        return
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old

"""The single place where image batches and hyper-parameters are validated.

Every public entry point (estimator, diffusion math, training loops, metrics) calls these
helpers so that bad input always produces the same clear message.
"""

import numbers
import os
import warnings

import numpy as np

__all__ = [
    "check_images",
    "check_masks",
    "check_maps",
    "check_same_shape",
    "check_int",
    "check_real",
    "check_choice",
    "check_probability",
    "check_noise_level",
    "check_range_pair",
    "healthy_selection",
    "check_intensity_range",
    "check_writable_directory",
    "check_network_overrides",
    "to_numpy",
]

# Inputs must be scaled to [0, 1]; beyond these bounds they are refused as unnormalised.
_INTENSITY_LIMITS = (-0.5, 1.5)


def to_numpy(X, name):
    try:
        import torch

        if isinstance(X, torch.Tensor):
            X = X.detach().cpu()
            # numpy has no bfloat16 (or other reduced float types): widen them first.
            if X.is_floating_point() and X.dtype not in (torch.float32, torch.float64):
                X = X.float()
            return X.numpy()
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(f"{name} is a sparse matrix; images must be a dense array.")
    try:
        return np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} could not be converted to an array of images: {exc}") from exc


def check_images(
    X,
    *,
    image_shape=None,
    n_channels=None,
    spatial_shape=None,
    divisor=None,
    name="X",
    dtype=np.float32,
    allow_nan=False,
):
    """Validate a batch of images and return it as a ``(n, c, h, w)`` array.

    Parameters
    ----------
    X : array-like or torch.Tensor of shape (n, c, h, w) or (n, c*h*w)
        The images. A flat 2-D array needs ``image_shape``.
    image_shape : tuple of int (c, h, w), default=None
        Shape of one image, used to unflatten 2-D input.
    n_channels : int, default=None
        Required number of channels (e.g. the one seen in ``fit``).
    spatial_shape : tuple of int (h, w), default=None
        Required spatial size (e.g. the one seen in ``fit``).
    divisor : int, default=None
        ``h`` and ``w`` must be multiples of it (the autoencoder's downsampling factor).
    name : str, default="X"
        Name used in error messages.
    dtype : numpy dtype, default=np.float32
        Output dtype.
    allow_nan : bool, default=False
        Whether NaN/inf values are accepted.

    Returns
    -------
    X : ndarray of shape (n, c, h, w)
        A C-contiguous array of ``dtype``.

    Raises
    ------
    TypeError
        If ``X`` is not numeric.
    ValueError
        If the shape, channel count, size or values are wrong.

    Examples
    --------
    >>> import numpy as np
    >>> check_images(np.zeros((2, 1, 8, 8))).shape
    (2, 1, 8, 8)
    >>> check_images(np.zeros((2, 64)), image_shape=(1, 8, 8)).shape
    (2, 1, 8, 8)
    """
    arr = to_numpy(X, name)
    if arr.dtype == object:
        try:  # object arrays that hold plain numbers are fine
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must contain numbers, got an array of dtype object "
                            "holding non-numeric values.") from None
    if not (np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)) \
            or np.issubdtype(arr.dtype, np.timedelta64):
        raise TypeError(
            f"{name} must contain numbers, got an array of dtype {arr.dtype}."
        )
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"Complex data not supported: {name} must be real-valued, got dtype "
                         f"{arr.dtype}.")
    if arr.ndim == 2:
        if image_shape is None:
            raise ValueError(
                f"{name} is 2-D with shape {arr.shape}; pass images as (n, c, h, w) or set "
                "image_shape=(c, h, w) to unflatten rows."
            )
        image_shape = tuple(int(s) for s in image_shape)
        if len(image_shape) != 3:
            raise ValueError(f"image_shape must be (c, h, w), got {image_shape}.")
        if arr.shape[1] != int(np.prod(image_shape)):
            raise ValueError(
                f"{name} has {arr.shape[1]} features per row but image_shape={image_shape} "
                f"needs {int(np.prod(image_shape))}."
            )
        arr = arr.reshape((arr.shape[0],) + image_shape)
    elif arr.ndim != 4:
        raise ValueError(
            f"{name} must have shape (n, c, h, w) (or (n, c*h*w) with image_shape), got "
            f"{arr.ndim} dimension(s) with shape {arr.shape}. A single image needs a leading "
            "batch axis: X[None]."
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it holds 0 images (shape {arr.shape}).")
    if min(arr.shape[1:]) == 0:
        raise ValueError(f"{name} has an empty channel or spatial axis: shape {arr.shape}.")
    if n_channels is not None and arr.shape[1] != n_channels:
        raise ValueError(
            f"{name} has {arr.shape[1]} channel(s) but the model expects {n_channels} "
            "(the number of channels seen in fit)."
        )
    if spatial_shape is not None and tuple(arr.shape[2:]) != tuple(spatial_shape):
        raise ValueError(
            f"{name} has images of size {tuple(arr.shape[2:])} but the model expects "
            f"{tuple(spatial_shape)} (the size seen in fit). Pad or crop them first, e.g. "
            "with skberdiff.preprocessing.PadCrop."
        )
    if divisor is not None and (arr.shape[2] % divisor or arr.shape[3] % divisor):
        raise ValueError(
            f"{name} has images of size {tuple(arr.shape[2:])}, which is not divisible by "
            f"the autoencoder's downsampling factor {divisor}. Pad them to a multiple of "
            f"{divisor}, e.g. with skberdiff.preprocessing.PadCrop."
        )
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not arr.flags.writeable:  # read-only memmaps: torch needs writable memory
        arr = arr.copy()
    if not allow_nan and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return arr


def check_masks(y, *, n_samples=None, spatial_shape=None, name="y"):
    """Validate ground-truth pixel masks and return them as a bool ``(n, h, w)`` array.

    Parameters
    ----------
    y : array-like of shape (n, h, w) or (n, 1, h, w)
        Binary masks; any non-zero value is an anomalous pixel.
    n_samples : int, default=None
        Required number of masks.
    spatial_shape : tuple of int (h, w), default=None
        Required size of each mask.
    name : str, default="y"
        Name used in error messages.

    Returns
    -------
    masks : ndarray of bool, shape (n, h, w)

    Examples
    --------
    >>> import numpy as np
    >>> check_masks(np.zeros((3, 4, 4))).dtype
    dtype('bool')
    """
    arr = to_numpy(y, name)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise TypeError(f"{name} must contain numbers or booleans, got dtype {arr.dtype}.")
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise ValueError(
            f"{name} must be pixel masks of shape (n, h, w), got shape {arr.shape}."
        )
    if n_samples is not None and arr.shape[0] != n_samples:
        raise ValueError(f"{name} has {arr.shape[0]} masks but X has {n_samples} images.")
    if spatial_shape is not None and tuple(arr.shape[1:]) != tuple(spatial_shape):
        raise ValueError(
            f"{name} has masks of size {tuple(arr.shape[1:])} but the images are "
            f"{tuple(spatial_shape)}."
        )
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return arr != 0


def check_maps(maps, name="maps"):
    """Validate a batch of 2-D maps and return it as a float32 ``(n, h, w)`` array.

    Parameters
    ----------
    maps : array-like of shape (n, h, w) or (n, 1, h, w)
        Anomaly maps (or any per-pixel scores).
    name : str, default="maps"
        Name used in error messages.

    Returns
    -------
    maps : ndarray of shape (n, h, w), float32

    Examples
    --------
    >>> import numpy as np
    >>> check_maps(np.zeros((2, 1, 4, 4))).shape
    (2, 4, 4)
    """
    if not hasattr(maps, "ndim"):
        maps = to_numpy(maps, name)
    shape = tuple(maps.shape)
    if maps.ndim == 3:
        maps = maps[:, None]
    elif not (maps.ndim == 4 and shape[1] == 1):
        raise ValueError(f"{name} must be maps of shape (n, h, w), got shape {shape}.")
    # The image checks (dtype, emptiness, finiteness) apply unchanged to one-channel images.
    return check_images(maps, name=name)[:, 0]


def check_same_shape(a, b, name_a, name_b):
    """Raise a ``ValueError`` naming both arrays when their shapes differ.

    Parameters
    ----------
    a, b : ndarray
        Arrays to compare.
    name_a, name_b : str
        Their names in the message.

    Examples
    --------
    >>> import numpy as np
    >>> check_same_shape(np.zeros(2), np.ones(2), "x", "x_hat")
    """
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}; they must match."
        )


def check_int(value, name, *, low=None, high=None, allow_none=False):
    """Return ``value`` as an int after checking its type and ``low <= value <= high``.

    Booleans are refused (``True`` is not a count). Type and bounds are checked as
    :func:`sklearn.utils.check_scalar` does, with one message wording for the package.

    Parameters
    ----------
    value : object
        The value to check.
    name : str
        Parameter name used in error messages.
    low, high : int, default=None
        Inclusive bounds; ``None`` leaves that side open.
    allow_none : bool, default=False
        Accept (and return) ``None``.

    Returns
    -------
    value : int or None

    Raises
    ------
    TypeError
        If ``value`` is not an integer.
    ValueError
        If it is out of bounds.

    Examples
    --------
    >>> check_int(3, "n_steps", low=1)
    3
    """
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}: {value!r}.")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = (f"in [{low}, {high}]" if low is not None and high is not None
                  else f">= {low}" if low is not None else f"<= {high}")
        raise ValueError(f"{name} must be {bounds}, got {value}.")
    return value


def check_real(value, name, *, low=None, high=None, include_low=True, include_high=True,
               allow_none=False):
    """Return ``value`` as a finite float after checking its type and bounds.

    Parameters
    ----------
    value : object
        The value to check.
    name : str
        Parameter name used in error messages.
    low, high : float, default=None
        Bounds; ``None`` leaves that side open (the value must still be finite).
    include_low, include_high : bool, default=True
        Whether the bounds themselves are allowed.
    allow_none : bool, default=False
        Accept (and return) ``None``.

    Returns
    -------
    value : float or None

    Raises
    ------
    TypeError
        If ``value`` is not a real number.
    ValueError
        If it is NaN, infinite or out of bounds.

    Examples
    --------
    >>> check_real(1e-4, "learning_rate", low=0, include_low=False)
    0.0001
    """
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}: {value!r}.")
    try:
        value = float(value)
    except OverflowError:
        raise ValueError(f"{name} must be finite, got {value!r}.") from None
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}.")
    too_low = low is not None and (value < low if include_low else value <= low)
    too_high = high is not None and (value > high if include_high else value >= high)
    if too_low or too_high:
        left = "[" if include_low and low is not None else "("
        right = "]" if include_high and high is not None else ")"
        bounds = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ValueError(f"{name} must be in {bounds}, got {value}.")
    return value


def check_choice(value, name, choices):
    """Return ``value`` after checking that it is one of ``choices``.

    Parameters
    ----------
    value : object
        The value to check (compared with ``==``; only strings, numbers and ``None``
        are accepted as choices).
    name : str
        Parameter name used in error messages.
    choices : tuple
        Allowed values.

    Returns
    -------
    value : object

    Raises
    ------
    ValueError
        If ``value`` is not among ``choices``.

    Examples
    --------
    >>> check_choice("paper", "posterior", ("paper", "marginal"))
    'paper'
    """
    # 1 == True in Python: a bool only matches a bool, a number only a number.
    if not isinstance(value, (str, numbers.Number, type(None))) or not any(
            value == c and isinstance(value, bool) == isinstance(c, bool) for c in choices):
        raise ValueError(f"{name} must be one of {choices}, got {value!r}.")
    return value


def check_probability(value, name, *, low=0.0, high=1.0):
    """Return ``value`` as a float after checking ``low <= value <= high``.

    Parameters
    ----------
    value : object
        The value to check.
    name : str
        Parameter name used in error messages.
    low, high : float, default=0.0, 1.0
        Inclusive bounds (``np.inf`` leaves a side open but the value must be finite).

    Returns
    -------
    value : float

    Examples
    --------
    >>> check_probability(0.5, "mask_threshold")
    0.5
    """
    return check_real(value, name, low=None if low == -np.inf else low,
                      high=None if high == np.inf else high)


def check_range_pair(value, name, low, high):
    """Return ``(a, b)`` as floats after checking ``low <= a <= b <= high``.

    Parameters
    ----------
    value : sequence of two numbers
        The range.
    name : str
        Parameter name used in error messages.
    low, high : float
        Inclusive bounds of both ends.

    Returns
    -------
    pair : tuple of float

    Examples
    --------
    >>> check_range_pair((0.05, 0.6), "lesion_contrast", 0.0, 1.0)
    (0.05, 0.6)
    """
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high), got {value!r}.") from None
    a = check_real(a, f"{name}[0]", low=low, high=high)
    b = check_real(b, f"{name}[1]", low=low, high=high)
    if a > b:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {value!r}.")
    return a, b


def check_noise_level(noise_level, n_timesteps, name="noise_level"):
    """Return ``noise_level`` as an int after checking ``1 <= noise_level <= n_timesteps``.

    Examples
    --------
    >>> check_noise_level(200, 1000)
    200
    """
    if isinstance(noise_level, (bool, np.bool_)) or not isinstance(noise_level, numbers.Integral):
        raise TypeError(
            f"{name} must be an integer number of diffusion steps, got "
            f"{type(noise_level).__name__}: {noise_level!r}."
        )
    noise_level = int(noise_level)
    if not 1 <= noise_level <= n_timesteps:
        raise ValueError(
            f"{name} must be in [1, {n_timesteps}] (the number of diffusion steps T), got "
            f"{noise_level}."
        )
    return noise_level


def healthy_selection(X, y):
    """Boolean selection of the images that ``y`` (masks or 0/1 labels) says are normal.

    Parameters
    ----------
    X : ndarray of shape (n, c, h, w)
        Validated images.
    y : array-like of shape (n,) or (n, h, w), or None
        Image labels (1/True = anomalous) or pixel masks (any pixel = anomalous).

    Returns
    -------
    healthy : ndarray of bool, shape (n,)
    """
    if y is None:
        return np.ones(X.shape[0], dtype=bool)
    y_arr = np.asarray(y)
    if y_arr.ndim == 1:
        if y_arr.shape[0] != X.shape[0]:
            raise ValueError(f"y has {y_arr.shape[0]} labels but X has {X.shape[0]} images.")
        if y_arr.dtype == object or not (np.issubdtype(y_arr.dtype, np.number)
                                         or np.issubdtype(y_arr.dtype, np.bool_)):
            raise TypeError(f"y labels must be numbers or booleans, got {y_arr.dtype}.")
        values = set(np.unique(y_arr).tolist())
        if not values <= {0, 1}:
            raise ValueError(
                "Image labels y must be 1/True for anomalous and 0/False for normal images, "
                f"got values {sorted(values)}. (predict's +1/-1 convention is not accepted "
                "here: pass y == -1.)"
            )
        return y_arr == 0
    masks = check_masks(y_arr, n_samples=X.shape[0], spatial_shape=X.shape[2:])
    return ~masks.reshape(masks.shape[0], -1).any(axis=1)


def check_intensity_range(X, fitted_range):
    """Refuse unnormalised images; warn about images outside the range seen in fit.

    Parameters
    ----------
    X : ndarray of shape (n, c, h, w)
        Validated images.
    fitted_range : tuple of float or None
        ``(min, max)`` of the training images, or None at fit.
    """
    low, high = float(X.min()), float(X.max())
    if low < _INTENSITY_LIMITS[0] or high > _INTENSITY_LIMITS[1]:
        raise ValueError(
            f"X has values in [{low:.4g}, {high:.4g}] but the detector expects images scaled "
            "to [0, 1] (reconstructions are clamped to [0, 1], so raw intensities give "
            "meaningless maps). Scale them first, e.g. with skberdiff.IntensityScaler() in a "
            "Pipeline or skberdiff.io's per-volume normalisation.")
    if fitted_range is not None:
        # Lesions may be brighter or darker than any healthy pixel: only a gross mismatch
        # of scaling (half the training range beyond it) warns.
        tol = 0.5 * max(fitted_range[1] - fitted_range[0], 1e-6)
        if low < fitted_range[0] - tol or high > fitted_range[1] + tol:
            warnings.warn(
                f"X has values in [{low:.4g}, {high:.4g}], outside the range "
                f"[{fitted_range[0]:.4g}, {fitted_range[1]:.4g}] of the training images; "
                "scale new images like the training ones.", UserWarning, stacklevel=4)


def check_writable_directory(path):
    """Create ``path`` if needed and check that files can be written there, before training.

    Parameters
    ----------
    path : str or path-like
        The checkpoint directory.
    """
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"checkpoint_dir must be a path, got {type(path).__name__}.") from None
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".skberdiff-write-test-{os.getpid()}")
        with open(probe, "wb") as fh:
            fh.write(b"ok")
        os.remove(probe)
    except OSError as exc:
        raise ValueError(
            f"checkpoint_dir={path!r} cannot be used for checkpoints ({exc.strerror or exc}); "
            "choose a writable directory. Nothing was trained.") from exc


# Bounds on network overrides: a model file or a typo must not allocate gigabytes.
_OVERRIDE_BOUNDS = {"base_width": 512, "latent_channels": 1024, "embed_dim": 4096,
                    "n_res_blocks": 8, "model_channels": 1024}


def check_network_overrides(autoencoder_params, unet_params):
    """Bounded sizes in the network overrides (a typo or a file must not allocate gigabytes).

    Parameters
    ----------
    autoencoder_params, unet_params : dict or None
        Overrides of the presets.
    """
    for params in (autoencoder_params or {}, unet_params or {}):
        for name, value in params.items():
            if name in _OVERRIDE_BOUNDS:
                check_int(value, name, low=1, high=_OVERRIDE_BOUNDS[name])
            elif name in ("width_multipliers", "channel_multipliers"):
                if not isinstance(value, (tuple, list)) or not 1 <= len(value) <= 6:
                    raise ValueError(f"{name} must be a sequence of 1 to 6 ints, got {value!r}.")
                for m in value:
                    check_int(m, name, low=1, high=16)

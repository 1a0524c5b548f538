"""Sample-wise image transformers to put before the detector in a scikit-learn Pipeline.

:class:`IntensityScaler` and :class:`PadCrop` go before the detector in a
:class:`~sklearn.pipeline.Pipeline`. Both are stateless per image (nothing is learnt across
samples), so they behave the same in training and at inference and never leak information
between cross-validation folds. :func:`pad_or_crop` is the crop/pad routine behind
:class:`PadCrop`, also used by :mod:`skberdiff.io`.
Volume-to-slice extraction changes the number of samples and lives in :mod:`skberdiff.io`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._validation import check_choice, check_images, check_int, check_range_pair

if TYPE_CHECKING:
    from sklearn.utils import Tags

__all__ = ["IntensityScaler", "PadCrop", "pad_or_crop"]


def _check_flag(value, name: str) -> bool:
    """``value`` as a bool; numpy booleans are accepted, strings and other objects are not."""
    return bool(check_choice(bool(value) if isinstance(value, np.bool_) else value, name,
                             (True, False)))


def _check_size(size, name: str = "size") -> tuple[int, int]:
    """``size`` as a pair ``(h, w)`` of positive ints; errors name ``name``."""
    if isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 2:
        raise ValueError(f"{name} must be (h, w) of positive ints, got {size!r}.")
    return tuple(check_int(s, f"{name}[{i}]", low=1) for i, s in enumerate(size))


class IntensityScaler(TransformerMixin, BaseEstimator):
    """Scale each image and channel to [0, 1] between two of its own percentiles.

    Parameters
    ----------
    percentiles : tuple of float (low, high), default=(0.0, 100.0)
        Percentiles of each image channel mapped to 0 and 1 (e.g. ``(0.5, 99.5)`` to ignore
        outliers); values outside are clipped.
    per_channel : bool, default=True
        Scale every channel separately (MRI sequences have unrelated units); ``False`` uses
        one range per image.
    ignore_zeros : bool, default=True
        Compute percentiles over non-zero pixels only, so that a large zero background (the
        padding around a skull-stripped brain) does not set the low percentile; zeros stay 0.

    Attributes
    ----------
    n_features_in_ : int
        ``c * h * w`` of the images seen in fit.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[[[0.0, 2.0], [4.0, 6.0]]]])
    >>> IntensityScaler().fit_transform(X)[0, 0].tolist()
    [[0.0, 0.0], [0.5, 1.0]]
    """

    def __init__(self, *, percentiles: tuple[float, float] = (0.0, 100.0),
                 per_channel: bool = True, ignore_zeros: bool = True) -> None:
        self.percentiles = percentiles
        self.per_channel = per_channel
        self.ignore_zeros = ignore_zeros

    def fit(self, X: ArrayLike, y: object = None) -> IntensityScaler:
        """Validate the images; nothing is learnt (scaling is per image).

        Parameters
        ----------
        X : array-like of shape (n, c, h, w)
            Images.
        y : ignored

        Returns
        -------
        self : IntensityScaler
        """
        X = check_images(X)
        self._check_params()
        self.n_features_in_ = int(np.prod(X.shape[1:]))
        return self

    def _check_params(self) -> tuple[float, float, bool, bool]:
        """Validated ``(low, high, per_channel, ignore_zeros)``."""
        low, high = check_range_pair(self.percentiles, "percentiles", 0.0, 100.0)
        if low == high:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got "
                             f"{self.percentiles!r}.")
        per_channel = _check_flag(self.per_channel, "per_channel")
        ignore_zeros = _check_flag(self.ignore_zeros, "ignore_zeros")
        return low, high, per_channel, ignore_zeros

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Scale every image (and channel) to [0, 1].

        Parameters
        ----------
        X : array-like of shape (n, c, h, w)
            Images.

        Returns
        -------
        X_scaled : ndarray of shape (n, c, h, w), float32
        """
        check_is_fitted(self)
        X = check_images(X)
        low, high, per_channel, ignore_zeros = self._check_params()
        groups = X if per_channel else X.reshape(X.shape[0], 1, -1)
        flat = groups.reshape(groups.shape[0], groups.shape[1], -1).astype(np.float64)
        if ignore_zeros:
            values = np.where(flat != 0, flat, np.nan)
            empty = np.isnan(values).all(axis=2, keepdims=True)
            values = np.where(empty, 0.0, values)  # an all-zero channel stays zero
            lo = np.nanpercentile(values, low, axis=2, keepdims=True)
            hi = np.nanpercentile(values, high, axis=2, keepdims=True)
        else:
            lo = np.percentile(flat, low, axis=2, keepdims=True)
            hi = np.percentile(flat, high, axis=2, keepdims=True)
        span = np.where(hi > lo, hi - lo, 1.0)
        scaled = np.clip((flat - lo) / span, 0.0, 1.0)
        if ignore_zeros:
            scaled = np.where(flat != 0, scaled, 0.0)
        return scaled.reshape(X.shape).astype(np.float32)

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags


def pad_or_crop(X: ArrayLike, size: Sequence[int]) -> np.ndarray:
    """Zero-pad or centre-crop the last two axes of an array to ``size``.

    Each spatial axis is handled on its own: a longer axis keeps its centred window of
    ``size`` pixels (starting at ``(current - target) // 2``), a shorter one gets
    ``(target - current) // 2`` zeros before and the rest (one more for an odd difference)
    after. This is the one crop/pad routine of the package: :class:`PadCrop` and
    :func:`skberdiff.io.load_brats_case` both use it.

    Parameters
    ----------
    X : array-like of shape (..., h, w)
        Images, maps or masks with at least two dimensions; the last two axes are spatial
        and any leading axes (batch, channels) are kept. The dtype is kept too (bool masks
        are padded with ``False``).
    size : sequence of two int (h, w)
        Target spatial size; both must be positive integers.

    Returns
    -------
    out : ndarray of shape (..., size[0], size[1])
        A new array when anything was cropped or padded; ``X`` (as an ndarray) itself when
        it already has the target size.

    Raises
    ------
    ValueError
        If ``X`` has fewer than two dimensions or ``size`` is not a pair of positive ints.
    TypeError
        If an entry of ``size`` is not an integer.

    See Also
    --------
    PadCrop : The same operation as a transformer, with an inverse.

    Examples
    --------
    >>> import numpy as np
    >>> pad_or_crop(np.ones((1, 1, 2, 4)), (4, 2))[0, 0].tolist()
    [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [0.0, 0.0]]
    >>> pad_or_crop(np.arange(5), (1, 3))
    Traceback (most recent call last):
    ...
    ValueError: X must have at least two (spatial) dimensions, got shape (5,).
    """
    size = _check_size(size)
    X = np.asarray(X)
    if X.ndim < 2:
        raise ValueError(f"X must have at least two (spatial) dimensions, got shape {X.shape}.")
    out = X
    for axis, target in zip((-2, -1), size):
        current = out.shape[axis]
        if current > target:
            start = (current - target) // 2
            out = np.take(out, np.arange(start, start + target), axis=axis)
        elif current < target:
            before = (target - current) // 2
            pad = [(0, 0)] * out.ndim
            pad[axis] = (before, target - current - before)
            out = np.pad(out, pad)
    return out


class PadCrop(TransformerMixin, BaseEstimator):
    """Zero-pad or centre-crop images to a fixed size or to a multiple of a factor.

    The autoencoder needs sizes divisible by its downsampling factor (8 for the paper and
    small presets), and BRATS slices (240x240) are zero-padded to 256x256 in the paper.

    Parameters
    ----------
    size : tuple of int (h, w) or None, default=(256, 256)
        Output size. ``None`` pads each axis up to the next multiple of ``multiple_of``.
    multiple_of : int, default=8
        Used when ``size`` is None.

    Attributes
    ----------
    input_shape_ : tuple of int
        ``(h, w)`` seen in fit, restored by :meth:`inverse_transform`.
    output_shape_ : tuple of int
        ``(h, w)`` produced by :meth:`transform`.

    Examples
    --------
    >>> import numpy as np
    >>> pc = PadCrop(size=None, multiple_of=8).fit(np.zeros((1, 4, 240, 236)))
    >>> pc.transform(np.zeros((2, 4, 240, 236))).shape
    (2, 4, 240, 240)
    >>> pc.inverse_transform(np.zeros((2, 240, 240))).shape
    (2, 240, 236)
    """

    def __init__(self, *, size: Sequence[int] | None = (256, 256),
                 multiple_of: int = 8) -> None:
        self.size = size
        self.multiple_of = multiple_of

    def fit(self, X: ArrayLike, y: object = None) -> PadCrop:
        """Record the input size and compute the output size.

        Parameters
        ----------
        X : array-like of shape (n, c, h, w)
            Images.
        y : ignored

        Returns
        -------
        self : PadCrop
        """
        X = check_images(X)
        h, w = X.shape[2:]
        if self.size is None:
            m = check_int(self.multiple_of, "multiple_of", low=1)
            self.output_shape_ = (-(-h // m) * m, -(-w // m) * m)
        else:
            self.output_shape_ = _check_size(self.size)
        self.input_shape_ = (h, w)
        self.n_features_in_ = int(np.prod(X.shape[1:]))
        return self

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Pad or crop images to ``output_shape_``.

        Parameters
        ----------
        X : array-like of shape (n, c, h, w)
            Images of the size seen in fit.

        Returns
        -------
        X_out : ndarray of shape (n, c, h_out, w_out), float32
            ``(h_out, w_out)`` is ``output_shape_``.
        """
        check_is_fitted(self)
        X = check_images(X, spatial_shape=self.input_shape_)
        return pad_or_crop(X, self.output_shape_)

    def inverse_transform(self, X: ArrayLike) -> np.ndarray:
        """Bring images ``(n, c, H, W)`` or maps ``(n, H, W)`` back to the input size.

        Parameters
        ----------
        X : ndarray of shape (n, c, H, W) or (n, H, W)
            Images or maps of size ``output_shape_``.

        Returns
        -------
        X_out : ndarray with the last two axes of size ``input_shape_``
        """
        check_is_fitted(self)
        X = np.asarray(X)
        if X.ndim < 2 or tuple(X.shape[-2:]) != tuple(self.output_shape_):
            raise ValueError(f"X has images of size {tuple(X.shape[-2:])} but inverse_transform "
                             f"expects the transformed size {self.output_shape_}.")
        return pad_or_crop(X, self.input_shape_)

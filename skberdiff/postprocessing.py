"""Turn reconstructions into anomaly maps and anomaly maps into segmentations.

The paper and its reference evaluation code post-process differently; both recipes are offered:

- the paper's (Wolleb et al., Algorithm 1 and section 4): ``a = sum_c (x - x_hat)^2``, a 5x5
  median filter, a threshold, then connected components smaller than 10 pixels are dropped
  (:func:`squared_error_map`, :func:`paper_postprocess`);
- the reference evaluation code's: per-channel squared error, a 5x5 median filter on each
  channel, sum over channels, clip to each image's 1st-99th percentiles, per-image min-max to
  [0, 1], threshold 0.5, then 8-connected components of at most 15 pixels (measured with their
  holes filled) are dropped (:func:`reference_anomaly_scores`, :func:`reference_postprocess`).

Each recipe is defined once, as a :class:`PostprocessingRecipe` in :data:`RECIPES` (map
function, median size, smallest kept component, threshold rule); the estimator, the
benchmarks and the examples all go through it.

Every function works on a batch and never mixes images: maps are ``(n, h, w)`` and images
``(n, c, h, w)``. Pixel thresholds for new data are calibrated on healthy maps with
:func:`calibrate_pixel_threshold`, restricted to the brain with :func:`foreground_region`.
"""

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

from ._validation import (
    check_choice,
    check_images,
    check_int,
    check_maps,
    check_masks,
    check_probability,
    check_real,
    check_same_shape,
)

__all__ = [
    "squared_error_map",
    "median_filter_maps",
    "remove_small_components",
    "percentile_clip",
    "minmax_normalize",
    "paper_postprocess",
    "reference_anomaly_scores",
    "reference_postprocess",
    "foreground_region",
    "calibrate_pixel_threshold",
    "PostprocessingRecipe",
    "RECIPES",
    "get_recipe",
]

# With an 8-connected background (how scikit-image fills holes), a hole is enclosed only by a
# 4-connected ring, and the smallest such ring has 8 pixels: smaller components have no holes.
_SMALLEST_RING = 8


def _spatial_median(arr, size):
    # A window of length 1 on every leading axis keeps images (and channels) apart.
    window = (1,) * (arr.ndim - 2) + (size, size)
    return ndimage.median_filter(arr, size=window)


def squared_error_map(
    x: ArrayLike, x_hat: ArrayLike, *, per_channel_median: int | None = None
) -> np.ndarray:
    """Anomaly map ``a = sum_c (x - x_hat)^2`` of each image (paper, Algorithm 1).

    Parameters
    ----------
    x : array-like of shape (n, c, h, w)
        The input images.
    x_hat : array-like of shape (n, c, h, w)
        Their pseudo-healthy reconstructions.
    per_channel_median : int, default=None
        If given, each channel's squared error is median-filtered with this window size
        before the sum over channels, as the reference evaluation code does. The paper
        filters the summed map instead (:func:`median_filter_maps`).

    Returns
    -------
    maps : ndarray of shape (n, h, w), float32
        Higher means more anomalous.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.zeros((1, 2, 2, 2))
    >>> x_hat = np.zeros((1, 2, 2, 2))
    >>> x_hat[0, :, 0, 0] = [1.0, 2.0]
    >>> squared_error_map(x, x_hat)[0]
    array([[5., 0.],
           [0., 0.]], dtype=float32)
    """
    x = check_images(x, name="x")
    x_hat = check_images(x_hat, name="x_hat")
    check_same_shape(x, x_hat, "x", "x_hat")
    error = np.square(x - x_hat)
    if per_channel_median is not None:
        size = check_int(per_channel_median, "per_channel_median", low=1)
        error = _spatial_median(error, size)
    return error.sum(axis=1, dtype=np.float32)


def median_filter_maps(maps: ArrayLike, size: int = 5) -> np.ndarray:
    """Median-filter each map in 2-D, never across images.

    Parameters
    ----------
    maps : array-like of shape (n, h, w)
        Anomaly maps.
    size : int, default=5
        Side of the square window (the paper uses 5). Borders are reflected (scipy's
        default, as in the reference code).

    Returns
    -------
    filtered : ndarray of shape (n, h, w), float32

    Examples
    --------
    >>> import numpy as np
    >>> maps = np.zeros((2, 5, 5))
    >>> maps[0, 2, 2] = 1.0  # an isolated hot pixel is noise to a median filter
    >>> float(median_filter_maps(maps, size=3).max())
    0.0
    """
    maps = check_maps(maps)
    size = check_int(size, "size", low=1)
    return _spatial_median(maps, size)


def remove_small_components(
    masks: ArrayLike,
    min_size: int,
    *,
    connectivity: int = 8,
    inclusive: bool = False,
    fill_holes: bool = False,
) -> np.ndarray:
    """Drop the connected components of each mask that are too small.

    Parameters
    ----------
    masks : array-like of shape (n, h, w)
        Binary segmentations; any non-zero value is foreground.
    min_size : int
        Components with fewer than ``min_size`` pixels are removed (the paper: 10), or with
        at most ``min_size`` pixels when ``inclusive=True`` (the reference code: 15).
    connectivity : {8, 4}, default=8
        8: diagonal neighbours belong to the same component (the reference code); 4: only
        edge neighbours do.
    inclusive : bool, default=False
        Whether a component of exactly ``min_size`` pixels is removed as well.
    fill_holes : bool, default=False
        Measure each component with its enclosed holes counted as its own pixels
        (scikit-image's ``area_filled``, which the reference code thresholds). This only
        changes the size of ring-shaped components.

    Returns
    -------
    masks : ndarray of bool, shape (n, h, w)

    Notes
    -----
    Components are labelled per image with :func:`scipy.ndimage.label`; a component never
    extends into the next image of the batch.

    Examples
    --------
    >>> import numpy as np
    >>> masks = np.zeros((1, 6, 6), dtype=bool)
    >>> masks[0, :3, :3] = True  # 9 pixels
    >>> masks[0, 5, 5] = True  # 1 pixel
    >>> int(remove_small_components(masks, 2).sum())
    9
    >>> int(remove_small_components(masks, 10).sum())
    0
    """
    masks = check_masks(masks, name="masks")
    min_size = check_int(min_size, "min_size", low=0)
    check_choice(connectivity, "connectivity", (4, 8))

    # Label the whole batch at once with a structure that is empty off the image's own plane.
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    labels, n_components = ndimage.label(masks, structure=structure)
    if n_components == 0:
        return masks

    def large_enough(size):
        return size > min_size if inclusive else size >= min_size

    sizes = np.bincount(labels.ravel(), minlength=n_components + 1)
    keep = large_enough(sizes)
    if fill_holes:
        # Filling holes only matters for components that fail by area and can hold a hole.
        objects = ndimage.find_objects(labels)
        candidates = np.flatnonzero(~keep & (sizes >= _SMALLEST_RING))
        for label in candidates[candidates > 0]:
            component = labels[objects[label - 1]][0] == label
            filled = ndimage.binary_fill_holes(component, structure=np.ones((3, 3)))
            keep[label] = large_enough(int(filled.sum()))
    keep[0] = False
    return keep[labels]


def percentile_clip(maps: ArrayLike, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Clip each map to its own ``[low, high]`` percentiles.

    Parameters
    ----------
    maps : array-like of shape (n, h, w)
        Anomaly maps.
    low, high : float, default=1, 99
        Percentiles in [0, 100], ``low <= high`` (linear interpolation, numpy's default).

    Returns
    -------
    clipped : ndarray of shape (n, h, w), float32

    Examples
    --------
    >>> import numpy as np
    >>> maps = np.arange(101, dtype=float).reshape(1, 1, 101)
    >>> clipped = percentile_clip(maps, 10, 90)
    >>> float(clipped.min()), float(clipped.max())
    (10.0, 90.0)
    """
    maps = check_maps(maps)
    low = check_probability(low, "low", low=0.0, high=100.0)
    high = check_probability(high, "high", low=0.0, high=100.0)
    if low > high:
        raise ValueError(f"low must not exceed high, got low={low} and high={high}.")
    bounds = np.percentile(maps, [low, high], axis=(1, 2), keepdims=True)
    return np.clip(maps, bounds[0], bounds[1]).astype(np.float32)


def minmax_normalize(maps: ArrayLike) -> np.ndarray:
    """Rescale each map linearly to [0, 1]; a constant map becomes all zeros.

    Parameters
    ----------
    maps : array-like of shape (n, h, w)
        Anomaly maps.

    Returns
    -------
    normalized : ndarray of shape (n, h, w), float32
        Each image spans exactly [0, 1] unless it is constant (then 0, never NaN).

    Examples
    --------
    >>> import numpy as np
    >>> minmax_normalize(np.array([[[2.0, 4.0]], [[3.0, 3.0]]]))
    array([[[0., 1.]],
    <BLANKLINE>
           [[0., 0.]]], dtype=float32)
    """
    maps = check_maps(maps)
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    normalized = np.zeros_like(maps)
    np.divide(maps - low, span, out=normalized, where=span > 0)
    return normalized


def paper_postprocess(
    maps: ArrayLike,
    threshold: float,
    *,
    median_size: int | None = 5,
    min_size: int = 10,
    return_scores: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Segment anomaly maps as the paper does: median filter, threshold, small-component removal.

    Parameters
    ----------
    maps : array-like of shape (n, h, w)
        Anomaly maps, e.g. from :func:`squared_error_map`.
    threshold : float
        Pixels whose smoothed score is strictly greater are anomalous (the paper: 0.5; a
        threshold calibrated on healthy maps with :func:`calibrate_pixel_threshold` adapts to
        the data's intensity range).
    median_size : int or None, default=5
        Median window; None skips the filter (for maps smoothed already).
    min_size : int, default=10
        8-connected components with fewer pixels are removed.
    return_scores : bool, default=False
        Also return the smoothed maps, which are the pixel scores for AUPRC.

    Returns
    -------
    masks : ndarray of bool, shape (n, h, w)
        The segmentation.
    scores : ndarray of shape (n, h, w), float32
        The smoothed maps; only when ``return_scores=True``.

    Examples
    --------
    >>> import numpy as np
    >>> maps = np.zeros((1, 12, 12))
    >>> maps[0, 2:6, 2:6] = 1.0  # a 16-pixel lesion
    >>> maps[0, 9, 9] = 1.0  # a one-pixel speck
    >>> masks, scores = paper_postprocess(maps, 0.5, median_size=3, return_scores=True)
    >>> int(masks.sum()), float(scores[0, 9, 9])
    (12, 0.0)
    """
    threshold = check_real(threshold, "threshold")
    scores = check_maps(maps) if median_size is None else median_filter_maps(maps, median_size)
    masks = remove_small_components(scores > threshold, min_size, connectivity=8)
    return (masks, scores) if return_scores else masks


def reference_anomaly_scores(
    x: ArrayLike,
    x_hat: ArrayLike,
    *,
    median_size: int | None = 5,
    clip: tuple[float, float] | None = (1.0, 99.0),
) -> np.ndarray:
    """Pixel scores in [0, 1] as computed by the paper's reference evaluation code.

    Per-channel squared error, a median filter on each channel, sum over channels, clip to
    each image's percentiles ``clip``, then per-image min-max normalisation.

    Parameters
    ----------
    x : array-like of shape (n, c, h, w)
        The input images.
    x_hat : array-like of shape (n, c, h, w)
        Their pseudo-healthy reconstructions.
    median_size : int or None, default=5
        Median window applied to each channel; None skips it.
    clip : (float, float) or None, default=(1, 99)
        Percentiles each map is clipped to before normalisation; None skips clipping.

    Returns
    -------
    scores : ndarray of shape (n, h, w), float32
        In [0, 1] per image (all zeros for an image whose error is constant). These are the
        scores the reference code's AUPRC uses; :func:`reference_postprocess` segments them.

    Notes
    -----
    Because every image is stretched to [0, 1], an image without any anomaly still gets
    scores up to 1: the resulting segmentation is relative to the image, not calibrated.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.zeros((1, 4, 16, 16))
    >>> x_hat = x.copy()
    >>> x_hat[:, :, 4:10, 4:10] = 0.5
    >>> scores = reference_anomaly_scores(x, x_hat)
    >>> float(scores.min()), float(scores.max()), float(scores[0, 7, 7])
    (0.0, 1.0, 1.0)
    """
    maps = squared_error_map(x, x_hat, per_channel_median=median_size)
    if clip is not None:
        low, high = clip
        maps = percentile_clip(maps, low, high)
    return minmax_normalize(maps)


def reference_postprocess(
    scores: ArrayLike, threshold: float = 0.5, min_size: int = 15
) -> np.ndarray:
    """Segment scores as the reference evaluation code does.

    Pixels with ``scores > threshold`` are anomalous; 8-connected components of at most
    ``min_size`` pixels, measured with their holes filled, are removed.

    Parameters
    ----------
    scores : array-like of shape (n, h, w)
        Scores from :func:`reference_anomaly_scores`.
    threshold : float, default=0.5
        Threshold on the per-image normalised scores.
    min_size : int, default=15
        Components with ``min_size`` pixels or fewer are removed.

    Returns
    -------
    masks : ndarray of bool, shape (n, h, w)

    Examples
    --------
    >>> import numpy as np
    >>> scores = np.zeros((1, 10, 10))
    >>> scores[0, :4, :4] = 1.0  # 16 pixels: kept
    >>> scores[0, 6:, 6:] = 0.9  # a 4x4 square with its 4 inner pixels cleared ...
    >>> scores[0, 7:9, 7:9] = 0.0  # ... has 12 pixels but a filled area of 16: kept
    >>> int(reference_postprocess(scores).sum())
    28
    """
    threshold = check_real(threshold, "threshold")
    scores = check_maps(scores, name="scores")
    return remove_small_components(
        scores > threshold, min_size, connectivity=8, inclusive=True, fill_holes=True
    )


def foreground_region(x: ArrayLike, *, eps: float = 0.0) -> np.ndarray:
    """Pixels where any channel of the input is non-zero (the brain, for skull-stripped MRI).

    Parameters
    ----------
    x : array-like of shape (n, c, h, w)
        Input images with a zero background.
    eps : float, default=0.0
        A pixel is foreground when ``|x| > eps`` in at least one channel.

    Returns
    -------
    region : ndarray of bool, shape (n, h, w)

    Examples
    --------
    >>> import numpy as np
    >>> x = np.zeros((1, 2, 2, 2))
    >>> x[0, 1, 0, 1] = 0.3
    >>> foreground_region(x)[0]
    array([[False,  True],
           [False, False]])
    """
    x = check_images(x, name="x")
    check_real(eps, "eps", low=0.0)
    return (np.abs(x) > eps).any(axis=1)


def calibrate_pixel_threshold(
    maps: ArrayLike, quantile: float = 0.99, region: ArrayLike | None = None
) -> float:
    """Pixel threshold as a quantile of anomaly-map values on healthy images.

    Parameters
    ----------
    maps : array-like of shape (n, h, w)
        Anomaly maps of healthy images, post-processed exactly like the maps the threshold
        will be applied to (e.g. median-filtered).
    quantile : float, default=0.99
        Fraction of healthy pixels that must stay below the threshold.
    region : array-like of bool, shape (n, h, w), default=None
        Pixels that count, e.g. ``foreground_region(X)``. None uses every pixel.

    Returns
    -------
    threshold : float

    Notes
    -----
    Restrict the quantile to the brain. When most pixels are background (about 70 % of a
    padded BRATS slice) their near-zero errors fill the lower part of the distribution, so a
    global 99th percentile is really a much lower quantile of brain pixels, and the
    threshold flags too many healthy brain pixels.

    Examples
    --------
    >>> import numpy as np
    >>> maps = np.zeros((1, 10, 10))
    >>> maps[0, :2] = np.arange(1, 21).reshape(2, 10)  # 20 brain pixels, 80 background
    >>> region = maps > 0
    >>> calibrate_pixel_threshold(maps, 0.5)
    0.0
    >>> calibrate_pixel_threshold(maps, 0.5, region=region)
    10.5
    """
    maps = check_maps(maps)
    quantile = check_probability(quantile, "quantile")
    if region is not None:
        region = check_masks(region, name="region")
        check_same_shape(maps, region, "maps", "region")
        maps = maps[region]
        if maps.size == 0:
            raise ValueError("region selects no pixel; cannot compute a threshold.")
    return float(np.quantile(maps, quantile))


@dataclass(frozen=True)
class PostprocessingRecipe:
    """One way to turn reconstructions into maps and maps into segmentations.

    Parameters
    ----------
    name : {"paper", "reference"}
        ``"paper"``: ``a = sum_c (x - x_hat)^2``, median filter, threshold, components under
        ``min_component_size`` pixels removed; the threshold is calibrated on healthy maps.
        ``"reference"``: the public evaluation code's per-channel median, 1-99 percentile
        clip and per-image min-max (:func:`reference_anomaly_scores`), threshold 0.5,
        components of at most ``min_component_size`` pixels (holes filled) removed.
    median_size : int
        Median filter window.
    min_component_size : int
        Component-size limit of the segmentation.
    fixed_threshold : float or None
        Threshold that needs no calibration (0.5 on the reference recipe's per-image
        normalised scores), or ``None`` when it is calibrated on healthy maps.

    Examples
    --------
    >>> import numpy as np
    >>> recipe = RECIPES["paper"]
    >>> x = np.zeros((1, 1, 16, 16)); x_hat = x.copy(); x_hat[..., 4:10, 4:10] = 1.0
    >>> maps = recipe.anomaly_map(x, x_hat)
    >>> int(recipe.segment(maps, 0.5).sum())  # the 5x5 median trims the square's corners
    24
    """

    name: str
    median_size: int
    min_component_size: int
    fixed_threshold: float | None

    def anomaly_map(self, x: ArrayLike, x_hat: ArrayLike) -> np.ndarray:
        """Pixel anomaly maps of reconstructions, shape (n, h, w), higher = more anomalous.

        Parameters
        ----------
        x, x_hat : array-like of shape (n, c, h, w)
            Inputs and their pseudo-healthy reconstructions.

        Returns
        -------
        maps : ndarray of shape (n, h, w), float32
        """
        if self.name == "paper":
            return median_filter_maps(squared_error_map(x, x_hat), self.median_size)
        return reference_anomaly_scores(x, x_hat, median_size=self.median_size)

    def filter_map(self, maps: ArrayLike) -> np.ndarray:
        """Apply this recipe's smoothing to maps that come without a reconstruction.

        Parameters
        ----------
        maps : array-like of shape (n, h, w)
            Raw pixel scores (e.g. an intensity baseline).

        Returns
        -------
        maps : ndarray of shape (n, h, w), float32
        """
        filtered = median_filter_maps(maps, self.median_size)
        if self.name == "paper":
            return filtered
        return minmax_normalize(percentile_clip(filtered))

    def segment(self, maps: ArrayLike, threshold: float) -> np.ndarray:
        """Segmentation of this recipe's maps at ``threshold``.

        Parameters
        ----------
        maps : array-like of shape (n, h, w)
            Maps from :meth:`anomaly_map` (already smoothed).
        threshold : float
            Pixels strictly above it are anomalous.

        Returns
        -------
        masks : ndarray of bool, shape (n, h, w)
        """
        if self.name == "paper":
            return paper_postprocess(maps, threshold, median_size=None,
                                     min_size=self.min_component_size)
        return reference_postprocess(maps, threshold, self.min_component_size)

    def calibrate_threshold(self, maps: ArrayLike, quantile: float,
                            region: ArrayLike | None = None) -> float:
        """The recipe's threshold: fixed, or a quantile of healthy maps in ``region``.

        Parameters
        ----------
        maps : array-like of shape (n, h, w)
            Maps of healthy images (ignored by a fixed-threshold recipe).
        quantile : float
            Fraction of healthy pixels that must stay below the threshold.
        region : array-like of bool, shape (n, h, w), default=None
            Pixels that count (the brain).

        Returns
        -------
        threshold : float
        """
        if self.fixed_threshold is not None:
            return float(self.fixed_threshold)
        return calibrate_pixel_threshold(maps, quantile, region=region)


#: The two post-processing recipes, defined once.
RECIPES = {
    "paper": PostprocessingRecipe("paper", median_size=5, min_component_size=10,
                                  fixed_threshold=None),
    "reference": PostprocessingRecipe("reference", median_size=5, min_component_size=15,
                                      fixed_threshold=0.5),
}


def get_recipe(name: str = "paper", *, median_size: int | None = None,
               min_component_size: int | None = None) -> PostprocessingRecipe:
    """A recipe of :data:`RECIPES`, with optional overrides of its sizes.

    Parameters
    ----------
    name : {"paper", "reference"}, default="paper"
        Recipe name.
    median_size : int, default=None
        Median window (``None`` keeps the recipe's, 5).
    min_component_size : int, default=None
        Component-size limit (``None`` keeps the recipe's: 10 for ``"paper"``, 15 for
        ``"reference"``).

    Returns
    -------
    recipe : PostprocessingRecipe

    Examples
    --------
    >>> get_recipe("reference").min_component_size
    15
    """
    check_choice(name, "postprocessing", tuple(RECIPES))
    recipe = RECIPES[name]
    changes = {}
    if median_size is not None:
        changes["median_size"] = check_int(median_size, "median_size", low=1)
    if min_component_size is not None:
        changes["min_component_size"] = check_int(min_component_size, "min_component_size",
                                                  low=0)
    return replace(recipe, **changes) if changes else recipe

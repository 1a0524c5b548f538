"""Evaluation metrics of the paper and scikit-learn scorers built on them.

Pixel-level: :func:`dice_score` of a segmentation and :func:`pixel_auprc` of an anomaly map,
both averaged per image by default as in the paper (mean over test slices); reconstruction
quality: :func:`psnr`; image level: :func:`image_auroc` and
:func:`image_average_precision`. :func:`select_dice_threshold` picks a pixel threshold on
held-out lesion slices.

The scorers have the signature ``scorer(estimator, X, y)`` expected by
``GridSearchCV(scoring=...)``. They accept a detector or a ``Pipeline`` ending in one and
run the detector once per call:

- pixel scorers (:func:`dice_scorer`, :func:`auprc_scorer`, :func:`pixel_scores`) take
  ground-truth pixel masks ``y`` of shape (n, h, w);
- image scorers (:func:`image_auroc_scorer`, :func:`image_average_precision_scorer`,
  :func:`image_scores`) take per-image labels (1 = anomalous, 0 = normal) or pixel masks
  (an image with any lesion pixel is anomalous), and rank images by ``-score_samples``;
- :func:`make_detection_scorer` combines any of them into one pass.

Beware of scikit-learn's built-in ``scoring="roc_auc"`` with such labels: it ranks by
``decision_function``, which follows the outlier-detection convention (higher = more
*normal*, inliers positive), so with 1 = anomalous it reads inverted (``1 - AUROC``). The
image scorers here use the users' sign.
"""

import warnings
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import Pipeline

from ._validation import check_choice, check_images, check_maps, check_masks, check_same_shape
from .postprocessing import paper_postprocess

__all__ = [
    "dice_score",
    "pixel_auprc",
    "psnr",
    "image_auroc",
    "image_average_precision",
    "select_dice_threshold",
    "dice_scorer",
    "auprc_scorer",
    "pixel_scores",
    "image_auroc_scorer",
    "image_average_precision_scorer",
    "image_scores",
    "make_pixel_scorer",
    "make_detection_scorer",
]

def _check_average(average, allowed):
    if average is not None:
        check_choice(average, "average", allowed)
    elif None not in allowed:
        raise ValueError(f"average must be one of {allowed}, got None.")


def dice_score(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    average: str | None = "per_image",
    empty_score: float = 1.0,
) -> float | np.ndarray:
    """Dice overlap ``2 |A and B| / (|A| + |B|)`` of predicted and true pixel masks.

    Parameters
    ----------
    y_true : array-like of shape (n, h, w)
        Ground-truth masks; any non-zero value is anomalous.
    y_pred : array-like of shape (n, h, w)
        Predicted segmentations.
    average : {"per_image", "pooled"} or None, default="per_image"
        "per_image": the Dice of each image, then their mean (the paper's protocol, images
        scoring 0 included). "pooled": one Dice over all pixels of all images, which weights
        large lesions more. None: the array of per-image scores.
    empty_score : float, default=1.0
        Score of an image whose ground truth and prediction are both empty.

    Returns
    -------
    score : float or ndarray of shape (n,)

    Notes
    -----
    Empty ground truth (a healthy image): an empty prediction is a correct "nothing there"
    and scores ``empty_score`` (1.0 by default); any predicted pixel makes the score 0.0,
    as does an empty prediction on an image with a lesion. With ``average="pooled"``,
    ``empty_score`` applies only if every mask is empty. The paper averages over diseased
    slices only; pass only those to reproduce its numbers, or keep healthy ones to
    penalise false positives.

    Examples
    --------
    >>> import numpy as np
    >>> y_true = np.array([[[1, 1, 0, 0]], [[0, 0, 0, 0]]])
    >>> y_pred = np.array([[[1, 0, 0, 0]], [[0, 0, 0, 0]]])
    >>> dice_score(y_true, y_pred, average=None)
    array([0.667, 1.   ])
    >>> dice_score(y_true, y_pred, average="pooled")
    0.667
    """
    _check_average(average, ("per_image", "pooled", None))
    y_true = check_masks(y_true, name="y_true")
    y_pred = check_masks(y_pred, name="y_pred")
    check_same_shape(y_true, y_pred, "y_true", "y_pred")
    overlap = np.logical_and(y_true, y_pred).sum(axis=(1, 2))
    total = y_true.sum(axis=(1, 2)) + y_pred.sum(axis=(1, 2))
    if average == "pooled":
        return float(2 * overlap.sum() / total.sum()) if total.sum() else float(empty_score)
    scores = np.full(len(y_true), float(empty_score))
    np.divide(2 * overlap, total, out=scores, where=total > 0)
    return float(scores.mean()) if average == "per_image" else scores


def pixel_auprc(
    y_true: ArrayLike, maps: ArrayLike, *, average: str | None = "per_image"
) -> float | np.ndarray:
    """Area under the precision-recall curve of anomaly maps against pixel masks.

    Computed as average precision (:func:`sklearn.metrics.average_precision_score`), the
    same step-wise estimate as the reference code's ``torcheval`` ``BinaryAUPRC``.

    Parameters
    ----------
    y_true : array-like of shape (n, h, w)
        Ground-truth masks; any non-zero value is anomalous.
    maps : array-like of shape (n, h, w)
        Anomaly maps, higher = more anomalous.
    average : {"per_image", "pooled"} or None, default="per_image"
        "per_image": the AUPRC of each image, then their mean (the paper's protocol).
        "pooled": one AUPRC over all pixels of all images. None: the array of per-image
        scores.

    Returns
    -------
    score : float or ndarray of shape (n,)

    Raises
    ------
    ValueError
        If no image has an anomalous pixel (and ``average`` is not None).

    Warns
    -----
    UserWarning
        With ``average="per_image"``, once per call if images with empty ground truth were
        skipped, saying how many.

    Notes
    -----
    The AUPRC of an image without anomalous pixels is undefined (there is no positive to
    recall). Such images are skipped in the per-image mean, get NaN with ``average=None``,
    and contribute only negatives to the pooled score.

    Examples
    --------
    >>> import numpy as np
    >>> y_true = np.array([[[1, 0, 0, 0]], [[0, 0, 1, 1]]])
    >>> maps = np.array([[[0.9, 0.1, 0.2, 0.3]], [[0.8, 0.1, 0.7, 0.6]]])
    >>> pixel_auprc(y_true, maps, average=None)
    array([1.   , 0.583])
    >>> pixel_auprc(y_true, maps)
    0.792
    """
    _check_average(average, ("per_image", "pooled", None))
    y_true = check_masks(y_true, name="y_true")
    maps = check_maps(maps)
    check_same_shape(y_true, maps, "y_true", "maps")
    has_anomaly = y_true.any(axis=(1, 2))
    if average is not None and not has_anomaly.any():
        raise ValueError(
            "pixel_auprc is undefined: no image in y_true has an anomalous pixel."
        )
    if average == "pooled":
        return float(average_precision_score(y_true.ravel(), maps.ravel()))
    scores = np.full(len(y_true), np.nan)
    for i in np.flatnonzero(has_anomaly):
        scores[i] = average_precision_score(y_true[i].ravel(), maps[i].ravel())
    if average is None:
        return scores
    n_skipped = int((~has_anomaly).sum())
    if n_skipped:
        warnings.warn(
            f"pixel_auprc skipped {n_skipped} of {len(y_true)} image(s) with empty ground "
            "truth: AUPRC is undefined without anomalous pixels.",
            UserWarning,
            stacklevel=2,
        )
    return float(scores[has_anomaly].mean())


def psnr(
    x: ArrayLike,
    x_hat: ArrayLike,
    *,
    data_range: float | None = None,
    average: str | None = "per_image",
) -> float | np.ndarray:
    """Peak signal-to-noise ratio of reconstructions, in dB, per image over all channels.

    ``20 log10(peak / sqrt(mean((x - x_hat)^2)))`` with ``peak = max(x)`` of each image, as in
    the paper's evaluation code.

    Parameters
    ----------
    x : array-like of shape (n, c, h, w)
        The reference images.
    x_hat : array-like of shape (n, c, h, w)
        The reconstructions.
    data_range : float, default=None
        Peak value used for every image instead of its maximum (e.g. 1.0 for [0, 1] data).
    average : {"per_image"} or None, default="per_image"
        "per_image": mean of the per-image values (the paper). None: the per-image array.

    Returns
    -------
    psnr : float or ndarray of shape (n,)

    Notes
    -----
    An image reconstructed exactly has infinite PSNR (``inf``), and so does the mean over
    images if any is exact. An image whose peak is 0 (all black) but whose reconstruction
    differs gets ``-inf``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.ones((1, 1, 2, 2))
    >>> x_hat = np.full((1, 1, 2, 2), 0.9)
    >>> psnr(x, x_hat)
    20.0
    >>> psnr(x, x)
    inf
    """
    _check_average(average, ("per_image", None))
    x = check_images(x, name="x", dtype=np.float64)
    x_hat = check_images(x_hat, name="x_hat", dtype=np.float64)
    check_same_shape(x, x_hat, "x", "x_hat")
    mse = np.square(x - x_hat).mean(axis=(1, 2, 3))
    if data_range is None:
        peak = x.max(axis=(1, 2, 3))
        if (peak < 0).any():
            raise ValueError(
                "Some images in x have a negative maximum, so max(x) is no peak value; "
                "pass data_range."
            )
    else:
        if not np.isfinite(data_range) or data_range <= 0:
            raise ValueError(f"data_range must be positive and finite, got {data_range}.")
        peak = np.full(len(x), float(data_range))
    with np.errstate(divide="ignore"):
        values = np.where(mse == 0, np.inf, 20 * np.log10(peak) - 10 * np.log10(mse))
    return float(values.mean()) if average == "per_image" else values


def _check_image_labels(is_anomalous, anomaly_scores, metric):
    labels = np.asarray(is_anomalous)
    scores = np.asarray(anomaly_scores, dtype=np.float64)
    if labels.ndim != 1 or scores.ndim != 1:
        raise ValueError(
            f"is_anomalous and anomaly_scores must be 1-D, got shapes {labels.shape} and "
            f"{scores.shape}."
        )
    check_same_shape(labels, scores, "is_anomalous", "anomaly_scores")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(
            "is_anomalous must hold booleans or 0/1 (1 = anomalous); for the +1/-1 labels of "
            "predict, pass labels == -1."
        )
    if not np.isfinite(scores).all():
        raise ValueError("anomaly_scores contains NaN or infinite values.")
    if labels.min() == labels.max():
        kind = "anomalous" if labels[0] else "normal"
        raise ValueError(
            f"{metric} needs both normal and anomalous images, but all {len(labels)} "
            f"are {kind}."
        )
    return labels.astype(bool), scores


def image_auroc(is_anomalous: ArrayLike, anomaly_scores: ArrayLike) -> float:
    """Area under the ROC curve of image-level anomaly scores.

    Parameters
    ----------
    is_anomalous : array-like of shape (n,)
        True (or 1) for anomalous images, False (or 0) for normal ones.
    anomaly_scores : array-like of shape (n,)
        Higher = more anomalous (e.g. ``-detector.score_samples(X)``, or the fraction of
        masked latent entries).

    Returns
    -------
    auroc : float

    Examples
    --------
    >>> image_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    labels, scores = _check_image_labels(is_anomalous, anomaly_scores, "image_auroc")
    return float(roc_auc_score(labels, scores))


def image_average_precision(is_anomalous: ArrayLike, anomaly_scores: ArrayLike) -> float:
    """Average precision (area under the precision-recall curve) of image-level scores.

    Parameters
    ----------
    is_anomalous : array-like of shape (n,)
        True (or 1) for anomalous images, False (or 0) for normal ones.
    anomaly_scores : array-like of shape (n,)
        Higher = more anomalous.

    Returns
    -------
    average_precision : float

    Examples
    --------
    >>> image_average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.833
    """
    labels, scores = _check_image_labels(is_anomalous, anomaly_scores,
                                         "image_average_precision")
    return float(average_precision_score(labels, scores))


def select_dice_threshold(maps: ArrayLike, y_true: ArrayLike, region: ArrayLike | None = None,
                          *, min_size: int = 10, average: str = "per_image",
                          quantiles: ArrayLike = np.linspace(0.5, 0.9995, 64)):
    """Pixel threshold with the best Dice on held-out lesion slices.

    Candidates are quantiles of the map values inside ``region`` (the brain); each is
    applied as the paper's segmentation (pixels strictly above the threshold, then
    components under ``min_size`` pixels removed) to the given maps, which must already be
    smoothed (e.g. by :meth:`skberdiff.postprocessing.PostprocessingRecipe.anomaly_map`).
    Use it on validation slices only, never on the test slices.

    Parameters
    ----------
    maps : array-like of shape (n, h, w)
        Post-processed anomaly maps of validation slices.
    y_true : array-like of shape (n, h, w)
        Their ground-truth masks.
    region : array-like of bool, shape (n, h, w), default=None
        Pixels whose values define the candidates; None uses all.
    min_size : int, default=10
        Smallest connected component kept (0 keeps every pixel).
    average : {"per_image", "pooled"}, default="per_image"
        Which Dice is maximised (see :func:`dice_score`).
    quantiles : array-like of float, default=np.linspace(0.5, 0.9995, 64)
        Candidate quantiles.

    Returns
    -------
    threshold : float
    dice : float
        Dice of that threshold on the given slices.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.zeros((2, 16, 16), bool)
    >>> y[:, 4:10, 4:10] = True
    >>> select_dice_threshold(np.where(y, 2.0, 0.0), y)
    (0.0, 1.0)
    """
    maps = check_maps(maps)
    y_true = check_masks(y_true, name="y_true")
    check_same_shape(maps, y_true, "maps", "y_true")
    _check_average(average, ("per_image", "pooled"))
    values = maps[check_masks(region, name="region")] if region is not None else maps.ravel()
    if values.size == 0:
        raise ValueError("region selects no pixel; cannot choose a threshold.")
    candidates = np.unique(np.quantile(values, np.asarray(quantiles)))
    scores = [dice_score(y_true, paper_postprocess(maps, float(t), median_size=None,
                                                   min_size=min_size), average=average)
              for t in candidates]
    best = int(np.argmax(scores))
    return float(candidates[best]), float(scores[best])


def _image_labels(y, n_images):
    """Per-image labels (1 = anomalous) from labels or pixel masks."""
    arr = np.asarray(y)
    if arr.ndim == 1:
        if arr.shape[0] != n_images:
            raise ValueError(f"y has {arr.shape[0]} labels but X has {n_images} images.")
        if not np.isin(arr, (0, 1)).all():
            raise ValueError("Image labels must be 1/True for anomalous and 0/False for "
                             "normal images.")
        return arr.astype(bool)
    masks = check_masks(arr, n_samples=n_images)
    return masks.reshape(n_images, -1).any(axis=1)


def _pixel_auprc(y, result, average, empty_score):
    return pixel_auprc(y, result.anomaly_map, average=average)


def _dice(y, result, average, empty_score):
    return dice_score(y, result.mask, average=average, empty_score=empty_score)


def _image_metric(metric):
    def score(y, result, average, empty_score):
        return metric(_image_labels(y, len(result.score_samples)), -result.score_samples)
    return score


# metric name -> (detector output it needs, whether y must be masks, metric)
_METRICS = {
    "dice": ("mask", True, _dice),
    "auprc": ("anomaly_map", True, _pixel_auprc),
    "image_auroc": ("score", False, _image_metric(image_auroc)),
    "image_average_precision": ("score", False, _image_metric(image_average_precision)),
}
_PIXEL_METRICS = ("dice", "auprc")


def _unwrap_detector(estimator, X):
    """Return the detector and ``X`` transformed by the steps of a Pipeline before it."""
    if isinstance(estimator, Pipeline):
        if len(estimator) > 1:
            X = estimator[:-1].transform(X)
        return estimator[-1], X
    return estimator, X


def _score(estimator, X, y, *, metrics, average="per_image", empty_score=1.0):
    """Run the detector once and compute one metric (a float) or several (a dict)."""
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    if y is None:
        raise ValueError(
            "These scorers need ground truth: pass y to the search (pixel masks of shape "
            "(n, h, w), or per-image labels 1 = anomalous for image scorers)."
        )
    if any(_METRICS[name][1] for name in names) and np.ndim(y) == 1:
        raise ValueError(
            f"{[n for n in names if _METRICS[n][1]]} need pixel masks of shape (n, h, w), "
            "but y holds per-image labels."
        )
    detector, X = _unwrap_detector(estimator, X)
    outputs = tuple(dict.fromkeys(_METRICS[name][0] for name in names))
    result = detector.detect(X, outputs=outputs)
    scores = {name: float(_METRICS[name][2](y, result, average, empty_score))
              for name in names}
    return scores[metrics] if isinstance(metrics, str) else scores


def dice_scorer(estimator, X: ArrayLike, y: ArrayLike) -> float:
    """Mean per-image Dice of ``estimator``'s segmentation; a ``scoring=`` callable.

    Parameters
    ----------
    estimator : detector or Pipeline ending in one
        Fitted; its ``detect(X, outputs=("mask",))`` gives the masks.
    X : array-like of shape (n, c, h, w)
        Images.
    y : array-like of shape (n, h, w)
        Ground-truth pixel masks.

    Returns
    -------
    score : float
        See :func:`dice_score` for images with empty ground truth.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import numpy as np
    >>> class ThresholdDetector:
    ...     def detect(self, X, outputs):
    ...         return SimpleNamespace(mask=X[:, 0] > 0.5)
    >>> X = np.zeros((1, 1, 4, 4))
    >>> X[0, 0, :2, :2] = 1.0
    >>> dice_scorer(ThresholdDetector(), X, X[:, 0] > 0)
    1.0
    """
    return _score(estimator, X, y, metrics="dice")


def auprc_scorer(estimator, X: ArrayLike, y: ArrayLike) -> float:
    """Mean per-image AUPRC of ``estimator``'s anomaly maps; a ``scoring=`` callable.

    Parameters
    ----------
    estimator : detector or Pipeline ending in one
        Fitted; its ``detect(X, outputs=("anomaly_map",))`` gives the maps.
    X : array-like of shape (n, c, h, w)
        Images.
    y : array-like of shape (n, h, w)
        Ground-truth pixel masks.

    Returns
    -------
    score : float
        Images with empty ground truth are skipped (see :func:`pixel_auprc`).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import numpy as np
    >>> class IdentityDetector:
    ...     def detect(self, X, outputs):
    ...         return SimpleNamespace(anomaly_map=X[:, 0])
    >>> X = np.zeros((1, 1, 4, 4))
    >>> X[0, 0, 0, 0] = 1.0
    >>> auprc_scorer(IdentityDetector(), X, X[:, 0] > 0)
    1.0
    """
    return _score(estimator, X, y, metrics="auprc")


def pixel_scores(estimator, X: ArrayLike, y: ArrayLike) -> dict[str, float]:
    """Mean per-image Dice and AUPRC from a single detector pass; a multi-metric scorer.

    Use it as ``GridSearchCV(..., scoring=pixel_scores, refit="dice")``.

    Parameters
    ----------
    estimator : detector or Pipeline ending in one
        Fitted; its ``detect`` is called once for both the masks and the maps.
    X : array-like of shape (n, c, h, w)
        Images.
    y : array-like of shape (n, h, w)
        Ground-truth pixel masks.

    Returns
    -------
    scores : dict
        ``{"dice": float, "auprc": float}``, as from :func:`dice_score` and
        :func:`pixel_auprc`.

    Examples
    --------
    Any object with ``detect(X, outputs)`` returning ``anomaly_map`` and ``mask`` works:

    >>> from types import SimpleNamespace
    >>> import numpy as np
    >>> class ThresholdDetector:
    ...     def detect(self, X, outputs):
    ...         maps = X[:, 0]
    ...         return SimpleNamespace(anomaly_map=maps, mask=maps > 0.5)
    >>> X = np.zeros((1, 1, 4, 4))
    >>> X[0, 0, :2, :2] = 1.0
    >>> pixel_scores(ThresholdDetector(), X, y=X[:, 0] > 0)
    {'dice': 1.0, 'auprc': 1.0}
    """
    return _score(estimator, X, y, metrics=("dice", "auprc"))


def image_auroc_scorer(estimator, X: ArrayLike, y: ArrayLike) -> float:
    """Image-level AUROC of ``-score_samples`` (1 = anomalous); a ``scoring=`` callable.

    Unlike ``scoring="roc_auc"`` (which ranks by ``decision_function``, higher = more
    normal, and so reads inverted on labels with 1 = anomalous), higher is better here.

    Parameters
    ----------
    estimator : detector or Pipeline ending in one
        Fitted; its ``detect(X, outputs=("score",))`` gives ``score_samples``.
    X : array-like of shape (n, c, h, w)
        Images, normal and anomalous.
    y : array-like of shape (n,) or (n, h, w)
        Per-image labels (1/True = anomalous) or pixel masks (an image with any lesion pixel
        is anomalous).

    Returns
    -------
    score : float

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import numpy as np
    >>> class MeanDetector:
    ...     def detect(self, X, outputs):
    ...         return SimpleNamespace(score_samples=-X.mean(axis=(1, 2, 3)))
    >>> X = np.zeros((4, 1, 2, 2)); X[2:] = 1.0
    >>> image_auroc_scorer(MeanDetector(), X, [0, 0, 1, 1])
    1.0
    """
    return _score(estimator, X, y, metrics="image_auroc")


def image_average_precision_scorer(estimator, X: ArrayLike, y: ArrayLike) -> float:
    """Image-level average precision of ``-score_samples``; a ``scoring=`` callable.

    Parameters
    ----------
    estimator : detector or Pipeline ending in one
        Fitted; its ``detect(X, outputs=("score",))`` gives ``score_samples``.
    X : array-like of shape (n, c, h, w)
        Images, normal and anomalous.
    y : array-like of shape (n,) or (n, h, w)
        Per-image labels (1/True = anomalous) or pixel masks.

    Returns
    -------
    score : float

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import numpy as np
    >>> class MeanDetector:
    ...     def detect(self, X, outputs):
    ...         return SimpleNamespace(score_samples=-X.mean(axis=(1, 2, 3)))
    >>> X = np.zeros((4, 1, 2, 2)); X[2:] = 1.0
    >>> image_average_precision_scorer(MeanDetector(), X, [0, 0, 1, 1])
    1.0
    """
    return _score(estimator, X, y, metrics="image_average_precision")


def image_scores(estimator, X: ArrayLike, y: ArrayLike) -> dict[str, float]:
    """Image AUROC and average precision from one pass; a multi-metric scorer.

    Parameters
    ----------
    estimator : detector or Pipeline ending in one
        Fitted.
    X : array-like of shape (n, c, h, w)
        Images, normal and anomalous.
    y : array-like of shape (n,) or (n, h, w)
        Per-image labels (1/True = anomalous) or pixel masks.

    Returns
    -------
    scores : dict
        ``{"image_auroc": float, "image_average_precision": float}``.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import numpy as np
    >>> class MeanDetector:
    ...     def detect(self, X, outputs):
    ...         return SimpleNamespace(score_samples=-X.mean(axis=(1, 2, 3)))
    >>> X = np.zeros((4, 1, 2, 2)); X[2:] = 1.0
    >>> image_scores(MeanDetector(), X, [0, 0, 1, 1])
    {'image_auroc': 1.0, 'image_average_precision': 1.0}
    """
    return _score(estimator, X, y, metrics=("image_auroc", "image_average_precision"))


def make_detection_scorer(
    metric: str | Sequence[str] = ("dice", "auprc", "image_auroc"),
    *,
    average: str = "per_image",
    empty_score: float = 1.0,
) -> Callable:
    """Build a ``scoring=`` callable for any pixel and image metrics from one detector pass.

    Parameters
    ----------
    metric : str or sequence of str, default=("dice", "auprc", "image_auroc")
        Among ``"dice"``, ``"auprc"`` (need pixel masks as ``y``), ``"image_auroc"`` and
        ``"image_average_precision"`` (labels or masks). One name gives a scorer returning
        a float; a sequence gives one returning a dict.
    average : {"per_image", "pooled"}, default="per_image"
        How images are combined by the pixel metrics (see :func:`dice_score`).
    empty_score : float, default=1.0
        Dice of an image whose ground truth and prediction are both empty.

    Returns
    -------
    scorer : callable ``(estimator, X, y)``
        Picklable, so it works with ``n_jobs > 1``.

    Examples
    --------
    >>> scorer = make_detection_scorer(("auprc", "image_auroc"))
    >>> callable(scorer)
    True
    """
    names = (metric,) if isinstance(metric, str) else tuple(metric)
    unknown = [name for name in names if name not in _METRICS]
    if unknown or not names:
        raise ValueError(
            f"metric must be one of {sorted(_METRICS)} or a sequence of them, got {metric!r}."
        )
    _check_average(average, ("per_image", "pooled"))
    return partial(_score, metrics=metric if isinstance(metric, str) else names,
                   average=average, empty_score=empty_score)


def make_pixel_scorer(
    metric: str | Sequence[str] = "dice",
    *,
    average: str = "per_image",
    empty_score: float = 1.0,
) -> Callable:
    """Build a ``scoring=`` callable for pixel metrics with non-default options.

    Parameters
    ----------
    metric : {"dice", "auprc"} or sequence of them, default="dice"
        One name gives a scorer returning a float; a sequence gives one returning a dict.
    average : {"per_image", "pooled"}, default="per_image"
        How images are combined (see :func:`dice_score`).
    empty_score : float, default=1.0
        Dice of an image whose ground truth and prediction are both empty.

    Returns
    -------
    scorer : callable ``(estimator, X, y)``
        Picklable, so it works with ``n_jobs > 1``.

    Examples
    --------
    >>> scorer = make_pixel_scorer(("dice", "auprc"), average="pooled")
    >>> callable(scorer)
    True
    """
    names = (metric,) if isinstance(metric, str) else tuple(metric)
    if not names or any(name not in _PIXEL_METRICS for name in names):
        raise ValueError(
            f"metric must be one of {sorted(_PIXEL_METRICS)} or a sequence of them, got "
            f"{metric!r}."
        )
    return make_detection_scorer(metric, average=average, empty_score=empty_score)

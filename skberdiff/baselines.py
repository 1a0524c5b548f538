"""Reference baselines that train no network.

:class:`IntensityThresholdBaseline` is the per-channel intensity threshold of Meissen et al.
(2021), who showed that on BRATS a tuned FLAIR threshold rivals unsupervised deep anomaly
detectors because tumours are bright in FLAIR. Any benchmark of skberdiff should report it
next to the diffusion model. Numpy only.
"""

import numbers

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ._validation import check_choice, check_images, check_masks, check_real
from .metrics import pixel_auprc, select_dice_threshold

__all__ = ["IntensityThresholdBaseline"]

_POLARITIES = ("bright", "dark")


class IntensityThresholdBaseline(BaseEstimator):
    """Per-channel intensity threshold, tuned on held-out lesion slices.

    The anomaly map is one channel's intensity (z-scored with healthy statistics), with
    the sign chosen so that higher means more anomalous. :meth:`fit` tries every
    candidate channel and polarity (bright or dark lesions) and keeps the one with the
    best pixel AUPRC on the given lesion slices; it also picks the threshold with the best
    pooled Dice for :meth:`predict_mask` (:func:`skberdiff.metrics.select_dice_threshold`
    over quantiles of the brain pixels, no component removal). This is the "tuned FLAIR
    threshold" of Meissen et al. [1]_ with the channel and polarity chosen by data rather
    than by hand.

    Parameters
    ----------
    channels : int, sequence of int or None, default=None
        Candidate channel indices; ``None`` tries them all.
    polarity : {"auto", "bright", "dark"}, default="auto"
        Lesion polarity to try; ``"auto"`` tries both.
    standardize : bool, default=True
        z-score each channel with the mean and standard deviation of brain pixels in
        ``X_healthy`` (or in ``X`` when it is not given). Ranking within a channel, hence
        AUPRC, does not change; it makes scores comparable between channels and the
        threshold transferable between data sets with different intensity scales.
    brain_threshold : float, default=0.0
        A pixel belongs to the brain if any channel exceeds this value (background is
        exactly zero in skull-stripped, BRATS-style data).

    Attributes
    ----------
    channel_ : int
        The chosen channel.
    polarity_ : {"bright", "dark"}
        The chosen polarity.
    auprc_ : ndarray of shape (n_channels, 2)
        Validation pixel AUPRC for each channel and polarity (columns: bright, dark);
        NaN where not tried.
    best_auprc_ : float
        Validation pixel AUPRC of the chosen channel and polarity.
    mean_ : ndarray of shape (n_channels,)
        Per-channel mean of brain pixels used for z-scoring (0 if not ``standardize``).
    scale_ : ndarray of shape (n_channels,)
        Per-channel standard deviation of brain pixels (1 if not ``standardize``).
    floor_ : float
        Lowest score seen in fit; map values are clipped below at it and background pixels
        get it, so they never outrank brain pixels.
    threshold_ : float
        Threshold of :meth:`predict_mask` (best pooled Dice on the validation slices);
        pixels strictly above it are anomalous.
    val_dice_ : float
        That best pooled validation Dice.
    n_channels_ : int
        Number of channels seen in fit.

    See Also
    --------
    skberdiff.datasets.make_mni_benchmark : benchmark whose lesion mix is calibrated so
        that this baseline does not solve it.

    References
    ----------
    .. [1] Meissen F., Kaissis G., Rueckert D. (2021). Challenging current semi-supervised
       anomaly segmentation methods for brain MRI. MICCAI BrainLes workshop, 63-74.

    Examples
    --------
    >>> import numpy as np
    >>> from skberdiff.baselines import IntensityThresholdBaseline
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(0.4, 0.6, size=(6, 2, 8, 8)).astype(np.float32)
    >>> y = np.zeros((6, 8, 8), dtype=bool)
    >>> y[:, 2:4, 2:4] = True
    >>> X[:, 1][y] -= 0.3          # lesions are dark in channel 1
    >>> baseline = IntensityThresholdBaseline().fit(X, y)
    >>> baseline.channel_, baseline.polarity_, round(baseline.best_auprc_, 2)
    (1, 'dark', 1.0)
    >>> baseline.anomaly_map(X).shape
    (6, 8, 8)
    """

    def __init__(self, *, channels=None, polarity: str = "auto", standardize: bool = True,
                 brain_threshold: float = 0.0):
        self.channels = channels
        self.polarity = polarity
        self.standardize = standardize
        self.brain_threshold = brain_threshold

    def _candidate_channels(self, n_channels):
        if self.channels is None:
            return list(range(n_channels))
        channels = [self.channels] if isinstance(self.channels, numbers.Integral) else self.channels
        channels = [int(c) for c in channels]
        if not channels or any(c < 0 or c >= n_channels for c in channels):
            raise ValueError(
                f"channels must be indices in [0, {n_channels}), got {self.channels!r}."
            )
        return channels

    def _brain(self, X):
        return (X > self.brain_threshold).any(axis=1)

    def _raw_scores(self, X, channel, polarity):
        z = (X[:, channel] - self.mean_[channel]) / self.scale_[channel]
        return z if polarity == "bright" else -z

    def fit(self, X: ArrayLike, y: ArrayLike, *,
            X_healthy: ArrayLike | None = None) -> "IntensityThresholdBaseline":
        """Choose channel, polarity and threshold on lesion slices.

        Parameters
        ----------
        X : array-like of shape (n, c, h, w)
            Held-out slices with lesions (validation set).
        y : array-like of shape (n, h, w)
            Their pixel masks.
        X_healthy : array-like of shape (m, c, h, w), default=None
            Healthy slices (e.g. the training set) for the z-scoring statistics.

        Returns
        -------
        self : IntensityThresholdBaseline
        """
        check_choice(self.polarity, "polarity", ("auto",) + _POLARITIES)
        check_real(self.brain_threshold, "brain_threshold")
        X = check_images(X)
        y = check_masks(y, n_samples=X.shape[0], spatial_shape=X.shape[2:])
        if not y.any():
            raise ValueError("y has no anomalous pixel; fit needs lesion slices.")
        n_channels = X.shape[1]
        channels = self._candidate_channels(n_channels)
        reference = (
            X
            if X_healthy is None
            else check_images(X_healthy, n_channels=n_channels, name="X_healthy")
        )
        if self.standardize:
            brain = self._brain(reference)
            pixels = np.moveaxis(reference, 1, 0)[:, brain]
            if pixels.shape[1] == 0:
                raise ValueError("No brain pixel (value > brain_threshold) to standardise with.")
            self.mean_ = pixels.mean(axis=1).astype(np.float64)
            self.scale_ = np.maximum(pixels.std(axis=1).astype(np.float64), 1e-12)
        else:
            self.mean_ = np.zeros(n_channels)
            self.scale_ = np.ones(n_channels)
        self.n_channels_ = n_channels

        brain = self._brain(X)
        polarities = _POLARITIES if self.polarity == "auto" else (self.polarity,)
        self.auprc_ = np.full((n_channels, 2), np.nan)
        for channel in channels:
            for polarity in polarities:
                scores = self._raw_scores(X, channel, polarity)
                # Background ranks below every brain pixel.
                scores = np.where(brain, scores, scores[brain].min() - 1.0 if brain.any() else 0)
                self.auprc_[channel, _POLARITIES.index(polarity)] = pixel_auprc(
                    y, scores, average="pooled")
        best = np.nanargmax(self.auprc_)
        self.channel_, polarity_index = (int(v) for v in np.unravel_index(best, self.auprc_.shape))
        self.polarity_ = _POLARITIES[polarity_index]
        self.best_auprc_ = float(self.auprc_[self.channel_, polarity_index])
        floor = [self._raw_scores(X, self.channel_, self.polarity_)[brain].min()]
        if X_healthy is not None:
            healthy_brain = self._brain(reference)
            if healthy_brain.any():
                floor.append(
                    self._raw_scores(reference, self.channel_, self.polarity_)[healthy_brain].min()
                )
        self.floor_ = float(min(floor))
        self.threshold_, self.val_dice_ = select_dice_threshold(
            self._anomaly_map(X), y, brain, min_size=0, average="pooled",
            quantiles=np.linspace(0.5, 0.9995, 128))
        return self

    def _anomaly_map(self, X):
        scores = np.maximum(self._raw_scores(X, self.channel_, self.polarity_), self.floor_)
        return np.where(self._brain(X), scores, self.floor_).astype(np.float32)

    def anomaly_map(self, X: ArrayLike) -> np.ndarray:
        """Per-pixel anomaly scores, higher = more anomalous.

        Parameters
        ----------
        X : array-like of shape (n, c, h, w)

        Returns
        -------
        maps : ndarray of shape (n, h, w), float32
            The z-scored intensity of the chosen channel (negated for dark lesions),
            clipped below at ``floor_``; background pixels get ``floor_``.
        """
        check_is_fitted(self, "channel_")
        return self._anomaly_map(check_images(X, n_channels=self.n_channels_))

    def predict_mask(self, X: ArrayLike) -> np.ndarray:
        """Segmentation ``anomaly_map(X) > threshold_``.

        Parameters
        ----------
        X : array-like of shape (n, c, h, w)
            Images.

        Returns
        -------
        masks : ndarray of bool, shape (n, h, w)
        """
        check_is_fitted(self, "channel_")
        return self.anomaly_map(X) > self.threshold_

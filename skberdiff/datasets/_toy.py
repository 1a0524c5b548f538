"""Tiny dependency-free "anatomy" images for unit tests (:func:`make_toy_images`)."""

import numpy as np
from scipy import ndimage
from scipy.special import expit

from .._validation import check_int, check_probability
from ._common import as_generator

__all__ = ["make_toy_images"]


def make_toy_images(
    n_samples, *, image_size=32, n_channels=1, anomaly_fraction=0.0, random_state=None
):
    """Tiny synthetic "anatomy" images with optional bright or dark spots as anomalies.

    Each image is an ellipse ("head") with a brighter ring ("cortex") and two darker
    blobs ("ventricles"), with random size, position and contrast, a little smoothing and
    Gaussian noise. Anomalous images carry one clearly visible bright or dark disc inside
    the head, whose mask is exact. Meant for fast unit tests of the estimator; needs only
    numpy and scipy.

    Parameters
    ----------
    n_samples : int
        Number of images.
    image_size : int, default=32
        Height and width.
    n_channels : int, default=1
        Channels; each is a different intensity mix of the same anatomy.
    anomaly_fraction : float, default=0.0
        Fraction of images (rounded) that carry an anomaly.
    random_state : int, numpy Generator or None, default=None
        Seed.

    Returns
    -------
    X : ndarray of shape (n_samples, n_channels, image_size, image_size), float32
        Images in [0, 1].
    masks : ndarray of shape (n_samples, image_size, image_size), bool
        Anomaly masks (empty for normal images).

    Examples
    --------
    >>> from skberdiff.datasets import make_toy_images
    >>> X, masks = make_toy_images(4, image_size=16, anomaly_fraction=0.5, random_state=0)
    >>> X.shape, X.dtype, masks.shape
    ((4, 1, 16, 16), dtype('float32'), (4, 16, 16))
    >>> int(masks.any(axis=(1, 2)).sum())
    2
    """
    n_samples = check_int(n_samples, "n_samples", low=1)
    image_size = check_int(image_size, "image_size", low=8)
    n_channels = check_int(n_channels, "n_channels", low=1)
    # Checked, not converted: the anomaly count below rounds the fraction as given.
    check_probability(anomaly_fraction, "anomaly_fraction")
    rng = as_generator(random_state)
    # Separate streams for anatomy and anomaly: the same seed gives the same anatomy
    # whatever anomaly_fraction is.
    seeds = rng.integers(0, 2**63 - 1, size=(n_samples, 2))
    n_anomalous = int(round(anomaly_fraction * n_samples))
    anomalous = np.zeros(n_samples, dtype=bool)
    anomalous[rng.choice(n_samples, size=n_anomalous, replace=False)] = True

    g = (np.arange(image_size) + 0.5) / image_size * 2.0 - 1.0
    yy, xx = np.meshgrid(g, g, indexing="ij")
    # Tissue intensities (background-of-head, ring, blobs) per channel.
    channel_weights = np.stack([np.roll(np.array([0.45, 0.8, 0.15]), k) for k in range(n_channels)])
    channel_weights[1::2] = channel_weights[1::2, ::-1]
    X = np.zeros((n_samples, n_channels, image_size, image_size), dtype=np.float32)
    masks = np.zeros((n_samples, image_size, image_size), dtype=bool)
    for i in range(n_samples):
        rng = np.random.default_rng(seeds[i, 0])
        spot_rng = np.random.default_rng(seeds[i, 1])
        cy, cx = rng.uniform(-0.05, 0.05, size=2)
        ry, rx = rng.uniform(0.72, 0.88), rng.uniform(0.6, 0.78)
        rho = np.hypot((yy - cy) / ry, (xx - cx) / rx)
        head = expit((1.0 - rho) * 12.0)
        ring = np.exp(-(((rho - rng.uniform(0.6, 0.75)) / 0.08) ** 2))
        blobs = np.zeros_like(rho)
        for side in (-1.0, 1.0):
            by = cy + rng.uniform(-0.15, 0.15)
            bx = cx + side * rng.uniform(0.12, 0.25)
            blobs += np.exp(-((yy - by) ** 2 + (xx - bx) ** 2) / (2 * rng.uniform(0.06, 0.1) ** 2))
        blobs = np.clip(blobs, 0.0, 1.0)
        jitter = rng.uniform(0.9, 1.1, size=(n_channels, 3))
        w = channel_weights * jitter
        image = head * (
            w[:, 0, None, None]
            + (w[:, 1] - w[:, 0])[:, None, None] * ring
            + (w[:, 2] - w[:, 0])[:, None, None] * blobs
        )
        if anomalous[i]:
            radius = spot_rng.uniform(0.1, 0.2)
            angle = spot_rng.uniform(0, 2 * np.pi)
            distance = spot_rng.uniform(0.0, 0.45)
            sy = cy + distance * ry * np.sin(angle)
            sx = cx + distance * rx * np.cos(angle)
            spot_rho = np.hypot(yy - sy, xx - sx) / radius
            spot = expit((1.0 - spot_rho) * 8.0)
            sign = 1.0 if spot_rng.random() < 0.5 else -1.0
            image = image + sign * spot_rng.uniform(0.3, 0.45) * spot * head
            masks[i] = (spot_rho < 1.0) & (head > 0.5)
        image = ndimage.gaussian_filter(image, (0, 0.5, 0.5))
        image = image + rng.normal(0.0, 0.02, size=image.shape) * head
        X[i] = np.clip(image, 0.0, 1.0)
    return X, masks

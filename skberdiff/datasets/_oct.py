"""Synthetic retina-like OCT B-scans for the 1-channel path (:func:`make_oct_like`)."""

import numpy as np
from scipy import ndimage
from scipy.special import expit

from .._validation import check_int
from ._common import as_generator

__all__ = ["make_oct_like"]


def make_oct_like(n_samples, *, image_size=256, drusen=False, random_state=None):
    """Synthetic retina-like OCT B-scans (1 channel), optionally with drusen.

    These are NOT real OCT images (none ships offline): wavy layered bands mimic the
    retinal layers (nerve fibre layer, plexiform and nuclear layers, ellipsoid zone, RPE,
    choroid) with a foveal pit, under multiplicative speckle. Drusen are dome-shaped
    elevations of the RPE above Bruch's membrane; their mask is the material between
    the two.

    Parameters
    ----------
    n_samples : int
        Number of images.
    image_size : int, default=256
        Height and width.
    drusen : bool, default=False
        If True every image has 1 to 3 drusen with masks; otherwise masks are empty.
    random_state : int, numpy Generator or None, default=None
        Seed.

    Returns
    -------
    X : ndarray of shape (n_samples, 1, image_size, image_size), float32
        Images in [0, 1].
    masks : ndarray of shape (n_samples, image_size, image_size), bool
        Drusen masks.

    Examples
    --------
    >>> from skberdiff.datasets import make_oct_like
    >>> X, masks = make_oct_like(2, image_size=32, drusen=True, random_state=0)
    >>> X.shape, bool(masks.any(axis=(1, 2)).all())
    ((2, 1, 32, 32), True)
    """
    n_samples = check_int(n_samples, "n_samples", low=1)
    image_size = check_int(image_size, "image_size", low=16)
    rng = as_generator(random_state)
    # Separate streams for the retina and the drusen: the same seed gives the same retina
    # with and without drusen.
    seeds = rng.integers(0, 2**63 - 1, size=(n_samples, 2))
    S = image_size
    y = (np.arange(S) + 0.5) / S
    x = (np.arange(S) + 0.5) / S
    yy = y[:, None]
    softness = 0.6 / S
    # Layers from the vitreous down: (thickness as a fraction of the height, intensity).
    layers = [
        ("rnfl", 0.035, 0.75),
        ("gcl_ipl", 0.06, 0.5),
        ("inl", 0.03, 0.25),
        ("opl", 0.02, 0.5),
        ("onl", 0.07, 0.15),
        ("ez", 0.012, 0.8),
        ("interzone", 0.01, 0.35),
        ("rpe", 0.02, 0.95),
        ("choroid", 0.09, 0.5),
    ]
    vitreous, sclera = 0.05, 0.2
    X = np.zeros((n_samples, 1, S, S), dtype=np.float32)
    masks = np.zeros((n_samples, S, S), dtype=bool)
    for i in range(n_samples):
        rng = np.random.default_rng(seeds[i, 0])
        drusen_rng = np.random.default_rng(seeds[i, 1])
        top = (
            rng.uniform(0.3, 0.45)
            + rng.uniform(0.1, 0.4) * (x - 0.5) ** 2
            + rng.uniform(-0.05, 0.05) * (x - 0.5)
        )
        for _ in range(2):
            top = top + rng.uniform(0.0, 0.01) * np.sin(
                2 * np.pi * rng.uniform(0.5, 2.0) * x + rng.uniform(0, 2 * np.pi)
            )
        fovea = np.exp(-(((x - rng.uniform(0.4, 0.6)) / rng.uniform(0.06, 0.1)) ** 2))
        scale = rng.uniform(0.85, 1.15)
        thickness = {name: t * scale * rng.uniform(0.85, 1.15) for name, t, _ in layers}
        # The inner layers thin out in the foveal pit, the outer nuclear layer thickens.
        inner_thinning = {"rnfl": 0.9, "gcl_ipl": 0.85, "inl": 0.7, "opl": 0.5}
        boundaries, intensities = [], [vitreous]
        depth = top + fovea * sum(
            thickness[n] * f for n, f in inner_thinning.items()
        )  # the pit lowers the inner limiting membrane
        for name, _, value in layers:
            boundaries.append(depth.copy())
            t = thickness[name] * (1.0 - fovea * inner_thinning.get(name, 0.0))
            if name == "onl":
                t = t + 0.02 * fovea
            depth = depth + t
            intensities.append(value * rng.uniform(0.9, 1.1))
        boundaries.append(depth)
        intensities.append(sclera)
        names = [n for n, _, _ in layers]
        elevation = np.zeros(S)
        if drusen:
            for _ in range(int(drusen_rng.integers(1, 4))):
                centre = drusen_rng.uniform(0.15, 0.85)
                half_width = drusen_rng.uniform(0.03, 0.08)
                height = drusen_rng.uniform(0.015, 0.04)
                dome = np.clip(1.0 - ((x - centre) / half_width) ** 2, 0.0, None) ** 0.5
                elevation = np.maximum(elevation, height * dome)
            elevation = np.maximum(elevation, 0.0)
            # The photoreceptors and RPE ride on the drusen; the outer nuclear layer thins.
            for k in range(names.index("ez"), names.index("choroid")):
                boundaries[k] = boundaries[k] - elevation
        bruch = boundaries[names.index("choroid")]
        image = np.full((S, S), intensities[0])
        for k, boundary in enumerate(boundaries):
            step = intensities[k + 1] - intensities[k]
            if k == names.index("choroid") and drusen:
                # Drusen material between the lifted RPE and Bruch's membrane.
                lifted = boundary[None, :] - elevation[None, :]
                image = image + (0.4 - intensities[k]) * expit((yy - lifted) / softness)
                below = expit((yy - boundary[None, :]) / softness)
                image = image + (intensities[k + 1] - 0.4) * below
                continue
            image = image + step * expit((yy - boundary[None, :]) / softness)
        if drusen:
            lifted = bruch - elevation
            inside = (yy >= lifted[None, :]) & (yy < bruch[None, :])
            masks[i] = inside & (elevation[None, :] > 0)
        choroid_texture = ndimage.gaussian_filter(rng.normal(size=(S, S)), (S / 128, S / 40))
        in_choroid = expit((yy - bruch[None, :]) / softness) * expit(
            (depth[None, :] - yy) / softness
        )
        image = image * (1.0 + 0.6 * choroid_texture * in_choroid)
        speckle = rng.gamma(3.0, 1.0 / 3.0, size=(S, S))
        speckle = ndimage.gaussian_filter(speckle, (max(0.3, S / 512), max(0.6, S / 200)))
        speckle /= speckle.mean()
        image = image * speckle + rng.normal(0.0, 0.02, size=(S, S))
        X[i, 0] = np.clip(image, 0.0, 1.0)
    return X, masks

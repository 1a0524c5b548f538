"""MNI152-derived brain MRI benchmark with synthetic lesions (:func:`make_mni_benchmark`).

Loading and caching of the MNI152 2009a maps shipped with nilearn, synthesis of one
subject (pose, elastic warp, contrasts), of its acquisition (gamma, gain, bias field,
Rician noise) and of its lesions. Provenance, copyright notice and references are in the
docstring of :mod:`skberdiff.datasets`.
"""

import numbers
import time

import numpy as np
from scipy import ndimage
from scipy.special import expit
from sklearn.utils import Bunch

from .._validation import check_choice, check_int, check_probability, check_range_pair, check_real
from ._common import as_generator

__all__ = ["CHANNEL_NAMES", "LESION_KINDS", "SIZE_PRESETS", "make_mni_benchmark"]

#: Channel order of the slices of :func:`make_mni_benchmark`.
CHANNEL_NAMES = ("t1", "t1ce", "t2_like", "flair_like")

#: The four lesion kinds of :func:`make_mni_benchmark` (keys of ``lesion_mix``).
LESION_KINDS = ("oedema", "core", "ring", "mass")

# BRATS slices are 1 mm and zero-padded to 256 x 256; one frame pixel is one millimetre.
_FRAME = 256
_CENTRE = (_FRAME - 1) / 2.0
# Through-plane room kept around the slice range for the random tilt and elastic jitter.
_Z_MARGIN = 10

# Lesion settings: kind mix, contrast range, major semi-axis range (mm), probability that
# an intensity lesion is iso-intense in FLAIR. "default" is calibrated (see make_mni_benchmark).
_DIFFICULTY_PRESETS = {
    "easy": {
        "mix": {"oedema": 0.7, "core": 0.1, "ring": 0.2},
        "contrast": (0.4, 0.8),
        "radius_mm": (8.0, 30.0),
        "iso_flair_probability": 0.0,
    },
    "default": {
        "mix": {"oedema": 0.3, "core": 0.2, "ring": 0.2, "mass": 0.3},
        "contrast": (0.05, 0.6),
        "radius_mm": (5.0, 30.0),
        "iso_flair_probability": 0.3,
    },
    "hard": {
        "mix": {"oedema": 0.3, "core": 0.2, "ring": 0.2, "mass": 0.3},
        "contrast": (0.03, 0.3),
        "radius_mm": (4.0, 20.0),
        "iso_flair_probability": 0.5,
    },
}

#: Sample counts and image size of the ``size`` presets of :func:`make_mni_benchmark`.
#: ``SIZE_PRESETS[size]`` maps ``"n_train"``, ``"n_val_lesion"``, ``"n_test_lesion"``,
#: ``"n_test_healthy"`` and ``"image_size"`` to the values used when the matching argument
#: of :func:`make_mni_benchmark` is ``None``: ``"tiny"`` (unit tests), ``"small"`` (CPU
#: demos, 64x64) and ``"default"`` (256x256, the BRATS padding).
SIZE_PRESETS = {
    "tiny": {
        "n_train": 8, "n_val_lesion": 4, "n_test_lesion": 4, "n_test_healthy": 4,
        "image_size": 32,
    },
    "small": {
        "n_train": 128, "n_val_lesion": 32, "n_test_lesion": 64, "n_test_healthy": 64,
        "image_size": 64,
    },
    "default": {
        "n_train": 200, "n_val_lesion": 50, "n_test_lesion": 100, "n_test_healthy": 100,
        "image_size": 256,
    },
}

# Loaded maps and their in-plane anti-aliased slabs, kept for the life of the process.
_MNI_CACHE = {}
_MAX_CACHED_SLABS = 2
# Cubic-spline interpolation matrices of the smooth random fields, by (controls, size).
_SPLINE_MATRICES = {}


# --------------------------------------------------------------------------------------
# MNI152 maps
# --------------------------------------------------------------------------------------


def _import_nilearn_datasets():
    try:
        from nilearn import datasets
    except ImportError as exc:
        raise ImportError(
            "make_mni_benchmark needs nilearn, whose wheel ships the MNI152 2009 template "
            'maps it is built from. Install it with: pip install "skberdiff[datasets]"'
        ) from exc
    return datasets


def _load_mni_maps():
    """Return the MNI152 T1, GM, WM and brain-mask volumes, ``(nx, ny, nz)`` each (cached)."""
    maps = _MNI_CACHE.get("maps")
    if maps is not None:
        return maps
    datasets = _import_nilearn_datasets()

    def data(img):
        return np.asarray(img.get_fdata(dtype=np.float32))

    maps = (
        data(datasets.load_mni152_template(resolution=1)),
        data(datasets.load_mni152_gm_template(resolution=1)),
        data(datasets.load_mni152_wm_template(resolution=1)),
        data(datasets.load_mni152_brain_mask(resolution=1)) > 0.5,
    )
    if len({m.shape for m in maps}) != 1:
        raise RuntimeError(
            "The MNI152 maps shipped with this nilearn version have different shapes "
            f"({[m.shape for m in maps]}); nilearn>=0.10 is needed."
        )
    _MNI_CACHE["maps"] = maps
    return maps


def _mni_slab(image_size, z_lo, z_hi):
    """Maps of the axial slab ``[z_lo, z_hi)``, anti-aliased in-plane for ``image_size``.

    Returns a ``(5, nz, ny, nx)`` float32 array (cached) holding the T1 template, grey- and
    white-matter probabilities, the filled brain mask and a periventricular-rim weight
    (white matter next to the lateral ventricles, where FLAIR is often mildly bright in
    healthy adults). Sampling the slab at the output resolution after a Gaussian
    pre-filter is the same as downsampling the 256 x 256 padded slices with anti-aliasing,
    at a fraction of the cost.
    """
    key = (image_size, z_lo, z_hi)
    slabs = _MNI_CACHE.setdefault("slabs", {})
    if key in slabs:
        return slabs[key]
    # (z, y, x) order: an axial plane then reads nearly contiguous memory (3x faster).
    t1, gm, wm, brain = (
        np.ascontiguousarray(m[..., z_lo:z_hi].transpose(2, 1, 0)) for m in _load_mni_maps()
    )
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    brain = ndimage.binary_fill_holes(brain, structure=in_plane)
    # Ventricles = CSF deep inside the brain (in-plane depth).
    depth = np.stack([ndimage.distance_transform_edt(plane) for plane in brain])
    brain = brain.astype(np.float32)
    t1 = t1 * brain
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    ventricles = ((csf > 0.5) & (depth > 12.0)).astype(np.float32)
    rim = np.clip(3.0 * ndimage.gaussian_filter(ventricles, 2.5), 0.0, 1.0) * wm
    volumes = np.stack([t1, gm, wm, brain, rim])
    factor = _FRAME / image_size
    if factor > 1:
        sigma = (factor - 1) / 2.0
        volumes = ndimage.gaussian_filter(volumes, (0, 0, sigma, sigma))
    if len(slabs) >= _MAX_CACHED_SLABS:
        slabs.pop(next(iter(slabs)))
    slabs[key] = np.ascontiguousarray(volumes, dtype=np.float32)
    return slabs[key]


# --------------------------------------------------------------------------------------
# One synthetic subject
# --------------------------------------------------------------------------------------


def _pixel_grid(image_size):
    """Frame coordinates (mm, row/col) of the output pixel centres, shape (2, S, S)."""
    step = _FRAME / image_size
    g = (np.arange(image_size) + 0.5) * step - 0.5
    return np.stack(np.meshgrid(g, g, indexing="ij"))


def _spline_matrix(n_control, image_size):
    """Matrix ``W`` with ``W @ c @ W.T == ndimage.zoom(c, image_size / n_control, order=3)``."""
    key = (n_control, image_size)
    if key not in _SPLINE_MATRICES:
        columns = [
            ndimage.zoom(np.eye(n_control)[k], image_size / n_control, order=3, mode="nearest")
            for k in range(n_control)
        ]
        _SPLINE_MATRICES[key] = np.stack(columns, axis=1)[:image_size]
    return _SPLINE_MATRICES[key]


def _smooth_field(rng, image_size, n_control, amplitude):
    """A smooth random field: Gaussian control points interpolated by cubic splines."""
    control = rng.normal(0.0, amplitude, size=(n_control, n_control))
    weights = _spline_matrix(n_control, image_size)
    return weights @ control @ weights.T


def _draw_subject(rng, image_size, slice_range):
    """Anatomy of one subject: slice position, pose, elastic warp and tissue contrasts."""
    deg = np.pi / 180.0
    elastic_amplitude = rng.uniform(1.0, 3.0)
    vessels = ndimage.gaussian_filter(
        rng.normal(size=(image_size, image_size)), max(0.7, image_size / _FRAME * 1.5)
    )
    vessels = (vessels > np.quantile(vessels, 0.97)).astype(np.float32)
    return {
        "z": rng.uniform(*slice_range),
        "angle": rng.uniform(-8.0, 8.0) * deg,
        "tilt": np.tan(rng.uniform(-3.0, 3.0, size=2) * deg),
        "scale": rng.uniform(0.92, 1.08) * np.exp(rng.uniform(-0.04, 0.04, size=2)),
        "shift": rng.normal(0.0, 3.0, size=2),
        "elastic": np.stack(
            [_smooth_field(rng, image_size, 5, elastic_amplitude) for _ in range(2)]
        ),
        "t1_gain": rng.uniform(0.92, 1.0),
        "t1ce_gain": rng.uniform(0.85, 0.97),
        "vessel_amplitude": rng.uniform(0.1, 0.35),
        "vessels": vessels,
        # T2: CSF, GM, WM weights; FLAIR: CSF, GM, WM weights and periventricular rim.
        "t2_weights": np.array(
            [rng.uniform(0.85, 1.0), rng.uniform(0.5, 0.6), rng.uniform(0.33, 0.42)]
        ),
        "flair_weights": np.array(
            [rng.uniform(0.04, 0.12), rng.uniform(0.56, 0.66), rng.uniform(0.42, 0.5)]
        ),
        "rim_amplitude": rng.uniform(0.0, 0.15),
    }


def _draw_acquisition(rng, image_size):
    """Scanner effects of one subject: gamma, gain, bias field and noise realisation."""
    shape = (4, image_size, image_size)
    bias = _smooth_field(rng, image_size, 3, 1.0)
    bias /= max(np.abs(bias).max(), 1e-6)
    sigma = rng.uniform(0.005, 0.025) * rng.uniform(0.8, 1.2, size=4)
    return {
        "gamma": rng.uniform(0.85, 1.15, size=4),
        "gain": rng.uniform(0.9, 1.05, size=4),
        "bias": bias,
        "bias_amplitude": rng.uniform(0.03, 0.15) * rng.uniform(0.5, 1.0, size=4),
        "sigma": sigma,
        "noise": rng.standard_normal(size=(2,) + shape, dtype=np.float32),
    }


def _source_coordinates(points, subject, z_lo, slab_shape):
    """Map output frame points (2, S, S) to (z, y, x) voxel coordinates (3, S*S) of the slab."""
    ny, nx = slab_shape[2:]
    pad_row, pad_col = (_FRAME - ny) // 2, (_FRAME - nx) // 2
    cos, sin = np.cos(subject["angle"]), np.sin(subject["angle"])
    r = (points[0] - _CENTRE) / subject["scale"][0]
    c = (points[1] - _CENTRE) / subject["scale"][1]
    q_row = cos * r - sin * c + _CENTRE - subject["shift"][0] + subject["elastic"][0]
    q_col = sin * r + cos * c + _CENTRE - subject["shift"][1] + subject["elastic"][1]
    # Frame rows run anterior (top) to posterior; columns follow the MNI x axis.
    x = q_col - pad_col
    y = (ny - 1) - (q_row - pad_row)
    z = (
        subject["z"]
        - z_lo
        + subject["tilt"][0] * (q_row - _CENTRE)
        + subject["tilt"][1] * (q_col - _CENTRE)
    )
    return np.stack([z.ravel(), y.ravel(), x.ravel()])


def _sample_maps(slab, coordinates, image_size):
    return np.stack(
        [
            ndimage.map_coordinates(
                volume, coordinates, order=1, mode="constant", cval=0.0, prefilter=False
            ).reshape(image_size, image_size)
            for volume in slab
        ]
    ).astype(np.float32)


def _synthesise_channels(maps, subject):
    """BRATS-like contrasts (t1, t1ce, t2-like, flair-like) from sampled tissue maps."""
    t1, gm, wm, brain, rim = maps
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    tissue = np.stack([csf, gm, wm])
    t1_image = subject["t1_gain"] * t1
    t1ce = subject["t1ce_gain"] * t1 + (
        subject["vessel_amplitude"] * subject["vessels"] * np.clip(csf + 0.3 * gm, 0.0, 1.0)
    )
    # Half tissue model, half inverted T1 template: keeps the template's anatomical detail.
    t2 = 0.5 * np.tensordot(subject["t2_weights"], tissue, axes=1) + 0.5 * brain * (1.0 - t1)
    flair = np.tensordot(subject["flair_weights"], tissue, axes=1) + subject["rim_amplitude"] * rim
    return np.stack([t1_image, t1ce, t2, flair]).astype(np.float32)


def _acquire(image, brain_mask, acquisition):
    """Apply gamma, gain, bias field and Rician noise; zero outside the brain."""
    x = np.clip(image, 0.0, 1.0) ** acquisition["gamma"][:, None, None]
    x = x * acquisition["gain"][:, None, None]
    x = x * np.exp(acquisition["bias_amplitude"][:, None, None] * acquisition["bias"])
    sigma = acquisition["sigma"][:, None, None]
    real = x + sigma * acquisition["noise"][0]
    imaginary = sigma * acquisition["noise"][1]
    x = np.sqrt(real * real + imaginary * imaginary)
    x = np.clip(x, 0.0, 1.0) * brain_mask
    return x.astype(np.float32)


# --------------------------------------------------------------------------------------
# Lesions
# --------------------------------------------------------------------------------------


def _elliptic_radius(points, lesion):
    """Normalised elliptic distance to the lesion centre (1 on the irregular boundary)."""
    d_row = points[0] - lesion["centre"][0]
    d_col = points[1] - lesion["centre"][1]
    cos, sin = np.cos(lesion["theta"]), np.sin(lesion["theta"])
    u = (cos * d_row + sin * d_col) / lesion["a"]
    v = (-sin * d_row + cos * d_col) / lesion["b"]
    rho = np.hypot(u, v)
    phi = np.arctan2(v, u)
    boundary = np.ones_like(rho)
    for k, (amplitude, phase) in enumerate(lesion["harmonics"], start=2):
        boundary += amplitude * np.cos(k * phi + phase)
    return rho / boundary


def _kind_contrasts(rng, kind, contrast, iso_flair_probability):
    """Per-channel intensity changes (t1, t1ce, t2, flair) of one lesion, in [0, 1] units."""
    u = rng.uniform
    if kind == "oedema":
        flair = u(-0.1, 0.1) if rng.random() < iso_flair_probability else u(0.3, 1.0)
        body = [-u(0.1, 0.4), -u(0.1, 0.4), u(0.6, 1.0), flair]
        return {"body": contrast * np.array(body), "texture": u(0.3, 0.8)}
    if kind == "core":
        flair = u(-0.1, 0.1) if rng.random() < iso_flair_probability else u(-0.3, 0.5)
        body = [-u(0.6, 1.0), -u(0.4, 1.0), u(0.2, 0.8), flair]
        return {"body": contrast * np.array(body), "texture": u(0.5, 1.0)}
    if kind == "ring":
        flair = u(-0.1, 0.1) if rng.random() < iso_flair_probability else u(-0.2, 0.4)
        body = [-u(0.4, 0.9), -u(0.4, 0.9), u(0.3, 0.9), flair]
        ring = [u(-0.2, 0.1), u(1.0, 2.0), u(-0.1, 0.2), u(0.0, 0.4)]
        return {
            "body": contrast * np.array(body),
            "ring": contrast * np.array(ring),
            "ring_ratio": u(0.45, 0.75),
            "texture": u(0.5, 1.0),
        }
    # "mass": a space-occupying, intensity-iso lesion; only the anatomy moves.
    return {"amplitude": u(0.5, 0.85)}


def _draw_lesion(rng, kind, brain_mask, depth_mm, points, pixel_mm, config):
    """Draw one lesion of ``kind`` inside the eroded brain; return it and its mask."""
    r_lo, r_hi = config["radius_mm"]
    min_pixels = 4
    c_lo, c_hi = config["contrast"]
    for attempt in range(50):
        if kind == "mass":
            # A bulge must displace tissue by half a pixel to be a mask at all.
            a = rng.uniform(max(r_lo, 0.5 * (r_lo + r_hi)), r_hi)
        else:
            a = rng.uniform(r_lo, r_hi)
        # Later attempts shrink the lesion so that a narrow brain slice still has room.
        a = max(a * 0.97**attempt, 1.5 * pixel_mm)
        b = a * rng.uniform(0.6, 1.0)
        candidates = np.flatnonzero(depth_mm.ravel() >= max(0.6 * a, 2.0 * pixel_mm))
        if candidates.size == 0:
            continue
        index = candidates[rng.integers(candidates.size)]
        centre = points[:, index // brain_mask.shape[1], index % brain_mask.shape[1]]
        centre = centre + rng.uniform(-0.5, 0.5, size=2) * pixel_mm
        lesion = {
            "kind": kind,
            "centre": centre,
            "a": a,
            "b": b,
            "theta": rng.uniform(0.0, np.pi),
            "harmonics": [
                (rng.uniform(0.0, 0.25) / k, rng.uniform(0.0, 2 * np.pi)) for k in range(2, 6)
            ],
            "edge_mm": max(rng.uniform(0.5, 2.0), 0.3 * pixel_mm),
            "contrast": float(np.exp(rng.uniform(np.log(c_lo), np.log(c_hi)))),
        }
        lesion.update(
            _kind_contrasts(rng, kind, lesion["contrast"], config["iso_flair_probability"])
        )
        if kind == "mass":
            lesion["contrast"] = 0.0
            mask = _mass_effect(points, lesion, pixel_mm)[1]
        else:
            mask = _elliptic_radius(points, lesion) < 1.0
        mask &= brain_mask
        if mask.sum() >= min_pixels:
            return lesion
    raise RuntimeError(  # pragma: no cover - the brain always has room for a small lesion
        f"Could not place a {kind!r} lesion inside the brain; widen lesion_radius_mm."
    )


def _mass_effect(points, lesion, pixel_mm):
    """Backward warp of a space-occupying lesion and its mask (the displaced region).

    Output point ``p`` samples the anatomy at ``c + (p - c) (1 - A (1 - rho^2)^2)`` inside
    the lesion ellipse (``rho < 1``) and is unchanged outside: the tissue around ``c`` swells
    by up to ``1 / (1 - A)`` and is pushed outwards, without folding for ``A < 1``. The
    mask is the region displaced by at least ``max(0.5 mm, 0.25 pixel)``, holes filled.
    """
    rho = _elliptic_radius(points, lesion)
    shrink = lesion["amplitude"] * np.clip(1.0 - rho * rho, 0.0, None) ** 2
    offset = points - lesion["centre"][:, None, None]
    displacement = np.hypot(offset[0], offset[1]) * shrink
    warped = points - offset * shrink
    mask = ndimage.binary_fill_holes(displacement >= max(0.5, 0.25 * pixel_mm))
    return warped, mask


def _apply_intensity_lesion(image, points, lesion, pixel_mm):
    rho = _elliptic_radius(points, lesion)
    sharpness = np.sqrt(lesion["a"] * lesion["b"]) / lesion["edge_mm"]
    weight = expit((1.0 - rho) * sharpness)
    if lesion["texture"] > 0:
        # Lesions wash out the anatomy they replace (iso-intense lesions still lose texture).
        sigma = max(0.5, 2.0 / pixel_mm)
        smooth = ndimage.gaussian_filter(image, (0, sigma, sigma))
        image = image + lesion["texture"] * weight * (smooth - image)
    if "ring" in lesion:
        inner = expit((lesion["ring_ratio"] - rho) * sharpness)
        ring = np.clip(weight - inner, 0.0, 1.0)
        image = image + inner * lesion["body"][:, None, None] + ring * lesion["ring"][:, None, None]
    else:
        image = image + weight * lesion["body"][:, None, None]
    return image, rho < 1.0


def _render_slice(seed, slab, z_lo, image_size, slice_range, lesion_config):
    """Render one subject's slice; with ``lesion_config`` also its lesions and mask.

    Returns the image, the mask, the lesion-free image of the same subject and
    acquisition (identical noise), the slice position and the list of lesions.
    """
    rng = np.random.default_rng(seed)
    pixel_mm = _FRAME / image_size
    points = _pixel_grid(image_size)
    subject = _draw_subject(rng, image_size, slice_range)
    acquisition = _draw_acquisition(rng, image_size)
    slab_shape = slab.shape
    clean_maps = _sample_maps(
        slab, _source_coordinates(points, subject, z_lo, slab_shape), image_size
    )
    clean_brain = clean_maps[3] > 0.5
    clean = _acquire(_synthesise_channels(clean_maps, subject), clean_brain, acquisition)
    mask = np.zeros((image_size, image_size), dtype=bool)
    if lesion_config is None:
        return clean, mask, clean, subject["z"], []

    depth_mm = ndimage.distance_transform_edt(clean_brain) * pixel_mm
    n_lesions = int(rng.integers(1, lesion_config["max_lesions"] + 1))
    kinds = rng.choice(
        list(lesion_config["mix"].keys()), size=n_lesions, p=list(lesion_config["mix"].values())
    )
    lesions = [
        _draw_lesion(rng, str(kind), clean_brain, depth_mm, points, pixel_mm, lesion_config)
        for kind in kinds
    ]
    warped = points
    for lesion in lesions:
        if lesion["kind"] == "mass":
            warped, displaced = _mass_effect(warped, lesion, pixel_mm)
            mask |= displaced
    if warped is points:
        maps = clean_maps
    else:
        maps = _sample_maps(
            slab, _source_coordinates(warped, subject, z_lo, slab_shape), image_size
        )
    image = _synthesise_channels(maps, subject)
    for lesion in lesions:
        if lesion["kind"] != "mass":
            image, inside = _apply_intensity_lesion(image, points, lesion, pixel_mm)
            mask |= inside
    brain = maps[3] > 0.5
    mask &= brain
    return _acquire(image, brain, acquisition), mask, clean, subject["z"], lesions


def _public_lesion(lesion):
    keep = ("kind", "a", "b", "theta", "contrast", "amplitude", "ring_ratio")
    info = {k: (float(v) if k != "kind" else v) for k, v in lesion.items() if k in keep}
    info["centre"] = tuple(float(v) for v in lesion["centre"])
    return info


def _render_split(seeds, slab, z_lo, image_size, slice_range, lesion_config, keep_free=False):
    """Render a split; the lesion-free images are kept only if asked (else ``None``)."""
    n = len(seeds)
    X = np.zeros((n, 4, image_size, image_size), dtype=np.float32)
    X_free = np.zeros_like(X) if keep_free else None
    masks = np.zeros((n, image_size, image_size), dtype=bool)
    z = np.zeros(n)
    kinds, lesion_info = [], []
    for i, seed in enumerate(seeds):
        X[i], masks[i], free, z[i], lesions = _render_slice(
            seed, slab, z_lo, image_size, slice_range, lesion_config
        )
        if keep_free:
            X_free[i] = free
        kinds.append("+".join(sorted({les["kind"] for les in lesions})) or "none")
        lesion_info.append([_public_lesion(les) for les in lesions])
    return X, masks, X_free, z, np.array(kinds, dtype=object), lesion_info


_DESCRIPTION = """\
Synthetic-lesion benchmark on an MNI152-derived brain (skberdiff.datasets.make_mni_benchmark).

Healthy "subjects" are random deformations and re-acquisitions of ONE brain, the MNI152 2009a
symmetric template shipped with nilearn (Fonov et al. 2009, 2011): elastic warp, rotation,
scale, slice-position jitter and tilt, bias field, gamma, gain and Rician noise. Channels
t1, t1ce, t2_like, flair_like are derived from the T1 template and the tissue probability
maps (CSF = filled brain mask - GM - WM); T2/FLAIR-like contrasts are weighted sums, not
acquired images. Test and validation slices carry SYNTHETIC lesions with exact masks:
oedema (bright in T2, varied FLAIR), hypo-intense core (T1), enhancing ring (T1ce) and
intensity-iso mass effect (the mask is the displaced region). Slices are 1 mm axial,
zero-padded to 256x256 like BRATS and resampled with anti-aliasing to image_size; values are
in [0, 1], zero outside the brain.

Scores on these data are NOT comparable to BRATS2020 (or any patient data) figures.

MNI152 notice: Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre,
Montreal Neurological Institute, McGill University. Permission to use, copy, modify, and
distribute this software and its documentation for any purpose and without fee is hereby
granted, provided that the above copyright notice appear in all copies. The authors and McGill
University make no representations about the suitability of this software for any purpose.
It is provided "as is" without express or implied warranty.
"""


def make_mni_benchmark(
    *,
    size="default",
    n_train=None,
    n_val_lesion=None,
    n_test_lesion=None,
    n_test_healthy=None,
    image_size=None,
    slice_range=(70, 120),
    difficulty="default",
    lesion_mix=None,
    lesion_contrast=None,
    lesion_radius_mm=None,
    iso_flair_probability=None,
    max_lesions=2,
    return_lesion_free=False,
    random_state=0,
    verbose=0,
):
    """Build a BRATS-like 4-channel anomaly-detection benchmark from the MNI152 maps.

    Every slice is a distinct synthetic subject derived from the real MNI152 2009a maps
    shipped in the nilearn wheel; nothing is downloaded. Validation and test lesions are
    synthetic, with exact pixel masks. Requires nilearn (``pip install
    "skberdiff[datasets]"``).

    Parameters
    ----------
    size : {"tiny", "small", "default"}, default="default"
        Preset for the sample counts and ``image_size``, read from :data:`SIZE_PRESETS`:
        ``"tiny"`` = 8 train, 4 val, 4 + 4 test at 32x32 (for tests), ``"small"`` =
        128 / 32 / 64 + 64 at 64x64 (CPU demos), ``"default"`` = 200 / 50 / 100 + 100 at
        256x256. Explicit arguments below override the preset.
    n_train : int, default=None
        Number of healthy training slices.
    n_val_lesion : int, default=None
        Number of lesion slices held out for tuning thresholds and baselines.
    n_test_lesion : int, default=None
        Number of lesion test slices.
    n_test_healthy : int, default=None
        Number of lesion-free test slices (for image-level scores).
    image_size : int, default=None
        Output size ``H = W``. 256 is the BRATS padding; smaller sizes resample the padded
        1 mm slices with Gaussian anti-aliasing.
    slice_range : tuple of int, default=(70, 120)
        Axial range of MNI voxel indices ``[low, high)`` from which slice positions are
        drawn uniformly (index 72 is z = 0 mm; the default spans the lateral ventricles,
        like the BRATS slices 80-128 used in the paper).
    difficulty : {"easy", "default", "hard"}, default="default"
        Preset for the four lesion settings below (explicit values override it).
        ``"default"`` is the calibrated mix (see Notes): oedema 0.3, core 0.2, ring 0.2,
        mass 0.3; contrast (0.05, 0.6); semi-axis (5, 30) mm; 30 % iso-intense in FLAIR.
        ``"easy"`` is BRATS-like: mostly large oedema, bright in FLAIR, no mass effect
        (contrast (0.4, 0.8), semi-axis (8, 30) mm); a FLAIR threshold nearly solves it.
        ``"hard"``: the default mix with contrast (0.03, 0.3), semi-axis (4, 20) mm and
        50 % iso-FLAIR lesions.
    lesion_mix : dict, default=None
        Probabilities of the lesion kinds ``"oedema"`` (bright in T2, varied FLAIR),
        ``"core"`` (dark in T1), ``"ring"`` (enhancing rim in T1ce around a necrotic
        centre) and ``"mass"`` (intensity-iso swelling that displaces the anatomy; its
        mask is the displaced region); normalised.
    lesion_contrast : tuple of float, default=None
        Range of the lesion contrast, in [0, 1] intensity units, drawn log-uniformly
        (subtle to strong). Each kind scales it per channel.
    lesion_radius_mm : tuple of float, default=None
        Range of the lesions' major semi-axis in mm (at least 1.5 pixels).
    iso_flair_probability : float, default=None
        Probability that an intensity lesion is (nearly) iso-intense in FLAIR.
    max_lesions : int, default=2
        Each lesion slice holds between 1 and ``max_lesions`` lesions (uniform).
    return_lesion_free : bool, default=False
        Also return the lesion-free version of every validation and test slice: the same
        subject and the same noise realisation without the lesion (a pseudo-healthy
        ground truth, for oracle maps and reconstruction checks).
    random_state : int, numpy Generator or None, default=0
        Seed. Each split has its own stream, so changing ``n_train`` does not change the
        test slices.
    verbose : int, default=0
        If positive, print the generation time.

    Returns
    -------
    data : sklearn.utils.Bunch
        With fields

        - ``X_train`` : float32 (n_train, 4, H, W) in [0, 1], healthy slices.
        - ``X_val``, ``y_val`` : lesion validation slices and bool (n, H, W) masks.
        - ``X_test``, ``y_test`` : test slices, lesion slices first, then healthy ones
          (whose masks are empty).
        - ``is_anomalous_test`` : bool (n_test,).
        - ``lesion_kind_val``, ``lesion_kind_test`` : object arrays of ``"+"``-joined
          kinds (``"none"`` for healthy slices).
        - ``lesions_val``, ``lesions_test`` : per slice, a list of dicts with each lesion's
          kind, centre (frame mm), semi-axes, contrast and kind-specific parameters.
        - ``slice_z_train``, ``slice_z_val``, ``slice_z_test`` : MNI voxel z positions.
        - ``X_val_lesion_free``, ``X_test_lesion_free`` : only if ``return_lesion_free``.
        - ``channel_names`` : ``("t1", "t1ce", "t2_like", "flair_like")``.
        - ``description`` : plain-text provenance and caveats.
        - ``params`` : the generator settings; ``generation_time_s`` : seconds taken.

    Raises
    ------
    ImportError
        If nilearn is not installed.

    See Also
    --------
    skberdiff.baselines.IntensityThresholdBaseline : the intensity-threshold reference.
    make_toy_images : tiny dependency-free images for unit tests.

    Notes
    -----
    The default lesion mix is calibrated so that a per-channel intensity threshold
    (:class:`skberdiff.baselines.IntensityThresholdBaseline`, Meissen et al. [3]_) tuned on
    the validation lesion slices (with healthy z-scoring statistics from ``X_train``) does
    not solve the benchmark: a prototype with bright FLAIR lesions gave that baseline an
    AUPRC of 0.97. The lesions stay real: the difference to the lesion-free version of the
    same slice (``return_lesion_free=True``) localises them. Pixel AUPRC pooled over the
    lesion test slices, measured on two CPU cores::

        preset                      threshold baseline        oracle |x - x_lesion_free|
        small   (64x64),   seed 0   0.136 (t2_like, bright)   0.915
        small   (64x64),   seed 1   0.204 (flair_like, bright) 0.931
        small   (64x64),   seed 2   0.193 (flair_like, bright) 0.924
        default (256x256), seed 0   0.157 (flair_like, bright) 0.928
        small, difficulty="easy"    0.71 - 0.83 (seeds 0-2)    0.99
        small, difficulty="hard"    0.05 - 0.07 (seeds 0-2)    0.89 - 0.92

    Lesion pixels are about 2 % of the pixels of a lesion slice. The oracle stays at 0.85
    (3x3 median) when the lesion-free reference gets an independent noise realisation of
    sigma 0.02, so the lesions stand out from the noise. Iso-intense mass effect is the
    hardest kind for the threshold (AUPRC 0.08 on "mass"-only slices at 256x256) and
    oedema the easiest (0.27). Reproduce with ``python benchmarks/calibrate_datasets.py
    small`` (or ``default``) from a source checkout, which prints the figures and the
    per-kind split.

    Generation, after a one-off ~1 s per process to load the maps (plus ~1 s to import
    nilearn): 200 healthy slices in 1.1 s at 64x64, 2.0 s at 128x128 and 6.9 s at
    256x256; lesion slices cost up to twice as much (two samplings with mass effect).
    The ``"default"`` preset (450 slices at 256x256) takes about 23 s.

    References
    ----------
    .. [1] Fonov V. et al. (2009). Unbiased nonlinear average age-appropriate brain
       templates from birth to adulthood. NeuroImage 47, S102.
    .. [2] Fonov V. et al. (2011). Unbiased average age-appropriate atlases for pediatric
       studies. NeuroImage 54(1), 313-327.
    .. [3] Meissen F., Kaissis G., Rueckert D. (2021). Challenging current semi-supervised
       anomaly segmentation methods for brain MRI. MICCAI BrainLes workshop, 63-74.

    Examples
    --------
    >>> from skberdiff.datasets import make_mni_benchmark
    >>> data = make_mni_benchmark(size="tiny", random_state=0)
    >>> data.X_train.shape, data.X_test.shape, data.y_test.shape
    ((8, 4, 32, 32), (8, 4, 32, 32), (8, 32, 32))
    >>> bool(data.y_test[data.is_anomalous_test].any(axis=(1, 2)).all())
    True
    >>> data.channel_names
    ('t1', 't1ce', 't2_like', 'flair_like')
    """
    start = time.perf_counter()
    _import_nilearn_datasets()
    preset = SIZE_PRESETS[check_choice(size, "size", tuple(SIZE_PRESETS))]
    given = {
        "n_train": n_train,
        "n_val_lesion": n_val_lesion,
        "n_test_lesion": n_test_lesion,
        "n_test_healthy": n_test_healthy,
        "image_size": image_size,
    }
    counts = {k: preset[k] if v is None else v for k, v in given.items()}
    for name in ("n_train", "n_val_lesion", "n_test_lesion", "n_test_healthy"):
        counts[name] = check_int(counts[name], name, low=0)
    image_size = check_int(counts.pop("image_size"), "image_size", low=16, high=_FRAME)
    lesion_preset = _DIFFICULTY_PRESETS[
        check_choice(difficulty, "difficulty", tuple(_DIFFICULTY_PRESETS))
    ]
    if lesion_mix is None:
        lesion_mix = lesion_preset["mix"]
    if lesion_contrast is None:
        lesion_contrast = lesion_preset["contrast"]
    if lesion_radius_mm is None:
        lesion_radius_mm = lesion_preset["radius_mm"]
    if iso_flair_probability is None:
        iso_flair_probability = lesion_preset["iso_flair_probability"]
    mix = dict(lesion_mix)
    if not mix:
        raise ValueError(f"lesion_mix must hold at least one of {LESION_KINDS}, got {mix}.")
    for kind in mix:
        check_choice(kind, "lesion_mix keys", LESION_KINDS)
    weights = np.array([check_real(v, f"lesion_mix[{k!r}]", low=0.0) for k, v in mix.items()])
    if weights.sum() <= 0:
        raise ValueError(f"lesion_mix needs weights with a positive sum, got {mix}.")
    mix = dict(zip(mix.keys(), weights / weights.sum(), strict=True))
    contrast = check_range_pair(lesion_contrast, "lesion_contrast", 1e-4, 1.0)
    radius = check_range_pair(lesion_radius_mm, "lesion_radius_mm", 0.5, 100.0)
    iso = check_probability(iso_flair_probability, "iso_flair_probability")
    max_lesions = check_int(max_lesions, "max_lesions", low=1)

    nz = _load_mni_maps()[0].shape[-1]
    z_range = check_range_pair(slice_range, "slice_range", _Z_MARGIN, nz - _Z_MARGIN)
    z_lo = int(np.floor(z_range[0])) - _Z_MARGIN
    z_hi = int(np.ceil(z_range[1])) + _Z_MARGIN
    slab = _mni_slab(image_size, z_lo, z_hi)
    lesion_config = {
        "mix": mix,
        "contrast": contrast,
        "radius_mm": radius,
        "iso_flair_probability": iso,
        "max_lesions": max_lesions,
    }

    rng = as_generator(random_state)
    streams = np.random.SeedSequence(int(rng.integers(0, 2**63 - 1))).spawn(4)
    train_seeds = streams[0].spawn(counts["n_train"])
    val_seeds = streams[1].spawn(counts["n_val_lesion"])
    test_lesion_seeds = streams[2].spawn(counts["n_test_lesion"])
    test_healthy_seeds = streams[3].spawn(counts["n_test_healthy"])

    args = (slab, z_lo, image_size, z_range)
    keep = bool(return_lesion_free)
    X_train, _, _, z_train, _, _ = _render_split(train_seeds, *args, None)
    X_val, y_val, X_val_free, z_val, kinds_val, lesions_val = _render_split(
        val_seeds, *args, lesion_config, keep_free=keep
    )
    Xl, yl, Xl_free, zl, kinds_l, lesions_l = _render_split(
        test_lesion_seeds, *args, lesion_config, keep_free=keep
    )
    Xh, yh, _, zh, kinds_h, lesions_h = _render_split(test_healthy_seeds, *args, None)

    data = Bunch(
        X_train=X_train,
        X_val=X_val,
        y_val=y_val,
        X_test=np.concatenate([Xl, Xh]),
        y_test=np.concatenate([yl, yh]),
        is_anomalous_test=np.r_[np.ones(len(Xl), bool), np.zeros(len(Xh), bool)],
        lesion_kind_val=kinds_val,
        lesion_kind_test=np.concatenate([kinds_l, kinds_h]),
        lesions_val=lesions_val,
        lesions_test=lesions_l + lesions_h,
        slice_z_train=z_train,
        slice_z_val=z_val,
        slice_z_test=np.r_[zl, zh],
        channel_names=CHANNEL_NAMES,
        description=_DESCRIPTION,
        params={
            "image_size": image_size,
            "slice_range": z_range,
            **counts,
            **lesion_config,
            "random_state": random_state if isinstance(random_state, numbers.Integral) else None,
        },
    )
    if return_lesion_free:
        data.X_val_lesion_free = X_val_free
        data.X_test_lesion_free = np.concatenate([Xl_free, Xh])
    data.generation_time_s = time.perf_counter() - start
    if verbose:
        n_total = sum(counts.values())
        print(
            f"make_mni_benchmark: {n_total} slices at {image_size}x{image_size} in "
            f"{data.generation_time_s:.1f} s"
        )
    return data


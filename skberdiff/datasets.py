"""Offline benchmark data: MNI152-derived brain MRI slices with synthetic lesions, toy images.

Nothing here downloads anything. :func:`make_mni_benchmark` builds a BRATS-like 4-channel
axial-slice benchmark from the MNI152 2009a maps that ship inside the nilearn wheel (T1
template, grey- and white-matter probability maps, brain mask). Every slice is a distinct,
randomly deformed and re-acquired "subject"; test slices carry synthetic lesions with exact
pixel masks. :func:`make_toy_images` and :func:`make_oct_like` are small dependency-free
generators for unit tests and for the 1-channel OCT path.

All lesions, the T1ce/T2/FLAIR contrasts and the subject-to-subject variation are synthetic.
Scores measured on these data are those of a *synthetic-lesion benchmark on an MNI-derived
brain*; they are not comparable to the BRATS2020 figures of Wolleb et al. (2024).

The MNI152 maps are used under the following notice:

    Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal
    Neurological Institute, McGill University. Permission to use, copy, modify, and
    distribute this software and its documentation for any purpose and without fee is
    hereby granted, provided that the above copyright notice appear in all copies. The
    authors and McGill University make no representations about the suitability of this
    software for any purpose. It is provided "as is" without express or implied warranty.
    The authors are not responsible for any data loss, equipment damage, property loss, or
    injury to subjects or patients resulting from the use or misuse of this software
    package.

References
----------
.. [1] Fonov V., Evans A., McKinstry R., Almli C., Collins D. (2009). Unbiased nonlinear
   average age-appropriate brain templates from birth to adulthood. NeuroImage 47, S102.
.. [2] Fonov V., Evans A. C., Botteron K., Almli C. R., McKinstry R. C., Collins D. L.
   (2011). Unbiased average age-appropriate atlases for pediatric studies. NeuroImage 54(1),
   313-327.
.. [3] Meissen F., Kaissis G., Rueckert D. (2021). Challenging current semi-supervised
   anomaly segmentation methods for brain MRI. MICCAI BrainLes workshop, 63-74.

Notes
-----
Calibration (pixel AUPRC pooled over the lesion test slices, ``random_state=0``): a
per-channel intensity threshold tuned on the validation lesions reaches 0.136 at 64x64
(``size="small"``; 0.14-0.20 over seeds 0-2) and 0.157 at 256x256 (``size="default"``),
well below 0.7, while the oracle map ``|x - x_lesion_free|`` reaches 0.915 and 0.928.
Reproduce with ``python -m skberdiff.datasets small`` (or ``default``); details in
:func:`make_mni_benchmark`.
"""

import numbers
import time

import numpy as np
from scipy import ndimage
from scipy.special import expit
from sklearn.utils import Bunch

__all__ = [
    "CHANNEL_NAMES",
    "LESION_KINDS",
    "make_mni_benchmark",
    "make_toy_images",
    "make_oct_like",
]

CHANNEL_NAMES = ("t1", "t1ce", "t2_like", "flair_like")
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

_SIZE_PRESETS = {
    # n_train, n_val_lesion, n_test_lesion, n_test_healthy, image_size
    "tiny": (8, 4, 4, 4, 32),
    "small": (128, 32, 64, 64, 64),
    "default": (200, 50, 100, 100, 256),
}

# Loaded maps and their in-plane anti-aliased slabs, kept for the life of the process.
_MNI_CACHE = {}
_MAX_CACHED_SLABS = 2
# Cubic-spline interpolation matrices of the smooth random fields, by (controls, size).
_SPLINE_MATRICES = {}


def _as_generator(random_state):
    """Return a numpy Generator for ``random_state`` without touching global state."""
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    return np.random.default_rng(random_state)


def _check_positive_int(value, name, minimum=0):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _check_range(value, name, low, high):
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high), got {value!r}.") from None
    if not (low <= lo <= hi <= high):
        raise ValueError(f"{name} must satisfy {low} <= low <= high <= {high}, got {value!r}.")
    return lo, hi


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
        Preset for the sample counts and ``image_size``: ``"tiny"`` = 8 train, 4 val,
        4 + 4 test at 32x32 (for tests), ``"small"`` = 128 / 32 / 64 + 64 at 64x64 (CPU
        demos), ``"default"`` = 200 / 50 / 100 + 100 at 256x256. Explicit arguments below
        override the preset.
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
    oedema the easiest (0.27). Reproduce with ``python -m skberdiff.datasets small`` (or
    ``default``), which prints the figures and the per-kind split.

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
    if size not in _SIZE_PRESETS:
        raise ValueError(f"size must be one of {sorted(_SIZE_PRESETS)}, got {size!r}.")
    preset = dict(
        zip(
            ("n_train", "n_val_lesion", "n_test_lesion", "n_test_healthy", "image_size"),
            _SIZE_PRESETS[size],
            strict=True,
        )
    )
    given = {
        "n_train": n_train,
        "n_val_lesion": n_val_lesion,
        "n_test_lesion": n_test_lesion,
        "n_test_healthy": n_test_healthy,
        "image_size": image_size,
    }
    counts = {k: preset[k] if v is None else v for k, v in given.items()}
    for name in ("n_train", "n_val_lesion", "n_test_lesion", "n_test_healthy"):
        counts[name] = _check_positive_int(counts[name], name)
    image_size = _check_positive_int(counts.pop("image_size"), "image_size", minimum=16)
    if image_size > _FRAME:
        raise ValueError(f"image_size must be at most {_FRAME}, got {image_size}.")
    if difficulty not in _DIFFICULTY_PRESETS:
        raise ValueError(
            f"difficulty must be one of {sorted(_DIFFICULTY_PRESETS)}, got {difficulty!r}."
        )
    lesion_preset = _DIFFICULTY_PRESETS[difficulty]
    if lesion_mix is None:
        lesion_mix = lesion_preset["mix"]
    if lesion_contrast is None:
        lesion_contrast = lesion_preset["contrast"]
    if lesion_radius_mm is None:
        lesion_radius_mm = lesion_preset["radius_mm"]
    if iso_flair_probability is None:
        iso_flair_probability = lesion_preset["iso_flair_probability"]
    mix = dict(lesion_mix)
    unknown = set(mix) - set(LESION_KINDS)
    if unknown or not mix:
        raise ValueError(f"lesion_mix keys must be among {LESION_KINDS}, got {sorted(mix)}.")
    weights = np.array([float(v) for v in mix.values()])
    if (weights < 0).any() or weights.sum() <= 0 or not np.isfinite(weights).all():
        raise ValueError(f"lesion_mix needs non-negative weights with a positive sum: {mix}.")
    mix = dict(zip(mix.keys(), weights / weights.sum(), strict=True))
    contrast = _check_range(lesion_contrast, "lesion_contrast", 1e-4, 1.0)
    radius = _check_range(lesion_radius_mm, "lesion_radius_mm", 0.5, 100.0)
    iso = float(iso_flair_probability)
    if not 0.0 <= iso <= 1.0:
        raise ValueError(f"iso_flair_probability must be in [0, 1], got {iso_flair_probability}.")
    max_lesions = _check_positive_int(max_lesions, "max_lesions", minimum=1)

    nz = _load_mni_maps()[0].shape[-1]
    z_range = _check_range(slice_range, "slice_range", _Z_MARGIN, nz - _Z_MARGIN)
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

    rng = _as_generator(random_state)
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


# --------------------------------------------------------------------------------------
# Dependency-free generators
# --------------------------------------------------------------------------------------


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
    n_samples = _check_positive_int(n_samples, "n_samples", minimum=1)
    image_size = _check_positive_int(image_size, "image_size", minimum=8)
    n_channels = _check_positive_int(n_channels, "n_channels", minimum=1)
    if not 0.0 <= float(anomaly_fraction) <= 1.0:
        raise ValueError(f"anomaly_fraction must be in [0, 1], got {anomaly_fraction}.")
    rng = _as_generator(random_state)
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
    n_samples = _check_positive_int(n_samples, "n_samples", minimum=1)
    image_size = _check_positive_int(image_size, "image_size", minimum=16)
    rng = _as_generator(random_state)
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


def _calibration_report(size="small", random_state=0):  # pragma: no cover - CLI helper
    """Print the threshold-baseline and oracle AUPRC of the benchmark (module CLI)."""
    from .baselines import IntensityThresholdBaseline
    from .metrics import pixel_auprc

    def _average_precision(y, maps):
        return pixel_auprc(y, maps, average="pooled")

    start = time.perf_counter()
    data = make_mni_benchmark(size=size, return_lesion_free=True, random_state=random_state)
    elapsed = time.perf_counter() - start
    lesion = data.is_anomalous_test
    baseline = IntensityThresholdBaseline().fit(data.X_val, data.y_val, X_healthy=data.X_train)
    maps = baseline.anomaly_map(data.X_test[lesion])
    auprc = _average_precision(data.y_test[lesion], maps)
    difference = np.abs(data.X_test - data.X_test_lesion_free)[lesion].sum(axis=1)
    oracle = _average_precision(data.y_test[lesion], difference)
    print(f"size={size!r} image_size={data.params['image_size']} random_state={random_state}")
    n = sum(len(v) for k, v in data.items() if k.startswith("X_") and "free" not in k)
    print(f"generation: {n} slices in {elapsed:.1f} s")
    print(
        f"threshold baseline ({data.channel_names[baseline.channel_]}, {baseline.polarity_}): "
        f"test pixel AUPRC {auprc:.3f} (val {baseline.best_auprc_:.3f})"
    )
    print(f"oracle |x - x_lesion_free|: test pixel AUPRC {oracle:.3f}")
    y = data.y_test[lesion]
    for kind in sorted(set(data.lesion_kind_test[lesion])):
        sel = data.lesion_kind_test[lesion] == kind
        print(
            f"  {kind:>16s} n={sel.sum():3d}  baseline {_average_precision(y[sel], maps[sel]):.3f}"
            f"  oracle {_average_precision(y[sel], difference[sel]):.3f}"
        )


if __name__ == "__main__":  # pragma: no cover
    import sys

    _calibration_report(*(sys.argv[1:2] or ["small"]))

"""Reading medical images into slice batches and writing results back as volumes.

BRATS-style MRI case folders become batches of axial slices ``(n, 4, H, W)`` with the
metadata needed to put any per-slice result back into the original voxel grid, and OCT
B-scans become ``(n, 1, H, W)`` batches. Volume -> slice extraction changes the number of
samples, which is why it lives here and not in a scikit-learn ``Pipeline``.

Conventions
-----------
Every volume is brought to the closest canonical orientation (RAS+: first axis points
left -> right, second posterior -> anterior, third inferior -> superior) before slicing, so
the same slice range means the same anatomy whatever order the scanner stored the axes
in. Axial slice ``k`` is ``volume_ras[:, :, k]``: image rows follow the left -> right axis
and columns the posterior -> anterior axis.
"""

from __future__ import annotations

import errno
import fnmatch
import inspect
import numbers
import os
import re
import secrets
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._progress import progress
from ._validation import check_choice, check_images, check_real, to_numpy
from .preprocessing import pad_or_crop

__all__ = [
    "BRATS_MODALITIES",
    "OCT_KINDS",
    "VolumeMeta",
    "BratsCase",
    "SliceSet",
    "OctImages",
    "load_brats_case",
    "iter_brats_cases",
    "collect_slices",
    "save_volume_map",
    "load_oct_images",
]

#: The four BRATS 2018-2021 MRI sequences, in the channel order used by the paper.
BRATS_MODALITIES = ("t1", "t1ce", "t2", "flair")

#: Image kinds of the OCT2017 (Kermany) data set, parsed from file-name prefixes.
OCT_KINDS = ("NORMAL", "DRUSEN", "CNV", "DME")

_NIFTI_SUFFIX = r"\.nii(\.gz)?"

#: ``descrip`` of every file written by :func:`save_volume_map`.
_WRITTEN_DESCRIP = b"skberdiff anomaly map"


# --------------------------------------------------------------------------------------
# Result containers
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class VolumeMeta:
    """Everything needed to map per-slice results back onto the source volume.

    Attributes
    ----------
    shape : tuple of int
        Shape of the source volume as stored on disk.
    affine : ndarray of shape (4, 4)
        Voxel-to-world affine of the source volume (of the reference modality).
    header : nibabel header
        A copy of the reference modality's header, reused when writing results.
    orientation : ndarray of shape (3, 2)
        nibabel orientation (``nibabel.orientations.io_orientation``) that takes the
        stored array to RAS+; row ``i`` gives the RAS axis of stored axis ``i`` and
        whether it is flipped.
    canonical_shape : tuple of int
        Shape of the volume after reorientation to RAS+.
    canonical_affine : ndarray of shape (4, 4)
        Affine of the reoriented volume.
    slice_indices : ndarray of int
        Indices along the RAS+ inferior -> superior axis of the returned slices.
    in_plane_shape : tuple of int
        ``(H0, W0)``, the size of an axial slice before padding/cropping.
    output_shape : tuple of int
        ``(H, W)``, the size of the returned slices.
    cropping : tuple of (int, int)
        For each in-plane axis, the ``(start, stop)`` range of the slice that was kept
        (the whole axis when it was not cropped).
    padding : tuple of (int, int)
        For each in-plane axis, the zeros added ``(before, after)`` the kept range.
    source_paths : dict of str to pathlib.Path
        File of each modality, and of the label under its ``label_name`` when present.
    modalities : tuple of str
        Channel order of the returned images.
    reference : str
        Modality whose affine and header are recorded (the first one).
    intensity_ranges : dict of str to (float, float)
        Per modality, the ``(low, high)`` intensities mapped to 0 and 1.
    source_files : tuple of pathlib.Path, default=()
        The resolved real paths (symbolic links followed) of every file the case was read
        from, modalities and label. :func:`save_volume_map` never writes onto them.

    Examples
    --------
    See :func:`load_brats_case`, which returns it as ``case.meta``, and
    :func:`save_volume_map`, which uses it to write maps back:

    >>> VolumeMeta.__dataclass_fields__["affine"].name
    'affine'
    """

    shape: tuple
    affine: np.ndarray = field(repr=False)
    header: object = field(repr=False)
    orientation: np.ndarray = field(repr=False)
    canonical_shape: tuple
    canonical_affine: np.ndarray = field(repr=False)
    slice_indices: np.ndarray = field(repr=False)
    in_plane_shape: tuple
    output_shape: tuple
    cropping: tuple
    padding: tuple
    source_paths: dict = field(repr=False)
    modalities: tuple
    reference: str
    intensity_ranges: dict = field(repr=False)
    source_files: tuple = field(default=(), repr=False)

    @property
    def axcodes(self) -> tuple:
        """Orientation codes of the stored array, e.g. ``('L', 'P', 'S')``."""
        from nibabel.orientations import ornt2axcodes

        return tuple(ornt2axcodes(self.orientation))

    @property
    def inverse_orientation(self) -> np.ndarray:
        """nibabel orientation that takes the RAS+ array back to the stored one."""
        from nibabel.orientations import axcodes2ornt, ornt_transform

        return ornt_transform(axcodes2ornt("RAS"), self.orientation)


@dataclass(eq=False)
class BratsCase:
    """Axial slices of one BRATS-style case.

    Attributes
    ----------
    name : str
        Name of the case folder.
    images : ndarray of shape (n, n_modalities, H, W)
        Normalised intensities in [0, 1], channels in ``meta.modalities`` order.
    masks : ndarray of bool, shape (n, H, W)
        Lesion masks (all label values > 0 merged); all False without a label file.
    is_diseased : ndarray of bool, shape (n,)
        Whether the label slice has any lesion voxel (checked before cropping).
    slice_indices : ndarray of int, shape (n,)
        Index of each slice along the RAS+ inferior -> superior axis.
    has_label : bool
        Whether a label file was found.
    meta : VolumeMeta
        What :func:`save_volume_map` needs to write results back.

    Examples
    --------
    Returned by :func:`load_brats_case`:

    >>> sorted(BratsCase.__dataclass_fields__)[:3]
    ['has_label', 'images', 'is_diseased']
    """

    name: str
    images: np.ndarray
    masks: np.ndarray
    is_diseased: np.ndarray
    slice_indices: np.ndarray
    has_label: bool
    meta: VolumeMeta

    def __repr__(self) -> str:
        # The default dataclass repr would print the arrays and the whole header.
        return (
            f"BratsCase(name={self.name!r}, images={self.images.shape} "
            f"{self.images.dtype}, has_label={self.has_label}, "
            f"n_diseased={int(self.is_diseased.sum())})"
        )


@dataclass(eq=False)
class SliceSet:
    """Slices stacked over several cases (see :func:`collect_slices`).

    Attributes
    ----------
    images : ndarray of shape (n, n_modalities, H, W)
    masks : ndarray of bool, shape (n, H, W)
    is_diseased : ndarray of bool, shape (n,)
    case_names : ndarray of str, shape (n,)
        Case of each slice, for patient-level splits.
    slice_indices : ndarray of int, shape (n,)
        Index of each slice in its case's RAS+ volume.

    Examples
    --------
    >>> import numpy as np
    >>> s = SliceSet(images=np.zeros((2, 4, 8, 8), np.float32), masks=np.zeros((2, 8, 8), bool),
    ...              is_diseased=np.zeros(2, bool), case_names=np.array(["a", "b"]),
    ...              slice_indices=np.array([80, 81]))
    >>> s
    SliceSet(images=(2, 4, 8, 8) float32, n_cases=2, n_diseased=0)
    """

    images: np.ndarray
    masks: np.ndarray
    is_diseased: np.ndarray
    case_names: np.ndarray
    slice_indices: np.ndarray

    def __repr__(self) -> str:
        return (
            f"SliceSet(images={self.images.shape} {self.images.dtype}, "
            f"n_cases={len(np.unique(self.case_names))}, "
            f"n_diseased={int(self.is_diseased.sum())})"
        )


@dataclass(eq=False)
class OctImages:
    """A batch of OCT B-scans (see :func:`load_oct_images`).

    Attributes
    ----------
    images : ndarray of shape (n, 1, H, W)
        Per-image min-max scaled intensities in [0, 1].
    paths : list of pathlib.Path
        Source file of each image.
    names : list of str
        File name of each image.
    kinds : list of str or None
        ``"NORMAL"``, ``"DRUSEN"``, ``"CNV"`` or ``"DME"`` when the file name starts with
        it (as in OCT2017), else None.

    Examples
    --------
    Returned by :func:`load_oct_images`:

    >>> sorted(OctImages.__dataclass_fields__)
    ['images', 'kinds', 'names', 'paths']
    """

    images: np.ndarray
    paths: list
    names: list
    kinds: list

    def __repr__(self) -> str:
        return f"OctImages(images={self.images.shape} {self.images.dtype})"


# --------------------------------------------------------------------------------------
# Small private helpers
# --------------------------------------------------------------------------------------


def _check_pair(value, name, *, allow_none=True):
    if value is None and allow_none:
        return None
    try:
        pair = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair of ints (h, w) or None, got {value!r}.") from None
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{name} must be a pair of positive ints (h, w), got {value!r}.")
    return pair


def _check_percentiles(clip_percentiles):
    try:
        low, high = (float(v) for v in clip_percentiles)
    except (TypeError, ValueError):
        raise TypeError(
            f"clip_percentiles must be a pair (low, high), got {clip_percentiles!r}."
        ) from None
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(
            f"clip_percentiles must satisfy 0 <= low < high <= 100, got {clip_percentiles!r}."
        )
    return low, high


def _find_nifti(folder: Path, key: str) -> Path | None:
    """The single file in ``folder`` named ``*_<key>.nii(.gz)`` (``-`` also accepted).

    The suffix is anchored at ``.nii``, so ``_t1`` never matches ``*_t1ce.nii.gz``.
    Hidden files (``.*``, e.g. the ``._*`` AppleDouble files macOS leaves on shared
    drives) are never candidates.
    """
    pattern = re.compile(rf"[_-]{re.escape(key)}{_NIFTI_SUFFIX}$", re.IGNORECASE)
    found = sorted(
        p
        for p in folder.iterdir()
        if not p.name.startswith(".") and p.is_file() and pattern.search(p.name)
    )
    if len(found) > 1:
        raise ValueError(
            f"Several files match '*_{key}.nii(.gz)' in {folder}: "
            f"{', '.join(p.name for p in found)}. Keep one."
        )
    return found[0] if found else None


def _open_volume(path: Path):
    """Open a NIfTI file and check it is 3-D; only the header is read. Errors name the file."""
    import nibabel as nib

    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises several types for bad files
        raise ValueError(f"Could not read {path} as a NIfTI image: {exc}") from exc
    if len(img.shape) != 3:
        raise ValueError(
            f"{path} holds a {len(img.shape)}-D image of shape {img.shape}; a 3-D volume "
            "is needed."
        )
    return img


def _read_voxels(img, path: Path, *, as_label: bool = False) -> np.ndarray:
    """The voxel data of an opened image; errors name the file."""
    try:
        if as_label:
            data = np.asanyarray(img.dataobj)
        else:
            data = img.get_fdata(dtype=np.float32, caching="unchanged")
    except Exception as exc:  # truncated / corrupt data blocks only fail here
        raise ValueError(f"Could not read the voxel data of {path}: {exc}") from exc
    if not as_label and not np.isfinite(data).all():
        raise ValueError(
            f"{path} contains {int((~np.isfinite(data)).sum())} NaN or infinite voxels."
        )
    return data


def _check_label_values(label_values):
    """``label_values`` as a sorted tuple of ints that holds 0, or None."""
    if label_values is None:
        return None
    try:
        values = tuple(label_values)
    except TypeError:
        raise TypeError(
            f"label_values must be a sequence of ints or None, got {label_values!r}."
        ) from None
    if any(
        isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) for v in values
    ):
        raise TypeError(f"label_values must be a sequence of ints or None, got {label_values!r}.")
    values = tuple(sorted({int(v) for v in values}))
    if 0 not in values:
        raise ValueError(
            f"label_values must contain 0, the background label, got {label_values!r}."
        )
    if values[0] < 0:
        raise ValueError(f"label_values must be non-negative, got {label_values!r}.")
    return values


def _format_values(values, limit=8) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}]"


def _check_labels(data: np.ndarray, path: Path, label_values) -> None:
    """Raise if the label volume holds anything but the allowed integer labels.

    ``label_values=None`` allows any non-negative integer.
    """
    if label_values is None:
        if np.issubdtype(data.dtype, np.integer) or data.dtype == np.bool_:
            bad = data < 0 if np.issubdtype(data.dtype, np.signedinteger) else None
        else:
            with np.errstate(invalid="ignore"):
                bad = ~np.isfinite(data) | (data < 0) | (data != np.round(data))
    else:
        bad = ~np.isin(data, label_values)
    if bad is None or not bad.any():
        return
    offending = data[bad]
    problems = []
    if np.issubdtype(offending.dtype, np.floating):
        finite = np.isfinite(offending)
        n_nan = int(np.isnan(offending).sum())
        n_inf = int((~finite).sum()) - n_nan
        if n_nan:
            problems.append(f"NaN ({n_nan} voxels)")
        if n_inf:
            problems.append(f"infinite values ({n_inf} voxels)")
        offending = offending[finite]
        fractional = offending != np.round(offending)
        if fractional.any():
            fractions = np.unique(offending[fractional])
            problems.append(f"non-integer values {_format_values(fractions)}")
        offending = offending[~fractional]
    if offending.size:
        negative = np.unique(offending[offending < 0])
        unknown = np.unique(offending[offending >= 0])
        if negative.size:
            problems.append(f"negative values {_format_values(negative)}")
        if unknown.size:
            problems.append(f"unknown labels {_format_values(unknown)}")
    allowed = (
        "non-negative integers (label_values=None)"
        if label_values is None
        else f"one of label_values={tuple(label_values)}"
    )
    raise ValueError(
        f"Label file {path} is not a valid segmentation: {int(bad.sum())} voxel(s) hold "
        f"{', '.join(problems)}; labels must be {allowed}. Pass label_values= to allow "
        "other labels, or label_name=None to ignore the file."
    )


def _slice_positions(n_slices: int, slice_range) -> np.ndarray:
    if slice_range is None:
        return np.arange(n_slices)
    try:
        start, stop = slice_range
        sl = slice(None if start is None else int(start), None if stop is None else int(stop))
    except (TypeError, ValueError):
        raise TypeError(
            f"slice_range must be a pair (start, stop) like a Python slice, or None; got "
            f"{slice_range!r}."
        ) from None
    return np.arange(n_slices)[sl]


def _crop_pad_plan(in_plane_shape, pad_to):
    """Centred crop ``(start, stop)`` and zero-padding ``(before, after)`` per axis.

    Only the amounts recorded in :class:`VolumeMeta`; :func:`~skberdiff.preprocessing.pad_or_crop`
    does the cropping and padding itself, with the same centring.
    """
    cropping, padding = [], []
    for size, target in zip(in_plane_shape, pad_to or in_plane_shape):
        if size > target:
            start = (size - target) // 2
            cropping.append((start, start + target))
            padding.append((0, 0))
        else:
            cropping.append((0, size))
            before = (target - size) // 2
            padding.append((before, target - size - before))
    return tuple(cropping), tuple(padding)


def _axial_slices(volume: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``(n, H0, W0)`` stack of ``volume[:, :, k]`` for ``k`` in ``indices``."""
    return np.moveaxis(volume[:, :, indices], -1, 0)


# --------------------------------------------------------------------------------------
# BRATS-style volumes
# --------------------------------------------------------------------------------------


def _check_case_options(
    *, modalities, slice_range, pad_to, clip_percentiles, dtype, label_name, label_values
) -> dict:
    """Validate the loading options of :func:`load_brats_case`; return them normalised."""
    modalities = tuple(str(m) for m in modalities)
    if not modalities:
        raise ValueError("modalities must name at least one modality.")
    if len(set(m.lower() for m in modalities)) != len(modalities):
        raise ValueError(f"modalities contains duplicates: {modalities}.")
    if label_name is not None and label_name.lower() in (m.lower() for m in modalities):
        raise ValueError(f"label_name {label_name!r} is also a modality in {modalities}.")
    _slice_positions(0, slice_range)  # type check only; the range is checked per case
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"dtype must be a floating dtype, got {dtype}.")
    return {
        "modalities": modalities,
        "pad_to": _check_pair(pad_to, "pad_to"),
        "clip_percentiles": _check_percentiles(clip_percentiles),
        "dtype": dtype,
        "label_values": _check_label_values(label_values),
    }


def load_brats_case(
    folder: str | os.PathLike,
    *,
    modalities: Sequence[str] = BRATS_MODALITIES,
    slice_range: tuple | None = (80, -26),
    pad_to: tuple[int, int] | None = (256, 256),
    clip_percentiles: tuple[float, float] = (0.0, 100.0),
    dtype=np.float32,
    label_name: str | None = "seg",
    label_values: Sequence[int] | None = (0, 1, 2, 3, 4),
) -> BratsCase:
    """Load one BRATS-style case folder as a batch of normalised axial slices.

    Each modality is read from the file ``*_<modality>.nii`` or ``*_<modality>.nii.gz``
    in ``folder`` (a ``-`` separator, as in BraTS 2023 names, works too), reoriented to
    RAS+, checked against the others, normalised to [0, 1] per volume and modality, cut
    into axial slices and centred in a ``pad_to`` frame.

    Parameters
    ----------
    folder : str or path-like
        The case folder.
    modalities : sequence of str, default=("t1", "t1ce", "t2", "flair")
        File-name keys of the channels, in output order. The first one is the reference
        whose affine and header are recorded.
    slice_range : (start, stop) or None, default=(80, -26)
        Axial slices to keep, as a Python slice over the inferior -> superior axis. The
        default drops the 80 lowest and the 26 highest slices like the paper (slices
        80-128 of a 155-slice BRATS volume). None keeps every slice.
    pad_to : (int, int) or None, default=(256, 256)
        Output slice size. Smaller slices are zero-padded equally on both sides (an odd
        extra pixel goes after), larger ones are cropped around the centre; both are
        recorded in ``meta``. None keeps the original size.
    clip_percentiles : (float, float), default=(0.0, 100.0)
        Percentiles of each volume (all voxels, background included) that are mapped to
        0 and 1; intensities outside are clipped. The default is plain min-max scaling;
        ``(0.5, 99.5)`` is more robust to hot voxels.
    dtype : numpy floating dtype, default=np.float32
        dtype of the images.
    label_name : str or None, default="seg"
        File-name key of the optional label volume (``*_seg.nii.gz``). None ignores labels.
    label_values : sequence of int or None, default=(0, 1, 2, 3, 4)
        The labels a label volume may hold; it must include 0 (background). The default
        covers BRATS: 0 background, 1 necrotic / non-enhancing core, 2 oedema, 4
        enhancing tumour, and 3 in newer releases. None allows any non-negative integer.
        Anything else in the label file (negative, NaN or infinite, non-integer or
        unknown values) is an error, never read as healthy.

    Returns
    -------
    case : BratsCase
        ``images`` ``(n, len(modalities), H, W)`` in [0, 1], ``masks`` ``(n, H, W)`` bool
        (label > 0; all False without a label file), ``is_diseased`` ``(n,)``,
        ``slice_indices`` ``(n,)``, ``has_label`` and ``meta`` (:class:`VolumeMeta`).

    Raises
    ------
    FileNotFoundError
        If the folder or a modality file is missing.
    ValueError
        If a file is unreadable, not 3-D or contains NaN, if the label file holds values
        outside ``label_values`` (the message names the file and the values), if the
        volumes differ in shape or affine, if several files match one key, or if
        ``slice_range`` selects no slice.
    TypeError
        If an argument has the wrong type.

    See Also
    --------
    iter_brats_cases : Load every case below a data set root.
    collect_slices : Stack (healthy) slices of many cases for training.
    save_volume_map : Write per-slice results back as a NIfTI volume.

    Notes
    -----
    The paper (Wolleb et al., 2024) trains on 2-D axial slices of BRATS2020: four modalities
    as channels, slices 80-128, zero-padded from 240x240 to 256x256 and min-max scaled
    to [0, 1] per volume and modality. A slice is healthy iff its label is all zero.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np, nibabel as nib
    >>> folder = Path(tempfile.mkdtemp()) / "case_001"
    >>> folder.mkdir()
    >>> rng = np.random.default_rng(0)
    >>> for key in ("t1", "t1ce", "t2", "flair"):
    ...     volume = rng.random((20, 24, 30)).astype(np.float32)
    ...     nib.save(nib.Nifti1Image(volume, np.eye(4)), folder / f"case_001_{key}.nii.gz")
    >>> label = np.zeros((20, 24, 30), np.uint8)
    >>> label[8:12, 8:12, 14:16] = 2
    >>> nib.save(nib.Nifti1Image(label, np.eye(4)), folder / "case_001_seg.nii.gz")
    >>> case = load_brats_case(folder, slice_range=(10, -10), pad_to=(32, 32))
    >>> case.images.shape, case.masks.shape
    ((10, 4, 32, 32), (10, 32, 32))
    >>> case.slice_indices[case.is_diseased]
    array([14, 15])
    >>> float(case.images.min()) >= 0.0 and float(case.images.max()) <= 1.0
    True
    """
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Case folder {folder} does not exist or is not a folder.")
    options = _check_case_options(
        modalities=modalities, slice_range=slice_range, pad_to=pad_to,
        clip_percentiles=clip_percentiles, dtype=dtype, label_name=label_name,
        label_values=label_values,
    )
    modalities, pad_to, dtype = options["modalities"], options["pad_to"], options["dtype"]
    low_pct, high_pct = options["clip_percentiles"]
    label_values = options["label_values"]

    paths = {}
    for key in modalities:
        path = _find_nifti(folder, key)
        if path is None:
            raise FileNotFoundError(
                f"Modality {key!r} is missing in {folder}: no file matches "
                f"'*_{key}.nii' or '*_{key}.nii.gz'."
            )
        paths[key] = path
    label_path = _find_nifti(folder, label_name) if label_name is not None else None
    if label_path is not None:
        paths[label_name] = label_path

    # Headers first: a wrong file fails fast, before any voxel data is read.
    reference = modalities[0]
    images_on_disk = {key: _open_volume(path) for key, path in paths.items()}
    ref_img = images_on_disk[reference]
    ref_affine = ref_img.affine
    for key, img in images_on_disk.items():
        what = "label" if key == label_name else "modality"
        if img.shape != ref_img.shape:
            raise ValueError(
                f"The {what} {key!r} in {paths[key]} has shape {img.shape} but {reference!r} "
                f"in {paths[reference]} has shape {ref_img.shape}; all volumes of a case "
                "must share one voxel grid."
            )
        if not np.allclose(img.affine, ref_affine, rtol=1e-5, atol=1e-3):
            raise ValueError(
                f"The {what} {key!r} in {paths[key]} has a different affine than "
                f"{reference!r} in {paths[reference]}; all volumes of a case must share one "
                f"voxel grid.\n{key}:\n{img.affine}\n{reference}:\n{ref_affine}"
            )
    # One orientation for every file: the affines agree, so the reference's transform
    # is right for all of them.
    orientation = io_orientation(ref_affine)

    # Row i of the orientation names the RAS axis that stored axis i becomes.
    canonical_shape = [0, 0, 0]
    for size, (ras_axis, _) in zip(ref_img.shape, orientation):
        canonical_shape[int(ras_axis)] = int(size)
    canonical_shape = tuple(canonical_shape)
    indices = _slice_positions(canonical_shape[2], slice_range)
    if indices.size == 0:
        raise ValueError(
            f"slice_range={slice_range!r} selects no slice of the {canonical_shape[2]} axial "
            f"slices of {paths[reference]}. Use a smaller range or slice_range=None."
        )
    in_plane_shape = canonical_shape[:2]
    cropping, padding = _crop_pad_plan(in_plane_shape, pad_to)
    out_shape = pad_to or in_plane_shape

    channels, intensity_ranges = [], {}
    for key in modalities:
        volume = apply_orientation(_read_voxels(images_on_disk[key], paths[key]), orientation)
        if (low_pct, high_pct) == (0.0, 100.0):  # plain min-max: skip the sort
            low, high = float(volume.min()), float(volume.max())
        else:
            low, high = (float(v) for v in np.percentile(volume, [low_pct, high_pct]))
        intensity_ranges[key] = (low, high)
        slices = _axial_slices(volume, indices).astype(np.float64)
        if high > low:
            slices = np.clip((slices - low) / (high - low), 0.0, 1.0)
        else:  # a constant volume carries no contrast; map it to 0 rather than NaN
            slices = np.zeros_like(slices)
        channels.append(pad_or_crop(slices, out_shape).astype(dtype))
    images = np.ascontiguousarray(np.stack(channels, axis=1))

    if label_path is not None:
        label_data = _read_voxels(images_on_disk[label_name], label_path, as_label=True)
        _check_labels(label_data, label_path, label_values)
        label = apply_orientation(label_data, orientation) > 0
        label_slices = _axial_slices(label, indices)
        # Healthy iff the whole label slice is zero, judged before any cropping.
        is_diseased = label_slices.any(axis=(1, 2))
        masks = pad_or_crop(label_slices, out_shape)
    else:
        is_diseased = np.zeros(indices.size, dtype=bool)
        masks = np.zeros((indices.size,) + images.shape[2:], dtype=bool)

    meta = VolumeMeta(
        shape=tuple(int(s) for s in ref_img.shape),
        affine=np.array(ref_affine, dtype=np.float64),
        header=ref_img.header.copy(),
        orientation=orientation,
        canonical_shape=canonical_shape,
        canonical_affine=ref_affine @ inv_ornt_aff(orientation, ref_img.shape),
        slice_indices=indices.copy(),
        in_plane_shape=tuple(in_plane_shape),
        output_shape=tuple(int(s) for s in images.shape[2:]),
        cropping=cropping,
        padding=padding,
        source_paths=dict(paths),
        modalities=modalities,
        reference=reference,
        intensity_ranges=intensity_ranges,
        source_files=tuple(Path(os.path.realpath(p)) for p in paths.values()),
    )
    return BratsCase(
        name=folder.name,
        images=images,
        masks=np.ascontiguousarray(masks),
        is_diseased=is_diseased,
        slice_indices=indices.copy(),
        has_label=label_path is not None,
        meta=meta,
    )


def _case_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise FileNotFoundError(f"Data set root {root} does not exist or is not a folder.")
    nifti = re.compile(rf"{_NIFTI_SUFFIX}$", re.IGNORECASE)

    def holds_nifti(folder):  # hidden files (AppleDouble "._*", ...) do not count
        return any(not f.name.startswith(".") and nifti.search(f.name) for f in folder.iterdir())

    folders = sorted(
        p
        for p in root.iterdir()
        if not p.name.startswith(".") and p.is_dir() and holds_nifti(p)
    )
    if not folders:
        hint = ""
        if holds_nifti(root):
            hint = " It holds NIfTI files itself: load it with load_brats_case(root)."
        raise FileNotFoundError(
            f"No case folders in {root}: no sub-folder holds a .nii or .nii.gz file.{hint}"
        )
    return folders


def iter_brats_cases(
    root: str | os.PathLike, *, verbose: int = 1, errors: str = "raise", **kwargs
) -> Iterator[BratsCase]:
    """Yield every case below a BRATS-style data set root, one at a time.

    Cases are the sub-folders of ``root`` that hold NIfTI files, in sorted order; files
    and other folders beside them (``name_mapping.csv``, ...) and hidden entries
    (names starting with ``.``, such as macOS ``._*`` files) are ignored. Only one case
    is in memory at a time.

    Parameters
    ----------
    root : str or path-like
        Folder whose sub-folders are case folders.
    verbose : int, default=1
        0 silences the progress bar.
    errors : {"raise", "skip"}, default="raise"
        What to do when a case fails to load (missing or unreadable file, bad labels,
        mismatched grids: any ``OSError`` or ``ValueError`` of :func:`load_brats_case`).
        ``"raise"`` stops with the error; ``"skip"`` leaves the case out with a
        ``UserWarning`` naming its folder and the error.
    **kwargs
        Passed to :func:`load_brats_case` (``modalities``, ``slice_range``, ``pad_to``,
        ``clip_percentiles``, ``dtype``, ``label_name``, ``label_values``).

    Returns
    -------
    cases : iterator of BratsCase
        Lazy iterator over the cases in sorted folder order; each case is loaded only when
        the iteration reaches it. (The arguments are checked at the call, so this is a plain
        function returning a generator, not a generator function.)

    Raises
    ------
    FileNotFoundError
        At the call (not at the first ``next``) if ``root`` is missing or holds no case
        folder.
    TypeError, ValueError
        At the call if an argument is unknown or invalid (whatever ``errors`` says).
    OSError, ValueError
        While iterating, with ``errors="raise"``, if a case fails to load.

    Warns
    -----
    UserWarning
        With ``errors="skip"``, once per skipped case.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np, nibabel as nib
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("case_b", "case_a"):
    ...     (root / name).mkdir()
    ...     for key in ("t1", "t2"):
    ...         volume = np.arange(8 * 8 * 6, dtype=np.float32).reshape(8, 8, 6)
    ...         nib.save(nib.Nifti1Image(volume, np.eye(4)), root / name / f"{name}_{key}.nii")
    >>> cases = iter_brats_cases(root, verbose=0, modalities=("t1", "t2"),
    ...                          slice_range=None, pad_to=None)
    >>> [(case.name, case.images.shape) for case in cases]
    [('case_a', (6, 2, 8, 8)), ('case_b', (6, 2, 8, 8))]
    """
    check_choice(errors, "errors", ("raise", "skip"))
    folders = _case_folders(Path(root))
    # A bad keyword or value should fail now, not after the first case has been read
    # (and with errors="skip", not be taken for a broken case, once per case).
    defaults = {
        name: param.default
        for name, param in inspect.signature(load_brats_case).parameters.items()
        if param.kind is inspect.Parameter.KEYWORD_ONLY
    }
    unknown = set(kwargs) - set(defaults)
    if unknown:
        raise TypeError(f"Unknown argument(s) for load_brats_case: {sorted(unknown)}.")
    _check_case_options(**{**defaults, **kwargs})

    def generate():
        for folder in progress(folders, verbose=verbose, desc="cases"):
            try:
                case = load_brats_case(folder, **kwargs)
            except (OSError, ValueError) as exc:
                if errors == "raise":
                    raise
                warnings.warn(
                    f"Skipped case folder {folder}: {type(exc).__name__}: {exc}",
                    UserWarning,
                    stacklevel=2,
                )
                continue
            yield case

    return generate()


def collect_slices(
    cases: str | os.PathLike | Iterable[BratsCase],
    *,
    healthy_only: bool = True,
    verbose: int = 1,
    errors: str = "raise",
    **kwargs,
) -> SliceSet:
    """Stack the slices of many cases, by default only the healthy ones for training.

    Parameters
    ----------
    cases : str, path-like or iterable of BratsCase
        A data set root (read with :func:`iter_brats_cases`) or cases already loaded.
    healthy_only : bool, default=True
        Keep only slices whose label is all zero, as the paper trains on. Cases without
        a label file count as healthy throughout.
    verbose : int, default=1
        0 silences the progress bar (only used with a root).
    errors : {"raise", "skip"}, default="raise"
        With a root: ``"skip"`` leaves out a case that fails to load, with a
        ``UserWarning`` (see :func:`iter_brats_cases`); ``"raise"`` stops with the error.
    **kwargs
        Passed to :func:`load_brats_case` (only with a root).

    Returns
    -------
    slices : SliceSet
        ``images``, ``masks``, ``is_diseased``, ``case_names`` and ``slice_indices``,
        stacked in case order.

    Raises
    ------
    ValueError
        If no slice is left, or the cases have different slice sizes or modalities, or
        (with ``errors="raise"``) a case of the root fails to load.
    OSError
        With ``errors="raise"``, if a case file of the root is missing or unreadable
        (``FileNotFoundError`` also if the root holds no case folder).
    TypeError
        If loading arguments or ``errors="skip"`` are given with cases already loaded.

    Warns
    -----
    UserWarning
        With ``errors="skip"``, once per case of the root that fails to load.

    Examples
    --------
    >>> import numpy as np
    >>> from skberdiff.io import BratsCase, collect_slices
    >>> def toy_case(name, diseased):
    ...     masks = np.zeros((3, 4, 4), bool)
    ...     masks[diseased, 1, 1] = True
    ...     return BratsCase(name=name, images=np.zeros((3, 2, 4, 4), np.float32),
    ...                      masks=masks, is_diseased=masks.any(axis=(1, 2)),
    ...                      slice_indices=np.arange(3), has_label=True, meta=None)
    >>> healthy = collect_slices([toy_case("a", [0]), toy_case("b", [1, 2])])
    >>> healthy.images.shape, healthy.case_names.tolist(), healthy.slice_indices.tolist()
    ((3, 2, 4, 4), ['a', 'a', 'b'], [1, 2, 0])
    """
    check_choice(errors, "errors", ("raise", "skip"))
    if isinstance(cases, (str, os.PathLike)):
        cases = iter_brats_cases(cases, verbose=verbose, errors=errors, **kwargs)
    elif kwargs or errors != "raise":
        given = sorted(kwargs) + (["errors"] if errors != "raise" else [])
        raise TypeError(
            f"Loading arguments {given} only apply when cases is a data set root."
        )
    images, masks, diseased, names, indices = [], [], [], [], []
    first = None
    for case in cases:
        if first is None:
            first = case
        elif case.images.shape[1:] != first.images.shape[1:]:
            raise ValueError(
                f"Case {case.name!r} has slices of shape {case.images.shape[1:]} but case "
                f"{first.name!r} has {first.images.shape[1:]}; load them with the same "
                "modalities and pad_to."
            )
        keep = ~case.is_diseased if healthy_only else np.ones(len(case.images), bool)
        # Select per case before stacking so that memory holds only what is kept.
        images.append(case.images[keep])
        masks.append(case.masks[keep])
        diseased.append(case.is_diseased[keep])
        indices.append(np.asarray(case.slice_indices)[keep])
        names.append(np.full(int(keep.sum()), case.name, dtype=object))
    if first is None:
        raise ValueError("No case to collect slices from.")
    n_kept = sum(len(a) for a in images)
    if n_kept == 0:
        raise ValueError(
            "No slice left: every slice of the given cases is diseased"
            + (" (healthy_only=True)." if healthy_only else ".")
        )
    return SliceSet(
        images=np.concatenate(images),
        masks=np.concatenate(masks),
        is_diseased=np.concatenate(diseased),
        case_names=np.concatenate(names).astype(str),
        slice_indices=np.concatenate(indices),
    )


def _protected_files(meta) -> set:
    """Real paths of the files ``meta``'s case was read from."""
    files = list(getattr(meta, "source_files", ()) or ())
    files += list((getattr(meta, "source_paths", None) or {}).values())
    return {os.path.realpath(f) for f in files}


def _is_source_file(path: Path, protected: set) -> str | None:
    """The protected file ``path`` would land on (symlinks, hard links), or None."""
    real = os.path.realpath(path)
    if real in protected:
        return real
    if os.path.exists(path):  # hard links, case-insensitive file systems
        for source in protected:
            try:
                if os.path.samefile(path, source):
                    return source
            except OSError:  # a source file that is gone
                continue
    return None


def _exists_message(path: Path) -> str:
    return f"{path} already exists; pass overwrite=True to replace it."


def _fsync_path(path, *, directory=False) -> None:
    """Flush a file (or, best effort, a directory entry) to disk."""
    if directory and os.name != "posix":  # pragma: no cover - directories: POSIX only
        return
    flags = os.O_RDONLY if directory else os.O_RDWR | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # pragma: no cover - e.g. directories that cannot be opened
        if directory:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse to sync directories
        if not directory:
            raise
    finally:
        os.close(fd)


def _save_atomically(img, path: Path, *, overwrite: bool) -> None:
    """Write ``img`` to a temporary file beside ``path``, then move it into place.

    The temporary file keeps the ``.nii``/``.nii.gz`` suffix so that nibabel picks the
    format. On any error it is removed and an existing ``path`` is left as it was.
    Without ``overwrite`` the move itself refuses to replace a file that appeared
    meanwhile (a hard link is made, which fails if ``path`` exists).
    """
    import nibabel as nib

    match = re.search(rf"{_NIFTI_SUFFIX}$", path.name, re.IGNORECASE)
    stem, suffix = path.name[: match.start()], match.group()
    tmp = None
    for _ in range(100):
        candidate = path.parent / f".{stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}{suffix}"
        try:  # O_EXCL: never reuse (or follow a symlink planted at) an existing name
            fd = os.open(
                candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                0o666,
            )
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue
        os.close(fd)
        tmp = candidate
        break
    else:  # pragma: no cover
        raise FileExistsError(f"Could not create a temporary file beside {path}.")
    try:
        nib.save(img, tmp)
        _fsync_path(tmp)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(errno.EEXIST, _exists_message(path), str(path)) from None
            except OSError:  # a file system without hard links
                if os.path.lexists(path):
                    raise FileExistsError(
                        errno.EEXIST, _exists_message(path), str(path)
                    ) from None
                os.replace(tmp, path)
        _fsync_path(path.parent, directory=True)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:  # moved into place
            pass


def _cast_maps(arr: np.ndarray, dtype: np.dtype, scale: float | None) -> np.ndarray:
    """Validate ``(n, H, W)`` maps and cast them to ``dtype`` without silent loss."""
    if not np.issubdtype(dtype, np.integer):
        # check_images gives the same type/NaN checks (and messages) as everywhere else.
        return check_images(arr[:, None], name="maps", dtype=dtype)[:, 0]
    exact = scale is None and (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer))
    values = check_images(arr[:, None], name="maps", dtype=arr.dtype if exact else np.float64)
    values = values[:, 0]
    info = np.iinfo(dtype)
    if scale is not None:
        values = np.round(values * scale)
        what = f"maps * scale (scale={scale:g})"
        fix = "use a smaller scale or a wider integer dtype"
    else:
        what = "maps"
        fix = "pass scale= to store round(maps * scale), or write a float dtype"
        if not exact:
            fractional = values != np.round(values)
            n_changed = int(fractional.sum())
            if n_changed:
                example = float(values[fractional].flat[0])
                raise ValueError(
                    f"maps holds non-integer values (e.g. {example:g}): casting to "
                    f"dtype={dtype} would change {n_changed:,} of the "
                    f"{int((values != 0).sum()):,} non-zero voxels. Pass scale= (e.g. "
                    "scale=1000 stores round(maps * 1000) with scl_slope=0.001, which "
                    "readers undo) or write a float dtype (dtype=None writes float32)."
                )
    low, high = values.min().item(), values.max().item()
    if low < info.min or high > info.max:
        raise ValueError(
            f"{what} spans [{low:g}, {high:g}], outside the range [{info.min}, {info.max}] "
            f"of dtype={dtype}: the values would wrap around. To fix it, {fix}."
        )
    return values.astype(dtype)


def save_volume_map(
    maps,
    meta: VolumeMeta,
    path: str | os.PathLike,
    *,
    dtype=None,
    scale: float | None = None,
    overwrite: bool = False,
) -> Path:
    """Write per-slice maps or masks back into the source volume's grid as NIfTI.

    Padding is removed, cropped borders and slices outside the slice range are filled
    with zeros, the RAS+ reorientation is undone, and the file gets the source's affine,
    qform/sform codes, voxel sizes and units, so it overlays the input voxel for voxel
    in any viewer. No free text of the source header is copied (see Notes).

    Parameters
    ----------
    maps : array-like or torch.Tensor of shape (n, H, W) or (n, 1, H, W)
        One map per slice of the case, in the order of ``meta.slice_indices``, at the
        loader's output size ``meta.output_shape``. Boolean masks are written as uint8.
    meta : VolumeMeta
        The ``meta`` of the :class:`BratsCase` the maps were computed from.
    path : str or path-like
        Output file, ending in ``.nii`` or ``.nii.gz``.
    dtype : numpy dtype, default=None
        On-disk dtype. None writes float32, or uint8 for boolean maps. An integer dtype
        needs maps that hold integers within its range, or ``scale``.
    scale : float, default=None
        Only with an integer ``dtype``: store ``round(maps * scale)`` with the NIfTI
        scaling ``scl_slope = 1 / scale``, ``scl_inter = 0``, so that readers
        (``img.get_fdata()``) get the maps back to within ``0.5 / scale`` (plus the
        float32 rounding of the stored slope). Must be positive and finite.
    overwrite : bool, default=False
        Replace ``path`` if it exists. Without it an existing file is an error.

    Returns
    -------
    path : pathlib.Path
        The written file.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    ValueError
        If ``path`` is one of the files the case was read from (``meta.source_files``,
        also through a symbolic or hard link), even with ``overwrite=True``; if the maps
        do not match ``meta`` in number or size or contain NaN; if an integer ``dtype``
        would change values (non-integer or out of range, also after ``scale``); if
        ``scale`` is given without an integer ``dtype`` or is not positive and finite;
        or if ``path`` is not a NIfTI file name.
    TypeError
        If ``maps`` is not numeric or ``scale`` is not a real number.
    OSError
        If writing fails (full disk, no permission, missing folder); the temporary file
        is removed and an existing ``path`` is left untouched.

    Notes
    -----
    The file is written atomically: to a hidden temporary file in the same folder
    (``.<name>.tmp-<pid>-<random>.nii[.gz]``), flushed to disk, then moved onto
    ``path`` with :func:`os.replace`. A reader never sees a half-written file, and an
    interrupted or failed write (e.g. a full disk) leaves the previous file intact. With
    ``overwrite=True`` a symbolic link at ``path`` is replaced by the new file, not
    followed.

    The header is a copy of the reference modality's with the data type, the scaling
    and the display window (``cal_min``/``cal_max``) reset, and with every free-text or
    source-specific field cleared, since they may hold patient information: ``descrip``
    (set to ``"skberdiff anomaly map"``), ``aux_file``, ``intent_code``,
    ``intent_name``, ``intent_p1``-``intent_p3``, ``db_name`` and ``data_type``
    (NIfTI-1), and all header extensions.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np, nibabel as nib
    >>> folder = Path(tempfile.mkdtemp())
    >>> volume = np.arange(6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4)
    >>> affine = np.diag([-2.0, -2.0, 3.0, 1.0])  # stored LPS
    >>> nib.save(nib.Nifti1Image(volume, affine), folder / "c_t1.nii.gz")
    >>> case = load_brats_case(folder, modalities=("t1",), slice_range=(1, 3),
    ...                        pad_to=(8, 8))
    >>> out = save_volume_map(case.images[:, 0] > 0.5, case.meta, folder / "mask.nii.gz")
    >>> img = nib.load(out)
    >>> img.get_data_dtype(), np.allclose(img.affine, affine)
    (dtype('uint8'), True)
    >>> written = np.asarray(img.dataobj)
    >>> bool((written[:, :, 1:3] == (volume[:, :, 1:3] / volume.max() > 0.5)).all())
    True
    >>> int(written[:, :, [0, 3]].sum())
    0

    An existing file is only replaced on request, and the inputs never are:

    >>> try:
    ...     save_volume_map(case.images[:, 0], case.meta, out)
    ... except FileExistsError:
    ...     print("refused")
    refused
    >>> try:
    ...     save_volume_map(case.images[:, 0], case.meta, folder / "c_t1.nii.gz",
    ...                     overwrite=True)
    ... except ValueError:
    ...     print("refused")
    refused

    Integer files need ``scale`` unless the maps hold integers:

    >>> out = save_volume_map(case.images[:, 0], case.meta, folder / "map.nii.gz",
    ...                       dtype=np.int16, scale=1000)
    >>> back = nib.load(out).get_fdata()[:, :, 1:3]
    >>> bool(np.abs(back - volume[:, :, 1:3] / volume.max()).max() <= 0.5 / 1000 + 1e-6)
    True
    """
    import nibabel as nib
    from nibabel.orientations import apply_orientation

    path = Path(path)
    if not re.search(rf"{_NIFTI_SUFFIX}$", path.name, re.IGNORECASE):
        raise ValueError(f"path must end in .nii or .nii.gz, got {path}.")
    source = _is_source_file(path, _protected_files(meta))
    if source is not None:
        raise ValueError(
            f"Refusing to write to {path}: it is the input file {source} of this case "
            "(overwrite=True does not change this). Choose another output path."
        )
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(errno.EEXIST, _exists_message(path), str(path))
    arr = to_numpy(maps, "maps")
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    n_slices = len(meta.slice_indices)
    expected = (n_slices,) + tuple(meta.output_shape)
    if arr.shape != expected:
        raise ValueError(
            f"maps has shape {arr.shape} but this case has {n_slices} slice(s) of size "
            f"{tuple(meta.output_shape)}: expected {expected} (or with a channel axis of 1)."
        )
    if dtype is None:
        dtype = np.uint8 if arr.dtype == np.bool_ else np.float32
    dtype = np.dtype(dtype)
    if scale is not None:
        scale = check_real(scale, "scale", low=0, include_low=False)
        if not np.issubdtype(dtype, np.integer):
            raise ValueError(
                f"scale only applies to an integer dtype (e.g. dtype=np.int16), got "
                f"dtype={dtype}."
            )
    arr = _cast_maps(arr, dtype, scale)

    # Undo padding, then put the kept window back at its place in the RAS+ grid.
    (pr, _), (pc, _) = meta.padding
    (r0, r1), (c0, c1) = meta.cropping
    window = arr[:, pr : pr + (r1 - r0), pc : pc + (c1 - c0)]
    canonical = np.zeros(meta.canonical_shape, dtype=dtype)
    canonical[r0:r1, c0:c1, meta.slice_indices] = np.moveaxis(window, 0, -1)
    volume = apply_orientation(canonical, meta.inverse_orientation)
    if volume.shape != tuple(meta.shape):  # pragma: no cover - guards a corrupt meta
        raise ValueError(
            f"Reoriented map has shape {volume.shape}, expected {tuple(meta.shape)}."
        )

    # Keep the source's header class (NIfTI-2 stays NIfTI-2); other formats become NIfTI-1.
    klass = nib.Nifti2Image if isinstance(meta.header, nib.Nifti2Header) else nib.Nifti1Image
    header = klass.header_class.from_header(meta.header)
    header.set_data_dtype(dtype)
    # The display window describes the input's intensities, not the map's.
    header["cal_min"], header["cal_max"] = 0, 0
    # Free text and intent of the source may identify the patient or mislabel the map.
    fields = set(header.keys())
    for name in ("aux_file", "intent_name", "db_name", "data_type"):
        if name in fields:
            header[name] = b""
    for name in ("intent_code", "intent_p1", "intent_p2", "intent_p3"):
        header[name] = 0
    header["descrip"] = _WRITTEN_DESCRIP
    if hasattr(header, "extensions"):
        del header.extensions[:]
    img = klass(np.ascontiguousarray(volume), meta.affine, header)
    if scale is not None:
        # Set after construction (which resets the scaling): nibabel then writes the
        # integers as they are, with this slope.
        img.header.set_slope_inter(1.0 / scale, 0.0)
    _save_atomically(img, path, overwrite=overwrite)
    return path


# --------------------------------------------------------------------------------------
# OCT images
# --------------------------------------------------------------------------------------


def _import_pillow():
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError(
            "Loading OCT images needs Pillow: pip install skberdiff[oct] (or pip install "
            "pillow)."
        ) from exc
    return Image


def _oct_kind(name: str) -> str | None:
    prefix = re.split(r"[-_ .]", name, maxsplit=1)[0].upper()
    return prefix if prefix in OCT_KINDS else None


def _list_images(source, pattern, recursive) -> list[Path]:
    if isinstance(source, (str, os.PathLike)):
        source = Path(source)
        if source.is_dir():
            patterns = [pattern] if isinstance(pattern, str) else list(pattern)
            candidates = source.rglob("*") if recursive else source.iterdir()
            # Case-insensitive, so '*.jpeg' also finds '.JPEG' files from other systems.
            paths = sorted(
                p
                for p in candidates
                if p.is_file()
                and any(fnmatch.fnmatch(p.name.lower(), pat.lower()) for pat in patterns)
            )
            if not paths:
                raise FileNotFoundError(
                    f"No image in {source} matches {patterns}"
                    + ("" if recursive else " (sub-folders not searched; recursive=True does)")
                    + "."
                )
            return paths
        paths = [source]
    else:
        paths = [Path(p) for p in source]
    if not paths:
        raise FileNotFoundError("No image paths were given.")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"Image file {p} does not exist.")
    return paths


def load_oct_images(
    paths_or_folder: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    size: tuple[int, int] | None = (256, 256),
    pattern: str | Sequence[str] = ("*.jpeg", "*.jpg", "*.png"),
    recursive: bool = False,
    verbose: int = 1,
) -> OctImages:
    """Load 2-D grayscale images (OCT B-scans) as a ``(n, 1, H, W)`` batch in [0, 1].

    Each image is converted to grayscale, resized to ``size`` with bicubic resampling
    (aspect ratio not kept, like the reference code) and min-max scaled on its own.

    Parameters
    ----------
    paths_or_folder : str, path-like or iterable of them
        A folder (files matching ``pattern``, sorted by name), one image file, or a list
        of image files (kept in the given order).
    size : (int, int) or None, default=(256, 256)
        Output ``(height, width)``. None keeps the original size, which must then be the
        same for every image.
    pattern : str or sequence of str, default: JPEG and PNG files
        Shell patterns of the files to take from a folder (case-insensitive); the
        default is ``("*.jpeg", "*.jpg", "*.png")``.
    recursive : bool, default=False
        Also search the sub-folders of a folder.
    verbose : int, default=1
        0 silences the progress bar.

    Returns
    -------
    oct : OctImages
        ``images`` ``(n, 1, H, W)`` float32 in [0, 1], ``paths``, ``names`` and ``kinds``
        (``"NORMAL"``, ``"DRUSEN"``, ``"CNV"``, ``"DME"`` parsed from the file-name
        prefix, or None).

    Raises
    ------
    ImportError
        If Pillow is not installed.
    FileNotFoundError
        If a file is missing or the folder holds no matching image.
    ValueError
        If a file cannot be decoded as an image, or sizes differ with ``size=None``.

    Notes
    -----
    OCT2017 (Kermany et al.) names files ``<KIND>-<patient>-<n>.jpeg``; the paper trains
    on NORMAL images resized to 256x256. A constant image maps to all zeros.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from PIL import Image
    >>> folder = Path(tempfile.mkdtemp())
    >>> scan = (np.linspace(0, 200, 60 * 90).reshape(60, 90)).astype(np.uint8)
    >>> Image.fromarray(scan).save(folder / "NORMAL-1-1.png")
    >>> Image.fromarray(scan[::-1]).save(folder / "DRUSEN-2-1.png")
    >>> oct = load_oct_images(folder, size=(32, 48), verbose=0)
    >>> oct.images.shape, oct.names, oct.kinds
    ((2, 1, 32, 48), ['DRUSEN-2-1.png', 'NORMAL-1-1.png'], ['DRUSEN', 'NORMAL'])
    >>> float(oct.images.min()), float(oct.images.max())
    (0.0, 1.0)
    """
    Image = _import_pillow()
    size = _check_pair(size, "size")
    paths = _list_images(paths_or_folder, pattern, recursive)

    images = []
    for path in progress(paths, verbose=verbose, desc="images"):
        try:
            with Image.open(path) as img:
                img.load()
                # 8-bit images are resized in mode L like the reference; deeper ones in
                # float so that their extra precision is not rounded away first.
                if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                    img = img.convert("F")
                elif img.mode != "L":
                    img = img.convert("L")
                if size is not None:
                    img = img.resize((size[1], size[0]), resample=Image.Resampling.BICUBIC)
                pixels = np.asarray(img, dtype=np.float64)
        except (OSError, ValueError, SyntaxError) as exc:  # Pillow's decoding errors
            raise ValueError(f"Could not read {path} as an image: {exc}") from exc
        if images and pixels.shape != images[0].shape:
            raise ValueError(
                f"{path} is {pixels.shape[1]}x{pixels.shape[0]} but {paths[0]} is "
                f"{images[0].shape[1]}x{images[0].shape[0]}; pass size=(h, w) to resize."
            )
        low, high = pixels.min(), pixels.max()
        images.append((pixels - low) / (high - low) if high > low else np.zeros_like(pixels))

    return OctImages(
        images=np.stack(images)[:, None].astype(np.float32),
        paths=paths,
        names=[p.name for p in paths],
        kinds=[_oct_kind(p.name) for p in paths],
    )

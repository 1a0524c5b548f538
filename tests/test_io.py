"""Tests for skberdiff.io: BRATS-style volumes in, slices out, maps back as NIfTI; OCT images."""

import errno
import os
import re
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path as NIBABEL_DATA
from numpy.testing import assert_allclose, assert_array_equal

from skberdiff.io import (
    BRATS_MODALITIES,
    BratsCase,
    collect_slices,
    iter_brats_cases,
    load_brats_case,
    load_oct_images,
    save_volume_map,
)

SHAPE = (20, 24, 30)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def rotation(axis, degrees):
    """4x4 rotation about a world axis, to make affines oblique."""
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    i, j = [a for a in range(3) if a != axis]
    rot = np.eye(4)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
    return rot


# Stored axes (0, 1, 2) point (posterior, superior, left): a permuted, flipped, non-RAS
# order, then tilted by 10 and 7 degrees so that the affine is oblique.
PERMUTED = np.array(
    [[0.0, 0.0, -1.2, 30.0], [-0.9, 0.0, 0.0, 20.0], [0.0, 1.5, 0.0, -10.0], [0, 0, 0, 1]]
)
OBLIQUE = rotation(0, 10) @ rotation(2, 7) @ PERMUTED
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
LPS[:3, 3] = [10, 12, -3]


def write_case(folder, volumes, affine=np.eye(4), label=None, gz=True, prefix=None):
    """Write ``{key: array}`` (and an optional label) as ``<prefix>_<key>.nii[.gz]``."""
    folder.mkdir(parents=True, exist_ok=True)
    prefix = prefix or folder.name
    ext = ".nii.gz" if gz else ".nii"
    for key, data in volumes.items():
        nib.save(nib.Nifti1Image(data, affine), folder / f"{prefix}_{key}{ext}")
    if label is not None:
        nib.save(nib.Nifti1Image(label.astype(np.uint8), affine), folder / f"{prefix}_seg{ext}")
    return folder


def random_volumes(rng, shape=SHAPE, modalities=BRATS_MODALITIES):
    # Positive values with distinct ranges per modality, like MR intensities.
    return {
        key: (rng.random(shape) * 100 * (i + 1) + 5 * i).astype(np.float32)
        for i, key in enumerate(modalities)
    }


def minmax(volume):
    return (volume - volume.min()) / (volume.max() - volume.min())


def canonical_axial_axis(affine):
    """Stored axis closest to world S and whether it runs superior -> inferior.

    Computed from the affine directly, independently of nibabel.orientations.
    """
    axis = int(np.argmax(np.abs(affine[2, :3])))
    return axis, affine[2, axis] < 0


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def test_t1_does_not_match_t1ce(tmp_path, rng):
    volumes = random_volumes(rng)
    folder = write_case(tmp_path / "c", volumes)
    case = load_brats_case(folder, slice_range=None, pad_to=None)
    assert case.meta.source_paths["t1"].name == "c_t1.nii.gz"
    assert case.meta.source_paths["t1ce"].name == "c_t1ce.nii.gz"
    for channel, key in enumerate(BRATS_MODALITIES):
        expected = np.moveaxis(minmax(volumes[key]), -1, 0)
        assert_allclose(case.images[:, channel], expected, atol=1e-6)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("affine", [OBLIQUE, LPS], ids=["oblique_permuted", "lps"])
def test_slices_match_nibabel_canonical(tmp_path, rng, gz, affine):
    volumes = random_volumes(rng)
    folder = write_case(tmp_path / "c", volumes, affine=affine, gz=gz)
    case = load_brats_case(folder, slice_range=(3, -4), pad_to=None)
    assert case.images.dtype == np.float32
    for channel, key in enumerate(BRATS_MODALITIES):
        canonical = nib.as_closest_canonical(nib.load(case.meta.source_paths[key]))
        assert nib.aff2axcodes(canonical.affine) == ("R", "A", "S")
        data = minmax(canonical.get_fdata())
        n_axial = data.shape[2]
        assert_array_equal(case.slice_indices, np.arange(3, n_axial - 4))
        assert_allclose(
            case.images[:, channel], np.moveaxis(data[:, :, 3:-4], -1, 0), atol=1e-6
        )
    assert_allclose(case.meta.canonical_affine, canonical.affine, atol=1e-6)


def test_marker_voxel_lands_in_ras_position(tmp_path):
    # In OBLIQUE the stored axes point (P, S, L), so RAS indices are
    # (n2-1-k, n0-1-i, j) for stored voxel (i, j, k).
    volume = np.zeros(SHAPE, np.float32)
    i, j, k = 3, 17, 5
    volume[i, j, k] = 10.0
    folder = write_case(tmp_path / "c", {"t1": volume}, affine=OBLIQUE)
    case = load_brats_case(folder, modalities=("t1",), slice_range=None, pad_to=None)
    assert case.meta.axcodes == ("P", "S", "L")
    assert case.meta.canonical_shape == (SHAPE[2], SHAPE[0], SHAPE[1])
    n, row, col = np.argwhere(case.images[:, 0] == 1.0)[0]
    assert (case.slice_indices[n], row, col) == (j, SHAPE[2] - 1 - k, SHAPE[0] - 1 - i)
    assert case.images.sum() == 1.0


def test_slice_range(tmp_path, rng):
    folder = write_case(tmp_path / "c", random_volumes(rng))
    assert_array_equal(load_brats_case(folder, slice_range=None).slice_indices, np.arange(30))
    assert_array_equal(
        load_brats_case(folder, slice_range=(5, -7)).slice_indices, np.arange(5, 23)
    )
    assert_array_equal(
        load_brats_case(folder, slice_range=(None, 4)).slice_indices, np.arange(4)
    )
    case = load_brats_case(folder, slice_range=(12, 14))
    assert case.images.shape[0] == case.masks.shape[0] == case.is_diseased.shape[0] == 2
    with pytest.raises(ValueError, match=r"slice_range=\(80, -26\) selects no slice of the 30"):
        load_brats_case(folder)  # the paper's range needs >= 107 slices
    with pytest.raises(TypeError, match="slice_range must be a pair"):
        load_brats_case(folder, slice_range=5)


@pytest.mark.parametrize(
    "pad_to, cropping, padding",
    [
        ((32, 32), ((0, 20), (0, 24)), ((6, 6), (4, 4))),
        ((25, 27), ((0, 20), (0, 24)), ((2, 3), (1, 2))),
        ((16, 30), ((2, 18), (0, 24)), ((0, 0), (3, 3))),
        ((11, 24), ((4, 15), (0, 24)), ((0, 0), (0, 0))),
        (None, ((0, 20), (0, 24)), ((0, 0), (0, 0))),
    ],
)
def test_padding_and_cropping(tmp_path, rng, pad_to, cropping, padding):
    volumes = random_volumes(rng)
    folder = write_case(tmp_path / "c", volumes)
    full = load_brats_case(folder, slice_range=None, pad_to=None)
    case = load_brats_case(folder, slice_range=None, pad_to=pad_to)
    assert case.meta.cropping == cropping and case.meta.padding == padding
    expected_hw = pad_to or (20, 24)
    assert case.images.shape == (30, 4) + tuple(expected_hw)
    assert case.meta.output_shape == tuple(expected_hw)
    (r0, r1), (c0, c1) = cropping
    (pr, _), (pc, _) = padding
    window = case.images[:, :, pr : pr + r1 - r0, pc : pc + c1 - c0]
    assert_array_equal(window, full.images[:, :, r0:r1, c0:c1])
    # Everything outside the window is zero padding.
    assert case.images.sum() == pytest.approx(window.sum(), rel=1e-6)


def test_normalisation_range_and_percentiles(tmp_path, rng):
    volumes = random_volumes(rng)
    folder = write_case(tmp_path / "c", volumes)
    case = load_brats_case(folder, slice_range=None, pad_to=(32, 32))
    assert case.images.min() == 0.0 and case.images.max() == 1.0
    for channel in range(4):
        window = case.images[:, channel, 6:26, 4:28]
        assert window.min() == 0.0 and window.max() == 1.0

    clipped = load_brats_case(
        folder, slice_range=None, pad_to=None, clip_percentiles=(5, 95), dtype=np.float64
    )
    assert clipped.images.dtype == np.float64
    assert clipped.images.min() == 0.0 and clipped.images.max() == 1.0
    for channel, key in enumerate(BRATS_MODALITIES):
        low, high = np.percentile(volumes[key], [5, 95])
        assert_allclose(clipped.meta.intensity_ranges[key], (low, high), rtol=1e-6)
        # 5 % of the voxels sit at each bound after clipping.
        assert np.mean(clipped.images[:, channel] == 1.0) == pytest.approx(0.05, abs=0.002)
        assert np.mean(clipped.images[:, channel] == 0.0) == pytest.approx(0.05, abs=0.002)


def test_constant_volume_gives_zeros_not_nan(tmp_path):
    folder = write_case(tmp_path / "c", {"t1": np.full(SHAPE, 7, np.float32)})
    case = load_brats_case(folder, modalities=("t1",), slice_range=None)
    assert np.isfinite(case.images).all() and case.images.max() == 0.0


def test_masks_and_is_diseased(tmp_path, rng):
    label = np.zeros(SHAPE, np.uint8)
    label[8:12, 9:13, 10:13] = 1  # three slices with the core ...
    label[8:12, 9:13, 13] = 4  # ... one more with another label value
    label[0, 0, 20] = 2  # a lesion voxel that pad_to=(16, 24) crops away
    folder = write_case(tmp_path / "c", random_volumes(rng), label=label)
    case = load_brats_case(folder, slice_range=(5, -5), pad_to=(16, 24))
    assert case.has_label and case.masks.dtype == bool
    assert_array_equal(case.slice_indices[case.is_diseased], [10, 11, 12, 13, 20])
    # Labels > 0 merged, cropped by the same window as the images (rows 2..18).
    expected = np.moveaxis(label[2:18, :, 5:25] > 0, -1, 0)
    assert_array_equal(case.masks, expected)
    # Healthy iff the whole label slice is zero: slice 20 is diseased although its
    # lesion voxel was cropped away.
    n20 = list(case.slice_indices).index(20)
    assert case.is_diseased[n20] and not case.masks[n20].any()


def test_without_label(tmp_path, rng):
    label = np.zeros(SHAPE, np.uint8)
    label[5, 5, 5] = 1
    folder = write_case(tmp_path / "c", random_volumes(rng), label=label)
    ignored = load_brats_case(folder, slice_range=None, label_name=None)
    assert not ignored.has_label and "seg" not in ignored.meta.source_paths
    assert not ignored.masks.any() and not ignored.is_diseased.any()
    assert ignored.masks.shape == (30, 256, 256)
    (folder / "c_seg.nii.gz").unlink()
    missing = load_brats_case(folder, slice_range=None)
    assert not missing.has_label and not missing.masks.any()
    assert "has_label=False" in repr(missing)


def test_other_modalities_and_hyphen_names(tmp_path, rng):
    # BraTS 2023 style: BraTS-GLI-00000-000-t1n.nii.gz
    keys = ("t1n", "t1c", "t2w", "t2f")
    volumes = random_volumes(rng, modalities=keys)
    folder = tmp_path / "BraTS-GLI-00000-000"
    folder.mkdir()
    for key, data in volumes.items():
        nib.save(nib.Nifti1Image(data, np.eye(4)), folder / f"{folder.name}-{key}.nii.gz")
    case = load_brats_case(folder, modalities=keys, slice_range=None, pad_to=None)
    assert case.images.shape == (30, 4, 20, 24) and case.meta.modalities == keys


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


def test_missing_modality(tmp_path, rng):
    volumes = random_volumes(rng)
    del volumes["flair"]
    folder = write_case(tmp_path / "c", volumes)
    with pytest.raises(FileNotFoundError, match=r"Modality 'flair' is missing in .*c: no file"):
        load_brats_case(folder)


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="Case folder .*nowhere does not exist"):
        load_brats_case(tmp_path / "nowhere")


def test_different_shapes(tmp_path, rng):
    volumes = random_volumes(rng)
    volumes["t2"] = volumes["t2"][:, :, :-1]
    folder = write_case(tmp_path / "c", volumes)
    match = r"modality 't2' in .*c_t2.nii.gz has shape \(20, 24, 29\)"
    with pytest.raises(ValueError, match=match):
        load_brats_case(folder)


def test_label_of_different_shape(tmp_path, rng):
    folder = write_case(tmp_path / "c", random_volumes(rng), label=np.zeros((20, 24, 31)))
    with pytest.raises(ValueError, match=r"label 'seg' in .*c_seg.nii.gz has shape"):
        load_brats_case(folder)


def test_different_affines(tmp_path, rng):
    volumes = random_volumes(rng)
    folder = write_case(tmp_path / "c", volumes)
    nib.save(nib.Nifti1Image(volumes["t2"], LPS), folder / "c_t2.nii.gz")
    with pytest.raises(ValueError, match="'t2' in .*c_t2.nii.gz has a different affine"):
        load_brats_case(folder)


def test_non_3d_volume(tmp_path, rng):
    folder = write_case(tmp_path / "c", random_volumes(rng))
    shutil.copy(NIBABEL_DATA / "example4d.nii.gz", folder / "c_t1ce.nii.gz")
    with pytest.raises(ValueError, match=r"c_t1ce.nii.gz holds a 4-D image .* 3-D volume"):
        load_brats_case(folder)


def test_unreadable_file(tmp_path, rng):
    folder = write_case(tmp_path / "c", random_volumes(rng))
    (folder / "c_t2.nii.gz").write_bytes(b"this is not a NIfTI file")
    with pytest.raises(ValueError, match="Could not read .*c_t2.nii.gz"):
        load_brats_case(folder)


def test_truncated_file(tmp_path, rng):
    folder = write_case(tmp_path / "c", random_volumes(rng), gz=False)
    path = folder / "c_flair.nii"
    path.write_bytes(path.read_bytes()[:2000])  # header intact, data cut short
    with pytest.raises(ValueError, match="Could not read the voxel data of .*c_flair.nii"):
        load_brats_case(folder, slice_range=None)


def test_nan_voxels(tmp_path, rng):
    volumes = random_volumes(rng)
    volumes["t1"][0, 0, 0] = np.nan
    folder = write_case(tmp_path / "c", volumes)
    with pytest.raises(ValueError, match="c_t1.nii.gz contains 1 NaN"):
        load_brats_case(folder, slice_range=None)


def test_ambiguous_files(tmp_path, rng):
    volumes = random_volumes(rng)
    folder = write_case(tmp_path / "c", volumes)
    nib.save(nib.Nifti1Image(volumes["t1"], np.eye(4)), folder / "c_t1.nii")
    with pytest.raises(ValueError, match=r"Several files match '\*_t1.nii\(.gz\)'"):
        load_brats_case(folder)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"pad_to": (0, 10)}, ValueError, "pad_to must be a pair of positive"),
        ({"pad_to": "big"}, TypeError, "pad_to must be a pair"),
        ({"clip_percentiles": (99, 1)}, ValueError, "0 <= low < high <= 100"),
        ({"dtype": np.int16}, ValueError, "floating dtype"),
        ({"modalities": ("t1", "T1")}, ValueError, "duplicates"),
        ({"modalities": ()}, ValueError, "at least one"),
        ({"label_name": "T2"}, ValueError, "label_name 'T2' is also a modality"),
    ],
)
def test_bad_arguments(tmp_path, rng, kwargs, error, match):
    folder = write_case(tmp_path / "c", random_volumes(rng))
    with pytest.raises(error, match=match):
        load_brats_case(folder, **kwargs)


# --------------------------------------------------------------------------------------
# Writing back
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("affine", [OBLIQUE, LPS], ids=["oblique_permuted", "lps"])
@pytest.mark.parametrize("pad_to", [(32, 32), (12, 40)], ids=["pad", "crop_and_pad"])
def test_round_trip_is_voxel_aligned(tmp_path, rng, affine, pad_to):
    volumes = random_volumes(rng)
    folder = write_case(tmp_path / "c", volumes, affine=affine)
    case = load_brats_case(folder, slice_range=(4, -6), pad_to=pad_to)
    # A per-slice map that is a known function of two modalities' voxel values.
    maps = case.images[:, 0] ** 2 + case.images[:, 3]
    out = save_volume_map(maps, case.meta, tmp_path / "map.nii.gz")
    img = nib.load(out)
    source = nib.load(folder / "c_t1.nii.gz")
    assert img.shape == SHAPE
    assert_array_equal(img.affine, source.affine)
    assert img.get_data_dtype() == np.float32
    written = img.get_fdata()

    expected = minmax(volumes["t1"]) ** 2 + minmax(volumes["flair"])
    # Voxels in the slice range, found from the affine alone: the stored axis nearest
    # world S, counted from the inferior end.
    axis, flipped = canonical_axial_axis(affine)
    position = np.arange(SHAPE[axis])
    position = position[::-1] if flipped else position
    in_range = np.zeros(SHAPE, bool)
    index = [slice(None)] * 3
    index[axis] = (position >= 4) & (position < SHAPE[axis] - 6)
    in_range[tuple(index)] = True
    (r0, r1), (c0, c1) = case.meta.cropping
    n_window = (r1 - r0) * (c1 - c0) * len(case.slice_indices)
    assert (written[~in_range] == 0).all()
    if n_window == in_range.sum():  # padding only: every in-range voxel comes back
        assert_allclose(written[in_range], expected[in_range], atol=1e-5)
    else:  # cropped borders come back as zeros, the rest aligned
        kept = written != 0
        assert kept.sum() == n_window
        assert_allclose(written[kept], expected[kept], atol=1e-5)
        canonical = nib.as_closest_canonical(img).get_fdata()
        outside = np.ones(canonical.shape, bool)
        outside[r0:r1, c0:c1] = False
        assert (canonical[outside] == 0).all()


def test_round_trip_of_boolean_masks(tmp_path, rng):
    label = np.zeros(SHAPE, np.uint8)
    label[4:9, 10:20, 12:18] = 2
    folder = write_case(tmp_path / "c", random_volumes(rng), affine=OBLIQUE, label=label)
    case = load_brats_case(folder, slice_range=(2, -2), pad_to=(40, 36))
    out = save_volume_map(case.masks, case.meta, tmp_path / "mask.nii")
    img = nib.load(out)
    assert img.get_data_dtype() == np.uint8
    assert_array_equal(img.affine, nib.load(folder / "c_t1.nii.gz").affine)
    written = np.asarray(img.dataobj)
    # The lesion lies inside the slice range, so the mask comes back exactly.
    assert_array_equal(written, (label > 0).astype(np.uint8))


def test_written_header_keeps_codes_and_drops_scaling(tmp_path, rng):
    volume = rng.integers(0, 1000, SHAPE).astype(np.int16)
    img = nib.Nifti1Image(volume, LPS)
    img.header.set_slope_inter(0.5, 10.0)
    img.header.set_qform(LPS, code=1)
    img.header.set_sform(LPS, code=2)
    img.header["cal_max"] = 1000
    folder = tmp_path / "c"
    folder.mkdir()
    nib.save(img, folder / "c_t1.nii.gz")
    case = load_brats_case(folder, modalities=("t1",), slice_range=None, pad_to=None)
    maps = case.images[:, 0].astype(np.float64)
    out = nib.load(save_volume_map(maps, case.meta, tmp_path / "m.nii.gz"))
    assert out.get_data_dtype() == np.float32
    assert out.header.get_slope_inter() in ((None, None), (1.0, 0.0))
    assert out.header["qform_code"] == 1 and out.header["sform_code"] == 2
    assert out.header["cal_max"] == 0
    assert_allclose(out.get_fdata(), minmax(volume * 0.5 + 10.0), atol=1e-6)


def test_save_volume_map_accepts_channel_axis_tensor_and_dtype(tmp_path, rng):
    import torch

    folder = write_case(tmp_path / "c", random_volumes(rng))
    case = load_brats_case(folder, slice_range=(10, 12), pad_to=(24, 24))
    # Integer values: an integer dtype without scale= only takes maps it can store exactly.
    maps = torch.round(torch.from_numpy(case.images[:, :1] * 100))
    out = nib.load(save_volume_map(maps, case.meta, tmp_path / "m.nii", dtype=np.int16))
    assert out.get_data_dtype() == np.int16 and out.shape == SHAPE


def test_nifti2_source_writes_nifti2(tmp_path, rng):
    folder = tmp_path / "c"
    folder.mkdir()
    nib.save(nib.Nifti2Image(random_volumes(rng)["t1"], LPS), folder / "c_t1.nii")
    case = load_brats_case(folder, modalities=("t1",), slice_range=None)
    out = nib.load(save_volume_map(case.images[:, 0], case.meta, tmp_path / "m.nii"))
    assert isinstance(out, nib.Nifti2Image)


def test_save_volume_map_errors(tmp_path, rng):
    folder = write_case(tmp_path / "c", random_volumes(rng))
    case = load_brats_case(folder, slice_range=(10, 13), pad_to=(24, 24))
    good = np.zeros((3, 24, 24), np.float32)
    with pytest.raises(ValueError, match=r"maps has shape \(2, 24, 24\) .* 3 slice\(s\)"):
        save_volume_map(good[:2], case.meta, tmp_path / "m.nii")
    with pytest.raises(ValueError, match=r"expected \(3, 24, 24\)"):
        save_volume_map(np.zeros((3, 20, 24)), case.meta, tmp_path / "m.nii")
    with pytest.raises(ValueError, match=r"must end in .nii or .nii.gz"):
        save_volume_map(good, case.meta, tmp_path / "m.png")
    bad = good.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="maps contains NaN"):
        save_volume_map(bad, case.meta, tmp_path / "m.nii")


# --------------------------------------------------------------------------------------
# Data set roots
# --------------------------------------------------------------------------------------


def make_root(tmp_path, rng, diseased_slices):
    """One case per entry, each with lesions in the given axial slices."""
    root = tmp_path / "root"
    for n, slices in enumerate(diseased_slices):
        label = np.zeros((10, 12, 8), np.uint8)
        label[4, 5, list(slices)] = 1
        write_case(root / f"case_{n:03d}", random_volumes(rng, (10, 12, 8)), label=label)
    return root


def test_iter_brats_cases_sorted_and_skips_other_entries(tmp_path, rng, capsys):
    root = make_root(tmp_path, rng, [[1], [2, 3], []])
    (root / "name_mapping.csv").write_text("id\n")
    (root / "notes").mkdir()
    (root / ".hidden").mkdir()
    write_case(root / ".hidden", random_volumes(rng, (10, 12, 8)), prefix="h")
    cases = iter_brats_cases(root, verbose=0, slice_range=None, pad_to=(16, 16))
    names = [case.name for case in cases]
    assert names == ["case_000", "case_001", "case_002"]
    assert capsys.readouterr().err == ""
    list(iter_brats_cases(root, verbose=1, slice_range=None))
    assert "cases" in capsys.readouterr().err


def test_iter_brats_cases_errors_are_eager(tmp_path):
    with pytest.raises(FileNotFoundError, match="Data set root .*missing does not exist"):
        iter_brats_cases(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No case folders in .*empty"):
        iter_brats_cases(tmp_path / "empty")
    single = write_case(tmp_path / "single", {"t1": np.zeros((4, 4, 4), np.float32)})
    with pytest.raises(FileNotFoundError, match="load_brats_case"):
        iter_brats_cases(single)
    # tmp_path now holds the case folder "single": a typo fails at the call.
    with pytest.raises(TypeError, match="slice_rnage"):
        iter_brats_cases(tmp_path, slice_rnage=None)


def test_collect_slices(tmp_path, rng):
    root = make_root(tmp_path, rng, [[1], [2, 3], []])
    kwargs = dict(verbose=0, slice_range=None, pad_to=(16, 16))
    healthy = collect_slices(root, **kwargs)
    assert healthy.images.shape == (3 * 8 - 3, 4, 16, 16)
    assert not healthy.is_diseased.any() and not healthy.masks.any()
    assert healthy.case_names.tolist().count("case_001") == 6
    assert 1 not in healthy.slice_indices[healthy.case_names == "case_000"]

    everything = collect_slices(root, healthy_only=False, **kwargs)
    assert everything.images.shape[0] == 24 and everything.is_diseased.sum() == 3
    assert_array_equal(everything.masks.any(axis=(1, 2)), everything.is_diseased)

    cases = list(iter_brats_cases(root, **kwargs))
    assert_array_equal(collect_slices(cases).images, healthy.images)
    with pytest.raises(TypeError, match="only apply when cases is a data set root"):
        collect_slices(cases, pad_to=(8, 8))
    with pytest.raises(ValueError, match="No case"):
        collect_slices([])


def test_collect_slices_errors(tmp_path, rng):
    root = make_root(tmp_path, rng, [range(8)])
    with pytest.raises(ValueError, match="every slice of the given cases is diseased"):
        collect_slices(root, verbose=0, slice_range=None)
    a = load_brats_case(root / "case_000", slice_range=None, pad_to=(16, 16))
    b = load_brats_case(root / "case_000", slice_range=None, pad_to=(20, 16))
    with pytest.raises(ValueError, match="load them with the same modalities and pad_to"):
        collect_slices([a, b], healthy_only=False)


# --------------------------------------------------------------------------------------
# Writing never destroys data
# --------------------------------------------------------------------------------------


def small_case(tmp_path, rng, label=None, affine=np.eye(4)):
    folder = write_case(tmp_path / "c", random_volumes(rng), affine=affine, label=label)
    return folder, load_brats_case(folder, slice_range=(10, 13), pad_to=(24, 24))


def test_save_refuses_existing_file_unless_overwrite(tmp_path, rng):
    _, case = small_case(tmp_path, rng)
    out = tmp_path / "map.nii.gz"
    save_volume_map(case.images[:, 0], case.meta, out)
    before = out.read_bytes()
    with pytest.raises(FileExistsError, match=r"map.nii.gz already exists; pass overwrite=True"):
        save_volume_map(case.images[:, 1], case.meta, out)
    assert out.read_bytes() == before
    save_volume_map(case.images[:, 1], case.meta, out, overwrite=True)
    assert out.read_bytes() != before
    written = nib.load(out).get_fdata()[:, :, 10:13]  # RAS file: no reorientation
    assert_allclose(np.moveaxis(written, -1, 0), case.images[:, 1, 2:22], atol=1e-6)
    # A dangling symbolic link is an existing entry too.
    link = tmp_path / "dangling.nii"
    link.symlink_to(tmp_path / "nowhere.nii")
    with pytest.raises(FileExistsError, match="dangling.nii already exists"):
        save_volume_map(case.images[:, 0], case.meta, link)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "dangling.nii", "map.nii.gz"]


def test_save_refuses_input_files_even_with_overwrite(tmp_path, rng):
    label = np.zeros(SHAPE, np.uint8)
    label[5, 5, 11] = 1
    folder, case = small_case(tmp_path, rng, label=label)
    maps = case.images[:, 0]
    originals = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert set(case.meta.source_files) == {
        (folder / name).resolve() for name in originals
    }
    (tmp_path / "link_t1.nii.gz").symlink_to(folder / "c_t1.nii.gz")
    (tmp_path / "alias").symlink_to(folder, target_is_directory=True)
    os.link(folder / "c_t2.nii.gz", tmp_path / "hard_t2.nii.gz")
    targets = [
        folder / "c_t1.nii.gz",
        folder / "c_seg.nii.gz",
        tmp_path / "link_t1.nii.gz",  # a symbolic link to an input
        tmp_path / "alias" / "c_seg.nii.gz",  # through a linked folder
        tmp_path / "hard_t2.nii.gz",  # a hard link to an input
    ]
    for target in targets:
        for overwrite in (False, True):
            with pytest.raises(ValueError, match=r"Refusing to write to .* input file .*c_"):
                save_volume_map(maps, case.meta, target, overwrite=overwrite)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == originals
    # A case loaded through a linked folder records the real files.
    aliased = load_brats_case(tmp_path / "alias", slice_range=(10, 13), pad_to=(24, 24))
    assert set(aliased.meta.source_files) == set(case.meta.source_files)
    with pytest.raises(ValueError, match="input file .*c_flair.nii.gz"):
        save_volume_map(maps, aliased.meta, folder / "c_flair.nii.gz", overwrite=True)


def _failing_save(calls, *, create=None):
    """A nibabel.save that writes part of the file, then hits a full disk."""

    def save(img, filename):
        calls.append(Path(filename))
        Path(filename).write_bytes(b"partial NIfTI data")
        if create is not None:
            create.write_bytes(b"written by someone else")
        raise OSError(errno.ENOSPC, "No space left on device", str(filename))

    return save


def test_save_full_disk_keeps_old_file_and_no_temporary(tmp_path, rng, monkeypatch):
    _, case = small_case(tmp_path, rng)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "map.nii.gz"
    save_volume_map(case.images[:, 0], case.meta, out)
    assert os.listdir(out_dir) == ["map.nii.gz"]  # no temporary left after a success
    before = out.read_bytes()

    calls = []
    monkeypatch.setattr(nib, "save", _failing_save(calls))
    with pytest.raises(OSError, match="No space left") as info:
        save_volume_map(case.images[:, 1], case.meta, out, overwrite=True)
    assert info.value.errno == errno.ENOSPC
    assert out.read_bytes() == before
    assert os.listdir(out_dir) == ["map.nii.gz"]
    # It wrote to a hidden temporary file beside the target, with the NIfTI suffix.
    (tmp,) = calls
    assert tmp.parent == out_dir and tmp.name.startswith(".map.tmp-")
    assert tmp.name.endswith(".nii.gz")

    with pytest.raises(OSError, match="No space left"):
        save_volume_map(case.images[:, 1], case.meta, out_dir / "new.nii")
    assert os.listdir(out_dir) == ["map.nii.gz"]
    assert calls[1].name.endswith(".nii") and calls[1].name.startswith(".new.tmp-")


def test_save_does_not_clobber_file_created_meanwhile(tmp_path, rng, monkeypatch):
    _, case = small_case(tmp_path, rng)
    out = tmp_path / "map.nii.gz"
    real_save = nib.save

    def save_while_another_writer_creates_out(img, filename):
        real_save(img, filename)
        out.write_bytes(b"written by someone else")

    monkeypatch.setattr(nib, "save", save_while_another_writer_creates_out)
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        save_volume_map(case.images[:, 0], case.meta, out)
    assert out.read_bytes() == b"written by someone else"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "map.nii.gz"]


def test_save_integer_dtype_refuses_lossy_cast(tmp_path, rng):
    _, case = small_case(tmp_path, rng)
    maps = case.images[:, 0]  # in [0, 1]: an int16 cast would keep almost nothing
    out = tmp_path / "m.nii.gz"
    with pytest.raises(ValueError, match=r"non-integer values .* dtype=int16 would change "
                                         r"\d[\d,]* of the [\d,]+ non-zero voxels.*scale="):
        save_volume_map(maps, case.meta, out, dtype=np.int16)
    with pytest.raises(ValueError, match=r"maps spans \[0, 6\d{4}\], outside the range "
                                         r"\[-32768, 32767\] of dtype=int16"):
        save_volume_map(np.round(maps * 70000), case.meta, out, dtype=np.int16)
    with pytest.raises(ValueError, match=r"maps spans \[-1, -1\], outside .* dtype=uint8"):
        save_volume_map(-np.ones_like(maps, dtype=np.int64), case.meta, out, dtype=np.uint8)
    with pytest.raises(ValueError, match=r"maps \* scale \(scale=1e\+06\) spans .* dtype=int16"):
        save_volume_map(maps, case.meta, out, dtype=np.int16, scale=1e6)
    with pytest.raises(ValueError, match="scale only applies to an integer dtype"):
        save_volume_map(maps, case.meta, out, scale=1000)
    with pytest.raises(ValueError, match=r"scale must be in \(0, inf\)"):
        save_volume_map(maps, case.meta, out, dtype=np.int16, scale=0)
    with pytest.raises(ValueError, match="scale must be finite"):
        save_volume_map(maps, case.meta, out, dtype=np.int16, scale=np.inf)
    with pytest.raises(TypeError, match="scale must be a real number"):
        save_volume_map(maps, case.meta, out, dtype=np.int16, scale="1000")
    assert not out.exists()


@pytest.mark.parametrize("dtype, scale", [(np.int16, 1000), (np.uint8, 255), (np.int32, 1e6)])
def test_save_scale_round_trip(tmp_path, rng, dtype, scale):
    _, case = small_case(tmp_path, rng, affine=LPS)
    maps = case.images[:, 0] * 0.9 + 0.05  # in [0.05, 0.95], every voxel non-zero
    out = nib.load(save_volume_map(maps, case.meta, tmp_path / "m.nii", dtype=dtype,
                                   scale=scale))
    assert out.get_data_dtype() == dtype
    assert out.dataobj.slope == pytest.approx(1 / scale) and out.dataobj.inter == 0
    canonical = nib.as_closest_canonical(out).get_fdata()
    written = np.moveaxis(canonical[:, :, 10:13], -1, 0)
    expected = maps[:, 2:22]  # pad_to=(24, 24) added rows 0-1 and 22-23
    assert np.abs(written - expected).max() <= 0.5 / scale + 1e-6
    assert (written != 0).sum() == expected.size


@pytest.mark.parametrize("klass", [nib.Nifti1Image, nib.Nifti2Image])
def test_save_does_not_copy_header_text(tmp_path, rng, klass):
    img = klass(random_volumes(rng)["t1"], LPS)
    header = img.header
    header["descrip"] = b"patient name"
    header["aux_file"] = b"patient.aux"
    header.set_intent("t test", (12,), name="patient stats")
    if "db_name" in header.keys():
        header["db_name"] = b"patient db"
    header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"patient name"))
    header.set_qform(LPS, code=1)
    header.set_sform(LPS, code=4)
    header.set_xyzt_units("mm", "sec")
    folder = tmp_path / "c"
    folder.mkdir()
    ext = ".nii" if klass is nib.Nifti2Image else ".nii.gz"
    nib.save(img, folder / f"c_t1{ext}")
    source = nib.load(folder / f"c_t1{ext}")
    assert source.header["descrip"] == b"patient name" and source.header.extensions

    case = load_brats_case(folder, modalities=("t1",), slice_range=None, pad_to=None)
    path = save_volume_map(case.images[:, 0], case.meta, tmp_path / "m.nii")
    out = nib.load(path)
    assert isinstance(out, klass)
    assert out.header["descrip"] == b"skberdiff anomaly map"
    assert out.header["aux_file"] == b"" and out.header["intent_name"] == b""
    assert out.header["intent_code"] == 0
    assert [out.header[f"intent_p{i}"] for i in (1, 2, 3)] == [0, 0, 0]
    if "db_name" in out.header.keys():
        assert out.header["db_name"] == b""
    assert len(out.header.extensions) == 0
    assert b"patient" not in path.read_bytes()
    # The geometry is kept.
    assert out.header["qform_code"] == 1 and out.header["sform_code"] == 4
    assert_allclose(out.header.get_zooms(), source.header.get_zooms())
    assert out.header.get_xyzt_units() == ("mm", "sec")
    assert_array_equal(out.affine, source.affine)
    # The header recorded in meta is left as read.
    assert case.meta.header["descrip"] == b"patient name"


# --------------------------------------------------------------------------------------
# Loading never fails silently
# --------------------------------------------------------------------------------------


def write_seg(folder, values, dtype):
    label = np.zeros(SHAPE, dtype)
    label[4:6, 4:6, 3] = 1
    label[8, 8, 12:12 + len(values)] = values
    nib.save(nib.Nifti1Image(label, np.eye(4)), folder / "c_seg.nii.gz")


@pytest.mark.parametrize(
    "values, dtype, match",
    [
        ([-1], np.int16, r"1 voxel\(s\) hold negative values \[-1\]"),
        ([np.nan], np.float32, r"NaN \(1 voxels\)"),
        ([np.inf, 2], np.float32, r"infinite values \(1 voxels\)"),
        ([2.5, 1], np.float32, r"non-integer values \[2.5\]"),
        ([7, 7, 9], np.uint8, r"3 voxel\(s\) hold unknown labels \[7, 9\]"),
    ],
    ids=["negative", "nan", "inf", "fraction", "unknown"],
)
def test_bad_labels_raise(tmp_path, rng, values, dtype, match):
    folder = write_case(tmp_path / "c", random_volumes(rng))
    write_seg(folder, values, dtype)
    full = r"Label file .*c_seg.nii.gz is not a valid segmentation: .*" + match
    with pytest.raises(ValueError, match=full):
        load_brats_case(folder, slice_range=None)
    with pytest.raises(ValueError, match=r"label_values=\(0, 1, 2, 3, 4\)"):
        load_brats_case(folder, slice_range=None)
    # Ignoring the label file remains possible.
    assert not load_brats_case(folder, slice_range=None, label_name=None).has_label


def test_label_values(tmp_path, rng):
    folder = write_case(tmp_path / "c", random_volumes(rng))
    write_seg(folder, [0.0, 2.0, 3.0, 4.0], np.float32)  # integral floats, label 3: fine
    case = load_brats_case(folder, slice_range=None, pad_to=None)
    assert_array_equal(case.slice_indices[case.is_diseased], [3, 13, 14, 15])
    write_seg(folder, [7, 300], np.int16)
    with pytest.raises(ValueError, match=r"unknown labels \[7, 300\]"):
        load_brats_case(folder, slice_range=None)
    assert load_brats_case(folder, slice_range=None, label_values=(0, 1, 7, 300)).has_label
    assert load_brats_case(folder, slice_range=None, label_values=None).has_label
    write_seg(folder, [-2], np.int16)
    with pytest.raises(ValueError, match=r"negative values \[-2\].*label_values=None"):
        load_brats_case(folder, slice_range=None, label_values=None)
    with pytest.raises(ValueError, match="label_values must contain 0"):
        load_brats_case(folder, label_values=(1, 2))
    with pytest.raises(TypeError, match="label_values must be a sequence of ints"):
        load_brats_case(folder, label_values=(0, 1.5))


def test_iter_brats_cases_error_policy(tmp_path, rng):
    root = make_root(tmp_path, rng, [[1], [2, 3], [], []])
    write_case(root / "case_001", {}, label=np.full((10, 12, 8), 7))  # unknown label
    (root / "case_002" / "case_002_flair.nii.gz").unlink()
    kwargs = dict(verbose=0, slice_range=None, pad_to=(16, 16))
    with pytest.raises(ValueError, match=r"case_001_seg.nii.gz .*unknown labels \[7\]"):
        list(iter_brats_cases(root, **kwargs))
    with pytest.raises(ValueError, match="unknown labels"):
        collect_slices(root, errors="raise", **kwargs)

    with pytest.warns(UserWarning) as record:
        names = [case.name for case in iter_brats_cases(root, errors="skip", **kwargs)]
    assert names == ["case_000", "case_003"]
    messages = [str(w.message) for w in record]
    assert len(messages) == 2
    assert re.search(r"Skipped case folder .*case_001: ValueError: .*unknown labels \[7\]",
                     messages[0])
    assert re.search(r"Skipped case folder .*case_002: FileNotFoundError: Modality 'flair'",
                     messages[1])
    with pytest.warns(UserWarning, match="Skipped case folder"):
        healthy = collect_slices(root, errors="skip", **kwargs)
    assert sorted(set(healthy.case_names)) == ["case_000", "case_003"]
    # label_values passes through to every case.
    with pytest.warns(UserWarning, match="case_002"):
        allowed = list(iter_brats_cases(root, errors="skip", label_values=(0, 1, 7), **kwargs))
    assert [case.name for case in allowed] == ["case_000", "case_001", "case_003"]

    with pytest.raises(ValueError, match=r"errors must be one of \('raise', 'skip'\)"):
        iter_brats_cases(root, errors="ignore")
    with pytest.raises(ValueError, match="errors must be one of"):
        collect_slices(root, errors="warn")
    with pytest.raises(TypeError, match=r"\['errors'\] only apply when cases is a data set"):
        collect_slices(allowed, errors="skip")
    # Bad options fail at the call, not as one skipped case after another.
    with pytest.raises(ValueError, match="pad_to must be a pair of positive"):
        iter_brats_cases(root, errors="skip", pad_to=(0, 4))
    with pytest.raises(ValueError, match="label_values must contain 0"):
        iter_brats_cases(root, errors="skip", label_values=(1,))


def test_hidden_appledouble_files_are_ignored(tmp_path, rng):
    root = tmp_path / "root"
    folder = write_case(root / "case", random_volumes(rng), prefix="case")
    # macOS leaves "._<name>" resource forks beside files copied to other file systems.
    appledouble = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "
    (folder / "._case_t1.nii.gz").write_bytes(appledouble)
    (folder / "._case_seg.nii.gz").write_bytes(appledouble)
    case = load_brats_case(folder, slice_range=None)
    assert case.meta.source_paths["t1"].name == "case_t1.nii.gz"
    assert not case.has_label
    # A folder that holds only hidden NIfTI names is not a case folder.
    (root / "ghost").mkdir()
    (root / "ghost" / "._ghost_t1.nii.gz").write_bytes(appledouble)
    (root / "._case").write_bytes(appledouble)
    names = [c.name for c in iter_brats_cases(root, verbose=0, slice_range=None)]
    assert names == ["case"]
    with pytest.raises(FileNotFoundError, match="No case folders"):
        iter_brats_cases(root / "ghost")


# --------------------------------------------------------------------------------------
# A real file shipped with nibabel: anatomical.nii (33x41x25, LAS, big-endian int16)
# --------------------------------------------------------------------------------------


def test_nibabel_anatomical_round_trip(tmp_path):
    source = NIBABEL_DATA / "anatomical.nii"
    folder = tmp_path / "anat"
    folder.mkdir()
    for key in BRATS_MODALITIES:
        shutil.copy(source, folder / f"anat_{key}.nii")
    case = load_brats_case(folder, slice_range=(2, -3), pad_to=(48, 48))
    assert isinstance(case, BratsCase)
    assert case.meta.axcodes == ("L", "A", "S") and case.meta.shape == (33, 41, 25)
    assert case.images.shape == (20, 4, 48, 48)
    original = nib.load(source).get_fdata()
    canonical = minmax(nib.as_closest_canonical(nib.load(source)).get_fdata())
    assert_allclose(case.images[:, 1, 7:40, 3:44], np.moveaxis(canonical[:, :, 2:-3], -1, 0),
                    atol=1e-6)
    out = nib.load(save_volume_map(case.images[:, 2], case.meta, tmp_path / "anat_map.nii"))
    assert_array_equal(out.affine, nib.load(source).affine)
    assert_allclose(out.get_fdata()[:, :, 2:-3], minmax(original)[:, :, 2:-3], atol=1e-6)
    assert (out.get_fdata()[:, :, [0, 1, -3, -2, -1]] == 0).all()


# --------------------------------------------------------------------------------------
# OCT
# --------------------------------------------------------------------------------------


@pytest.fixture
def oct_folder(tmp_path, rng):
    from PIL import Image

    folder = tmp_path / "oct"
    folder.mkdir()
    # Non-square like OCT2017 (e.g. 768x496), in several formats and modes.
    layered = np.repeat(np.linspace(20, 230, 50)[:, None], 70, axis=1)
    noisy = np.clip(layered + rng.normal(0, 10, layered.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(folder / "NORMAL-1001-1.jpeg", quality=95)
    Image.fromarray(noisy[::-1]).save(folder / "CNV-2002-3.png")
    Image.fromarray(np.stack([noisy] * 3, -1)).save(folder / "DME-3-1.JPG")
    Image.fromarray(noisy.astype(np.uint16) * 200).save(folder / "drusen_4.png")  # 16 bit
    Image.fromarray(noisy).save(folder / "scan.png")
    (folder / "readme.txt").write_text("not an image")
    return folder


def test_load_oct_folder(oct_folder):
    oct = load_oct_images(oct_folder, size=(64, 96), verbose=0)
    assert oct.images.shape == (5, 1, 64, 96) and oct.images.dtype == np.float32
    assert oct.names == sorted(oct.names) and "readme.txt" not in oct.names
    kinds = dict(zip(oct.names, oct.kinds))
    assert kinds == {
        "CNV-2002-3.png": "CNV",
        "DME-3-1.JPG": "DME",
        "NORMAL-1001-1.jpeg": "NORMAL",
        "drusen_4.png": "DRUSEN",
        "scan.png": None,
    }
    for image in oct.images[:, 0]:
        assert image.min() == 0.0 and image.max() == 1.0
    # Bright rows at the bottom of the layered image, after the resize too.
    normal = oct.images[oct.names.index("NORMAL-1001-1.jpeg"), 0]
    assert normal[-5:].mean() > normal[:5].mean() + 0.5


def test_load_oct_matches_pillow_bicubic(oct_folder):
    from PIL import Image

    path = oct_folder / "CNV-2002-3.png"
    oct = load_oct_images([path], size=(40, 30), verbose=0)
    reference = np.asarray(
        Image.open(path).convert("L").resize((30, 40), Image.Resampling.BICUBIC), float
    )
    assert_allclose(oct.images[0, 0], minmax(reference), atol=1e-6)


def test_load_oct_paths_and_single_file(oct_folder):
    paths = [oct_folder / "scan.png", oct_folder / "CNV-2002-3.png"]
    oct = load_oct_images([str(p) for p in paths], verbose=0)
    assert oct.names == ["scan.png", "CNV-2002-3.png"] and oct.images.shape == (2, 1, 256, 256)
    single = load_oct_images(oct_folder / "scan.png", size=None, verbose=0)
    assert single.images.shape == (1, 1, 50, 70) and single.kinds == [None]
    same = load_oct_images(oct_folder, pattern="*.png", size=None, verbose=0)
    assert same.images.shape == (3, 1, 50, 70)


def test_load_oct_recursive(oct_folder):
    nested = oct_folder.parent / "nested"
    (nested / "NORMAL").mkdir(parents=True)
    shutil.copy(oct_folder / "scan.png", nested / "NORMAL" / "NORMAL-9-9.png")
    with pytest.raises(FileNotFoundError, match="recursive=True"):
        load_oct_images(nested, verbose=0)
    assert load_oct_images(nested, recursive=True, verbose=0).kinds == ["NORMAL"]


def test_load_oct_errors(oct_folder, tmp_path):
    (tmp_path / "none").mkdir()
    with pytest.raises(FileNotFoundError, match=r"No image in .*none matches"):
        load_oct_images(tmp_path / "none")
    with pytest.raises(FileNotFoundError, match="Image file .*ghost.png does not exist"):
        load_oct_images([oct_folder / "ghost.png"])
    with pytest.raises(FileNotFoundError, match="No image paths"):
        load_oct_images([])
    bad = oct_folder / "CNV-0-0.png"
    bad.write_bytes(b"\x89PNG but not really")
    with pytest.raises(ValueError, match="Could not read .*CNV-0-0.png as an image"):
        load_oct_images(oct_folder, verbose=0)
    bad.unlink()
    with pytest.raises(ValueError, match="pass size=\\(h, w\\) to resize"):
        from PIL import Image

        Image.fromarray(np.zeros((10, 10), np.uint8)).save(oct_folder / "small.png")
        load_oct_images(oct_folder, size=None, verbose=0)
    with pytest.raises(ValueError, match="size must be a pair of positive"):
        load_oct_images(oct_folder, size=(0, 5))


def test_load_oct_constant_image(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((8, 12), 9, np.uint8)).save(tmp_path / "flat.png")
    oct = load_oct_images(tmp_path, size=(4, 4), verbose=0)
    assert (oct.images == 0).all()


def test_load_oct_without_pillow(monkeypatch, oct_folder):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"pip install skberdiff\[oct\]"):
        load_oct_images(oct_folder)

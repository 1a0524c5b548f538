"""Tests for skberdiff.postprocessing."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.testing import assert_allclose, assert_array_equal
from scipy import ndimage

from skberdiff.postprocessing import (
    calibrate_pixel_threshold,
    foreground_region,
    median_filter_maps,
    minmax_normalize,
    paper_postprocess,
    percentile_clip,
    reference_anomaly_scores,
    reference_postprocess,
    remove_small_components,
    squared_error_map,
)

finite_maps = arrays(
    np.float64,
    st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6)),
    elements=st.floats(-1e3, 1e3),
)
binary_masks = arrays(
    np.bool_, st.tuples(st.integers(1, 3), st.integers(1, 8), st.integers(1, 8))
)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _component_sizes(mask, connectivity=8):
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    labels, _ = ndimage.label(mask, structure=structure)
    return np.bincount(labels.ravel())[1:]


def test_squared_error_map_sums_channels():
    x = np.zeros((2, 3, 2, 2))
    x_hat = np.zeros((2, 3, 2, 2))
    x_hat[1, :, 1, 0] = [1.0, 2.0, 3.0]
    maps = squared_error_map(x, x_hat)
    assert maps.shape == (2, 2, 2)
    assert maps.dtype == np.float32
    expected = np.zeros((2, 2, 2))
    expected[1, 1, 0] = 14.0
    assert_array_equal(maps, expected)


def test_squared_error_map_per_channel_median_filters_before_the_sum(rng):
    x = rng.random((2, 3, 9, 9))
    x_hat = rng.random((2, 3, 9, 9))
    expected = np.stack(
        [
            sum(ndimage.median_filter((x[i, c] - x_hat[i, c]) ** 2, size=3) for c in range(3))
            for i in range(2)
        ]
    )
    assert_allclose(squared_error_map(x, x_hat, per_channel_median=3), expected, rtol=1e-5)
    # Filtering the sum is the paper's order and gives a different map.
    assert not np.allclose(median_filter_maps(squared_error_map(x, x_hat), 3), expected)


def test_squared_error_map_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(1, 1, 4, 4\).*\(1, 1, 4, 5\)"):
        squared_error_map(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 5)))


def test_median_filter_removes_specks_and_keeps_blocks():
    maps = np.zeros((1, 11, 11))
    maps[0, 1, 1] = 5.0
    maps[0, 4:9, 4:9] = 2.0
    filtered = median_filter_maps(maps, size=5)
    assert filtered[0, 1, 1] == 0.0
    assert filtered[0, 6, 6] == 2.0


def test_median_filter_does_not_mix_images():
    maps = np.stack([np.ones((6, 6)), np.zeros((6, 6)), np.ones((6, 6))])
    filtered = median_filter_maps(maps, size=5)
    assert_array_equal(filtered[1], 0.0)
    assert_array_equal(filtered[[0, 2]], 1.0)


@settings(max_examples=25, deadline=None)
@given(maps=finite_maps, size=st.integers(1, 5))
def test_median_filter_of_a_batch_equals_filtering_each_image(maps, size):
    batch = median_filter_maps(maps, size)
    for i, image in enumerate(maps.astype(np.float32)):
        assert_array_equal(batch[i], ndimage.median_filter(image, size=size))


@pytest.mark.parametrize("bad", [np.zeros((4, 4)), np.zeros((2, 3, 4, 4))])
def test_maps_must_be_three_dimensional(bad):
    with pytest.raises(ValueError, match=r"maps must be maps of shape \(n, h, w\)"):
        median_filter_maps(bad)


@pytest.mark.parametrize(
    "rows, cols, min_size, inclusive, kept",
    [
        (3, 3, 10, False, False),  # 9 pixels < 10: removed (paper)
        (2, 5, 10, False, True),  # 10 pixels: kept
        (3, 5, 15, True, False),  # 15 pixels <= 15: removed (reference code)
        (4, 4, 15, True, True),  # 16 pixels: kept
        (3, 5, 15, False, True),  # 15 pixels, not inclusive: kept
    ],
)
def test_remove_small_components_size_boundary(rows, cols, min_size, inclusive, kept):
    masks = np.zeros((1, 10, 10), dtype=bool)
    masks[0, 1 : 1 + rows, 2 : 2 + cols] = True
    out = remove_small_components(masks, min_size, inclusive=inclusive)
    assert out.dtype == np.bool_
    assert_array_equal(out, masks if kept else np.zeros_like(masks))


@pytest.mark.parametrize("connectivity, kept", [(8, True), (4, False)])
def test_remove_small_components_connectivity_on_a_diagonal_pair(connectivity, kept):
    masks = np.zeros((1, 8, 8), dtype=bool)
    masks[0, 0:2, 0:3] = True  # 6 pixels
    masks[0, 2:4, 3:6] = True  # 6 pixels touching the first only at a corner
    out = remove_small_components(masks, 10, connectivity=connectivity)
    assert out.sum() == (12 if kept else 0)


def test_remove_small_components_keeps_images_apart():
    masks = np.zeros((2, 6, 6), dtype=bool)
    masks[:, 2:4, 1:4] = True  # the same 6 pixels in both images: 12 if joined
    assert not remove_small_components(masks, 10).any()
    assert_array_equal(remove_small_components(masks, 6), masks)


@pytest.mark.parametrize(
    "clear_corner, fill_holes, kept",
    [(False, False, False), (False, True, True), (True, True, False)],
)
def test_remove_small_components_fill_holes(clear_corner, fill_holes, kept):
    masks = np.zeros((1, 8, 8), dtype=bool)
    masks[0, 2:6, 2:6] = True
    masks[0, 3:5, 3:5] = False  # a 12-pixel ring around a 4-pixel hole
    if clear_corner:
        # The hole now touches the outside diagonally, which scikit-image's filling (an
        # 8-connected background) does not count as enclosed.
        masks[0, 2, 2] = False
    # Filled sizes: 16 for the ring; with the corner cleared 11 here, 15 with a
    # 4-connected background. Both ring sizes fail by area alone (12 and 11 <= 13).
    out = remove_small_components(masks, 13, inclusive=True, fill_holes=fill_holes)
    assert out.any() == kept


def test_remove_small_components_leaves_input_and_empty_masks_alone():
    masks = np.zeros((2, 5, 5), dtype=bool)
    assert_array_equal(remove_small_components(masks, 10), masks)
    masks[0, 0, 0] = True
    remove_small_components(masks, 10)
    assert masks[0, 0, 0]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"min_size": 10, "connectivity": 6}, ValueError, "connectivity must be one of"),
        ({"min_size": -1}, ValueError, "min_size must be >= 0"),
        ({"min_size": 2.5}, TypeError, "min_size must be an integer"),
    ],
)
def test_remove_small_components_validates_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        remove_small_components(np.zeros((1, 4, 4)), **kwargs)


@settings(max_examples=30, deadline=None)
@given(
    masks=binary_masks,
    min_size=st.integers(0, 6),
    connectivity=st.sampled_from([4, 8]),
)
def test_remove_small_components_properties(masks, min_size, connectivity):
    out = remove_small_components(masks, min_size, connectivity=connectivity)
    assert not (out & ~masks).any()  # only removes pixels
    assert_array_equal(remove_small_components(out, min_size, connectivity=connectivity), out)
    for image in out:
        assert (_component_sizes(image, connectivity) >= min_size).all()
    for image_in, image_out in zip(masks, out):
        # Every large enough component survives whole.
        assert image_out.sum() == sum(
            s for s in _component_sizes(image_in, connectivity) if s >= min_size
        )


def test_percentile_clip_bounds_each_image(rng):
    maps = rng.normal(size=(3, 20, 20)) * np.array([1.0, 10.0, 100.0])[:, None, None]
    clipped = percentile_clip(maps, 5, 95)
    assert clipped.dtype == np.float32
    for image, out in zip(maps, clipped):
        low, high = np.percentile(image.astype(np.float32), [5, 95])
        assert_allclose([out.min(), out.max()], [low, high], rtol=1e-5)
        inside = (image >= low) & (image <= high)
        assert_allclose(out[inside], image[inside], rtol=1e-6)


@pytest.mark.parametrize(
    "low, high, match",
    [(60, 40, "low must not exceed high"), (-1, 99, r"low must be in \[0.0, 100.0\]")],
)
def test_percentile_clip_validates_percentiles(low, high, match):
    with pytest.raises(ValueError, match=match):
        percentile_clip(np.zeros((1, 3, 3)), low, high)


def test_minmax_of_a_constant_image_is_zero_not_nan():
    maps = np.stack([np.full((4, 4), 7.0), np.arange(16.0).reshape(4, 4)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = minmax_normalize(maps)
    assert_array_equal(out[0], 0.0)
    assert_allclose(out[1], np.arange(16.0).reshape(4, 4) / 15.0, rtol=1e-6)


@settings(max_examples=30, deadline=None)
@given(maps=finite_maps)
def test_minmax_and_clip_stay_in_range(maps):
    out = minmax_normalize(maps)
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0
    clipped = percentile_clip(maps, 1, 99)
    assert (clipped.min(axis=(1, 2)) >= maps.astype(np.float32).min(axis=(1, 2))).all()
    assert (clipped.max(axis=(1, 2)) <= maps.astype(np.float32).max(axis=(1, 2))).all()


def test_paper_postprocess_composes_filter_threshold_and_removal(rng):
    maps = rng.random((3, 16, 16)) * 0.6
    maps[0, 3:9, 3:9] += 1.0
    masks, scores = paper_postprocess(maps, 0.7, return_scores=True)
    expected_scores = median_filter_maps(maps, 5)
    assert_array_equal(scores, expected_scores)
    assert_array_equal(masks, remove_small_components(expected_scores > 0.7, 10))
    assert masks[0].sum() >= 10 and not masks[1:].any()
    assert_array_equal(paper_postprocess(maps, 0.7), masks)


def test_paper_postprocess_without_median_filter():
    maps = np.zeros((1, 8, 8))
    maps[0, 0, 0] = 1.0
    maps[0, 4:8, 4:8] = 1.0  # 16 pixels
    masks = paper_postprocess(maps, 0.5, median_size=None)
    assert masks.sum() == 16 and not masks[0, 0, 0]


def test_paper_postprocess_threshold_is_strict():
    maps = np.full((1, 6, 6), 0.5)
    assert not paper_postprocess(maps, 0.5).any()
    assert paper_postprocess(maps, 0.49).all()


def test_reference_anomaly_scores_follows_the_reference_recipe(rng):
    x = rng.random((2, 4, 12, 12))
    x_hat = rng.random((2, 4, 12, 12))
    scores = reference_anomaly_scores(x, x_hat)
    for i in range(2):
        error = sum(
            ndimage.median_filter(((x_hat[i, c] - x[i, c]) ** 2).astype(np.float32), size=5)
            for c in range(4)
        )
        low, high = np.percentile(error, [1, 99])
        clipped = np.clip(error, low, high)
        expected = (clipped - clipped.min()) / (clipped.max() - clipped.min())
        assert_allclose(scores[i], expected, atol=1e-5)


def test_reference_anomaly_scores_options_can_be_switched_off():
    x = np.zeros((1, 1, 5, 5))
    x_hat = np.zeros((1, 1, 5, 5))
    x_hat[0, 0, 0, 0] = 1.0
    x_hat[0, 0, 4, 4] = 3.0
    scores = reference_anomaly_scores(x, x_hat, median_size=None, clip=None)
    assert_allclose(scores[0, [0, 4], [0, 4]], [1 / 9, 1.0], rtol=1e-6)
    # With the defaults, both isolated pixels are filtered away: the map is constant.
    assert_array_equal(reference_anomaly_scores(x, x_hat), 0.0)


def test_reference_postprocess_removes_components_up_to_15_pixels():
    scores = np.zeros((1, 12, 12))
    scores[0, 0:3, 0:5] = 0.9  # 15 pixels: removed
    scores[0, 6:10, 6:10] = 0.6  # 16 pixels: kept
    scores[0, 0:4, 8:12] = 0.5  # not above the threshold
    masks = reference_postprocess(scores)
    expected = np.zeros((1, 12, 12), dtype=bool)
    expected[0, 6:10, 6:10] = True
    assert_array_equal(masks, expected)


def test_foreground_region_is_any_nonzero_channel():
    x = np.zeros((2, 3, 4, 4))
    x[0, 2, 1, 1] = 0.2
    x[1, 0, 3, 3] = -0.1
    x[1, 1, 0, 0] = 1e-3
    region = foreground_region(x)
    assert region.shape == (2, 4, 4)
    assert region.sum() == 3 and region[0, 1, 1] and region[1, 3, 3] and region[1, 0, 0]
    assert foreground_region(x, eps=0.01).sum() == 2


def test_calibrated_threshold_over_the_brain_differs_from_the_global_one():
    # 70 % background with zero error, 30 % brain with errors 1..30.
    maps = np.zeros((1, 10, 10))
    maps[0, :3] = np.arange(1.0, 31.0).reshape(3, 10)
    x = np.zeros((1, 2, 10, 10))
    x[0, 1, :3] = 0.5
    brain = foreground_region(x)
    global_threshold = calibrate_pixel_threshold(maps, 0.9)
    brain_threshold = calibrate_pixel_threshold(maps, 0.9, region=brain)
    # Linear interpolation of the sorted values: position 0.9 * 99 = 89.1 lands between
    # errors 20 and 21 when the 70 zeros count, position 0.9 * 29 = 26.1 between 27 and 28
    # when only the brain does.
    assert global_threshold == pytest.approx(20.1)
    assert brain_threshold == pytest.approx(27.1)


@pytest.mark.parametrize(
    "region, match",
    [
        (np.zeros((1, 4, 4), dtype=bool), "region selects no pixel"),
        (np.ones((1, 4, 5), dtype=bool), r"\(1, 4, 4\).*\(1, 4, 5\)"),
    ],
)
def test_calibrate_pixel_threshold_rejects_bad_regions(region, match):
    with pytest.raises(ValueError, match=match):
        calibrate_pixel_threshold(np.ones((1, 4, 4)), region=region)


def test_calibrate_pixel_threshold_validates_quantile():
    with pytest.raises(ValueError, match=r"quantile must be in \[0.0, 1.0\]"):
        calibrate_pixel_threshold(np.ones((1, 4, 4)), quantile=99)

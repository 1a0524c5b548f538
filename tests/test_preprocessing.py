"""Tests of skberdiff.preprocessing: IntensityScaler, pad_or_crop and PadCrop."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline

from skberdiff.io import _crop_pad_plan
from skberdiff.preprocessing import IntensityScaler, PadCrop, pad_or_crop

# --------------------------------------------------------------------------------------
# IntensityScaler
# --------------------------------------------------------------------------------------


def test_intensity_scaler_min_max_per_channel():
    X = np.zeros((1, 2, 2, 2))
    X[0, 0] = [[1.0, 2.0], [3.0, 5.0]]
    X[0, 1] = [[100.0, 300.0], [200.0, 500.0]]
    out = IntensityScaler().fit_transform(X)
    assert out.dtype == np.float32 and out.shape == X.shape
    assert_allclose(out[0, 0], [[0.0, 0.25], [0.5, 1.0]])
    assert_allclose(out[0, 1], [[0.0, 0.5], [0.25, 1.0]])


def test_intensity_scaler_percentiles_clip(rng):
    X = rng.normal(size=(2, 3, 16, 16)) + 10.0
    out = IntensityScaler(percentiles=(5.0, 95.0)).fit_transform(X)
    assert out.min() == 0.0 and out.max() == 1.0
    for i in range(2):
        for c in range(3):
            lo, hi = np.percentile(X[i, c], [5.0, 95.0])
            expected = np.clip((X[i, c] - lo) / (hi - lo), 0, 1)
            assert_allclose(out[i, c], expected, atol=1e-6)
            # About 5 % of the pixels are clipped at each end.
            assert 0.03 < (out[i, c] == 0).mean() < 0.08
            assert 0.03 < (out[i, c] == 1).mean() < 0.08


def test_intensity_scaler_ignores_zeros():
    X = np.array([[[[0.0, 0.0, 0.0], [10.0, 20.0, 30.0]]]])
    out = IntensityScaler().fit_transform(X)
    assert_allclose(out[0, 0], [[0.0, 0.0, 0.0], [0.0, 0.5, 1.0]])
    # Without ignore_zeros the zero background sets the low end.
    out = IntensityScaler(ignore_zeros=False).fit_transform(X)
    assert_allclose(out[0, 0], [[0.0, 0.0, 0.0], [1 / 3, 2 / 3, 1.0]])


def test_intensity_scaler_zero_background_does_not_move_low_percentile(rng):
    brain = rng.uniform(50, 150, size=(8, 8))
    X = np.zeros((1, 1, 32, 32))
    X[0, 0, 12:20, 12:20] = brain
    out = IntensityScaler(percentiles=(0.0, 100.0)).fit_transform(X)[0, 0]
    assert_allclose(out[12:20, 12:20], (brain - brain.min()) / np.ptp(brain), atol=1e-6)
    assert (out[:12] == 0).all()


def test_intensity_scaler_per_channel_false_uses_one_range():
    X = np.zeros((1, 2, 1, 2))
    X[0, 0, 0] = [1.0, 2.0]
    X[0, 1, 0] = [3.0, 5.0]
    out = IntensityScaler(per_channel=False).fit_transform(X)
    assert_allclose(out[0, :, 0], [[0.0, 0.25], [0.5, 1.0]])


@pytest.mark.parametrize("ignore_zeros", [True, False])
@pytest.mark.parametrize("value", [0.0, 7.0])
def test_intensity_scaler_constant_channel_maps_to_zero(ignore_zeros, value):
    X = np.ones((2, 2, 4, 4))
    X[:, 1] = value
    X[:, 0, 0, 0] = 3.0
    out = IntensityScaler(ignore_zeros=ignore_zeros).fit_transform(X)
    assert np.isfinite(out).all()
    assert (out[:, 1] == 0).all()
    assert out[:, 0].max() == 1.0


def test_intensity_scaler_is_sample_wise(rng):
    X_train = rng.random((4, 2, 8, 8))
    X_new = rng.random((5, 2, 8, 8)) * rng.uniform(1, 10, size=(5, 1, 1, 1))
    scaler = IntensityScaler(percentiles=(1.0, 99.0)).fit(X_train)
    batch = scaler.transform(X_new)
    for i in range(len(X_new)):
        assert_array_equal(scaler.transform(X_new[i:i + 1])[0], batch[i])
    # Nothing is learnt: the fit data does not change the result.
    assert_array_equal(IntensityScaler(percentiles=(1.0, 99.0)).fit(X_new).transform(X_new),
                       batch)


def test_intensity_scaler_fit_sets_n_features_and_returns_self():
    scaler = IntensityScaler()
    assert scaler.fit(np.ones((2, 3, 4, 5))) is scaler
    assert scaler.n_features_in_ == 60


def test_intensity_scaler_does_not_modify_input(rng):
    X = rng.random((2, 1, 4, 4)).astype(np.float32)
    X_copy = X.copy()
    IntensityScaler().fit_transform(X)
    assert_array_equal(X, X_copy)


def test_intensity_scaler_clone_and_get_params():
    scaler = IntensityScaler(percentiles=(0.5, 99.5), per_channel=False)
    params = clone(scaler).get_params()
    assert params == {"percentiles": (0.5, 99.5), "per_channel": False, "ignore_zeros": True}
    scaler.set_params(ignore_zeros=False)
    assert scaler.ignore_zeros is False


def test_intensity_scaler_accepts_numpy_params():
    X = np.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    out = IntensityScaler(percentiles=np.array([0.0, 100.0]), per_channel=np.True_,
                          ignore_zeros=np.False_).fit_transform(X)
    assert_allclose(out[0, 0], [[0.0, 1 / 3], [2 / 3, 1.0]])


@pytest.mark.parametrize(
    "params, error, match",
    [({"percentiles": (50.0, 50.0)}, ValueError, r"percentiles must satisfy 0 <= low < high"),
     ({"percentiles": (90.0, 10.0)}, ValueError, r"percentiles must be \(low, high\) with low"),
     ({"percentiles": (-1.0, 50.0)}, ValueError, r"percentiles\[0\] must be in \[0\.0, 100\.0\]"),
     ({"percentiles": (0.0, 101.0)}, ValueError, r"percentiles\[1\] must be in \[0\.0, 100\.0\]"),
     ({"percentiles": (0.0, np.nan)}, ValueError, r"percentiles\[1\] must be finite"),
     ({"percentiles": 99.0}, ValueError, r"percentiles must be a pair \(low, high\)"),
     ({"percentiles": (1.0, 2.0, 3.0)}, ValueError, r"percentiles must be a pair"),
     ({"percentiles": ("low", 99.0)}, TypeError, r"percentiles\[0\] must be a real number"),
     ({"per_channel": "yes"}, ValueError, r"per_channel must be one of \(True, False\)"),
     ({"ignore_zeros": None}, ValueError, r"ignore_zeros must be one of \(True, False\)")],
)
def test_intensity_scaler_bad_parameters(params, error, match):
    X = np.ones((1, 1, 2, 2))
    with pytest.raises(error, match=match):
        IntensityScaler(**params).fit(X)
    with pytest.raises(error, match=match):
        IntensityScaler(**params).transform(X)


def test_intensity_scaler_bad_images():
    with pytest.raises(ValueError, match=r"X must have shape \(n, c, h, w\)"):
        IntensityScaler().fit(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="X contains NaN"):
        IntensityScaler().fit_transform(np.full((1, 1, 2, 2), np.nan))


# --------------------------------------------------------------------------------------
# pad_or_crop
# --------------------------------------------------------------------------------------


def test_pad_or_crop_pads_centred_with_odd_extra_after():
    X = np.ones((1, 1, 2, 3))
    out = pad_or_crop(X, (5, 6))
    assert out.shape == (1, 1, 5, 6)
    # Rows: 3 extra -> 1 before, 2 after; columns: 3 extra -> 1 before, 2 after.
    expected = np.zeros((5, 6))
    expected[1:3, 1:4] = 1
    assert_array_equal(out[0, 0], expected)


def test_pad_or_crop_crops_centred():
    X = np.arange(7 * 6).reshape(7, 6)
    out = pad_or_crop(X, (4, 3))
    # Rows: 3 too many -> start at 1; columns: 3 too many -> start at 1.
    assert_array_equal(out, X[1:5, 1:4])


def test_pad_or_crop_mixed_crop_and_pad_keeps_leading_axes_and_dtype():
    X = np.ones((2, 3, 10, 4), dtype=bool)
    out = pad_or_crop(X, (6, 8))
    assert out.shape == (2, 3, 6, 8) and out.dtype == bool
    assert out[..., :, 2:6].all() and not out[..., :, :2].any() and not out[..., :, 6:].any()


def test_pad_or_crop_same_size_is_unchanged():
    X = np.arange(12.0).reshape(1, 3, 4)
    assert_array_equal(pad_or_crop(X, (3, 4)), X)


def test_pad_or_crop_returns_a_new_array_when_resizing():
    X = np.arange(16.0).reshape(1, 1, 4, 4)
    out = pad_or_crop(X, (2, 4))
    out[...] = -1
    assert X.min() == 0.0


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), th=st.integers(1, 9), tw=st.integers(1, 9))
def test_pad_or_crop_matches_the_io_plan(h, w, th, tw):
    """The window and zeros recorded by skberdiff.io are exactly what pad_or_crop does."""
    X = np.arange(2 * h * w, dtype=np.float64).reshape(2, h, w) + 1
    cropping, padding = _crop_pad_plan((h, w), (th, tw))
    (r0, r1), (c0, c1) = cropping
    expected = np.pad(X[:, r0:r1, c0:c1], [(0, 0), *padding])
    assert_array_equal(pad_or_crop(X, (th, tw)), expected)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), th=st.integers(1, 12),
       tw=st.integers(1, 12))
def test_pad_then_crop_back_is_identity(h, w, th, tw):
    X = np.arange(h * w, dtype=np.float64).reshape(1, h, w) + 1
    if th >= h and tw >= w:
        assert_array_equal(pad_or_crop(pad_or_crop(X, (th, tw)), (h, w)), X)
    else:  # whatever was cropped comes back as zeros, the rest in place
        back = pad_or_crop(pad_or_crop(X, (th, tw)), (h, w))
        assert back.shape == X.shape
        kept = back != 0
        assert_array_equal(back[kept], X[kept])


@pytest.mark.parametrize(
    "size, error, match",
    [((0, 4), ValueError, r"size\[0\] must be >= 1, got 0"),
     ((4, -2), ValueError, r"size\[1\] must be >= 1, got -2"),
     ((4,), ValueError, r"size must be \(h, w\) of positive ints"),
     (4, ValueError, r"size must be \(h, w\) of positive ints"),
     ("44", ValueError, r"size must be \(h, w\) of positive ints"),
     ((4.0, 4), TypeError, r"size\[0\] must be an"),
     ((4, True), TypeError, r"size\[1\] must be an integer, got bool")],
)
def test_pad_or_crop_bad_sizes(size, error, match):
    with pytest.raises(error, match=match):
        pad_or_crop(np.ones((1, 1, 2, 2)), size)


def test_pad_or_crop_needs_two_dimensions():
    with pytest.raises(ValueError, match=r"X must have at least two \(spatial\) dimensions"):
        pad_or_crop(np.ones(4), (2, 2))


# --------------------------------------------------------------------------------------
# PadCrop
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("in_hw, out_hw", [((30, 30), (40, 40)), ((31, 27), (40, 40)),
                                           ((33, 35), (40, 41))])
def test_padcrop_pad_then_inverse_is_identity(rng, in_hw, out_hw):
    X = rng.random((3, 2) + in_hw).astype(np.float32)
    pc = PadCrop(size=out_hw).fit(X)
    padded = pc.transform(X)
    assert padded.shape == (3, 2) + out_hw and padded.dtype == np.float32
    assert pc.input_shape_ == in_hw and pc.output_shape_ == out_hw
    assert_array_equal(pc.inverse_transform(padded), X)
    # Maps (n, H, W) come back too.
    assert_array_equal(pc.inverse_transform(padded[:, 0]), X[:, 0])
    # Only zeros were added.
    assert padded.sum() == pytest.approx(X.sum(), rel=1e-6)


def test_padcrop_crop_then_inverse_zero_pads_borders(rng):
    X = rng.random((2, 1, 11, 12)) + 1
    pc = PadCrop(size=(7, 8)).fit(X)
    back = pc.inverse_transform(pc.transform(X))
    assert back.shape == X.shape
    # 4 rows cropped: 2 above, 2 below; 4 columns: 2 each side.
    assert_allclose(back[..., 2:9, 2:10], X[..., 2:9, 2:10], rtol=1e-6)
    assert (back[..., :2, :] == 0).all() and (back[..., 9:, :] == 0).all()


@pytest.mark.parametrize(
    "in_hw, multiple_of, expected",
    [((240, 236), 8, (240, 240)), ((17, 16), 8, (24, 16)), ((5, 7), 1, (5, 7)),
     ((9, 10), 3, (9, 12))],
)
def test_padcrop_multiple_of(in_hw, multiple_of, expected):
    X = np.ones((1, 1) + in_hw)
    pc = PadCrop(size=None, multiple_of=multiple_of).fit(X)
    assert pc.output_shape_ == expected
    out = pc.transform(X)
    assert out.shape == (1, 1) + expected
    assert_array_equal(pc.inverse_transform(out), X)


@pytest.mark.parametrize(
    "params, error, match",
    [({"size": (0, 8)}, ValueError, r"size\[0\] must be >= 1"),
     ({"size": (8, 8, 8)}, ValueError, r"size must be \(h, w\) of positive ints"),
     ({"size": 8}, ValueError, r"size must be \(h, w\) of positive ints"),
     ({"size": (8.5, 8)}, TypeError, r"size\[0\] must be an"),
     ({"size": None, "multiple_of": 0}, ValueError, r"multiple_of must be >= 1, got 0"),
     ({"size": None, "multiple_of": 2.5}, TypeError, r"multiple_of must be an"),
     ({"size": None, "multiple_of": True}, TypeError, r"multiple_of must be an integer")],
)
def test_padcrop_bad_parameters(params, error, match):
    with pytest.raises(error, match=match):
        PadCrop(**params).fit(np.ones((1, 1, 4, 4)))


def test_padcrop_checks_sizes_after_fit():
    pc = PadCrop(size=(8, 8)).fit(np.ones((1, 1, 6, 6)))
    with pytest.raises(ValueError, match=r"X has images of size \(5, 6\) but the model "
                                         r"expects \(6, 6\)"):
        pc.transform(np.ones((1, 1, 5, 6)))
    with pytest.raises(ValueError, match=r"X has images of size \(6, 6\) but inverse_transform "
                                         r"expects the transformed size \(8, 8\)"):
        pc.inverse_transform(np.ones((1, 6, 6)))


def test_padcrop_needs_fit():
    with pytest.raises(NotFittedError):
        PadCrop().transform(np.ones((1, 1, 4, 4)))


def test_padcrop_clone_and_get_params():
    pc = PadCrop(size=None, multiple_of=16)
    assert clone(pc).get_params() == {"size": None, "multiple_of": 16}
    fitted = PadCrop(size=(8, 8)).fit(np.ones((1, 1, 4, 4)))
    assert not hasattr(clone(fitted), "output_shape_")


# --------------------------------------------------------------------------------------
# Pipeline
# --------------------------------------------------------------------------------------


def test_pipeline_scale_then_pad(rng):
    X = rng.random((4, 2, 30, 34)) * 100
    pipe = Pipeline([("scale", IntensityScaler()), ("pad", PadCrop(size=(40, 40)))])
    out = pipe.fit_transform(X)
    assert out.shape == (4, 2, 40, 40) and out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0
    assert_array_equal(pipe.transform(X), out)
    assert pipe.named_steps["pad"].input_shape_ == (30, 34)
    back = pipe.named_steps["pad"].inverse_transform(out)
    assert_array_equal(back, IntensityScaler().fit_transform(X))


def test_pipeline_set_params_and_clone(rng):
    X = rng.random((2, 1, 10, 10))
    pipe = Pipeline([("scale", IntensityScaler()), ("pad", PadCrop(size=(16, 16)))])
    pipe.set_params(pad__size=None, pad__multiple_of=4, scale__percentiles=(1.0, 99.0))
    assert clone(pipe).fit_transform(X).shape == (2, 1, 12, 12)

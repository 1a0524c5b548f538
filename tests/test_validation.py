"""Tests of the shared input and hyper-parameter checks in skberdiff._validation."""

import numpy as np
import pytest
import scipy.sparse
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_array_equal

from skberdiff._validation import (
    check_choice,
    check_images,
    check_int,
    check_maps,
    check_masks,
    check_noise_level,
    check_probability,
    check_range_pair,
    check_real,
    check_same_shape,
)

# --------------------------------------------------------------------------------------
# check_images
# --------------------------------------------------------------------------------------


def test_check_images_returns_contiguous_float32(rng):
    X = np.asfortranarray(rng.random((3, 2, 4, 5)))
    out = check_images(X)
    assert out.shape == (3, 2, 4, 5)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, X, rtol=1e-6)


def test_check_images_dtype_argument():
    assert check_images(np.zeros((1, 1, 2, 2)), dtype=np.float64).dtype == np.float64


def test_check_images_2d_without_image_shape_is_refused():
    with pytest.raises(ValueError, match=r"X is 2-D with shape \(2, 64\).*image_shape"):
        check_images(np.zeros((2, 64)))


def test_check_images_2d_with_image_shape_is_unflattened():
    X = np.arange(2 * 12, dtype=np.float64).reshape(2, 12)
    out = check_images(X, image_shape=(3, 2, 2))
    assert out.shape == (2, 3, 2, 2)
    assert_array_equal(out.reshape(2, 12), X)


def test_check_images_2d_feature_count_mismatch():
    with pytest.raises(ValueError, match=r"X has 10 features per row but image_shape=\(1, 3, 3\)"
                                         r" needs 9"):
        check_images(np.zeros((2, 10)), image_shape=(1, 3, 3))


def test_check_images_bad_image_shape():
    with pytest.raises(ValueError, match=r"image_shape must be \(c, h, w\)"):
        check_images(np.zeros((2, 9)), image_shape=(3, 3))


@pytest.mark.parametrize("shape", [(4,), (2, 3, 4), (1, 1, 1, 2, 2)])
def test_check_images_wrong_number_of_dimensions(shape):
    with pytest.raises(ValueError, match=rf"X must have shape \(n, c, h, w\).*{len(shape)} "
                                         r"dimension\(s\).*X\[None\]"):
        check_images(np.zeros(shape))


def test_check_images_channel_mismatch():
    with pytest.raises(ValueError, match=r"X has 3 channel\(s\) but the model expects 4"):
        check_images(np.zeros((1, 3, 4, 4)), n_channels=4)


def test_check_images_size_mismatch():
    with pytest.raises(ValueError, match=r"X has images of size \(4, 4\) but the model "
                                         r"expects \(8, 8\).*PadCrop"):
        check_images(np.zeros((1, 1, 4, 4)), spatial_shape=(8, 8))


def test_check_images_divisor():
    check_images(np.zeros((1, 1, 16, 8)), divisor=8)
    with pytest.raises(ValueError, match=r"size \(12, 8\), which is not divisible by .* 8"):
        check_images(np.zeros((1, 1, 12, 8)), divisor=8)


def test_check_images_name_appears_in_messages():
    with pytest.raises(ValueError, match=r"^X_test has 1 channel\(s\)"):
        check_images(np.zeros((1, 1, 4, 4)), n_channels=2, name="X_test")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_images_non_finite_values(bad):
    X = np.zeros((1, 1, 2, 2))
    X[0, 0, 1, 1] = bad
    with pytest.raises(ValueError, match="X contains NaN or infinite values"):
        check_images(X)
    out = check_images(X, allow_nan=True)
    assert not np.isfinite(out[0, 0, 1, 1])


@pytest.mark.parametrize(
    "shape, match",
    [((0, 1, 4, 4), r"X is empty: it holds 0 images"),
     ((2, 0, 4, 4), r"X has an empty channel or spatial axis"),
     ((2, 1, 0, 4), r"X has an empty channel or spatial axis"),
     ((0, 16), r"X is empty")],
)
def test_check_images_empty(shape, match):
    kwargs = {"image_shape": (1, 4, 4)} if len(shape) == 2 else {}
    with pytest.raises(ValueError, match=match):
        check_images(np.zeros(shape), **kwargs)


def test_check_images_object_dtype_with_numbers_is_accepted():
    X = np.zeros((1, 1, 2, 2), dtype=object)
    X[0, 0, 0, 0] = 3
    out = check_images(X)
    assert out.dtype == np.float32 and out[0, 0, 0, 0] == 3


def test_check_images_object_dtype_with_non_numbers_is_refused():
    X = np.full((1, 1, 2, 2), "a", dtype=object)
    with pytest.raises(TypeError, match="X must contain numbers, got an array of dtype object"):
        check_images(X)


def test_check_images_string_dtype_is_refused():
    with pytest.raises(TypeError, match="X must contain numbers, got an array of dtype <U1"):
        check_images(np.full((1, 1, 2, 2), "a"))


def test_check_images_complex_dtype_is_refused():
    with pytest.raises(ValueError, match="Complex data not supported: X must be real-valued"):
        check_images(np.zeros((1, 1, 2, 2), dtype=np.complex64))


def test_check_images_bool_input_becomes_float():
    X = np.zeros((1, 1, 2, 2), dtype=bool)
    X[0, 0, 0, 1] = True
    out = check_images(X)
    assert out.dtype == np.float32
    assert_array_equal(out[0, 0], [[0.0, 1.0], [0.0, 0.0]])


def test_check_images_readonly_memmap_gives_writable_copy(tmp_path, rng):
    X = rng.random((2, 1, 3, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    readonly = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert not readonly.flags.writeable
    out = check_images(readonly)
    assert out.flags.writeable
    assert not np.shares_memory(out, readonly)
    assert_array_equal(out, X)


def test_check_images_torch_tensor():
    t = torch.arange(8, dtype=torch.float64).reshape(2, 1, 2, 2).requires_grad_()
    out = check_images(t)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert_array_equal(out, t.detach().numpy())


def test_check_images_sparse_matrix_is_refused():
    with pytest.raises(TypeError, match="X is a sparse matrix; images must be a dense array"):
        check_images(scipy.sparse.csr_matrix(np.eye(4)), image_shape=(1, 2, 2))


def test_check_images_ragged_nested_list():
    ragged = [[[[0.0, 1.0], [2.0]]]]
    with pytest.raises((TypeError, ValueError), match="X could not be converted"):
        check_images(ragged)


def test_check_images_nested_list_of_numbers():
    assert check_images([[[[0, 1], [2, 3]]]]).shape == (1, 1, 2, 2)


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=4, max_dims=4, max_side=4),
                  elements=st.floats(-1e6, 1e6, width=32)))
def test_check_images_round_trips_finite_4d_arrays(X):
    out = check_images(X)
    assert out.shape == X.shape and out.dtype == np.float32
    assert_array_equal(out, X)


# --------------------------------------------------------------------------------------
# check_masks, check_maps, check_same_shape
# --------------------------------------------------------------------------------------


def test_check_masks_binarises_and_squeezes_the_channel():
    y = np.zeros((2, 1, 3, 3))
    y[1, 0, 1, 1] = 2.0
    out = check_masks(y)
    assert out.dtype == bool and out.shape == (2, 3, 3)
    assert out.sum() == 1 and out[1, 1, 1]


def test_check_masks_wrong_shape():
    with pytest.raises(ValueError, match=r"y must be pixel masks of shape \(n, h, w\), got "
                                         r"shape \(2, 3\)"):
        check_masks(np.zeros((2, 3)))


def test_check_masks_count_and_size_mismatch():
    with pytest.raises(ValueError, match="y has 2 masks but X has 3 images"):
        check_masks(np.zeros((2, 3, 3)), n_samples=3)
    with pytest.raises(ValueError, match=r"y has masks of size \(3, 3\) but the images are "
                                         r"\(4, 4\)"):
        check_masks(np.zeros((2, 3, 3)), spatial_shape=(4, 4))


def test_check_masks_bad_values_and_types():
    with pytest.raises(ValueError, match="y_true contains NaN or infinite values"):
        check_masks(np.full((1, 2, 2), np.nan), name="y_true")
    with pytest.raises(TypeError, match="y must contain numbers or booleans"):
        check_masks(np.full((1, 2, 2), "a"))


def test_check_maps_accepts_3d_and_single_channel_4d():
    assert check_maps(np.zeros((2, 4, 4))).shape == (2, 4, 4)
    out = check_maps(np.zeros((2, 1, 4, 4), dtype=np.float64))
    assert out.shape == (2, 4, 4) and out.dtype == np.float32


def test_check_maps_lists_and_tensors():
    assert check_maps([[[0.0, 1.0]]]).shape == (1, 1, 2)
    assert check_maps(torch.zeros(2, 3, 3)).shape == (2, 3, 3)


def test_check_maps_wrong_shape_and_values():
    with pytest.raises(ValueError, match=r"anomaly_maps must be maps of shape \(n, h, w\), got "
                                         r"shape \(2, 3, 4, 4\)"):
        check_maps(np.zeros((2, 3, 4, 4)), name="anomaly_maps")
    with pytest.raises(ValueError, match="maps contains NaN"):
        check_maps(np.full((1, 2, 2), np.nan))


def test_check_same_shape():
    check_same_shape(np.zeros((2, 3)), np.ones((2, 3)), "x", "x_hat")
    with pytest.raises(ValueError, match=r"x has shape \(2, 3\) but x_hat has shape \(3, 2\)"):
        check_same_shape(np.zeros((2, 3)), np.ones((3, 2)), "x", "x_hat")


# --------------------------------------------------------------------------------------
# Scalar checks
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [3, np.int8(3), np.int64(3), np.uint16(3)])
def test_check_int_accepts_python_and_numpy_ints(value):
    out = check_int(value, "n_steps", low=1)
    assert out == 3 and type(out) is int


@pytest.mark.parametrize("value", [True, False, np.True_])
def test_check_int_refuses_bool(value):
    with pytest.raises(TypeError, match="n_steps must be an integer, got bool"):
        check_int(value, "n_steps")


@pytest.mark.parametrize("value", [2.0, "3", None, np.float64(1.0)])
def test_check_int_refuses_non_integers(value):
    with pytest.raises(TypeError, match="n_steps must be an"):
        check_int(value, "n_steps")


def test_check_int_type_error_wording_matches_the_bool_case():
    with pytest.raises(TypeError, match=r"min_size must be an integer, got float: 2\.5"):
        check_int(2.5, "min_size")


@pytest.mark.parametrize(
    "kwargs, value, match",
    [({"low": 1}, 0, r"n must be >= 1, got 0\."),
     ({"high": 5}, 6, r"n must be <= 5, got 6\."),
     ({"low": 1, "high": 5}, 9, r"n must be in \[1, 5\], got 9\."),
     ({"low": 1, "high": 5}, -1, r"n must be in \[1, 5\], got -1\.")],
)
def test_check_int_bounds_messages(kwargs, value, match):
    with pytest.raises(ValueError, match=match):
        check_int(value, "n", **kwargs)


def test_check_int_bounds_are_inclusive_and_none_allowed():
    assert check_int(1, "n", low=1, high=1) == 1
    assert check_int(None, "n", allow_none=True) is None
    with pytest.raises(TypeError, match="n must be an"):
        check_int(None, "n")


@settings(max_examples=100, deadline=None)
@given(value=st.integers(-10**6, 10**6), low=st.integers(-100, 100), span=st.integers(0, 100))
def test_check_int_accepts_exactly_the_integers_in_bounds(value, low, span):
    high = low + span
    if low <= value <= high:
        assert check_int(value, "n", low=low, high=high) == value
        assert check_int(np.int64(value), "n", low=low, high=high) == value
    else:
        with pytest.raises(ValueError, match=r"^n must be in \["):
            check_int(value, "n", low=low, high=high)


@pytest.mark.parametrize("value", [0.5, 1, np.float32(0.5), np.int64(1)])
def test_check_real_accepts_reals(value):
    out = check_real(value, "lr")
    assert type(out) is float and out == float(value)


@pytest.mark.parametrize("value", [True, "0.5", None, 1j, [0.5]])
def test_check_real_refuses_non_reals(value):
    with pytest.raises(TypeError, match="lr must be a real number"):
        check_real(value, "lr")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, np.float32("nan")])
def test_check_real_refuses_non_finite(value):
    with pytest.raises(ValueError, match="lr must be finite"):
        check_real(value, "lr")


def test_check_real_closed_bounds():
    assert check_real(0, "p", low=0, high=1) == 0.0
    assert check_real(1, "p", low=0, high=1) == 1.0
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got 1\.5"):
        check_real(1.5, "p", low=0, high=1)


def test_check_real_open_bounds():
    with pytest.raises(ValueError, match=r"lr must be in \(0, inf\), got 0\.0"):
        check_real(0.0, "lr", low=0, include_low=False)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\), got 1\.0"):
        check_real(1.0, "p", low=0, high=1, include_high=False)
    with pytest.raises(ValueError, match=r"x must be in \(-inf, 2\], got 3\.0"):
        check_real(3.0, "x", high=2)
    assert check_real(0.5, "p", low=0, high=1, include_low=False, include_high=False) == 0.5


def test_check_real_allow_none():
    assert check_real(None, "x", allow_none=True) is None


def test_check_choice():
    assert check_choice("paper", "posterior", ("paper", "marginal")) == "paper"
    assert check_choice(None, "mode", (None, "a")) is None
    assert check_choice(8, "connectivity", (4, 8)) == 8
    with pytest.raises(ValueError, match=r"posterior must be one of \('paper', 'marginal'\), "
                                         r"got 'exact'\."):
        check_choice("exact", "posterior", ("paper", "marginal"))


@pytest.mark.parametrize("value", [["paper"], {"paper": 1}, np.array(["paper"])])
def test_check_choice_refuses_containers(value):
    with pytest.raises(ValueError, match="posterior must be one of"):
        check_choice(value, "posterior", ("paper", "marginal"))


def test_check_probability():
    assert check_probability(0.5, "mask_threshold") == 0.5
    assert check_probability(0, "q") == 0.0 and check_probability(1, "q") == 1.0
    with pytest.raises(ValueError, match=r"q must be in \[0\.0, 1\.0\], got 1\.2"):
        check_probability(1.2, "q")
    with pytest.raises(ValueError, match="q must be finite"):
        check_probability(np.nan, "q")
    assert check_probability(5.0, "w", high=np.inf) == 5.0
    assert check_probability(-5.0, "w", low=-np.inf) == -5.0
    with pytest.raises(ValueError, match="w must be finite"):
        check_probability(np.inf, "w", high=np.inf)


def test_check_noise_level():
    assert check_noise_level(200, 1000) == 200
    assert check_noise_level(np.int32(1), 10) == 1
    assert check_noise_level(10, 10) == 10
    with pytest.raises(ValueError, match=r"noise_level must be in \[1, 10\].*got 11"):
        check_noise_level(11, 10)
    with pytest.raises(ValueError, match=r"L must be in \[1, 10\].*got 0"):
        check_noise_level(0, 10, name="L")


@pytest.mark.parametrize("value", [True, 2.0, "5"])
def test_check_noise_level_refuses_non_integers(value):
    with pytest.raises(TypeError, match="noise_level must be an integer number of diffusion"):
        check_noise_level(value, 10)


def test_check_range_pair():
    assert check_range_pair((0.05, 0.6), "contrast", 0.0, 1.0) == (0.05, 0.6)
    assert check_range_pair(np.array([0, 0]), "contrast", 0.0, 1.0) == (0.0, 0.0)


@pytest.mark.parametrize(
    "value, error, match",
    [(0.5, ValueError, r"contrast must be a pair \(low, high\), got 0\.5"),
     ((0.1, 0.2, 0.3), ValueError, r"contrast must be a pair \(low, high\)"),
     ((0.6, 0.2), ValueError, r"contrast must be \(low, high\) with low <= high"),
     ((-0.1, 0.2), ValueError, r"contrast\[0\] must be in \[0\.0, 1\.0\], got -0\.1"),
     ((0.1, 2.0), ValueError, r"contrast\[1\] must be in \[0\.0, 1\.0\], got 2\.0"),
     ((0.1, np.nan), ValueError, r"contrast\[1\] must be finite"),
     (("a", 0.2), TypeError, r"contrast\[0\] must be a real number")],
)
def test_check_range_pair_errors(value, error, match):
    with pytest.raises(error, match=match):
        check_range_pair(value, "contrast", 0.0, 1.0)


def test_check_real_huge_int_raises_value_error():
    with pytest.raises(ValueError, match="x must be finite"):
        check_real(10**400, "x")


def test_check_images_bfloat16_tensor():
    out = check_images(torch.ones(1, 1, 2, 2, dtype=torch.bfloat16))
    assert out.dtype == np.float32 and out.sum() == 4

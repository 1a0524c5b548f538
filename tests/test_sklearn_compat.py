"""scikit-learn's estimator checks, plus image versions of the checks that need tabular data."""

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from skberdiff import IntensityScaler, MaskedBernoulliDiffusionDetector, PadCrop
from skberdiff.datasets import make_toy_images

FAST = dict(preset="tiny", n_draws=1, autoencoder_iterations=2, diffusion_iterations=2,
            diffusion_steps=10, noise_level=5, device="cpu", random_state=0)

TABULAR = ("feeds 2-D tabular data with a few features; the detector needs images "
           "(n, c, h, w) or image_shape, and a few features cannot be an image")
EXPECTED_FAILURES = {
    name: TABULAR for name in (
        "check_fit_score_takes_y", "check_estimators_overwrite_params",
        "check_dont_overwrite_parameters", "check_estimators_fit_returns_self",
        "check_readonly_memmap_input", "check_n_features_in_after_fitting",
        "check_positive_only_tag_during_fit", "check_estimators_dtypes",
        "check_dtype_object", "check_estimators_empty_data_messages",
        "check_pipeline_consistency", "check_estimators_nan_inf", "check_estimators_pickle",
        "check_f_contiguous_array_estimator", "check_outliers_fit_predict",
        "check_outliers_train", "check_classifier_data_not_an_array",
        "check_methods_sample_order_invariance", "check_methods_subset_invariance",
        "check_fit2d_1sample", "check_fit2d_1feature", "check_dict_unchanged",
        "check_fit_idempotent", "check_fit_check_is_fitted", "check_n_features_in",
        "check_fit2d_predict1d",
    )
}
TRANSFORMER_FAILURES = {
    name: "feeds 2-D tabular data; the transformer works on image batches (n, c, h, w)"
    for name in (
        "check_transformer_data_not_an_array", "check_transformer_general",
        "check_transformer_preserve_dtypes", "check_transformers_unfitted_stateless",
    )
}


def _expected(estimator):
    if isinstance(estimator, MaskedBernoulliDiffusionDetector):
        return EXPECTED_FAILURES
    return {**EXPECTED_FAILURES, **TRANSFORMER_FAILURES}


@parametrize_with_checks(
    [MaskedBernoulliDiffusionDetector(**FAST), IntensityScaler(), PadCrop(size=(8, 8))],
    expected_failed_checks=_expected,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def fitted():
    X, _ = make_toy_images(12, image_size=32, random_state=0)
    return MaskedBernoulliDiffusionDetector(**FAST).fit(X)


@pytest.fixture(scope="module")
def images():
    return make_toy_images(6, image_size=32, anomaly_fraction=0.5, random_state=3)[0]


METHODS = ["predict", "score_samples", "decision_function", "anomaly_map", "predict_mask",
           "reconstruct"]


@pytest.mark.parametrize("method", METHODS)
def test_methods_are_sample_order_invariant_on_images(fitted, images, method):
    order = np.random.default_rng(0).permutation(len(images))
    full = getattr(fitted, method)(images)
    permuted = getattr(fitted, method)(images[order])
    np.testing.assert_allclose(permuted, full[order], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_methods_are_subset_invariant_on_images(fitted, images, method):
    full = getattr(fitted, method)(images)
    for i in range(len(images)):
        np.testing.assert_allclose(getattr(fitted, method)(images[i:i + 1])[0], full[i],
                                   rtol=1e-3, atol=1e-5)


def test_readonly_memmap_and_other_dtypes_are_accepted(fitted, images, tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, images)
    readonly = np.load(path, mmap_mode="r")
    expected = fitted.anomaly_map(images)
    np.testing.assert_allclose(fitted.anomaly_map(readonly), expected, rtol=1e-5)
    np.testing.assert_allclose(fitted.anomaly_map(images.astype(np.float64)), expected,
                               rtol=1e-5)
    np.testing.assert_allclose(fitted.anomaly_map(np.asfortranarray(images)), expected,
                               rtol=1e-5)


def test_fit_is_idempotent_and_does_not_change_input(images):
    from skberdiff import clear_network_cache

    X, _ = make_toy_images(12, image_size=32, random_state=0)
    X_copy = X.copy()
    det = MaskedBernoulliDiffusionDetector(**FAST)
    first = det.fit(X).anomaly_map(images)
    clear_network_cache()
    second = det.fit(X).anomaly_map(images)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(X, X_copy)


def _snapshot(estimator):
    import joblib

    state = dict(vars(estimator))
    plain = {k: joblib.hash(v) for k, v in state.items()
             if not hasattr(v, "state_dict")}  # modules are compared by identity below
    return state, plain


def _check_dict_unchanged_on_images(det, images):
    """scikit-learn's check_dict_unchanged, on images: no inference method edits __dict__."""
    import joblib
    import torch

    before, plain = _snapshot(det)
    weights = {k: [p.detach().clone() for p in v.parameters()] for k, v in before.items()
               if hasattr(v, "state_dict")}
    for method in METHODS + ["restore_latent", "detect", "encode"]:
        getattr(det, method)(images)
    assert vars(det).keys() == before.keys()
    for key, value in vars(det).items():
        assert value is before[key], key
        if key in plain:
            assert joblib.hash(value) == plain[key], key
    for key, params in weights.items():
        assert all(torch.equal(a, b) for a, b in zip(params, before[key].parameters()))


def test_check_dict_unchanged_on_images(fitted, images):
    _check_dict_unchanged_on_images(fitted, images)


def test_check_dict_unchanged_on_images_with_compile(fitted, images, monkeypatch):
    import pickle

    import torch

    compiled = []

    def fake_compile(module, **kwargs):  # the runtime cache, without minutes of Inductor
        compiled.append(kwargs)
        return lambda *args: module(*args)

    monkeypatch.setattr(torch, "compile", fake_compile)
    det = pickle.loads(pickle.dumps(fitted)).set_params(compile=True)
    _check_dict_unchanged_on_images(det, images)
    assert len(compiled) == 1  # compiled once, kept outside the estimator


@pytest.mark.slow
def test_check_dict_unchanged_on_images_with_real_compile(fitted, images):
    import pickle

    det = pickle.loads(pickle.dumps(fitted)).set_params(compile=True)
    _check_dict_unchanged_on_images(det, images)

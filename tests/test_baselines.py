import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from skberdiff.baselines import IntensityThresholdBaseline
from skberdiff.metrics import pixel_auprc


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _lesion_slices(rng, n=6, size=16, channel=2, delta=0.25, n_channels=4):
    """Brain-like slices (background exactly 0) with square lesions in one channel."""
    X = rng.uniform(0.3, 0.6, size=(n, n_channels, size, size)).astype(np.float32)
    X[:, :, :2] = 0.0  # background rows
    y = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        r, c = rng.integers(3, size - 5, size=2)
        y[i, r : r + 4, c : c + 4] = True
    X[:, channel][y] = np.clip(X[:, channel][y] + delta, 0, 1)
    return X, y


@pytest.mark.parametrize(
    "channel, delta, polarity", [(2, 0.35, "bright"), (0, -0.35, "dark"), (3, 0.35, "bright")]
)
def test_picks_the_channel_and_polarity_that_carry_the_lesion(rng, channel, delta, polarity):
    X, y = _lesion_slices(rng, channel=channel, delta=delta)
    baseline = IntensityThresholdBaseline().fit(X, y)
    assert baseline.channel_ == channel
    assert baseline.polarity_ == polarity
    assert baseline.best_auprc_ > 0.8
    assert baseline.auprc_.shape == (4, 2)
    assert np.nanargmax(baseline.auprc_) == np.ravel_multi_index(
        (channel, ("bright", "dark").index(polarity)), (4, 2)
    )


def test_restricted_candidates(rng):
    X, y = _lesion_slices(rng, channel=2, delta=0.3)
    baseline = IntensityThresholdBaseline(channels=[0, 1], polarity="dark").fit(X, y)
    assert baseline.channel_ in (0, 1) and baseline.polarity_ == "dark"
    assert np.isnan(baseline.auprc_[2:]).all() and np.isnan(baseline.auprc_[:, 0]).all()
    assert IntensityThresholdBaseline(channels=3).fit(X, y).channel_ == 3


def test_anomaly_map_shape_background_and_ordering(rng):
    X, y = _lesion_slices(rng, channel=1, delta=0.3)
    baseline = IntensityThresholdBaseline().fit(X, y)
    maps = baseline.anomaly_map(X)
    assert maps.shape == (6, 16, 16) and maps.dtype == np.float32
    background = X.max(axis=1) <= 0
    assert_array_equal(maps[background], np.float32(baseline.floor_))
    assert (maps >= baseline.floor_).all()
    assert maps[y].mean() > maps[~y & ~background].mean()
    assert_allclose(pixel_auprc(y, maps, average="pooled"), baseline.best_auprc_, rtol=1e-6)


def test_standardize_uses_healthy_statistics(rng):
    X, y = _lesion_slices(rng, channel=2, delta=0.3)
    healthy = rng.uniform(0.4, 0.6, size=(5, 4, 16, 16)).astype(np.float32)
    baseline = IntensityThresholdBaseline().fit(X, y, X_healthy=healthy)
    assert_allclose(baseline.mean_, healthy.mean(axis=(0, 2, 3)), rtol=1e-4)
    assert_allclose(baseline.scale_, healthy.std(axis=(0, 2, 3)), rtol=1e-3)
    raw = IntensityThresholdBaseline(standardize=False).fit(X, y)
    assert_array_equal(raw.mean_, 0) and assert_array_equal(raw.scale_, 1)
    # z-scoring is monotone per channel: the ranking and the AUPRC do not change.
    assert raw.channel_ == baseline.channel_
    assert_allclose(raw.auprc_, baseline.auprc_, rtol=1e-6)


def test_predict_mask_uses_the_best_dice_threshold(rng):
    X, y = _lesion_slices(rng, channel=2, delta=0.6)
    X[:, 2][~y] = np.minimum(X[:, 2][~y], 0.65)
    X[:, 2][y] = 0.95
    X[:, :, :2] = 0.0
    baseline = IntensityThresholdBaseline().fit(X, y)
    assert baseline.val_dice_ == pytest.approx(1.0)
    assert_array_equal(baseline.predict_mask(X), y)


def test_threshold_comes_from_the_shared_dice_selector(rng, monkeypatch):
    from skberdiff import baselines

    calls = []
    original = baselines.select_dice_threshold

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(baselines, "select_dice_threshold", spy)
    X, y = _lesion_slices(rng, channel=1, delta=0.5)
    baseline = IntensityThresholdBaseline().fit(X, y)
    assert len(calls) == 1 and calls[0]["min_size"] == 0 and calls[0]["average"] == "pooled"
    assert baseline.val_dice_ == pytest.approx(
        original(baseline.anomaly_map(X), y, (X > 0).any(axis=1), min_size=0,
                 average="pooled", quantiles=np.linspace(0.5, 0.9995, 128))[1])


def test_sklearn_conventions(rng):
    baseline = IntensityThresholdBaseline(channels=[1, 2], polarity="bright")
    assert clone(baseline).get_params() == baseline.get_params()
    with pytest.raises(NotFittedError):
        baseline.anomaly_map(np.zeros((1, 4, 8, 8)))
    X, y = _lesion_slices(rng)
    assert baseline.fit(X, y) is baseline
    with pytest.raises(ValueError, match="channel"):
        baseline.anomaly_map(X[:, :3])


@pytest.mark.parametrize(
    "params, y_kind, match",
    [
        ({"polarity": "up"}, "lesion", "polarity"),
        ({"channels": [7]}, "lesion", "channels"),
        ({}, "empty", "no anomalous pixel"),
        ({}, "wrong_shape", "masks"),
    ],
)
def test_invalid_input(rng, params, y_kind, match):
    X, y = _lesion_slices(rng)
    if y_kind == "empty":
        y = np.zeros_like(y)
    elif y_kind == "wrong_shape":
        y = y[:, :8]
    with pytest.raises(ValueError, match=match):
        IntensityThresholdBaseline(**params).fit(X, y)


def test_on_the_mni_benchmark():
    pytest.importorskip("nilearn")
    from skberdiff.datasets import make_mni_benchmark

    data = make_mni_benchmark(size="tiny", difficulty="easy", random_state=0)
    baseline = IntensityThresholdBaseline().fit(data.X_val, data.y_val, X_healthy=data.X_train)
    maps = baseline.anomaly_map(data.X_test)
    assert maps.shape == data.y_test.shape
    # Easy lesions are bright in FLAIR/T2-like (or enhancing in T1ce).
    assert baseline.polarity_ == "bright"

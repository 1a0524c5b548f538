"""Tests of the network cache, the seed streams and staged training (skberdiff._cache)."""

import threading

import numpy as np
import pytest
import torch

from skberdiff import MaskedBernoulliDiffusionDetector, _cache, clear_network_cache
from skberdiff.datasets import make_toy_images

TINY = dict(preset="tiny", n_draws=1, autoencoder_iterations=6, diffusion_iterations=6,
            autoencoder_batch_size=4, diffusion_batch_size=4, diffusion_steps=50,
            noise_level=5, device="cpu", batch_size=8)


@pytest.fixture(scope="module")
def X():
    return make_toy_images(20, image_size=32, random_state=0)[0]


def test_seed_streams_are_independent_and_reproducible():
    a, b = _cache.seed_streams(0), _cache.seed_streams(0)
    assert a == b and set(a) == set(_cache.SEED_PURPOSES)
    assert len(set(a.values())) == len(a)  # one stream per purpose
    assert _cache.seed_streams(1) != a
    # Large seeds are distinct seeds (no 31-bit aliasing).
    assert _cache.seed_streams(2 ** 31) != _cache.seed_streams(0)
    assert _cache.seed_streams(2 ** 40 + 5) != _cache.seed_streams(5)


@pytest.mark.parametrize("value, expected", [(None, None), (0, 0), (2 ** 31, 2 ** 31),
                                             (np.int64(7), 7)])
def test_resolve_seed(value, expected):
    assert _cache.resolve_seed(value) == expected


def test_resolve_seed_from_generators_and_bad_values():
    assert isinstance(_cache.resolve_seed(np.random.default_rng(0)), int)
    assert _cache.resolve_seed(np.random.RandomState(0)) == _cache.resolve_seed(
        np.random.RandomState(0))
    with pytest.raises(ValueError, match="non-negative"):
        _cache.resolve_seed(-1)
    with pytest.raises(TypeError, match="random_state must be"):
        _cache.resolve_seed("0")
    with pytest.raises(TypeError, match="got bool"):
        _cache.resolve_seed(True)


def test_split_calibration():
    train, cal = _cache.split_calibration(20, 0.1, seed=3)
    assert len(cal) == 2 and len(train) == 18 and not set(train) & set(cal)
    train, cal = _cache.split_calibration(3, 0.1, seed=3)  # too few: no calibration split
    assert len(cal) == 0 and len(train) == 3


def test_random_state_none_reuses_the_cached_networks(X, count_trainings):
    """No-retrain with the defaults: any seed will do, so clones with None share networks."""
    from sklearn.model_selection import GridSearchCV, PredefinedSplit

    from skberdiff import image_auroc_scorer

    X_les, _ = make_toy_images(6, image_size=32, anomaly_fraction=1.0, random_state=2)
    X_all = np.concatenate([X, X_les])
    labels = np.r_[np.zeros(len(X)), np.ones(len(X_les))].astype(int)
    # Healthy images 0-13 only train; the test fold holds 6 healthy and 6 lesion images.
    split = PredefinedSplit(np.r_[-np.ones(14), np.zeros(len(X) - 14 + len(X_les))])
    grid = {"noise_level": [3, 5], "mask_threshold": [0.0, 0.5, 0.7, 0.9]}
    det = MaskedBernoulliDiffusionDetector(**TINY)  # random_state=None
    search = GridSearchCV(det, grid, cv=split, scoring=image_auroc_scorer, refit=False,
                          error_score="raise").fit(X_all, labels)
    assert len(search.cv_results_["params"]) == 8
    assert len(count_trainings) == 1
    a = MaskedBernoulliDiffusionDetector(**TINY).fit(X[:14])
    b = MaskedBernoulliDiffusionDetector(**TINY).fit(X[:14])
    assert a.seed_ == b.seed_ and len(count_trainings) == 1
    clear_network_cache()
    c = MaskedBernoulliDiffusionDetector(**TINY).fit(X[:14])
    assert len(count_trainings) == 2 and c.seed_ != a.seed_  # a fresh seed when retrained


def test_concurrent_fits_train_once_and_match_a_serial_fit(X, count_trainings):
    params = {**TINY, "random_state": 0}
    serial = MaskedBernoulliDiffusionDetector(**params).fit(X)
    clear_network_cache()
    count_trainings.clear()
    results = [None] * 4

    def fit(i):
        results[i] = MaskedBernoulliDiffusionDetector(**params).fit(X)

    threads = [threading.Thread(target=fit, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(count_trainings) == 1  # the others waited for the first and reused it
    for det in results:
        for p, q in zip(det.diffusion_model_.parameters(), serial.diffusion_model_.parameters()):
            assert torch.equal(p, q)
        assert det.offset_ == serial.offset_


def test_rebuilt_networks_share_no_storage_with_the_cache(X):
    clear_network_cache()
    a = MaskedBernoulliDiffusionDetector(**TINY, random_state=0).fit(X)
    b = MaskedBernoulliDiffusionDetector(**TINY, random_state=0).fit(X)
    with torch.no_grad():
        next(a.diffusion_model_.parameters()).add_(1.0)
    assert not torch.equal(next(a.diffusion_model_.parameters()),
                           next(b.diffusion_model_.parameters()))

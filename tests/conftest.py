"""Shared fixtures: small seeded data and CPU-only torch settings for fast, repeatable tests."""

import numpy as np
import pytest
import torch

# One thread: the tensors in tests are small, and oversubscribed OpenMP threads on a busy
# 2-core machine make them up to 30x slower.
torch.set_num_threads(1)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def count_trainings(monkeypatch):
    """Count the autoencoder trainings (one per network training) with a clean cache."""
    from skberdiff import clear_network_cache, training

    calls = []
    original = training.train_autoencoder

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "train_autoencoder", counting)
    clear_network_cache()
    yield calls
    clear_network_cache()

"""Tests of skberdiff.diagnostics: is a fitted detector in the paper's regime?"""

import numpy as np
import pytest

from skberdiff import MaskedBernoulliDiffusionDetector
from skberdiff.datasets import make_toy_images
from skberdiff.diagnostics import (
    autoencoder_psnr,
    autoencoder_reconstruction,
    heldout_diffusion_loss,
    lesion_retention,
    regime_report,
)

TINY = dict(preset="tiny", n_draws=1, autoencoder_iterations=40, diffusion_iterations=20,
            autoencoder_batch_size=8, diffusion_batch_size=8, autoencoder_learning_rate=3e-3,
            diffusion_steps=100, noise_level=10, device="cpu", random_state=0)


@pytest.fixture(scope="module")
def fitted():
    X, _ = make_toy_images(30, image_size=32, random_state=0)
    return MaskedBernoulliDiffusionDetector(**TINY).fit(X), X


@pytest.fixture(scope="module")
def lesions():
    return make_toy_images(6, image_size=32, anomaly_fraction=1.0, random_state=1)


class _Copy:
    """A stand-in detector whose 'autoencoder' returns a fixed reconstruction."""

    def __init__(self, x_hat):
        self.x_hat = x_hat

    def encode(self, X, deterministic=False):
        return np.zeros(len(X))

    def decode(self, Z):
        return self.x_hat


def test_autoencoder_reconstruction_decodes_the_samplers_code(fitted):
    det, X = fitted
    x_hat = autoencoder_reconstruction(det, X[:3])
    assert np.array_equal(x_hat, det.decode(det.encode(X[:3])))
    assert x_hat.shape == X[:3].shape and 0 <= x_hat.min() and x_hat.max() <= 1
    hard = autoencoder_reconstruction(det, X[:3], deterministic=True)
    assert np.array_equal(hard, det.decode(det.encode(X[:3], deterministic=True)))


def test_lesion_retention_is_one_for_a_copy_and_zero_for_a_removal(lesions):
    X, y = lesions
    free = np.where(y[:, None], 0.2, X).astype(np.float32)  # lesions replaced
    assert lesion_retention(_Copy(X), X, y, X_lesion_free=free) == pytest.approx(1.0)
    assert lesion_retention(_Copy(free), X, y, X_lesion_free=free) == pytest.approx(0.0)
    half = (X + free) / 2
    assert lesion_retention(_Copy(half), X, y, X_lesion_free=free) == pytest.approx(0.5)
    # Without the lesion-free images: the lesion's contrast against its surroundings.
    assert lesion_retention(_Copy(X), X, y) == pytest.approx(1.0)
    assert lesion_retention(_Copy(half), X, y) == pytest.approx(0.5, abs=0.15)


def test_lesion_retention_rejects_empty_masks(lesions):
    X, y = lesions
    with pytest.raises(ValueError, match="no lesion pixel"):
        lesion_retention(_Copy(X), X, np.zeros_like(y))
    with pytest.raises(ValueError, match="X_lesion_free has shape"):
        lesion_retention(_Copy(X), X, y, X_lesion_free=X[:2])


def test_lesion_retention_of_a_real_detector_is_a_finite_share(fitted, lesions):
    det, _ = fitted
    value = lesion_retention(det, *lesions)
    assert np.isfinite(value) and -1.0 < value < 2.0


def test_autoencoder_psnr_matches_the_metric(fitted):
    from skberdiff.metrics import psnr

    det, X = fitted
    assert autoencoder_psnr(det, X[:4]) == pytest.approx(
        psnr(X[:4], autoencoder_reconstruction(det, X[:4])))


def test_regime_report_keys(fitted, lesions):
    det, X = fitted
    report = regime_report(det, X[:4], *lesions)
    assert set(report) == {"lesion_retention", "autoencoder_psnr", "heldout_diffusion_loss"}
    assert report["heldout_diffusion_loss"]["model_bits"] > 0


def _fit(data, diffusion_iterations, **params):
    return MaskedBernoulliDiffusionDetector(
        preset=params.pop("preset", "tiny"), diffusion_iterations=diffusion_iterations,
        diffusion_learning_rate=1e-3, autoencoder_learning_rate=1e-3, device="cpu",
        random_state=0, calibration_fraction=0, **params).fit(data)


@pytest.mark.filterwarnings("ignore:contamination")
def test_training_lowers_the_heldout_diffusion_loss():
    """Cheap quality check that can fail: a trained UNet must beat an untrained one on
    held-out healthy latents (an untrained UNet predicts flip probability 0.5: 1 bit)."""
    from skberdiff.datasets import make_mni_benchmark

    data = make_mni_benchmark(size="tiny", n_train=40, random_state=0)
    X_train, X_heldout = data.X_train[:32], data.X_train[32:]
    common = dict(autoencoder_iterations=60, autoencoder_batch_size=8, diffusion_batch_size=16,
                  noise_level=20)
    untrained = heldout_diffusion_loss(_fit(X_train, 1, **common), X_heldout)
    trained = heldout_diffusion_loss(_fit(X_train, 150, **common), X_heldout)
    assert untrained["model_bits"] > 0.95
    assert trained["model_bits"] < untrained["model_bits"] - 0.2
    assert untrained["timesteps"] == trained["timesteps"]


def test_heldout_loss_validates_its_arguments(fitted):
    det, X = fitted
    with pytest.raises(ValueError, match="n_draws"):
        heldout_diffusion_loss(det, X[:2], n_draws=0)
    unfitted = MaskedBernoulliDiffusionDetector()
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        heldout_diffusion_loss(unfitted, X[:2])

"""Tests for skberdiff.losses: reconstruction, binarisation and adversarial losses."""

import pytest
import torch
from numpy.testing import assert_allclose

from skberdiff import losses
from skberdiff.losses import (
    adaptive_adversarial_weight,
    binarization_penalty,
    generator_adversarial_loss,
    hinge_discriminator_loss,
    reconstruction_loss,
)


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)


@pytest.mark.parametrize(
    "kind, expected", [("mse", lambda d: (d**2).mean()), ("l1", lambda d: d.abs().mean())]
)
def test_reconstruction_loss_kinds(kind, expected, generator):
    x = torch.rand(3, 2, 8, 8, generator=generator)
    x_hat = torch.rand(3, 2, 8, 8, generator=generator)
    assert_allclose(float(reconstruction_loss(x_hat, x, kind)), float(expected(x_hat - x)), 1e-6)
    assert float(reconstruction_loss(x, x, kind)) == 0.0


def test_reconstruction_loss_default_is_mse():
    x_hat, x = torch.full((1, 1, 2, 2), 2.0), torch.zeros(1, 1, 2, 2)
    assert float(reconstruction_loss(x_hat, x)) == 4.0


def test_reconstruction_loss_bad_kind():
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="'mse' or 'l1', got 'l2'"):
        reconstruction_loss(x, x, "l2")


def test_binarization_penalty_range(generator):
    probabilities = torch.rand(1000, generator=generator)
    penalty = float(binarization_penalty(probabilities))
    assert 0.0 < penalty < 0.25
    assert float(binarization_penalty(torch.tensor([0.0, 1.0, 1.0]))) == 0.0
    assert float(binarization_penalty(torch.full((5,), 0.5))) == 0.25
    # Uniform probabilities: E[p (1 - p)] = 1/6.
    assert_allclose(penalty, 1 / 6, atol=0.01)


def test_hinge_losses():
    # A confident, correct discriminator pays nothing; one that outputs 0 pays 1.
    assert float(hinge_discriminator_loss(torch.full((4,), 2.0), torch.full((4,), -3.0))) == 0.0
    assert float(hinge_discriminator_loss(torch.zeros(4), torch.zeros(4))) == 1.0
    # 0.5 * (relu(1 - (-1)) + relu(1 + 1)) = 2.
    assert float(hinge_discriminator_loss(-torch.ones(3), torch.ones(3))) == 2.0
    assert float(generator_adversarial_loss(torch.tensor([1.0, 3.0]))) == -2.0


def _adaptive_setup(rec_scale, gen_scale):
    last_layer = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    rec_loss = rec_scale * (last_layer**2).sum()
    gen_loss = gen_scale * last_layer.sum()
    return rec_loss, gen_loss, last_layer


def test_adaptive_adversarial_weight_value_and_detached():
    rec_loss, gen_loss, last_layer = _adaptive_setup(0.01, 1.0)
    weight = adaptive_adversarial_weight(rec_loss, gen_loss, last_layer, max_weight=10.0)
    expected = (0.01 * 2 * last_layer.detach()).norm() / (torch.ones(3).norm() + 1e-4)
    assert_allclose(float(weight), float(expected), rtol=1e-6)
    assert not weight.requires_grad and weight.grad_fn is None
    # The graph is kept for the caller's own backward pass.
    (rec_loss + weight * gen_loss).backward()
    assert last_layer.grad is not None


@pytest.mark.parametrize("max_weight", [1.0, 0.25])
def test_adaptive_adversarial_weight_clamped(max_weight):
    rec_loss, gen_loss, last_layer = _adaptive_setup(100.0, 1e-3)
    weight = adaptive_adversarial_weight(rec_loss, gen_loss, last_layer, max_weight=max_weight)
    assert float(weight) == max_weight
    rec_loss, gen_loss, last_layer = _adaptive_setup(0.0, 1.0)
    assert float(adaptive_adversarial_weight(rec_loss, gen_loss, last_layer)) == 0.0


def test_losses_holds_only_the_autoencoder_losses():
    # LPIPS lives in skberdiff.nn.lpips; losses does not re-export it.
    assert set(losses.__all__) == {
        "reconstruction_loss",
        "binarization_penalty",
        "hinge_discriminator_loss",
        "generator_adversarial_loss",
        "adaptive_adversarial_weight",
    }
    assert not hasattr(losses, "LPIPS") and not hasattr(losses, "perceptual_loss")

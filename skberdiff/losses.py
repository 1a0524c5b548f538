"""Losses for training the binarizing autoencoder.

Reconstruction (MSE or L1), the binarisation penalty on the encoder's probabilities, and
hinge adversarial losses for the PatchGAN discriminator with the adaptive generator weight of
Esser et al. (taming transformers). The LPIPS perceptual distance lives in
``skberdiff.nn.lpips`` (exported as :class:`skberdiff.nn.LPIPS`).
"""

import torch
import torch.nn.functional as F

__all__ = [
    "reconstruction_loss",
    "binarization_penalty",
    "hinge_discriminator_loss",
    "generator_adversarial_loss",
    "adaptive_adversarial_weight",
]


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Mean pixel reconstruction error.

    Parameters
    ----------
    x_hat, x : torch.Tensor of shape (B, c, h, w)
        Reconstruction and target.
    kind : {"mse", "l1"}, default="mse"
        The paper states MSE; its reference code trains with L1.

    Returns
    -------
    loss : torch.Tensor, scalar

    Examples
    --------
    >>> import torch
    >>> float(reconstruction_loss(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), "l1"))
    1.0
    """
    if kind == "mse":
        return F.mse_loss(x_hat, x)
    if kind == "l1":
        return F.l1_loss(x_hat, x)
    raise ValueError(f"reconstruction loss kind must be 'mse' or 'l1', got {kind!r}.")


def binarization_penalty(probabilities: torch.Tensor) -> torch.Tensor:
    """Mean of ``p (1 - p)`` over the encoder's Bernoulli probabilities.

    Zero when every latent bit is certain, 0.25 when every bit is a coin flip. Pushing it
    down makes the binary code nearly deterministic, so that Bernoulli sampling of the code
    does not inject noise everywhere. In the project's CPU prototype (design notes,
    findings.md; 64x64 MNI-derived slices) a weight of 0.02 cut the share of uncertain bits
    (p in (0.1, 0.9)) from 69 % to 7.7 %, raised PSNR slightly (26.5 vs 26.2 dB) and
    lowered the diffusion loss from 0.65 to 0.23 bits per entry.

    Parameters
    ----------
    probabilities : torch.Tensor
        Bernoulli probabilities ``sigmoid(E(x))`` of the latent bits, any shape.

    Returns
    -------
    penalty : torch.Tensor, scalar
        Mean of ``p (1 - p)``, in ``[0, 0.25]``.

    Examples
    --------
    >>> import torch
    >>> float(binarization_penalty(torch.tensor([0.5, 0.5])))
    0.25
    """
    return (probabilities * (1.0 - probabilities)).mean()


def hinge_discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the discriminator: ``mean(relu(1 - D(x))) + mean(relu(1 + D(x_hat)))``, halved.

    Parameters
    ----------
    logits_real : torch.Tensor
        Discriminator logits ``D(x)`` on real images.
    logits_fake : torch.Tensor
        Discriminator logits ``D(x_hat)`` on reconstructions.

    Returns
    -------
    loss : torch.Tensor, scalar

    Examples
    --------
    >>> import torch
    >>> float(hinge_discriminator_loss(torch.ones(4), -torch.ones(4)))
    0.0
    """
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def generator_adversarial_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Hinge generator loss ``-mean(D(x_hat))``.

    Parameters
    ----------
    logits_fake : torch.Tensor
        Discriminator logits ``D(x_hat)`` on reconstructions.

    Returns
    -------
    loss : torch.Tensor, scalar

    Examples
    --------
    >>> import torch
    >>> float(generator_adversarial_loss(torch.ones(3)))
    -1.0
    """
    return -logits_fake.mean()


def adaptive_adversarial_weight(
    rec_loss: torch.Tensor,
    gen_loss: torch.Tensor,
    last_layer: torch.Tensor,
    max_weight: float = 1.0,
) -> torch.Tensor:
    """Balance the adversarial term against the reconstruction term.

    ``||grad_last rec_loss|| / (||grad_last gen_loss|| + 1e-4)``, clamped to
    ``[0, max_weight]`` and detached, where the gradients are taken with respect to the
    decoder's last layer weight.

    Parameters
    ----------
    rec_loss, gen_loss : torch.Tensor, scalar
        Losses that both depend on ``last_layer`` through the graph.
    last_layer : torch.Tensor
        Weight of the decoder's output convolution.
    max_weight : float, default=1.0
        Upper clamp, as in the reference code.

    Returns
    -------
    weight : torch.Tensor, scalar, detached

    Examples
    --------
    >>> import torch
    >>> w = torch.ones(3, requires_grad=True)
    >>> rec, gen = (2 * w).sum(), (4 * w).sum()
    >>> round(float(adaptive_adversarial_weight(rec, gen, w)), 4)
    0.5
    """
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    gen_grad = torch.autograd.grad(gen_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.norm() / (gen_grad.norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()

"""Is a fitted detector in the paper's regime? Checks on the autoencoder and the diffusion model.

The method rests on two premises (Wolleb et al., 2024): the autoencoder reproduces
*everything*, anomalies included, so its binary code carries the lesion; and the diffusion
model, trained on healthy codes only, has learnt them well enough to replace anomalous
entries with healthy ones. When the first fails (a low-fidelity autoencoder that already
removes lesions) the autoencoder alone is the anomaly detector and the diffusion stage can
only add noise; when the second fails (an undertrained diffusion model) the mask catches
injected noise rather than anomalies.

- :func:`autoencoder_reconstruction`: decode the input's own code, no diffusion (the
  "autoencoder alone" baseline of the same detector).
- :func:`lesion_retention`: the share of lesion contrast the autoencoder alone reproduces
  (about 1 = the premise holds; near 0 = the autoencoder removes lesions by itself).
- :func:`autoencoder_psnr`: reconstruction fidelity on healthy images.
- :func:`heldout_diffusion_loss`: the diffusion model's loss on healthy images it was not
  trained on, against the best content-blind prediction.
- :func:`regime_report`: all of them at once.
"""

import math

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy import ndimage
from sklearn.utils.validation import check_is_fitted

from ._validation import check_images, check_int, check_masks
from .diffusion import diffusion_loss, training_example
from .metrics import psnr
from .training import encode_dataset

__all__ = ["autoencoder_reconstruction", "lesion_retention", "autoencoder_psnr",
           "heldout_diffusion_loss", "regime_report"]


def autoencoder_reconstruction(det, X: ArrayLike, *, deterministic: bool = False) -> np.ndarray:
    """Reconstruct images with the fitted detector's autoencoder alone (no diffusion).

    Decodes the same Bernoulli code ``z ~ B(sigmoid(E(x)))`` that the diffusion stage starts
    from (``det.decode(det.encode(X))``).

    Parameters
    ----------
    det : MaskedBernoulliDiffusionDetector
        A fitted detector.
    X : array-like of shape (n, c, h, w)
        Images.
    deterministic : bool, default=False
        Decode ``1[sigmoid(E(x)) > 0.5]`` instead of a Bernoulli sample.

    Returns
    -------
    x_hat : ndarray of shape (n, c, h, w), float32
        Clamped to [0, 1] like the detector's reconstructions.

    Examples
    --------
    >>> from skberdiff import MaskedBernoulliDiffusionDetector
    >>> from skberdiff.datasets import make_toy_images
    >>> X, _ = make_toy_images(24, image_size=32, random_state=0)
    >>> det = MaskedBernoulliDiffusionDetector(
    ...     preset="tiny", autoencoder_iterations=20, diffusion_iterations=20,
    ...     diffusion_steps=100, noise_level=20, device="cpu", random_state=0).fit(X)
    >>> autoencoder_reconstruction(det, X[:2]).shape
    (2, 1, 32, 32)
    """
    return det.decode(det.encode(X, deterministic=deterministic))


def _ring(mask, width):
    """Pixels within ``width`` of a mask but outside it (the lesion's surroundings)."""
    structure = np.ones((3, 3), bool)
    return ndimage.binary_dilation(mask, structure, iterations=width) & ~mask


def lesion_retention(det, X: ArrayLike, masks: ArrayLike, *, X_lesion_free: ArrayLike = None,
                     ring_width: int = 3) -> float:
    """Share of lesion contrast that the autoencoder alone reproduces.

    1 means the autoencoder copies lesions (the paper's premise: the diffusion stage then
    has something to remove); 0 means it removes them by itself (its residual is already
    the anomaly map and the diffusion stage can add little). The paper's regime needs a
    value well above 0.5.

    Parameters
    ----------
    det : MaskedBernoulliDiffusionDetector
        A fitted detector.
    X : array-like of shape (n, c, h, w)
        Images with lesions.
    masks : array-like of shape (n, h, w)
        Their lesion masks.
    X_lesion_free : array-like of shape (n, c, h, w), default=None
        The same images without the lesions, when known (synthetic benchmarks). Then the
        lesion signal is ``s = x - x_free`` and the retention is the projection
        ``sum (x_hat - x_free) s / sum s^2`` over lesion pixels and channels.
    ring_width : int, default=3
        Without ``X_lesion_free``: the contrast of a lesion in one channel is its mean
        intensity minus the mean of a ring of this width around it, and the retention is
        the projection ``sum c_hat c / sum c^2`` of reconstructed on input contrasts over
        images and channels.

    Returns
    -------
    retention : float

    Examples
    --------
    >>> from skberdiff import MaskedBernoulliDiffusionDetector
    >>> from skberdiff.datasets import make_toy_images
    >>> X, _ = make_toy_images(24, image_size=32, random_state=0)
    >>> X_les, y = make_toy_images(4, image_size=32, anomaly_fraction=1.0, random_state=1)
    >>> det = MaskedBernoulliDiffusionDetector(
    ...     preset="tiny", autoencoder_iterations=20, diffusion_iterations=20,
    ...     diffusion_steps=100, noise_level=20, device="cpu", random_state=0).fit(X)
    >>> isinstance(lesion_retention(det, X_les, y), float)
    True
    """
    X = check_images(X)
    masks = check_masks(masks, n_samples=X.shape[0], spatial_shape=X.shape[2:], name="masks")
    if not masks.any():
        raise ValueError("masks hold no lesion pixel; lesion retention is undefined.")
    x_hat = autoencoder_reconstruction(det, X)
    if X_lesion_free is not None:
        free = check_images(X_lesion_free, name="X_lesion_free")
        if free.shape != X.shape:
            raise ValueError(f"X_lesion_free has shape {free.shape} but X has {X.shape}.")
        signal = X - free
        energy = float((np.square(signal).sum(axis=1))[masks].sum())
        if energy == 0:
            raise ValueError("X equals X_lesion_free on the lesion pixels: no lesion signal.")
        return float(((x_hat - free) * signal).sum(axis=1)[masks].sum() / energy)
    width = check_int(ring_width, "ring_width", low=1)
    contrast, reproduced = [], []
    for image, recon, mask in zip(X, x_hat, masks):
        if not mask.any():
            continue
        ring = _ring(mask, width)
        if not ring.any():
            continue
        contrast.append(image[:, mask].mean(1) - image[:, ring].mean(1))
        reproduced.append(recon[:, mask].mean(1) - recon[:, ring].mean(1))
    contrast, reproduced = np.concatenate(contrast), np.concatenate(reproduced)
    energy = float(np.square(contrast).sum())
    if energy == 0:
        raise ValueError("The lesions have no contrast against their surroundings.")
    return float((reproduced * contrast).sum() / energy)


def autoencoder_psnr(det, X_healthy: ArrayLike) -> float:
    """Mean per-image PSNR (dB) of the autoencoder alone on healthy images.

    Parameters
    ----------
    det : MaskedBernoulliDiffusionDetector
        A fitted detector.
    X_healthy : array-like of shape (n, c, h, w)
        Healthy images (ideally not trained on).

    Returns
    -------
    psnr : float

    Examples
    --------
    >>> from skberdiff import MaskedBernoulliDiffusionDetector
    >>> from skberdiff.datasets import make_toy_images
    >>> X, _ = make_toy_images(24, image_size=32, random_state=0)
    >>> det = MaskedBernoulliDiffusionDetector(
    ...     preset="tiny", autoencoder_iterations=20, diffusion_iterations=20,
    ...     diffusion_steps=100, noise_level=20, device="cpu", random_state=0).fit(X)
    >>> autoencoder_psnr(det, X[:4]) > 0
    True
    """
    X = check_images(X_healthy, name="X_healthy")
    return float(psnr(X, autoencoder_reconstruction(det, X)))


@torch.inference_mode()
def heldout_diffusion_loss(det, X: ArrayLike, *, timesteps=(25, 50, 100, 200, 300, 400, 600),
                           n_draws: int = 2, seed: int = 0, batch_size: int = 32) -> dict:
    """Diffusion BCE (bits per latent entry) on healthy images the networks were not trained on.

    For each time ``t``, latents ``z_0 ~ B(sigmoid(E(x)))`` are noised with the detector's
    forward process and the UNet predicts the flips; its loss is compared with the best
    content-blind prediction, the entropy of the empirical flip rate at that ``t``. An
    untrained UNet (zero-initialised output, flip probability 0.5) scores 1 bit; only a
    model that learnt the latents' structure scores below the content-blind entropy. Track
    it over training to see when it plateaus.

    Parameters
    ----------
    det : MaskedBernoulliDiffusionDetector
        A fitted detector.
    X : array-like of shape (n, c, h, w)
        Held-out healthy images.
    timesteps : sequence of int
        Paper times ``t`` to evaluate (clipped to the schedule).
    n_draws : int, default=2
        Noise draws per image and time.
    seed : int, default=0
        Seed of the latent samples and noise.
    batch_size : int, default=32
        Images per forward pass.

    Returns
    -------
    result : dict
        ``model_bits`` and ``content_blind_bits`` (means over times), and per-time lists
        ``timesteps``, ``model_bits_per_t``, ``content_blind_bits_per_t``.

    Examples
    --------
    >>> from skberdiff import MaskedBernoulliDiffusionDetector
    >>> from skberdiff.datasets import make_toy_images
    >>> X, _ = make_toy_images(24, image_size=32, random_state=0)
    >>> det = MaskedBernoulliDiffusionDetector(
    ...     preset="tiny", autoencoder_iterations=20, diffusion_iterations=20,
    ...     diffusion_steps=100, noise_level=20, device="cpu", random_state=0).fit(X)
    >>> loss = heldout_diffusion_loss(det, X[:4], timesteps=(10, 50), n_draws=1)
    >>> loss["timesteps"], 0 < loss["model_bits"] < 2
    ([10, 50], True)
    """
    check_is_fitted(det)
    X = check_images(X)
    n_draws = check_int(n_draws, "n_draws", low=1)
    batch_size = check_int(batch_size, "batch_size", low=1)
    ae, unet, schedule = det.autoencoder_, det.diffusion_model_, det.schedule_
    device = next(ae.parameters()).device
    unet.to(device)
    # The encoder is deterministic: encode once, draw fresh codes z0 ~ B(p) per time and draw.
    probabilities = encode_dataset(ae, X, batch_size=batch_size, device=device)
    generator = torch.Generator(device=device).manual_seed(int(seed))
    T = schedule.n_timesteps
    times = sorted({min(max(int(t), 1), T) for t in timesteps})
    model_bits, blind_bits = [], []
    for t in times:
        losses, flips, n_entries = [], 0.0, 0
        for _ in range(n_draws):
            for start in range(0, X.shape[0], batch_size):
                p = probabilities[start:start + batch_size].to(device)
                z0 = ae.binarize(p, generator=generator)
                t_batch = torch.full((z0.shape[0],), t, device=device, dtype=torch.long)
                z_t, target, model_t = training_example(z0, schedule, rng=generator, t=t_batch)
                losses.append(diffusion_loss(unet(z_t, model_t), target, reduction="none").cpu())
                flips += float(target.sum())
                n_entries += target.numel()
        rate = min(max(flips / n_entries, 1e-12), 1 - 1e-12)
        model_bits.append(float(torch.cat(losses).mean()))
        blind_bits.append(float(-(rate * math.log2(rate) + (1 - rate) * math.log2(1 - rate))))
    return {"timesteps": times,
            "model_bits_per_t": [round(v, 4) for v in model_bits],
            "content_blind_bits_per_t": [round(v, 4) for v in blind_bits],
            "model_bits": float(np.mean(model_bits)),
            "content_blind_bits": float(np.mean(blind_bits))}


def regime_report(det, X_healthy: ArrayLike, X_lesion: ArrayLike, masks: ArrayLike, *,
                  X_lesion_free: ArrayLike = None) -> dict:
    """The three regime checks at once.

    Parameters
    ----------
    det : MaskedBernoulliDiffusionDetector
        A fitted detector.
    X_healthy : array-like of shape (n, c, h, w)
        Healthy images not trained on (PSNR and held-out loss).
    X_lesion : array-like of shape (m, c, h, w)
        Images with lesions.
    masks : array-like of shape (m, h, w)
        Their lesion masks.
    X_lesion_free : array-like of shape (m, c, h, w), default=None
        Lesion-free versions of ``X_lesion`` when known.

    Returns
    -------
    report : dict
        ``lesion_retention``, ``autoencoder_psnr``, ``heldout_diffusion_loss``.

    Examples
    --------
    >>> from skberdiff import MaskedBernoulliDiffusionDetector
    >>> from skberdiff.datasets import make_toy_images
    >>> X, _ = make_toy_images(24, image_size=32, random_state=0)
    >>> X_les, y = make_toy_images(4, image_size=32, anomaly_fraction=1.0, random_state=1)
    >>> det = MaskedBernoulliDiffusionDetector(
    ...     preset="tiny", autoencoder_iterations=20, diffusion_iterations=20,
    ...     diffusion_steps=100, noise_level=20, device="cpu", random_state=0).fit(X)
    >>> sorted(regime_report(det, X[:4], X_les, y))
    ['autoencoder_psnr', 'heldout_diffusion_loss', 'lesion_retention']
    """
    return {
        "lesion_retention": lesion_retention(det, X_lesion, masks, X_lesion_free=X_lesion_free),
        "autoencoder_psnr": autoencoder_psnr(det, X_healthy),
        "heldout_diffusion_loss": heldout_diffusion_loss(det, X_healthy),
    }

"""A reference-code-style masked restoration loop: the baseline of ``benchmarks/speed.py``.

This reproduces how the public reference code (Anomaly_berdiff, ``ddim_sample_loop_anomaly``)
*runs* Algorithm 1, with the same math as :func:`skberdiff.diffusion.masked_restoration`
(the paper's symmetric forward process and posterior, ``noise_level`` L, ``mask_threshold``
P, either final step), so that a timing comparison measures the execution strategy only:

- one image at a time (batch 1; the reference's mask only reads batch element 0);
- 0-based float64 numpy schedule arrays; every lookup uploads the whole array to the device,
  indexes it and casts it, as guided-diffusion's ``_extract_into_tensor`` does (eight
  lookups per posterior, two for the forward noising);
- a new time tensor per step, and a ``t[0] != 0`` check on it (a host read of a device
  value; a synchronisation on CUDA);
- the mask is updated by index extraction (``torch.where`` on a condition, then indexed
  assignment; a synchronisation on CUDA);
- sampling through ``torch.distributions.Binomial(1, p)`` with argument validation (the
  reference; checks every value, a synchronisation on CUDA);
- the autoencoder runs with autograd enabled (the reference calls it outside ``no_grad``);
  the UNet runs under ``torch.no_grad`` (guided-diffusion's sampling loop).

It lives in ``benchmarks/`` only: it is a yardstick, not part of the package.

``sampler="counter"`` replaces the Binomial draws by the package's counter-based uniforms
(same streams as the detector), so that the loop gives the detector's outputs exactly, up to
floating-point rounding of batched versus unbatched convolutions; the tests use it.
"""

import numpy as np
import torch

from skberdiff.diffusion import (
    _STREAM_STEP0,
    STREAM_ENCODE,
    STREAM_FORWARD,
    BernoulliSchedule,
    CounterRNG,
)

__all__ = ["ReferenceSchedule", "reference_restore"]

SAMPLERS = ("binomial", "bernoulli", "counter")


class ReferenceSchedule:
    """The reference code's 0-based float64 schedule arrays (index ``i`` = paper time ``i + 1``).

    Parameters
    ----------
    schedule : skberdiff.diffusion.BernoulliSchedule
        The package's schedule (same betas).
    """

    def __init__(self, schedule: BernoulliSchedule):
        self.betas = np.asarray(schedule.betas, dtype=np.float64)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = np.cumprod(self.alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.num_timesteps = self.betas.shape[0]


def _extract(array: np.ndarray, t: torch.Tensor, shape) -> torch.Tensor:
    """guided-diffusion's ``_extract_into_tensor``: upload, index, cast, broadcast."""
    res = torch.from_numpy(array).to(device=t.device)[t].float()
    while res.dim() < len(shape):
        res = res[..., None]
    return res.expand(shape)


def _sample(probs: torch.Tensor, sampler: str, rng, stream: int) -> torch.Tensor:
    if sampler == "binomial":
        return torch.distributions.Binomial(1, probs=probs, validate_args=True).sample()
    if sampler == "bernoulli":
        return torch.distributions.Bernoulli(probs=probs, validate_args=True).sample()
    return (rng.uniform(probs, stream) < probs).float()


def _q_sample(rs: ReferenceSchedule, z0, t, sampler, rng):
    """Paper forward process ``B(abar_t z_0 + (1 - abar_t) / 2)`` (eq. 1) at array index t."""
    ab = _extract(rs.alphas_cumprod, t, z0.shape)
    return _sample(ab * z0 + (1 - ab) / 2, sampler, rng, STREAM_FORWARD)


def _posterior(rs: ReferenceSchedule, z_t, z0, t):
    """theta_post at array index t (eq. 6): eight schedule lookups, as the reference."""
    shape = z_t.shape
    a1 = _extract(rs.alphas, t, shape) * z_t + (1 - _extract(rs.alphas, t, shape)) / 2
    a0 = _extract(rs.alphas, t, shape) * (1 - z_t) + (1 - _extract(rs.alphas, t, shape)) / 2
    b1 = (_extract(rs.alphas_cumprod_prev, t, shape) * z0
          + (1 - _extract(rs.alphas_cumprod_prev, t, shape)) / 2)
    b0 = (_extract(rs.alphas_cumprod_prev, t, shape) * (1 - z0)
          + (1 - _extract(rs.alphas_cumprod_prev, t, shape)) / 2)
    theta = a1 * b1 / (a1 * b1 + a0 * b0)
    return theta.clamp(0.0, 1.0)


def reference_restore(autoencoder, unet, images, *, schedule: BernoulliSchedule,
                      noise_level: int = 200, mask_threshold: float = 0.5,
                      final_step: str = "paper", sampler: str = "binomial", seeds=None,
                      device="cpu"):
    """Restore images one at a time the way the reference code does.

    Parameters
    ----------
    autoencoder : skberdiff.nn.BinaryAutoencoder
        Binarizing autoencoder (on ``device``).
    unet : skberdiff.nn.EpsUNet
        eps-UNet (on ``device``, in eval mode).
    images : torch.Tensor of shape (n, c, h, w)
        Images, on any device (each is copied to ``device`` on its own).
    schedule : skberdiff.diffusion.BernoulliSchedule
        Noise schedule the UNet was trained with.
    noise_level : int, default=200
        ``L``; the loop runs ``L`` UNet calls (paper times ``L, ..., 1``).
    mask_threshold : float, default=0.5
        ``P``; 0 disables the mask (plain denoising).
    final_step : {"paper", "reference"}, default="paper"
        As in :func:`skberdiff.diffusion.masked_restoration`.
    sampler : {"binomial", "bernoulli", "counter"}, default="binomial"
        ``"binomial"``: ``torch.distributions.Binomial(1, p)`` as the reference;
        ``"bernoulli"``: ``torch.distributions.Bernoulli``; ``"counter"``: the package's
        counter-based uniforms keyed by ``seeds`` (exactly the detector's draws).
    seeds : torch.Tensor of shape (n,), optional
        Per-image seeds, required for ``sampler="counter"`` (the detector's, from
        ``skberdiff._runtime.image_seeds``).
    device : str or torch.device, default="cpu"
        Where the loop runs.

    Returns
    -------
    result : dict
        ``"x_hat"`` (n, c, h, w) reconstructions clamped to [0, 1], ``"masked_fraction"``
        (n,), ``"latent"`` (n, C, h', w') restored latents, ``"code"`` the input codes; all
        on the CPU.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}.")
    if final_step not in ("paper", "reference"):
        raise ValueError(f"final_step must be 'paper' or 'reference', got {final_step!r}.")
    if sampler == "counter" and seeds is None:
        raise ValueError("sampler='counter' needs seeds.")
    device = torch.device(device)
    rs = ReferenceSchedule(schedule)
    stitch = mask_threshold > 0
    out = {"x_hat": [], "masked_fraction": [], "latent": [], "code": []}
    for k in range(images.shape[0]):
        x = images[k:k + 1].to(device)
        rng = CounterRNG(seeds[k:k + 1]).to(device) if sampler == "counter" else None
        # The reference encodes with autograd enabled.
        probabilities = autoencoder.encode(x)
        if sampler == "counter":
            code = (rng.uniform(probabilities, STREAM_ENCODE) < probabilities).float()
        else:
            code = torch.bernoulli(probabilities)
        code = code.detach()
        with torch.no_grad():
            t = torch.tensor([noise_level - 1] * code.shape[0], device=device)
            z_t = _q_sample(rs, code, t, sampler, rng)
            mask = torch.zeros_like(code) if stitch else torch.ones_like(code)
            for i in list(range(noise_level))[::-1]:
                t = torch.tensor([i] * code.shape[0], device=device)
                flip = torch.sigmoid(unet(z_t, t.float()))
                z0_hat = (z_t - flip).abs()
                if t[0] != 0 or final_step == "paper":
                    if stitch:
                        index = torch.where(flip[0] > mask_threshold)
                        mask[0][index] = 1
                        z0_hat = mask * z0_hat + (1 - mask) * code
                    theta = _posterior(rs, z_t, z0_hat, t)
                    z_t = _sample(theta, sampler, rng, _STREAM_STEP0 + i + 1)
                else:
                    z_t = z0_hat  # the reference returns the soft, unstitched |z_1 - eps|
        x_hat = autoencoder.decode(z_t).clamp(0.0, 1.0)
        out["x_hat"].append(x_hat.detach().cpu())
        out["masked_fraction"].append(mask.flatten(1).float().mean(1).cpu())
        out["latent"].append(z_t.cpu())
        out["code"].append(code.cpu())
    return {name: torch.cat(parts) for name, parts in out.items()}

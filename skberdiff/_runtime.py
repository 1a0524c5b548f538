"""Inference runtime: per-image noise, batching with OOM halving, compiled UNets, encode/decode.

Everything here acts on *fitted networks* and plain settings; nothing is stored on the
estimator. The compiled-UNet cache lives in this module (keyed by the network object), so
prediction never changes an estimator's ``__dict__`` (scikit-learn's ``check_dict_unchanged``).
"""

import hashlib
import threading
import warnings
import weakref
from dataclasses import dataclass

import numpy as np
import torch

from ._device import autocast, check_precision
from ._progress import progress
from .diffusion import (
    STREAM_ENCODE,
    CounterRNG,
    injected_noise_loss,
    masked_restoration,
    q_sample,
)
from .exceptions import DeviceFallbackWarning

__all__ = ["InferenceSettings", "image_seeds", "encode_codes", "decode_codes",
           "iter_restorations", "iter_codes", "runtime_device", "COMPILE_MODES",
           "LOSS_TIME_FRACTIONS"]

COMPILE_MODES = (False, True, "default", "reduce-overhead", "max-autotune")

#: Times of the denoising-loss score, as fractions of the noise level ``L``. The first
#: (``t = L``) reuses the sampler's first UNet call; every other costs one more forward.
LOSS_TIME_FRACTIONS = (1.0, 0.5, 0.25)
# Counter-RNG streams of the extra forward noising for the loss score (after the sampler's).
_STREAM_LOSS0 = 1 << 20


@dataclass(frozen=True)
class InferenceSettings:
    """Inference-time parameters of one call, validated by the estimator.

    Attributes
    ----------
    noise_level : int
        ``L``.
    mask_threshold : float
        ``P``.
    n_steps : int or None
        Denoising steps (``None``: all ``L``).
    final_step : str
        ``"paper"`` or ``"reference"``.
    posterior : str
        ``"paper"`` or ``"marginal"``.
    n_draws : int
        Independent restorations averaged per image.
    batch_size : int
        Images per batch (halved on GPU out-of-memory).
    precision : str
        Autocast precision.
    compile : bool or str
        ``torch.compile`` mode of the UNet, or False.
    verbose : int
        Progress bars when positive.
    """

    noise_level: int
    mask_threshold: float
    n_steps: int | None
    final_step: str
    posterior: str
    n_draws: int
    batch_size: int
    precision: str
    compile: object
    verbose: int


def image_seeds(X: np.ndarray, seed: int) -> torch.Tensor:
    """One noise seed per image from ``seed`` and the image's bytes.

    Every output is then a deterministic function of the image alone: independent of its
    position in ``X``, of the other images, of the batch size and of the device.

    Parameters
    ----------
    X : ndarray of shape (n, c, h, w), float32
        Validated images.
    seed : int
        The fitted ``seed_`` (any non-negative integer below ``2**64``).

    Returns
    -------
    seeds : torch.Tensor of shape (n,), int64
    """
    salt = (int(seed) % 2 ** 64).to_bytes(8, "little")
    seeds = [int.from_bytes(hashlib.blake2b(image.tobytes(), digest_size=4, salt=salt).digest(),
                            "little") for image in X]
    return torch.tensor(seeds, dtype=torch.int64)


# --------------------------------------------------------------------------- devices
_FALLBACK_WARNED = weakref.WeakSet()  # estimators already told that CUDA is missing


def runtime_device(owner, requested, trained="cpu"):
    """The device an estimator runs on now; warns once per estimator when CUDA is missing.

    Parameters
    ----------
    owner : object
        The estimator (remembered weakly, so it warns once, not at every call).
    requested : str
        Its ``device`` parameter.
    trained : str, default="cpu"
        The device its networks were trained on (``device_``); with ``"auto"`` a detector
        trained on CUDA that is loaded where CUDA is missing also warns.

    Returns
    -------
    device : torch.device
    """
    from ._device import resolve_device

    requested, trained = str(requested), str(trained)
    wants_cuda = requested.startswith("cuda") or (requested == "auto"
                                                  and trained.startswith("cuda"))
    if wants_cuda and not torch.cuda.is_available():
        if owner not in _FALLBACK_WARNED:
            _FALLBACK_WARNED.add(owner)
            warnings.warn(
                f"This detector was fitted on {trained} (device={requested!r}) but CUDA is "
                "not available here; it runs on the CPU.", DeviceFallbackWarning, stacklevel=4)
        return torch.device("cpu")
    return resolve_device(requested, fallback=True)


# --------------------------------------------------------------------------- compile cache
_COMPILED = weakref.WeakKeyDictionary()  # unet -> {(mode, device): compiled module}
_COMPILED_LOCK = threading.Lock()


def _inference_unet(unet, compile_mode, device):
    """The UNet, compiled once per network, mode and device when asked for."""
    if compile_mode is False:
        return unet
    mode = "default" if compile_mode is True else compile_mode
    key = (mode, str(device))
    with _COMPILED_LOCK:
        per_net = _COMPILED.setdefault(unet, {})
        if key not in per_net:
            if mode == "default":
                # Freezing folds the (inference-only) weights into the graph; on CPUs it lets
                # oneDNN prepack convolution weights once instead of at every call.
                per_net[key] = torch.compile(unet, dynamic=False, options={"freezing": True})
            else:
                per_net[key] = torch.compile(unet, mode=mode, dynamic=False)
        return per_net[key]


# --------------------------------------------------------------------------- encode / decode
def encode_codes(ae, x, rng, device, precision, *, deterministic=False):
    """Encoder probabilities and binary codes ``z ~ B(sigmoid(E(x)))`` of one batch.

    Parameters
    ----------
    ae : BinaryAutoencoder
        On ``device``.
    x : torch.Tensor of shape (B, c, h, w)
        Images on ``device``.
    rng : CounterRNG
        Per-image generator (stream ``STREAM_ENCODE``).
    device : torch.device
        Where to run.
    precision : str
        Autocast precision.
    deterministic : bool, default=False
        Threshold the probabilities at 0.5 instead of sampling.

    Returns
    -------
    probabilities, code : torch.Tensor of shape (B, C, h', w'), float32
    """
    with autocast(device, precision):
        probabilities = ae.encode(x).float()
    if deterministic:
        return probabilities, (probabilities > 0.5).float()
    return probabilities, (rng.uniform(probabilities, STREAM_ENCODE) < probabilities).float()


def decode_codes(ae, z, device, precision):
    """Decode (binary or soft) codes to images clamped to [0, 1]."""
    with autocast(device, precision):
        return ae.decode(z).float().clamp_(0.0, 1.0)


def _loss_times(noise_level, n_timesteps):
    times = sorted({min(max(int(round(f * noise_level)), 1), n_timesteps)
                    for f in LOSS_TIME_FRACTIONS}, reverse=True)
    return times


def _latent_loss(denoise, restored, code, rng, schedule, noise_level):
    """Mean over a few times of the per-position loss of the injected noise (B, h, w)."""
    maps = []
    for t in _loss_times(noise_level, schedule.n_timesteps):
        if t == noise_level:
            maps.append(injected_noise_loss(restored.initial_flip, restored.injected))
            continue
        z_t = q_sample(code, float(schedule.alpha_bar[t]), rng, schedule.forward_process,
                       stream=_STREAM_LOSS0 + t)
        model_t = torch.full((code.shape[0],), float(t - 1), device=code.device)
        flip = torch.sigmoid(denoise(z_t, model_t).float())
        maps.append(injected_noise_loss(flip, z_t != code))
    return torch.stack(maps).mean(0)


def _draw_seeds(seeds, draw):
    """Per-image seeds of restoration draw ``draw`` (draw 0 keeps the image seeds)."""
    if draw == 0:
        return seeds
    return seeds ^ ((int(draw) * 0x9E3779B97F4A7C15) & 0x7FFFFFFFFFFFFFFF)


def _run_batch(networks, x, seeds, settings, device, *, keep_latents, decode, latent_loss):
    """Encode, restore, score and (if needed) decode one batch; tensors stay on ``device``.

    With ``settings.n_draws > 1`` the restoration runs that many times with independent
    noise from the same code; reconstructions and image scores are averaged (the latent
    outputs and the latent loss are those of the first draw).
    """
    ae, unet, schedule = networks
    net = _inference_unet(unet, settings.compile, device)
    precision = settings.precision
    rng = CounterRNG(seeds).to(device)

    def denoise(z_t, model_t):
        with autocast(device, precision):
            return net(z_t, model_t)

    n_draws = int(settings.n_draws)
    with torch.inference_mode():
        probabilities, code = encode_codes(ae, x, rng, device, precision)
        sums = {}
        for draw in range(n_draws):
            draw_rng = rng if draw == 0 else CounterRNG(_draw_seeds(seeds, draw)).to(device)
            restored = masked_restoration(
                denoise, code, schedule=schedule, noise_level=settings.noise_level,
                mask_threshold=settings.mask_threshold, n_steps=settings.n_steps,
                final_step=settings.final_step, posterior=settings.posterior, rng=draw_rng)
            values = {
                "masked_fraction": restored.masked_fraction,
                "masked_unflipped_fraction":
                    (restored.mask & ~restored.injected).flatten(1).float().mean(1),
                "mean_flip_probability": restored.mean_flip.mean(0),
                "x_hat": (decode_codes(ae, restored.latent, device, precision) if decode
                          else None),
            }
            for key, value in values.items():
                if value is not None:
                    sums[key] = value if key not in sums else sums[key] + value
            if draw == 0:
                first = restored
        out = {key: value / n_draws if n_draws > 1 else value for key, value in sums.items()}
        out.setdefault("x_hat", None)
        out["latent_loss"] = (_latent_loss(denoise, first, code, rng, schedule,
                                           settings.noise_level) if latent_loss else None)
    if keep_latents:
        out.update(code=code, probabilities=probabilities, restored=first.latent,
                   mask=first.mask, injected=first.injected, mean_flip=first.mean_flip.T,
                   step_masked_fraction=first.step_masked_fraction.T)
    return out


def iter_restorations(networks, X, *, seed, settings, device, keep_latents=False, decode=True,
                      latent_loss=False):
    """Yield ``(slice, outputs)`` per batch, halving the batch on GPU out-of-memory.

    Parameters
    ----------
    networks : tuple (BinaryAutoencoder, EpsUNet, BernoulliSchedule)
        Fitted networks, already on ``device``.
    X : ndarray of shape (n, c, h, w), float32
        Validated images.
    seed : int
        The fitted ``seed_``.
    settings : InferenceSettings
        Validated inference parameters.
    device : torch.device
        Where to run.
    keep_latents : bool, default=False
        Also return codes, masks and per-step statistics.
    decode : bool, default=True
        Decode the restored latents (needed for maps and reconstructions).
    latent_loss : bool, default=False
        Compute the latent denoising-loss map (``len(LOSS_TIME_FRACTIONS) - 1`` extra UNet
        forwards per image).

    Yields
    ------
    batch : slice
        Positions of the batch in ``X``.
    outputs : dict of torch.Tensor or None
        On ``device``; see ``_run_batch``.
    """
    check_precision(settings.precision, device)
    seeds = image_seeds(X, seed)
    batch = int(settings.batch_size)
    start = 0
    bar = progress(total=X.shape[0], verbose=settings.verbose, desc="restoring", leave=False)
    try:
        while start < X.shape[0]:
            stop = min(start + batch, X.shape[0])
            x = torch.from_numpy(X[start:stop]).to(device)
            batch_seeds = seeds[start:stop]
            # A compiled graph (CUDA graphs above all) is specialised to one batch shape:
            # pad the last batch with copies. Noise is per image, so copies change nothing.
            pad = batch - (stop - start) if settings.compile is not False \
                and device.type == "cuda" else 0
            if pad:
                x = torch.cat([x, x[-1:].expand(pad, *x.shape[1:])])
                batch_seeds = torch.cat([batch_seeds, batch_seeds[-1:].expand(pad)])
            try:
                out = _run_batch(networks, x, batch_seeds, settings, device,
                                 keep_latents=keep_latents, decode=decode,
                                 latent_loss=latent_loss)
                if pad:
                    out = {k: None if v is None else v[:stop - start] for k, v in out.items()}
            except torch.OutOfMemoryError:
                if batch == 1:
                    raise
                batch //= 2
                torch.cuda.empty_cache()
                warnings.warn(f"Out of GPU memory; retrying with batch_size={batch}.",
                              ResourceWarning, stacklevel=3)
                continue
            yield slice(start, stop), out
            bar.update(stop - start)
            start = stop
    finally:
        bar.close()


def iter_codes(ae, X, *, seed, batch_size, device, precision, deterministic=False):
    """Yield ``(slice, probabilities, codes)`` of ``X`` per batch, as the sampler draws them.

    Parameters
    ----------
    ae : BinaryAutoencoder
        On ``device``.
    X : ndarray of shape (n, c, h, w), float32
        Validated images.
    seed : int
        The fitted ``seed_``.
    batch_size : int
        Images per batch.
    device : torch.device
        Where to run.
    precision : str
        Autocast precision.
    deterministic : bool, default=False
        Threshold at 0.5 instead of sampling.

    Yields
    ------
    batch : slice
    probabilities, codes : torch.Tensor
    """
    seeds = image_seeds(X, seed)
    for start in range(0, X.shape[0], batch_size):
        stop = min(start + batch_size, X.shape[0])
        rng = CounterRNG(seeds[start:stop]).to(device)
        with torch.inference_mode():
            x = torch.from_numpy(X[start:stop]).to(device)
            probabilities, code = encode_codes(ae, x, rng, device, precision,
                                               deterministic=deterministic)
        yield slice(start, stop), probabilities, code

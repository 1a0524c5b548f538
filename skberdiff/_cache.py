"""Train the networks once per training set: seeds, staged training and the network cache.

:func:`cached_train` is what ``fit`` calls. It holds out the calibration images, trains the
autoencoder, encodes the training images once and trains the diffusion model on their
latents, and remembers the result keyed by the healthy images and the training-time
parameters only, so that a grid search over inference-time parameters trains once.

Seeds: one integer (``random_state``) feeds :class:`numpy.random.SeedSequence`, which spawns
an independent stream per purpose (:data:`SEED_PURPOSES`). With ``random_state=None`` any
seed will do: the cache key carries no seed, so fits on the same images with the same
training parameters reuse the networks (and their seed) instead of training again.
"""

import collections
import hashlib
import json
import os
import threading

import joblib
import numpy as np
import torch

from . import training
from .diffusion import make_schedule
from .nn import BinaryAutoencoder, EpsUNet, build_autoencoder, build_discriminator, build_unet

__all__ = ["SEED_PURPOSES", "seed_streams", "resolve_seed", "train_networks", "cached_train",
           "rebuild", "clear_network_cache"]

#: One independent random stream per purpose, spawned from ``random_state``.
SEED_PURPOSES = ("calibration_split", "autoencoder_init", "autoencoder_training",
                 "discriminator_init", "unet_init", "diffusion_training", "inference")

_MEMORY_CACHE = collections.OrderedDict()
_MEMORY_CACHE_SIZE = 4
_CACHE_LOCK = threading.Lock()
_KEY_LOCKS = {}


def clear_network_cache() -> None:
    """Forget the networks kept in memory for re-use by later fits in this process.

    Fitting keeps the last few trained networks in memory keyed by training images and
    training-time parameters, so that a grid search over inference-time parameters trains
    once. Call this to free that memory.

    Examples
    --------
    >>> clear_network_cache()
    """
    with _CACHE_LOCK:
        _MEMORY_CACHE.clear()


def resolve_seed(random_state):
    """The integer seed of ``random_state``, or ``None`` when any seed will do.

    Parameters
    ----------
    random_state : None, int, numpy RandomState or Generator
        ``None``: any seed (resolved when training). A non-negative int is used as it is
        (no truncation: ``2**31`` and ``0`` are different seeds). A RandomState or
        Generator is advanced to draw a 63-bit seed.

    Returns
    -------
    seed : int or None

    Raises
    ------
    TypeError, ValueError
        For other types or negative integers.
    """
    if random_state is None:
        return None
    if isinstance(random_state, (bool, np.bool_)):
        raise TypeError("random_state must be None, an int, a numpy RandomState or Generator, "
                        "got bool.")
    if isinstance(random_state, (int, np.integer)):
        if random_state < 0:
            raise ValueError(f"random_state must be a non-negative integer, got {random_state}.")
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2 ** 63 - 1, dtype=np.int64))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2 ** 63 - 1))
    raise TypeError(
        f"random_state must be None, an int, a numpy RandomState or Generator, got "
        f"{type(random_state).__name__}."
    )


def seed_streams(seed: int) -> dict:
    """One 63-bit seed per purpose of :data:`SEED_PURPOSES`, independent streams of ``seed``.

    Parameters
    ----------
    seed : int
        Non-negative master seed.

    Returns
    -------
    seeds : dict of str to int

    Examples
    --------
    >>> seeds = seed_streams(0)
    >>> sorted(seeds) == sorted(SEED_PURPOSES), len(set(seeds.values()))
    (True, 7)
    """
    children = np.random.SeedSequence(int(seed)).spawn(len(SEED_PURPOSES))
    return {name: int(child.generate_state(1, np.uint64)[0] >> np.uint64(1))
            for name, child in zip(SEED_PURPOSES, children)}


def rebuild(cls, config, state):
    """A network rebuilt from its config and CPU weights (never reads torch's global RNG).

    The module is built on the meta device and the weights are assigned (copied), so the
    returned module shares no storage with ``state``.

    Parameters
    ----------
    cls : type
        ``BinaryAutoencoder`` or ``EpsUNet``.
    config : dict
        The module's ``config``.
    state : dict of str to tensor or ndarray
        Its state dict.

    Returns
    -------
    module : torch.nn.Module
        In eval mode, without gradients, on the CPU.
    """
    with torch.device("meta"):
        module = cls(**{k: _as_tuple(v) for k, v in config.items()})
    weights = {k: (torch.from_numpy(np.array(v)) if not isinstance(v, torch.Tensor)
                   else v.detach().to("cpu").clone()) for k, v in state.items()}
    module.load_state_dict(weights, assign=True)
    return module.eval().requires_grad_(False)


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list) else value


def split_calibration(n_images: int, fraction: float, seed: int):
    """Indices ``(train, calibration)`` of a healthy set; calibration may be empty.

    Parameters
    ----------
    n_images : int
        Number of healthy images.
    fraction : float
        Share held out for calibration.
    seed : int
        Seed of the split (the ``"calibration_split"`` stream).

    Returns
    -------
    train, calibration : ndarray of int
        Sorted indices; ``calibration`` is empty when too few images are left.
    """
    n_cal = int(round(fraction * n_images))
    if n_cal == 0 or n_images - n_cal < 1:
        return np.arange(n_images), np.arange(0)
    order = np.random.default_rng(seed).permutation(n_images)
    return np.sort(order[n_cal:]), np.sort(order[:n_cal])


def train_networks(X, config, device, precision, verbose=0, checkpoint_dir=None,
                   checkpoint_every=500):
    """Split, train the autoencoder, then the diffusion model on its latents; CPU states.

    A pure function of ``(X, config, device, precision)`` once ``config["seed"]`` is an
    integer, so it can be cached by :class:`joblib.Memory`. With ``config["seed"] = None``
    a fresh seed is drawn and returned. ``verbose``, ``checkpoint_dir`` and
    ``checkpoint_every`` do not change the result.

    Parameters
    ----------
    X : ndarray of shape (n, c, h, w), float32
        Healthy images (training and calibration).
    config : dict
        Training-time parameters plus ``"seed"`` and ``"key"``.
    device : str
        Device type to train on.
    precision : str
        Autocast precision.
    verbose : int, default=0
        Progress bars.
    checkpoint_dir : path-like, default=None
        Where training checkpoints go (resume after an interruption).
    checkpoint_every : int, default=500
        Steps between checkpoints.

    Returns
    -------
    networks : dict
        ``seed``, ``calibration_indices``, ``n_train``, the networks' configs and CPU
        states, and the loss ``history``.
    """
    device = torch.device(device)
    seed = config["seed"]
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(1))
    seeds = seed_streams(seed)
    train_idx, cal_idx = split_calibration(X.shape[0], config["calibration_fraction"],
                                           seeds["calibration_split"])
    X_train = X[train_idx]
    n_channels = X.shape[1]
    ae = build_autoencoder(config["preset"], n_channels, seed=seeds["autoencoder_init"],
                           **(config["autoencoder_params"] or {}))
    unet = build_unet(config["preset"], ae.latent_channels, seed=seeds["unet_init"],
                      **(config["unet_params"] or {}))
    check_network_sizes(X.shape[2:], ae, unet)
    key = config["key"]

    def checkpoint(name):
        if checkpoint_dir is None:
            return None
        return os.path.join(os.fspath(checkpoint_dir), f"{key[:16]}-{name}.pt")

    perceptual = None
    if config["perceptual_weight"]:
        from .nn.lpips import LPIPS

        perceptual = LPIPS(net=config["perceptual_net"])
    discriminator = None
    if config["adversarial_weight"]:
        discriminator = build_discriminator(config["preset"], n_channels,
                                            seed=seeds["discriminator_init"])
    every = checkpoint_every if checkpoint_dir is not None else None
    ae_result = training.train_autoencoder(
        ae, X_train, n_iterations=config["autoencoder_iterations"],
        batch_size=min(config["autoencoder_batch_size"], X_train.shape[0]),
        learning_rate=config["autoencoder_learning_rate"],
        reconstruction=config["reconstruction_loss"],
        binarization_weight=config["binarization_weight"],
        perceptual_loss=perceptual, perceptual_weight=config["perceptual_weight"],
        discriminator=discriminator, adversarial_weight=config["adversarial_weight"],
        adversarial_start=config["adversarial_start"], ema_rate=config["autoencoder_ema"],
        device=device, precision=precision, seed=seeds["autoencoder_training"],
        verbose=verbose, checkpoint_path=checkpoint("autoencoder"), checkpoint_every=every,
    )
    ae = ae_result.inference_model
    probabilities = training.encode_dataset(ae, X_train, device=device, precision=precision)
    schedule = make_schedule(config["noise_schedule"], config["diffusion_steps"],
                             config["forward_process"])
    # The held-out calibration images give the validation-loss curve of the history.
    validation = (training.encode_dataset(ae, X[cal_idx], device=device, precision=precision)
                  if len(cal_idx) else None)
    diff_result = training.train_diffusion(
        unet, probabilities, schedule=schedule, n_iterations=config["diffusion_iterations"],
        validation_probabilities=validation,
        batch_size=min(config["diffusion_batch_size"], X_train.shape[0]),
        learning_rate=config["diffusion_learning_rate"], ema_rate=config["diffusion_ema"],
        device=device, precision=precision, seed=seeds["diffusion_training"],
        verbose=verbose, checkpoint_path=checkpoint("diffusion"), checkpoint_every=every,
    )
    unet = diff_result.inference_model
    return {
        "seed": int(seed),
        "calibration_indices": cal_idx,
        "n_train": int(len(train_idx)),
        "autoencoder_config": ae.config,
        "autoencoder_state": {k: v.detach().cpu() for k, v in ae.state_dict().items()},
        "unet_config": unet.config,
        "unet_state": {k: v.detach().cpu() for k, v in unet.state_dict().items()},
        "history": {"autoencoder": ae_result.history, "diffusion": diff_result.history},
    }


def check_network_sizes(spatial_shape, ae, unet):
    """Raise a ``ValueError`` when images or latents do not fit the networks' strides."""
    factor = ae.downsampling_factor
    if spatial_shape[0] % factor or spatial_shape[1] % factor:
        raise ValueError(
            f"Images of size {tuple(spatial_shape)} are not divisible by the autoencoder's "
            f"downsampling factor {factor}; pad them (skberdiff.preprocessing.PadCrop)."
        )
    latent_hw = (spatial_shape[0] // factor, spatial_shape[1] // factor)
    if latent_hw[0] % unet.downsampling_factor or latent_hw[1] % unet.downsampling_factor:
        raise ValueError(
            f"The latent size {latent_hw} is not divisible by the UNet's downsampling factor "
            f"{unet.downsampling_factor}; use larger images or fewer UNet levels "
            "(unet_params={'channel_multipliers': ...})."
        )


def cache_key(X, config, device_type, precision) -> str:
    """SHA-256 of the healthy images, the training config, device type and precision."""
    payload = joblib.hash(X) + json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256((payload + device_type + precision).encode()).hexdigest()


def cached_train(X, config, device, precision, memory, verbose=0, checkpoint_dir=None,
                 checkpoint_every=500):
    """:func:`train_networks` through the in-memory cache and ``memory`` (joblib.Memory).

    Thread-safe: concurrent fits with the same key train once, the others wait for it.

    Parameters
    ----------
    X : ndarray of shape (n, c, h, w), float32
        Healthy images.
    config : dict
        Training-time parameters and ``"seed"`` (int or None); ``"key"`` is added.
    device : torch.device
        Training device.
    precision : str
        Autocast precision.
    memory : joblib.Memory
        On-disk cache (``Memory(None)`` caches nothing).
    verbose, checkpoint_dir, checkpoint_every
        Passed to :func:`train_networks`.

    Returns
    -------
    networks : dict
        See :func:`train_networks`.
    """
    config = dict(config)
    config.pop("key", None)
    key = cache_key(X, config, device.type, precision)
    config["key"] = key
    with _CACHE_LOCK:
        key_lock = _KEY_LOCKS.setdefault(key, threading.Lock())
    with key_lock:
        with _CACHE_LOCK:
            if key in _MEMORY_CACHE:
                _MEMORY_CACHE.move_to_end(key)
                return _MEMORY_CACHE[key]
        train = memory.cache(train_networks, ignore=["verbose", "checkpoint_dir",
                                                     "checkpoint_every"])
        networks = train(X, config, str(device.type), precision, verbose=verbose,
                         checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every)
        with _CACHE_LOCK:
            _MEMORY_CACHE[key] = networks
            while len(_MEMORY_CACHE) > _MEMORY_CACHE_SIZE:
                _MEMORY_CACHE.popitem(last=False)
    return networks


def networks_from_state(networks):
    """Fresh (autoencoder, unet) modules rebuilt from a :func:`train_networks` result."""
    return (rebuild(BinaryAutoencoder, networks["autoencoder_config"],
                    networks["autoencoder_state"]),
            rebuild(EpsUNet, networks["unet_config"], networks["unet_state"]))

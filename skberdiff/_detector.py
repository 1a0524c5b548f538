"""MaskedBernoulliDiffusionDetector: the scikit-learn estimator.

The estimator only validates, orchestrates and thresholds; the networks live in
:mod:`skberdiff.nn`, the diffusion math in :mod:`skberdiff.diffusion`, the training loops in
:mod:`skberdiff.training` and the map post-processing in :mod:`skberdiff.postprocessing`.
"""

import collections
import hashlib
import json
import numbers
import os
import warnings
from dataclasses import dataclass

import joblib
import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted, check_memory

from . import postprocessing, training
from ._device import autocast, check_precision, resolve_device
from ._progress import progress
from ._validation import check_images, check_masks, check_noise_level, check_probability
from .diffusion import (
    STREAM_ENCODE,
    CounterRNG,
    make_schedule,
    masked_restoration,
    restoration_timesteps,
)
from .exceptions import DeviceFallbackWarning, UnsafeModelFileError
from .nn import BinaryAutoencoder, EpsUNet, build_autoencoder, build_discriminator, build_unet

__all__ = ["MaskedBernoulliDiffusionDetector", "DetectionResult", "LatentRestoration",
           "clear_network_cache", "load"]

# Parameters that change the trained networks: they, the training images, the training
# device type and precision form the cache key. Nothing else may enter it.
TRAINING_PARAMS = (
    "preset", "autoencoder_params", "unet_params", "diffusion_steps", "noise_schedule",
    "forward_process", "reconstruction_loss", "binarization_weight", "perceptual_weight",
    "perceptual_net", "adversarial_weight", "adversarial_start", "autoencoder_iterations",
    "diffusion_iterations", "autoencoder_batch_size", "diffusion_batch_size",
    "autoencoder_learning_rate", "diffusion_learning_rate", "autoencoder_ema", "diffusion_ema",
    "calibration_fraction", "random_state",
)
# Parameters that only change how a trained model is applied: never retrain for them.
INFERENCE_PARAMS = (
    "noise_level", "mask_threshold", "n_steps", "final_step", "image_score", "postprocessing",
    "median_size", "min_component_size", "pixel_threshold", "pixel_quantile", "contamination",
    "batch_size",
)
INFRASTRUCTURE_PARAMS = (
    "image_shape", "device", "precision", "compile", "memory", "verbose", "checkpoint_dir",
)
_COMPILE_MODES = (False, True, "default", "reduce-overhead", "max-autotune")

_IMAGE_SCORES = ("masked_fraction", "map_mean", "map_max")
_OUTPUTS = ("score", "anomaly_map", "mask", "reconstruction")
_MODEL_FORMAT = "skberdiff-model"
_MODEL_VERSION = 1


# --------------------------------------------------------------------------- training cache
_NETWORK_CACHE = collections.OrderedDict()
_NETWORK_CACHE_SIZE = 4


def clear_network_cache() -> None:
    """Forget the networks kept in memory for re-use by later fits in this process.

    Fitting keeps the last few trained networks in memory keyed by training images and
    training-time parameters, so that a grid search over inference-time parameters trains
    once. Call this to free that memory.

    Examples
    --------
    >>> clear_network_cache()
    """
    _NETWORK_CACHE.clear()


def _train_networks(X, config, device, precision, verbose=0, checkpoint_dir=None):
    """Train the autoencoder, then the diffusion model on its latents; return CPU states.

    A pure function of ``(X, config, device, precision)``, so it can be cached by
    :class:`joblib.Memory`. ``verbose`` and ``checkpoint_dir`` do not change the result.
    """
    device = torch.device(device)
    seed = int(config["seed"])
    n_channels = X.shape[1]
    ae = build_autoencoder(config["preset"], n_channels, seed=seed,
                           **(config["autoencoder_params"] or {}))
    unet = build_unet(config["preset"], ae.latent_channels, seed=seed + 1,
                      **(config["unet_params"] or {}))
    if X.shape[2] % ae.downsampling_factor or X.shape[3] % ae.downsampling_factor:
        raise ValueError(
            f"Images of size {X.shape[2:]} are not divisible by the autoencoder's downsampling "
            f"factor {ae.downsampling_factor}; pad them (skberdiff.preprocessing.PadCrop)."
        )
    latent_hw = (X.shape[2] // ae.downsampling_factor, X.shape[3] // ae.downsampling_factor)
    if latent_hw[0] % unet.downsampling_factor or latent_hw[1] % unet.downsampling_factor:
        raise ValueError(
            f"The latent size {latent_hw} is not divisible by the UNet's downsampling factor "
            f"{unet.downsampling_factor}; use larger images or fewer UNet levels "
            "(unet_params={'channel_multipliers': ...})."
        )
    key = config["key"]

    def checkpoint(name):
        if checkpoint_dir is None:
            return None
        return os.path.join(os.fspath(checkpoint_dir), f"{key[:16]}-{name}.pt")

    perceptual = None
    if config["perceptual_weight"]:
        from .losses import LPIPS

        perceptual = LPIPS(net=config["perceptual_net"])
    discriminator = None
    if config["adversarial_weight"]:
        discriminator = build_discriminator(config["preset"], n_channels, seed=seed + 2)
    ae_result = training.train_autoencoder(
        ae, X, n_iterations=config["autoencoder_iterations"],
        batch_size=min(config["autoencoder_batch_size"], X.shape[0]),
        learning_rate=config["autoencoder_learning_rate"],
        reconstruction=config["reconstruction_loss"],
        binarization_weight=config["binarization_weight"],
        perceptual_loss=perceptual, perceptual_weight=config["perceptual_weight"],
        discriminator=discriminator, adversarial_weight=config["adversarial_weight"],
        adversarial_start=config["adversarial_start"], ema_rate=config["autoencoder_ema"],
        device=device, precision=precision, seed=seed, verbose=verbose,
        checkpoint_path=checkpoint("autoencoder"),
        checkpoint_every=500 if checkpoint_dir is not None else None,
    )
    ae = ae_result.inference_model
    probabilities = training.encode_dataset(ae, X, device=device, precision=precision)
    diff_result = training.train_diffusion(
        unet, probabilities, schedule=make_schedule(config["noise_schedule"],
                                                    config["diffusion_steps"]),
        forward=config["forward_process"], n_iterations=config["diffusion_iterations"],
        batch_size=min(config["diffusion_batch_size"], X.shape[0]),
        learning_rate=config["diffusion_learning_rate"], ema_rate=config["diffusion_ema"],
        device=device, precision=precision, seed=seed + 1, verbose=verbose,
        checkpoint_path=checkpoint("diffusion"),
        checkpoint_every=500 if checkpoint_dir is not None else None,
    )
    unet = diff_result.inference_model
    return {
        "autoencoder_config": ae.config,
        "autoencoder_state": {k: v.detach().cpu() for k, v in ae.state_dict().items()},
        "unet_config": unet.config,
        "unet_state": {k: v.detach().cpu() for k, v in unet.state_dict().items()},
        "history": {"autoencoder": ae_result.history, "diffusion": diff_result.history},
    }


def _cached_train(X, config, device, precision, memory, verbose, checkpoint_dir):
    key = config["key"]
    if key in _NETWORK_CACHE:
        _NETWORK_CACHE.move_to_end(key)
        return _NETWORK_CACHE[key]
    train = memory.cache(_train_networks, ignore=["verbose", "checkpoint_dir"])
    networks = train(X, config, str(device.type), precision, verbose=verbose,
                     checkpoint_dir=checkpoint_dir)
    _NETWORK_CACHE[key] = networks
    while len(_NETWORK_CACHE) > _NETWORK_CACHE_SIZE:
        _NETWORK_CACHE.popitem(last=False)
    return networks


# --------------------------------------------------------------------------- results
@dataclass
class DetectionResult:
    """Everything one diffusion pass gives for a batch of images.

    Fields not requested from :meth:`MaskedBernoulliDiffusionDetector.detect` are ``None``.

    Attributes
    ----------
    score_samples : ndarray of shape (n,)
        Image-level normality score (higher = more normal).
    masked_fraction : ndarray of shape (n,)
        Share of masked latent entries, the paper's image-level anomaly score.
    anomaly_map : ndarray of shape (n, h, w), float32
        Post-processed pixel anomaly scores (higher = more anomalous).
    mask : ndarray of shape (n, h, w), bool
        Segmentation after thresholding and small-component removal.
    reconstruction : ndarray of shape (n, c, h, w), float32
        Pseudo-healthy reconstruction ``x_hat``.

    Examples
    --------
    >>> import numpy as np
    >>> result = DetectionResult(masked_fraction=np.array([0.1, 0.3]))
    >>> result.anomaly_map is None
    True
    """

    score_samples: np.ndarray | None = None
    masked_fraction: np.ndarray | None = None
    anomaly_map: np.ndarray | None = None
    mask: np.ndarray | None = None
    reconstruction: np.ndarray | None = None


@dataclass
class LatentRestoration:
    """Latent-level outputs of the masked restoration, for research use.

    Attributes
    ----------
    code : ndarray of shape (n, C, h, w), float32
        Binary code ``z ~ B(sigmoid(E(x)))`` of each input.
    probabilities : ndarray of shape (n, C, h, w), float32
        Encoder probabilities ``sigmoid(E(x))``.
    restored : ndarray of shape (n, C, h, w), float32
        Restored latent ``z_0`` (soft for ``final_step="reference"``).
    mask : ndarray of shape (n, C, h, w), bool
        Final mask ``M``.
    masked_fraction : ndarray of shape (n,)
        Share of masked entries.
    timesteps : list of int
        Times visited, ``L`` down to 0.
    mean_flip : ndarray of shape (n_steps, n)
        Mean predicted flip probability per step.
    step_masked_fraction : ndarray of shape (n_steps, n)
        Masked fraction after each step.

    Examples
    --------
    >>> import numpy as np
    >>> z = np.zeros((1, 2, 4, 4), np.float32)
    >>> res = LatentRestoration(code=z, probabilities=z, restored=z, mask=z > 0,
    ...                         masked_fraction=np.zeros(1), timesteps=[2, 1, 0],
    ...                         mean_flip=np.zeros((2, 1)), step_masked_fraction=np.zeros((2, 1)))
    >>> res.restored.shape
    (1, 2, 4, 4)
    """

    code: np.ndarray
    probabilities: np.ndarray
    restored: np.ndarray
    mask: np.ndarray
    masked_fraction: np.ndarray
    timesteps: list
    mean_flip: np.ndarray
    step_masked_fraction: np.ndarray


def _rebuild(cls, config, state):
    """Rebuild a network from its config and weights, leaving torch's global RNG alone.

    Module constructors draw initial weights from the global RNG; they are overwritten by
    ``state`` anyway, so the draw happens inside ``fork_rng``.
    """
    with torch.random.fork_rng(devices=[]):
        module = cls(**{k: _as_tuple(v) for k, v in config.items()})
    module.load_state_dict({k: torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor)
                            else v for k, v in state.items()})
    return module.eval().requires_grad_(False)


def _check_int(value, name, low, high=None, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}: {value!r}.")
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value}.")
    return int(value)


def _check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}.")
    return value


def _fresh_seed(random_state):
    """A 31-bit seed from ``random_state`` without touching numpy's global RNG."""
    if random_state is None:
        return int(np.random.default_rng().integers(2 ** 31 - 1))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return int(random_state) & 0x7FFFFFFF
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2 ** 31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2 ** 31 - 1))
    raise TypeError(
        f"random_state must be None, an int, a numpy RandomState or Generator, got "
        f"{type(random_state).__name__}."
    )


# --------------------------------------------------------------------------- estimator
class MaskedBernoulliDiffusionDetector(OutlierMixin, BaseEstimator):
    """Unsupervised pixel-level anomaly detection with masked Bernoulli diffusion.

    A binarizing autoencoder compresses each image into a binary latent; a Bernoulli
    diffusion model is trained on the latents of healthy images. At inference the latent of a
    new image is noised for ``noise_level`` steps and denoised back; entries whose predicted
    flip probability exceeds ``mask_threshold`` are replaced by the model's healthy estimate
    and the rest are stitched back from the input (Algorithm 1 of Wolleb et al., 2024). The
    decoded pseudo-healthy image gives a pixel anomaly map; the share of masked latent entries
    gives an image-level score.

    The detector is a novelty detector: fit it on healthy images, apply it to new ones.
    Parameters come in three groups. Changing a *training-time* parameter retrains the
    networks; *inference-time* parameters never do (a grid search over them trains once);
    *infrastructure* parameters choose devices, caching and logging.

    Parameters
    ----------
    preset : {"paper", "small", "tiny"}, default="small"
        Architecture preset (training-time). ``"paper"`` reproduces the paper's networks
        (UNet 36.0M, autoencoder 4.1M parameters, 256x256 images -> 128x32x32 latents) and
        needs a GPU; ``"small"`` suits 64x64 to 128x128 images on a CPU; ``"tiny"`` fits
        1-channel 32x32 images in seconds (tests, examples).
    autoencoder_params : dict, default=None
        Overrides of the autoencoder preset, e.g. ``{"latent_channels": 32}``
        (training-time; see :class:`skberdiff.nn.BinaryAutoencoder`).
    unet_params : dict, default=None
        Overrides of the UNet preset (training-time; see :class:`skberdiff.nn.EpsUNet`).
    diffusion_steps : int, default=1000
        Number of diffusion steps ``T`` (training-time).
    noise_schedule : {"linear", "cosine"}, default="linear"
        Beta schedule (training-time); the paper uses linear.
    forward_process : {"paper", "reference"}, default="paper"
        ``"paper"``: symmetric flips ``B((1 - abar_t) / 2)``; ``"reference"``: the public
        code's ``B(abar_t z_0)`` (training-time; also used for noising at inference).
    reconstruction_loss : {"mse", "l1"}, default="mse"
        Autoencoder reconstruction loss (training-time).
    binarization_weight : float, default=0.02
        Weight of ``mean(p (1 - p))`` on the encoder's probabilities (training-time).
    perceptual_weight : float, default=0.0
        Weight of the LPIPS perceptual loss (training-time; needs the LPIPS weights, see
        :class:`skberdiff.losses.LPIPS`).
    perceptual_net : {"alex", "vgg"}, default="alex"
        LPIPS backbone (training-time).
    adversarial_weight : float, default=0.0
        Weight of the PatchGAN hinge loss with adaptive balancing (training-time).
    adversarial_start : int, default=0
        First autoencoder step with the adversarial term (training-time).
    autoencoder_iterations : int, default=2000
        Autoencoder optimiser steps (training-time; paper: 12,000).
    diffusion_iterations : int, default=4000
        Diffusion optimiser steps (training-time; paper: 200,000).
    autoencoder_batch_size : int, default=16
        Autoencoder batch size (training-time).
    diffusion_batch_size : int, default=32
        Diffusion batch size (training-time; paper: 32).
    autoencoder_learning_rate : float, default=2e-4
        Adam learning rate of the autoencoder (training-time).
    diffusion_learning_rate : float, default=1e-4
        Adam learning rate of the diffusion model (training-time; paper: 1e-4).
    autoencoder_ema : float or None, default=0.995
        EMA decay of the autoencoder weights used for inference (training-time).
    diffusion_ema : float or None, default=0.999
        EMA decay of the UNet weights used for inference (training-time).
    calibration_fraction : float, default=0.1
        Share of the healthy training images held out from training to calibrate
        ``offset_`` and ``pixel_threshold_`` (training-time). 0 calibrates on the training
        images themselves (optimistic thresholds).
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, batch order, training noise and inference noise
        (training-time). Pass an int for reproducible results.
    noise_level : int, default=200
        ``L``: number of noising steps (inference-time; paper best: 200).
    mask_threshold : float, default=0.5
        ``P``: flip probability above which a latent entry is masked in
        (inference-time; paper best: 0.5). 0 disables the mask (plain denoising).
    n_steps : int or None, default=None
        Denoising steps; ``None`` runs all ``L`` steps as the paper; fewer steps skip
        through the exact skip-step posterior (inference-time; faster, approximate).
    final_step : {"paper", "reference"}, default="paper"
        Last step as Algorithm 1 (stitched, binary) or as the public code (soft,
        unstitched) (inference-time).
    image_score : {"masked_fraction", "map_mean", "map_max"}, default="masked_fraction"
        Image-level score: share of masked latent entries (paper), or the mean / maximum of
        the anomaly map (inference-time). ``score_samples`` returns its negative.
    postprocessing : {"paper", "reference"}, default="paper"
        Anomaly-map recipe (inference-time). ``"paper"``: ``sum_c (x - x_hat)^2``, median
        filter, threshold, drop components under ``min_component_size`` pixels.
        ``"reference"``: the public evaluation code (per-channel median, 1-99 percentile
        clip, per-image min-max, threshold 0.5, drop components of at most 15 pixels).
    median_size : int, default=5
        Median filter size (inference-time).
    min_component_size : int or None, default=None
        Connected components smaller than this are removed from masks; ``None`` means 10
        for ``"paper"`` and (at most) 15 for ``"reference"`` (inference-time).
    pixel_threshold : "auto" or float, default="auto"
        Threshold on the anomaly map for :meth:`predict_mask`. ``"auto"`` uses the
        ``pixel_quantile`` of healthy held-out maps over foreground pixels for ``"paper"``
        and 0.5 for ``"reference"`` (inference-time).
    pixel_quantile : float, default=0.99
        Quantile used by ``pixel_threshold="auto"`` (inference-time).
    contamination : float, default=0.05
        Expected share of anomalous images among healthy-looking ones: ``offset_`` is the
        ``contamination`` quantile of held-out healthy scores (inference-time).
    batch_size : int, default=16
        Images per inference batch; halved automatically when a GPU runs out of memory.
        Results do not depend on it beyond floating-point rounding (inference-time).
    image_shape : tuple of int (c, h, w) or None, default=None
        Shape of one image when ``X`` is given flattened as ``(n, c*h*w)``.
    device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when available, else the CPU; resolved at each use and never
        rewritten.
    precision : {"fp32", "tf32", "bf16", "fp16"}, default="fp32"
        Autocast precision for training and inference (``"fp16"`` needs CUDA; ``"tf32"``
        turns on TF32 tensor-core math for fp32 matmuls and convolutions on CUDA and is
        plain fp32 elsewhere).
    compile : bool or {"default", "reduce-overhead", "max-autotune"}, default=False
        ``torch.compile`` the UNet for inference. ``True`` means ``"default"`` (with
        inductor weight freezing: about 1.5-2x faster sampling on a CPU);
        ``"reduce-overhead"`` also captures CUDA graphs, the largest gain for small batches
        on a GPU. Each new batch shape compiles once (one to two minutes on a CPU); on CUDA
        the last, smaller batch is padded to ``batch_size`` so one graph serves a whole data
        set. Results match the eager UNet up to floating-point rounding.
    memory : None, str or joblib.Memory, default=None
        Where to cache trained networks on disk (keyed by training images and
        training-time parameters). Independently, the last few trained networks are
        kept in memory for this process (see :func:`clear_network_cache`).
    verbose : int, default=0
        0 is silent; 1 shows progress bars.
    checkpoint_dir : str or path-like, default=None
        Directory for training checkpoints; an interrupted fit resumes from them.

    Attributes
    ----------
    autoencoder_ : skberdiff.nn.BinaryAutoencoder
        Trained autoencoder (EMA weights).
    diffusion_model_ : skberdiff.nn.EpsUNet
        Trained eps-UNet (EMA weights).
    schedule_ : skberdiff.diffusion.BernoulliSchedule
        Noise schedule.
    image_shape_ : tuple of int
        ``(c, h, w)`` seen in fit.
    n_features_in_ : int
        ``c * h * w``.
    n_train_samples_ : int
        Healthy images the networks were trained on.
    history_ : dict
        Loss histories ``{"autoencoder": [...], "diffusion": [...]}``.
    offset_ : float
        Threshold on ``score_samples``: ``decision_function = score_samples - offset_``.
    pixel_threshold_ : float
        Threshold applied to anomaly maps by :meth:`predict_mask`.
    seed_ : int
        Seed actually used (drawn from ``random_state``).
    device_ : str
        Device the networks were trained on.

    See Also
    --------
    skberdiff.metrics.dice_scorer : Dice scorer for :class:`~sklearn.model_selection.GridSearchCV`.
    skberdiff.preprocessing.PadCrop : Pad images to a size the autoencoder accepts.

    Notes
    -----
    ``fit`` caches the trained networks, so ``clone(det).set_params(noise_level=...)`` and a
    new ``fit`` on the same images reuse them and only recalibrate thresholds. Inference noise
    comes from a counter-based generator keyed by ``seed_`` and each image's content: the
    output for an image does not depend on the other images, their order, ``batch_size``
    (beyond floating-point rounding) or the device's RNG.

    References
    ----------
    .. [1] J. Wolleb, F. Bieder, P. Friedrich, H. Zhang, A. Durrer, P. C. Cattin,
       "Binary Noise for Binary Tasks: Masked Bernoulli Diffusion for Unsupervised Anomaly
       Detection", MICCAI 2024.

    Examples
    --------
    >>> import numpy as np
    >>> from skberdiff import MaskedBernoulliDiffusionDetector
    >>> from skberdiff.datasets import make_toy_images
    >>> X, _ = make_toy_images(24, image_size=32, random_state=0)
    >>> det = MaskedBernoulliDiffusionDetector(
    ...     preset="tiny", autoencoder_iterations=20, diffusion_iterations=20,
    ...     diffusion_steps=100, noise_level=20, device="cpu", random_state=0).fit(X)
    >>> det.predict(X[:3]).shape
    (3,)
    >>> det.anomaly_map(X[:2]).shape
    (2, 32, 32)
    """

    def __init__(
        self,
        *,
        preset="small",
        autoencoder_params=None,
        unet_params=None,
        diffusion_steps=1000,
        noise_schedule="linear",
        forward_process="paper",
        reconstruction_loss="mse",
        binarization_weight=0.02,
        perceptual_weight=0.0,
        perceptual_net="alex",
        adversarial_weight=0.0,
        adversarial_start=0,
        autoencoder_iterations=2000,
        diffusion_iterations=4000,
        autoencoder_batch_size=16,
        diffusion_batch_size=32,
        autoencoder_learning_rate=2e-4,
        diffusion_learning_rate=1e-4,
        autoencoder_ema=0.995,
        diffusion_ema=0.999,
        calibration_fraction=0.1,
        random_state=None,
        noise_level=200,
        mask_threshold=0.5,
        n_steps=None,
        final_step="paper",
        image_score="masked_fraction",
        postprocessing="paper",
        median_size=5,
        min_component_size=None,
        pixel_threshold="auto",
        pixel_quantile=0.99,
        contamination=0.05,
        batch_size=16,
        image_shape=None,
        device="auto",
        precision="fp32",
        compile=False,
        memory=None,
        verbose=0,
        checkpoint_dir=None,
    ):
        self.preset = preset
        self.autoencoder_params = autoencoder_params
        self.unet_params = unet_params
        self.diffusion_steps = diffusion_steps
        self.noise_schedule = noise_schedule
        self.forward_process = forward_process
        self.reconstruction_loss = reconstruction_loss
        self.binarization_weight = binarization_weight
        self.perceptual_weight = perceptual_weight
        self.perceptual_net = perceptual_net
        self.adversarial_weight = adversarial_weight
        self.adversarial_start = adversarial_start
        self.autoencoder_iterations = autoencoder_iterations
        self.diffusion_iterations = diffusion_iterations
        self.autoencoder_batch_size = autoencoder_batch_size
        self.diffusion_batch_size = diffusion_batch_size
        self.autoencoder_learning_rate = autoencoder_learning_rate
        self.diffusion_learning_rate = diffusion_learning_rate
        self.autoencoder_ema = autoencoder_ema
        self.diffusion_ema = diffusion_ema
        self.calibration_fraction = calibration_fraction
        self.random_state = random_state
        self.noise_level = noise_level
        self.mask_threshold = mask_threshold
        self.n_steps = n_steps
        self.final_step = final_step
        self.image_score = image_score
        self.postprocessing = postprocessing
        self.median_size = median_size
        self.min_component_size = min_component_size
        self.pixel_threshold = pixel_threshold
        self.pixel_quantile = pixel_quantile
        self.contamination = contamination
        self.batch_size = batch_size
        self.image_shape = image_shape
        self.device = device
        self.precision = precision
        self.compile = compile
        self.memory = memory
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir

    # ------------------------------------------------------------------ parameter checks
    def _check_training_params(self):
        _check_choice(self.preset, "preset", ("paper", "small", "tiny"))
        for name in ("autoencoder_params", "unet_params"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, dict):
                raise TypeError(f"{name} must be a dict or None, got {type(value).__name__}.")
        _check_int(self.diffusion_steps, "diffusion_steps", 1)
        _check_choice(self.noise_schedule, "noise_schedule", ("linear", "cosine"))
        _check_choice(self.forward_process, "forward_process", ("paper", "reference"))
        _check_choice(self.reconstruction_loss, "reconstruction_loss", ("mse", "l1"))
        _check_choice(self.perceptual_net, "perceptual_net", ("alex", "vgg"))
        for name in ("binarization_weight", "perceptual_weight", "adversarial_weight"):
            check_probability(getattr(self, name), name, high=np.inf)
        for name in ("autoencoder_learning_rate", "diffusion_learning_rate"):
            if check_probability(getattr(self, name), name, high=np.inf) == 0:
                raise ValueError(f"{name} must be positive.")
        _check_int(self.adversarial_start, "adversarial_start", 0)
        for name in ("autoencoder_iterations", "diffusion_iterations", "autoencoder_batch_size",
                     "diffusion_batch_size"):
            _check_int(getattr(self, name), name, 1)
        for name in ("autoencoder_ema", "diffusion_ema"):
            value = getattr(self, name)
            if value is not None and check_probability(value, name) >= 1.0:
                raise ValueError(f"{name} must be in [0, 1) or None, got {value}.")
        check_probability(self.calibration_fraction, "calibration_fraction", high=0.9)

    def _check_inference_params(self):
        check_noise_level(self.noise_level, self.diffusion_steps)
        check_probability(self.mask_threshold, "mask_threshold")
        if self.n_steps is not None:
            _check_int(self.n_steps, "n_steps", 1, int(self.noise_level))
        _check_choice(self.final_step, "final_step", ("paper", "reference"))
        _check_choice(self.image_score, "image_score", _IMAGE_SCORES)
        _check_choice(self.postprocessing, "postprocessing", ("paper", "reference"))
        _check_int(self.median_size, "median_size", 1)
        _check_int(self.min_component_size, "min_component_size", 0, allow_none=True)
        if not (isinstance(self.pixel_threshold, str) and self.pixel_threshold == "auto"):
            if isinstance(self.pixel_threshold, str):
                raise ValueError(
                    f"pixel_threshold must be 'auto' or a number, got {self.pixel_threshold!r}."
                )
            check_probability(self.pixel_threshold, "pixel_threshold", low=-np.inf, high=np.inf)
        check_probability(self.pixel_quantile, "pixel_quantile")
        check_probability(self.contamination, "contamination", high=0.5)
        _check_int(self.batch_size, "batch_size", 1)
        _check_int(self.verbose, "verbose", 0)
        if not any(self.compile is m or (isinstance(m, str) and self.compile == m)
                   for m in _COMPILE_MODES):
            raise ValueError(f"compile must be one of {_COMPILE_MODES}, got {self.compile!r}.")

    def _training_config(self, seed):
        config = {name: getattr(self, name) for name in TRAINING_PARAMS
                  if name not in ("random_state", "calibration_fraction")}
        config["seed"] = seed
        return config

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Train the autoencoder and the diffusion model on healthy images.

        Parameters
        ----------
        X : array-like of shape (n, c, h, w) or (n, c*h*w)
            Training images (healthy, or mixed when ``y`` says which are anomalous).
            Flattened rows need ``image_shape``.
        y : array-like of shape (n, h, w) or (n,), default=None
            Optional ground truth: pixel masks (an image is used only if its mask is empty)
            or image labels with 1/True = anomalous, 0/False = normal (only 0-labelled images
            are used). Lets a search pass mixed data.

        Returns
        -------
        self : MaskedBernoulliDiffusionDetector
            The fitted detector.
        """
        self._check_training_params()
        self._check_inference_params()
        if self.image_shape is not None:
            shape = tuple(self.image_shape)
            if len(shape) != 3 or not all(isinstance(s, numbers.Integral) and s > 0
                                          for s in shape):
                raise ValueError(f"image_shape must be (c, h, w) of positive ints, got "
                                 f"{self.image_shape!r}.")
        X = check_images(X, image_shape=self.image_shape)
        healthy = self._healthy_selection(X, y)
        X_healthy = X[healthy]
        if X_healthy.shape[0] == 0:
            raise ValueError("y marks every image as anomalous: nothing healthy to train on.")
        device = resolve_device(self.device)
        precision = check_precision(self.precision, device)
        self.seed_ = _fresh_seed(self.random_state)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Under torchrun every process must hold out the same calibration images and
            # draw the same batches and noise: take rank 0's seed.
            seed = [self.seed_]
            torch.distributed.broadcast_object_list(seed, src=0)
            self.seed_ = int(seed[0])
        X_train, X_cal = self._split_calibration(X_healthy)
        config = self._training_config(self.seed_)
        config["key"] = hashlib.sha256(
            (joblib.hash(X_train) + json.dumps(config, sort_keys=True, default=str)
             + device.type + precision).encode()
        ).hexdigest()
        networks = _cached_train(X_train, config, device, precision,
                                 check_memory(self.memory), int(self.verbose),
                                 self.checkpoint_dir)
        self._set_networks(networks, device)
        self.device_ = str(device)
        self.schedule_ = make_schedule(self.noise_schedule, self.diffusion_steps)
        self.image_shape_ = tuple(int(s) for s in X.shape[1:])
        self.n_features_in_ = int(np.prod(self.image_shape_))
        self.n_train_samples_ = int(X_train.shape[0])
        self.history_ = networks["history"]
        self._calibrate(X_cal)
        return self

    def _healthy_selection(self, X, y):
        if y is None:
            return np.ones(X.shape[0], dtype=bool)
        y_arr = np.asarray(y)
        if y_arr.ndim == 1:
            if y_arr.shape[0] != X.shape[0]:
                raise ValueError(f"y has {y_arr.shape[0]} labels but X has {X.shape[0]} images.")
            if y_arr.dtype == object or not (np.issubdtype(y_arr.dtype, np.number)
                                             or np.issubdtype(y_arr.dtype, np.bool_)):
                raise TypeError(f"y labels must be numbers or booleans, got {y_arr.dtype}.")
            values = set(np.unique(y_arr).tolist())
            if not values <= {0, 1}:
                raise ValueError(
                    "Image labels y must be 1/True for anomalous and 0/False for normal images, "
                    f"got values {sorted(values)}. (predict's +1/-1 convention is not accepted "
                    "here: pass y == -1.)"
                )
            return y_arr == 0
        masks = check_masks(y_arr, n_samples=X.shape[0], spatial_shape=X.shape[2:])
        return ~masks.reshape(masks.shape[0], -1).any(axis=1)

    def _split_calibration(self, X):
        n_cal = int(round(self.calibration_fraction * X.shape[0]))
        if n_cal == 0 or X.shape[0] - n_cal < 1:
            if self.calibration_fraction > 0:
                warnings.warn(
                    f"Too few healthy images ({X.shape[0]}) to hold out "
                    f"calibration_fraction={self.calibration_fraction}; thresholds are "
                    "calibrated on the training images and may be optimistic.",
                    UserWarning, stacklevel=3)
            return X, X
        order = np.random.default_rng(self.seed_).permutation(X.shape[0])
        return X[np.sort(order[n_cal:])], X[np.sort(order[:n_cal])]

    def _set_networks(self, networks, device):
        self.autoencoder_ = _rebuild(BinaryAutoencoder, networks["autoencoder_config"],
                                     networks["autoencoder_state"]).to(device)
        self.diffusion_model_ = _rebuild(EpsUNet, networks["unet_config"],
                                         networks["unet_state"]).to(device)

    # ------------------------------------------------------------------ calibration
    def calibrate(self, X, y=None):
        """Recompute ``offset_`` and ``pixel_threshold_`` on healthy images.

        Use it after changing inference-time parameters with ``set_params`` on a fitted
        detector, or to calibrate on a dedicated healthy validation set.

        Parameters
        ----------
        X : array-like of shape (n, c, h, w) or (n, c*h*w)
            Healthy images not used for training.
        y : array-like, default=None
            Optional masks or labels; images marked anomalous are ignored.

        Returns
        -------
        self : MaskedBernoulliDiffusionDetector
        """
        check_is_fitted(self)
        self._check_inference_params()
        X = self._validate_images(X)
        X = X[self._healthy_selection(X, y)]
        if X.shape[0] == 0:
            raise ValueError("No healthy image to calibrate on.")
        self._calibrate(X)
        return self

    def _calibrate(self, X):
        outputs = ["score"]
        if self._auto_pixel_threshold_needed():
            outputs.append("anomaly_map")
        result = self._detect(X, outputs, threshold=np.inf)
        self.offset_ = float(np.quantile(result.score_samples, self.contamination))
        if self._auto_pixel_threshold_needed():
            region = postprocessing.foreground_region(X)
            if not region.any():
                region = None
            self.pixel_threshold_ = float(postprocessing.calibrate_pixel_threshold(
                result.anomaly_map, self.pixel_quantile, region=region))
        elif isinstance(self.pixel_threshold, str):
            self.pixel_threshold_ = 0.5  # the reference recipe thresholds min-max maps at 0.5
        else:
            self.pixel_threshold_ = float(self.pixel_threshold)

    def _auto_pixel_threshold_needed(self):
        return (isinstance(self.pixel_threshold, str) and self.postprocessing == "paper")

    # ------------------------------------------------------------------ inference core
    def _validate_images(self, X):
        c, h, w = self.image_shape_
        return check_images(X, image_shape=self.image_shape_ if self.image_shape is not None
                            or np.ndim(X) == 2 else None, n_channels=c, spatial_shape=(h, w))

    def _runtime_device(self):
        if getattr(self, "_cpu_fallback", False):
            return torch.device("cpu")
        return resolve_device(self.device, fallback=True)

    def _models_on(self, device):
        if self.autoencoder_.codebook.weight.device != device:
            self.autoencoder_.to(device)
            self.diffusion_model_.to(device)
        return self.autoencoder_, self.diffusion_model_

    def _sample_seeds(self, X):
        """One noise seed per image from ``seed_`` and the image's content.

        Every output is then a deterministic function of the image alone: independent of
        its position in ``X``, of the other images, of the batch size and of the device.
        """
        salt = int(self.seed_).to_bytes(8, "little")
        seeds = [int.from_bytes(hashlib.blake2b(image.tobytes(), digest_size=4,
                                                salt=salt).digest(), "little")
                 for image in X]
        return torch.tensor(seeds, dtype=torch.int64)

    def _run_batch(self, x, seeds, device, precision, keep_latents, decode=True):
        """Encode, restore and (if needed) decode one batch; everything stays on ``device``."""
        ae, unet = self._models_on(device)
        unet = self._inference_unet(unet, device)
        rng = CounterRNG(seeds).to(device)

        def denoise(z_t, model_t):
            with autocast(device, precision):
                return unet(z_t, model_t)

        with torch.inference_mode():
            with autocast(device, precision):
                probabilities = ae.encode(x).float()
            code = (rng.uniform(probabilities, STREAM_ENCODE) < probabilities).float()
            restored = masked_restoration(
                denoise, code, schedule=self.schedule_, noise_level=self.noise_level,
                mask_threshold=self.mask_threshold, n_steps=self.n_steps,
                final_step=self.final_step, forward=self.forward_process, rng=rng)
            x_hat = None
            if decode:
                with autocast(device, precision):
                    x_hat = ae.decode(restored.latent).float().clamp_(0.0, 1.0)
        out = {"x_hat": x_hat, "masked_fraction": restored.masked_fraction}
        if keep_latents:
            out.update(code=code, probabilities=probabilities, restored=restored.latent,
                       mask=restored.mask, mean_flip=restored.mean_flip.T,
                       step_masked_fraction=restored.step_masked_fraction.T)
        return out

    def _inference_unet(self, unet, device):
        """The UNet, compiled once per network, mode and device when ``compile`` asks for it."""
        if self.compile is False:
            return unet
        mode = "default" if self.compile is True else self.compile
        key = (id(unet), mode, str(device))
        cached = getattr(self, "_compiled_unet", None)
        if cached is None or cached[0] != key or cached[1] is not unet:
            if mode == "default":
                # Freezing folds the (inference-only) weights into the graph; on CPUs it lets
                # oneDNN prepack convolution weights once instead of at every call.
                compiled = torch.compile(unet, dynamic=False, options={"freezing": True})
            else:
                compiled = torch.compile(unet, mode=mode, dynamic=False)
            cached = (key, unet, compiled)
            self._compiled_unet = cached
        return cached[2]

    def _iter_batches(self, X, keep_latents=False, decode=True):
        """Yield ``(slice, outputs)`` per batch, halving the batch on GPU out-of-memory."""
        device = self._runtime_device()
        precision = check_precision(self.precision, device)
        seeds = self._sample_seeds(X)
        batch = int(self.batch_size)
        start = 0
        bar = progress(total=X.shape[0], verbose=self.verbose, desc="restoring", leave=False)
        try:
            while start < X.shape[0]:
                stop = min(start + batch, X.shape[0])
                x = torch.from_numpy(X[start:stop]).to(device)
                batch_seeds = seeds[start:stop]
                # A compiled graph (CUDA graphs above all) is specialised to one batch shape:
                # pad the last batch with copies. Noise is per image, so copies change nothing.
                pad = batch - (stop - start) if self.compile is not False \
                    and device.type == "cuda" else 0
                if pad:
                    x = torch.cat([x, x[-1:].expand(pad, *x.shape[1:])])
                    batch_seeds = torch.cat([batch_seeds, batch_seeds[-1:].expand(pad)])
                try:
                    out = self._run_batch(x, batch_seeds, device, precision, keep_latents,
                                          decode)
                    if pad:
                        out = {k: None if v is None else v[:stop - start]
                               for k, v in out.items()}
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

    def _detect(self, X, outputs, threshold=None):
        """One diffusion pass over validated ``X`` giving every requested output."""
        outputs = set(outputs)
        unknown = outputs - set(_OUTPUTS)
        if unknown:
            raise ValueError(f"Unknown outputs {sorted(unknown)}; choose from {_OUTPUTS}.")
        need_map = bool(outputs & {"anomaly_map", "mask"}) or (
            "score" in outputs and self.image_score != "masked_fraction")
        n = X.shape[0]
        masked_fraction = np.empty(n, dtype=np.float64)
        maps = np.empty((n,) + X.shape[2:], np.float32) if need_map else None
        recon = np.empty(X.shape, np.float32) if "reconstruction" in outputs else None
        decode = need_map or recon is not None
        for sl, out in self._iter_batches(X, decode=decode):
            masked_fraction[sl] = out["masked_fraction"].double().cpu().numpy()
            if decode:
                x_hat = out["x_hat"].cpu().numpy()
                if recon is not None:
                    recon[sl] = x_hat
                if need_map:
                    maps[sl] = self._anomaly_map_from(X[sl], x_hat)
        result = DetectionResult(masked_fraction=masked_fraction, reconstruction=recon)
        if "score" in outputs:
            result.score_samples = -self._image_scores(masked_fraction, maps)
        if "anomaly_map" in outputs:
            result.anomaly_map = maps
        if "mask" in outputs:
            result.mask = self._segment(maps, self.pixel_threshold_ if threshold is None
                                        else threshold)
        return result

    def _anomaly_map_from(self, x, x_hat):
        if self.postprocessing == "paper":
            raw = postprocessing.squared_error_map(x, x_hat)
            return postprocessing.median_filter_maps(raw, self.median_size)
        return postprocessing.reference_anomaly_scores(x, x_hat, median_size=self.median_size)

    def _segment(self, maps, threshold):
        if self.postprocessing == "paper":
            size = 10 if self.min_component_size is None else self.min_component_size
            return postprocessing.paper_postprocess(maps, threshold, median_size=None,
                                                    min_size=size)
        size = 15 if self.min_component_size is None else self.min_component_size
        return postprocessing.reference_postprocess(maps, threshold, min_size=size)

    def _image_scores(self, masked_fraction, maps):
        if self.image_score == "masked_fraction":
            return masked_fraction
        flat = maps.reshape(maps.shape[0], -1)
        return flat.mean(1) if self.image_score == "map_mean" else flat.max(1)

    # ------------------------------------------------------------------ public inference
    def detect(self, X, outputs=_OUTPUTS):
        """Run one diffusion pass and return every requested output.

        Parameters
        ----------
        X : array-like of shape (n, c, h, w) or (n, c*h*w)
            Images.
        outputs : sequence of {"score", "anomaly_map", "mask", "reconstruction"}
            What to compute; the masked fraction is always returned.

        Returns
        -------
        result : DetectionResult
        """
        check_is_fitted(self)
        self._check_inference_params()
        return self._detect(self._validate_images(X), outputs)

    def score_samples(self, X):
        """Image-level normality score (higher = more normal).

        The negative of ``image_score``: by default minus the share of masked latent entries.

        Parameters
        ----------
        X : array-like of shape (n, c, h, w) or (n, c*h*w)
            Images.

        Returns
        -------
        scores : ndarray of shape (n,)
        """
        return self.detect(X, ("score",)).score_samples

    def decision_function(self, X):
        """``score_samples(X) - offset_``: negative for images predicted anomalous.

        Parameters
        ----------
        X : array-like of shape (n, c, h, w) or (n, c*h*w)
            Images.

        Returns
        -------
        decision : ndarray of shape (n,)
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """+1 for normal and -1 for anomalous images (scikit-learn's convention).

        Parameters
        ----------
        X : array-like of shape (n, c, h, w) or (n, c*h*w)
            Images.

        Returns
        -------
        labels : ndarray of shape (n,), int
        """
        return np.where(self.decision_function(X) < 0, -1, 1)

    def anomaly_map(self, X):
        """Pixel anomaly maps (higher = more anomalous).

        Parameters
        ----------
        X : array-like of shape (n, c, h, w) or (n, c*h*w)
            Images.

        Returns
        -------
        maps : ndarray of shape (n, h, w), float32
        """
        return self.detect(X, ("anomaly_map",)).anomaly_map

    def predict_mask(self, X):
        """Pixel segmentation of anomalies after post-processing.

        Parameters
        ----------
        X : array-like of shape (n, c, h, w) or (n, c*h*w)
            Images.

        Returns
        -------
        masks : ndarray of shape (n, h, w), bool
        """
        return self.detect(X, ("mask",)).mask

    def reconstruct(self, X):
        """Pseudo-healthy reconstructions ``x_hat`` in [0, 1].

        Parameters
        ----------
        X : array-like of shape (n, c, h, w) or (n, c*h*w)
            Images.

        Returns
        -------
        x_hat : ndarray of shape (n, c, h, w), float32
        """
        return self.detect(X, ("reconstruction",)).reconstruction

    def restore_latent(self, X):
        """Latent-level results of the masked restoration, for research use.

        Parameters
        ----------
        X : array-like of shape (n, c, h, w) or (n, c*h*w)
            Images.

        Returns
        -------
        result : LatentRestoration
        """
        check_is_fitted(self)
        self._check_inference_params()
        X = self._validate_images(X)
        parts = collections.defaultdict(list)
        for _, out in self._iter_batches(X, keep_latents=True, decode=False):
            for name in ("code", "probabilities", "restored", "mask", "masked_fraction",
                         "mean_flip", "step_masked_fraction"):
                parts[name].append(out[name].cpu().numpy())
        arrays = {k: np.concatenate(v) for k, v in parts.items()}
        return LatentRestoration(
            timesteps=restoration_timesteps(self.noise_level, self.n_steps),
            mean_flip=arrays.pop("mean_flip").T,
            step_masked_fraction=arrays.pop("step_masked_fraction").T,
            **arrays)

    # ------------------------------------------------------------------ sklearn plumbing
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.target_tags.required = False
        return tags

    def __sklearn_is_fitted__(self):
        return hasattr(self, "autoencoder_") and hasattr(self, "offset_")

    # ------------------------------------------------------------------ persistence
    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_cpu_fallback", None)
        state.pop("_compiled_unet", None)  # rebuilt on first use
        for name in ("autoencoder_", "diffusion_model_"):
            module = state.get(name)
            if isinstance(module, torch.nn.Module):
                # CPU numpy arrays plus the config: loadable where CUDA is missing.
                state[name] = {"config": module.config,
                               "state": {k: v.detach().cpu().numpy()
                                         for k, v in module.state_dict().items()}}
        return state

    def __setstate__(self, state):
        state = dict(state)
        for name, cls in (("autoencoder_", BinaryAutoencoder), ("diffusion_model_", EpsUNet)):
            saved = state.get(name)
            if isinstance(saved, dict) and "config" in saved:
                state[name] = _rebuild(cls, saved["config"], saved["state"])
        super().__setstate__(state)
        if "autoencoder_" in state:
            self._check_device_on_load()

    def _check_device_on_load(self):
        requested = str(self.device)
        trained = str(getattr(self, "device_", "cpu"))
        wants_cuda = requested.startswith("cuda") or (requested == "auto"
                                                      and trained.startswith("cuda"))
        if wants_cuda and not torch.cuda.is_available():
            warnings.warn(
                f"This detector was fitted on {trained} (device={requested!r}) but CUDA is not "
                "available here; it runs on the CPU.", DeviceFallbackWarning, stacklevel=3)
            self._cpu_fallback = True

    def save(self, path):
        """Save a fitted detector in a pickle-free format: weights plus a JSON config.

        The file holds only tensors, strings and numbers and a SHA-256 checksum; it is read
        back with ``torch.load(weights_only=True)`` by :func:`skberdiff.load`, which never
        runs code from the file. Safe to share, unlike pickles.

        Parameters
        ----------
        path : str or path-like
            Output file (conventionally ``*.skbd``).

        Returns
        -------
        path : str
        """
        check_is_fitted(self)
        params = self.get_params()
        if not isinstance(params["random_state"], (type(None), numbers.Integral)):
            params["random_state"] = self.seed_
        if params["memory"] is not None and not isinstance(params["memory"], str):
            params["memory"] = None  # a Memory object is machine-specific; not saved
        if params["checkpoint_dir"] is not None:
            params["checkpoint_dir"] = os.fspath(params["checkpoint_dir"])
        config = {
            "params": params,
            "fitted": {
                "seed_": self.seed_, "offset_": self.offset_,
                "pixel_threshold_": self.pixel_threshold_, "image_shape_": self.image_shape_,
                "n_features_in_": self.n_features_in_, "n_train_samples_": self.n_train_samples_,
                "device_": self.device_, "history_": self.history_,
                "autoencoder_config": self.autoencoder_.config,
                "unet_config": self.diffusion_model_.config,
            },
        }
        config_json = json.dumps(config, sort_keys=True, default=_json_default)
        tensors = {f"autoencoder.{k}": v.detach().cpu().contiguous()
                   for k, v in self.autoencoder_.state_dict().items()}
        tensors.update({f"unet.{k}": v.detach().cpu().contiguous()
                        for k, v in self.diffusion_model_.state_dict().items()})
        payload = {"format": _MODEL_FORMAT, "version": _MODEL_VERSION, "config": config_json,
                   "tensors": tensors, "checksum": _checksum(config_json, tensors)}
        path = os.fspath(path)
        tmp = path + ".tmp"
        torch.save(payload, tmp)
        os.replace(tmp, path)
        return path


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _checksum(config_json, tensors):
    digest = hashlib.sha256(config_json.encode())
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list) else value


def load(path, *, device=None) -> MaskedBernoulliDiffusionDetector:
    """Load a detector written by :meth:`MaskedBernoulliDiffusionDetector.save`.

    Nothing in the file is executed: it is read with ``torch.load(weights_only=True)``
    (tensors, strings and numbers only), its checksum is verified and the networks are
    rebuilt from the JSON config.

    Parameters
    ----------
    path : str or path-like
        File written by ``save``.
    device : str, optional
        Override the saved ``device`` parameter (e.g. ``"cpu"``).

    Returns
    -------
    detector : MaskedBernoulliDiffusionDetector
        A fitted detector.

    Raises
    ------
    UnsafeModelFileError
        If the file is not a skberdiff model, contains objects other than tensors and
        plain data, or fails its checksum (corrupted or tampered with).

    Examples
    --------
    >>> import os, tempfile
    >>> from skberdiff import MaskedBernoulliDiffusionDetector, load
    >>> from skberdiff.datasets import make_toy_images
    >>> X, _ = make_toy_images(12, image_size=32, random_state=0)
    >>> det = MaskedBernoulliDiffusionDetector(
    ...     preset="tiny", autoencoder_iterations=2, diffusion_iterations=2,
    ...     diffusion_steps=50, noise_level=5, device="cpu", random_state=0).fit(X)
    >>> path = det.save(os.path.join(tempfile.mkdtemp(), "det.skbd"))
    >>> bool((load(path).anomaly_map(X[:2]) == det.anomaly_map(X[:2])).all())
    True
    """
    path = os.fspath(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # the weights-only unpickler refuses anything executable
        raise UnsafeModelFileError(
            f"{path} was refused: it is not a plain skberdiff model file (weights-only "
            f"loading failed: {exc})."
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != _MODEL_FORMAT:
        raise UnsafeModelFileError(f"{path} is not a skberdiff model file.")
    if payload.get("version") != _MODEL_VERSION:
        raise UnsafeModelFileError(
            f"{path} has model format version {payload.get('version')}; this skberdiff reads "
            f"version {_MODEL_VERSION}."
        )
    config_json, tensors = payload.get("config"), payload.get("tensors")
    if not isinstance(config_json, str) or not isinstance(tensors, dict) or not all(
            isinstance(t, torch.Tensor) for t in tensors.values()):
        raise UnsafeModelFileError(f"{path} is malformed.")
    if payload.get("checksum") != _checksum(config_json, tensors):
        raise UnsafeModelFileError(
            f"{path} failed its checksum: the file was corrupted or modified after saving."
        )
    config = json.loads(config_json)
    params = {k: _as_tuple(v) if k == "image_shape" else v
              for k, v in config["params"].items()}
    if device is not None:
        params["device"] = device
    det = MaskedBernoulliDiffusionDetector(**params)
    fitted = config["fitted"]
    for attr, cls, prefix, cfg in (("autoencoder_", BinaryAutoencoder, "autoencoder.",
                                    "autoencoder_config"),
                                   ("diffusion_model_", EpsUNet, "unet.", "unet_config")):
        weights = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        setattr(det, attr, _rebuild(cls, fitted[cfg], weights))
    det.schedule_ = make_schedule(det.noise_schedule, det.diffusion_steps)
    for name in ("seed_", "offset_", "pixel_threshold_", "n_features_in_", "n_train_samples_",
                 "device_", "history_"):
        setattr(det, name, fitted[name])
    det.image_shape_ = tuple(fitted["image_shape_"])
    det._check_device_on_load()
    return det

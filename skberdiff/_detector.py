"""MaskedBernoulliDiffusionDetector: the scikit-learn estimator.

The estimator keeps the parameters, ``fit``, ``calibrate`` and the public inference methods.
The networks live in :mod:`skberdiff.nn`, the diffusion math in :mod:`skberdiff.diffusion`,
the training loops in :mod:`skberdiff.training`; training once per training set is
``skberdiff._cache``, batched inference ``skberdiff._runtime`` and the model file
``skberdiff._format``.
"""

import numbers
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted, check_memory

from . import _cache, _format, _runtime
from ._device import check_precision, resolve_device
from ._validation import (
    check_choice,
    check_images,
    check_int,
    check_intensity_range,
    check_network_overrides,
    check_noise_level,
    check_probability,
    check_real,
    check_writable_directory,
    healthy_selection,
)
from .diffusion import (
    FINAL_STEPS,
    FORWARD_PROCESSES,
    POSTERIORS,
    make_schedule,
    restoration_timesteps,
)
from .nn import PRESETS, BinaryAutoencoder, EpsUNet
from .postprocessing import RECIPES, foreground_region, get_recipe

__all__ = ["MaskedBernoulliDiffusionDetector", "DetectionResult", "LatentRestoration", "load"]

# Parameters that change the trained networks: they, the healthy training images, the
# training device type and precision form the cache key. Nothing else may enter it.
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
    "noise_level", "mask_threshold", "n_steps", "n_draws", "final_step", "posterior",
    "image_score",
    "postprocessing", "median_size", "min_component_size", "pixel_threshold",
    "pixel_quantile", "contamination", "batch_size",
)
INFRASTRUCTURE_PARAMS = (
    "image_shape", "device", "precision", "compile", "memory", "verbose", "checkpoint_dir",
    "checkpoint_every",
)
# Never restored from a model file: they name places and resources of the loading machine.
MACHINE_PARAMS = ("memory", "checkpoint_dir", "device", "verbose", "compile")

IMAGE_SCORES = ("masked_fraction", "masked_unflipped_fraction", "denoising_loss",
                "mean_flip_probability", "map_mean", "map_max")
OUTPUTS = ("score", "anomaly_map", "mask", "reconstruction", "latent_anomaly_map")
# Inference parameters each calibrated threshold depends on.
_OFFSET_DEPENDS_ON = ("noise_level", "mask_threshold", "n_steps", "n_draws", "final_step",
                      "posterior", "image_score", "contamination")
_MAP_DEPENDS_ON = ("postprocessing", "median_size")
_PIXEL_DEPENDS_ON = ("noise_level", "mask_threshold", "n_steps", "n_draws", "final_step",
                     "posterior", "pixel_threshold", "pixel_quantile") + _MAP_DEPENDS_ON
# Share of latent positions averaged by the "denoising_loss" image score (the worst ones).
_TOP_FRACTION = 0.05
_MAX_MEDIAN_SIZE = 51


@dataclass
class DetectionResult:
    """Everything one diffusion pass gives for a batch of images.

    Fields not requested from :meth:`MaskedBernoulliDiffusionDetector.detect` are ``None``.

    Attributes
    ----------
    score_samples : ndarray of shape (n,)
        Image-level normality score (higher = more normal): minus ``image_score``.
    masked_fraction : ndarray of shape (n,)
        Share of masked latent entries, the paper's image-level anomaly score.
    image_scores : dict of str to ndarray of shape (n,)
        Every image-level anomaly score computed in the pass (higher = more anomalous),
        keyed by the ``image_score`` names.
    anomaly_map : ndarray of shape (n, h, w), float32
        Post-processed pixel anomaly scores (higher = more anomalous).
    latent_anomaly_map : ndarray of shape (n, h', w'), float32
        Latent-resolution map of the denoising loss of the injected noise (bits per entry,
        mean over ``t = L, L/2, L/4``): high where the model mispredicts the noise it was
        given, i.e. where the code is unlike healthy codes. Computed when requested as the
        ``"latent_anomaly_map"`` output or with ``image_score="denoising_loss"``.
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
    image_scores: dict | None = None
    anomaly_map: np.ndarray | None = None
    latent_anomaly_map: np.ndarray | None = None
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
    injected : ndarray of shape (n, C, h, w), bool
        Entries flipped by the noise injected at step ``L``.
    masked_fraction : ndarray of shape (n,)
        Share of masked entries.
    timesteps : list of int
        Times visited, ``L`` down to 0.
    mean_flip : ndarray of shape (n_steps, n)
        Mean predicted flip probability per step.
    step_masked_fraction : ndarray of shape (n_steps, n)
        Masked fraction after each step.
    """

    code: np.ndarray
    probabilities: np.ndarray
    restored: np.ndarray
    mask: np.ndarray
    injected: np.ndarray
    masked_fraction: np.ndarray
    timesteps: list
    mean_flip: np.ndarray
    step_masked_fraction: np.ndarray


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
    preset : {"paper", "small", "small-x8", "tiny"}, default="small"
        Architecture preset (training-time). ``"paper"`` reproduces the paper's networks
        (UNet 36.0M, autoencoder 4.1M parameters, 256x256 images -> 128x32x32 latents) and
        needs a GPU; ``"small"`` suits 64x64 to 128x128 images on a CPU (x4 autoencoder that
        copies about half of a lesion, as the paper's regime needs); ``"small-x8"`` is the
        earlier, coarser small preset; ``"tiny"`` fits 1-channel 32x32 images in seconds
        (tests, examples). Sizes and costs: :mod:`skberdiff.nn.presets`.
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
        Seeds the calibration split, weight initialisation, batch order, training noise and
        inference noise through one :class:`numpy.random.SeedSequence` that spawns a stream
        per purpose (training-time). Any non-negative int is a distinct seed. ``None`` means
        "any seed will do": fits on the same images with the same training parameters then
        reuse the cached networks (and their seed) instead of training again.
    noise_level : int, default=50
        ``L``: number of noising steps (inference-time; the paper's best on BRATS2020:
        200). The defaults of ``noise_level``, ``mask_threshold``, ``posterior``,
        ``n_draws`` and ``image_score`` are the best setting on the validation split of the
        CPU benchmark (chosen on two seeds, confirmed by a third; ``benchmarks/table1.py``);
        see Notes for the paper's.
    mask_threshold : float, default=0.2
        ``P``: flip probability above which a latent entry is masked in
        (inference-time; the paper's best: 0.5). 0 disables the mask (plain denoising).
    n_steps : int or None, default=None
        Denoising steps; ``None`` runs all ``L`` steps as the paper; fewer steps skip
        through the exact skip-step posterior (inference-time; faster, approximate).
    n_draws : int, default=1
        Independent restorations per image, with different noise, whose reconstructions
        (and image scores) are averaged (inference-time). The paper uses one; more draws
        average out the sampling noise of the restored healthy regions at ``n_draws``
        times the cost. :meth:`restore_latent` reports the first draw.
    final_step : {"paper", "reference"}, default="paper"
        Last step as Algorithm 1 (stitched, binary) or as the public code (soft,
        unstitched) (inference-time).
    posterior : {"paper", "marginal"}, default="marginal"
        Reverse step (inference-time, no retraining). ``"paper"``: eq. 4, which feeds the
        soft prediction ``z~_0`` into ``theta_post`` and so conditions on ``z_t`` twice
        (injected noise tends to survive); ``"marginal"``: the Bayes-consistent
        ``sum_{z_0} p(z_0 | z_t) q(z_{t-1} | z_t, z_0)``, same cost. Works with ``n_steps``.
    image_score : str, default="map_max"
        Image-level anomaly score, all from the same diffusion pass (inference-time);
        ``score_samples`` returns its negative.

        - ``"masked_fraction"``: share of masked latent entries (the paper's).
        - ``"masked_unflipped_fraction"``: share of latent entries masked although the
          noise injected at step ``L`` did not flip them (that noise is known exactly, and
          most of the paper's mask is made of it). No extra cost.
        - ``"denoising_loss"``: how badly the model predicts the noise actually injected
          into the input's code, in bits per latent entry, at ``t = L, L/2, L/4``; the
          mean of the worst 5 % of latent positions. Two extra UNet forwards per image.
          Its per-position map is :attr:`DetectionResult.latent_anomaly_map`.
        - ``"mean_flip_probability"``: mean predicted flip probability over all steps.
        - ``"map_mean"`` / ``"map_max"``: mean / maximum of the pixel anomaly map over
          foreground (non-zero) pixels; needs decoding.
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
        Directory for training checkpoints; an interrupted fit resumes from them. It is
        checked (created, writable) before training starts.
    checkpoint_every : int, default=500
        Training steps between checkpoints (when ``checkpoint_dir`` is set).

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
        Loss histories ``{"autoencoder": [...], "diffusion": [...]}``: one record every
        few steps with the step, the losses and ``elapsed_s``, the training wall time so
        far (the time the networks took to train, also when they came from the cache).
    offset_ : float
        Threshold on ``score_samples``: ``decision_function = score_samples - offset_``.
    pixel_threshold_ : float
        Threshold applied to anomaly maps by :meth:`predict_mask`.
    calibrated_params_ : dict
        Inference-time parameters in force when ``offset_`` and ``pixel_threshold_`` were
        calibrated; predicting with other values raises until :meth:`calibrate` is called.
    input_range_ : tuple of float
        Minimum and maximum intensity of the training images (inputs outside it warn).
    seed_ : int
        Master seed actually used (``random_state``, or the one drawn for ``None``).
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

    Images must be scaled to [0, 1] (for example with :class:`~skberdiff.IntensityScaler`):
    values far outside raise a ``ValueError``, and inputs outside the range seen in ``fit``
    warn.

    The paper's inference setting is ``noise_level=200, mask_threshold=0.5,
    posterior="paper", n_draws=1, image_score="masked_fraction"``. The defaults differ
    because they were chosen on validation data of the CPU benchmark, where no setting of
    the diffusion stage beat the autoencoder alone and the best ones perturb the code least
    (``docs/benchmark_results.md``).

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
        noise_level=50,
        mask_threshold=0.2,
        n_steps=None,
        n_draws=1,
        final_step="paper",
        posterior="marginal",
        image_score="map_max",
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
        checkpoint_every=500,
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
        self.n_draws = n_draws
        self.final_step = final_step
        self.posterior = posterior
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
        self.checkpoint_every = checkpoint_every

    # ------------------------------------------------------------------ parameter checks
    def _check_training_params(self):
        check_choice(self.preset, "preset", PRESETS)
        for name in ("autoencoder_params", "unet_params"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, dict):
                raise TypeError(f"{name} must be a dict or None, got {type(value).__name__}.")
        check_network_overrides(self.autoencoder_params, self.unet_params)
        check_int(self.diffusion_steps, "diffusion_steps", low=1, high=100_000)
        check_choice(self.noise_schedule, "noise_schedule", ("linear", "cosine"))
        check_choice(self.forward_process, "forward_process", FORWARD_PROCESSES)
        check_choice(self.reconstruction_loss, "reconstruction_loss", ("mse", "l1"))
        check_choice(self.perceptual_net, "perceptual_net", ("alex", "vgg"))
        for name in ("binarization_weight", "perceptual_weight", "adversarial_weight"):
            check_real(getattr(self, name), name, low=0.0)
        for name in ("autoencoder_learning_rate", "diffusion_learning_rate"):
            check_real(getattr(self, name), name, low=0.0, include_low=False)
        check_int(self.adversarial_start, "adversarial_start", low=0)
        for name in ("autoencoder_iterations", "diffusion_iterations", "autoencoder_batch_size",
                     "diffusion_batch_size"):
            check_int(getattr(self, name), name, low=1)
        for name in ("autoencoder_ema", "diffusion_ema"):
            check_real(getattr(self, name), name, low=0.0, high=1.0, include_high=False,
                       allow_none=True)
        check_probability(self.calibration_fraction, "calibration_fraction", high=0.9)
        if not isinstance(self.random_state, (np.random.RandomState, np.random.Generator)):
            _cache.resolve_seed(self.random_state)  # type and sign; generators are drawn in fit
        if self.image_shape is not None:
            shape = tuple(self.image_shape) if isinstance(self.image_shape, (tuple, list)) \
                else None
            if shape is None or len(shape) != 3 or not all(
                    isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0
                    for s in shape):
                raise ValueError(f"image_shape must be (c, h, w) of positive ints, got "
                                 f"{self.image_shape!r}.")

    def _check_inference_params(self):
        check_noise_level(self.noise_level, self.diffusion_steps)
        check_probability(self.mask_threshold, "mask_threshold")
        check_int(self.n_steps, "n_steps", low=1, high=int(self.noise_level), allow_none=True)
        check_int(self.n_draws, "n_draws", low=1, high=64)
        check_choice(self.final_step, "final_step", FINAL_STEPS)
        check_choice(self.posterior, "posterior", POSTERIORS)
        check_choice(self.image_score, "image_score", IMAGE_SCORES)
        check_choice(self.postprocessing, "postprocessing", tuple(RECIPES))
        check_int(self.median_size, "median_size", low=1, high=_MAX_MEDIAN_SIZE)
        check_int(self.min_component_size, "min_component_size", low=0, allow_none=True)
        if not (isinstance(self.pixel_threshold, str) and self.pixel_threshold == "auto"):
            if isinstance(self.pixel_threshold, str):
                raise ValueError(
                    f"pixel_threshold must be 'auto' or a number, got {self.pixel_threshold!r}."
                )
            check_real(self.pixel_threshold, "pixel_threshold")
        check_probability(self.pixel_quantile, "pixel_quantile")
        check_probability(self.contamination, "contamination", high=0.5)
        check_int(self.batch_size, "batch_size", low=1)
        check_int(self.verbose, "verbose", low=0)
        check_int(self.checkpoint_every, "checkpoint_every", low=1)
        if not any(self.compile is m or (isinstance(m, str) and self.compile == m)
                   for m in _runtime.COMPILE_MODES):
            raise ValueError(
                f"compile must be one of {_runtime.COMPILE_MODES}, got {self.compile!r}.")
        if not isinstance(self.device, (str, torch.device)):
            raise TypeError(
                f"device must be a string such as 'auto', 'cpu' or 'cuda:0', or a "
                f"torch.device, got {type(self.device).__name__}: {self.device!r}.")

    def _training_config(self, seed):
        config = {name: getattr(self, name) for name in TRAINING_PARAMS
                  if name != "random_state"}
        config["seed"] = seed
        return config

    def _inference_settings(self, device):
        return _runtime.InferenceSettings(
            noise_level=int(self.noise_level), mask_threshold=float(self.mask_threshold),
            n_steps=None if self.n_steps is None else int(self.n_steps),
            n_draws=int(self.n_draws), final_step=self.final_step, posterior=self.posterior,
            batch_size=int(self.batch_size), precision=check_precision(self.precision, device),
            compile=self.compile, verbose=int(self.verbose))

    def _recipe(self):
        return get_recipe(self.postprocessing, median_size=self.median_size,
                          min_component_size=self.min_component_size)

    # ------------------------------------------------------------------ fit
    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> "MaskedBernoulliDiffusionDetector":
        """Train the autoencoder and the diffusion model on healthy images.

        Parameters
        ----------
        X : array-like of shape (n, c, h, w) or (n, c*h*w)
            Training images in [0, 1] (healthy, or mixed when ``y`` says which are
            anomalous). Flattened rows need ``image_shape``.
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
        X = check_images(X, image_shape=self.image_shape)
        check_intensity_range(X, None)
        X_healthy = X[healthy_selection(X, y)]
        if X_healthy.shape[0] == 0:
            raise ValueError("y marks every image as anomalous: nothing healthy to train on.")
        device = resolve_device(self.device)
        precision = check_precision(self.precision, device)
        if self.checkpoint_dir is not None:
            check_writable_directory(self.checkpoint_dir)
        seed = _cache.resolve_seed(self.random_state)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Under torchrun every process must hold out the same calibration images and
            # draw the same batches and noise: take rank 0's seed.
            if seed is None:
                seed = _cache.resolve_seed(np.random.default_rng())
            shared = [seed]
            torch.distributed.broadcast_object_list(shared, src=0)
            seed = int(shared[0])
        networks = _cache.cached_train(
            X_healthy, self._training_config(seed), device, precision,
            check_memory(self.memory), int(self.verbose), self.checkpoint_dir,
            int(self.checkpoint_every))
        autoencoder, unet = _cache.networks_from_state(networks)
        self._initialize_fitted(
            autoencoder, unet, seed=networks["seed"], image_shape=X.shape[1:],
            n_train_samples=networks["n_train"], history=networks["history"],
            device=device, input_range=(float(X_healthy.min()), float(X_healthy.max())))
        cal = networks["calibration_indices"]
        if len(cal) == 0:
            if self.calibration_fraction > 0:
                warnings.warn(
                    f"Too few healthy images ({X_healthy.shape[0]}) to hold out "
                    f"calibration_fraction={self.calibration_fraction}; thresholds are "
                    "calibrated on the training images and may be optimistic.",
                    UserWarning, stacklevel=2)
            X_cal = X_healthy
        else:
            X_cal = X_healthy[cal]
        self._calibrate(X_cal)
        return self

    def _initialize_fitted(self, autoencoder, diffusion_model, *, seed, image_shape,
                           n_train_samples, history, device, input_range):
        """Set every fitted attribute but the thresholds: the one place that builds them."""
        _cache.check_network_sizes(tuple(image_shape)[1:], autoencoder, diffusion_model)
        if autoencoder.in_channels != image_shape[0]:
            raise ValueError(f"The autoencoder expects {autoencoder.in_channels} channels but "
                             f"images have {image_shape[0]}.")
        if diffusion_model.latent_channels != autoencoder.latent_channels:
            raise ValueError(
                f"The diffusion model has {diffusion_model.latent_channels} latent channels "
                f"but the autoencoder {autoencoder.latent_channels}.")
        self.autoencoder_ = autoencoder.to(device).eval().requires_grad_(False)
        self.diffusion_model_ = diffusion_model.to(device).eval().requires_grad_(False)
        self.schedule_ = make_schedule(self.noise_schedule, self.diffusion_steps,
                                       self.forward_process)
        self.seed_ = int(seed)
        self.image_shape_ = tuple(int(s) for s in image_shape)
        self.n_features_in_ = int(np.prod(self.image_shape_))
        self.n_train_samples_ = int(n_train_samples)
        self.history_ = history
        self.device_ = str(device)
        self.input_range_ = (float(input_range[0]), float(input_range[1]))

    @classmethod
    def from_networks(cls, autoencoder: BinaryAutoencoder, diffusion_model: EpsUNet, *,
                      spatial_shape: tuple, X_calibration: ArrayLike | None = None,
                      seed: int = 0, **params) -> "MaskedBernoulliDiffusionDetector":
        """A detector around networks trained elsewhere (no training).

        Parameters
        ----------
        autoencoder : skberdiff.nn.BinaryAutoencoder
            Trained binarizing autoencoder.
        diffusion_model : skberdiff.nn.EpsUNet
            Trained eps-UNet on its latents.
        spatial_shape : tuple of int (h, w)
            Image size (the channels are the autoencoder's).
        X_calibration : array-like of shape (n, c, h, w), default=None
            Healthy images for :meth:`calibrate`. Without them ``predict``,
            ``decision_function`` and ``predict_mask`` need a later ``calibrate`` call; the
            maps, scores and reconstructions work at once.
        seed : int, default=0
            Master seed of the inference noise.
        **params
            Constructor parameters (``noise_level``, ``device``, ...).

        Returns
        -------
        detector : MaskedBernoulliDiffusionDetector
            Fitted (networks) and, with ``X_calibration``, calibrated.

        Examples
        --------
        >>> from skberdiff.nn import build_autoencoder, build_unet
        >>> ae = build_autoencoder("tiny", 1, seed=0)
        >>> unet = build_unet("tiny", ae.latent_channels, seed=1)
        >>> det = MaskedBernoulliDiffusionDetector.from_networks(
        ...     ae, unet, spatial_shape=(32, 32), preset="tiny", noise_level=5, device="cpu")
        >>> det.anomaly_map(np.zeros((1, 1, 32, 32), np.float32)).shape
        (1, 32, 32)
        """
        det = cls(**params)
        det._check_training_params()
        det._check_inference_params()
        h, w = (check_int(v, "spatial_shape", low=1) for v in spatial_shape)
        det._initialize_fitted(autoencoder, diffusion_model, seed=_cache.resolve_seed(seed),
                               image_shape=(autoencoder.in_channels, h, w), n_train_samples=0,
                               history={},
                               device=resolve_device(det.device), input_range=(0.0, 1.0))
        if X_calibration is not None:
            det.calibrate(X_calibration)
        return det

    # ------------------------------------------------------------------ calibration
    def calibrate(self, X: ArrayLike,
                  y: ArrayLike | None = None) -> "MaskedBernoulliDiffusionDetector":
        """Recompute ``offset_`` and ``pixel_threshold_`` on healthy images.

        Needed after changing inference-time parameters with ``set_params`` on a fitted
        detector (thresholds calibrated for other parameters are refused), or to calibrate
        on a dedicated healthy validation set.

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
        X = X[healthy_selection(X, y)]
        if X.shape[0] == 0:
            raise ValueError("No healthy image to calibrate on.")
        self._calibrate(X)
        return self

    def _calibrate(self, X):
        auto = self._auto_pixel_threshold()
        result = self._detect(X, ["score"] + (["anomaly_map"] if auto else []), thresholds=False)
        n = X.shape[0]
        if n * self.contamination < 1 and self.contamination > 0:
            warnings.warn(
                f"contamination={self.contamination} is calibrated on {n} healthy image(s): "
                f"fewer than one of them lies beyond the threshold, so the share of new "
                f"healthy images flagged can be far from {self.contamination} (use at least "
                f"{int(np.ceil(10 / self.contamination))} calibration images).",
                UserWarning, stacklevel=3)
        scores = result.score_samples
        if np.ptp(scores) == 0 and n > 1:
            warnings.warn(
                f"image_score={self.image_score!r} is the same ({-scores[0]:.4g}) on every "
                f"healthy calibration image with these parameters (e.g. mask_threshold=0 "
                "masks every entry): predict cannot separate images. Choose another "
                "image_score or mask_threshold.", UserWarning, stacklevel=3)
        self.offset_ = float(np.quantile(scores, self.contamination))
        if auto:
            region = foreground_region(X)
            self.pixel_threshold_ = self._recipe().calibrate_threshold(
                result.anomaly_map, self.pixel_quantile,
                region=region if region.any() else None)
        elif isinstance(self.pixel_threshold, str):
            self.pixel_threshold_ = float(self._recipe().fixed_threshold)
        else:
            self.pixel_threshold_ = float(self.pixel_threshold)
        self.calibrated_params_ = self._threshold_params()

    def _auto_pixel_threshold(self):
        return isinstance(self.pixel_threshold, str) and self._recipe().fixed_threshold is None

    def _threshold_params(self):
        names = dict.fromkeys(_OFFSET_DEPENDS_ON + _PIXEL_DEPENDS_ON)
        if self.image_score.startswith("map_"):
            names.update(dict.fromkeys(_MAP_DEPENDS_ON))
        return {name: getattr(self, name) for name in names}

    def _check_thresholds(self, which):
        """Refuse thresholds calibrated under other inference parameters."""
        if not hasattr(self, "offset_"):
            raise NotFittedError(
                "This detector has no calibrated thresholds; call calibrate(X_healthy) first.")
        depends = {"offset": _OFFSET_DEPENDS_ON + (_MAP_DEPENDS_ON if self.image_score
                                                  .startswith("map_") else ()),
                   "pixel": _PIXEL_DEPENDS_ON}[which]
        stale = {name: (self.calibrated_params_.get(name), getattr(self, name))
                 for name in depends if self.calibrated_params_.get(name) != getattr(self, name)}
        if stale:
            changes = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in stale.items())
            what = "offset_" if which == "offset" else "pixel_threshold_"
            raise ValueError(
                f"{what} was calibrated for other inference parameters ({changes}); call "
                "calibrate(X_healthy) with healthy images to recalibrate, or refit.")

    # ------------------------------------------------------------------ inference core
    def _validate_images(self, X):
        c, h, w = self.image_shape_
        # Flattened rows (n, c*h*w) are unflattened with the shape seen in fit.
        X = check_images(X, image_shape=self.image_shape_, n_channels=c, spatial_shape=(h, w))
        check_intensity_range(X, self.input_range_)
        return X

    def _runtime_device(self):
        return _runtime.runtime_device(self, self.device, getattr(self, "device_", "cpu"))

    def _networks_on(self, device):
        # Module.to moves parameters in place: the fitted attributes stay the same objects.
        if self.autoencoder_.codebook.weight.device != device:
            self.autoencoder_.to(device)
            self.diffusion_model_.to(device)
        return self.autoencoder_, self.diffusion_model_, self.schedule_

    def _inference_seed(self):
        return _cache.seed_streams(self.seed_)["inference"]

    def _detect(self, X, outputs, thresholds=True):
        """One diffusion pass over validated ``X`` giving every requested output."""
        outputs = set(outputs)
        unknown = outputs - set(OUTPUTS)
        if unknown:
            raise ValueError(f"Unknown outputs {sorted(unknown)}; choose from {OUTPUTS}.")
        if thresholds and "mask" in outputs:
            self._check_thresholds("pixel")
        want_score = "score" in outputs
        need_map = bool(outputs & {"anomaly_map", "mask"}) or (
            want_score and self.image_score.startswith("map_"))
        latent_loss = "latent_anomaly_map" in outputs or (
            want_score and self.image_score == "denoising_loss")
        n = X.shape[0]
        scalars = {name: np.empty(n, np.float64) for name in
                   ("masked_fraction", "masked_unflipped_fraction", "mean_flip_probability")}
        maps = np.empty((n,) + X.shape[2:], np.float32) if need_map else None
        recon = np.empty(X.shape, np.float32) if "reconstruction" in outputs else None
        latent_maps = None
        decode = need_map or recon is not None
        device = self._runtime_device()
        recipe = self._recipe()
        for sl, out in _runtime.iter_restorations(
                self._networks_on(device), X, seed=self._inference_seed(),
                settings=self._inference_settings(device), device=device, decode=decode,
                latent_loss=latent_loss):
            for name, values in scalars.items():
                values[sl] = out[name].double().cpu().numpy()
            if latent_loss:
                part = out["latent_loss"].cpu().numpy()
                if latent_maps is None:
                    latent_maps = np.empty((n,) + part.shape[1:], np.float32)
                latent_maps[sl] = part
            if decode:
                x_hat = out["x_hat"].cpu().numpy()
                if recon is not None:
                    recon[sl] = x_hat
                if need_map:
                    maps[sl] = recipe.anomaly_map(X[sl], x_hat)
        image_scores = dict(scalars)
        if latent_maps is not None:
            flat = latent_maps.reshape(n, -1)
            k = max(1, int(round(_TOP_FRACTION * flat.shape[1])))
            image_scores["denoising_loss"] = -np.sort(-flat, axis=1)[:, :k].mean(axis=1)
        if maps is not None:
            image_scores.update(_map_scores(maps, foreground_region(X)))
        result = DetectionResult(masked_fraction=scalars["masked_fraction"],
                                 image_scores=image_scores, reconstruction=recon,
                                 latent_anomaly_map=latent_maps)
        if want_score:
            result.score_samples = -image_scores[self.image_score]
        if "anomaly_map" in outputs:
            result.anomaly_map = maps
        if "mask" in outputs:
            result.mask = recipe.segment(maps, self.pixel_threshold_)
        return result

    # ------------------------------------------------------------------ public inference
    def detect(self, X: ArrayLike, outputs: str | tuple = OUTPUTS) -> DetectionResult:
        """Run one diffusion pass and return every requested output.

        Parameters
        ----------
        X : array-like of shape (n, c, h, w) or (n, c*h*w)
            Images.
        outputs : str or sequence of str, default=all
            What to compute among ``"score"``, ``"anomaly_map"``, ``"mask"``,
            ``"reconstruction"`` and ``"latent_anomaly_map"`` (two extra UNet forwards per
            image). ``image_scores`` always holds the scores that come free with the
            requested outputs (the latent ones; ``denoising_loss`` with the latent map;
            ``map_mean``/``map_max`` with a pixel map).

        Returns
        -------
        result : DetectionResult
        """
        check_is_fitted(self)
        self._check_inference_params()
        if isinstance(outputs, str):
            outputs = (outputs,)
        return self._detect(self._validate_images(X), outputs)

    def score_samples(self, X: ArrayLike) -> np.ndarray:
        """Image-level normality score (higher = more normal).

        The negative of ``image_score``: by default minus the largest anomaly-map value
        inside the foreground.

        Parameters
        ----------
        X : array-like of shape (n, c, h, w) or (n, c*h*w)
            Images.

        Returns
        -------
        scores : ndarray of shape (n,)
        """
        return self.detect(X, ("score",)).score_samples

    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """``score_samples(X) - offset_``: negative for images predicted anomalous.

        Parameters
        ----------
        X : array-like of shape (n, c, h, w) or (n, c*h*w)
            Images.

        Returns
        -------
        decision : ndarray of shape (n,)
        """
        check_is_fitted(self)
        self._check_inference_params()
        self._check_thresholds("offset")
        return self.score_samples(X) - self.offset_

    def predict(self, X: ArrayLike) -> np.ndarray:
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

    def anomaly_map(self, X: ArrayLike) -> np.ndarray:
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

    def predict_mask(self, X: ArrayLike) -> np.ndarray:
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

    def reconstruct(self, X: ArrayLike) -> np.ndarray:
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

    def encode(self, X: ArrayLike, *, deterministic: bool = False) -> np.ndarray:
        """Binary latent codes ``z ~ B(sigmoid(E(x)))`` of images, as the sampler draws them.

        The Bernoulli sample uses the same per-image noise as :meth:`detect`, so
        ``decode(encode(X))`` is the autoencoder-alone reconstruction of the very code the
        diffusion stage starts from.

        Parameters
        ----------
        X : array-like of shape (n, c, h, w) or (n, c*h*w)
            Images.
        deterministic : bool, default=False
            Threshold the encoder's probabilities at 0.5 instead of sampling.

        Returns
        -------
        codes : ndarray of shape (n, C, h', w'), float32 in {0, 1}
        """
        check_is_fitted(self)
        X = self._validate_images(X)
        device = self._runtime_device()
        ae, _, _ = self._networks_on(device)
        codes = None
        for sl, _, code in _runtime.iter_codes(
                ae, X, seed=self._inference_seed(), batch_size=int(self.batch_size),
                device=device, precision=check_precision(self.precision, device),
                deterministic=deterministic):
            part = code.cpu().numpy()
            if codes is None:
                codes = np.empty((X.shape[0],) + part.shape[1:], np.float32)
            codes[sl] = part
        return codes

    def decode(self, Z: ArrayLike) -> np.ndarray:
        """Decode latent codes (binary or soft) to images clamped to [0, 1].

        Parameters
        ----------
        Z : array-like of shape (n, C, h', w')
            Codes with values in [0, 1], e.g. from :meth:`encode` or
            :meth:`restore_latent`.

        Returns
        -------
        images : ndarray of shape (n, c, h, w), float32
        """
        check_is_fitted(self)
        C = self.autoencoder_.latent_channels
        f = self.autoencoder_.downsampling_factor
        _, h, w = self.image_shape_
        Z = check_images(Z, name="Z", n_channels=C, spatial_shape=(h // f, w // f))
        if Z.min() < 0 or Z.max() > 1:
            raise ValueError("Z must hold codes in [0, 1].")
        device = self._runtime_device()
        ae, _, _ = self._networks_on(device)
        precision = check_precision(self.precision, device)
        out = np.empty((Z.shape[0],) + self.image_shape_, np.float32)
        step = int(self.batch_size)
        with torch.inference_mode():
            for start in range(0, Z.shape[0], step):
                z = torch.from_numpy(Z[start:start + step]).to(device)
                out[start:start + step] = _runtime.decode_codes(ae, z, device,
                                                                precision).cpu().numpy()
        return out

    def restore_latent(self, X: ArrayLike) -> LatentRestoration:
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
        device = self._runtime_device()
        names = ("code", "probabilities", "restored", "mask", "injected", "masked_fraction",
                 "mean_flip", "step_masked_fraction")
        parts = {name: [] for name in names}
        for _, out in _runtime.iter_restorations(
                self._networks_on(device), X, seed=self._inference_seed(),
                settings=self._inference_settings(device), device=device, keep_latents=True,
                decode=False):
            for name in names:
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
        return hasattr(self, "autoencoder_")

    # ------------------------------------------------------------------ persistence
    def __getstate__(self):
        state = dict(super().__getstate__())
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
                state[name] = _cache.rebuild(cls, saved["config"], saved["state"])
        super().__setstate__(state)
        if "autoencoder_" in state:
            self._runtime_device()  # warns now, at load, if CUDA is missing

    def save(self, path: str | os.PathLike, *, key: bytes | str | None = None) -> str:
        """Save a fitted detector as a file that is safe to share.

        The file is a `safetensors <https://huggingface.co/docs/safetensors>`_ file: the
        weights of both networks as raw tensors (no pickle) and, in its header, a JSON
        config (parameters and fitted values) with a SHA-256 checksum over config and
        tensors. The checksum detects corruption; pass ``key`` to also sign the file with
        an HMAC-SHA256, which :func:`skberdiff.load` verifies with the same key
        (authenticity). Machine-specific parameters (``memory``, ``checkpoint_dir``,
        ``device``, ``verbose``, ``compile``) are not saved. The file is written to a
        temporary name and renamed, so an existing file is never left half-written.

        Parameters
        ----------
        path : str or path-like
            Output file (conventionally ``*.skbd``).
        key : bytes or str, default=None
            Secret key of the HMAC signature.

        Returns
        -------
        path : str
        """
        check_is_fitted(self)
        self._check_thresholds("offset")
        return _format.save_detector(self, path, key=key)


def _map_scores(maps, region):
    """Mean and maximum of each map over its foreground pixels (all pixels if none)."""
    flat = maps.reshape(maps.shape[0], -1)
    keep = region.reshape(region.shape[0], -1)
    keep = np.where(keep.any(axis=1, keepdims=True), keep, True)
    mean = np.where(keep, flat, 0).sum(1) / keep.sum(1)
    return {"map_mean": mean.astype(np.float64),
            "map_max": np.where(keep, flat, -np.inf).max(1).astype(np.float64)}


def load(path: str | os.PathLike, *, key: bytes | str | None = None, device="auto",
         memory=None, checkpoint_dir=None, verbose: int = 0,
         compile=False) -> MaskedBernoulliDiffusionDetector:
    """Load a detector written by :meth:`MaskedBernoulliDiffusionDetector.save`.

    Nothing in the file is executed or unpickled. The header, the JSON config, every
    parameter and fitted value (with the estimator's own validation) and the network
    configurations (against the tensor shapes in the file) are checked before any network
    is allocated; then the SHA-256 checksum and, with ``key``, the HMAC signature.

    Parameters
    ----------
    path : str or path-like
        File written by ``save``.
    key : bytes or str, default=None
        Key the file was signed with. With a key, an unsigned file or a wrong signature is
        refused; without one, a signed file loads with a warning.
    device : str, default="auto"
        Device of the loaded detector. Like ``memory``, ``checkpoint_dir``, ``verbose``
        and ``compile`` it is never read from the file.
    memory : None, str or joblib.Memory, default=None
        Network cache of the loaded detector (for later fits).
    checkpoint_dir : str or path-like, default=None
        Training checkpoints of later fits.
    verbose : int, default=0
        Progress bars.
    compile : bool or str, default=False
        ``torch.compile`` mode of the UNet.

    Returns
    -------
    detector : MaskedBernoulliDiffusionDetector
        A fitted, calibrated detector.

    Raises
    ------
    UnsafeModelFileError
        If the file is not a valid skberdiff model, holds out-of-range values, networks that
        do not match their tensors, fails its checksum, or fails the signature check.

    Examples
    --------
    >>> import os, tempfile
    >>> from skberdiff import MaskedBernoulliDiffusionDetector, load
    >>> from skberdiff.datasets import make_toy_images
    >>> X, _ = make_toy_images(12, image_size=32, random_state=0)
    >>> det = MaskedBernoulliDiffusionDetector(
    ...     preset="tiny", autoencoder_iterations=2, diffusion_iterations=2,
    ...     diffusion_steps=50, noise_level=5, device="cpu", random_state=0).fit(X)
    >>> path = det.save(os.path.join(tempfile.mkdtemp(), "det.skbd"), key="secret")
    >>> twin = load(path, key="secret", device="cpu")
    >>> bool((twin.anomaly_map(X[:2]) == det.anomaly_map(X[:2])).all())
    True
    """
    return _format.load_detector(path, key=key, device=device, memory=memory,
                                 checkpoint_dir=checkpoint_dir, verbose=verbose,
                                 compile=compile)

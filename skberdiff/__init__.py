"""skberdiff: masked Bernoulli diffusion for unsupervised anomaly detection in medical images.

The main entry point is :class:`MaskedBernoulliDiffusionDetector`, a scikit-learn novelty
detector. Sub-modules: :mod:`skberdiff.nn` (networks), :mod:`skberdiff.diffusion` (Bernoulli
diffusion math), :mod:`skberdiff.training` (training loops), :mod:`skberdiff.losses`,
:mod:`skberdiff.postprocessing`, :mod:`skberdiff.metrics`, :mod:`skberdiff.diagnostics`,
:mod:`skberdiff.plotting`, :mod:`skberdiff.io` (NIfTI and OCT images),
:mod:`skberdiff.datasets` (offline benchmark data), :mod:`skberdiff.preprocessing`.
"""

__version__ = "0.1.0.dev0"

from ._cache import clear_network_cache
from ._detector import DetectionResult, LatentRestoration, MaskedBernoulliDiffusionDetector, load
from .exceptions import DeviceFallbackWarning, MissingWeightsError, UnsafeModelFileError
from .metrics import (
    auprc_scorer,
    dice_scorer,
    image_auroc_scorer,
    image_average_precision_scorer,
    image_scores,
    pixel_scores,
)
from .preprocessing import IntensityScaler, PadCrop

__all__ = [
    "MaskedBernoulliDiffusionDetector",
    "DetectionResult",
    "LatentRestoration",
    "IntensityScaler",
    "PadCrop",
    "clear_network_cache",
    "load",
    "dice_scorer",
    "auprc_scorer",
    "pixel_scores",
    "image_auroc_scorer",
    "image_average_precision_scorer",
    "image_scores",
    "DeviceFallbackWarning",
    "MissingWeightsError",
    "UnsafeModelFileError",
    "__version__",
]

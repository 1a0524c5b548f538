"""Torch modules of skberdiff: the binarizing autoencoder, the eps-UNet, presets and LPIPS."""

from .autoencoder import BinaryAutoencoder, PatchDiscriminator
from .lpips import LPIPS, perceptual_loss
from .presets import (
    AUTOENCODER_PRESETS,
    PRESETS,
    UNET_PRESETS,
    build_autoencoder,
    build_discriminator,
    build_unet,
    count_parameters,
)
from .unet import EpsUNet

__all__ = [
    "PRESETS",
    "AUTOENCODER_PRESETS",
    "UNET_PRESETS",
    "BinaryAutoencoder",
    "EpsUNet",
    "LPIPS",
    "PatchDiscriminator",
    "build_autoencoder",
    "build_discriminator",
    "build_unet",
    "count_parameters",
    "perceptual_loss",
]

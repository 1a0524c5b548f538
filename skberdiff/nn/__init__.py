"""Torch modules of skberdiff: the binarizing autoencoder, the eps-UNet and presets."""

from .autoencoder import BinaryAutoencoder, PatchDiscriminator
from .presets import (
    AUTOENCODER_PRESETS,
    UNET_PRESETS,
    build_autoencoder,
    build_discriminator,
    build_unet,
    count_parameters,
)
from .unet import EpsUNet

__all__ = [
    "AUTOENCODER_PRESETS",
    "UNET_PRESETS",
    "BinaryAutoencoder",
    "EpsUNet",
    "PatchDiscriminator",
    "build_autoencoder",
    "build_discriminator",
    "build_unet",
    "count_parameters",
]

"""Architecture presets and the public builders.

``"paper"`` reproduces the networks of Wolleb et al. (2024) (UNet 36,034,432 parameters with
128 latent channels; autoencoder 4,103,716 parameters with 4 input channels, 256x256 images to
128x32x32 binary latents). The smaller presets keep the paper's *regime* at CPU scale:

``"small"`` (64x64 to 128x128 images, the default)
    Autoencoder: widths 32-64-64, x4 downsampling (4x64x64 -> 64x16x16 binary latent,
    16,384 bits), one residual block per level, middle attention; 945,572 parameters with 4
    input channels. On the MNI-derived benchmark at 64 px, after 3,000 iterations on 1,080
    healthy slices, it reproduces a large share of the lesion signal (lesion retention 0.53,
    0.26 and 0.46 on benchmark seeds 0, 1 and 2) at a healthy PSNR of 29.0-29.2 dB: the paper's
    premise that the autoencoder copies anomalies and the diffusion model must remove them.
    UNet: 32 channels, multipliers (1, 2, 2), attention at 8x8 and in the middle; 1,149,152
    parameters. Measured costs on one CPU core (torch 2.13, AMD EPYC): 0.6 s per
    autoencoder step at batch 16, 0.13 s per diffusion step at batch 32, so about 52
    minutes for a benchmark seed's 3,000 + 10,000 iterations (measured: 66 and 71 minutes
    with a second run on the other core); at inference 0.27 s per image at batch 1 for
    ``L = 50`` and about 2 ms per image and denoising step in batches of 32.
``"small-x8"``
    The earlier small preset, kept as a reference: autoencoder x8 (4x64x64 -> 64x8x8,
    715,668 parameters), UNet 64 channels. Its low-fidelity autoencoder removes most of a
    lesion by itself (retention about 0.08), so the autoencoder alone is already a strong
    detector and the diffusion stage has little to add.
``"tiny"``
    1-channel 32x32 images in seconds (tests, examples).
"""

import torch

from ._layers import reset_parameters
from .autoencoder import BinaryAutoencoder, PatchDiscriminator
from .unet import EpsUNet

__all__ = [
    "PRESETS",
    "AUTOENCODER_PRESETS",
    "UNET_PRESETS",
    "build_autoencoder",
    "build_unet",
    "build_discriminator",
    "count_parameters",
]

AUTOENCODER_PRESETS = {
    "paper": dict(base_width=32, width_multipliers=(1, 2, 2, 4), n_res_blocks=2,
                  latent_channels=128, embed_dim=256, attention_levels=(),
                  middle_attention=True),
    "small": dict(base_width=32, width_multipliers=(1, 2, 2), n_res_blocks=1,
                  latent_channels=64, embed_dim=128, attention_levels=(),
                  middle_attention=True),
    "small-x8": dict(base_width=16, width_multipliers=(1, 2, 2, 4), n_res_blocks=1,
                     latent_channels=64, embed_dim=64, attention_levels=(),
                     middle_attention=True),
    "tiny": dict(base_width=8, width_multipliers=(1, 2, 2), n_res_blocks=1,
                 latent_channels=16, embed_dim=16, attention_levels=(),
                 middle_attention=False),
}

#: Names of the architecture presets.
PRESETS = tuple(AUTOENCODER_PRESETS)

UNET_PRESETS = {
    "paper": dict(model_channels=128, channel_multipliers=(1, 2, 2, 2), n_res_blocks=2,
                  attention_downsampling=(2,), dropout=0.0),
    "small": dict(model_channels=32, channel_multipliers=(1, 2, 2), n_res_blocks=1,
                  attention_downsampling=(2,), dropout=0.0),
    "small-x8": dict(model_channels=64, channel_multipliers=(1, 2, 2), n_res_blocks=1,
                     attention_downsampling=(2,), dropout=0.0),
    "tiny": dict(model_channels=16, channel_multipliers=(1, 2), n_res_blocks=1,
                 attention_downsampling=(2,), dropout=0.0),
}

DISCRIMINATOR_PRESETS = {
    "paper": dict(base_width=64, n_layers=3),
    "small": dict(base_width=32, n_layers=3),
    "small-x8": dict(base_width=32, n_layers=3),
    "tiny": dict(base_width=8, n_layers=2),
}


def _build(cls, seed, *args, **kwargs):
    """Construct ``cls(*args, **kwargs)`` with weights drawn from ``seed`` only.

    The module is built on the meta device (no memory, no global RNG draw), materialised
    and initialised from its own ``torch.Generator``: torch's global RNG is neither read nor
    changed, so seeded builds in concurrent threads are identical to serial ones. ``None``
    builds normally from (and advances) the global RNG, like any torch module.
    """
    if seed is None:
        return cls(*args, **kwargs)
    with torch.device("meta"):
        module = cls(*args, **kwargs)
    module = module.to_empty(device="cpu")
    return reset_parameters(module, torch.Generator().manual_seed(int(seed)))


def _resolve(presets, preset, overrides, kind):
    if preset not in presets:
        raise ValueError(
            f"Unknown {kind} preset {preset!r}; choose one of {sorted(presets)}."
        )
    config = dict(presets[preset])
    unknown = set(overrides) - set(config)
    if unknown:
        raise TypeError(
            f"Unknown {kind} override(s) {sorted(unknown)}; valid keys are {sorted(config)}."
        )
    config.update(overrides)
    return config


def build_autoencoder(preset: str = "paper", in_channels: int = 4, *, seed: int | None = None,
                      **overrides):
    """Build a binarizing autoencoder from a preset.

    Parameters
    ----------
    preset : {"paper", "small", "small-x8", "tiny"}, default="paper"
        Architecture preset.
    in_channels : int, default=4
        Image channels.
    seed : int, default=None
        Seed of the weight initialisation; the global torch RNG is left untouched. ``None``
        uses (and advances) the global RNG like any torch module.
    **overrides
        Any :class:`~skberdiff.nn.BinaryAutoencoder` keyword (e.g. ``latent_channels``).

    Returns
    -------
    autoencoder : BinaryAutoencoder

    Examples
    --------
    >>> count_parameters(build_autoencoder("paper", in_channels=4))
    4103716
    >>> build_autoencoder("tiny", 1).downsampling_factor
    4
    """
    config = _resolve(AUTOENCODER_PRESETS, preset, overrides, "autoencoder")
    return _build(BinaryAutoencoder, seed, in_channels, **config)


def build_unet(preset: str = "paper", latent_channels: int | None = None, *,
               seed: int | None = None, **overrides):
    """Build the eps-UNet from a preset.

    Parameters
    ----------
    preset : {"paper", "small", "small-x8", "tiny"}, default="paper"
        Architecture preset.
    latent_channels : int, default=None
        Latent channels; ``None`` takes the matching autoencoder preset's value.
    seed : int, default=None
        Seed of the weight initialisation (global RNG untouched).
    **overrides
        Any :class:`~skberdiff.nn.EpsUNet` keyword (e.g. ``model_channels``).

    Returns
    -------
    unet : EpsUNet

    Examples
    --------
    >>> count_parameters(build_unet("paper"))
    36034432
    """
    config = _resolve(UNET_PRESETS, preset, overrides, "UNet")
    if latent_channels is None:
        latent_channels = AUTOENCODER_PRESETS[preset]["latent_channels"]
    return _build(EpsUNet, seed, latent_channels, **config)


def build_discriminator(preset: str = "paper", in_channels: int = 4, *, seed: int | None = None,
                        **overrides):
    """Build the PatchGAN discriminator used by the optional adversarial loss.

    Parameters
    ----------
    preset : {"paper", "small", "small-x8", "tiny"}, default="paper"
        Architecture preset.
    in_channels : int, default=4
        Image channels.
    seed : int, default=None
        Seed of the weight initialisation (global RNG untouched). ``None`` uses (and
        advances) the global RNG like any torch module.
    **overrides
        Any :class:`~skberdiff.nn.PatchDiscriminator` keyword (e.g. ``n_layers``).

    Returns
    -------
    discriminator : PatchDiscriminator

    Examples
    --------
    >>> count_parameters(build_discriminator("paper", 4))
    2766657
    """
    config = _resolve(DISCRIMINATOR_PRESETS, preset, overrides, "discriminator")
    return _build(PatchDiscriminator, seed, in_channels, **config)


def count_parameters(module) -> int:
    """Number of parameters of a module (trainable or not).

    Parameters
    ----------
    module : torch.nn.Module
        Any PyTorch module.

    Returns
    -------
    n_parameters : int
        Total number of elements of its parameters.

    Examples
    --------
    >>> import torch
    >>> count_parameters(torch.nn.Linear(3, 2))
    8
    """
    return sum(p.numel() for p in module.parameters())

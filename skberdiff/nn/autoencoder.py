"""The binarizing autoencoder of Binary Latent Diffusion and its PatchGAN discriminator.

The encoder maps an image ``(c, H, W)`` to Bernoulli probabilities ``sigmoid(E(x))`` of shape
``(latent_channels, H/f, W/f)``; a binary code ``z ~ B(sigmoid(E(x)))`` is sampled with a
straight-through gradient, mapped to ``embed_dim`` channels by a bias-free codebook matrix and
decoded. Layer layout follows Wang et al., "Binary Latent Diffusion" (CVPR 2023), as used by
Wolleb et al. (2024); identity skip convolutions that the reference builds but never applies
are not built here, so the paper preset has 4,103,716 parameters for 4 input channels.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ._layers import SelfAttention2d, Upsample2x, group_norm, normal_init

__all__ = ["BinaryAutoencoder", "PatchDiscriminator"]

_EPS = 1e-6  # GroupNorm epsilon of the reference autoencoder


class _ResBlock(nn.Module):
    def __init__(self, in_ch, out_ch):
        super().__init__()
        self.block = nn.Sequential(
            group_norm(in_ch, _EPS),
            nn.SiLU(),
            nn.Conv2d(in_ch, out_ch, 3, padding=1),
            group_norm(out_ch, _EPS),
            nn.SiLU(),
            nn.Conv2d(out_ch, out_ch, 3, padding=1),
        )
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x):
        return self.skip(x) + self.block(x)


class _Downsample(nn.Module):
    """Stride-2 3x3 convolution, padded on the right and bottom only (as the reference)."""

    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


def _middle(ch, attention):
    layers = [_ResBlock(ch, ch)]
    if attention:
        layers.append(SelfAttention2d(ch, eps=_EPS))
    layers.append(_ResBlock(ch, ch))
    return layers


class _Encoder(nn.Module):
    def __init__(self, in_channels, base_width, width_multipliers, n_res_blocks, embed_dim,
                 attention_levels, middle_attention):
        super().__init__()
        widths = [base_width * m for m in width_multipliers]
        layers = [nn.Conv2d(in_channels, base_width, 3, padding=1)]
        ch = base_width
        for level, width in enumerate(widths):
            for _ in range(n_res_blocks):
                layers.append(_ResBlock(ch, width))
                ch = width
                if level in attention_levels:
                    layers.append(SelfAttention2d(ch, eps=_EPS))
            if level != len(widths) - 1:
                layers.append(_Downsample(ch))
        layers += _middle(ch, middle_attention)
        layers += [group_norm(ch, _EPS), nn.Conv2d(ch, embed_dim, 3, padding=1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


class _Decoder(nn.Module):
    def __init__(self, out_channels, base_width, width_multipliers, n_res_blocks, embed_dim,
                 attention_levels, middle_attention):
        super().__init__()
        widths = [base_width * m for m in width_multipliers]
        ch = widths[-1]
        layers = [group_norm(embed_dim, _EPS), nn.Conv2d(embed_dim, ch, 3, padding=1)]
        layers += _middle(ch, middle_attention)
        for level in reversed(range(len(widths))):
            for _ in range(n_res_blocks):
                layers.append(_ResBlock(ch, widths[level]))
                ch = widths[level]
                if level in attention_levels:
                    layers.append(SelfAttention2d(ch, eps=_EPS))
            if level != 0:
                layers.append(Upsample2x(ch))
        layers.append(group_norm(ch, _EPS))
        self.layers = nn.Sequential(*layers)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)

    def forward(self, x):
        return self.conv_out(self.layers(x))


class BinaryAutoencoder(nn.Module):
    """Binarizing autoencoder: image -> Bernoulli latent probabilities -> binary code -> image.

    Parameters
    ----------
    in_channels : int
        Image channels ``c`` (4 for BRATS, 1 for OCT).
    base_width : int, default=32
        Width of the first level.
    width_multipliers : tuple of int, default=(1, 2, 2, 4)
        Width of each level relative to ``base_width``; every level but the last halves the
        resolution, so the downsampling factor is ``2 ** (len(width_multipliers) - 1)``.
    n_res_blocks : int, default=2
        Residual blocks per level.
    latent_channels : int, default=128
        Channels of the binary latent (the codebook size of the reference).
    embed_dim : int, default=256
        Width of the encoder output and of the codebook vectors.
    attention_levels : tuple of int, default=()
        Levels (0 = full resolution) with self-attention after each residual block.
    middle_attention : bool, default=True
        Self-attention between the two residual blocks at the lowest resolution.

    Attributes
    ----------
    config : dict
        The constructor arguments, enough to rebuild the module for loading a state dict.
    downsampling_factor : int
        Ratio of image size to latent size.

    Examples
    --------
    >>> import torch
    >>> ae = BinaryAutoencoder(1, base_width=8, width_multipliers=(1, 2), n_res_blocks=1,
    ...                        latent_channels=4, embed_dim=8)
    >>> x = torch.rand(2, 1, 16, 16)
    >>> p = ae.encode(x)
    >>> p.shape, bool(((p > 0) & (p < 1)).all())
    (torch.Size([2, 4, 8, 8]), True)
    >>> ae.decode(ae.binarize(p)).shape
    torch.Size([2, 1, 16, 16])
    """

    def __init__(self, in_channels, *, base_width=32, width_multipliers=(1, 2, 2, 4),
                 n_res_blocks=2, latent_channels=128, embed_dim=256, attention_levels=(),
                 middle_attention=True):
        super().__init__()
        self.config = dict(
            in_channels=int(in_channels), base_width=int(base_width),
            width_multipliers=tuple(int(m) for m in width_multipliers),
            n_res_blocks=int(n_res_blocks), latent_channels=int(latent_channels),
            embed_dim=int(embed_dim), attention_levels=tuple(int(a) for a in attention_levels),
            middle_attention=bool(middle_attention),
        )
        shared = dict(base_width=base_width, width_multipliers=width_multipliers,
                      n_res_blocks=n_res_blocks, embed_dim=embed_dim,
                      attention_levels=tuple(attention_levels), middle_attention=middle_attention)
        self.encoder = _Encoder(in_channels, **shared)
        self.to_logits = nn.Conv2d(embed_dim, latent_channels, 1)
        # Bias-free linear map from binary codes to embed_dim channels; stored as an
        # Embedding weight like the reference so the parameter layout matches.
        self.codebook = nn.Embedding(latent_channels, embed_dim)
        self.decoder = _Decoder(in_channels, **shared)
        self.downsampling_factor = 2 ** (len(width_multipliers) - 1)

    @property
    def in_channels(self) -> int:
        return self.config["in_channels"]

    @property
    def latent_channels(self) -> int:
        return self.config["latent_channels"]

    def encode_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid latent logits ``E(x)`` of shape (B, latent_channels, h, w).

        Parameters
        ----------
        x : torch.Tensor of shape (B, in_channels, H, W)
            Images; ``H`` and ``W`` are multiples of ``downsampling_factor``.

        Returns
        -------
        logits : torch.Tensor of shape (B, latent_channels, h, w)
            Latent logits, ``h = H / downsampling_factor`` and ``w = W /
            downsampling_factor``.
        """
        return self.to_logits(self.encoder(x))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Bernoulli probabilities ``sigmoid(E(x))`` of each latent bit, in (0, 1).

        Parameters
        ----------
        x : torch.Tensor of shape (B, in_channels, H, W)
            Images; ``H`` and ``W`` are multiples of ``downsampling_factor``.

        Returns
        -------
        probabilities : torch.Tensor of shape (B, latent_channels, h, w)
            Probability that each latent bit is 1, in (0, 1).
        """
        return torch.sigmoid(self.encode_logits(x))

    @staticmethod
    def binarize(probabilities: torch.Tensor, uniform: torch.Tensor | None = None,
                 *, generator: torch.Generator | None = None,
                 deterministic: bool = False) -> torch.Tensor:
        """Sample ``z ~ B(p)`` with a straight-through gradient.

        The forward value is binary; the backward pass treats it as ``p``
        (``z + p - stopgrad(p)``), as in the reference.

        Parameters
        ----------
        probabilities : torch.Tensor
            Bernoulli probabilities ``p``.
        uniform : torch.Tensor, optional
            Pre-drawn U(0, 1) noise of the same shape (``z = uniform < p``); lets callers
            control randomness exactly (distributed training, counter-based inference).
        generator : torch.Generator, optional
            Used when ``uniform`` is not given.
        deterministic : bool, default=False
            Threshold at 0.5 instead of sampling.

        Returns
        -------
        code : torch.Tensor, same shape and dtype as ``probabilities``
            Binary code in {0, 1}; carries the straight-through gradient when
            ``probabilities`` requires grad.
        """
        if deterministic:
            hard = (probabilities > 0.5).to(probabilities.dtype)
        else:
            if uniform is None:
                uniform = torch.rand(probabilities.shape, generator=generator,
                                     device=probabilities.device, dtype=probabilities.dtype)
            hard = (uniform < probabilities).to(probabilities.dtype)
        if probabilities.requires_grad:
            # p - stopgrad(p) is exactly 0 in the forward pass, so the code stays binary.
            return hard + (probabilities - probabilities.detach())
        return hard

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decode binary (or soft) codes of shape (B, latent_channels, h, w) to images.

        Parameters
        ----------
        z : torch.Tensor of shape (B, latent_channels, h, w)
            Binary code, or soft values in [0, 1].

        Returns
        -------
        x_hat : torch.Tensor of shape (B, in_channels, H, W)
            Reconstruction, ``H = h * downsampling_factor`` (no output activation; clamp
            to [0, 1] at inference).
        """
        embedded = torch.einsum("bchw,cd->bdhw", z, self.codebook.weight)
        return self.decoder(embedded)

    def forward(self, x: torch.Tensor, uniform: torch.Tensor | None = None,
                generator: torch.Generator | None = None):
        """Encode, sample the binary code and decode.

        Returns
        -------
        x_hat : torch.Tensor
            Reconstruction (no output activation; clamp to [0, 1] at inference).
        probabilities : torch.Tensor
            ``sigmoid(E(x))``.
        code : torch.Tensor
            The sampled binary code.
        """
        probabilities = self.encode(x)
        code = self.binarize(probabilities, uniform, generator=generator)
        return self.decode(code), probabilities, code

    @property
    def last_layer(self) -> torch.Tensor:
        """Weight of the output convolution (for the adaptive adversarial weight)."""
        return self.decoder.conv_out.weight


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (pix2pix layout) with BatchNorm and LeakyReLU(0.2).

    Parameters
    ----------
    in_channels : int
        Image channels.
    base_width : int, default=64
        Width of the first layer (``ndf``).
    n_layers : int, default=3
        Number of stride-2 layers.

    Examples
    --------
    >>> import torch
    >>> d = PatchDiscriminator(4)
    >>> sum(p.numel() for p in d.parameters())
    2766657
    >>> d(torch.rand(1, 4, 64, 64)).shape
    torch.Size([1, 1, 6, 6])
    """

    def __init__(self, in_channels, *, base_width=64, n_layers=3):
        super().__init__()
        self.config = dict(in_channels=int(in_channels), base_width=int(base_width),
                           n_layers=int(n_layers))
        layers = [nn.Conv2d(in_channels, base_width, 4, stride=2, padding=1),
                  nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(base_width * prev, base_width * mult, 4, stride=stride,
                                 padding=1, bias=False),
                       nn.BatchNorm2d(base_width * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(base_width * mult, 1, 4, stride=1, padding=1))
        self.layers = nn.Sequential(*layers)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                normal_init(module, 0.0, 0.02)
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.BatchNorm2d):
                normal_init(module, 1.0, 0.02)
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        """Patch logits (real > 0 > fake) of shape (B, 1, h', w')."""
        return self.layers(x)

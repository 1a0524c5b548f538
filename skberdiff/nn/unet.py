"""The eps-UNet that predicts per-entry flip probabilities of a noisy binary latent.

Layout of the guided-diffusion / improved-DDPM UNet (Dhariwal & Nichol 2021) as configured by
Wolleb et al. (2024): sinusoidal time embedding, residual blocks with additive time
conditioning, GroupNorm, single-head self-attention at selected resolutions and in the middle
block, zero-initialised output convolutions. The paper preset has 36,034,432 parameters.
"""

import math

import torch
from torch import nn

from ._layers import SelfAttention2d, Upsample2x, group_norm, zero_init

__all__ = ["EpsUNet", "timestep_embedding"]


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0):
    """Sinusoidal embedding ``[cos(t f), sin(t f)]`` with log-spaced frequencies ``f``.

    Parameters
    ----------
    timesteps : torch.Tensor of shape (B,)
        Possibly fractional time indices.
    dim : int
        Embedding width.
    max_period : float, default=1e4
        Lowest frequency is ``1 / max_period``.

    Returns
    -------
    embedding : torch.Tensor of shape (B, dim)

    Examples
    --------
    >>> timestep_embedding(torch.tensor([0.0, 5.0]), 8).shape
    torch.Size([2, 8])
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=timesteps.device,
                                                             dtype=torch.float32) / half)
    args = timesteps.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class _ResBlock(nn.Module):
    def __init__(self, in_ch, out_ch, emb_dim, dropout):
        super().__init__()
        self.in_layers = nn.Sequential(group_norm(in_ch), nn.SiLU(),
                                       nn.Conv2d(in_ch, out_ch, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_ch))
        self.out_layers = nn.Sequential(group_norm(out_ch), nn.SiLU(), nn.Dropout(dropout),
                                        zero_init(nn.Conv2d(out_ch, out_ch, 3, padding=1)))
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x, emb):
        h = self.in_layers(x) + self.emb_layers(emb)[:, :, None, None]
        return self.skip(x) + self.out_layers(h)


class _Step(nn.Sequential):
    """A sequence of layers where residual blocks also receive the time embedding."""

    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, _ResBlock) else layer(x)
        return x


def _attention(ch):
    return SelfAttention2d(ch, fused_qkv=True, zero_init_proj=True)


class _Downsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class EpsUNet(nn.Module):
    """UNet ``eps_theta(z_t, t)`` returning flip-probability logits.

    ``sigmoid`` of the output is the predicted probability that each entry of ``z_t`` was
    flipped relative to ``z_0``; the logits are returned so that the loss can use the
    numerically stable ``binary_cross_entropy_with_logits``.

    Parameters
    ----------
    latent_channels : int, default=128
        Channels of the binary latent (input and output).
    model_channels : int, default=128
        Width of the first level.
    channel_multipliers : tuple of int, default=(1, 2, 2, 2)
        Width of each level relative to ``model_channels``.
    n_res_blocks : int, default=2
        Residual blocks per level (the decoder has one more).
    attention_downsampling : tuple of int, default=(2,)
        Downsampling factors (1 = latent resolution) at which every residual block is
        followed by self-attention; the paper's "attention at resolution 16" on 32x32
        latents is factor 2. The middle block always has attention.
    dropout : float, default=0.0
        Dropout in the residual blocks.

    Attributes
    ----------
    config : dict
        The constructor arguments.

    Examples
    --------
    >>> net = EpsUNet(4, model_channels=16, channel_multipliers=(1, 2), n_res_blocks=1)
    >>> net(torch.zeros(2, 4, 8, 8), torch.tensor([0.0, 10.0])).shape
    torch.Size([2, 4, 8, 8])
    """

    def __init__(self, latent_channels=128, *, model_channels=128,
                 channel_multipliers=(1, 2, 2, 2), n_res_blocks=2,
                 attention_downsampling=(2,), dropout=0.0):
        super().__init__()
        self.config = dict(
            latent_channels=int(latent_channels), model_channels=int(model_channels),
            channel_multipliers=tuple(int(m) for m in channel_multipliers),
            n_res_blocks=int(n_res_blocks),
            attention_downsampling=tuple(int(a) for a in attention_downsampling),
            dropout=float(dropout),
        )
        mc = model_channels
        emb_dim = 4 * mc
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(),
                                        nn.Linear(emb_dim, emb_dim))
        self.input_blocks = nn.ModuleList([_Step(nn.Conv2d(latent_channels, mc, 3, padding=1))])
        skip_channels = [mc]
        ch, ds = mc, 1
        for level, mult in enumerate(channel_multipliers):
            for _ in range(n_res_blocks):
                layers = [_ResBlock(ch, mult * mc, emb_dim, dropout)]
                ch = mult * mc
                if ds in attention_downsampling:
                    layers.append(_attention(ch))
                self.input_blocks.append(_Step(*layers))
                skip_channels.append(ch)
            if level != len(channel_multipliers) - 1:
                self.input_blocks.append(_Step(_Downsample(ch)))
                skip_channels.append(ch)
                ds *= 2
        self.middle_block = _Step(_ResBlock(ch, ch, emb_dim, dropout), _attention(ch),
                                  _ResBlock(ch, ch, emb_dim, dropout))
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_multipliers))):
            for i in range(n_res_blocks + 1):
                layers = [_ResBlock(ch + skip_channels.pop(), mc * mult, emb_dim, dropout)]
                ch = mc * mult
                if ds in attention_downsampling:
                    layers.append(_attention(ch))
                if level and i == n_res_blocks:
                    layers.append(Upsample2x(ch))
                    ds //= 2
                self.output_blocks.append(_Step(*layers))
        self.out = nn.Sequential(group_norm(ch), nn.SiLU(),
                                 zero_init(nn.Conv2d(mc, latent_channels, 3, padding=1)))
        self.downsampling_factor = 2 ** (len(channel_multipliers) - 1)

    @property
    def latent_channels(self) -> int:
        return self.config["latent_channels"]

    def forward(self, z: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Flip logits for ``z`` (B, C, h, w) at 0-based time indices ``timesteps`` (B,).

        The index is the paper's ``t - 1`` (the reference code's convention).
        """
        emb = self.time_embed(timestep_embedding(timesteps, self.config["model_channels"]))
        h = z
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)

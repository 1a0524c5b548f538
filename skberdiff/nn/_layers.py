"""Building blocks shared by the autoencoder and the UNet."""

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["group_norm", "SelfAttention2d", "Upsample2x"]


def group_norm(channels: int, eps: float = 1e-5) -> nn.GroupNorm:
    """GroupNorm with 32 groups as in both reference networks, fewer for narrow layers.

    Narrow layers (tiny presets) use ``gcd(channels, 32)`` groups so any width works.
    """
    groups = math.gcd(channels, 32)
    return nn.GroupNorm(groups, channels, eps=eps)


class SelfAttention2d(nn.Module):
    """Single-head spatial self-attention with a residual connection.

    ``GroupNorm -> q, k, v (1x1) -> softmax(q k^T / sqrt(c)) v -> 1x1 projection``; the
    parameter count equals a ``GroupNorm`` plus four ``c x c`` 1x1 convolutions with bias,
    whether q, k, v are stored as three convolutions (autoencoder) or one fused ``3c``
    convolution (UNet).

    Parameters
    ----------
    channels : int
        Feature width ``c``.
    eps : float, default=1e-5
        GroupNorm epsilon.
    fused_qkv : bool, default=False
        One ``c -> 3c`` convolution for q, k, v (guided-diffusion layout) instead of three.
    zero_init_proj : bool, default=False
        Initialise the output projection at zero so the block starts as the identity
        (guided-diffusion does this).
    """

    def __init__(self, channels, *, eps=1e-5, fused_qkv=False, zero_init_proj=False):
        super().__init__()
        self.norm = group_norm(channels, eps)
        if fused_qkv:
            self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        else:
            self.q = nn.Conv2d(channels, channels, 1)
            self.k = nn.Conv2d(channels, channels, 1)
            self.v = nn.Conv2d(channels, channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        if zero_init_proj:
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)
        self.fused_qkv = fused_qkv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        hn = self.norm(x)
        if self.fused_qkv:
            q, k, v = self.qkv(hn).chunk(3, dim=1)
        else:
            q, k, v = self.q(hn), self.k(hn), self.v(hn)
        # (B, 1 head, HW, C): the fused kernel picks flash/memory-efficient attention on GPUs.
        q, k, v = (t.reshape(b, 1, c, h * w).transpose(-1, -2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj(out)


class Upsample2x(nn.Module):
    """Nearest-neighbour upsampling by 2 followed by a 3x3 convolution (both networks)."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))

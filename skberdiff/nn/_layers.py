"""Building blocks shared by the autoencoder and the UNet."""

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["group_norm", "SelfAttention2d", "Upsample2x", "zero_init", "normal_init",
           "reset_parameters"]


def zero_init(module: nn.Module) -> nn.Module:
    """Mark ``module`` to be initialised at zero (and zero it now); returns it.

    :func:`reset_parameters` honours the mark, so a network re-initialised from a seeded
    generator keeps its zero-initialised layers (guided-diffusion's output convolutions).
    """
    module._skberdiff_init = ("zero",)
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def normal_init(module: nn.Module, mean: float, std: float) -> nn.Module:
    """Mark ``module``'s weight to be drawn from ``N(mean, std)`` (pix2pix/PatchGAN layers)."""
    module._skberdiff_init = ("normal", float(mean), float(std))
    return module


def reset_parameters(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """(Re-)initialise every parameter of ``module`` from ``generator`` only.

    Uses PyTorch's default initialisations (Kaiming-uniform weights and fan-in uniform
    biases for convolutions and linear layers, ``N(0, 1)`` embeddings, unit/zero norms)
    unless a layer is marked by :func:`zero_init` or :func:`normal_init`. Torch's global
    RNG is never read, so seeded builds are identical in concurrent threads.

    Parameters
    ----------
    module : torch.nn.Module
        The network (parameters may be uninitialised, e.g. after ``to_empty``).
    generator : torch.Generator
        Source of every random draw.

    Returns
    -------
    module : torch.nn.Module
    """
    with torch.no_grad():
        for layer in module.modules():
            mark = getattr(layer, "_skberdiff_init", None)
            if isinstance(layer, nn.modules.batchnorm._NormBase):
                layer.reset_running_stats()
            if mark is not None and mark[0] == "zero":
                for p in layer.parameters(recurse=False):
                    p.zero_()
                continue
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                if mark is not None:
                    nn.init.normal_(layer.weight, mark[1], mark[2], generator=generator)
                else:
                    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
                if layer.bias is not None:
                    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(layer.weight)
                    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
            elif isinstance(layer, nn.Embedding):
                nn.init.normal_(layer.weight, generator=generator)
            elif isinstance(layer, (nn.GroupNorm, nn.modules.batchnorm._NormBase)):
                if layer.weight is not None:
                    if mark is not None:
                        nn.init.normal_(layer.weight, mark[1], mark[2], generator=generator)
                    else:
                        nn.init.ones_(layer.weight)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
    return module


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
            zero_init(self.proj)
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

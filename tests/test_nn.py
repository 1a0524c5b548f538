import pytest
import torch

from skberdiff.nn import (
    AUTOENCODER_PRESETS,
    UNET_PRESETS,
    BinaryAutoencoder,
    build_autoencoder,
    build_discriminator,
    build_unet,
    count_parameters,
)
from skberdiff.nn.unet import timestep_embedding


def test_paper_parameter_counts_match_the_paper():
    # The paper's UNet, and its autoencoder without the reference's unused log-sigma head
    # (9,380 parameters) and never-applied identity skip convolutions (143,712): the
    # reference counts 4,256,808 with them.
    assert count_parameters(build_unet("paper", latent_channels=128)) == 36_034_432
    assert count_parameters(build_autoencoder("paper", in_channels=4)) == 4_103_716
    assert count_parameters(build_discriminator("paper", in_channels=4)) == 2_766_657


def test_small_preset_sizes_stated_in_the_presets_docstring():
    from skberdiff.nn import PRESETS

    assert set(PRESETS) == set(AUTOENCODER_PRESETS) == set(UNET_PRESETS)
    ae = build_autoencoder("small", 4)
    assert count_parameters(ae) == 945_572 and ae.downsampling_factor == 4
    assert count_parameters(build_unet("small", ae.latent_channels)) == 1_149_152
    x8 = build_autoencoder("small-x8", 4)
    assert count_parameters(x8) == 715_668 and x8.downsampling_factor == 8


def test_seeded_builds_never_touch_the_global_rng_and_keep_zero_inits():
    torch.manual_seed(0)
    state = torch.random.get_rng_state()
    a = build_unet("tiny", seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  build_unet("tiny", seed=4).state_dict().values()))
    assert not build_unet("tiny", seed=5).input_blocks[0][0].weight.equal(
        a.input_blocks[0][0].weight)
    assert float(a.out[-1].weight.abs().sum()) == 0.0  # guided-diffusion's zero init kept


def test_paper_autoencoder_maps_256_images_to_128x32x32_latents():
    ae = build_autoencoder("paper", 4, seed=0)
    with torch.inference_mode():
        p = ae.encode(torch.rand(1, 4, 256, 256))
        x_hat = ae.decode(ae.binarize(p))
    assert p.shape == (1, 128, 32, 32)
    assert x_hat.shape == (1, 4, 256, 256)
    assert ae.downsampling_factor == 8


@pytest.mark.parametrize("preset", sorted(AUTOENCODER_PRESETS))
@pytest.mark.parametrize("channels", [1, 4])
def test_presets_build_and_round_trip_shapes(preset, channels):
    ae = build_autoencoder(preset, channels, seed=0)
    unet = build_unet(preset, seed=0)
    size = 4 * ae.downsampling_factor * unet.downsampling_factor
    x = torch.rand(2, channels, size, size)
    with torch.inference_mode():
        p = ae.encode(x)
        assert p.shape[1] == unet.latent_channels == AUTOENCODER_PRESETS[preset]["latent_channels"]
        assert ae.decode(ae.binarize(p)).shape == x.shape
        assert unet(ae.binarize(p), torch.tensor([0.0, 999.0])).shape == p.shape


def test_unet_output_is_zero_initialised_and_time_conditioned():
    unet = build_unet("tiny", seed=0)
    z = torch.randint(0, 2, (2, 16, 8, 8)).float()
    with torch.no_grad():
        assert unet(z, torch.tensor([1.0, 2.0])).abs().max() == 0  # zero-init output conv
        for p in unet.parameters():  # leave the zero-initialised start behind
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
        a = unet(z[:1], torch.tensor([1.0]))
        b = unet(z[:1], torch.tensor([500.0]))
    assert not torch.allclose(a, b)


def test_timestep_embedding_layout():
    emb = timestep_embedding(torch.tensor([0.0, 3.0]), 6)
    assert torch.allclose(emb[0], torch.tensor([1.0, 1, 1, 0, 0, 0]))
    assert torch.allclose(emb[1, 0], torch.cos(torch.tensor(3.0)))
    assert timestep_embedding(torch.tensor([1.0]), 7).shape == (1, 7)


def test_binarize_is_binary_with_straight_through_gradient():
    p = torch.full((2, 3), 0.3, requires_grad=True)
    z = BinaryAutoencoder.binarize(p, generator=torch.Generator().manual_seed(0))
    assert set(z.detach().unique().tolist()) <= {0.0, 1.0}
    (z * torch.arange(3.0)).sum().backward()
    assert torch.equal(p.grad, torch.arange(3.0).expand(2, 3))


def test_binarize_uniform_and_deterministic():
    p = torch.tensor([[0.2, 0.6, 0.9]])
    u = torch.tensor([[0.1, 0.7, 0.5]])
    assert BinaryAutoencoder.binarize(p, u).tolist() == [[1.0, 0.0, 1.0]]
    assert BinaryAutoencoder.binarize(p, deterministic=True).tolist() == [[0.0, 1.0, 1.0]]


def test_seeded_builders_are_reproducible_and_leave_global_rng_alone():
    state = torch.get_rng_state()
    a = build_unet("tiny", seed=3)
    b = build_unet("tiny", seed=3)
    c = build_unet("tiny", seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_overrides_and_bad_presets():
    ae = build_autoencoder("tiny", 1, latent_channels=5)
    assert ae.latent_channels == 5 and ae.config["latent_channels"] == 5
    assert build_unet("tiny", latent_channels=5).latent_channels == 5
    assert build_unet("small").config["model_channels"] == UNET_PRESETS["small"]["model_channels"]
    with pytest.raises(ValueError, match="Unknown autoencoder preset 'huge'"):
        build_autoencoder("huge", 1)
    with pytest.raises(TypeError, match="Unknown UNet override"):
        build_unet("tiny", widht=3)


def test_config_rebuilds_an_identical_module():
    ae = build_autoencoder("tiny", 2, seed=1)
    clone = BinaryAutoencoder(**ae.config)
    clone.load_state_dict(ae.state_dict())
    x = torch.rand(1, 2, 16, 16)
    with torch.inference_mode():
        assert torch.equal(ae.encode(x), clone.encode(x))

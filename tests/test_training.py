import numpy as np
import pytest
import torch

from skberdiff.exceptions import CorruptCheckpointError, TrainingDivergedError
from skberdiff.nn import build_autoencoder, build_discriminator, build_unet
from skberdiff.training import (
    ExponentialMovingAverage,
    encode_dataset,
    read_checkpoint,
    train_autoencoder,
    train_diffusion,
)


@pytest.fixture(scope="module")
def images():
    # Smooth blobs: something an autoencoder can learn in a few dozen steps.
    g = np.random.default_rng(0)
    yy, xx = np.mgrid[:16, :16] / 16.0
    out = []
    for _ in range(24):
        cy, cx, r = g.uniform(0.3, 0.7, 3) * [1, 1, 0.5]
        out.append(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r ** 2)))
    return np.asarray(out, dtype=np.float32)[:, None]


def _params(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_autoencoder_training_reduces_reconstruction_error(images):
    ae = build_autoencoder("tiny", 1, seed=0)
    res = train_autoencoder(ae, images, n_iterations=60, batch_size=8, learning_rate=3e-3,
                            device="cpu", verbose=0, log_every=10, ema_rate=None)
    first, last = res.history[0]["reconstruction"], res.history[-1]["reconstruction"]
    assert last < 0.5 * first
    assert {"loss", "reconstruction", "binarization"} <= set(res.history[-1])
    assert res.n_steps == 60 and res.ema is None and res.inference_model is ae


def test_diffusion_training_reduces_loss():
    # Codes that are almost always 0: the flips to predict are z_t itself, which a
    # trained model gets nearly right (an untrained one sits at ~1 bit per entry).
    probs = torch.full((32, 16, 4, 4), 0.02)
    unet = build_unet("tiny", seed=0)
    res = train_diffusion(unet, probs, n_iterations=150, batch_size=16, learning_rate=1e-2,
                          device="cpu", verbose=0, log_every=15)
    assert res.history[0]["loss"] > 0.5
    assert res.history[-1]["loss"] < 0.6 * res.history[0]["loss"]
    assert res.ema is not None and res.inference_model is res.ema


def _train_ae(images, path=None, callback=None, n=12):
    ae = build_autoencoder("tiny", 1, seed=0)
    res = train_autoencoder(ae, images, n_iterations=n, batch_size=5, device="cpu", verbose=0,
                            checkpoint_path=path, checkpoint_every=4, log_every=3,
                            callback=callback, seed=7)
    return ae, res


def _interrupt_at(step):
    def callback(k):
        if k == step:
            raise KeyboardInterrupt
    return callback


def test_autoencoder_resume_after_interrupt_matches_uninterrupted_run(images, tmp_path):
    reference, ref_res = _train_ae(images)
    path = tmp_path / "ae.pt"
    with pytest.raises(KeyboardInterrupt):
        _train_ae(images, path, _interrupt_at(7))
    assert path.exists()
    resumed, res = _train_ae(images, path)
    assert res.n_steps == 12
    assert torch.equal(_params(resumed), _params(reference))
    assert torch.equal(_params(res.ema), _params(ref_res.ema))
    assert [h["step"] for h in res.history] == [h["step"] for h in ref_res.history]
    assert np.allclose([h["loss"] for h in res.history], [h["loss"] for h in ref_res.history])


def test_diffusion_resume_after_interrupt_matches_uninterrupted_run(tmp_path):
    probs = torch.rand(10, 16, 4, 4, generator=torch.Generator().manual_seed(0))

    def run(path=None, callback=None):
        unet = build_unet("tiny", seed=1)
        res = train_diffusion(unet, probs, n_iterations=9, batch_size=4, device="cpu",
                              verbose=0, checkpoint_path=path, callback=callback, seed=3)
        return unet, res

    reference, _ = run()
    path = tmp_path / "diff.pt"
    with pytest.raises(KeyboardInterrupt):
        run(path, _interrupt_at(5))
    resumed, res = run(path)
    assert res.n_steps == 9
    assert torch.equal(_params(resumed), _params(reference))


def test_resume_refuses_a_checkpoint_of_another_configuration(images, tmp_path):
    path = tmp_path / "ae.pt"
    _train_ae(images, path, n=2)
    ae = build_autoencoder("tiny", 1, seed=0, latent_channels=4)
    with pytest.raises(ValueError, match="different training configuration"):
        train_autoencoder(ae, images, n_iterations=3, batch_size=5, device="cpu", verbose=0,
                          checkpoint_path=path)


def test_training_is_reproducible_and_leaves_global_rng_alone(images):
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    a, _ = _train_ae(images, n=4)
    b, _ = _train_ae(images, n=4)
    assert torch.equal(_params(a), _params(b))
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1])


def test_verbose_controls_the_progress_bar(images, capsys):
    _train_ae(images, n=2)
    assert capsys.readouterr().err == ""
    train_autoencoder(build_autoencoder("tiny", 1, seed=0), images, n_iterations=2,
                      batch_size=4, device="cpu", verbose=1)
    assert "autoencoder" in capsys.readouterr().err


def test_adversarial_and_perceptual_terms_are_used(images):
    calls = []

    def perceptual(x_hat, x):
        calls.append(1)
        return (x_hat - x).abs().mean()

    ae = build_autoencoder("tiny", 1, seed=0)
    disc = build_discriminator("tiny", 1, seed=0)
    before = _params(disc).clone()
    res = train_autoencoder(ae, images, n_iterations=4, batch_size=4, device="cpu", verbose=0,
                            perceptual_loss=perceptual, perceptual_weight=0.5,
                            discriminator=disc, adversarial_weight=1.0, adversarial_start=2,
                            log_every=1)
    assert len(calls) == 4
    assert "generator" not in res.history[1] and "generator" in res.history[2]
    assert "discriminator" in res.history[3]
    assert not torch.equal(before, _params(disc))


def test_encode_dataset_matches_the_encoder(images):
    ae = build_autoencoder("tiny", 1, seed=0).eval()
    p = encode_dataset(ae, images, batch_size=7, device="cpu")
    with torch.no_grad():
        direct = ae.encode(torch.from_numpy(images))
    assert torch.allclose(p, direct, atol=1e-6)


def test_ema_warm_up_and_tracking():
    net = torch.nn.Linear(1, 1, bias=False)
    ema = ExponentialMovingAverage(net, 0.99)
    with torch.no_grad():
        net.weight.fill_(1.0)
        ema.module.weight.fill_(0.0)
    ema.update(net, step=0)  # decay min(0.99, 1/10) = 0.1
    assert float(ema.module.weight) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="ema_rate"):
        ExponentialMovingAverage(net, 1.0)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((4, 2, 16, 16), np.float32), "2 channels but the autoencoder expects 1"),
    (np.zeros((4, 1, 18, 18), np.float32), "not divisible"),
    (np.full((4, 1, 16, 16), np.nan, np.float32), "NaN"),
    (np.zeros((0, 1, 16, 16), np.float32), "empty"),
    (np.zeros((4, 16, 16), np.float32), r"\(n, c, h, w\)"),
])
def test_autoencoder_training_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        train_autoencoder(build_autoencoder("tiny", 1), bad, n_iterations=1, device="cpu",
                          verbose=0)


def test_training_rejects_bad_settings(images):
    ae = build_autoencoder("tiny", 1)
    with pytest.raises(ValueError, match="fp16"):
        train_autoencoder(ae, images, n_iterations=1, device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="n_iterations"):
        train_autoencoder(ae, images, n_iterations=0, device="cpu")
    with pytest.raises(ValueError, match="lie in"):
        train_diffusion(build_unet("tiny"), torch.full((2, 16, 4, 4), 2.0), device="cpu")
    with pytest.raises(ValueError, match="channels but the UNet"):
        train_diffusion(build_unet("tiny"), torch.rand(2, 3, 4, 4), device="cpu")


def test_bf16_autocast_trains_on_cpu(images):
    res = train_autoencoder(build_autoencoder("tiny", 1, seed=0), images, n_iterations=2,
                            batch_size=4, device="cpu", precision="bf16", verbose=0)
    assert np.isfinite(res.history[-1]["loss"])


# --------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "empty", "torch_zip"])
def test_a_damaged_checkpoint_raises_an_error_naming_the_file(images, tmp_path, damage):
    path = tmp_path / "ae.pt"
    _train_ae(images, path, n=4)
    blob = path.read_bytes()
    if damage == "flip_byte":
        path.write_bytes(blob[:-10] + bytes([blob[-10] ^ 0xFF]) + blob[-9:])
    elif damage == "truncate":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a plain torch file (e.g. of an older version) is not a checkpoint
        torch.save({"step": 3}, path)
    with pytest.raises(CorruptCheckpointError, match=str(path.name)) as info:
        train_autoencoder(build_autoencoder("tiny", 1, seed=0), images, n_iterations=6,
                          batch_size=5, device="cpu", verbose=0, checkpoint_path=path)
    assert "weights_only=False" not in str(info.value)
    assert "Delete it" in str(info.value) or "delete it" in str(info.value)


def test_checkpoint_round_trip_and_atomic_write(images, tmp_path):
    path = tmp_path / "ae.pt"
    _train_ae(images, path, n=4)
    state = read_checkpoint(path)
    assert state["step"] == 4 and "objects" in state
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ae.pt"]  # no temporary left


def test_checkpoint_every_is_validated(images, tmp_path):
    with pytest.raises(ValueError, match="checkpoint_every"):
        train_autoencoder(build_autoencoder("tiny", 1, seed=0), images, n_iterations=2,
                          device="cpu", verbose=0, checkpoint_path=tmp_path / "a.pt",
                          checkpoint_every=0)


# --------------------------------------------------------------------------- divergence
def test_diverging_training_names_the_network_the_steps_and_the_learning_rate(images):
    bad = images.copy()
    ae = build_autoencoder("tiny", 1, seed=0)
    with torch.no_grad():  # a poisoned weight makes every loss NaN from the first step
        ae.decoder.conv_out.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingDivergedError, match=r"autoencoder training diverged between "
                                                    r"steps 1 and 3.*learning rate \(now 0.001\)"):
        train_autoencoder(ae, bad, n_iterations=6, batch_size=4, learning_rate=1e-3,
                          device="cpu", verbose=0, log_every=3)


# --------------------------------------------------------------------------- validation loss
def test_validation_loss_is_logged_on_fixed_draws():
    latents = torch.rand(12, 16, 4, 4)
    held_out = torch.rand(5, 16, 4, 4)

    def run(n):
        return train_diffusion(build_unet("tiny", seed=0), latents, n_iterations=n,
                               batch_size=4, device="cpu", verbose=0, seed=1, log_every=2,
                               validation_probabilities=held_out, validate_every=4)

    history = run(8).history
    values = [h["validation_loss"] for h in history if "validation_loss" in h]
    assert [h["step"] for h in history if "validation_loss" in h] == [4, 8]
    assert all(np.isfinite(values)) and 0 < values[0] < 2
    # Fixed draws: the same weights give the same validation loss.
    again = [h["validation_loss"] for h in run(8).history if "validation_loss" in h]
    assert again == values
    with pytest.raises(ValueError, match="multiple of log_every"):
        train_diffusion(build_unet("tiny", seed=0), latents, n_iterations=2, batch_size=4,
                        device="cpu", verbose=0, log_every=2, validation_probabilities=held_out,
                        validate_every=3)


def test_history_records_the_training_time_across_a_resume(images, tmp_path):
    _, ref = _train_ae(images)
    elapsed = [h["elapsed_s"] for h in ref.history]
    assert elapsed[0] > 0 and all(b >= a for a, b in zip(elapsed, elapsed[1:]))
    path = tmp_path / "ae.pt"
    with pytest.raises(KeyboardInterrupt):
        _train_ae(images, path, _interrupt_at(7))
    before = read_checkpoint(path)["history"][-1]["elapsed_s"]
    _, res = _train_ae(images, path)
    after = [h["elapsed_s"] for h in res.history]
    assert all(b >= a for a, b in zip(after, after[1:])) and after[-1] > before > 0

"""Reliability: the detector used carelessly or maliciously fails loudly, never silently.

One test (or a pointer) per class of failure found by trying the project as a demanding
user and as an attacker:

1. model files that are safe to share ........ tests/test_format.py (crafted files, HMAC)
2. unnormalised input is refused ............. here (raw MRI, uint8, range warning)
3. NIfTI writes never destroy data ........... tests/test_io.py (overwrite, atomic, casts)
4. checkpoints ............................... here (checkpoint_dir checked first) and
                                               tests/test_training.py (checksums)
5. threads ................................... here (builds and fits in threads)
6. clear errors .............................. here
7. a fuzz of the detector's inputs ........... here (hypothesis)
"""

import os
import threading

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import skberdiff
from skberdiff import MaskedBernoulliDiffusionDetector, clear_network_cache
from skberdiff.datasets import make_toy_images
from skberdiff.exceptions import TrainingDivergedError
from skberdiff.nn import build_autoencoder, build_discriminator, build_unet

TINY = dict(preset="tiny", n_draws=1, autoencoder_iterations=6, diffusion_iterations=6,
            autoencoder_batch_size=4, diffusion_batch_size=4, diffusion_steps=50,
            noise_level=5, device="cpu", random_state=0, batch_size=8)


@pytest.fixture(scope="module")
def X():
    return make_toy_images(16, image_size=32, random_state=0)[0]


@pytest.fixture(scope="module")
def fitted(X):
    return MaskedBernoulliDiffusionDetector(**TINY).fit(X)


# --------------------------------------------------------------------------- 2. scaling
@pytest.mark.parametrize("scale, dtype", [(3000.0, np.float32), (255.0, np.uint8)])
def test_unnormalised_images_are_refused_at_fit_and_inference(X, fitted, scale, dtype):
    raw = (X * scale).astype(dtype)
    with pytest.raises(ValueError, match="IntensityScaler"):
        MaskedBernoulliDiffusionDetector(**TINY).fit(raw)
    for method in ("predict", "anomaly_map", "score_samples", "encode"):
        with pytest.raises(ValueError, match=r"scaled\s+to \[0, 1\]"):
            getattr(fitted, method)(raw[:2])


def test_images_outside_the_training_range_warn(fitted, X):
    with pytest.warns(UserWarning, match="outside the range"):
        fitted.anomaly_map(X[:2] * 1.7)
    with pytest.warns(UserWarning, match="outside the range"):
        fitted.anomaly_map(X[:2] - 0.45)


def test_intensity_scaler_makes_raw_images_usable(X):
    from sklearn.pipeline import make_pipeline

    raw = X * 3000.0
    pipe = make_pipeline(skberdiff.IntensityScaler(), MaskedBernoulliDiffusionDetector(**TINY))
    assert pipe.fit(raw).predict(raw[:2]).shape == (2,)


# --------------------------------------------------------------------------- 4. checkpoints
def test_unwritable_checkpoint_dir_is_found_before_training(X, tmp_path, count_trainings):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(ValueError, match="checkpoint_dir=.*cannot be used.*Nothing was trained"):
        MaskedBernoulliDiffusionDetector(**TINY, checkpoint_dir=not_a_dir).fit(X)
    if os.geteuid() != 0:  # root can write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ValueError, match="cannot be used"):
            MaskedBernoulliDiffusionDetector(**TINY, checkpoint_dir=locked).fit(X)
    assert count_trainings == []


def test_checkpoint_every_is_a_parameter(X, tmp_path):
    det = MaskedBernoulliDiffusionDetector(**TINY, checkpoint_dir=tmp_path, checkpoint_every=2)
    det.fit(X)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert any(n.endswith("-autoencoder.pt") for n in names)
    with pytest.raises(ValueError, match="checkpoint_every"):
        MaskedBernoulliDiffusionDetector(**TINY, checkpoint_every=0).fit(X)


# --------------------------------------------------------------------------- 5. threads
@pytest.mark.parametrize("build", [
    lambda: build_unet("tiny", seed=3), lambda: build_autoencoder("tiny", 1, seed=3),
    lambda: build_discriminator("tiny", 1, seed=3)])
def test_seeded_builds_in_overlapping_threads_equal_the_serial_build(build):
    serial = build().state_dict()
    results, barrier = [None] * 8, threading.Barrier(8)

    def run(i):
        barrier.wait()
        results[i] = build().state_dict()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for state in results:
        assert all(torch.equal(state[k], serial[k]) for k in serial)


def test_fits_in_threads_equal_serial_fits(X):
    seeds = [0, 1, 2, 0, 1, 2]
    clear_network_cache()
    serial = {s: MaskedBernoulliDiffusionDetector(**{**TINY, "random_state": s}).fit(X)
              for s in set(seeds)}
    clear_network_cache()
    results, barrier = [None] * len(seeds), threading.Barrier(len(seeds))

    def fit(i):
        barrier.wait()
        results[i] = MaskedBernoulliDiffusionDetector(**{**TINY, "random_state": seeds[i]}).fit(X)

    threads = [threading.Thread(target=fit, args=(i,)) for i in range(len(seeds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for seed, det in zip(seeds, results):
        ref = serial[seed]
        for a, b in zip(det.diffusion_model_.parameters(), ref.diffusion_model_.parameters()):
            assert torch.equal(a, b)
        assert det.offset_ == ref.offset_
        assert np.array_equal(det.anomaly_map(X[:2]), ref.anomaly_map(X[:2]))


# --------------------------------------------------------------------------- 6. clear errors
def test_ragged_lists_are_a_clear_error(fitted):
    ragged = [np.zeros((1, 32, 32)), np.zeros((1, 16, 16))]
    with pytest.raises((TypeError, ValueError), match="X"):
        fitted.predict(ragged)


def test_a_diverging_fit_says_where_and_what_to_lower(X):
    with pytest.raises(TrainingDivergedError, match=r"diverged between steps.*learning rate"):
        MaskedBernoulliDiffusionDetector(**{**TINY, "autoencoder_learning_rate": 1e30,
                                            "autoencoder_iterations": 20}).fit(X)


@pytest.mark.parametrize("params, match", [
    (dict(autoencoder_params={"latent_channels": 0}), r"latent_channels must be in \[1, "),
    (dict(autoencoder_params={"latent_channels": -4}), "latent_channels"),
    (dict(unet_params={"model_channels": 10**6}), "model_channels"),
    (dict(median_size=10**5), r"median_size must be in \[1, 51\]"),
    (dict(random_state=-1), "non-negative"),
    (dict(device=3), "device must be"),
])
def test_bad_parameters_are_clear_errors(X, params, match):
    with pytest.raises((TypeError, ValueError), match=match):
        MaskedBernoulliDiffusionDetector(**{**TINY, **params}).fit(X)


def test_torch_device_objects_fit_and_save(X, tmp_path):
    det = MaskedBernoulliDiffusionDetector(**{**TINY, "device": torch.device("cpu")}).fit(X)
    path = det.save(tmp_path / "m.skbd")
    assert skberdiff.load(path, device="cpu").predict(X[:1]).shape == (1,)


def test_large_random_states_are_distinct_seeds(X, count_trainings):
    a = MaskedBernoulliDiffusionDetector(**{**TINY, "random_state": 2**31}).fit(X)
    b = MaskedBernoulliDiffusionDetector(**{**TINY, "random_state": 0}).fit(X)
    assert len(count_trainings) == 2 and a.seed_ == 2**31
    assert not all(torch.equal(p, q) for p, q in zip(a.diffusion_model_.parameters(),
                                                      b.diffusion_model_.parameters()))


# --------------------------------------------------------------------------- 7. fuzz
_shapes = st.sampled_from([(2, 1, 32, 32), (1, 1, 32, 32), (2, 1, 16, 32), (2, 2, 32, 32),
                           (2, 32, 32), (2, 1024), (0, 1, 32, 32), (2, 1, 32, 32, 1)])
_dtypes = st.sampled_from([np.float32, np.float64, np.float16, np.uint8, np.int64, np.bool_,
                           np.complex64, object, "U3"])
_ranges = st.sampled_from([(0.0, 1.0), (0.0, 255.0), (-1.0, 0.0), (0.2, 0.4), (np.nan, 1.0),
                           (0.0, np.inf)])
_containers = st.sampled_from(["array", "list", "tensor", "dataframe"])


def _make_input(shape, dtype, value_range, container, seed):
    rng = np.random.default_rng(seed)
    low, high = value_range
    values = rng.uniform(0, 1, shape) * (np.nan_to_num(high, posinf=1e30) - low) + low
    if np.isnan(low) and values.size:
        values.flat[0] = np.nan
    if np.isinf(high) and values.size:
        values.flat[0] = np.inf
    if dtype == "U3":
        arr = np.full(shape, "abc")
    else:
        with np.errstate(invalid="ignore", over="ignore"):
            arr = values.astype(dtype) if dtype is not object else values.astype(object)
    if container == "list":
        return arr.tolist()
    if container == "tensor":
        try:
            return torch.from_numpy(np.asarray(arr))
        except TypeError:
            return arr
    if container == "dataframe":
        pd = pytest.importorskip("pandas")
        return pd.DataFrame(arr.reshape(arr.shape[0], -1)) if arr.ndim >= 1 and len(arr) \
            else pd.DataFrame(arr.reshape(0, 0))
    return arr


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(shape=_shapes, dtype=_dtypes, value_range=_ranges, container=_containers,
       seed=st.integers(0, 100), method=st.sampled_from(["predict", "score_samples",
                                                          "anomaly_map", "predict_mask"]))
def test_every_input_gives_a_clear_error_or_finite_outputs(fitted, shape, dtype, value_range,
                                                            container, seed, method):
    X = _make_input(shape, dtype, value_range, container, seed)
    try:
        out = getattr(fitted, method)(X)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        assert len(message) > 20 and any(word in message for word in (
            "X", "shape", "channel", "dtype", "numbers", "NaN", "empty", "size", "scaled",
            "real-valued", "image")), message
        return
    n = shape[0]
    assert out.shape[0] == n
    if method in ("anomaly_map", "predict_mask"):
        assert out.shape == (n, 32, 32)
    if out.dtype != bool:
        assert np.isfinite(out).all()

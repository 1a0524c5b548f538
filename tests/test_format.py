"""The shareable model file (skberdiff._format): crafted and damaged files are refused."""

import json
import os
import struct

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import skberdiff
from skberdiff import MaskedBernoulliDiffusionDetector, UnsafeModelFileError
from skberdiff._format import FORMAT_VERSION, _checksum, _signature
from skberdiff.datasets import make_toy_images

TINY = dict(preset="tiny", n_draws=1, autoencoder_iterations=10, diffusion_iterations=10,
            autoencoder_batch_size=8, diffusion_batch_size=8, diffusion_steps=50, noise_level=5,
            device="cpu", random_state=0, calibration_fraction=0.2)


@pytest.fixture(scope="module")
def fitted():
    X, _ = make_toy_images(20, image_size=32, random_state=0)
    return MaskedBernoulliDiffusionDetector(**TINY).fit(X), X


@pytest.fixture
def saved(fitted, tmp_path):
    return fitted[0].save(tmp_path / "model.skbd")


def _read(path):
    with open(path, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(n))
    return header["__metadata__"], load_file(path)


def _rewrite(path, out, edit_config=None, edit_tensors=None, recompute=True, key=None):
    """Write a crafted file: edit the config and/or tensors, optionally re-sign it."""
    metadata, tensors = _read(path)
    config = json.loads(metadata["config"])
    if edit_config:
        edit_config(config)
    if edit_tensors:
        edit_tensors(tensors)
    metadata["config"] = json.dumps(config, sort_keys=True)
    if recompute:  # an attacker recomputes the (unkeyed) checksum
        metadata["sha256"] = _checksum(metadata["config"], tensors)
        if key is not None:
            metadata["hmac_sha256"] = _signature(key, metadata["config"], tensors)
    save_file(tensors, out, metadata=metadata)
    return out


def test_round_trip_is_exact_and_machine_parameters_come_from_the_loader(fitted, saved):
    det, X = fitted
    metadata, _ = _read(saved)
    params = json.loads(metadata["config"])["params"]
    assert not {"memory", "checkpoint_dir", "device", "verbose", "compile"} & set(params)
    loaded = skberdiff.load(saved, device="cpu", verbose=0)
    assert np.array_equal(loaded.anomaly_map(X[:3]), det.anomaly_map(X[:3]))
    assert np.array_equal(loaded.predict(X[:3]), det.predict(X[:3]))
    assert loaded.memory is None and loaded.device == "cpu"


def test_file_holds_no_pickle(saved):
    with open(saved, "rb") as fh:
        blob = fh.read()
    assert b"\x80\x04" not in blob[:4096] and b"pickle" not in blob.lower()[:4096]
    metadata, _ = _read(saved)
    assert metadata["format"] == "skberdiff-model" and metadata["version"] == \
        str(FORMAT_VERSION)


def _set(path, value):
    def edit(config):
        node = config
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


@pytest.mark.parametrize("edit, match", [
    (_set(("fitted", "offset_"), float("nan")), "offset_"),
    (_set(("fitted", "offset_"), "-1e9"), "offset_"),
    (_set(("fitted", "pixel_threshold_"), float("inf")), "pixel_threshold_"),
    (_set(("params", "median_size"), 100_000), "median_size"),
    (_set(("params", "memory"), "/tmp/evil-cache"), "unexpected parameters"),
    (_set(("params", "checkpoint_dir"), "/"), "unexpected parameters"),
    (_set(("params", "noise_level"), 10**9), "noise_level"),
    (_set(("params", "posterior"), "exec"), "posterior"),
    (_set(("params", "unet_params"), {"model_channels": 1500}), "model_channels"),
    (_set(("fitted", "unet_config", "model_channels"), 1500), "does not match the tensor"),
    (_set(("fitted", "autoencoder_config", "latent_channels"), 0), "configuration"),
    (_set(("fitted", "image_shape_"), [1, 32]), "image_shape_"),
    (_set(("fitted", "n_features_in_"), 5), "n_features_in_"),
    (_set(("fitted", "history_"), {"diffusion": "x"}), "history_"),
    (_set(("fitted", "calibrated_params_"), {"noise_level": 99}), "calibrated"),
    (lambda c: c["fitted"].pop("seed_"), "misses fitted values"),
    (lambda c: c.pop("params"), "'params' and 'fitted'"),
])
def test_crafted_values_are_refused_before_use(saved, tmp_path, edit, match):
    crafted = _rewrite(saved, tmp_path / "crafted.skbd", edit_config=edit)
    with pytest.raises(UnsafeModelFileError, match=match):
        skberdiff.load(crafted, device="cpu")


def test_an_edited_tensor_fails_the_checksum(saved, tmp_path):
    def edit(tensors):
        name = sorted(tensors)[0]
        tensors[name] = tensors[name] + 1.0

    crafted = _rewrite(saved, tmp_path / "edited.skbd", edit_tensors=edit, recompute=False)
    with pytest.raises(UnsafeModelFileError, match="checksum"):
        skberdiff.load(crafted, device="cpu")


def test_tensor_shapes_are_checked_before_allocation(saved, tmp_path):
    def edit(tensors):
        name = sorted(tensors)[0]
        tensors[name] = np.zeros((3,) + tensors[name].shape, np.float32)

    crafted = _rewrite(saved, tmp_path / "shapes.skbd", edit_tensors=edit)
    with pytest.raises(UnsafeModelFileError, match="does not match the tensor shapes"):
        skberdiff.load(crafted, device="cpu")

    def extra(tensors):
        tensors["evil.weight"] = np.zeros(2, np.float32)

    crafted = _rewrite(saved, tmp_path / "extra.skbd", edit_tensors=extra)
    with pytest.raises(UnsafeModelFileError, match="unknown networks"):
        skberdiff.load(crafted, device="cpu")


@pytest.mark.parametrize("content, match", [
    (b"", "too short"),
    (b"not a model at all", "no valid safetensors header"),
    (struct.pack("<Q", 10) + b"{not json}", "not valid JSON"),
    (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    (struct.pack("<Q", 2**40) + b"{}", "no valid safetensors header"),
])
def test_junk_files_are_refused(tmp_path, content, match):
    path = tmp_path / "junk.skbd"
    path.write_bytes(content)
    with pytest.raises(UnsafeModelFileError, match=match):
        skberdiff.load(path)


def test_a_pickle_is_refused_and_never_run(tmp_path):
    import pickle

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.skbd"
    path.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(UnsafeModelFileError):
        skberdiff.load(path)
    assert not (tmp_path / "pwned").exists()


def test_other_formats_and_versions_are_refused(saved, tmp_path):
    metadata, tensors = _read(saved)
    for key, value, match in (("format", "other", "not a skberdiff model file"),
                              ("version", "99", "format version")):
        crafted = dict(metadata, **{key: value})
        save_file(tensors, tmp_path / "v.skbd", metadata=crafted)
        with pytest.raises(UnsafeModelFileError, match=match):
            skberdiff.load(tmp_path / "v.skbd")
    save_file({"x": np.zeros(2, np.float64)}, tmp_path / "f64.skbd", metadata=metadata)
    with pytest.raises(UnsafeModelFileError, match="float32"):
        skberdiff.load(tmp_path / "f64.skbd")


def test_hmac_signature(fitted, tmp_path):
    det, X = fitted
    path = det.save(tmp_path / "signed.skbd", key=b"secret")
    assert np.array_equal(skberdiff.load(path, key=b"secret", device="cpu").anomaly_map(X[:1]),
                          det.anomaly_map(X[:1]))
    with pytest.raises(UnsafeModelFileError, match="signature"):
        skberdiff.load(path, key=b"other", device="cpu")
    with pytest.warns(UserWarning, match="authenticity was not checked"):
        skberdiff.load(path, device="cpu")
    unsigned = det.save(tmp_path / "unsigned.skbd")
    with pytest.raises(UnsafeModelFileError, match="signature is missing"):
        skberdiff.load(unsigned, key=b"secret", device="cpu")
    # An attacker who edits a value can recompute the checksum but not the signature.
    crafted = _rewrite(path, tmp_path / "forged.skbd",
                       edit_config=_set(("fitted", "offset_"), -3.0))
    with pytest.raises(UnsafeModelFileError, match="signature"):
        skberdiff.load(crafted, key=b"secret", device="cpu")


def test_a_failed_save_leaves_the_previous_file_and_no_temporary(fitted, tmp_path,
                                                                monkeypatch):
    import errno

    import safetensors.numpy

    det, _ = fitted
    path = det.save(tmp_path / "model.skbd")
    before = path_bytes = open(path, "rb").read()

    def full_disk(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.numpy, "save_file", full_disk)
    with pytest.raises(OSError, match="No space left"):
        det.save(tmp_path / "model.skbd")
    assert open(path, "rb").read() == before == path_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.skbd"]


def test_missing_file_and_unfitted_save(tmp_path):
    with pytest.raises(FileNotFoundError):
        skberdiff.load(tmp_path / "nothing.skbd")
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        MaskedBernoulliDiffusionDetector().save(tmp_path / "x.skbd")

"""The shareable model file: tensors without pickle plus a JSON config, checked before use.

A ``.skbd`` file is a `safetensors <https://huggingface.co/docs/safetensors>`_ file. Its
header holds the shape and dtype of every tensor and, as metadata strings, the format name
and version, a JSON config (constructor parameters and fitted values), a SHA-256 checksum
over config and tensor bytes, and optionally an HMAC-SHA256 signature with a user key.

Reading never unpickles anything. :func:`load_detector` checks, in this order and before
allocating any network: the header and the format version; the JSON config's structure;
every parameter and fitted value with the estimator's own validation (finite thresholds,
bounded sizes); the network configurations against the tensor shapes in the header (the
networks are built on the meta device, which allocates nothing); the checksum and the
signature. Every failure raises :class:`~skberdiff.exceptions.UnsafeModelFileError`.
"""

import hashlib
import hmac
import json
import math
import numbers
import os
import tempfile
import warnings

import numpy as np

from .exceptions import UnsafeModelFileError

__all__ = ["save_detector", "load_detector", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "skberdiff-model"
FORMAT_VERSION = 2
_PREFIXES = {"autoencoder_": "autoencoder.", "diffusion_model_": "unet."}
_FITTED_SCALARS = ("seed_", "offset_", "pixel_threshold_", "n_features_in_",
                   "n_train_samples_", "device_")
_MAX_HEADER_BYTES = 16 * 2 ** 20


def _key_bytes(key):
    if key is None:
        return None
    if isinstance(key, str):
        key = key.encode()
    if not isinstance(key, (bytes, bytearray)) or len(key) == 0:
        raise TypeError("key must be a non-empty bytes or str.")
    return bytes(key)


def _digest_material(config_json, tensors):
    """Bytes fed to the checksum and the signature, in a fixed order."""
    yield config_json.encode()
    for name in sorted(tensors):
        array = tensors[name]
        yield name.encode()
        yield str(array.dtype).encode()
        yield str(tuple(array.shape)).encode()
        yield np.ascontiguousarray(array).tobytes()


def _checksum(config_json, tensors):
    digest = hashlib.sha256()
    for part in _digest_material(config_json, tensors):
        digest.update(part)
    return digest.hexdigest()


def _signature(key, config_json, tensors):
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in _digest_material(config_json, tensors):
        mac.update(part)
    return mac.hexdigest()


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def save_detector(det, path, *, key=None):
    """Write ``det`` to ``path`` atomically (temporary file in the same folder, then rename).

    Parameters
    ----------
    det : MaskedBernoulliDiffusionDetector
        Fitted and calibrated.
    path : str or path-like
        Output file.
    key : bytes or str, default=None
        HMAC key; ``None`` writes no signature.

    Returns
    -------
    path : str
    """
    from safetensors.numpy import save_file

    from ._detector import MACHINE_PARAMS

    key = _key_bytes(key)
    params = {k: v for k, v in det.get_params().items() if k not in MACHINE_PARAMS}
    if not isinstance(params["random_state"], (type(None), numbers.Integral)):
        params["random_state"] = det.seed_  # a generator cannot be stored: its seed can
    config = {
        "params": params,
        "fitted": {
            **{name: getattr(det, name) for name in _FITTED_SCALARS},
            "image_shape_": list(det.image_shape_),
            "input_range_": list(det.input_range_),
            "history_": det.history_,
            "calibrated_params_": det.calibrated_params_,
            "autoencoder_config": det.autoencoder_.config,
            "unet_config": det.diffusion_model_.config,
        },
    }
    config_json = json.dumps(config, sort_keys=True, default=_json_default, allow_nan=False)
    tensors = {}
    for attr, prefix in _PREFIXES.items():
        for name, tensor in getattr(det, attr).state_dict().items():
            tensors[prefix + name] = np.ascontiguousarray(tensor.detach().cpu().numpy())
    metadata = {"format": FORMAT_NAME, "version": str(FORMAT_VERSION), "config": config_json,
                "sha256": _checksum(config_json, tensors)}
    if key is not None:
        metadata["hmac_sha256"] = _signature(key, config_json, tensors)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".skbd-", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        # A full disk or an interrupt leaves the previous file (if any) untouched.
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _refuse(path, reason):
    return UnsafeModelFileError(f"{path} was refused: {reason}")


def _read_header(path):
    """The raw safetensors header (dict), read and bounded without the tensor data."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            prefix = fh.read(8)
            if len(prefix) < 8:
                raise _refuse(path, "the file is too short to be a skberdiff model file.")
            n = int.from_bytes(prefix, "little")
            if n <= 0 or n > min(_MAX_HEADER_BYTES, size - 8):
                raise _refuse(path, "it is not a skberdiff model file (no valid safetensors "
                                    "header).")
            header = json.loads(fh.read(n).decode("utf-8"))
    except UnsafeModelFileError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _refuse(path, f"its header is not valid JSON ({exc}).") from exc
    if not isinstance(header, dict):
        raise _refuse(path, "its header is not a JSON object.")
    return header, size


def _tensor_shapes(path, header, size):
    shapes = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or not isinstance(info.get("shape"), list) \
                or info.get("dtype") != "F32":
            raise _refuse(path, f"tensor {name!r} is not a float32 array.")
        shape = info["shape"]
        if not all(isinstance(d, int) and 0 <= d < 2 ** 31 for d in shape):
            raise _refuse(path, f"tensor {name!r} has an invalid shape {shape!r}.")
        offsets = info.get("data_offsets")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and offsets[1] - offsets[0] == 4 * math.prod(shape)
                and 0 <= offsets[0] <= offsets[1] <= size):
            raise _refuse(path, f"tensor {name!r} has inconsistent data offsets.")
        shapes[name] = tuple(shape)
    return shapes


def _parse_config(path, metadata):
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise _refuse(path, "it is not a skberdiff model file.")
    if metadata.get("version") != str(FORMAT_VERSION):
        raise _refuse(path, f"it has model format version {metadata.get('version')!r}; this "
                            f"skberdiff reads version {FORMAT_VERSION}.")
    try:
        config = json.loads(metadata["config"])
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise _refuse(path, f"its config is missing or not valid JSON ({exc}).") from exc
    if not isinstance(config, dict) or not isinstance(config.get("params"), dict) \
            or not isinstance(config.get("fitted"), dict):
        raise _refuse(path, "its config lacks the 'params' and 'fitted' sections.")
    return config


def _check_fitted(path, fitted):
    required = _FITTED_SCALARS + ("image_shape_", "input_range_", "history_",
                                  "calibrated_params_", "autoencoder_config", "unet_config")
    missing = [name for name in required if name not in fitted]
    if missing:
        raise _refuse(path, f"its config misses fitted values {missing}.")
    for name in ("offset_", "pixel_threshold_"):
        value = fitted[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise _refuse(path, f"{name} = {value!r} is not a finite number.")
    for name in ("seed_", "n_features_in_", "n_train_samples_"):
        value = fitted[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _refuse(path, f"{name} = {value!r} is not a non-negative integer.")
    shape = fitted["image_shape_"]
    if not (isinstance(shape, list) and len(shape) == 3
            and all(isinstance(s, int) and not isinstance(s, bool) and 0 < s <= 4096
                    for s in shape)):
        raise _refuse(path, f"image_shape_ = {shape!r} is not (c, h, w) of bounded ints.")
    if fitted["n_features_in_"] != math.prod(shape):
        raise _refuse(path, "n_features_in_ does not match image_shape_.")
    rng = fitted["input_range_"]
    if not (isinstance(rng, list) and len(rng) == 2
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in rng)
            and rng[0] <= rng[1]):
        raise _refuse(path, f"input_range_ = {rng!r} is not a finite (low, high) pair.")
    if not isinstance(fitted["device_"], str) or len(fitted["device_"]) > 64:
        raise _refuse(path, "device_ is not a short string.")
    history = fitted["history_"]
    if not isinstance(history, dict) or not all(
            isinstance(entries, list) and all(
                isinstance(e, dict) and all(isinstance(v, (int, float)) for v in e.values())
                for e in entries) for entries in history.values()):
        raise _refuse(path, "history_ is not a dict of lists of numeric records.")
    if not isinstance(fitted["calibrated_params_"], dict):
        raise _refuse(path, "calibrated_params_ is not a dict.")


def _meta_network(path, cls, config, expected_keys):
    """Build a network on the meta device and check its parameter shapes against the file."""
    import torch

    from ._cache import _as_tuple

    if not isinstance(config, dict):
        raise _refuse(path, f"the {cls.__name__} configuration is not a dict.")
    try:
        with torch.device("meta"):
            module = cls(**{k: _as_tuple(v) for k, v in config.items()})
    except Exception as exc:  # noqa: BLE001 - any invalid configuration is refused
        raise _refuse(path, f"invalid {cls.__name__} configuration ({exc}).") from exc
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if shapes != expected_keys:
        raise _refuse(path, f"the {cls.__name__} configuration does not match the tensor "
                            "shapes in the file.")
    return module


def load_detector(path, *, key=None, device="auto", memory=None, checkpoint_dir=None,
                  verbose=0, compile=False):
    """Read, validate and rebuild a detector written by :func:`save_detector`.

    Parameters
    ----------
    path : str or path-like
        Model file.
    key : bytes or str, default=None
        HMAC key. When given, a file without a valid signature is refused. Without a key a
        signed file loads with a warning that its authenticity was not checked.
    device, memory, checkpoint_dir, verbose, compile
        Machine-specific parameters of the loaded detector (never read from the file).

    Returns
    -------
    detector : MaskedBernoulliDiffusionDetector
    """
    import torch
    from safetensors import safe_open

    from ._cache import rebuild
    from ._detector import MACHINE_PARAMS, MaskedBernoulliDiffusionDetector
    from .nn import BinaryAutoencoder, EpsUNet

    path = os.fspath(path)
    key = _key_bytes(key)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No model file at {path}.")
    header, size = _read_header(path)
    config = _parse_config(path, header.get("__metadata__"))
    shapes = _tensor_shapes(path, header, size)
    params, fitted = config["params"], config["fitted"]
    unknown = set(params) - set(MaskedBernoulliDiffusionDetector().get_params())
    stored_machine = set(params) & set(MACHINE_PARAMS)
    if unknown or stored_machine:
        raise _refuse(path, f"unexpected parameters {sorted(unknown | stored_machine)}.")
    if "image_shape" in params and isinstance(params["image_shape"], list):
        params["image_shape"] = tuple(params["image_shape"])
    try:
        det = MaskedBernoulliDiffusionDetector(
            **params, device=device, memory=memory, checkpoint_dir=checkpoint_dir,
            verbose=verbose, compile=compile)
        det._check_training_params()
        det._check_inference_params()
    except (TypeError, ValueError) as exc:
        raise _refuse(path, f"invalid parameters ({exc}).") from exc
    _check_fitted(path, fitted)
    networks = {}
    for attr, cls, cfg in (("autoencoder_", BinaryAutoencoder, "autoencoder_config"),
                           ("diffusion_model_", EpsUNet, "unet_config")):
        prefix = _PREFIXES[attr]
        expected = {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}
        _meta_network(path, cls, fitted[cfg], expected)
        networks[attr] = (cls, fitted[cfg], prefix)
    if set(shapes) - {k for k in shapes if k.startswith(tuple(_PREFIXES.values()))}:
        raise _refuse(path, "it holds tensors of unknown networks.")
    # Shapes are checked, so reading allocates no more than the networks need.
    try:
        with safe_open(path, framework="numpy") as fh:
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise _refuse(path, f"its tensors could not be read ({exc}).") from exc
    metadata = header["__metadata__"]
    if not hmac.compare_digest(str(metadata.get("sha256", "")),
                               _checksum(metadata["config"], tensors)):
        raise _refuse(path, "it failed its SHA-256 checksum: the file is corrupted or was "
                            "modified after saving.")
    signature = metadata.get("hmac_sha256")
    if key is not None:
        if signature is None or not hmac.compare_digest(
                str(signature), _signature(key, metadata["config"], tensors)):
            raise _refuse(path, "its HMAC signature is missing or does not match this key: "
                                "it was not saved with this key, or was modified.")
    elif signature is not None:
        warnings.warn(f"{path} is signed but no key was given: its authenticity was not "
                      "checked (pass key=... to skberdiff.load).", UserWarning, stacklevel=3)
    modules = {}
    for attr, (cls, cfg, prefix) in networks.items():
        weights = {k[len(prefix):]: torch.from_numpy(v) for k, v in tensors.items()
                   if k.startswith(prefix)}
        modules[attr] = rebuild(cls, cfg, weights)
    try:
        det._initialize_fitted(
            modules["autoencoder_"], modules["diffusion_model_"], seed=fitted["seed_"],
            image_shape=tuple(fitted["image_shape_"]),
            n_train_samples=fitted["n_train_samples_"], history=fitted["history_"],
            device=det._runtime_device(),
            input_range=tuple(fitted["input_range_"]))
    except ValueError as exc:
        raise _refuse(path, f"its networks do not fit its images ({exc}).") from exc
    det.device_ = fitted["device_"]
    det.offset_ = float(fitted["offset_"])
    det.pixel_threshold_ = float(fitted["pixel_threshold_"])
    calibrated = fitted["calibrated_params_"]
    if calibrated != {k: v for k, v in det._threshold_params().items()}:
        raise _refuse(path, "its thresholds were not calibrated for its parameters.")
    det.calibrated_params_ = calibrated
    return det

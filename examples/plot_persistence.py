"""
Saving and loading a detector
=============================

A fitted detector can be stored in two ways:

- :func:`joblib.dump` (or :mod:`pickle`): convenient for your own files, but loading a
  pickle runs code chosen by whoever wrote it, so never load one you do not trust;
- :meth:`~skberdiff.MaskedBernoulliDiffusionDetector.save` and :func:`skberdiff.load`:
  a pickle-free file of tensors, a JSON config and a checksum, read with
  ``torch.load(weights_only=True)``. Use it to share models.

Both give back a fitted detector with the same outputs. The detector here is tiny and
briefly trained, which does not matter for storing it.
"""

# %%
# A fitted detector
# -----------------
import tempfile
from pathlib import Path

import joblib
import matplotlib.pyplot as plt
import numpy as np
import torch

import skberdiff
from skberdiff import MaskedBernoulliDiffusionDetector
from skberdiff.datasets import make_toy_images
from skberdiff.exceptions import UnsafeModelFileError
from skberdiff.plotting import plot_qualitative

X_train, _ = make_toy_images(48, image_size=32, random_state=0)
X_new, masks = make_toy_images(4, image_size=32, anomaly_fraction=1.0, random_state=1)
det = MaskedBernoulliDiffusionDetector(
    preset="tiny", autoencoder_iterations=100, diffusion_iterations=100,
    autoencoder_learning_rate=2e-3, diffusion_learning_rate=1e-3,
    noise_level=100, device="cpu", random_state=0).fit(X_train)
reference = det.detect(X_new)

workdir = tempfile.TemporaryDirectory(prefix="skberdiff_models_")
folder = Path(workdir.name)

# %%
# joblib (a pickle)
# -----------------
# The networks are stored as CPU arrays with their architecture; the training images are
# not stored. A detector fitted on a GPU loads on a CPU-only machine (with a
# ``DeviceFallbackWarning``).
joblib.dump(det, folder / "detector.joblib")
from_pickle = joblib.load(folder / "detector.joblib")
print("joblib file:", (folder / "detector.joblib").stat().st_size // 1024, "KiB")
print("same anomaly maps:",
      np.allclose(from_pickle.anomaly_map(X_new), reference.anomaly_map, atol=1e-6))

# %%
# The safe format
# ---------------
det.save(folder / "detector.skbd")
from_file = skberdiff.load(folder / "detector.skbd", device="cpu")
print("skbd file:", (folder / "detector.skbd").stat().st_size // 1024, "KiB")
print("same anomaly maps:",
      np.allclose(from_file.anomaly_map(X_new), reference.anomaly_map, atol=1e-6))
print("same thresholds:", from_file.offset_ == det.offset_,
      from_file.pixel_threshold_ == det.pixel_threshold_)
print("parameters kept:", from_file.get_params()["noise_level"], from_file.preset)

# %%
# Files that are not plain model files are refused
# ------------------------------------------------
# A file whose bytes changed after saving fails its checksum or its format check:
data = bytearray((folder / "detector.skbd").read_bytes())
data[len(data) // 2] ^= 0xFF
(folder / "corrupted.skbd").write_bytes(bytes(data))
try:
    skberdiff.load(folder / "corrupted.skbd")
except UnsafeModelFileError as exc:
    print("refused:", str(exc).replace(str(folder), "<folder>").split(" (")[0])


# %%
# A file that carries code is refused *without running it*. This object would print a
# message when unpickled with :mod:`pickle` or :func:`joblib.load`:
class RunsCodeWhenUnpickled:
    def __reduce__(self):
        return (print, ("this code ran while loading the file!",))


torch.save({"format": "skberdiff-model", "payload": RunsCodeWhenUnpickled()},
           folder / "malicious.skbd")
try:
    skberdiff.load(folder / "malicious.skbd")
except UnsafeModelFileError as exc:
    print("refused:", str(exc).replace(str(folder), "<folder>").split(" (")[0])

# %%
# The reloaded detector in use
# ----------------------------
result = from_file.detect(X_new)
fig = plot_qualitative(X_new, {"(reloaded)": result.reconstruction}, result.anomaly_map,
                       result.mask, masks, title="outputs of the reloaded detector")

# The figure is built without pyplot; hand it to pyplot to show it (and for the gallery).
manager = plt.figure().canvas.manager
manager.canvas.figure = fig
fig.set_canvas(manager.canvas)
plt.show()

workdir.cleanup()

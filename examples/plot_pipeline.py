"""
A Pipeline with intensity scaling and padding
=============================================

Raw images rarely arrive in the detector's format (intensities in [0, 1], a size the
autoencoder can downsample). Two sample-wise transformers fix that inside a scikit-learn
:class:`~sklearn.pipeline.Pipeline`:

- :class:`~skberdiff.preprocessing.IntensityScaler` scales each image and channel to
  [0, 1] between two of its own percentiles, ignoring the zero background;
- :class:`~skberdiff.preprocessing.PadCrop` zero-pads each image to a size the
  autoencoder accepts, and maps results back with ``inverse_transform``.

Both work image by image and learn nothing across images, so they cannot leak
information between cross-validation folds. The data here are toy "head" images of
30x30 pixels in arbitrary scanner units, with bright or dark spots as anomalies. The
detector is tiny and briefly trained so that the example runs in seconds.
"""

# %%
# Raw images: odd size, arbitrary intensity units
# -----------------------------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.pipeline import Pipeline

from skberdiff import MaskedBernoulliDiffusionDetector
from skberdiff.datasets import make_toy_images
from skberdiff.metrics import pixel_auprc, pixel_scores
from skberdiff.plotting import plot_qualitative
from skberdiff.preprocessing import IntensityScaler, PadCrop, pad_or_crop

rng = np.random.default_rng(0)
X_train, _ = make_toy_images(64, image_size=30, random_state=0)
X_test, y_test = make_toy_images(16, image_size=30, anomaly_fraction=1.0, random_state=1)
# Each "scan" has its own gain, as raw MRI intensities do.
X_train = X_train * rng.uniform(200, 1500, size=(len(X_train), 1, 1, 1))
X_test = X_test * rng.uniform(200, 1500, size=(len(X_test), 1, 1, 1))
print("raw training images:", X_train.shape, "intensities up to", int(X_train.max()))

# %%
# The pipeline
# ------------
# 30 is not divisible by the tiny autoencoder's downsampling factor, so ``PadCrop``
# pads to the next multiple of 8 (32x32).
pipe = Pipeline([
    ("scale", IntensityScaler(percentiles=(0.5, 99.5))),
    ("pad", PadCrop(size=None, multiple_of=8)),
    ("detector", MaskedBernoulliDiffusionDetector(
        preset="tiny", autoencoder_iterations=150, diffusion_iterations=150,
        autoencoder_learning_rate=2e-3, diffusion_learning_rate=1e-3,
        device="cpu", random_state=0)),
])
pipe.fit(X_train)

# %%
# ``pipe.predict``, ``pipe.decision_function`` and ``pipe.score_samples`` pass the images
# through the steps and call the detector, as for any scikit-learn pipeline.

# %%
# Scorers accept the Pipeline
# ---------------------------
# :func:`~skberdiff.metrics.dice_scorer`, :func:`~skberdiff.metrics.auprc_scorer` and
# :func:`~skberdiff.metrics.pixel_scores` transform ``X`` with the steps before the
# detector and score the detector's output. The masks ``y`` must therefore be in the
# detector's frame, here padded to 32x32 like the images.
y_test_padded = pad_or_crop(y_test, pipe.named_steps["pad"].output_shape_)
scores = pixel_scores(pipe, X_test, y_test_padded)  # Dice and AUPRC from one pass
print({name: round(value, 3) for name, value in scores.items()})

# %%
# Maps back in the input frame
# ----------------------------
# Pipeline steps transform images, so pixel outputs come from the detector itself; the
# ``PadCrop`` step then removes the padding again.
X_ready = pipe[:-1].transform(X_test)
result = pipe[-1].detect(X_ready)
pad = pipe.named_steps["pad"]
maps = pad.inverse_transform(result.anomaly_map)
print("maps:", maps.shape, "| AUPRC in the input frame:",
      round(pixel_auprc(y_test, maps), 3))

# The panel shows the scaled input (``pad.inverse_transform`` of the steps' output) and
# the detector's outputs, all cropped back to 30x30.
fig = plot_qualitative(pad.inverse_transform(X_ready),
                       {"": pad.inverse_transform(result.reconstruction)}, maps,
                       pad.inverse_transform(result.mask), y_test, rows=range(4),
                       channel_name="scaled", title="back in the input frame (30x30)")

# The figure is built without pyplot; hand it to pyplot to show it (and for the gallery).
manager = plt.figure().canvas.manager
manager.canvas.figure = fig
fig.set_canvas(manager.canvas)
plt.show()

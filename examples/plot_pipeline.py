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
maps = pipe.named_steps["pad"].inverse_transform(pipe[-1].anomaly_map(X_ready))
print("maps:", maps.shape, "| AUPRC in the input frame:",
      round(pixel_auprc(y_test, maps), 3))

fig, axes = plt.subplots(2, 4, figsize=(8, 4.2))
for col in range(4):
    axes[0, col].imshow(X_test[col, 0], cmap="gray")
    axes[0, col].contour(y_test[col], levels=[0.5], colors="c", linewidths=0.8)
    axes[1, col].imshow(maps[col], cmap="inferno")
    for ax in axes[:, col]:
        ax.set_axis_off()
axes[0, 0].set_title("raw input + true outline", fontsize=9, loc="left")
axes[1, 0].set_title("anomaly map (30x30)", fontsize=9, loc="left")
fig.tight_layout()
plt.show()

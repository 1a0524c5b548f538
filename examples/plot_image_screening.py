"""
Image-level screening with decision_function and predict
========================================================

Besides pixel maps, the detector gives one score per image, for screening: which images
contain an anomaly at all? It follows scikit-learn's outlier-detection conventions:

- ``score_samples(X)``: higher means more normal;
- ``decision_function(X) = score_samples(X) - offset_``: negative means anomalous;
- ``predict(X)``: ``+1`` for normal and ``-1`` for anomalous images.

``offset_`` is calibrated on held-out healthy images so that a share ``contamination``
of them (5 % by default) falls below it. ``image_score`` chooses the score: the share of
masked latent entries (the paper's, the default), or the mean or maximum of the anomaly
map. This example compares them on toy images with bright or dark spots. The detector is
tiny and briefly trained so that the example runs in seconds; the masked fraction in
particular needs a well-trained diffusion model to be informative.
"""

# %%
# Healthy images for training and calibration, a mixed set to screen
# ------------------------------------------------------------------
import matplotlib.pyplot as plt

from skberdiff import MaskedBernoulliDiffusionDetector
from skberdiff.datasets import make_toy_images
from skberdiff.metrics import image_auroc
from skberdiff.plotting import plot_image_scores

X_train, _ = make_toy_images(64, image_size=32, random_state=0)
X_healthy_val, _ = make_toy_images(40, image_size=32, random_state=1)
X_screen, masks = make_toy_images(32, image_size=32, anomaly_fraction=0.5, random_state=2)
is_anomalous = masks.any(axis=(1, 2))
print(f"{is_anomalous.sum()} of {len(X_screen)} images to screen carry an anomaly")

det = MaskedBernoulliDiffusionDetector(
    preset="tiny", autoencoder_iterations=150, diffusion_iterations=150,
    autoencoder_learning_rate=2e-3, diffusion_learning_rate=1e-3,
    noise_level=100, batch_size=64, contamination=0.05, device="cpu",
    random_state=0).fit(X_train)

# %%
# Compare the image scores
# ------------------------
# ``image_score`` is an inference-time parameter: changing it never retrains. After
# ``set_params``, :meth:`~skberdiff.MaskedBernoulliDiffusionDetector.calibrate`
# recomputes ``offset_`` for the new score on healthy images that were not trained on.
decisions = {}
for image_score in ("masked_fraction", "map_mean", "map_max"):
    det.set_params(image_score=image_score).calibrate(X_healthy_val)
    decisions[image_score] = det.decision_function(X_screen)
    auroc = image_auroc(is_anomalous, -decisions[image_score])
    print(f"{image_score:16s} image AUROC {auroc:.3f}   offset_ {det.offset_:+.4f}")

# %%
# Screen with the best-separating score
# -------------------------------------
# Choosing it on the images being screened is done here only for illustration; choose
# it on separate validation images in practice.
best = max(decisions, key=lambda name: image_auroc(is_anomalous, -decisions[name]))
det.set_params(image_score=best).calibrate(X_healthy_val)
labels = det.predict(X_screen)
flagged = labels == -1
print(f"image_score={best!r}: flagged {flagged.sum()} images")
print(f"  anomalous images flagged (sensitivity): {flagged[is_anomalous].mean():.2f}")
print(f"  healthy images flagged (false-positive rate): {flagged[~is_anomalous].mean():.2f}")

# %%
# Raising ``contamination`` lowers the bar: more anomalies are caught, and more healthy
# images are flagged too.
det.set_params(contamination=0.25).calibrate(X_healthy_val)
flagged = det.predict(X_screen) == -1
print(f"contamination=0.25: sensitivity {flagged[is_anomalous].mean():.2f}, "
      f"false-positive rate {flagged[~is_anomalous].mean():.2f}")

# %%
# Decision values of healthy and anomalous images
# -----------------------------------------------
# :func:`~skberdiff.plotting.plot_image_scores` takes anomaly scores (higher = more
# anomalous), so the decision values are negated; the dashed line at 0 is ``offset_``
# (``contamination=0.05``): images above it are flagged. One panel per score, as their
# scales differ.
fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
for ax, (name, values) in zip(axes, decisions.items()):
    plot_image_scores({name: (-values[~is_anomalous], -values[is_anomalous])}, ax=ax,
                      ylabel="-decision_function", reference_lines={name: 0.0})
plt.show()

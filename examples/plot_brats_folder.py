"""
A BRATS-style folder end to end: NIfTI in, NIfTI out
====================================================

Real data come as 3-D volumes, one NIfTI file per MRI sequence and case, as in the
BraTS challenges. This example

1. writes a small BRATS-style data set of NIfTI files into a temporary folder (built
   from the offline MNI152-derived slices, with synthetic lesions in the test case),
2. reads the healthy slices of the training cases with
   :func:`~skberdiff.io.collect_slices` and fits a detector,
3. reads the test case with :func:`~skberdiff.io.load_brats_case`, detects anomalies,
4. writes the anomaly map and the segmentation back as NIfTI with
   :func:`~skberdiff.io.save_volume_map`, and checks that they share the input's grid
   and affine.

The volumes are stored in LPS orientation (the first two axes flipped with respect to
RAS+), as many scanners write them; the loader reorients to RAS+ for slicing and the
writer undoes it. The detector is tiny and briefly trained so that the example runs in
seconds; real use needs larger presets and far longer training.
"""

# %%
# Write a BRATS-style data set
# ----------------------------
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np

from skberdiff import MaskedBernoulliDiffusionDetector
from skberdiff.datasets import make_mni_benchmark
from skberdiff.io import collect_slices, load_brats_case, save_volume_map
from skberdiff.metrics import dice_score, pixel_auprc

MODALITIES = ("t1", "t1ce", "t2", "flair")
# 1 mm voxels stored left-to-right and posterior-to-anterior reversed (LPS).
AFFINE = np.array([[-1.0, 0.0, 0.0, 16.0],
                   [0.0, -1.0, 0.0, 16.0],
                   [0.0, 0.0, 1.0, -10.0],
                   [0.0, 0.0, 0.0, 1.0]])
MARGIN = 2  # empty axial slices below and above the brain slab of each volume


def write_case(folder, slices, masks=None, gain=1000.0):
    """Stack (n, 4, H, W) axial slices into one NIfTI volume per modality (+ label)."""
    folder.mkdir(parents=True)
    n, _, height, width = slices.shape
    for channel, key in enumerate(MODALITIES):
        volume = np.zeros((height, width, n + 2 * MARGIN), np.float32)
        volume[:, :, MARGIN:-MARGIN] = np.moveaxis(slices[:, channel], 0, -1) * gain
        nib.save(nib.Nifti1Image(volume, AFFINE), folder / f"{folder.name}_{key}.nii.gz")
    if masks is not None:
        label = np.zeros((height, width, n + 2 * MARGIN), np.uint8)
        label[:, :, MARGIN:-MARGIN] = np.moveaxis(masks, 0, -1) * 2  # BraTS label 2: oedema
        nib.save(nib.Nifti1Image(label, AFFINE), folder / f"{folder.name}_seg.nii.gz")


data = make_mni_benchmark(size="tiny", n_train=48, n_val_lesion=1, n_test_lesion=8,
                          n_test_healthy=8, difficulty="easy", random_state=0)
workdir = tempfile.TemporaryDirectory(prefix="skberdiff_brats_")
root = Path(workdir.name)
for k in range(3):  # three healthy training cases of 16 slices each
    case_slices = data.X_train[16 * k:16 * (k + 1)]
    write_case(root / "train" / f"Case_{k:03d}", case_slices,
               masks=np.zeros((16, 32, 32), bool))
order = np.random.default_rng(0).permutation(len(data.X_test))  # mix lesion/healthy
write_case(root / "test" / "Case_100", data.X_test[order], masks=data.y_test[order])
print(sorted(p.name for p in (root / "test" / "Case_100").iterdir()))

# %%
# Fit on the healthy slices of the training cases
# -----------------------------------------------
# ``slice_range=(2, -2)`` drops the empty slices at both ends (the paper's
# ``(80, -26)`` drops the lowest 80 and highest 26 slices of a BraTS volume);
# ``pad_to=None`` keeps the 32x32 size.
load_options = {"slice_range": (MARGIN, -MARGIN), "pad_to": None}
train = collect_slices(root / "train", healthy_only=True, verbose=0, **load_options)
print(train)

det = MaskedBernoulliDiffusionDetector(
    preset="tiny", autoencoder_iterations=150, diffusion_iterations=150,
    autoencoder_learning_rate=2e-3, diffusion_learning_rate=1e-3,
    device="cpu", random_state=0)
det.fit(train.images)

# %%
# Detect in the test case
# -----------------------
case = load_brats_case(root / "test" / "Case_100", **load_options)
print(case, "| stored orientation:", "".join(case.meta.axcodes))
result = det.detect(case.images)
diseased = case.is_diseased
print("Dice :", round(dice_score(case.masks[diseased], result.mask[diseased]), 3))
print("AUPRC:", round(pixel_auprc(case.masks[diseased], result.anomaly_map[diseased]), 3))

# %%
# The loader scales every volume to [0, 1] between its own extreme intensities, as the
# paper does. A case with bright lesions is therefore scaled a little differently from
# the healthy training cases, which can add false positives;
# ``clip_percentiles=(0.0, 99.0)`` in ``load_options`` makes the scaling less sensitive
# to the brightest voxels.

# %%
# Write the results back as NIfTI
# -------------------------------
out = root / "results"
out.mkdir()
map_path = save_volume_map(result.anomaly_map, case.meta, out / "Case_100_anomaly.nii.gz")
mask_path = save_volume_map(result.mask, case.meta, out / "Case_100_mask.nii.gz")

source = nib.load(case.meta.source_paths["flair"])
written = nib.load(map_path)
print("shape  ", written.shape, "== input", source.shape)
print("affine equal to the input's:", np.allclose(written.affine, source.affine))
print("mask dtype:", nib.load(mask_path).get_data_dtype())
assert written.shape == source.shape and np.allclose(written.affine, source.affine)

# The ground-truth masks, written back the same way, reproduce the label file exactly.
label_path = save_volume_map(case.masks, case.meta, out / "Case_100_label_copy.nii.gz")
label_on_disk = np.asarray(nib.load(case.meta.source_paths["seg"]).dataobj) > 0
assert np.array_equal(np.asarray(nib.load(label_path).dataobj) > 0, label_on_disk)
print("label round trip exact: True")

# %%
# The written map overlays the input voxel for voxel
# --------------------------------------------------
flair = np.asarray(source.dataobj)
anomaly = np.asarray(written.dataobj)
label = np.asarray(nib.load(case.meta.source_paths["seg"]).dataobj)
slices = [z for z in range(flair.shape[2]) if label[:, :, z].any()][:3]
fig, axes = plt.subplots(1, len(slices), figsize=(3 * len(slices), 3.2))
for ax, z in zip(np.atleast_1d(axes), slices):
    ax.imshow(flair[:, :, z].T, cmap="gray", origin="lower")
    ax.imshow(np.ma.masked_less_equal(anomaly[:, :, z].T, det.pixel_threshold_),
              cmap="autumn", alpha=0.6, origin="lower")
    ax.contour(label[:, :, z].T, levels=[0.5], colors="c", linewidths=0.8, origin="lower")
    ax.set_title(f"axial slice {z}", fontsize=9)
    ax.set_axis_off()
fig.suptitle("FLAIR from the input file, map from the written file (cyan: label)",
             fontsize=9)
fig.tight_layout()
plt.show()

workdir.cleanup()  # delete the generated files

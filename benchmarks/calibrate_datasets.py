"""Calibration report of the MNI152-derived benchmark (``skberdiff.datasets``).

Builds ``make_mni_benchmark(size=SIZE, return_lesion_free=True)`` and prints, pooled over the
lesion test slices, the pixel AUPRC of

- the per-channel intensity threshold
  (:class:`skberdiff.baselines.IntensityThresholdBaseline`) tuned on the validation lesion
  slices, with healthy z-scoring statistics from ``X_train``;
- the oracle map ``|x - x_lesion_free|`` (summed over channels);

then both per lesion kind. These are the figures quoted in the docstrings of
:mod:`skberdiff.datasets` and :func:`skberdiff.datasets.make_mni_benchmark`.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/calibrate_datasets.py small
    OMP_NUM_THREADS=1 python benchmarks/calibrate_datasets.py default --random-state 1
"""

import argparse
import time

import numpy as np

from skberdiff.baselines import IntensityThresholdBaseline
from skberdiff.datasets import SIZE_PRESETS, make_mni_benchmark
from skberdiff.metrics import pixel_auprc


def _average_precision(y, maps):
    return pixel_auprc(y, maps, average="pooled")


def calibration_report(size="small", random_state=0):
    """Print the threshold-baseline and oracle pixel AUPRC of the benchmark.

    Parameters
    ----------
    size : {"tiny", "small", "default"}, default="small"
        ``size`` preset of :func:`skberdiff.datasets.make_mni_benchmark`.
    random_state : int, default=0
        Seed of the benchmark.

    Returns
    -------
    report : dict
        ``baseline_auprc``, ``baseline_val_auprc``, ``oracle_auprc``, ``channel``,
        ``polarity``, ``generation_s`` and ``per_kind`` (kind -> ``n``, ``baseline``,
        ``oracle``).
    """
    start = time.perf_counter()
    data = make_mni_benchmark(size=size, return_lesion_free=True, random_state=random_state)
    elapsed = time.perf_counter() - start
    lesion = data.is_anomalous_test
    baseline = IntensityThresholdBaseline().fit(data.X_val, data.y_val, X_healthy=data.X_train)
    maps = baseline.anomaly_map(data.X_test[lesion])
    auprc = _average_precision(data.y_test[lesion], maps)
    difference = np.abs(data.X_test - data.X_test_lesion_free)[lesion].sum(axis=1)
    oracle = _average_precision(data.y_test[lesion], difference)
    channel = data.channel_names[baseline.channel_]
    print(f"size={size!r} image_size={data.params['image_size']} random_state={random_state}")
    n = sum(len(v) for k, v in data.items() if k.startswith("X_") and "free" not in k)
    print(f"generation: {n} slices in {elapsed:.1f} s")
    print(
        f"threshold baseline ({channel}, {baseline.polarity_}): "
        f"test pixel AUPRC {auprc:.3f} (val {baseline.best_auprc_:.3f})"
    )
    print(f"oracle |x - x_lesion_free|: test pixel AUPRC {oracle:.3f}")
    y = data.y_test[lesion]
    per_kind = {}
    for kind in sorted(set(data.lesion_kind_test[lesion])):
        sel = data.lesion_kind_test[lesion] == kind
        per_kind[kind] = {
            "n": int(sel.sum()),
            "baseline": float(_average_precision(y[sel], maps[sel])),
            "oracle": float(_average_precision(y[sel], difference[sel])),
        }
        print(
            f"  {kind:>16s} n={per_kind[kind]['n']:3d}  baseline {per_kind[kind]['baseline']:.3f}"
            f"  oracle {per_kind[kind]['oracle']:.3f}"
        )
    return {
        "baseline_auprc": float(auprc),
        "baseline_val_auprc": float(baseline.best_auprc_),
        "oracle_auprc": float(oracle),
        "channel": channel,
        "polarity": baseline.polarity_,
        "generation_s": elapsed,
        "per_kind": per_kind,
    }


def main(argv=None):
    """Command-line entry point: ``python benchmarks/calibrate_datasets.py [SIZE]``.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments (``sys.argv[1:]`` when ``None``).

    Returns
    -------
    report : dict
        What :func:`calibration_report` returns.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("size", nargs="?", default="small", choices=list(SIZE_PRESETS),
                        help="size preset of make_mni_benchmark (default: small)")
    parser.add_argument("--random-state", type=int, default=0, help="seed (default: 0)")
    args = parser.parse_args(argv)
    return calibration_report(args.size, random_state=args.random_state)


if __name__ == "__main__":
    main()

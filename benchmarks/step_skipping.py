"""Step skipping: segmentation quality and time per image against the number of steps.

Trains one ``small`` detector on ``make_mni_benchmark(size="small")`` (healthy 4x64x64
slices; CPU minutes), then, at ``L = 200``, restores with ``n_steps`` in
``{L, L/2, L/4, L/10, L/20}`` (the exact skip-step Bernoulli posterior between the visited
times) and measures on the lesion test slices:

- Dice with two thresholds that never look at the test set: ``healthy`` (the detector's
  ``pixel_threshold="auto"``: a high quantile of anomaly-map values on held-out healthy
  slices, recalibrated for every ``n_steps``) and ``val`` (the threshold with the best Dice
  on the validation lesion slices);
- pixel AUPRC (per-image mean, the paper's protocol; threshold-free);
- image AUROC of the masked fraction (lesion vs healthy test slices);
- agreement with full stepping: Pearson correlation of the lesion-slice maps and Dice of the
  ``val``-threshold masks against those of ``n_steps = L``;
- seconds per image of the test-set pass (same process, same threads; load reported).

The lesions are synthetic on an MNI152-derived brain: the figures are not comparable to the
paper's BRATS2020 results, only to each other.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/step_skipping.py --out results/step_skipping.json \
        --md results/step_skipping.md
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import load_average  # noqa: E402

from skberdiff import MaskedBernoulliDiffusionDetector  # noqa: E402
from skberdiff.datasets import make_mni_benchmark  # noqa: E402
from skberdiff.metrics import (  # noqa: E402
    dice_score,
    image_auroc,
    pixel_auprc,
    select_dice_threshold,
)
from skberdiff.postprocessing import foreground_region, get_recipe  # noqa: E402


def _recipe(det):
    return get_recipe(det.postprocessing, median_size=det.median_size,
                      min_component_size=det.min_component_size)


def _markdown(report):
    rows = report["results"]
    lines = [
        f"Step skipping at L = {report['config']['noise_level']}, P = "
        f"{report['config']['mask_threshold']} (small preset, make_mni_benchmark small, "
        f"{report['config']['n_test_lesion']} lesion + {report['config']['n_test_healthy']} "
        f"healthy test slices; {report['meta']['torch_threads']} thread(s), load "
        f"{report['meta']['load_average_start']} -> {report['meta']['load_average_end']}).",
        "",
        "| n_steps | Dice (healthy thr.) | Dice (val thr.) | AUPRC | image AUROC | "
        "map corr. vs full | mask Dice vs full | s / image | speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    full = rows[0]["seconds_per_image"]
    for r in rows:
        lines.append(
            f"| {r['n_steps']} | {r['dice_healthy_threshold']:.3f} | "
            f"{r['dice_val_threshold']:.3f} | {r['auprc']:.3f} | {r['image_auroc']:.3f} | "
            f"{r['map_correlation_vs_full']:.3f} | {r['mask_dice_vs_full']:.3f} | "
            f"{r['seconds_per_image']:.3f} | {full / r['seconds_per_image']:.1f}x |")
    lines += ["", "Dice and AUPRC are per-image means over the lesion test slices; thresholds "
              "come from held-out healthy slices or the validation lesion slices, never the "
              "test set."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/step_skipping.json")
    parser.add_argument("--md", default=None, help="Markdown table (default: --out with .md)")
    parser.add_argument("--preset", default="small", help="architecture preset")
    parser.add_argument("--noise-level", type=int, default=200)
    parser.add_argument("--mask-threshold", type=float, default=0.5)
    parser.add_argument("--divisors", type=int, nargs="+", default=[1, 2, 4, 10, 20],
                        help="n_steps = L / divisor")
    parser.add_argument("--autoencoder-iterations", type=int, default=600)
    parser.add_argument("--diffusion-iterations", type=int, default=800)
    parser.add_argument("--n-calibration", type=int, default=16,
                        help="healthy training slices held out to calibrate thresholds")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=1, help="0: print nothing")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    say = print if args.verbose else (lambda *a, **k: None)
    md_path = args.md or os.path.splitext(args.out)[0] + ".md"

    started = time.time()
    load_start = load_average()
    data = make_mni_benchmark(size="small", random_state=args.seed)
    X_fit, X_cal = data.X_train[:-args.n_calibration], data.X_train[-args.n_calibration:]
    lesion = data.is_anomalous_test
    y_test_lesion = data.y_test[lesion]
    det = MaskedBernoulliDiffusionDetector(
        preset=args.preset, autoencoder_iterations=args.autoencoder_iterations,
        diffusion_iterations=args.diffusion_iterations, autoencoder_batch_size=16,
        diffusion_batch_size=32, autoencoder_learning_rate=1e-3,
        diffusion_learning_rate=5e-4, noise_level=args.noise_level,
        mask_threshold=args.mask_threshold, batch_size=args.batch_size, device=args.device,
        random_state=args.seed, verbose=int(args.progress))
    t0 = time.perf_counter()
    det.fit(X_fit)
    fit_seconds = time.perf_counter() - t0
    say(f"fit: {fit_seconds:.0f} s on {len(X_fit)} healthy slices (load {load_average()})")

    L = args.noise_level
    step_counts = sorted({max(1, L // d) for d in args.divisors}, reverse=True)
    rows, full = [], None
    for n_steps in step_counts:
        det.set_params(n_steps=None if n_steps == L else n_steps, pixel_threshold="auto")
        det.calibrate(X_cal)
        healthy_threshold = det.pixel_threshold_
        val_maps = det.anomaly_map(data.X_val)
        val_threshold, val_dice = select_dice_threshold(val_maps, data.y_val,
                                                        foreground_region(data.X_val))
        t0 = time.perf_counter()
        result = det.detect(data.X_test, ("score", "anomaly_map"))
        seconds = time.perf_counter() - t0
        maps = result.anomaly_map[lesion]
        masks_val = _recipe(det).segment(maps, val_threshold)
        if full is None:
            full = {"maps": maps, "masks": masks_val}
        row = {
            "n_steps": n_steps,
            "dice_healthy_threshold": float(dice_score(
                y_test_lesion, _recipe(det).segment(maps, healthy_threshold))),
            "dice_val_threshold": float(dice_score(y_test_lesion, masks_val)),
            "auprc": float(pixel_auprc(y_test_lesion, maps)),
            "auprc_pooled": float(pixel_auprc(y_test_lesion, maps, average="pooled")),
            "image_auroc": float(image_auroc(lesion, result.masked_fraction)),
            "mean_masked_fraction_lesion": float(result.masked_fraction[lesion].mean()),
            "mean_masked_fraction_healthy": float(result.masked_fraction[~lesion].mean()),
            "healthy_threshold": float(healthy_threshold),
            "val_threshold": float(val_threshold),
            "val_dice_at_val_threshold": val_dice,
            "map_correlation_vs_full": float(np.corrcoef(maps.ravel(),
                                                         full["maps"].ravel())[0, 1]),
            "mask_dice_vs_full": float(dice_score(full["masks"], masks_val,
                                                  average="pooled")),
            "seconds_test_pass": seconds,
            "seconds_per_image": seconds / len(data.X_test),
            "load_average": load_average(),
        }
        rows.append(row)
        say(f"n_steps={n_steps:4d}: Dice {row['dice_healthy_threshold']:.3f} (healthy thr.) "
            f"{row['dice_val_threshold']:.3f} (val thr.), AUPRC {row['auprc']:.3f}, image "
            f"AUROC {row['image_auroc']:.3f}, {row['seconds_per_image']:.3f} s/image "
            f"(load {row['load_average']})")

    report = {
        "meta": {
            "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "torch_threads": torch.get_num_threads(),
            "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
            "device": str(det.device_), "load_average_start": load_start,
            "load_average_end": load_average(), "fit_seconds": fit_seconds,
            "wall_seconds": time.time() - started,
            "argv": sys.argv[1:] if argv is None else list(argv),
            "note": "Synthetic lesions on an MNI152-derived brain; not comparable to BRATS.",
        },
        "config": {
            "noise_level": L, "mask_threshold": args.mask_threshold,
            "autoencoder_iterations": args.autoencoder_iterations,
            "diffusion_iterations": args.diffusion_iterations, "seed": args.seed,
            "n_train": int(len(X_fit)), "n_calibration": int(len(X_cal)),
            "n_val_lesion": int(len(data.X_val)), "n_test_lesion": int(lesion.sum()),
            "n_test_healthy": int((~lesion).sum()), "image_shape": list(data.X_train.shape[1:]),
            "batch_size": args.batch_size,
        },
        "results": rows,
    }
    for path in (args.out, md_path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    table = _markdown(report)
    with open(md_path, "w") as f:
        f.write(table)
    say(table)
    return report


if __name__ == "__main__":
    main()

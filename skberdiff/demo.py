"""A few-minute CPU demo: train on healthy MNI-derived brain slices, find synthetic lesions.

Run ``python -m skberdiff.demo`` (or ``skberdiff-demo``). It builds the offline benchmark of
:mod:`skberdiff.datasets` at 64x64 (synthetic lesions on an MNI152-derived brain: numbers are
NOT comparable to the paper's BRATS2020 results), fits a small
:class:`~skberdiff.MaskedBernoulliDiffusionDetector`, reports Dice and AUPRC on the lesion
test slices and the image-level AUROC of the masked-entry fraction, and saves a PNG with
input, reconstruction, anomaly map, predicted mask and ground truth.
"""

import argparse
import json
import os
import sys
import time

__all__ = ["main", "run_demo"]


def run_demo(*, output_dir="demo_output", image_size=64, autoencoder_iterations=600,
             diffusion_iterations=800, noise_level=200, mask_threshold=0.5, random_state=0,
             device="auto", verbose=1):
    """Train, evaluate and plot; return the measured figures as a dict.

    Parameters
    ----------
    output_dir : str, default="demo_output"
        Where ``demo.png`` and ``demo_results.json`` are written.
    image_size : int, default=64
        Slice size of the benchmark (64 keeps the demo at a few CPU minutes).
    autoencoder_iterations, diffusion_iterations : int
        Training steps of the two networks.
    noise_level, mask_threshold : int, float
        ``L`` and ``P`` of Algorithm 1 (paper: 200 and 0.5).
    random_state : int, default=0
        Seed of data and model.
    device : str, default="auto"
        Torch device.
    verbose : int, default=1
        Progress bars and messages.

    Returns
    -------
    results : dict

    Examples
    --------
    >>> import tempfile
    >>> results = run_demo(output_dir=tempfile.mkdtemp(), image_size=32,
    ...                    autoencoder_iterations=2, diffusion_iterations=2, noise_level=5,
    ...                    device="cpu", verbose=0)  # doctest: +SKIP
    >>> sorted(results)[:3]  # doctest: +SKIP
    ['auprc', 'dice', 'figure']
    """
    from . import MaskedBernoulliDiffusionDetector
    from .datasets import make_mni_benchmark
    from .metrics import dice_score, image_auroc, pixel_auprc
    from .postprocessing import foreground_region, select_dice_threshold

    timings = {}
    start = time.perf_counter()
    data = make_mni_benchmark(size="small", image_size=image_size, random_state=random_state)
    timings["data_s"] = time.perf_counter() - start
    say = print if verbose else (lambda *a, **k: None)
    say(f"Data: {len(data.X_train)} healthy training slices, {len(data.X_val)} validation "
        f"and {int(data.is_anomalous_test.sum())} lesion + "
        f"{int((~data.is_anomalous_test).sum())} healthy test slices, 4x{image_size}x"
        f"{image_size} (synthetic lesions on an MNI152-derived brain).")

    det = MaskedBernoulliDiffusionDetector(
        preset="small", autoencoder_iterations=autoencoder_iterations,
        diffusion_iterations=diffusion_iterations, autoencoder_batch_size=16,
        diffusion_batch_size=32, autoencoder_learning_rate=1e-3,
        diffusion_learning_rate=5e-4, noise_level=noise_level,
        mask_threshold=mask_threshold, device=device, random_state=random_state,
        verbose=verbose)
    start = time.perf_counter()
    det.fit(data.X_train)
    timings["fit_s"] = time.perf_counter() - start

    start = time.perf_counter()
    # The pixel threshold is chosen on the validation lesions, never on the test slices.
    threshold, _ = select_dice_threshold(det.anomaly_map(data.X_val), data.y_val,
                                         foreground_region(data.X_val))
    det.set_params(pixel_threshold=threshold).calibrate(data.X_train[:8])
    result = det.detect(data.X_test)
    timings["inference_s"] = time.perf_counter() - start
    lesion = data.is_anomalous_test
    results = {
        "dice": float(dice_score(data.y_test[lesion], result.mask[lesion])),
        "auprc": float(pixel_auprc(data.y_test[lesion], result.anomaly_map[lesion])),
        "image_auroc_masked_fraction": float(image_auroc(lesion, result.masked_fraction)),
        "mean_masked_fraction_healthy": float(result.masked_fraction[~lesion].mean()),
        "mean_masked_fraction_lesion": float(result.masked_fraction[lesion].mean()),
        "pixel_threshold": threshold,
        "noise_level": noise_level, "mask_threshold": mask_threshold,
        "image_size": image_size, "timings": {k: round(v, 1) for k, v in timings.items()},
    }
    say(f"Dice {results['dice']:.3f} | pixel AUPRC {results['auprc']:.3f} | image AUROC "
        f"(masked fraction) {results['image_auroc_masked_fraction']:.3f}")
    say(f"Time: data {timings['data_s']:.0f} s, fit {timings['fit_s']:.0f} s, inference "
        f"{timings['inference_s']:.0f} s")

    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "demo_results.json"), "w") as fh:
        json.dump(results, fh, indent=2)
    figure = os.path.join(output_dir, "demo.png")
    from .benchmark import _plot_qualitative

    _plot_qualitative(data, range(min(4, int(lesion.sum()))),
                      {"masked": result.reconstruction[lesion]}, result.anomaly_map[lesion],
                      result.mask[lesion], figure)
    results["figure"] = figure
    say(f"Saved {figure}")
    return results


def main(argv=None):
    """Command-line entry point (``python -m skberdiff.demo --help``).

    Examples
    --------
    >>> main(["--image-size", "32", "--quiet"])  # doctest: +SKIP
    0
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="demo_output")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--autoencoder-iterations", type=int, default=600)
    parser.add_argument("--diffusion-iterations", type=int, default=800)
    parser.add_argument("--noise-level", type=int, default=200)
    parser.add_argument("--mask-threshold", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    run_demo(output_dir=args.output_dir, image_size=args.image_size,
             autoencoder_iterations=args.autoencoder_iterations,
             diffusion_iterations=args.diffusion_iterations, noise_level=args.noise_level,
             mask_threshold=args.mask_threshold, random_state=args.seed, device=args.device,
             verbose=0 if args.quiet else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

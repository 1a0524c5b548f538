"""Table 1 and Figure 3 of Wolleb et al. (2024) on the offline MNI-derived benchmark.

``python -m skberdiff.benchmark table1 --preset small`` trains one detector on the healthy
slices of :func:`skberdiff.datasets.make_mni_benchmark` and evaluates, on the same diseased
test slices, the masked restoration (``L=200, P=0.5``), the unmasked one (``P=0``), the
autoencoder alone (no diffusion) and the per-channel intensity-threshold baseline. It writes
``table1.json``, ``table1.md`` (laid out like the paper's Table 1) and the figures: Figure 3
left (Dice over an ``L x P`` grid, no retraining), Figure 3 right (box plots of the
masked-entry percentage of healthy and diseased slices) and qualitative examples.

``python -m skberdiff.benchmark validate ...`` fits one training configuration and scores it
on the validation lesion split only (never the test slices): the tool for choosing training
settings.

The protocol:

- Metrics per diseased test slice, reported as mean and standard deviation (the paper):
  Dice, pixel AUPRC, PSNR(x, x_hat); time and peak memory per image at batch size 1;
  image-level AUROC of the masked-entry fraction on diseased vs healthy test slices.
- Pixel thresholds are chosen on held-out data only: ``"val"`` maximises the mean Dice on
  the validation lesion slices ``X_val``; ``"healthy_q99"`` is the 99th percentile of
  brain-pixel scores on healthy calibration slices that no network was trained on. The
  reference code's per-image min-max protocol (threshold 0.5 after 1-99 percentile
  clipping, components of at most 15 pixels removed) is reported beside them.
- The numbers are those of a synthetic-lesion benchmark on an MNI152-derived brain; they
  are not comparable to the paper's BRATS2020 figures.
"""

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from .postprocessing import select_dice_threshold

__all__ = [
    "BENCHMARK_PRESETS",
    "QUICK_OVERRIDES",
    "heldout_diffusion_loss",
    "autoencoder_reconstruction",
    "run_table1",
    "run_validation",
    "format_table1_markdown",
    "main",
]

PAPER_NOISE_LEVELS = (100, 200, 300, 400)
PAPER_MASK_THRESHOLDS = (0.0, 0.4, 0.5, 0.6, 0.7, 0.8)
PAPER_BOX_CONFIGS = ((0.5, 300), (0.5, 200), (0.7, 200))  # (P, L) as in the paper's Fig. 3

# Everything a run needs besides the seed. "data" goes to make_mni_benchmark; "n_calibration"
# extra healthy slices are generated and never trained on (healthy threshold calibration).
BENCHMARK_PRESETS = {
    "tiny": dict(
        data=dict(size="tiny"), n_calibration=4, model_preset="tiny",
        detector=dict(autoencoder_iterations=30, diffusion_iterations=30,
                      autoencoder_batch_size=8, diffusion_batch_size=8,
                      autoencoder_learning_rate=1e-3, diffusion_learning_rate=5e-4),
        noise_level=20, mask_threshold=0.5, grid_noise_levels=(10, 20),
        grid_mask_thresholds=(0.0, 0.5), box_configs=((0.5, 20),), n_timing=1,
        batch_size=16, n_qualitative=2,
    ),
    "small": dict(
        data=dict(size="small"), n_calibration=16, model_preset="small",
        detector=dict(autoencoder_iterations=2000, diffusion_iterations=4000,
                      autoencoder_batch_size=16, diffusion_batch_size=32,
                      autoencoder_learning_rate=1e-3, diffusion_learning_rate=5e-4),
        noise_level=200, mask_threshold=0.5, grid_noise_levels=PAPER_NOISE_LEVELS,
        grid_mask_thresholds=PAPER_MASK_THRESHOLDS, box_configs=PAPER_BOX_CONFIGS,
        n_timing=4, batch_size=32, n_qualitative=4,
    ),
    # The paper's networks and recipe (Sec. 4): AE batch 6 (lr 4.5e-6 x batch as in the
    # reference), 12k AE and 200k diffusion iterations at batch 32, lr 1e-4. Needs a GPU.
    "paper": dict(
        data=dict(size="default"), n_calibration=20, model_preset="paper",
        detector=dict(autoencoder_iterations=12_000, diffusion_iterations=200_000,
                      autoencoder_batch_size=6, diffusion_batch_size=32,
                      autoencoder_learning_rate=2.7e-5, diffusion_learning_rate=1e-4),
        noise_level=200, mask_threshold=0.5, grid_noise_levels=PAPER_NOISE_LEVELS,
        grid_mask_thresholds=PAPER_MASK_THRESHOLDS, box_configs=PAPER_BOX_CONFIGS,
        n_timing=8, batch_size=16, n_qualitative=4,
    ),
}

# --quick: fewer iterations, fewer evaluation slices and a reduced grid (said so in the JSON).
QUICK_OVERRIDES = {
    "tiny": {},
    "small": dict(
        data=dict(n_val_lesion=16, n_test_lesion=32, n_test_healthy=32),
        detector=dict(autoencoder_iterations=400, diffusion_iterations=600),
        grid_noise_levels=(100, 200, 300), grid_mask_thresholds=(0.0, 0.5, 0.7), n_timing=2,
    ),
    "paper": dict(
        data=dict(n_val_lesion=20, n_test_lesion=40, n_test_healthy=40),
        detector=dict(autoencoder_iterations=2000, diffusion_iterations=10_000),
        grid_noise_levels=(100, 200, 300), grid_mask_thresholds=(0.0, 0.5, 0.7), n_timing=4,
    ),
}

_NOT_COMPARABLE = ("Synthetic lesions on an MNI152-derived brain (skberdiff.datasets): not "
                   "comparable to the BRATS2020 numbers of Wolleb et al. (2024).")
_AE_CODE_NOTE = ("autoencoder_only decodes a Bernoulli sample z ~ B(sigmoid(E(x))) of the "
                 "encoder's code (seeded), the same distribution the diffusion stage starts "
                 "from; autoencoder_only_deterministic decodes 1[sigmoid(E(x)) > 0.5].")


# --------------------------------------------------------------------------- small helpers
def _say(verbose):
    def say(*args):
        if verbose:
            print(*args, flush=True)
    return say


def _merge(base, override):
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and key in out else value
    return out


def _summary(values):
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std())}


def _rounded(values, digits=4):
    return [round(float(v), digits) for v in np.asarray(values).ravel()]


def _memory_status():
    """Current and peak resident set size of this process in bytes (Linux), else None."""
    try:
        with open("/proc/self/status") as fh:
            fields = dict(line.split(":", 1) for line in fh if ":" in line)
        return (int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024)
    except (OSError, KeyError, ValueError):
        return None


def _machine_info(device):
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _load_average():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# --------------------------------------------------------------------------- public helpers
def _device_and_precision(det):
    from ._device import check_precision

    device = next(det.autoencoder_.parameters()).device
    return device, check_precision(det.precision, device)


@torch.inference_mode()
def autoencoder_reconstruction(det, X, *, deterministic=False, seed=0, batch_size=32):
    """Reconstruct images with the fitted detector's autoencoder alone (no diffusion).

    Parameters
    ----------
    det : MaskedBernoulliDiffusionDetector
        A fitted detector; its ``autoencoder_`` runs on its current device and precision.
    X : ndarray of shape (n, c, h, w)
        Images.
    deterministic : bool, default=False
        Decode ``1[p > 0.5]`` instead of a Bernoulli sample ``z ~ B(p)``, ``p = sigmoid(E(x))``.
    seed : int, default=0
        Seed of the Bernoulli sample.
    batch_size : int, default=32
        Images per forward pass.

    Returns
    -------
    x_hat : ndarray of shape (n, c, h, w), float32
        Clamped to [0, 1] like the detector's reconstructions.

    Examples
    --------
    >>> from skberdiff import MaskedBernoulliDiffusionDetector
    >>> from skberdiff.datasets import make_toy_images
    >>> X, _ = make_toy_images(24, image_size=32, random_state=0)
    >>> det = MaskedBernoulliDiffusionDetector(
    ...     preset="tiny", autoencoder_iterations=20, diffusion_iterations=20,
    ...     diffusion_steps=100, noise_level=20, device="cpu", random_state=0).fit(X)
    >>> autoencoder_reconstruction(det, X[:2]).shape
    (2, 1, 32, 32)
    """
    from ._device import autocast

    ae = det.autoencoder_
    device, precision = _device_and_precision(det)
    generator = torch.Generator(device=device).manual_seed(int(seed))
    out = np.empty(X.shape, np.float32)
    for start in range(0, X.shape[0], batch_size):
        x = torch.from_numpy(np.ascontiguousarray(X[start:start + batch_size])).to(device)
        with autocast(device, precision):
            probabilities = ae.encode(x).float()
        code = ae.binarize(probabilities, generator=generator, deterministic=deterministic)
        with autocast(device, precision):
            x_hat = ae.decode(code).float().clamp_(0.0, 1.0)
        out[start:start + batch_size] = x_hat.cpu().numpy()
    return out


@torch.inference_mode()
def heldout_diffusion_loss(det, X, *, timesteps=(25, 50, 100, 200, 300, 400, 600), n_draws=2,
                           seed=0, batch_size=32):
    """Diffusion BCE (bits per latent entry) on images the networks were not trained on.

    For each time ``t``, latents ``z_0 ~ B(sigmoid(E(x)))`` are noised with the detector's
    forward process and the UNet predicts the flips; its loss is compared with the best
    content-blind prediction, the entropy of the empirical flip rate at that ``t``. An
    untrained UNet (zero-initialised output, flip probability 0.5) scores 1 bit; only a
    model that learnt the latents' structure scores below the content-blind entropy.

    Parameters
    ----------
    det : MaskedBernoulliDiffusionDetector
        A fitted detector.
    X : ndarray of shape (n, c, h, w)
        Held-out healthy images.
    timesteps : sequence of int
        Paper times ``t`` to evaluate (clipped to the schedule).
    n_draws : int, default=2
        Noise draws per image and time.
    seed : int, default=0
        Seed of the latent samples and noise.
    batch_size : int, default=32
        Images per forward pass.

    Returns
    -------
    result : dict
        ``model_bits`` and ``content_blind_bits`` (means over times), and per-time lists
        ``timesteps``, ``model_bits_per_t``, ``content_blind_bits_per_t``.

    Examples
    --------
    >>> from skberdiff import MaskedBernoulliDiffusionDetector
    >>> from skberdiff.datasets import make_toy_images
    >>> X, _ = make_toy_images(24, image_size=32, random_state=0)
    >>> det = MaskedBernoulliDiffusionDetector(
    ...     preset="tiny", autoencoder_iterations=20, diffusion_iterations=20,
    ...     diffusion_steps=100, noise_level=20, device="cpu", random_state=0).fit(X)
    >>> loss = heldout_diffusion_loss(det, X[:4], timesteps=(10, 50), n_draws=1)
    >>> loss["timesteps"], 0 < loss["model_bits"] < 2
    ([10, 50], True)
    """
    from ._device import autocast
    from .diffusion import diffusion_loss, training_example
    from .training import encode_dataset

    ae, unet = det.autoencoder_, det.diffusion_model_
    device, precision = _device_and_precision(det)
    unet.to(device)
    # The encoder is deterministic: encode once, draw fresh codes z0 ~ B(p) per time and draw.
    probabilities = encode_dataset(ae, X, batch_size=batch_size, device=device,
                                   precision=precision)
    generator = torch.Generator(device=device).manual_seed(int(seed))
    T = det.schedule_.n_timesteps
    times = sorted({min(max(int(t), 1), T) for t in timesteps})
    model_bits, blind_bits = [], []
    for t in times:
        losses, flips, n_entries = [], 0.0, 0
        for _ in range(int(n_draws)):
            for start in range(0, X.shape[0], batch_size):
                p = probabilities[start:start + batch_size].to(device)
                z0 = ae.binarize(p, generator=generator)
                t_batch = torch.full((z0.shape[0],), t, device=device, dtype=torch.long)
                z_t, target, model_t = training_example(z0, det.schedule_, rng=generator,
                                                        variant=det.forward_process, t=t_batch)
                with autocast(device, precision):
                    logits = unet(z_t, model_t)
                losses.append(diffusion_loss(logits, target, reduction="none").cpu())
                flips += float(target.sum())
                n_entries += target.numel()
        rate = min(max(flips / n_entries, 1e-12), 1 - 1e-12)
        model_bits.append(float(torch.cat(losses).mean()))
        blind_bits.append(float(-(rate * math.log2(rate) + (1 - rate) * math.log2(1 - rate))))
    return {"timesteps": times, "model_bits_per_t": _rounded(model_bits),
            "content_blind_bits_per_t": _rounded(blind_bits),
            "model_bits": float(np.mean(model_bits)),
            "content_blind_bits": float(np.mean(blind_bits))}


# --------------------------------------------------------------------------- data and model
def _resolve_settings(preset, quick, overrides):
    if preset not in BENCHMARK_PRESETS:
        raise ValueError(f"preset must be one of {sorted(BENCHMARK_PRESETS)}, got {preset!r}.")
    settings = _merge(BENCHMARK_PRESETS[preset], QUICK_OVERRIDES[preset] if quick else {})
    return _merge(settings, {k: v for k, v in overrides.items() if v is not None})


def _make_data(settings, seed, image_size=None, return_lesion_free=False):
    """Benchmark data plus ``X_cal``: healthy slices drawn beyond ``n_train``, never trained on."""
    from .datasets import _SIZE_PRESETS, make_mni_benchmark

    data_args = dict(settings["data"])
    if image_size is not None:
        data_args["image_size"] = int(image_size)
    n_train = data_args.pop("n_train", None) or _SIZE_PRESETS[data_args["size"]][0]
    n_cal = int(settings["n_calibration"])
    # make_mni_benchmark gives every split its own seed stream, so asking for more training
    # slices appends new subjects and leaves validation and test slices unchanged.
    data = make_mni_benchmark(n_train=n_train + n_cal, random_state=seed,
                              return_lesion_free=return_lesion_free, **data_args)
    data.X_cal = data.X_train[n_train:]
    data.X_train = data.X_train[:n_train]
    return data


def _make_detector(settings, seed, device, verbose, memory):
    from . import MaskedBernoulliDiffusionDetector

    params = dict(settings["detector"])
    return MaskedBernoulliDiffusionDetector(
        preset=settings["model_preset"], noise_level=settings["noise_level"],
        mask_threshold=settings["mask_threshold"], batch_size=settings["batch_size"],
        device=device, random_state=seed, verbose=1 if verbose > 1 else 0, memory=memory,
        **params)


def _history_summary(history):
    out = {}
    for name, entries in history.items():
        if entries:
            keys = [k for k in entries[-1] if k != "step"]
            tail = entries[-max(1, len(entries) // 10):]
            out[name] = {"steps": int(entries[-1]["step"]),
                         **{f"final_{k}": float(np.mean([e[k] for e in tail if k in e]))
                            for k in keys}}
    return out


# --------------------------------------------------------------------------- method outputs
@dataclass
class _Outputs:
    """What one method gives for a set of images (``x_hat`` and ``masked_fraction`` may be None).

    ``maps``: the paper's post-processed map (``sum_c (x - x_hat)^2``, median 5); ``ref_scores``:
    the reference code's per-image min-max scores.
    """

    maps: np.ndarray
    ref_scores: np.ndarray
    x_hat: np.ndarray | None = None
    masked_fraction: np.ndarray | None = None
    seconds: float = 0.0

    def part(self, sl):
        return _Outputs(self.maps[sl], self.ref_scores[sl],
                        None if self.x_hat is None else self.x_hat[sl],
                        None if self.masked_fraction is None else self.masked_fraction[sl])


def _reconstruction_outputs(X, x_hat, masked_fraction=None, seconds=0.0):
    from .postprocessing import median_filter_maps, reference_anomaly_scores, squared_error_map

    return _Outputs(median_filter_maps(squared_error_map(X, x_hat), 5),
                    reference_anomaly_scores(X, x_hat, median_size=5), x_hat, masked_fraction,
                    seconds)


def _map_outputs(maps, seconds=0.0):
    """A map without a reconstruction (the intensity baseline): the same median filter; the
    reference code's percentile clip and min-max are applied to the filtered map."""
    from .postprocessing import median_filter_maps, minmax_normalize, percentile_clip

    filtered = median_filter_maps(maps, 5)
    return _Outputs(filtered, minmax_normalize(percentile_clip(filtered)), seconds=seconds)


def _diffusion_outputs(det, X, noise_level, mask_threshold):
    det.set_params(noise_level=int(noise_level), mask_threshold=float(mask_threshold))
    start = time.perf_counter()
    result = det.detect(X, ("reconstruction",))
    seconds = time.perf_counter() - start
    return _reconstruction_outputs(X, result.reconstruction, result.masked_fraction, seconds)


class _Layout:
    """Named slices of the concatenation of the evaluation splits, run in one pass."""

    def __init__(self, parts):
        self.slices, arrays, start = {}, [], 0
        for name, X in parts:
            self.slices[name] = slice(start, start + len(X))
            arrays.append(X)
            start += len(X)
        self.X = np.concatenate(arrays)

    def split(self, outputs):
        return {name: outputs.part(sl) for name, sl in self.slices.items()}


# --------------------------------------------------------------------------- metrics
def _thresholds(parts, data):
    from .postprocessing import calibrate_pixel_threshold, foreground_region

    val = parts["val"]
    t_val, dice_val = select_dice_threshold(val.maps, data.y_val, foreground_region(data.X_val))
    out = {"val": t_val, "val_dice": dice_val}
    if "cal" in parts:
        out["healthy_q99"] = calibrate_pixel_threshold(
            parts["cal"].maps, 0.99, region=foreground_region(data.X_cal))
    return out


def _lesion_metrics(outputs, X, y, thresholds):
    """Per-slice metrics of diseased slices, one array per metric."""
    from .metrics import dice_score, pixel_auprc, psnr
    from .postprocessing import paper_postprocess, reference_postprocess

    per_slice = {}
    for name in ("val", "healthy_q99"):
        if name in thresholds:
            masks = paper_postprocess(outputs.maps, thresholds[name], median_size=None,
                                      min_size=10)
            per_slice[f"dice_{name}"] = dice_score(y, masks, average=None)
    per_slice["dice_reference_minmax"] = dice_score(
        y, reference_postprocess(outputs.ref_scores, 0.5, 15), average=None)
    per_slice["auprc"] = pixel_auprc(y, outputs.maps, average=None)
    per_slice["auprc_reference_minmax"] = pixel_auprc(y, outputs.ref_scores, average=None)
    if outputs.x_hat is not None:
        per_slice["psnr"] = psnr(X, outputs.x_hat, average=None)
    if outputs.masked_fraction is not None:
        per_slice["masked_fraction"] = np.asarray(outputs.masked_fraction, np.float64)
    return per_slice


def _evaluate_method(parts, data, *, test_healthy=True):
    from .metrics import image_auroc, pixel_auprc

    thresholds = _thresholds(parts, data)
    lesion = parts["test_lesion"]
    X_lesion = data.X_test[data.is_anomalous_test]
    y_lesion = data.y_test[data.is_anomalous_test]
    per_slice = _lesion_metrics(lesion, X_lesion, y_lesion, thresholds)
    result = {
        "thresholds": {k: float(v) for k, v in thresholds.items()},
        "summary": {k: _summary(v) for k, v in per_slice.items()},
        "auprc_pooled": float(pixel_auprc(y_lesion, lesion.maps, average="pooled")),
        "per_slice": {k: _rounded(v) for k, v in per_slice.items()},
    }
    if test_healthy and "test_healthy" in parts and lesion.masked_fraction is not None:
        healthy_fraction = np.asarray(parts["test_healthy"].masked_fraction, np.float64)
        labels = np.r_[np.ones(len(lesion.masked_fraction), bool),
                       np.zeros(len(healthy_fraction), bool)]
        result["image_auroc_masked_fraction"] = float(image_auroc(
            labels, np.r_[lesion.masked_fraction, healthy_fraction]))
        result["masked_fraction_healthy"] = _rounded(healthy_fraction, 5)
    return result


def _run_diffusion(det, x, noise_level, mask_threshold):
    det.set_params(noise_level=noise_level, mask_threshold=mask_threshold, batch_size=1)
    det.detect(x, ("reconstruction",))


def _run_autoencoder(det, x, deterministic, seed):
    autoencoder_reconstruction(det, x, deterministic=deterministic, seed=seed, batch_size=1)


def _run_baseline(baseline, x):
    baseline.anomaly_map(x)


_RUNNERS = {"diffusion": _run_diffusion, "autoencoder": _run_autoencoder,
            "baseline": _run_baseline}


def _memory_probe(path):
    """Child-process side of the CPU memory measurement: print the peak RSS growth as JSON.

    A long-running process keeps freed memory resident, so its RSS says little about what
    one image needs; a fresh process that has loaded the model does.
    """
    import joblib

    runner, obj, kwargs, X, threads = joblib.load(path)
    torch.set_num_threads(threads)
    before = _memory_status()
    for i in range(len(X)):
        _RUNNERS[runner](obj, X[i:i + 1], **kwargs)
    after = _memory_status()
    print(json.dumps({"peak_rss_growth": None if before is None or after is None
                      else after[1] - before[0]}))


def _cpu_peak_memory(runner, obj, kwargs, X, workdir, attempts=2):
    """Peak RSS growth measured by :func:`_memory_probe` in a child; (bytes or None, error)."""
    import subprocess

    import joblib

    path = os.path.join(workdir, "memory_probe.joblib")
    joblib.dump((runner, obj, kwargs, X, torch.get_num_threads()), path)
    error = None
    try:
        for _ in range(attempts):
            result = subprocess.run(
                [sys.executable, "-c", "import sys; from skberdiff.benchmark import "
                 "_memory_probe; _memory_probe(sys.argv[1])", path],
                capture_output=True, text=True, timeout=3600)
            try:
                value = json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_growth"]
                if value is not None:
                    return int(max(value, 0)), None
                error = "no /proc/self/status on this platform"
            except (ValueError, IndexError, KeyError):
                error = (result.stderr.strip().splitlines() or ["no output"])[-1][:300]
    except subprocess.SubprocessError as exc:
        error = repr(exc)[:300]
    finally:
        os.remove(path)
    return None, error


def _measure_per_image(runner, obj, kwargs, X, device, workdir):
    """Seconds per image and peak memory per image at batch size 1 (after one warm-up).

    GPU: ``torch.cuda.max_memory_allocated`` during the timed images (weights included).
    CPU: growth of the peak RSS of a fresh process that runs the same images after loading
    the model (weights excluded).
    """
    run = _RUNNERS[runner]
    run(obj, X[:1], **kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    seconds = []
    for i in range(len(X)):
        start = time.perf_counter()
        run(obj, X[i:i + 1], **kwargs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    if device.type == "cuda":
        memory = {"peak_memory_bytes": int(torch.cuda.max_memory_allocated(device)),
                  "memory_kind": "torch.cuda.max_memory_allocated, batch 1 (weights included)"}
    else:
        peak, error = _cpu_peak_memory(runner, obj, kwargs, X, workdir)
        memory = {"peak_memory_bytes": peak,
                  "memory_kind": "CPU: peak RSS growth of a fresh process running the same "
                                 "images at batch 1 after loading the model (weights "
                                 "excluded)"}
        if error is not None:
            memory["memory_error"] = error
    return {"time_per_image_s": _summary(seconds), "n_images_timed": len(X), **memory}


# --------------------------------------------------------------------------- figures
def _plot_grid(grid, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Ls, Ps = grid["noise_levels"], grid["mask_thresholds"]
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4))
    for ax, key, title in zip(axes, ("dice", "auprc"),
                              ("Dice (threshold chosen on X_val)", "pixel AUPRC")):
        values = np.asarray(grid[key])
        image = ax.imshow(values, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(Ps)), [("0 (no mask)" if p == 0 else f"{p:g}") for p in Ps],
                      fontsize=8)
        ax.set_yticks(range(len(Ls)), [str(v) for v in Ls])
        ax.set_xlabel("mask threshold P")
        ax.set_ylabel("noise level L")
        ax.set_title(title, fontsize=10)
        for i in range(len(Ls)):
            for j in range(len(Ps)):
                ax.text(j, i, f"{values[i, j]:.3f}", ha="center", va="center", fontsize=7,
                        color="w" if values[i, j] < values.mean() else "k")
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle("Figure 3 (left): L x P grid on the diseased test slices, no retraining",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_masked_fraction(boxes, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    positions, data, colors, labels = [], [], [], []
    for k, box in enumerate(boxes):
        for j, (group, color) in enumerate((("healthy", "tab:blue"), ("diseased", "tab:orange"))):
            positions.append(3 * k + j)
            data.append(100 * np.asarray(box[group]))
            colors.append(color)
        labels.append(f"P={box['mask_threshold']:g}\nL={box['noise_level']}")
        if box["expected_noise_flip_fraction"] is not None:
            ax.hlines(100 * box["expected_noise_flip_fraction"], 3 * k - 0.4, 3 * k + 1.4,
                      colors="grey", linestyles="dashed", linewidth=1)
    parts = ax.boxplot(data, positions=positions, widths=0.8, patch_artist=True)
    for patch, color in zip(parts["boxes"], colors):
        patch.set_facecolor(color)
        patch.set_alpha(0.7)
    ax.set_xticks([3 * k + 0.5 for k in range(len(boxes))], labels)
    ax.set_ylabel("masked entries of M (%)")
    ax.plot([], [], color="tab:blue", lw=6, alpha=0.7, label="healthy")
    ax.plot([], [], color="tab:orange", lw=6, alpha=0.7, label="diseased")
    ax.plot([], [], color="grey", ls="dashed", label="injected flips (1-abar_L)/2")
    ax.legend(fontsize=7)
    ax.set_title("Figure 3 (right): masked-entry percentage, test slices", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_qualitative(data, rows, reconstructions, maps, masks, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    flair = list(data.channel_names).index("flair_like")
    X = data.X_test[data.is_anomalous_test]
    y = data.y_test[data.is_anomalous_test]
    columns = ["input (FLAIR-like)"] + [f"x_hat {name}" for name in reconstructions] + [
        "anomaly map (masked)", "mask (masked)", "ground truth"]
    fig, axes = plt.subplots(len(rows), len(columns),
                             figsize=(1.7 * len(columns), 1.8 * len(rows)), squeeze=False)
    for r, i in enumerate(rows):
        images = [X[i, flair]] + [x_hat[i, flair] for x_hat in reconstructions.values()] + [
            maps[i], masks[i], y[i]]
        for c, (ax, image) in enumerate(zip(axes[r], images)):
            is_map = columns[c].startswith("anomaly map")
            ax.imshow(image, cmap="inferno" if is_map else "gray", vmin=None if is_map else 0,
                      vmax=None if is_map else (1 if c < len(columns) - 3 else None))
            ax.set_axis_off()
            if r == 0:
                ax.set_title(columns[c], fontsize=7)
    fig.suptitle("Synthetic lesions on an MNI152-derived brain (test slices, not chosen)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# --------------------------------------------------------------------------- Table 1
_METHOD_ROWS = (
    ("intensity_threshold", "Intensity threshold (Meissen et al.)", "-"),
    ("autoencoder_only", "Autoencoder only (no diffusion)", "-"),
    ("autoencoder_only_deterministic", "Autoencoder only, deterministic code", "-"),
    ("unmasked", "Ours (unmasked, P=0)", "Bernoulli"),
    ("masked", "Ours (masked)", "Bernoulli"),
)


def _fmt(summary, digits=3):
    if summary is None:
        return "-"
    return f"{summary['mean']:.{digits}f} ± {summary['std']:.{digits - 1}f}"


def _fmt_bytes(value):
    if value is None:
        return "-"
    if value < 2 ** 30:
        return f"{value / 2 ** 20:.{1 if value < 10 * 2 ** 20 else 0}f} MB"
    return f"{value / 2 ** 30:.2f} GB"


def format_table1_markdown(results):
    """Markdown tables of a :func:`run_table1` result, laid out like the paper's Table 1.

    Parameters
    ----------
    results : dict
        The result of :func:`run_table1` (or the loaded ``table1.json``).

    Returns
    -------
    markdown : str

    Examples
    --------
    >>> import json
    >>> with open("results/table1.json") as fh:  # doctest: +SKIP
    ...     print(format_table1_markdown(json.load(fh)))
    """
    cfg = results["config"]
    methods = results["methods"]
    L, P = cfg["noise_level"], cfg["mask_threshold"]
    n_lesion, n_healthy = results["data"]["n_test_lesion"], results["data"]["n_test_healthy"]
    lines = [
        f"Preset `{cfg['preset']}`{' (quick)' if cfg['quick'] else ''}, "
        f"{results['data']['image_size']}x{results['data']['image_size']}, seed {cfg['seed']}, "
        f"{n_lesion} diseased + {n_healthy} healthy test slices; {results['data']['note']}",
        "",
        "| Method | Noise | Dice ↑ | AUPRC ↑ | PSNR ↑ | Time ↓ | Mem ↓ |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, label, noise in _METHOD_ROWS:
        if key not in methods:
            continue
        m = methods[key]
        s = m["summary"]
        name = f"{label}, L={L}, P={P:g}" if key == "masked" else (
            f"{label}, L={L}" if key == "unmasked" else label)
        t = m.get("cost", {}).get("time_per_image_s")
        time_text = "-" if t is None else f"{t['mean']:.3g} s"
        lines.append(f"| {name} | {noise} | {_fmt(s.get('dice_val'))} | {_fmt(s.get('auprc'))} "
                     f"| {_fmt(s.get('psnr'), 2) if 'psnr' in s else '-'} | {time_text} | "
                     f"{_fmt_bytes(m.get('cost', {}).get('peak_memory_bytes'))} |")
    lines += [
        "",
        "Dice under each threshold protocol, pixel AUPRC variants and the image-level AUROC "
        "of the masked-entry fraction (diseased vs healthy test slices):",
        "",
        "| Method | Dice (t from X_val) | Dice (healthy q99) | Dice (ref. min-max) | "
        "AUPRC | AUPRC (ref. min-max) | AUPRC pooled | image AUROC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, label, _ in _METHOD_ROWS:
        if key not in methods:
            continue
        m, s = methods[key], methods[key]["summary"]
        auroc = m.get("image_auroc_masked_fraction")
        lines.append(
            f"| {label} | {_fmt(s.get('dice_val'))} | {_fmt(s.get('dice_healthy_q99'))} | "
            f"{_fmt(s.get('dice_reference_minmax'))} | {_fmt(s.get('auprc'))} | "
            f"{_fmt(s.get('auprc_reference_minmax'))} | {m['auprc_pooled']:.3f} | "
            f"{'-' if auroc is None else f'{auroc:.3f}'} |")
    lines += ["", "Paired differences on the same diseased test slices, masked minus the other "
              "method (mean ± standard error over slices; positive = masked better):", "",
              "| Masked minus | Dice (t from X_val) | AUPRC |", "|---|---|---|"]
    for key, label, _ in _METHOD_ROWS:
        if key == "masked" or key not in methods or "masked" not in methods:
            continue
        cells = []
        for metric in ("dice_val", "auprc"):
            diff = (np.asarray(methods["masked"]["per_slice"][metric])
                    - np.asarray(methods[key]["per_slice"][metric]))
            sem = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
            cells.append(f"{diff.mean():+.3f} ± {sem:.3f}")
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    grid = results["grid"]
    lines += ["", f"Figure 3 (left) as a table: Dice (threshold chosen on X_val per cell) on "
              f"the diseased test slices{' (reduced grid)' if grid['reduced'] else ''}:", "",
              "| L \\ P | " + " | ".join(f"{p:g}" for p in grid["mask_thresholds"]) + " |",
              "|---" * (len(grid["mask_thresholds"]) + 1) + "|"]
    for L_value, row in zip(grid["noise_levels"], grid["dice"]):
        lines.append(f"| {L_value} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    lines += ["", "Masked-entry percentage (Figure 3 right), median [IQR]:", "",
              "| P, L | healthy | diseased | injected flips (1-abar_L)/2 | image AUROC |",
              "|---|---|---|---|---|"]
    for box in results["masked_fraction"]:
        def q(v):
            a = 100 * np.percentile(v, [50, 25, 75])
            return f"{a[0]:.1f} [{a[1]:.1f}, {a[2]:.1f}]"
        flips = box["expected_noise_flip_fraction"]
        lines.append(f"| {box['mask_threshold']:g}, {box['noise_level']} | {q(box['healthy'])} "
                     f"| {q(box['diseased'])} | {'-' if flips is None else f'{100 * flips:.1f}'} "
                     f"| {box['image_auroc']:.3f} |")
    return "\n".join(lines) + "\n"


def run_table1(*, preset="small", quick=False, image_size=None, seed=0, out="results",
               device="auto", figures=True, cache=True, verbose=1, **overrides):
    """Train once, evaluate every method on the same test slices, write JSON, Markdown, PNGs.

    Parameters
    ----------
    preset : {"tiny", "small", "paper"}, default="small"
        Settings from :data:`BENCHMARK_PRESETS` (``"paper"`` needs a GPU).
    quick : bool, default=False
        Apply :data:`QUICK_OVERRIDES`: fewer iterations and slices, a reduced grid.
    image_size : int, default=None
        Override the data preset's image size.
    seed : int, default=0
        Seed of data and model.
    out : str, default="results"
        Output directory (``table1.json``, ``table1.md``, ``figures/``, ``cache/``).
    device : str, default="auto"
        Torch device.
    figures : bool, default=True
        Write the PNG figures (needs matplotlib).
    cache : bool, default=True
        Cache the trained networks on disk under ``out/cache`` (a rerun does not retrain).
    verbose : int, default=1
        0 silent, 1 progress lines, 2 also training progress bars.
    **overrides
        Settings to override: ``detector`` (dict of detector training parameters), ``data``
        (dict for make_mni_benchmark), ``noise_level``, ``mask_threshold``,
        ``grid_noise_levels``, ``grid_mask_thresholds``, ``box_configs``, ``n_timing``,
        ``batch_size``, ``n_calibration``.

    Returns
    -------
    results : dict
        What ``table1.json`` holds.

    Examples
    --------
    The tiny preset runs end to end in about 20 s on one CPU core:

    >>> results = run_table1(preset="tiny", out="results/tiny", verbose=0)  # doctest: +SKIP
    >>> results["methods"]["masked"]["summary"]["dice_val"]  # doctest: +SKIP
    {'mean': ..., 'std': ...}
    """
    from ._device import resolve_device
    from .baselines import IntensityThresholdBaseline
    from .diffusion import flip_probability

    say = _say(verbose)
    started = time.perf_counter()
    load_start = _load_average()
    settings = _resolve_settings(preset, quick, overrides)
    L, P = int(settings["noise_level"]), float(settings["mask_threshold"])
    grid_L = sorted(set(int(v) for v in settings["grid_noise_levels"]))
    grid_P = sorted(set(float(v) for v in settings["grid_mask_thresholds"]))
    full_grid = (tuple(grid_L) == PAPER_NOISE_LEVELS
                 and tuple(grid_P) == PAPER_MASK_THRESHOLDS)
    boxes = [(float(p), int(l)) for p, l in settings["box_configs"]]
    # The table's rows and the box plots are grid cells, computed once.
    grid_L = sorted(set(grid_L) | {L} | {l for _, l in boxes})
    grid_P = sorted(set(grid_P) | {P, 0.0} | {p for p, _ in boxes})
    healthy_configs = {(L, P), (L, 0.0)} | {(l, p) for p, l in boxes}
    os.makedirs(out, exist_ok=True)
    timings = {}

    start = time.perf_counter()
    data = _make_data(settings, seed, image_size)
    timings["data_s"] = time.perf_counter() - start
    lesion = data.is_anomalous_test
    X_lesion, X_healthy = data.X_test[lesion], data.X_test[~lesion]
    say(f"[table1] data: {len(data.X_train)} healthy train, {len(data.X_cal)} healthy "
        f"calibration, {len(data.X_val)} lesion val, {len(X_lesion)} lesion + "
        f"{len(X_healthy)} healthy test, 4x{data.X_train.shape[-1]}^2")

    memory = os.path.join(out, "cache") if cache else None
    det = _make_detector(settings, seed, device, verbose, memory)
    start = time.perf_counter()
    det.fit(data.X_train)
    timings["fit_s"] = time.perf_counter() - start
    run_device = resolve_device(device, fallback=True)
    say(f"[table1] fit in {timings['fit_s']:.0f} s on {run_device} "
        f"({det.n_train_samples_} slices trained on)")

    base_parts = [("val", data.X_val), ("test_lesion", X_lesion)]
    all_parts = base_parts + [("test_healthy", X_healthy), ("cal", data.X_cal)]
    small_layout, full_layout = _Layout(base_parts), _Layout(all_parts)

    grid_cells, methods, box_results = {}, {}, []
    start = time.perf_counter()
    for l_value in grid_L:
        for p_value in grid_P:
            layout = full_layout if (l_value, p_value) in healthy_configs else small_layout
            outputs = _diffusion_outputs(det, layout.X, l_value, p_value)
            parts = layout.split(outputs)
            cell = _evaluate_method(parts, data)
            cell["seconds_per_image_batched"] = outputs.seconds / len(layout.X)
            grid_cells[(l_value, p_value)] = cell
            if (l_value, p_value) == (L, P):
                qualitative_masked = parts["test_lesion"]
            if (l_value, p_value) == (L, 0.0):
                qualitative_unmasked = parts["test_lesion"]
            summary = cell["summary"]
            say(f"[table1] L={l_value:3d} P={p_value:.1f}: Dice {summary['dice_val']['mean']:.3f}"
                f" AUPRC {summary['auprc']['mean']:.3f} "
                f"({time.perf_counter() - started:.0f} s elapsed)")
    timings["grid_s"] = time.perf_counter() - start
    methods["masked"] = dict(grid_cells[(L, P)], noise_level=L, mask_threshold=P)
    methods["unmasked"] = dict(grid_cells[(L, 0.0)], noise_level=L, mask_threshold=0.0)

    start = time.perf_counter()
    ae_outputs = {}
    for key, deterministic in (("autoencoder_only", False), ("autoencoder_only_deterministic",
                                                              True)):
        t0 = time.perf_counter()
        x_hat = autoencoder_reconstruction(det, full_layout.X, deterministic=deterministic,
                                           seed=seed, batch_size=settings["batch_size"])
        outputs = _reconstruction_outputs(full_layout.X, x_hat,
                                          seconds=time.perf_counter() - t0)
        parts = full_layout.split(outputs)
        ae_outputs[key] = parts["test_lesion"]
        methods[key] = dict(_evaluate_method(parts, data),
                            seconds_per_image_batched=outputs.seconds / len(full_layout.X))

    baseline = IntensityThresholdBaseline().fit(data.X_val, data.y_val, X_healthy=data.X_train)
    t0 = time.perf_counter()
    base_maps = baseline.anomaly_map(full_layout.X)
    outputs = _map_outputs(base_maps, seconds=time.perf_counter() - t0)
    methods["intensity_threshold"] = dict(
        _evaluate_method(full_layout.split(outputs), data),
        seconds_per_image_batched=outputs.seconds / len(full_layout.X),
        channel=data.channel_names[baseline.channel_], polarity=baseline.polarity_,
        val_auprc_pooled_raw=baseline.best_auprc_)
    timings["baselines_s"] = time.perf_counter() - start

    # Time and memory per image at batch size 1, as the paper measures them.
    start = time.perf_counter()
    X_timing = X_lesion[:max(1, int(settings["n_timing"]))]
    tasks = {
        "masked": ("diffusion", det, dict(noise_level=L, mask_threshold=P)),
        "unmasked": ("diffusion", det, dict(noise_level=L, mask_threshold=0.0)),
        "autoencoder_only": ("autoencoder", det, dict(deterministic=False, seed=seed)),
        "autoencoder_only_deterministic": ("autoencoder", det, dict(deterministic=True,
                                                                    seed=seed)),
        "intensity_threshold": ("baseline", baseline, {}),
    }
    costs = {key: _measure_per_image(runner, obj, kwargs, X_timing, run_device, out)
             for key, (runner, obj, kwargs) in tasks.items()}
    det.set_params(batch_size=settings["batch_size"], noise_level=L, mask_threshold=P)
    for key, cost in costs.items():
        methods[key]["cost"] = cost
    timings["cost_s"] = time.perf_counter() - start

    for p_value, l_value in boxes:
        cell = grid_cells[(l_value, p_value)]
        box_results.append({
            "mask_threshold": p_value, "noise_level": l_value,
            "healthy": cell["masked_fraction_healthy"],
            "diseased": cell["per_slice"]["masked_fraction"],
            "image_auroc": cell["image_auroc_masked_fraction"],
            # Share of bits the paper's forward process flips; the reference process only
            # clears ones, so there is no content-free value to draw.
            "expected_noise_flip_fraction": (
                float(flip_probability(float(det.schedule_.alpha_bar[l_value])))
                if det.forward_process == "paper" else None),
        })

    grid = {
        "noise_levels": grid_L, "mask_thresholds": grid_P,
        "reduced": not full_grid,
        "dice": [[grid_cells[(l, p)]["summary"]["dice_val"]["mean"] for p in grid_P]
                 for l in grid_L],
        "dice_std": [[grid_cells[(l, p)]["summary"]["dice_val"]["std"] for p in grid_P]
                     for l in grid_L],
        "auprc": [[grid_cells[(l, p)]["summary"]["auprc"]["mean"] for p in grid_P]
                  for l in grid_L],
        "dice_reference_minmax": [
            [grid_cells[(l, p)]["summary"]["dice_reference_minmax"]["mean"] for p in grid_P]
            for l in grid_L],
        "threshold_val": [[grid_cells[(l, p)]["thresholds"]["val"] for p in grid_P]
                          for l in grid_L],
        "val_dice": [[grid_cells[(l, p)]["thresholds"]["val_dice"] for p in grid_P]
                     for l in grid_L],
        "mean_masked_fraction_diseased": [
            [grid_cells[(l, p)]["summary"]["masked_fraction"]["mean"] for p in grid_P]
            for l in grid_L],
        "seconds_per_image_batched": [
            [grid_cells[(l, p)]["seconds_per_image_batched"] for p in grid_P] for l in grid_L],
    }
    heldout = heldout_diffusion_loss(det, data.X_cal, seed=seed)
    results = {
        "benchmark": "table1",
        "config": {
            "preset": preset, "quick": bool(quick), "seed": int(seed),
            "noise_level": L, "mask_threshold": P, "model_preset": settings["model_preset"],
            "detector": {k: v for k, v in det.get_params().items()
                         if k not in ("memory", "checkpoint_dir", "verbose")},
            "grid_reduced": not full_grid,
            "grid_note": ("paper grid" if full_grid else
                          "reduced grid (quick or custom); the paper's is L in "
                          "{100,200,300,400} x P in {0,0.4,...,0.8}"),
            "threshold_protocols": {
                "val": "maximises mean per-image Dice on the validation lesion slices X_val "
                       "(quantiles of X_val brain-pixel scores), per method and grid cell",
                "healthy_q99": "99th percentile of brain-pixel scores of healthy calibration "
                               "slices never trained on",
                "reference_minmax": "reference code: per-channel median 5, 1-99 percentile "
                                    "clip, per-image min-max, > 0.5, components <= 15 px "
                                    "(8-connected, holes filled) removed",
            },
            "paper_postprocessing": "sum_c (x - x_hat)^2, median filter 5, threshold, "
                                    "8-connected components < 10 px removed",
            "autoencoder_only_code": _AE_CODE_NOTE,
            "intensity_baseline": "IntensityThresholdBaseline fitted on X_val/y_val (channel "
                                  "and polarity by validation AUPRC, z-scored with healthy "
                                  "training statistics); map median-filtered like the others",
        },
        "data": {
            "image_size": int(data.X_train.shape[-1]), "n_train": int(len(data.X_train)),
            "n_calibration": int(len(data.X_cal)), "n_val_lesion": int(len(data.X_val)),
            "n_test_lesion": int(lesion.sum()), "n_test_healthy": int((~lesion).sum()),
            "n_trained_on": int(det.n_train_samples_), "note": _NOT_COMPARABLE,
        },
        "machine": dict(_machine_info(run_device), load_average_start=load_start),
        "training": {"fit_s": timings["fit_s"], "history": _history_summary(det.history_),
                     "heldout_diffusion_loss": heldout},
        "methods": methods,
        "grid": grid,
        "masked_fraction": box_results,
        "timings": timings,
    }

    if figures:
        fig_dir = os.path.join(out, "figures")
        os.makedirs(fig_dir, exist_ok=True)
        paths = {"fig3_left": os.path.join(fig_dir, "fig3_left_grid.png"),
                 "fig3_right": os.path.join(fig_dir, "fig3_right_masked_fraction.png"),
                 "qualitative": os.path.join(fig_dir, "qualitative.png")}
        _plot_grid(grid, paths["fig3_left"])
        _plot_masked_fraction(box_results, paths["fig3_right"])
        from .postprocessing import paper_postprocess

        n_rows = min(int(settings["n_qualitative"]), len(X_lesion))
        rows = np.linspace(0, len(X_lesion) - 1, n_rows).round().astype(int)
        masks = paper_postprocess(qualitative_masked.maps,
                                  methods["masked"]["thresholds"]["val"], median_size=None)
        _plot_qualitative(data, rows, {
            f"masked L={L} P={P:g}": qualitative_masked.x_hat,
            f"unmasked L={L}": qualitative_unmasked.x_hat,
            "AE only": ae_outputs["autoencoder_only"].x_hat}, qualitative_masked.maps, masks,
            paths["qualitative"])
        results["figures"] = paths
    timings["total_s"] = time.perf_counter() - started
    results["machine"]["load_average_end"] = _load_average()
    results["image_auroc_note"] = (
        "P=0 masks every entry, so its masked fraction is 1 everywhere and its AUROC 0.5.")

    with open(os.path.join(out, "table1.json"), "w") as fh:
        json.dump(results, fh, indent=1)
    markdown = format_table1_markdown(results)
    with open(os.path.join(out, "table1.md"), "w") as fh:
        fh.write(markdown)
    say(markdown)
    say(f"[table1] wrote {os.path.join(out, 'table1.json')} in {timings['total_s']:.0f} s")
    return results


# --------------------------------------------------------------------------- validation
def run_validation(*, preset="small", quick=False, image_size=None, seed=0, out="results",
                   device="auto", configs=((200, 0.5), (200, 0.0)), tag=None, cache=True,
                   verbose=1, **overrides):
    """Fit one training configuration and score it on the validation lesion split only.

    No test slice is evaluated. Scores use thresholds that are not tuned on ``X_val``
    (the healthy 99th percentile) or none (AUPRC); each configuration's per-slice AUPRC is
    compared with the autoencoder alone on the same slices (mean difference and its standard
    error). Diagnostics against the lesion-free version ``x_free`` of each validation slice,
    over lesion pixels: ``lesion_retained``, the share of the lesion signal ``x - x_free``
    that ``x_hat`` reproduces (1 = the lesion is copied, 0 = removed), and
    ``lesion_error_ratio = sum (x - x_hat)^2 / sum (x - x_free)^2``; ``healthy_residual`` is
    the mean squared error outside lesions.

    Parameters
    ----------
    preset, quick, image_size, seed, out, device, cache, verbose, **overrides
        As in :func:`run_table1`.
    configs : sequence of (int, float), default=((200, 0.5), (200, 0.0))
        ``(L, P)`` pairs to score.
    tag : str, default=None
        Name of the output file ``validate-<tag>.json``.

    Returns
    -------
    results : dict

    Examples
    --------
    >>> run_validation(preset="tiny", out="results/tiny", configs=[(20, 0.5)],
    ...                verbose=0)["scores"].keys()  # doctest: +SKIP
    dict_keys(['autoencoder_only', 'L20_P0.5'])
    """
    from .metrics import dice_score, image_auroc, pixel_auprc, psnr
    from .postprocessing import calibrate_pixel_threshold, foreground_region, paper_postprocess

    say = _say(verbose)
    settings = _resolve_settings(preset, quick, overrides)
    data = _make_data(settings, seed, image_size, return_lesion_free=True)
    memory = os.path.join(out, "cache") if cache else None
    det = _make_detector(settings, seed, device, verbose, memory)
    start = time.perf_counter()
    det.fit(data.X_train)
    fit_s = time.perf_counter() - start
    layout = _Layout([("val", data.X_val), ("cal", data.X_cal)])
    y = data.y_val
    lesion_signal = data.X_val - data.X_val_lesion_free  # (n, c, h, w), zero off the lesions
    lesion_energy = np.square(lesion_signal).sum(axis=1)
    per_slice_auprc = {}

    def score(name, outputs):
        parts = layout.split(outputs)
        val, cal = parts["val"], parts["cal"]
        threshold = calibrate_pixel_threshold(cal.maps, 0.99,
                                              region=foreground_region(data.X_cal))
        masks = paper_postprocess(val.maps, threshold, median_size=None)
        per_slice_auprc[name] = pixel_auprc(y, val.maps, average=None)
        result = {"auprc": float(per_slice_auprc[name].mean()),
                  "auprc_reference_minmax": float(pixel_auprc(y, val.ref_scores)),
                  "dice_healthy_q99": float(dice_score(y, masks))}
        if name != "autoencoder_only":
            diff = per_slice_auprc[name] - per_slice_auprc["autoencoder_only"]
            result["auprc_minus_autoencoder_only"] = {
                "mean": float(diff.mean()), "sem": float(diff.std(ddof=1) / np.sqrt(len(diff)))}
        if val.x_hat is not None:
            error = np.square(data.X_val - val.x_hat).sum(axis=1)
            result["psnr_val"] = float(psnr(data.X_val, val.x_hat))
            result["psnr_healthy_cal"] = float(psnr(data.X_cal, cal.x_hat))
            result["lesion_error_ratio"] = float(error[y].sum() / lesion_energy[y].sum())
            # Share of the lesion signal x - x_free that the reconstruction reproduces
            # (projection over lesion pixels): 1 = lesion copied, 0 = lesion removed.
            retained = ((val.x_hat - data.X_val_lesion_free) * lesion_signal).sum(axis=1)
            result["lesion_retained"] = float(retained[y].sum() / lesion_energy[y].sum())
            result["healthy_residual"] = float(error[~y].mean())
        if val.masked_fraction is not None:
            labels = np.r_[np.ones(len(val.masked_fraction), bool),
                           np.zeros(len(cal.masked_fraction), bool)]
            result["image_auroc_masked_fraction_val_vs_cal"] = float(image_auroc(
                labels, np.r_[val.masked_fraction, cal.masked_fraction]))
            result["masked_fraction_val"] = float(np.mean(val.masked_fraction))
            result["masked_fraction_cal"] = float(np.mean(cal.masked_fraction))
        return result

    scores = {"autoencoder_only": score("autoencoder_only", _reconstruction_outputs(
        layout.X, autoencoder_reconstruction(det, layout.X, seed=seed,
                                             batch_size=settings["batch_size"])))}
    for l_value, p_value in configs:
        name = f"L{int(l_value)}_P{float(p_value):g}"
        scores[name] = score(name, _diffusion_outputs(det, layout.X, l_value, p_value))
        say(f"[validate] L={l_value} P={p_value}: {scores[name]}")
    results = {
        "benchmark": "validate", "preset": preset, "quick": bool(quick), "seed": int(seed),
        "detector": {k: v for k, v in det.get_params().items()
                     if k not in ("memory", "checkpoint_dir", "verbose")},
        "fit_s": fit_s, "history": _history_summary(det.history_),
        "heldout_diffusion_loss": heldout_diffusion_loss(det, data.X_cal, seed=seed),
        "n_val_lesion": int(len(data.X_val)), "n_calibration": int(len(data.X_cal)),
        "scores": scores, "note": _NOT_COMPARABLE + " Validation split only.",
        "per_slice_auprc": {k: _rounded(v) for k, v in per_slice_auprc.items()},
        "load_average": _load_average(),
    }
    os.makedirs(out, exist_ok=True)
    name = f"validate-{tag}.json" if tag else "validate.json"
    with open(os.path.join(out, name), "w") as fh:
        json.dump(results, fh, indent=1)
    say(json.dumps({k: results[k] for k in ("fit_s", "heldout_diffusion_loss", "scores")},
                   indent=1))
    return results


# --------------------------------------------------------------------------- CLI
def _config_pair(text):
    l_text, p_text = text.split(":")
    return int(l_text), float(p_text)


def _box_pair(text):
    p_text, l_text = text.split(":")
    return float(p_text), int(l_text)


def _add_common(parser):
    parser.add_argument("--preset", choices=sorted(BENCHMARK_PRESETS), default="small",
                        help="small: CPU; paper: the paper's networks and recipe (GPU); "
                             "tiny: tests")
    parser.add_argument("--quick", action="store_true",
                        help="fewer iterations and slices and a reduced grid (small: under "
                             "15 min on 2 CPU cores)")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's, i.e. OMP_NUM_THREADS)")
    parser.add_argument("--autoencoder-iterations", type=int, default=None)
    parser.add_argument("--diffusion-iterations", type=int, default=None)
    parser.add_argument("--autoencoder-batch-size", type=int, default=None)
    parser.add_argument("--diffusion-batch-size", type=int, default=None)
    parser.add_argument("--autoencoder-learning-rate", type=float, default=None)
    parser.add_argument("--diffusion-learning-rate", type=float, default=None)
    parser.add_argument("--binarization-weight", type=float, default=None)
    parser.add_argument("--autoencoder-params", type=json.loads, default=None,
                        help='JSON overrides of the autoencoder preset, e.g. '
                             '\'{"latent_channels": 32}\'')
    parser.add_argument("--unet-params", type=json.loads, default=None,
                        help="JSON overrides of the UNet preset")
    parser.add_argument("--n-train", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="inference batch size")
    parser.add_argument("--no-cache", action="store_true",
                        help="do not cache trained networks under OUT/cache")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show training progress bars")


def _overrides(args):
    detector = {name: getattr(args, name) for name in (
        "autoencoder_iterations", "diffusion_iterations", "autoencoder_batch_size",
        "diffusion_batch_size", "autoencoder_learning_rate", "diffusion_learning_rate",
        "binarization_weight", "autoencoder_params", "unet_params")
        if getattr(args, name) is not None}
    overrides = {"detector": detector, "batch_size": args.batch_size}
    if args.n_train is not None:
        overrides["data"] = {"n_train": args.n_train}
    return overrides


def main(argv=None):
    """Command-line entry point (``python -m skberdiff.benchmark --help``).

    Parameters
    ----------
    argv : list of str, default=None
        Arguments; ``None`` reads ``sys.argv``.

    Returns
    -------
    status : int
        0 on success.

    Examples
    --------
    >>> main(["table1", "--preset", "tiny", "--out", "results/tiny", "--quiet"])  # doctest: +SKIP
    0
    """
    parser = argparse.ArgumentParser(prog="python -m skberdiff.benchmark",
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    table = sub.add_parser("table1", help="Table 1 and Figure 3 on the test slices")
    _add_common(table)
    table.add_argument("--noise-level", type=int, default=None, help="L of the masked row")
    table.add_argument("--mask-threshold", type=float, default=None, help="P of the masked row")
    table.add_argument("--noise-levels", type=int, nargs="+", default=None,
                       help="grid of L for Figure 3 (left)")
    table.add_argument("--mask-thresholds", type=float, nargs="+", default=None,
                       help="grid of P for Figure 3 (left)")
    table.add_argument("--box-configs", type=_box_pair, nargs="+", default=None,
                       metavar="P:L", help="(P, L) pairs of Figure 3 (right)")
    table.add_argument("--no-figures", action="store_true")
    validate = sub.add_parser("validate", help="score a training configuration on X_val only")
    _add_common(validate)
    validate.add_argument("--configs", type=_config_pair, nargs="+",
                          default=[(200, 0.5), (200, 0.0)], metavar="L:P")
    validate.add_argument("--tag", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    verbose = 0 if args.quiet else (2 if args.verbose else 1)
    common = dict(preset=args.preset, quick=args.quick, image_size=args.image_size,
                  seed=args.seed, out=args.out, device=args.device, cache=not args.no_cache,
                  verbose=verbose, **_overrides(args))
    if args.command == "table1":
        run_table1(figures=not args.no_figures, noise_level=args.noise_level,
                   mask_threshold=args.mask_threshold, grid_noise_levels=args.noise_levels,
                   grid_mask_thresholds=args.mask_thresholds, box_configs=args.box_configs,
                   **common)
    else:
        run_validation(configs=args.configs, tag=args.tag, **common)
    return 0


if __name__ == "__main__":
    sys.exit(main())

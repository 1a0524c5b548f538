"""Table 1 and Figure 3 of Wolleb et al. (2024) on the offline MNI-derived benchmark.

``python benchmarks/table1.py --preset small --seed 0 --out results/small_seed0`` draws a
new data set and trains new networks for the seed, chooses everything it chooses on the
validation split, then evaluates on the test slices:

1. **Data** (:func:`skberdiff.datasets.make_mni_benchmark`): healthy training slices,
   extra healthy calibration slices never trained on (``X_cal``), validation lesion slices
   (``X_val``, with their lesion-free versions for the regime diagnostics) and test lesion
   and healthy slices.
2. **Fit** one detector (the preset's training settings, the estimator's inference
   defaults) and, for the reference row, train the autoencoder of the x8 preset.
3. **Validation only**: the regime diagnostics (:mod:`skberdiff.diagnostics`), and an
   ``L x P`` grid for each posterior scored by validation pixel AUPRC and Dice and by the
   image AUROC of every image score (validation lesion slices against ``X_cal``); the
   step-skipping setting is the fastest whose validation AUPRC is within 0.01 of the full
   chain.
4. **Test**: rows intensity threshold, autoencoder alone (of the same detector),
   autoencoder alone of the x8 preset, unmasked, masked with each posterior, masked with
   step skipping. Per diseased test slice: Dice (threshold chosen on ``X_val``), pixel
   AUPRC, PSNR; image AUROC of the default image score (diseased against healthy test
   slices); time and memory per image at batch size 1; paired differences.

It writes ``table1.json`` (every per-slice value), ``table1.md`` and figures under ``--out``.
``--validation-only`` stops after step 3 (never touches the test slices). The numbers are
those of a synthetic-lesion benchmark on an MNI152-derived brain; they are not comparable
to the paper's BRATS2020 figures.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    load_average,
    machine_info,
    memory_status,
    rounded,
    say,
    summary,
    write_json,
)

from skberdiff import MaskedBernoulliDiffusionDetector  # noqa: E402
from skberdiff.baselines import IntensityThresholdBaseline  # noqa: E402
from skberdiff.datasets import SIZE_PRESETS, make_mni_benchmark  # noqa: E402
from skberdiff.diagnostics import (  # noqa: E402
    autoencoder_reconstruction,
    regime_report,
)
from skberdiff.diffusion import flip_probability  # noqa: E402
from skberdiff.metrics import (  # noqa: E402
    dice_score,
    image_auroc,
    pixel_auprc,
    psnr,
    select_dice_threshold,
)
from skberdiff.nn import build_autoencoder, build_unet  # noqa: E402
from skberdiff.postprocessing import RECIPES, foreground_region  # noqa: E402
from skberdiff.training import train_autoencoder  # noqa: E402

__all__ = ["BENCHMARK_PRESETS", "run_table1", "format_markdown", "main"]

PAPER_NOISE_LEVELS = (100, 200, 300, 400)
PAPER_MASK_THRESHOLDS = (0.0, 0.4, 0.5, 0.6, 0.7, 0.8)
IMAGE_SCORES = ("masked_fraction", "masked_unflipped_fraction", "denoising_loss",
                "mean_flip_probability", "map_mean", "map_max")

# Everything a run needs besides the seed. "data" goes to make_mni_benchmark; "n_calibration"
# extra healthy slices are generated and never trained on. "detector" holds training-time
# parameters (and, for "tiny", the inference parameters its short schedule needs); the
# inference defaults of the estimator are used otherwise. "reference_autoencoder" is the x8
# autoencoder of the earlier small preset, trained alone for its reference row.
BENCHMARK_PRESETS = {
    "tiny": dict(
        data=dict(size="tiny", n_train=24), n_calibration=8,
        detector=dict(preset="tiny", autoencoder_iterations=30, diffusion_iterations=30,
                      autoencoder_batch_size=8, diffusion_batch_size=8,
                      autoencoder_learning_rate=1e-3, diffusion_learning_rate=5e-4,
                      diffusion_steps=100, noise_level=10),
        reference_autoencoder=dict(preset="tiny", params=dict(width_multipliers=(1, 2, 2, 2)),
                                   iterations=30, batch_size=8, learning_rate=1e-3),
        grid_noise_levels=(5, 10), grid_mask_thresholds=(0.0, 0.5),
        posteriors=("paper", "marginal"), step_counts=(2,), draw_counts=(1, 2), n_timing=1,
        batch_size=16,
        n_qualitative=2,
    ),
    "small": dict(
        data=dict(size="small", n_train=1200), n_calibration=32,
        detector=dict(preset="small", autoencoder_iterations=3000, diffusion_iterations=10000,
                      autoencoder_batch_size=16, diffusion_batch_size=32,
                      autoencoder_learning_rate=1e-3, diffusion_learning_rate=5e-4),
        reference_autoencoder=dict(preset="small-x8", params={}, iterations=2000,
                                   batch_size=16, learning_rate=1e-3),
        grid_noise_levels=(50, 100, 200), grid_mask_thresholds=(0.0, 0.1, 0.2, 0.5),
        posteriors=("paper", "marginal"), step_counts=(50, 20, 10), draw_counts=(1, 4, 8),
        n_timing=4, batch_size=32, n_qualitative=4,
    ),
    # The paper's networks and recipe (Sec. 4): AE batch 6 (lr 4.5e-6 x batch as in the
    # reference), 12k AE and 200k diffusion iterations at batch 32, lr 1e-4. Needs a GPU.
    "paper": dict(
        data=dict(size="default", n_train=2000), n_calibration=50,
        detector=dict(preset="paper", autoencoder_iterations=12_000,
                      diffusion_iterations=200_000, autoencoder_batch_size=6,
                      diffusion_batch_size=32, autoencoder_learning_rate=2.7e-5,
                      diffusion_learning_rate=1e-4),
        reference_autoencoder=None,
        grid_noise_levels=PAPER_NOISE_LEVELS, grid_mask_thresholds=PAPER_MASK_THRESHOLDS,
        posteriors=("paper", "marginal"), step_counts=(100, 50, 20), n_timing=8,
        batch_size=16, n_qualitative=4,
    ),
}
QUICK_OVERRIDES = {
    "tiny": {},
    "small": dict(
        data=dict(n_train=400, n_val_lesion=16, n_test_lesion=32, n_test_healthy=32),
        n_calibration=16,
        detector=dict(autoencoder_iterations=600, diffusion_iterations=1000),
        reference_autoencoder=dict(iterations=400),
        grid_noise_levels=(100, 200), grid_mask_thresholds=(0.0, 0.5), step_counts=(50,),
        n_timing=2,
    ),
    "paper": dict(
        data=dict(n_train=400, n_val_lesion=20, n_test_lesion=40, n_test_healthy=40),
        detector=dict(autoencoder_iterations=2000, diffusion_iterations=10_000),
        grid_noise_levels=(100, 200, 300), grid_mask_thresholds=(0.0, 0.5, 0.7),
    ),
}
NOT_COMPARABLE = ("Synthetic lesions on an MNI152-derived brain (skberdiff.datasets): not "
                  "comparable to the BRATS2020 numbers of Wolleb et al. (2024).")
PAPER = RECIPES["paper"]
REFERENCE = RECIPES["reference"]


# --------------------------------------------------------------------------- settings
def _merge(base, override):
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def resolve_settings(preset, quick=False, overrides=None):
    """The settings of ``preset`` with the quick and explicit overrides applied."""
    if preset not in BENCHMARK_PRESETS:
        raise ValueError(f"preset must be one of {sorted(BENCHMARK_PRESETS)}, got {preset!r}.")
    settings = _merge(BENCHMARK_PRESETS[preset], QUICK_OVERRIDES[preset] if quick else {})
    return _merge(settings, {k: v for k, v in (overrides or {}).items() if v is not None})


def make_data(settings, seed, image_size=None):
    """Benchmark data plus ``X_cal``: healthy slices drawn beyond ``n_train``, never trained on.

    ``make_mni_benchmark`` gives every split its own seed stream, so asking for more training
    slices appends new subjects and leaves validation and test slices unchanged.
    """
    args = dict(settings["data"])
    if image_size is not None:
        args["image_size"] = int(image_size)
    n_train = args.pop("n_train", None) or SIZE_PRESETS[args["size"]]["n_train"]
    n_cal = int(settings["n_calibration"])
    data = make_mni_benchmark(n_train=n_train + n_cal, random_state=seed,
                              return_lesion_free=True, **args)
    data.X_cal = data.X_train[n_train:]
    data.X_train = data.X_train[:n_train]
    return data


def make_detector(settings, seed, device, verbose, memory, **params):
    """The benchmark's detector: preset training settings, estimator inference defaults.

    With a cache folder, training also checkpoints beside it, so an interrupted run
    resumes where it stopped.
    """
    checkpoints = None if memory is None else os.path.join(os.path.dirname(memory),
                                                           "checkpoints")
    return MaskedBernoulliDiffusionDetector(
        **{**settings["detector"], **params}, batch_size=settings["batch_size"], device=device,
        random_state=seed, verbose=1 if verbose > 1 else 0, memory=memory,
        checkpoint_dir=checkpoints)


# --------------------------------------------------------------------------- method outputs
class Outputs:
    """What one method gives for a set of images; ``part`` slices every field.

    ``maps``: the paper recipe's map (``sum_c (x - x_hat)^2``, median 5); ``ref_scores``:
    the reference recipe's per-image min-max scores; ``image_scores``: name -> (n,) array,
    higher = more anomalous.
    """

    def __init__(self, maps, ref_scores, x_hat=None, image_scores=None, seconds=0.0):
        self.maps, self.ref_scores, self.x_hat = maps, ref_scores, x_hat
        self.image_scores = image_scores or {}
        self.seconds = seconds

    @classmethod
    def from_reconstruction(cls, X, x_hat, image_scores=None, seconds=0.0):
        return cls(PAPER.anomaly_map(X, x_hat), REFERENCE.anomaly_map(X, x_hat), x_hat,
                   image_scores, seconds)

    @classmethod
    def from_map(cls, raw_maps, seconds=0.0):
        return cls(PAPER.filter_map(raw_maps), REFERENCE.filter_map(raw_maps), seconds=seconds)

    def part(self, sl):
        return Outputs(self.maps[sl], self.ref_scores[sl],
                       None if self.x_hat is None else self.x_hat[sl],
                       {k: v[sl] for k, v in self.image_scores.items()})


class Layout:
    """Named slices of the concatenation of evaluation splits, run in one pass."""

    def __init__(self, parts):
        self.slices, arrays, start = {}, [], 0
        for name, X in parts:
            self.slices[name] = slice(start, start + len(X))
            arrays.append(X)
            start += len(X)
        self.X = np.concatenate(arrays)

    def split(self, outputs):
        return {name: outputs.part(sl) for name, sl in self.slices.items()}


def diffusion_outputs(det, X, **params):
    """Run the detector with inference parameters ``params`` on ``X``: one pass, all scores."""
    det.set_params(**params)
    start = time.perf_counter()
    result = det.detect(X, ("reconstruction", "latent_anomaly_map", "anomaly_map"))
    seconds = time.perf_counter() - start
    return Outputs.from_reconstruction(X, result.reconstruction, result.image_scores, seconds)


def autoencoder_outputs(det, X):
    start = time.perf_counter()
    x_hat = autoencoder_reconstruction(det, X)
    return Outputs.from_reconstruction(X, x_hat, seconds=time.perf_counter() - start)


# --------------------------------------------------------------------------- metrics
def choose_thresholds(val, cal, data):
    """Pixel thresholds from held-out data only: best validation Dice; healthy q99."""
    t_val, dice_val = select_dice_threshold(val.maps, data.y_val, foreground_region(data.X_val))
    out = {"val": t_val, "val_dice": dice_val}
    if cal is not None:
        out["healthy_q99"] = PAPER.calibrate_threshold(cal.maps, 0.99,
                                                       region=foreground_region(data.X_cal))
    return out


def lesion_metrics(outputs, X, y, thresholds):
    """Per-slice metrics of diseased slices, one array per metric."""
    per_slice = {}
    for name in ("val", "healthy_q99"):
        if name in thresholds:
            per_slice[f"dice_{name}"] = dice_score(y, PAPER.segment(outputs.maps,
                                                                    thresholds[name]),
                                                   average=None)
    per_slice["dice_reference_minmax"] = dice_score(
        y, REFERENCE.segment(outputs.ref_scores, REFERENCE.fixed_threshold), average=None)
    per_slice["auprc"] = pixel_auprc(y, outputs.maps, average=None)
    per_slice["auprc_reference_minmax"] = pixel_auprc(y, outputs.ref_scores, average=None)
    if outputs.x_hat is not None:
        per_slice["psnr"] = psnr(X, outputs.x_hat, average=None)
    return per_slice


def image_aurocs(diseased, healthy):
    """Image AUROC of every image score, diseased against healthy."""
    out = {}
    for name, values in diseased.image_scores.items():
        if name in healthy.image_scores:
            labels = np.r_[np.ones(len(values), bool), np.zeros(len(healthy.image_scores[name]),
                                                                bool)]
            scores = np.r_[values, healthy.image_scores[name]]
            out[name] = float(image_auroc(labels, scores)) if np.ptp(scores) > 0 else 0.5
    return out


def evaluate_on_test(parts, data, image_score):
    """Test metrics of one method with thresholds from validation and calibration data."""
    thresholds = choose_thresholds(parts["val"], parts.get("cal"), data)
    lesion = data.is_anomalous_test
    per_slice = lesion_metrics(parts["test_lesion"], data.X_test[lesion], data.y_test[lesion],
                               thresholds)
    result = {
        "thresholds": {k: float(v) for k, v in thresholds.items()},
        "summary": {k: summary(v) for k, v in per_slice.items()},
        "auprc_pooled": float(pixel_auprc(data.y_test[lesion], parts["test_lesion"].maps,
                                          average="pooled")),
        "per_slice": {k: rounded(v) for k, v in per_slice.items()},
    }
    if parts["test_lesion"].image_scores:
        aurocs = image_aurocs(parts["test_lesion"], parts["test_healthy"])
        result["image_auroc_all_scores"] = aurocs
        result["image_auroc"] = aurocs.get(image_score)
        result["image_score"] = image_score
        result["image_scores_test"] = {
            name: {"diseased": rounded(parts["test_lesion"].image_scores[name], 5),
                   "healthy": rounded(parts["test_healthy"].image_scores[name], 5)}
            for name in dict.fromkeys([image_score, "masked_fraction"])
            if name in parts["test_lesion"].image_scores}
    return result


def validation_scores(parts, data, ae_auprc=None):
    """Validation-only scores of one configuration (lesion ``val`` against healthy ``cal``)."""
    val = parts["val"]
    auprc = pixel_auprc(data.y_val, val.maps, average=None)
    _, dice = select_dice_threshold(val.maps, data.y_val, foreground_region(data.X_val))
    out = {"auprc": float(auprc.mean()), "dice_at_best_threshold": dice,
           "image_auroc": image_aurocs(val, parts["cal"])}
    if ae_auprc is not None:
        diff = auprc - ae_auprc
        out["auprc_minus_autoencoder"] = {"mean": float(diff.mean()),
                                          "sem": float(diff.std(ddof=1) / np.sqrt(len(diff)))}
    if val.x_hat is not None:
        out["psnr_cal"] = float(psnr(data.X_cal, parts["cal"].x_hat))
    return out, auprc


# --------------------------------------------------------------------------- cost
def _run_once(kind, obj, X, params):
    if kind == "diffusion":
        obj.set_params(**params, batch_size=1)
        obj.detect(X, ("reconstruction",))
    elif kind == "autoencoder":
        autoencoder_reconstruction(obj, X)
    elif kind == "baseline":
        obj.anomaly_map(X)
    elif kind == "reference_loop":
        from reference_loop import reference_restore

        reference_restore(obj.autoencoder_, obj.diffusion_model_, torch.from_numpy(X),
                          schedule=obj.schedule_, noise_level=params["noise_level"],
                          mask_threshold=params["mask_threshold"], final_step="paper",
                          sampler="binomial", device=next(obj.autoencoder_.parameters()).device)


def memory_probe(path):
    """Child side of the CPU memory measurement: print the peak RSS growth as JSON.

    A long-running process keeps freed memory resident, so its RSS says little about what
    one image needs; a fresh process that has loaded the model does.
    """
    import joblib

    kind, obj, X, params, threads = joblib.load(path)
    torch.set_num_threads(threads)
    before = memory_status()
    for i in range(len(X)):
        _run_once(kind, obj, X[i:i + 1], params)
    after = memory_status()
    print(json.dumps({"peak_rss_growth": None if before is None or after is None
                      else after[1] - before[0]}))


def _cpu_peak_memory(kind, obj, X, params, workdir):
    """Peak RSS growth measured by :func:`memory_probe` in a child; (bytes or None, error)."""
    import joblib

    path = os.path.join(workdir, "memory_probe.joblib")
    joblib.dump((kind, obj, X, params, torch.get_num_threads()), path)
    here = os.path.dirname(os.path.abspath(__file__))
    code = (f"import sys; sys.path.insert(0, {here!r}); from table1 import memory_probe; "
            "memory_probe(sys.argv[1])")
    try:
        result = subprocess.run([sys.executable, "-c", code, path], capture_output=True,
                                text=True, timeout=3600)
        value = json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_growth"]
        if value is None:
            return None, "no /proc/self/status on this platform"
        return int(max(value, 0)), None
    except (ValueError, IndexError, KeyError, subprocess.SubprocessError) as exc:
        return None, repr(exc)[:300]
    finally:
        os.remove(path)


def measure_per_image(kind, obj, X, device, workdir, params=None, memory=True):
    """Seconds and peak memory per image at batch size 1 (after one warm-up image)."""
    params = params or {}
    _run_once(kind, obj, X[:1], params)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    seconds = []
    for i in range(len(X)):
        start = time.perf_counter()
        _run_once(kind, obj, X[i:i + 1], params)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    if device.type == "cuda":
        memory = {"peak_memory_bytes": int(torch.cuda.max_memory_allocated(device)),
                  "memory_kind": "torch.cuda.max_memory_allocated, batch 1 (weights included)"}
    elif not memory:
        memory = {"peak_memory_bytes": None, "memory_kind": "not measured"}
    else:
        peak, error = _cpu_peak_memory(kind, obj, X, params, workdir)
        memory = {"peak_memory_bytes": peak,
                  "memory_kind": "CPU: peak RSS growth of a fresh process running the same "
                                 "images at batch 1 after loading the model (weights "
                                 "excluded)"}
        if error is not None:
            memory["memory_error"] = error
    return {"time_per_image_s": summary(seconds), "n_images_timed": len(X), **memory}


# --------------------------------------------------------------------------- reference AE
def _train_autoencoder_alone(X_train, spec, seed, device):
    """Weights (CPU) of an autoencoder trained alone on ``X_train`` (cacheable).

    ``spec``: ``preset``, ``params`` (overrides), ``iterations``, ``batch_size``,
    ``learning_rate``.
    """
    ae = build_autoencoder(spec["preset"], X_train.shape[1], seed=seed,
                           **spec.get("params", {}))
    result = train_autoencoder(ae, X_train, n_iterations=spec["iterations"],
                               batch_size=spec["batch_size"],
                               learning_rate=spec["learning_rate"], device=device,
                               seed=seed, verbose=0)
    return result.inference_model.config, {
        k: v.detach().cpu() for k, v in result.inference_model.state_dict().items()}


def autoencoder_alone_detector(X_train, spec, seed, device, *, memory=None, batch_size=32):
    """A detector around an autoencoder trained alone (only encode/decode are meant to run).

    With ``memory`` (a folder) the training is cached by images, ``spec`` and seed.
    """
    from joblib import Memory

    from skberdiff.nn import BinaryAutoencoder

    train = Memory(memory, verbose=0).cache(_train_autoencoder_alone, ignore=["device"])
    config, state = train(X_train, spec, seed, str(device))
    ae = BinaryAutoencoder(**config)
    ae.load_state_dict(state)
    # The UNet is never run: only encode/decode are used.
    unet = build_unet("tiny", ae.latent_channels, seed=seed, channel_multipliers=(1,))
    return MaskedBernoulliDiffusionDetector.from_networks(
        ae.eval(), unet, spatial_shape=X_train.shape[2:], seed=seed, device=str(device),
        batch_size=batch_size)


def reference_autoencoder_detector(settings, data, seed, device, memory=None):
    """A detector around the x8 autoencoder of the earlier small preset, trained alone."""
    return autoencoder_alone_detector(data.X_train, settings["reference_autoencoder"], seed,
                                      device, memory=memory, batch_size=settings["batch_size"])


# --------------------------------------------------------------------------- main run
def run_table1(*, preset="small", quick=False, image_size=None, seed=0, out="results",
               device="auto", figures=True, cache=True, validation_only=False,
               fit_only=False, measure_memory=True, verbose=1, **overrides):
    """Fit, choose on validation data, evaluate every method on the same test slices.

    Parameters
    ----------
    preset : {"tiny", "small", "paper"}, default="small"
        Settings from :data:`BENCHMARK_PRESETS` (``"paper"`` needs a GPU).
    quick : bool, default=False
        Fewer iterations and slices, a reduced grid.
    image_size : int, default=None
        Override the data preset's image size.
    seed : int, default=0
        Seed of data and networks.
    out : str, default="results"
        Output directory.
    device : str, default="auto"
        Torch device.
    figures : bool, default=True
        Write the PNG figures (needs matplotlib).
    cache : bool, default=True
        Cache the trained networks under ``out/cache``.
    validation_only : bool, default=False
        Stop after the validation grid: no test slice is evaluated.
    fit_only : bool, default=False
        Train (caching the networks under ``out/cache``) and return the fitted detector
        without evaluating anything.
    measure_memory : bool, default=True
        Measure the CPU peak memory per image in a child process (seconds each).
    verbose : int, default=1
        0 silent, 1 progress lines, 2 also training progress bars.
    **overrides
        Settings to override (see :data:`BENCHMARK_PRESETS`).

    Returns
    -------
    results : dict
        What ``table1.json`` holds.
    """
    from skberdiff._device import resolve_device

    log = say(verbose)
    started = time.perf_counter()
    settings = resolve_settings(preset, quick, overrides)
    run_device = resolve_device(device, fallback=True)
    os.makedirs(out, exist_ok=True)
    timings = {}
    results = {"benchmark": "table1", "note": NOT_COMPARABLE,
               "machine": dict(machine_info(run_device), load_average_start=load_average())}

    start = time.perf_counter()
    data = make_data(settings, seed, image_size)
    timings["data_s"] = time.perf_counter() - start
    lesion = data.is_anomalous_test
    X_lesion, X_healthy = data.X_test[lesion], data.X_test[~lesion]
    log(f"[table1] data: {len(data.X_train)} healthy train, {len(data.X_cal)} healthy "
        f"calibration, {len(data.X_val)} lesion val, {len(X_lesion)} lesion + "
        f"{len(X_healthy)} healthy test, {data.X_train.shape[1]}x{data.X_train.shape[-1]}^2")

    memory = os.path.join(out, "cache") if cache else None
    det = make_detector(settings, seed, str(run_device), verbose, memory)
    start = time.perf_counter()
    det.fit(data.X_train)
    timings["fit_s"] = time.perf_counter() - start
    defaults = {k: det.get_params()[k] for k in ("noise_level", "mask_threshold", "posterior",
                                                  "image_score", "n_steps", "n_draws")}
    L, P = int(defaults["noise_level"]), float(defaults["mask_threshold"])
    log(f"[table1] fit in {timings['fit_s']:.0f} s ({det.n_train_samples_} slices trained "
        f"on); defaults {defaults}")
    if fit_only:
        write_json({"fit_s": timings["fit_s"], "history": det.history_, "seed": int(seed),
                    "preset": preset, "machine": results["machine"]},
                   os.path.join(out, "fit.json"))
        return det

    # ---------------------------------------------------------------- validation only
    start = time.perf_counter()
    report = regime_report(det, data.X_cal, data.X_val, data.y_val,
                           X_lesion_free=data.X_val_lesion_free)
    log(f"[table1] regime: retention {report['lesion_retention']:.3f}, AE PSNR "
        f"{report['autoencoder_psnr']:.2f} dB, held-out loss "
        f"{report['heldout_diffusion_loss']['model_bits']:.4f} bits (content-blind "
        f"{report['heldout_diffusion_loss']['content_blind_bits']:.4f})")
    val_layout = Layout([("val", data.X_val), ("cal", data.X_cal)])
    ae_val = val_layout.split(autoencoder_outputs(det, val_layout.X))
    ae_val_scores, ae_val_auprc = validation_scores(ae_val, data)
    grid = {"noise_levels": sorted({int(v) for v in settings["grid_noise_levels"]} | {L}),
            "mask_thresholds": sorted({float(v) for v in settings["grid_mask_thresholds"]}
                                      | {P, 0.0}),
            "posteriors": list(settings["posteriors"]), "n_draws": 1, "cells": []}
    # Cells of an earlier validation run of the same data and networks are reused: they do
    # not depend on the estimator's defaults (one draw each).
    earlier = _earlier_cells(out, preset, seed, quick, det)
    for posterior in grid["posteriors"]:
        for l_value in grid["noise_levels"]:
            for p_value in grid["mask_thresholds"]:
                cell = earlier.get((posterior, l_value, p_value))
                if cell is None:
                    outputs = diffusion_outputs(det, val_layout.X, noise_level=l_value,
                                                mask_threshold=p_value, posterior=posterior,
                                                n_steps=None, n_draws=1)
                    scores, _ = validation_scores(val_layout.split(outputs), data,
                                                  ae_val_auprc)
                    cell = {"posterior": posterior, "noise_level": l_value,
                            "mask_threshold": p_value,
                            "seconds_per_image": outputs.seconds / len(val_layout.X), **scores}
                grid["cells"].append(cell)
                log(f"[table1] val {posterior:8s} L={l_value:3d} P={p_value:.1f}: AUPRC "
                    f"{cell['auprc']:.3f} (AE {ae_val_scores['auprc']:.3f}), image AUROC "
                    + ", ".join(f"{k} {v:.2f}" for k, v in cell["image_auroc"].items()))
    best = max(grid["cells"], key=lambda c: c["auprc"])
    grid["best_by_validation_auprc"] = {k: best[k] for k in ("posterior", "noise_level",
                                                            "mask_threshold", "auprc")}
    score_table = {f"{c['posterior']}": {} for c in grid["cells"]}
    for c in grid["cells"]:
        if (c["noise_level"], c["mask_threshold"]) == (L, P):
            score_table[c["posterior"]] = c["image_auroc"]
    # Averaged restoration draws at the default setting (validation only).
    # One draw is the grid cell itself (same seeds): reused, not run again.
    draws = []
    for n_draws in sorted({int(v) for v in settings.get("draw_counts", ())}
                          | {int(defaults["n_draws"])}):
        if n_draws == 1:
            scores = next(c for c in grid["cells"] if (c["posterior"], c["noise_level"],
                                                        c["mask_threshold"])
                          == (defaults["posterior"], L, P))
        else:
            outputs = diffusion_outputs(det, val_layout.X, noise_level=L, mask_threshold=P,
                                        posterior=defaults["posterior"], n_steps=None,
                                        n_draws=n_draws)
            scores, _ = validation_scores(val_layout.split(outputs), data, ae_val_auprc)
            scores = dict(scores, seconds_per_image=outputs.seconds / len(val_layout.X))
        draws.append({"n_draws": n_draws, **{k: scores[k] for k in (
            "auprc", "auprc_minus_autoencoder", "image_auroc", "seconds_per_image")}})
        log(f"[table1] val n_draws={n_draws}: AUPRC {scores['auprc']:.3f}")
    # Step skipping at the default setting: the fastest within 0.01 validation AUPRC.
    full = next(d for d in draws if d["n_draws"] == int(defaults["n_draws"]))
    skipping = [{"n_steps": L, "auprc": full["auprc"],
                 "seconds_per_image": full["seconds_per_image"]}]
    for n_steps in sorted({int(v) for v in settings["step_counts"] if int(v) < L},
                          reverse=True):
        outputs = diffusion_outputs(det, val_layout.X, noise_level=L, mask_threshold=P,
                                    posterior=defaults["posterior"], n_steps=n_steps,
                                    n_draws=defaults["n_draws"])
        scores, _ = validation_scores(val_layout.split(outputs), data)
        skipping.append({"n_steps": n_steps, "auprc": scores["auprc"],
                         "seconds_per_image": outputs.seconds / len(val_layout.X)})
        log(f"[table1] val n_steps={n_steps}: AUPRC {scores['auprc']:.3f}")
    det.set_params(n_draws=defaults["n_draws"])
    eligible = [s for s in skipping if s["auprc"] >= full["auprc"] - 0.01]
    chosen_steps = min(eligible, key=lambda s: s["n_steps"])["n_steps"]
    timings["validation_s"] = time.perf_counter() - start
    results.update({
        "config": {
            "preset": preset, "quick": bool(quick), "seed": int(seed), "defaults": defaults,
            "detector": {k: v for k, v in det.get_params().items()
                         if k not in ("memory", "checkpoint_dir", "verbose")},
            "reference_autoencoder": settings["reference_autoencoder"],
            "threshold_protocols": {
                "val": "maximises mean per-image Dice on the validation lesion slices X_val "
                       "(quantiles of X_val brain-pixel scores), per method",
                "healthy_q99": "99th percentile of brain-pixel scores of healthy calibration "
                               "slices never trained on",
                "reference_minmax": "reference code: per-channel median 5, 1-99 percentile "
                                    "clip, per-image min-max, > 0.5, components <= 15 px "
                                    "(8-connected, holes filled) removed",
            },
        },
        "data": {
            "image_size": int(data.X_train.shape[-1]), "n_train": int(len(data.X_train)),
            "n_calibration": int(len(data.X_cal)), "n_val_lesion": int(len(data.X_val)),
            "n_test_lesion": int(lesion.sum()), "n_test_healthy": int((~lesion).sum()),
            "n_trained_on": int(det.n_train_samples_), "note": NOT_COMPARABLE,
        },
        "training": {"fit_s": timings["fit_s"], "history": det.history_,
                     "regime": report},
        "validation": {"autoencoder_only": ae_val_scores, "grid": grid,
                       "image_auroc_by_posterior_at_default": score_table,
                       "step_skipping": skipping, "step_skipping_chosen": chosen_steps,
                       "draws": draws},
    })
    if validation_only:
        return _finish(results, out, timings, started, figures, log, det=det)

    # ---------------------------------------------------------------- test
    start = time.perf_counter()
    layout = Layout([("val", data.X_val), ("cal", data.X_cal), ("test_lesion", X_lesion),
                     ("test_healthy", X_healthy)])
    methods, qualitative = {}, {}
    configs = {"unmasked": dict(mask_threshold=0.0, posterior=defaults["posterior"])}
    for posterior in settings["posteriors"]:
        configs[f"masked_{posterior}_posterior"] = dict(mask_threshold=P, posterior=posterior)
    if chosen_steps != L:
        configs["masked_step_skipping"] = dict(mask_threshold=P,
                                               posterior=defaults["posterior"],
                                               n_steps=chosen_steps)
    for name, params in configs.items():
        params = {"noise_level": L, "n_steps": None, **params}
        outputs = diffusion_outputs(det, layout.X, **params)
        parts = layout.split(outputs)
        methods[name] = dict(evaluate_on_test(parts, data, defaults["image_score"]),
                             **params, seconds_per_image_batched=outputs.seconds / len(layout.X))
        qualitative[name] = parts["test_lesion"]
        log(f"[table1] test {name}: AUPRC {methods[name]['summary']['auprc']['mean']:.3f}, "
            f"Dice {methods[name]['summary']['dice_val']['mean']:.3f}, image AUROC "
            f"{methods[name]['image_auroc']:.3f}")
    default_name = f"masked_{defaults['posterior']}_posterior"
    parts = layout.split(autoencoder_outputs(det, layout.X))
    methods["autoencoder_only"] = evaluate_on_test(parts, data, defaults["image_score"])
    qualitative["autoencoder_only"] = parts["test_lesion"]
    det_x8 = None
    if settings.get("reference_autoencoder"):
        t0 = time.perf_counter()
        det_x8 = reference_autoencoder_detector(settings, data, seed, run_device, memory)
        timings["reference_autoencoder_fit_s"] = time.perf_counter() - t0
        parts = layout.split(autoencoder_outputs(det_x8, layout.X))
        methods["autoencoder_only_x8"] = evaluate_on_test(parts, data, defaults["image_score"])
    baseline = IntensityThresholdBaseline().fit(data.X_val, data.y_val, X_healthy=data.X_train)
    t0 = time.perf_counter()
    raw = baseline.anomaly_map(layout.X)
    parts = layout.split(Outputs.from_map(raw, seconds=time.perf_counter() - t0))
    methods["intensity_threshold"] = dict(
        evaluate_on_test(parts, data, defaults["image_score"]),
        channel=data.channel_names[baseline.channel_], polarity=baseline.polarity_)
    for name in methods:
        log(f"[table1] test {name}: AUPRC {methods[name]['summary']['auprc']['mean']:.3f}")
    timings["test_s"] = time.perf_counter() - start

    # Time and memory per image at batch size 1, as the paper measures them.
    start = time.perf_counter()
    X_timing = X_lesion[:max(1, int(settings["n_timing"]))]
    tasks = {name: ("diffusion", det, {k: methods[name][k] for k in
                                       ("noise_level", "mask_threshold", "posterior",
                                        "n_steps")}) for name in configs}
    tasks["autoencoder_only"] = ("autoencoder", det, {})
    if det_x8 is not None:
        tasks["autoencoder_only_x8"] = ("autoencoder", det_x8, {})
    tasks["intensity_threshold"] = ("baseline", baseline, {})
    tasks["reference_loop"] = ("reference_loop", det, {"noise_level": L, "mask_threshold": P})
    costs = {name: measure_per_image(kind, obj, X_timing, run_device, out, params,
                                     memory=measure_memory)
             for name, (kind, obj, params) in tasks.items()}
    det.set_params(batch_size=settings["batch_size"], **defaults)
    for name, cost in costs.items():
        if name in methods:
            methods[name]["cost"] = cost
    reference_s = costs["reference_loop"]["time_per_image_s"]["mean"]
    for name in configs:
        methods[name]["speedup_vs_reference_loop_batch1"] = (
            reference_s / methods[name]["cost"]["time_per_image_s"]["mean"])
    methods["masked"] = dict(methods[default_name], alias_of=default_name)
    timings["cost_s"] = time.perf_counter() - start

    results["methods"] = methods
    results["reference_loop"] = {"cost": costs["reference_loop"],
                                 "note": "benchmarks/reference_loop.py at batch 1, full L "
                                         "steps, paper posterior, same networks"}
    results["paired_differences"] = paired_differences(methods)
    results["injected_flip_fraction"] = float(flip_probability(float(det.schedule_.alpha_bar[L])))
    if figures:
        results["figures"] = _figures(results, data, qualitative, det, out, L, P)
    return _finish(results, out, timings, started, figures, log)


def paired_differences(methods, reference="masked"):
    """Mean and standard error over test slices of ``reference`` minus each method."""
    out = {}
    for name, method in methods.items():
        if name == reference or method.get("alias_of") or name == methods[reference].get(
                "alias_of"):
            continue
        out[name] = {}
        for metric in ("dice_val", "auprc"):
            diff = (np.asarray(methods[reference]["per_slice"][metric])
                    - np.asarray(method["per_slice"][metric]))
            sem = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
            out[name][metric] = {"mean": float(diff.mean()), "sem": sem}
    return out


def _earlier_cells(out, preset, seed, quick, det):
    """Grid cells of an earlier run in ``out`` on the same data and networks, by key."""
    cells = {}
    for name in ("validation.json", "table1.json"):
        path = os.path.join(out, name)
        if not os.path.exists(path):
            continue
        with open(path) as fh:
            earlier = json.load(fh)
        cfg = earlier.get("config", {})
        same = (cfg.get("preset") == preset and cfg.get("seed") == seed
                and cfg.get("quick") == bool(quick)
                and earlier.get("training", {}).get("history") == json.loads(
                    json.dumps(det.history_)))
        if same and earlier.get("validation", {}).get("grid", {}).get("n_draws", 1) == 1:
            for cell in earlier["validation"]["grid"]["cells"]:
                cells[(cell["posterior"], cell["noise_level"], cell["mask_threshold"])] = cell
    return cells


def _finish(results, out, timings, started, figures, log, det=None):
    timings["total_s"] = time.perf_counter() - started
    results["timings"] = timings
    results["machine"]["load_average_end"] = load_average()
    if figures and det is not None and "figures" not in results:
        results["figures"] = _validation_figures(results, det, out)
    name = "table1.json" if "methods" in results else "validation.json"
    write_json(results, os.path.join(out, name))
    markdown = format_markdown(results)
    with open(os.path.join(out, name.replace(".json", ".md")), "w") as fh:
        fh.write(markdown)
    log(markdown)
    log(f"[table1] wrote {os.path.join(out, name)} in {timings['total_s']:.0f} s")
    return results


# --------------------------------------------------------------------------- figures
def _grid_results(grid, posterior, metric):
    cells = [c for c in grid["cells"] if c["posterior"] == posterior]
    return {"params": [{"noise_level": c["noise_level"], "mask_threshold": c["mask_threshold"]}
                       for c in cells],
            "mean_test_score": [metric(c) for c in cells]}


def _validation_figures(results, det, out):
    from skberdiff.plotting import plot_parameter_grid, plot_training_history

    fig_dir = os.path.join(out, "figures")
    os.makedirs(fig_dir, exist_ok=True)
    grid = results["validation"]["grid"]
    paths = {}
    for posterior in grid["posteriors"]:
        fig = plot_parameter_grid(
            _grid_results(grid, posterior, lambda c: c["auprc"]),
            title=f"validation pixel AUPRC, {posterior} posterior",
            column_labels={0.0: "0 (no mask)"})
        paths[f"fig3_left_{posterior}"] = os.path.join(fig_dir, f"fig3_left_{posterior}.png")
        fig.savefig(paths[f"fig3_left_{posterior}"], dpi=90)
    fig = plot_training_history(det.history_, title="training history (validation_loss: "
                                                    "held-out calibration images)")
    paths["training_history"] = os.path.join(fig_dir, "training_history.png")
    fig.savefig(paths["training_history"], dpi=90)
    return paths


def _figures(results, data, qualitative, det, out, L, P):
    from skberdiff.plotting import plot_image_scores, plot_qualitative

    paths = _validation_figures(results, det, out)
    fig_dir = os.path.join(out, "figures")
    masked = results["methods"]["masked"]
    groups, lines = {}, {}
    for name in dict.fromkeys(["masked_fraction", masked["image_score"]]):
        scores = masked["image_scores_test"][name]
        label = f"{name}\nL={L}, P={P:g}"
        groups[label] = (scores["healthy"], scores["diseased"])
        if name == "masked_fraction" and det.forward_process == "paper":
            lines[label] = results["injected_flip_fraction"]
    fig = plot_image_scores(groups, ylabel="image anomaly score (test slices)",
                            reference_lines=lines,
                            title="Figure 3 (right): paper's masked fraction and the default "
                                  "score")
    paths["fig3_right"] = os.path.join(fig_dir, "fig3_right_image_scores.png")
    fig.savefig(paths["fig3_right"], dpi=90)
    lesion = data.is_anomalous_test
    X, y = data.X_test[lesion], data.y_test[lesion]
    rows = np.linspace(0, len(X) - 1, min(int(len(X)), 6)).round().astype(int)
    thr = masked["thresholds"]["val"]
    shown = qualitative[masked["alias_of"]]
    fig = plot_qualitative(
        X, {"masked": shown.x_hat, "AE alone": qualitative["autoencoder_only"].x_hat},
        shown.maps, PAPER.segment(shown.maps, thr), y, channel=-1, channel_name="FLAIR-like",
        rows=rows, title="Test slices at evenly spaced indices (not chosen); synthetic lesions "
                         "on an MNI152-derived brain")
    paths["qualitative"] = os.path.join(fig_dir, "qualitative.png")
    fig.savefig(paths["qualitative"], dpi=80)
    return paths


# --------------------------------------------------------------------------- markdown
ROWS = (
    ("intensity_threshold", "Intensity threshold (Meissen et al.)", "-"),
    ("autoencoder_only_x8", "Autoencoder alone, x8 reference preset", "-"),
    ("autoencoder_only", "Autoencoder alone (same detector)", "-"),
    ("unmasked", "Ours (unmasked, P=0)", "Bernoulli"),
    ("masked_paper_posterior", "Ours (masked), paper posterior", "Bernoulli"),
    ("masked_marginal_posterior", "Ours (masked), marginal posterior", "Bernoulli"),
    ("masked_step_skipping", "Ours (masked), step skipping", "Bernoulli"),
)


def _fmt(stats, digits=3):
    if stats is None:
        return "-"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits - 1}f}"


def _fmt_bytes(value):
    if value is None:
        return "-"
    if value < 2 ** 30:
        return f"{value / 2 ** 20:.{1 if value < 10 * 2 ** 20 else 0}f} MB"
    return f"{value / 2 ** 30:.2f} GB"


def _speedup_note(results):
    """`` (... x faster than the reference loop)`` when the test timings exist."""
    skipping = results.get("methods", {}).get("masked_step_skipping")
    if not skipping:
        return ""
    return (f" (test timing at batch 1: {skipping['speedup_vs_reference_loop_batch1']:.1f}x "
            "faster than benchmarks/reference_loop.py)")


def format_markdown(results):
    """Markdown tables of a run (Table 1, paired differences, validation grid)."""
    cfg, lines = results["config"], []
    d = results["config"]["defaults"]
    lines.append(f"Preset `{cfg['preset']}`{' (quick)' if cfg['quick'] else ''}, seed "
                 f"{cfg['seed']}, {results['data']['image_size']}px, "
                 f"{results['data']['n_trained_on']} slices trained on; defaults L="
                 f"{d['noise_level']}, P={d['mask_threshold']}, posterior={d['posterior']}, "
                 f"image score={d['image_score']}. {results['note']}")
    reg = results["training"]["regime"]
    hl = reg["heldout_diffusion_loss"]
    lines += ["", f"Regime (validation): lesion retention {reg['lesion_retention']:.3f}, "
              f"autoencoder PSNR on healthy slices {reg['autoencoder_psnr']:.2f} dB, held-out "
              f"diffusion loss {hl['model_bits']:.4f} bits (content-blind "
              f"{hl['content_blind_bits']:.4f})."]
    if "methods" in results:
        methods = results["methods"]
        lines += ["", "| Method | Noise | Dice ↑ | AUPRC ↑ | PSNR ↑ | image AUROC ↑ | Time ↓ "
                      "| Mem ↓ |", "|---|---|---|---|---|---|---|---|"]
        for key, label, noise in ROWS:
            if key not in methods:
                continue
            m, s = methods[key], methods[key]["summary"]
            extra = ""
            if "noise_level" in m:
                extra = f", L={m['noise_level']}" + (f", n_steps={m['n_steps']}"
                                                     if m.get("n_steps") else "")
            t = m.get("cost", {}).get("time_per_image_s")
            auroc = m.get("image_auroc")
            lines.append(
                f"| {label}{extra} | {noise} | {_fmt(s.get('dice_val'))} | "
                f"{_fmt(s.get('auprc'))} | {_fmt(s.get('psnr'), 2) if 'psnr' in s else '-'} | "
                f"{'-' if auroc is None else f'{auroc:.3f}'} | "
                f"{'-' if t is None else format(t['mean'], '.3g') + ' s'} | "
                f"{_fmt_bytes(m.get('cost', {}).get('peak_memory_bytes'))} |")
        lines += ["", "Paired differences on the same diseased test slices, default masked "
                      f"({methods['masked']['alias_of']}) minus each method (mean ± standard "
                      "error; positive = masked better):", "",
                  "| Masked minus | Dice | AUPRC |", "|---|---|---|"]
        for name, diff in results["paired_differences"].items():
            lines.append(f"| {name} | {diff['dice_val']['mean']:+.3f} ± "
                         f"{diff['dice_val']['sem']:.3f} | {diff['auprc']['mean']:+.3f} ± "
                         f"{diff['auprc']['sem']:.3f} |")
    grid = results["validation"]["grid"]
    lines += ["", "Validation grid (never the test slices): pixel AUPRC of the validation "
                  f"lesion slices; the autoencoder alone scores "
                  f"{results['validation']['autoencoder_only']['auprc']:.3f}.", ""]
    for posterior in grid["posteriors"]:
        cells = {(c["noise_level"], c["mask_threshold"]): c for c in grid["cells"]
                 if c["posterior"] == posterior}
        lines += [f"{posterior} posterior:", "",
                  "| L \\ P | " + " | ".join(f"{p:g}" for p in grid["mask_thresholds"]) + " |",
                  "|---" * (len(grid["mask_thresholds"]) + 1) + "|"]
        for l_value in grid["noise_levels"]:
            lines.append(f"| {l_value} | " + " | ".join(
                f"{cells[(l_value, p)]['auprc']:.3f}" for p in grid["mask_thresholds"]) + " |")
        lines.append("")
    table = results["validation"]["image_auroc_by_posterior_at_default"]
    names = [n for n in IMAGE_SCORES if any(n in v for v in table.values())]
    lines += [f"Image AUROC on validation (lesion val vs healthy calibration) at L="
              f"{d['noise_level']}, P={d['mask_threshold']}:", "",
              "| posterior | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for posterior, values in table.items():
        lines.append(f"| {posterior} | " + " | ".join(
            f"{values[n]:.3f}" if n in values else "-" for n in names) + " |")
    lines += ["", "Step skipping (validation AUPRC): " + ", ".join(
        f"n_steps={s['n_steps']}: {s['auprc']:.3f}" for s in
        results["validation"]["step_skipping"]) + f"; chosen "
        f"{results['validation']['step_skipping_chosen']}" + _speedup_note(results) + "."]
    if results["validation"].get("draws"):
        lines += ["", "Averaged restoration draws at the default setting (validation AUPRC, "
                      "minus the autoencoder alone): " + ", ".join(
                          f"n_draws={d['n_draws']}: {d['auprc']:.3f} "
                          f"({d['auprc_minus_autoencoder']['mean']:+.3f} ± "
                          f"{d['auprc_minus_autoencoder']['sem']:.3f})"
                          for d in results["validation"]["draws"]) + "."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- CLI
def main(argv=None):
    """Command-line entry point (``python benchmarks/table1.py --help``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(BENCHMARK_PRESETS), default="small")
    parser.add_argument("--quick", action="store_true",
                        help="fewer iterations and slices, reduced grid")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's, i.e. OMP_NUM_THREADS)")
    parser.add_argument("--n-train", type=int, default=None)
    parser.add_argument("--autoencoder-iterations", type=int, default=None)
    parser.add_argument("--diffusion-iterations", type=int, default=None)
    parser.add_argument("--detector", type=json.loads, default=None,
                        help='JSON overrides of detector parameters, e.g. \'{"unet_params": '
                             '{"model_channels": 32}}\'')
    parser.add_argument("--validation-only", action="store_true",
                        help="stop after the validation grid (no test slice is evaluated)")
    parser.add_argument("--fit-only", action="store_true",
                        help="train (and cache under OUT/cache) and stop: a later run with "
                             "the same training settings only evaluates")
    parser.add_argument("--no-figures", action="store_true")
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show training progress bars")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    detector = dict(args.detector or {})
    for name in ("autoencoder_iterations", "diffusion_iterations"):
        if getattr(args, name) is not None:
            detector[name] = getattr(args, name)
    overrides = {"detector": detector}
    if args.n_train is not None:
        overrides["data"] = {"n_train": args.n_train}
    run_table1(preset=args.preset, quick=args.quick, image_size=args.image_size,
               seed=args.seed, out=args.out, device=args.device, figures=not args.no_figures,
               cache=not args.no_cache, validation_only=args.validation_only,
               fit_only=args.fit_only,
               verbose=0 if args.quiet else (2 if args.verbose else 1), **overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())

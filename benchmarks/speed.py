"""Speed of the batched sampler against the reference-code-style loop, in the same run.

The per-image work timed on both sides is the full inference: encode, ``L`` denoising steps
with the mask, decode. The fast side is the estimator itself
(``MaskedBernoulliDiffusionDetector.reconstruct``-equivalent ``detect(X, ("reconstruction",))``:
batched, per-sample masks, counter-based noise, ``inference_mode``); the reference side is
``benchmarks/reference_loop.py`` (one image at a time, per-step schedule uploads and host
checks). Both use the same randomly initialised networks: speed does not depend on training
(the zero-initialised output convolutions are re-initialised so that the mask logic does
real work).

Configurations:

- CPU: ``small`` preset, 4x64x64 images (the ``make_mni_benchmark(size="small")`` shape),
  ``L=200``, a batch of 16 images; fp32.
- CUDA (when present): ``paper`` preset, 4x256x256 images, ``L=200``, batch sizes 1, 16 and
  64, precisions ``fp32`` (TF32 off for matmuls and cuDNN), ``tf32`` (TF32 on) and
  ``bf16`` (autocast).

Repeats alternate reference and fast runs so that load from other processes affects both;
the medians are reported with the load average. Peak memory per image:

- CPU: the process's resident-set high-water mark ``VmHWM`` from ``/proc/self/status``, reset
  before each run by writing ``5`` to ``/proc/self/clear_refs``, minus the resident set at the
  start of the run, divided by the images processed at once (1 for the reference). Memory
  that the allocator kept from an earlier run is reused without raising the resident set,
  so this is a lower bound. ``tracemalloc`` does not see torch's allocations.
- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the
  memory allocated before the run (weights, inputs), per image; the total peak (weights
  included) and the reserved peak are reported too.

Usage::

    python benchmarks/speed.py --out results/speed.json            # CPU (+ CUDA if present)
    python benchmarks/speed.py --quick --out /tmp/speed.json        # seconds, for tests
    python benchmarks/speed.py --device cuda --precisions fp32 tf32 bf16 --batch-sizes 1 16 64
"""

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import load_average, machine_info  # noqa: E402
from reference_loop import reference_restore  # noqa: E402

from skberdiff import MaskedBernoulliDiffusionDetector  # noqa: E402
from skberdiff.diffusion import make_schedule  # noqa: E402
from skberdiff.nn import build_autoencoder, build_unet, count_parameters  # noqa: E402

PRESET_IMAGES = {"paper": (4, 256, 256), "small": (4, 64, 64), "small-x8": (4, 64, 64),
                 "tiny": (1, 32, 32)}
TARGETS = {
    "cpu_speedup_min": 4.0,
    "cuda_seconds_per_image_fp32_tf32_batch64_max": 0.1,
    "cuda_seconds_per_image_bf16_batch64_max": 0.05,
}


# --------------------------------------------------------------------------- setup
def build_networks(preset: str, in_channels: int, seed: int = 0):
    """Randomly initialised autoencoder and UNet (eval mode).

    Zero-initialised layers (the UNet's output and residual output convolutions) get a
    seeded random initialisation, so that flip probabilities spread around 1/2 and the
    mask grows as it would with a trained model.
    """
    ae = build_autoencoder(preset, in_channels, seed=seed).eval()
    unet = build_unet(preset, ae.latent_channels, seed=seed + 1).eval()
    generator = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        for module in unet.modules():
            if isinstance(module, torch.nn.Conv2d) and not module.weight.any():
                torch.nn.init.kaiming_uniform_(module.weight, a=5 ** 0.5, generator=generator)
    return ae, unet


def make_detector(ae, unet, image_shape, *, noise_level, mask_threshold=0.5,
                  final_step="paper", batch_size=16, device="cpu", precision="fp32",
                  diffusion_steps=1000, seed=0, n_steps=None):
    """A detector around given networks (no training, no calibration)."""
    return MaskedBernoulliDiffusionDetector.from_networks(
        ae, unet, spatial_shape=tuple(int(s) for s in image_shape[1:]), seed=seed,
        preset="small",
        diffusion_steps=diffusion_steps, noise_level=noise_level,
        mask_threshold=mask_threshold, final_step=final_step, n_steps=n_steps,
        posterior="paper", n_draws=1,
        batch_size=batch_size, device=str(device), precision=precision, random_state=seed)


@contextlib.contextmanager
def float32_matmul(mode: str):
    """``"tf32"`` turns TF32 on for CUDA matmuls and cuDNN convolutions; otherwise off."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    tf32 = mode == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


# --------------------------------------------------------------------------- measurement
def _proc_status_kb(field):
    with open("/proc/self/status") as f:
        match = re.search(rf"^{field}:\s+(\d+)\s+kB", f.read(), re.MULTILINE)
    return int(match.group(1)) if match else None


class PeakMemory:
    """Peak memory of a code block above its starting point, in bytes (see module docstring)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.method = None
        self.peak = self.total_peak = self.reserved_peak = None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
            self.method = "torch.cuda.max_memory_allocated - memory_allocated at start"
        else:
            self.start = None
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # resets VmHWM to the current resident set
                self.start = _proc_status_kb("VmRSS")
                self.method = "VmHWM - VmRSS at start (/proc/self, VmHWM reset via clear_refs)"
            except OSError:
                self.method = None
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.total_peak = torch.cuda.max_memory_allocated(self.device)
            self.reserved_peak = torch.cuda.max_memory_reserved(self.device)
            self.peak = self.total_peak - self.start
        elif self.start is not None:
            hwm = _proc_status_kb("VmHWM")
            self.peak = None if hwm is None else max(hwm - self.start, 0) * 1024
            self.total_peak = None if hwm is None else hwm * 1024
        return False


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_reference(ae, unet, images, *, schedule, noise_level, mask_threshold, final_step,
                  sampler, device):
    """Time the reference loop on ``images``; returns (seconds, PeakMemory)."""
    with PeakMemory(device) as memory:
        _sync(device)
        start = time.perf_counter()
        reference_restore(ae, unet, images, schedule=schedule, noise_level=noise_level,
                          mask_threshold=mask_threshold, final_step=final_step,
                          sampler=sampler, device=device)
        _sync(device)
        seconds = time.perf_counter() - start
    return seconds, memory


def run_fast(det, X, device):
    """Time the detector's batched inference on ``X`` (numpy); returns (seconds, PeakMemory)."""
    with PeakMemory(device) as memory:
        _sync(device)
        start = time.perf_counter()
        det.detect(X, ("reconstruction",))
        _sync(device)
        seconds = time.perf_counter() - start
    return seconds, memory


def _summary(seconds, memories, n_images, images_at_once):
    median = statistics.median(seconds)
    out = {
        "n_images": int(n_images),
        "seconds_runs": [round(s, 4) for s in seconds],
        "seconds_total_median": median,
        "seconds_per_image": median / n_images,
        "images_per_s": n_images / median,
        "images_at_once": int(images_at_once),
    }
    peaks = [m.peak for m in memories if m.peak is not None]
    if peaks:
        out["peak_memory_per_image_mb"] = max(peaks) / images_at_once / 2 ** 20
        out["peak_memory_run_mb"] = max(peaks) / 2 ** 20
    totals = [m.total_peak for m in memories if m.total_peak is not None]
    if totals:
        out["peak_memory_total_mb"] = max(totals) / 2 ** 20
    reserved = [m.reserved_peak for m in memories if m.reserved_peak is not None]
    if reserved:
        out["peak_memory_reserved_mb"] = max(reserved) / 2 ** 20
    return out


# --------------------------------------------------------------------------- benchmarks
def benchmark_config(*, preset, device, precision, batch_size, n_images, reference_images,
                     noise_level, mask_threshold, final_step, repeats, sampler, seed,
                     compile_mode=None, warmup_steps=2, log=print):
    """Reference and fast timings for one configuration, interleaved ``repeats`` times."""
    image_shape = PRESET_IMAGES[preset]
    ae, unet = build_networks(preset, image_shape[0], seed)
    ae.to(device)
    unet.to(device)
    generator = torch.Generator().manual_seed(seed)
    X = torch.rand((n_images,) + image_shape, generator=generator).numpy()
    X_ref = torch.from_numpy(X[:reference_images].copy())
    schedule = make_schedule("linear", 1000)
    fast_unet = unet if not compile_mode else torch.compile(unet, mode=compile_mode)
    # TF32 is fp32 storage with TF32 tensor-core math, switched by backend flags.
    det_precision = "fp32" if precision == "tf32" else precision
    det = make_detector(ae, fast_unet, image_shape, noise_level=noise_level,
                        mask_threshold=mask_threshold, final_step=final_step,
                        batch_size=batch_size, device=device, precision=det_precision,
                        seed=seed)
    # Warm-up (allocator, cuDNN/oneDNN kernels, autocast caches, compilation): a few steps.
    warm = make_detector(ae, fast_unet, image_shape, noise_level=warmup_steps,
                         mask_threshold=mask_threshold, final_step=final_step,
                         batch_size=batch_size, device=device, precision=det_precision,
                         seed=seed)
    matmul_mode = precision if precision == "tf32" else "fp32"
    ref_seconds, ref_memory, fast_seconds, fast_memory = [], [], [], []
    with float32_matmul(matmul_mode):
        run_fast(warm, X[:batch_size], device)
        if reference_images:
            run_reference(ae, unet, X_ref[:1], schedule=schedule, noise_level=warmup_steps,
                          mask_threshold=mask_threshold, final_step=final_step,
                          sampler=sampler, device=device)
        for r in range(repeats):
            if reference_images:
                s, m = run_reference(ae, unet, X_ref, schedule=schedule,
                                     noise_level=noise_level, mask_threshold=mask_threshold,
                                     final_step=final_step, sampler=sampler, device=device)
                ref_seconds.append(s)
                ref_memory.append(m)
            s, m = run_fast(det, X, device)
            fast_seconds.append(s)
            fast_memory.append(m)
            log(f"  repeat {r + 1}/{repeats}: reference "
                f"{ref_seconds[-1] / reference_images if reference_images else float('nan'):.4f}"
                f" s/image, fast {s / n_images:.4f} s/image  (load {load_average()})")
    result = {
        "device": str(device),
        "preset": preset,
        "image_shape": list(image_shape),
        "latent_shape": [ae.latent_channels, image_shape[1] // ae.downsampling_factor,
                         image_shape[2] // ae.downsampling_factor],
        "unet_parameters": count_parameters(unet),
        "autoencoder_parameters": count_parameters(ae),
        "precision": precision,
        "batch_size": int(batch_size),
        "noise_level": int(noise_level),
        "mask_threshold": float(mask_threshold),
        "final_step": final_step,
        "compile": compile_mode,
        "fast": _summary(fast_seconds, fast_memory, n_images, min(batch_size, n_images)),
    }
    if reference_images:
        result["reference"] = _summary(ref_seconds, ref_memory, reference_images, 1)
        result["reference"]["sampler"] = sampler
        result["reference"]["precision"] = "tf32" if precision == "tf32" else "fp32"
        result["speedup"] = (result["fast"]["images_per_s"]
                             / result["reference"]["images_per_s"])
        # Each repeat times both sides back to back: its ratio sees the same load.
        result["speedup_paired_median"] = statistics.median(
            (r / reference_images) / (f / n_images)
            for r, f in zip(ref_seconds, fast_seconds))
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/speed.json", help="JSON output file")
    parser.add_argument("--quick", action="store_true",
                        help="tiny preset, L=10, 4 images, CPU only (seconds; for tests)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="auto: the CPU benchmark, plus the CUDA one when a GPU is present")
    parser.add_argument("--noise-level", type=int, default=200, help="L")
    parser.add_argument("--mask-threshold", type=float, default=0.5, help="P")
    parser.add_argument("--final-step", default="paper", choices=("paper", "reference"))
    parser.add_argument("--cpu-preset", default="small", choices=tuple(PRESET_IMAGES))
    parser.add_argument("--cpu-batch-size", type=int, default=16)
    parser.add_argument("--cpu-images", type=int, default=16,
                        help="images per fast run on the CPU (the reference runs the same)")
    parser.add_argument("--cpu-precision", default="fp32", choices=("fp32", "bf16"),
                        help="precision of the fast path on the CPU (the reference is fp32)")
    parser.add_argument("--cuda-preset", default="paper", choices=tuple(PRESET_IMAGES))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64],
                        help="CUDA batch sizes")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "tf32", "bf16"],
                        choices=("fp32", "tf32", "bf16", "fp16"), help="CUDA precisions")
    parser.add_argument("--cuda-min-images", type=int, default=8,
                        help="at least this many images per fast CUDA run")
    parser.add_argument("--cuda-reference-images", type=int, default=4,
                        help="images for the CUDA reference loop (fp32 and tf32 only)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sampler", default="binomial",
                        choices=("binomial", "bernoulli", "counter"),
                        help="reference loop sampling (binomial = the reference code)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--compile", default=None,
                        choices=("default", "reduce-overhead", "max-autotune"),
                        help="torch.compile the UNet of the fast path (experimental)")
    parser.add_argument("--freezing", action="store_true",
                        help="with --compile: inductor freezing (constant-folds and prepacks "
                             "weights; CPU oneDNN benefits)")
    parser.add_argument("--cudnn-benchmark", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.freezing:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    log = print
    has_cuda = torch.cuda.is_available()
    want_cpu = args.device in ("auto", "cpu") or args.quick
    want_cuda = not args.quick and args.device in ("auto", "cuda")
    if args.device == "cuda" and not has_cuda:
        parser.error("--device cuda but CUDA is not available")
    want_cuda = want_cuda and has_cuda

    meta = {
        "untrained_networks": True,
        "note": ("Randomly initialised networks (zero-initialised UNet convolutions "
                 "re-initialised so the mask grows): timings do not depend on training. "
                 "Reference = benchmarks/reference_loop.py (one image at a time, per-step "
                 "schedule uploads, host checks, torch.distributions sampling, autograd on the "
                 "autoencoder); fast = MaskedBernoulliDiffusionDetector.detect(X, "
                 "('reconstruction',)). Both do encode + L steps + decode. Medians over "
                 "interleaved repeats."),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": machine_info('cpu')['processor'],
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "gpu": torch.cuda.get_device_name() if has_cuda else None,
        "cuda_measured": bool(want_cuda),
        "load_average_start": load_average(),
        "memory_method": {
            "cpu": "VmHWM - VmRSS at start (/proc/self/status; VmHWM reset through "
                   "/proc/self/clear_refs), per image processed at once; a lower bound",
            "cuda": "torch.cuda.max_memory_allocated - memory_allocated at start (after "
                    "reset_peak_memory_stats), per image of the batch; totals include "
                    "weights; reserved = caching-allocator peak",
        },
        "targets": TARGETS,
        "argv": sys.argv[1:] if argv is None else list(argv),
    }
    results = []
    started = time.time()
    common = dict(noise_level=args.noise_level, mask_threshold=args.mask_threshold,
                  final_step=args.final_step, sampler=args.sampler, seed=args.seed,
                  log=log)
    if want_cpu:
        if args.quick:
            cfg = dict(preset="tiny", batch_size=4, n_images=4, reference_images=4,
                       repeats=1, noise_level=10)
            common = {**common, "noise_level": cfg.pop("noise_level")}
        else:
            cfg = dict(preset=args.cpu_preset, batch_size=args.cpu_batch_size,
                       n_images=args.cpu_images, reference_images=args.cpu_images,
                       repeats=args.repeats)
        log(f"CPU: preset={cfg['preset']} batch={cfg['batch_size']} L={common['noise_level']}"
            f" threads={torch.get_num_threads()} (load {load_average()})")
        res = benchmark_config(device=torch.device("cpu"), precision=args.cpu_precision,
                               compile_mode=args.compile, **cfg, **common)
        results.append(res)
        log(f"  -> reference {res['reference']['images_per_s']:.3f} img/s, fast "
            f"{res['fast']['images_per_s']:.3f} img/s, speed-up {res['speedup']:.2f}x "
            f"(paired median {res['speedup_paired_median']:.2f}x)")
    if want_cuda:
        device = torch.device("cuda")
        for precision in args.precisions:
            for batch in args.batch_sizes:
                n_images = batch * max(1, -(-args.cuda_min_images // batch))
                # The reference loop does not batch: time it once per matmul mode.
                ref = args.cuda_reference_images if (batch == args.batch_sizes[0]
                                                     and precision in ("fp32", "tf32")) else 0
                log(f"CUDA: preset={args.cuda_preset} {precision} batch={batch} "
                    f"images={n_images} reference_images={ref}")
                try:
                    res = benchmark_config(
                        preset=args.cuda_preset, device=device, precision=precision,
                        batch_size=batch, n_images=n_images, reference_images=ref,
                        repeats=args.repeats, compile_mode=args.compile, **common)
                except torch.OutOfMemoryError as exc:
                    res = {"device": "cuda", "precision": precision, "batch_size": batch,
                           "error": f"out of memory: {exc}"}
                    torch.cuda.empty_cache()
                results.append(res)
                log(f"  -> fast {res.get('fast', {}).get('seconds_per_image', float('nan')):.4f}"
                    f" s/image")
        _attach_cuda_ratios(results)
    meta["load_average_end"] = load_average()
    meta["wall_seconds"] = time.time() - started
    report = {"meta": meta, "results": results, "checks": _checks(results)}
    directory = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(directory, exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    log(f"wrote {args.out}")
    return report


def _attach_cuda_ratios(results):
    """Speed-up of every CUDA configuration against the reference loop of its matmul mode."""
    refs = {r["reference"]["precision"]: r["reference"] for r in results
            if r.get("device", "").startswith("cuda") and "reference" in r}
    for r in results:
        if not r.get("device", "").startswith("cuda") or "fast" not in r:
            continue
        mode = "tf32" if r["precision"] == "tf32" else "fp32"
        ref = refs.get(mode)
        if ref is not None:
            r["speedup_vs_reference_" + mode] = r["fast"]["images_per_s"] / ref["images_per_s"]


def _checks(results):
    """The issue's targets, evaluated on what was measured (None = not measured)."""
    checks = {"cpu_speedup_ge_4": None, "cuda_fp32_batch64_le_0.1s": None,
              "cuda_tf32_batch64_le_0.1s": None, "cuda_bf16_batch64_le_0.05s": None}
    for r in results:
        if "fast" not in r:
            continue
        if r["device"] == "cpu" and r["preset"] == "small" and r["noise_level"] == 200 \
                and r["precision"] == "fp32" and "speedup" in r:
            checks["cpu_speedup_ge_4"] = bool(r["speedup"] >= TARGETS["cpu_speedup_min"])
        if r["device"].startswith("cuda") and r["preset"] == "paper" \
                and r["batch_size"] == 64 and r["noise_level"] == 200:
            spi = r["fast"]["seconds_per_image"]
            if r["precision"] in ("fp32", "tf32"):
                checks[f"cuda_{r['precision']}_batch64_le_0.1s"] = bool(spi <= 0.1)
            elif r["precision"] == "bf16":
                checks["cuda_bf16_batch64_le_0.05s"] = bool(spi <= 0.05)
    return checks


if __name__ == "__main__":
    main()

"""One prepared script for a lent GPU: CUDA tests, paper-preset costs, GPU->CPU pickling.

Usage (on the GPU machine, from the repository root)::

    python benchmarks/gpu_check.py --out results/gpu_check.json

It runs, in order, and prints/writes every figure it measures:

1. ``pytest -m cuda tests/test_cuda.py`` (no host sync in the sampler loop, CPU/CUDA identical
   counter RNG, fit/detect in fp32/bf16/fp16, a CUDA-fitted pickle loaded in a process with
   ``CUDA_VISIBLE_DEVICES=""``);
2. one training step of each paper-preset network (autoencoder at batch 6 on 4x256x256,
   UNet at batch 32 on 128x32x32): time per step and peak GPU memory;
3. a 200-step masked restoration (paper UNet, untrained weights: timing only) of batches of
   1/16/64 latents plus encode/decode, in fp32, TF32 and bf16: seconds per image and peak
   memory per image (the paper: 5 s and 1.47 GB per image on a Quadro RTX 6000);
4. ``benchmarks/speed.py`` when present.

``--device cpu --preset small --batches 2 --noise-level 5`` validates the script on a CPU.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from skberdiff._device import autocast  # noqa: E402
from skberdiff.diffusion import (  # noqa: E402
    CounterRNG,
    diffusion_loss,
    make_schedule,
    masked_restoration,
    training_example,
)
from skberdiff.nn import build_autoencoder, build_unet, count_parameters  # noqa: E402


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_bytes(device):
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else float("nan")


def train_step_costs(preset, device, image_size):
    ae = build_autoencoder(preset, 4, seed=0).to(device)
    unet = build_unet(preset, seed=1).to(device)
    latent = image_size // ae.downsampling_factor
    out = {"autoencoder_parameters": count_parameters(ae),
           "unet_parameters": count_parameters(unet)}
    schedule = make_schedule()
    for name, model, batch in (("autoencoder", ae, 6), ("unet", unet, 32)):
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        times = []
        _reset_peak(device)
        for _ in range(3):
            _sync(device)
            start = time.perf_counter()
            if name == "autoencoder":
                x = torch.rand(batch, 4, image_size, image_size, device=device)
                x_hat, p, _ = model(x)
                loss = torch.nn.functional.mse_loss(x_hat, x)
            else:
                z0 = (torch.rand(batch, unet.latent_channels, latent, latent, device=device)
                      < 0.5).float()
                z_t, target, t = training_example(z0, schedule)
                loss = diffusion_loss(model(z_t, t), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            _sync(device)
            times.append(time.perf_counter() - start)
        out[f"{name}_step_s"] = min(times[1:])
        out[f"{name}_batch"] = batch
        out[f"{name}_peak_gb"] = _peak_bytes(device) / 1e9
    return out


def restoration_costs(preset, device, image_size, batches, noise_level, precisions):
    ae = build_autoencoder(preset, 4, seed=0).to(device).eval()
    unet = build_unet(preset, seed=1).to(device).eval()
    schedule = make_schedule()
    rows = []
    for precision in precisions:
        tf32 = precision == "tf32"
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
        amp = "bf16" if precision == "bf16" else "fp32"

        def denoise(z_t, t, amp=amp):
            with autocast(device, amp):
                return unet(z_t, t)

        for batch in batches:
            x = torch.rand(batch, 4, image_size, image_size, device=device)
            rng = CounterRNG(torch.arange(batch)).to(device)
            times = []
            _reset_peak(device)
            for _repeat in range(2):  # first run warms up kernels and allocator
                _sync(device)
                start = time.perf_counter()
                with torch.inference_mode():
                    with autocast(device, amp):
                        p = ae.encode(x).float()
                    z = (rng.uniform(p, 0) < p).float()
                    res = masked_restoration(denoise, z, schedule=schedule,
                                             noise_level=noise_level, mask_threshold=0.5, rng=rng)
                    with autocast(device, amp):
                        ae.decode(res.latent)
                _sync(device)
                times.append(time.perf_counter() - start)
            rows.append({"precision": precision, "batch": batch, "noise_level": noise_level,
                         "s_per_image": times[-1] / batch,
                         "peak_gb_per_image": _peak_bytes(device) / 1e9 / batch})
            print(json.dumps(rows[-1]), flush=True)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--noise-level", type=int, default=200)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "tf32", "bf16"])
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--out", default="results/gpu_check.json")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    report = {"torch": torch.__version__, "device": str(device),
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
              else "cpu", "preset": args.preset, "image_size": args.image_size,
              "note": "untrained weights: timings and memory only"}
    if not args.skip_tests:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda",
                               "tests/test_cuda.py", "-p", "no:cacheprovider"],
                              capture_output=True, text=True)
        report["cuda_tests"] = {"returncode": proc.returncode,
                                "summary": proc.stdout.strip().splitlines()[-1:],
                                "seconds": time.perf_counter() - start}
        print(proc.stdout[-3000:], proc.stderr[-2000:], flush=True)
    report["train_step"] = train_step_costs(args.preset, device, args.image_size)
    print(json.dumps(report["train_step"]), flush=True)
    report["restoration"] = restoration_costs(args.preset, device, args.image_size,
                                              args.batches, args.noise_level, args.precisions)
    speed = os.path.join(os.path.dirname(__file__), "speed.py")
    if os.path.exists(speed) and device.type == "cuda":
        proc = subprocess.run([sys.executable, speed, "--device", "cuda", "--out",
                               "results/speed_cuda.json"], capture_output=True, text=True)
        report["speed_py"] = {"returncode": proc.returncode, "tail": proc.stdout[-3000:]}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

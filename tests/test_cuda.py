"""Checks that need a CUDA GPU (skipped elsewhere; run by benchmarks/gpu_check.py)."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from skberdiff import MaskedBernoulliDiffusionDetector
from skberdiff.datasets import make_toy_images
from skberdiff.diffusion import CounterRNG, make_schedule, masked_restoration
from skberdiff.nn import build_unet

pytestmark = pytest.mark.cuda

TINY = dict(preset="tiny", n_draws=1, autoencoder_iterations=30, diffusion_iterations=30,
            diffusion_steps=100, noise_level=20, random_state=0, device="cuda")


def test_restoration_loop_has_no_host_device_sync():
    unet = build_unet("tiny", seed=0).cuda().eval()
    z = torch.randint(0, 2, (4, 16, 8, 8), device="cuda").float()
    rng = CounterRNG(torch.arange(4)).to("cuda")
    with torch.inference_mode():
        masked_restoration(unet, z, schedule=make_schedule(), noise_level=5, mask_threshold=0.5,
                           rng=rng)  # warm-up (lazy init may sync)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            masked_restoration(unet, z, schedule=make_schedule(), noise_level=20,
                               mask_threshold=0.5, rng=rng)
        finally:
            torch.cuda.set_sync_debug_mode("default")


def test_counter_rng_is_identical_on_cpu_and_cuda():
    like = torch.zeros(3, 1000)
    cpu = CounterRNG([1, 2, 3]).uniform(like, 7)
    gpu = CounterRNG([1, 2, 3]).to("cuda").uniform(like.cuda(), 7).cpu()
    assert torch.equal(cpu, gpu)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_fit_and_detect_on_cuda(precision):
    X, _ = make_toy_images(24, image_size=32, random_state=0)
    det = MaskedBernoulliDiffusionDetector(**TINY, precision=precision).fit(X)
    assert det.device_.startswith("cuda")
    res = det.detect(X[:4])
    assert np.isfinite(res.anomaly_map).all()


def test_cuda_pickle_loads_in_a_cpu_only_process(tmp_path):
    X, _ = make_toy_images(24, image_size=32, random_state=0)
    det = MaskedBernoulliDiffusionDetector(**TINY).fit(X)
    path = tmp_path / "det.pkl"
    path.write_bytes(pickle.dumps(det))
    np.save(tmp_path / "x.npy", X[:6])
    np.save(tmp_path / "gpu_maps.npy", det.anomaly_map(X[:6]))
    code = (
        "import pickle, warnings, numpy as np, sys\n"
        f"det = pickle.load(open({str(path)!r}, 'rb'))\n"
        f"maps = det.anomaly_map(np.load({str(tmp_path / 'x.npy')!r}))\n"
        f"ref = np.load({str(tmp_path / 'gpu_maps.npy')!r})\n"
        "print('max_abs_diff', float(np.abs(maps - ref).max()))\n"
    )
    out = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True,
                         text=True, env=dict(os.environ, CUDA_VISIBLE_DEVICES=""), check=True)
    assert "DeviceFallbackWarning" in out.stderr
    diff = float(out.stdout.split("max_abs_diff")[1])
    assert diff < 1e-3

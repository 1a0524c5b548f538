"""The speed benchmark runs, and its reference loop computes what the package computes."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

from skberdiff import _runtime
from skberdiff.diffusion import STREAM_ENCODE, CounterRNG, make_schedule, masked_restoration

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "benchmarks")
sys.path.insert(0, BENCHMARKS)

from reference_loop import reference_restore  # noqa: E402
from speed import _attach_cuda_ratios, _checks, build_networks, make_detector  # noqa: E402

IMAGE_SHAPE = (1, 32, 32)


@pytest.fixture(scope="module")
def networks():
    return build_networks("tiny", IMAGE_SHAPE[0], seed=0)


@pytest.fixture(scope="module")
def images():
    return torch.rand((5,) + IMAGE_SHAPE, generator=torch.Generator().manual_seed(0)).numpy()


def _finite_numbers(obj):
    if isinstance(obj, dict):
        for value in obj.values():
            yield from _finite_numbers(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _finite_numbers(value)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj


def test_quick_benchmark_writes_complete_json(tmp_path):
    out = tmp_path / "speed.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "speed.py"), "--quick",
                           "--out", str(out)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["meta"]["untrained_networks"] is True
    assert report["meta"]["cuda_measured"] is False
    assert "load_average_start" in report["meta"]
    (result,) = report["results"]
    assert result["device"] == "cpu" and result["preset"] == "tiny"
    for side in ("reference", "fast"):
        summary = result[side]
        for key in ("seconds_per_image", "images_per_s", "peak_memory_per_image_mb",
                    "n_images"):
            assert key in summary, (side, key)
        assert summary["seconds_per_image"] > 0 and summary["images_per_s"] > 0
        assert summary["peak_memory_per_image_mb"] >= 0
    assert result["speedup"] > 0
    assert_allclose(result["speedup"], result["fast"]["images_per_s"]
                    / result["reference"]["images_per_s"])
    assert all(math.isfinite(v) for v in _finite_numbers(report))
    # Targets are evaluated only for the configurations they name.
    assert set(report["checks"].values()) == {None}


@pytest.mark.parametrize("final_step", ["paper", "reference"])
def test_reference_loop_with_the_package_rng_gives_the_detector_outputs(networks, images,
                                                                        final_step):
    ae, unet = networks
    det = make_detector(ae, unet, IMAGE_SHAPE, noise_level=8, batch_size=3,
                        final_step=final_step)
    fast = det.restore_latent(images)
    reconstruction = det.reconstruct(images)
    ref = reference_restore(ae, unet, torch.from_numpy(images), schedule=det.schedule_,
                            noise_level=8, final_step=final_step, sampler="counter",
                            seeds=_runtime.image_seeds(images, det._inference_seed()))
    assert_array_equal(ref["code"].numpy(), fast.code)
    assert_array_equal(ref["masked_fraction"].numpy(), fast.masked_fraction)
    assert_allclose(ref["latent"].numpy(), fast.restored, atol=1e-5)
    assert_allclose(ref["x_hat"].numpy(), reconstruction, atol=1e-4)
    assert 0 < fast.masked_fraction.mean() < 1  # the mask did some work


def test_reference_loop_sampling_matches_the_package_in_distribution(networks, images):
    """torch.distributions sampling (the reference) vs counter-based sampling (the package)."""
    ae, unet = networks
    n, noise_level = 48, 8
    x = torch.from_numpy(images[:1]).repeat(n, 1, 1, 1)
    schedule = make_schedule()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ref = reference_restore(ae, unet, x, schedule=schedule, noise_level=noise_level,
                                sampler="binomial")
    with torch.inference_mode():
        probabilities = ae.encode(x)
        rng = CounterRNG(torch.arange(n) + 1000)
        code = (rng.uniform(probabilities, STREAM_ENCODE) < probabilities).float()
        fast = masked_restoration(unet, code, schedule=schedule, noise_level=noise_level,
                                  mask_threshold=0.5, rng=rng)
    for a, b in ((ref["masked_fraction"], fast.masked_fraction),
                 (ref["latent"].flatten(1).mean(1), fast.latent.flatten(1).mean(1))):
        a, b = a.double().numpy(), b.double().numpy()
        standard_error = np.sqrt(a.var(ddof=1) / n + b.var(ddof=1) / n)
        assert abs(a.mean() - b.mean()) < 4 * standard_error + 1e-3
        assert 0.5 < a.std() / b.std() < 2.0


def test_reference_loop_rejects_unknown_sampler(networks, images):
    ae, unet = networks
    with pytest.raises(ValueError, match="sampler must be one of"):
        reference_restore(ae, unet, torch.from_numpy(images[:1]), schedule=make_schedule(),
                          noise_level=2, sampler="philox")
    with pytest.raises(ValueError, match="needs seeds"):
        reference_restore(ae, unet, torch.from_numpy(images[:1]), schedule=make_schedule(),
                          noise_level=2, sampler="counter")


def test_targets_are_checked_on_the_configurations_the_issue_names():
    def row(device, preset, precision, batch, seconds_per_image, **extra):
        return {"device": device, "preset": preset, "precision": precision,
                "batch_size": batch, "noise_level": 200,
                "fast": {"seconds_per_image": seconds_per_image,
                         "images_per_s": 1 / seconds_per_image}, **extra}

    results = [
        row("cpu", "small", "fp32", 16, 0.3, speedup=4.2),
        row("cuda", "paper", "fp32", 1, 0.5,
            reference={"precision": "fp32", "images_per_s": 0.2}),
        row("cuda", "paper", "fp32", 64, 0.08),
        row("cuda", "paper", "tf32", 64, 0.12),
        row("cuda", "paper", "bf16", 64, 0.04),
    ]
    assert _checks(results) == {"cpu_speedup_ge_4": True, "cuda_fp32_batch64_le_0.1s": True,
                                "cuda_tf32_batch64_le_0.1s": False,
                                "cuda_bf16_batch64_le_0.05s": True}
    _attach_cuda_ratios(results)
    assert_allclose(results[2]["speedup_vs_reference_fp32"], (1 / 0.08) / 0.2)
    assert "speedup_vs_reference_tf32" not in results[3]  # no tf32 reference measured

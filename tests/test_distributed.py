"""Multi-process training and sharded inference with two gloo CPU processes.

The processes are started as plain subprocesses with the variables ``torchrun`` sets
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), which also
exercises :func:`skberdiff.distributed.init_from_env`; one launch runs every multi-process
check to keep the test short.
"""

import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

import skberdiff
from skberdiff import MaskedBernoulliDiffusionDetector
from skberdiff.datasets import make_toy_images
from skberdiff.distributed import (
    DistributedContext,
    distributed_detect,
    init_from_env,
    shard_indices,
    shard_inference,
)
from skberdiff.nn import build_autoencoder, build_unet
from skberdiff.training import train_autoencoder, train_diffusion

WORLD = 2
OUTPUTS = ("score", "anomaly_map", "mask", "reconstruction")
TRAIN = dict(n_iterations=4, batch_size=4, device="cpu", verbose=0, seed=3, log_every=1)
# GroupNorm with one channel per group (the tiny autoencoder's 8-channel layers) makes the
# gradient of the bias before it exactly zero in exact arithmetic; Adam turns the rounding
# noise of that zero into learning-rate-sized steps of random sign, which no tolerance can
# compare. Widths of 64 give two or more channels per group.
AE_WIDTHS = dict(base_width=64, embed_dim=64)

WORKER = textwrap.dedent("""
    import sys
    import numpy as np
    import torch
    torch.set_num_threads(1)
    import skberdiff
    from skberdiff.distributed import distributed_detect, init_from_env, shard_inference
    from skberdiff.nn import build_autoencoder, build_unet
    from skberdiff.training import train_autoencoder, train_diffusion

    workdir = sys.argv[1]
    ctx = init_from_env(timeout_s=60)
    assert ctx.world_size == {world} and ctx.backend == "gloo", ctx
    data = np.load(workdir + "/data.npz")
    train = {train!r}

    ae = build_autoencoder("tiny", 1, seed=0, **{ae_widths!r})
    ae_result = train_autoencoder(ae, torch.from_numpy(data["images"]), **train)
    unet = build_unet("tiny", seed=1)
    unet_result = train_diffusion(unet, torch.from_numpy(data["latents"]), **train)
    torch.save({{"ae": ae_result.model.state_dict(), "ae_ema": ae_result.ema.state_dict(),
                "unet": unet_result.model.state_dict(),
                "unet_ema": unet_result.ema.state_dict(),
                "ae_history": ae_result.history, "unet_history": unet_result.history}},
               f"{{workdir}}/weights_rank{{ctx.rank}}.pt")

    det = skberdiff.load(workdir + "/model.skbd", device="cpu")
    X = data["X_test"]
    on_root = distributed_detect(det, X, outputs={outputs!r})
    everywhere = distributed_detect(det, X, outputs=("score",), all_ranks=True)
    squares = shard_inference(lambda x: torch.as_tensor(x) ** 2, np.arange(5.0), all_ranks=True)
    assert squares.tolist() == [0.0, 1.0, 4.0, 9.0, 16.0], squares
    if ctx.rank == 0:
        np.savez(workdir + "/detect.npz", score=on_root.score_samples,
                 masked_fraction=on_root.masked_fraction, anomaly_map=on_root.anomaly_map,
                 mask=on_root.mask, reconstruction=on_root.reconstruction)
    else:
        assert on_root is None
    np.save(f"{{workdir}}/score_all_rank{{ctx.rank}}.npy", everywhere.score_samples)
    torch.distributed.destroy_process_group()
""").format(world=WORLD, train=TRAIN, outputs=OUTPUTS, ae_widths=AE_WIDTHS)


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(script, workdir, world=WORLD, attempts=2, timeout=150):
    """Start ``world`` processes as torchrun would; retry once on a port clash."""
    for attempt in range(attempts):
        port = _free_port()
        procs = []
        for rank in range(world):
            env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world),
                       LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1",
                       CUDA_VISIBLE_DEVICES="")
            procs.append(subprocess.Popen([sys.executable, str(script), str(workdir)],
                                          env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
        outputs = []
        for proc in procs:
            try:
                outputs.append(proc.communicate(timeout=timeout)[0])
            except subprocess.TimeoutExpired:
                for p in procs:
                    p.kill()
                raise
        if all(p.returncode == 0 for p in procs):
            return
        log = "\n".join(f"--- rank {r} (exit {p.returncode}) ---\n{out}"
                        for r, (p, out) in enumerate(zip(procs, outputs)))
        if "address already in use" not in log.lower() or attempt == attempts - 1:
            pytest.fail(f"distributed workers failed:\n{log}")


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """Fit and save a tiny detector, write the data, run the two workers once."""
    workdir = tmp_path_factory.mktemp("distributed")
    g = torch.Generator().manual_seed(0)
    images = torch.rand(8, 1, 16, 16, generator=g)
    latents = torch.rand(8, 16, 4, 4, generator=g)
    X, _ = make_toy_images(24, image_size=32, random_state=0)
    det = MaskedBernoulliDiffusionDetector(
        preset="tiny", autoencoder_iterations=10, diffusion_iterations=10,
        diffusion_steps=100, noise_level=8, batch_size=4, device="cpu", random_state=0,
    ).fit(X[:16])
    det.save(workdir / "model.skbd")
    # 7 test images: uneven shards (4 + 3) and batches that differ from one process.
    X_test = X[16:23]
    np.savez(workdir / "data.npz", images=images.numpy(), latents=latents.numpy(),
             X_test=X_test)
    script = workdir / "worker.py"
    script.write_text(WORKER)
    _launch(script, workdir)
    return {"workdir": workdir, "images": images, "latents": latents, "X_test": X_test,
            "det": skberdiff.load(workdir / "model.skbd", device="cpu")}


def _assert_states_close(actual, expected, atol=1e-5):
    assert actual.keys() == expected.keys()
    for name in expected:
        assert_allclose(actual[name].numpy(), expected[name].numpy(), atol=atol, rtol=1e-5,
                        err_msg=name)


def test_two_processes_train_the_single_process_models(launched):
    workdir = launched["workdir"]
    ae_result = train_autoencoder(build_autoencoder("tiny", 1, seed=0, **AE_WIDTHS),
                                  launched["images"], **TRAIN)
    unet_result = train_diffusion(build_unet("tiny", seed=1), launched["latents"], **TRAIN)
    ranks = [torch.load(workdir / f"weights_rank{r}.pt", weights_only=True)
             for r in range(WORLD)]
    for got in ranks:
        _assert_states_close(got["ae"], ae_result.model.state_dict())
        _assert_states_close(got["ae_ema"], ae_result.ema.state_dict())
        _assert_states_close(got["unet"], unet_result.model.state_dict())
        _assert_states_close(got["unet_ema"], unet_result.ema.state_dict())
        # Rank 0 logs its local losses: a shard of the global batch, so only the steps match.
        assert [h["step"] for h in got["unet_history"]] == [1, 2, 3, 4]
    # The weights moved: the comparison is not between two untouched initialisations.
    initial = build_unet("tiny", seed=1).state_dict()
    assert any(not torch.allclose(initial[k], unet_result.model.state_dict()[k])
               for k in initial)


def test_distributed_detect_matches_single_process(launched):
    expected = launched["det"].detect(launched["X_test"], OUTPUTS)
    got = np.load(launched["workdir"] / "detect.npz")
    assert_allclose(got["masked_fraction"], expected.masked_fraction, atol=1e-6)
    assert_allclose(got["score"], expected.score_samples, atol=1e-6)
    assert_allclose(got["reconstruction"], expected.reconstruction, atol=1e-4)
    assert_allclose(got["anomaly_map"], expected.anomaly_map, atol=1e-4)
    # Masks threshold the maps: allow a pixel that sits on the threshold to differ.
    assert np.mean(got["mask"] != expected.mask) <= 1e-3
    for r in range(WORLD):
        assert_allclose(np.load(launched["workdir"] / f"score_all_rank{r}.npy"),
                        expected.score_samples, atol=1e-6)


# --------------------------------------------------------------------------- one process
@pytest.mark.parametrize("n, world", [(0, 1), (1, 2), (7, 2), (10, 3), (3, 5), (64, 4)])
def test_shard_indices_partition_in_order(n, world):
    shards = [shard_indices(n, r, world) for r in range(world)]
    assert_array_equal(np.concatenate(shards), np.arange(n))
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


def test_shard_indices_defaults_to_single_process():
    assert_array_equal(shard_indices(3), [0, 1, 2])


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=-1, rank=0, world_size=1), "n >= 0"),
    (dict(n=4, rank=2, world_size=2), "rank < world_size"),
    (dict(n=4, rank=0, world_size=0), "world_size >= 1"),
])
def test_shard_indices_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        shard_indices(**kwargs)


def test_shard_indices_rejects_non_integers():
    with pytest.raises(TypeError, match="n must be an integer"):
        shard_indices(2.5, 0, 1)


def test_shard_inference_without_process_group_calls_fn_once():
    calls = []

    def fn(x):
        calls.append(len(x))
        return x + 1

    assert_array_equal(shard_inference(fn, np.arange(3)), [1, 2, 3])
    assert calls == [3]


def test_init_from_env_without_launcher_is_single_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS",
                 "SLURM_LOCALID"):
        monkeypatch.delenv(name, raising=False)
    ctx = init_from_env()
    assert isinstance(ctx, DistributedContext)
    assert (ctx.rank, ctx.world_size, ctx.backend, ctx.is_main_process) == (0, 1, None, True)
    assert not torch.distributed.is_initialized()


def test_init_from_env_needs_rendezvous_address(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(RuntimeError, match="MASTER_ADDR and MASTER_PORT are not set"):
        init_from_env()


def test_init_from_env_reads_slurm_variables(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    with pytest.raises(RuntimeError, match="4 processes requested"):
        init_from_env()


def test_init_from_env_rejects_non_integer_variables(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' is not an integer"):
        init_from_env()


def test_distributed_detect_without_process_group_is_detect(launched):
    det, X = launched["det"], launched["X_test"][:3]
    got = distributed_detect(det, X, outputs=("score", "mask"))
    expected = det.detect(X, ("score", "mask"))
    assert_array_equal(got.score_samples, expected.score_samples)
    assert_array_equal(got.mask, expected.mask)
    assert got.reconstruction is None

"""Training loops for the binarizing autoencoder and the Bernoulli diffusion model.

Both loops share one machinery (:class:`_TrainingLoop`): any device, optional mixed
precision, an exponential moving average (EMA) of the weights, a tqdm progress bar silenced
by ``verbose=0``, a loss history, periodic checkpoints and exact resumption after an
interruption (Ctrl-C finishes the current step, writes a checkpoint and re-raises
``KeyboardInterrupt``; calling the function again with the same ``checkpoint_path`` continues
where it stopped and ends with the same weights as an uninterrupted run).

Under ``torchrun`` (``torch.distributed`` initialised) the loops use
``DistributedDataParallel``: every process draws the same global batch and the same noise,
and trains on its slice, so ``k`` processes with a global batch ``B`` train the same model as
one process with batch ``B`` (up to floating-point summation order).

Losses are only copied to the host every ``log_every`` steps, so the step loop does not
synchronise with the GPU.
"""

import copy
import hashlib
import io
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ._device import autocast, check_precision, resolve_device
from ._progress import progress
from ._validation import check_images, check_int
from .diffusion import BernoulliSchedule, diffusion_loss, make_schedule, training_example
from .exceptions import CorruptCheckpointError, TrainingDivergedError
from .losses import (
    adaptive_adversarial_weight,
    binarization_penalty,
    generator_adversarial_loss,
    hinge_discriminator_loss,
    reconstruction_loss,
)

__all__ = [
    "read_checkpoint",
    "TrainingResult",
    "ExponentialMovingAverage",
    "train_autoencoder",
    "train_diffusion",
    "encode_dataset",
]

_CHECKPOINT_FORMAT = 2
# A checkpoint file is this magic, the SHA-256 of the payload, then a weights-only torch zip.
_CHECKPOINT_MAGIC = b"SKBDCKPT"


@dataclass
class TrainingResult:
    """What a training loop returns.

    Attributes
    ----------
    model : torch.nn.Module
        The trained module (raw weights), on the training device.
    ema : torch.nn.Module or None
        The exponential moving average of the weights (what inference should use), or
        ``None`` when ``ema_rate`` is 0.
    history : list of dict
        One entry every ``log_every`` steps: ``{"step": int, "<loss name>": float, ...,
        "elapsed_s": float}`` with each loss averaged over the steps since the previous
        entry; ``elapsed_s`` is the training wall time so far in seconds (kept across a
        resume from a checkpoint; steps run after the last entry before an interruption
        are not counted).
    n_steps : int
        Optimiser steps done in total (including those before a resume).

    Examples
    --------
    >>> result = TrainingResult(model=torch.nn.Linear(1, 1), ema=None)
    >>> result.inference_model is result.model
    True
    """

    model: nn.Module
    ema: nn.Module | None
    history: list = field(default_factory=list)
    n_steps: int = 0

    @property
    def inference_model(self) -> nn.Module:
        """The EMA weights when available, else the raw weights."""
        return self.ema if self.ema is not None else self.model


class ExponentialMovingAverage:
    """EMA of a module's parameters with the usual warm-up.

    The decay at step ``k`` is ``min(rate, (1 + k) / (10 + k))`` so that short runs are not
    dominated by the random initialisation. Buffers are copied.

    Parameters
    ----------
    module : torch.nn.Module
        Module to track (a frozen deep copy is kept in :attr:`module`).
    rate : float
        Target decay, e.g. 0.999.

    Examples
    --------
    >>> net = torch.nn.Linear(2, 1)
    >>> ema = ExponentialMovingAverage(net, 0.9)
    >>> ema.update(net, step=0)
    >>> torch.equal(ema.module.weight, net.weight)
    True
    """

    def __init__(self, module: nn.Module, rate: float):
        if not 0.0 < rate < 1.0:
            raise ValueError(f"ema_rate must be in (0, 1), got {rate}.")
        self.rate = float(rate)
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        """Move the average towards ``module``'s current weights.

        Parameters
        ----------
        module : torch.nn.Module
            Module being trained, with the same architecture as the tracked one.
        step : int
            Optimiser step (0-based), which sets the warm-up decay.
        """
        decay = min(self.rate, (1.0 + step) / (10.0 + step))
        shadow = [p for p in self.module.parameters()]
        params = [p.detach() for p in module.parameters()]
        if shadow and shadow[0].is_floating_point():
            torch._foreach_lerp_(shadow, params, 1.0 - decay)
        for b_shadow, b in zip(self.module.buffers(), module.buffers()):
            b_shadow.copy_(b)

    def state_dict(self):
        """The averaged weights (for checkpoints).

        Returns
        -------
        state : dict
            State dict of the averaged module.
        """
        return self.module.state_dict()

    def load_state_dict(self, state):
        """Restore averaged weights saved by :meth:`state_dict`.

        Parameters
        ----------
        state : dict
            State dict returned by :meth:`state_dict`.
        """
        self.module.load_state_dict(state)


def _distributed():
    """(rank, world size) of an initialised process group, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _wrap_ddp(module: nn.Module, device: torch.device, world: int) -> nn.Module:
    if world == 1:
        return module
    device_ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


class _GracefulInterrupt:
    """Turn the first Ctrl-C into a flag checked between steps (main thread only).

    A second Ctrl-C interrupts immediately. In other threads the normal behaviour stays.
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)

            def handler(signum, frame):
                if self.requested:
                    raise KeyboardInterrupt
                self.requested = True

            signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def read_checkpoint(path):
    """Read a training checkpoint, verifying its checksum; never unpickles code.

    Parameters
    ----------
    path : str or path-like
        Checkpoint written by a training loop.

    Returns
    -------
    state : dict
        The loop state (weights, optimisers, RNG states, history).

    Raises
    ------
    CorruptCheckpointError
        If the file is truncated, fails its checksum or cannot be read; the message names
        the file and says to delete it.

    Examples
    --------
    >>> import os, tempfile
    >>> from skberdiff.nn import build_autoencoder
    >>> path = os.path.join(tempfile.mkdtemp(), "ae.pt")
    >>> _ = train_autoencoder(build_autoencoder("tiny", 1, seed=0), torch.rand(4, 1, 16, 16),
    ...                       n_iterations=2, batch_size=2, device="cpu", verbose=0,
    ...                       checkpoint_path=path)
    >>> read_checkpoint(path)["step"]
    2
    >>> with open(path, "r+b") as fh:
    ...     _ = fh.seek(-1, 2); _ = fh.write(b"?")  # one corrupted byte
    >>> read_checkpoint(path)
    Traceback (most recent call last):
    ...
    skberdiff.exceptions.CorruptCheckpointError: Checkpoint ... failed its SHA-256 checksum...
    """
    path = os.fspath(path)
    advice = (" Delete it to restart training from step 0 (or point checkpoint_dir "
              "elsewhere).")
    try:
        with open(path, "rb") as fh:
            blob = fh.read()
    except OSError as exc:
        raise CorruptCheckpointError(f"Checkpoint {path} cannot be read: {exc}.") from exc
    head = len(_CHECKPOINT_MAGIC) + 32
    if len(blob) < head or not blob.startswith(_CHECKPOINT_MAGIC):
        raise CorruptCheckpointError(
            f"{path} is not a skberdiff training checkpoint (or is truncated).{advice}")
    payload = blob[head:]
    if hashlib.sha256(payload).digest() != blob[len(_CHECKPOINT_MAGIC):head]:
        raise CorruptCheckpointError(
            f"Checkpoint {path} failed its SHA-256 checksum: it is corrupted or truncated."
            f"{advice}")
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report any reader failure the same way
        raise CorruptCheckpointError(
            f"Checkpoint {path} could not be read ({type(exc).__name__}).{advice}") from None


def _generator_seeds(seed, n):
    """``n`` independent 63-bit seeds for torch generators, one stream per purpose."""
    children = np.random.SeedSequence(int(seed)).spawn(n)
    return [int(c.generate_state(1, np.uint64)[0] >> np.uint64(1)) for c in children]


class _TrainingLoop:
    """Shared step loop: batching, RNG, logging, progress, EMA, checkpoints, resume.

    ``step_fn(indices)`` performs one optimisation step on the global batch ``indices``
    (a CPU LongTensor) and returns a dict of detached scalar loss tensors.
    """

    def __init__(self, *, n_samples, n_iterations, batch_size, seed, device, desc, verbose,
                 checkpoint_path, checkpoint_every, log_every, callback, fingerprint,
                 learning_rate=None):
        self.rank, self.world = _distributed()
        self.n_samples = int(n_samples)
        self.n_iterations = check_int(n_iterations, "n_iterations", low=1)
        self.batch_size = check_int(batch_size, "batch_size", low=1)
        if self.batch_size % self.world:
            raise ValueError(
                f"batch_size={batch_size} (the global batch) must be divisible by the number "
                f"of processes ({self.world})."
            )
        self.local_batch = self.batch_size // self.world
        self.device = device
        self.desc = desc
        self.verbose = verbose
        self.checkpoint_path = None if checkpoint_path is None else os.fspath(checkpoint_path)
        self.checkpoint_every = checkpoint_every
        self.log_every = check_int(log_every, "log_every", low=1)
        if checkpoint_every is not None:
            check_int(checkpoint_every, "checkpoint_every", low=1)
        self.callback = callback
        self.fingerprint = fingerprint
        self.learning_rate = learning_rate
        self.validate = None  # optional (every, fn() -> float tensor) added to history
        # Batch order and noise come from two independent streams of one seed.
        index_seed, noise_seed = _generator_seeds(check_int(seed, "seed", low=0), 2)
        self.index_generator = torch.Generator().manual_seed(index_seed)
        self.noise_generator = torch.Generator(device=device).manual_seed(noise_seed)
        self.permutation = torch.empty(0, dtype=torch.int64)
        self.position = 0
        self.step = 0
        self.history = []
        self.pending = []  # losses of the steps since the last history entry
        self.stateful = {}

    # -- data -------------------------------------------------------------------------------
    def next_indices(self) -> torch.Tensor:
        """Indices of the next global batch: epochs of random permutations."""
        parts, need = [], self.batch_size
        while need:
            if self.position >= self.permutation.numel():
                self.permutation = torch.randperm(self.n_samples, generator=self.index_generator)
                self.position = 0
            take = min(need, self.permutation.numel() - self.position)
            parts.append(self.permutation[self.position:self.position + take])
            self.position += take
            need -= take
        return torch.cat(parts)

    def rand(self, *shape) -> torch.Tensor:
        """U(0, 1) noise for the global batch (identical on every process)."""
        return torch.rand(shape, generator=self.noise_generator, device=self.device)

    def randint(self, low, high, shape) -> torch.Tensor:
        return torch.randint(low, high, shape, generator=self.noise_generator,
                             device=self.device)

    def shard(self, tensor: torch.Tensor) -> torch.Tensor:
        """This process's slice of a global-batch tensor."""
        if self.world == 1:
            return tensor
        return tensor[self.rank * self.local_batch:(self.rank + 1) * self.local_batch]

    # -- checkpoints --------------------------------------------------------------------------
    def _state(self):
        return {
            "format": _CHECKPOINT_FORMAT,
            "fingerprint": self.fingerprint,
            "step": self.step,
            "history": self.history,
            "pending": self.pending,
            "permutation": self.permutation,
            "position": self.position,
            "index_generator": self.index_generator.get_state(),
            "noise_generator": self.noise_generator.get_state(),
            "objects": {name: obj.state_dict() for name, obj in self.stateful.items()},
        }

    def save_checkpoint(self):
        if self.checkpoint_path is None or self.rank != 0:
            return
        directory = os.path.dirname(os.path.abspath(self.checkpoint_path))
        os.makedirs(directory, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(self._state(), buffer)
        payload = buffer.getvalue()
        tmp = f"{self.checkpoint_path}.tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as fh:
                fh.write(_CHECKPOINT_MAGIC + hashlib.sha256(payload).digest() + payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.checkpoint_path)  # atomic: never a half-written checkpoint
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    def maybe_resume(self):
        if self.checkpoint_path is None or not os.path.exists(self.checkpoint_path):
            return False
        state = read_checkpoint(self.checkpoint_path)
        if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
            raise CorruptCheckpointError(
                f"{self.checkpoint_path} is not a training checkpoint of this skberdiff "
                "version; delete it (training restarts from step 0) or use another "
                "checkpoint_dir.")
        if state["fingerprint"] != self.fingerprint:
            raise ValueError(
                f"The checkpoint {self.checkpoint_path} was written by a different training "
                f"configuration ({state['fingerprint']}) than this one ({self.fingerprint}); "
                "remove it or use another checkpoint path."
            )
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.pending = [{k: v.to(self.device) for k, v in p.items()} for p in state["pending"]]
        self.permutation = state["permutation"]
        self.position = int(state["position"])
        self.index_generator.set_state(state["index_generator"])
        self.noise_generator.set_state(state["noise_generator"])
        for name, obj in self.stateful.items():
            obj.load_state_dict(state["objects"][name])
        return True

    # -- loop ---------------------------------------------------------------------------------
    def _flush(self, bar):
        pending = self.pending
        if not pending:
            return
        names = list(dict.fromkeys(k for p in pending for k in p))
        # One host transfer for all pending losses.
        means = [torch.stack([p[k].float() for p in pending if k in p]).mean() for k in names]
        if self.validate is not None and self.step % self.validate[0] == 0:
            names.append("validation_loss")
            means.append(self.validate[1]())
        means = torch.stack(means).tolist()
        entry = {"step": self.step, **{k: float(v) for k, v in zip(names, means)}}
        if not all(math.isfinite(v) for v in means):
            bad = [k for k, v in zip(names, means) if not math.isfinite(v)]
            lr = "" if self.learning_rate is None else f" (now {self.learning_rate:g})"
            raise TrainingDivergedError(
                f"{self.desc} training diverged between steps {self.step - len(pending) + 1} "
                f"and {self.step}: {', '.join(bad)} became NaN or infinite. Lower the "
                f"{self.desc} learning rate{lr}, use precision='fp32', or check the images "
                "(scaled to [0, 1], no NaN).")
        bar.set_postfix({k: f"{v:.4g}" for k, v in entry.items() if k != "step"}, refresh=False)
        # Wall-clock training time so far, carried across resumption (not a loss).
        entry["elapsed_s"] = self._elapsed_before + (time.perf_counter() - self._started)
        self.history.append(entry)
        pending.clear()

    def run(self, step_fn):
        resumed = self.maybe_resume()
        self._started = time.perf_counter()
        self._elapsed_before = float(self.history[-1].get("elapsed_s", 0.0)) if self.history \
            else 0.0
        bar = progress(total=self.n_iterations, initial=min(self.step, self.n_iterations),
                       desc=self.desc + (" (resumed)" if resumed else ""),
                       disable=not self.verbose or self.rank != 0, leave=False,
                       dynamic_ncols=True)
        try:
            with _GracefulInterrupt() as interrupt:
                while self.step < self.n_iterations:
                    losses = step_fn(self.next_indices())
                    self.step += 1
                    self.pending.append(losses)
                    if self.step % self.log_every == 0 or self.step == self.n_iterations:
                        self._flush(bar)
                    bar.update(1)
                    if self.callback is not None:
                        self.callback(self.step)
                    if self.checkpoint_every and self.step % self.checkpoint_every == 0:
                        self.save_checkpoint()
                    if self.world > 1:
                        # Ranks see a signal at different steps; agree on one step (every
                        # log_every steps, where the losses are synchronised anyway), so
                        # that rank 0 checkpoints the step at which all ranks stop.
                        if self.step % self.log_every:
                            continue
                        flag = torch.tensor([float(interrupt.requested)], device=self.device)
                        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                        interrupt.requested = bool(flag.item())
                    if interrupt.requested:
                        raise KeyboardInterrupt
        except KeyboardInterrupt:
            # Unlogged losses go into the checkpoint, so a resumed run logs what an
            # uninterrupted one would.
            self.save_checkpoint()
            raise
        finally:
            bar.close()
        self.save_checkpoint()
        return self.history


def _as_tensor_data(images, name):
    """Images as a CPU float32 tensor (kept off the GPU until batched)."""
    if isinstance(images, torch.Tensor):
        return _check_images_tensor(images, name)
    return torch.from_numpy(check_images(images, name=name))


def _check_images_tensor(images: torch.Tensor, name: str) -> torch.Tensor:
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"{name} must have shape (n, c, h, w), got {tuple(images.shape)}.")
    if not images.is_floating_point():
        images = images.float()
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return images.detach().to("cpu", torch.float32)


def _maybe_to_device(data: torch.Tensor, device: torch.device, limit_bytes=2 ** 31):
    """Keep small data sets on the GPU (no per-step host copies); pin large ones."""
    if device.type == "cpu":
        return data
    if data.numel() * data.element_size() <= limit_bytes:
        return data.to(device)
    return data.pin_memory()


def _fetch(data, indices, device):
    if data.device == device:
        return data[indices.to(device)]
    return data[indices].to(device, non_blocking=True)


class _Updater:
    """Optimiser, gradient scaler, clipping and EMA of one trained module.

    The reference uses AdamW with zero weight decay, i.e. Adam. The scaler is only active
    for fp16 (bf16 and fp32 need none).
    """

    def __init__(self, module, loop, *, name, learning_rate, precision, ema_rate=None,
                 max_grad_norm=None, betas=(0.9, 0.999)):
        self.module = module
        self.loop = loop
        self.optimizer = torch.optim.AdamW(module.parameters(), lr=learning_rate,
                                           weight_decay=0.0, betas=betas)
        self.scaler = torch.amp.GradScaler(loop.device.type, enabled=precision == "fp16")
        self.ema = ExponentialMovingAverage(module, ema_rate) if ema_rate else None
        self.max_grad_norm = max_grad_norm
        loop.stateful.update({name: module, f"{name}_optimizer": self.optimizer,
                              f"{name}_scaler": self.scaler})
        if self.ema is not None:
            loop.stateful[f"{name}_ema"] = self.ema

    def step(self, loss):
        """Back-propagate ``loss`` and update the weights (and their EMA)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.max_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.module, self.loop.step)

    def result(self):
        self.module.eval()
        return TrainingResult(model=self.module,
                              ema=None if self.ema is None else self.ema.module,
                              history=self.loop.history, n_steps=self.loop.step)


def train_autoencoder(
    autoencoder: nn.Module,
    images,
    *,
    n_iterations: int = 1000,
    batch_size: int = 8,
    learning_rate: float = 1e-4,
    reconstruction: str = "mse",
    binarization_weight: float = 0.02,
    perceptual_loss=None,
    perceptual_weight: float = 0.0,
    discriminator: nn.Module | None = None,
    adversarial_weight: float = 0.0,
    adversarial_start: int = 0,
    discriminator_learning_rate: float | None = None,
    ema_rate: float | None = 0.995,
    max_grad_norm: float | None = None,
    device="auto",
    precision: str = "fp32",
    seed: int = 0,
    verbose: int = 1,
    checkpoint_path=None,
    checkpoint_every: int | None = None,
    log_every: int = 10,
    callback=None,
) -> TrainingResult:
    """Train the binarizing autoencoder.

    Loss = reconstruction (MSE or L1) + ``binarization_weight * mean(p (1 - p))``
    + ``perceptual_weight * perceptual_loss(x_hat, x)`` + adaptive-weighted hinge-GAN
    generator loss once ``adversarial_start`` is reached (when a discriminator is given and
    ``adversarial_weight > 0``).

    Parameters
    ----------
    autoencoder : BinaryAutoencoder
        The network (trained in place; also returned).
    images : array-like or torch.Tensor of shape (n, c, h, w)
        Training images, typically in [0, 1].
    n_iterations : int, default=1000
        Total optimiser steps (including steps done before a resume).
    batch_size : int, default=8
        Global batch size (split over processes under ``torchrun``).
    learning_rate : float, default=1e-4
        Adam learning rate.
    reconstruction : {"mse", "l1"}, default="mse"
        Reconstruction loss (paper: MSE; reference code: L1).
    binarization_weight : float, default=0.02
        Weight of the binarisation penalty; makes the code nearly deterministic
        (0 reproduces the reference).
    perceptual_loss : callable, optional
        ``perceptual_loss(x_hat, x) -> scalar`` such as :class:`skberdiff.losses.LPIPS`.
    perceptual_weight : float, default=0.0
        Its weight.
    discriminator : torch.nn.Module, optional
        PatchGAN discriminator for the adversarial term.
    adversarial_weight : float, default=0.0
        Multiplies the adaptive adversarial weight.
    adversarial_start : int, default=0
        First step with the adversarial term (reference: 30,001).
    discriminator_learning_rate : float, optional
        Defaults to ``learning_rate``.
    ema_rate : float or None, default=0.995
        EMA decay of the weights; ``None`` or 0 disables the EMA.
    max_grad_norm : float, optional
        Clip the gradient norm.
    device : str or torch.device, default="auto"
        Training device.
    precision : {"fp32", "bf16", "fp16"}, default="fp32"
        Autocast precision of the forward pass (``"fp16"`` uses a gradient scaler, CUDA only).
    seed : int, default=0
        Seeds batch order and noise (weights are initialised by the caller).
    verbose : int, default=1
        0 hides the progress bar.
    checkpoint_path : str or path-like, optional
        File for checkpoints; training resumes from it when it exists.
    checkpoint_every : int, optional
        Steps between checkpoints (a checkpoint is also written at the end and on Ctrl-C).
    log_every : int, default=10
        Steps between history entries (and host synchronisations).
    callback : callable, optional
        ``callback(step)`` after every step.

    Returns
    -------
    result : TrainingResult

    Examples
    --------
    >>> from skberdiff.nn import build_autoencoder
    >>> ae = build_autoencoder("tiny", 1, seed=0)
    >>> res = train_autoencoder(ae, torch.rand(8, 1, 16, 16), n_iterations=2, batch_size=4,
    ...                         device="cpu", verbose=0, log_every=1)
    >>> [h["step"] for h in res.history]
    [1, 2]
    """
    device = resolve_device(device)
    precision = check_precision(precision, device)
    data = _as_tensor_data(images, "images")
    if data.shape[1] != autoencoder.in_channels:
        raise ValueError(f"images have {data.shape[1]} channels but the autoencoder expects "
                         f"{autoencoder.in_channels}.")
    factor = autoencoder.downsampling_factor
    if data.shape[2] % factor or data.shape[3] % factor:
        raise ValueError(f"image size {tuple(data.shape[2:])} is not divisible by the "
                         f"autoencoder's downsampling factor {factor}.")
    adversarial = discriminator is not None and adversarial_weight > 0
    loop = _TrainingLoop(
        n_samples=data.shape[0], n_iterations=n_iterations, batch_size=batch_size, seed=seed,
        device=device, desc="autoencoder", verbose=verbose, checkpoint_path=checkpoint_path,
        checkpoint_every=checkpoint_every, log_every=log_every, callback=callback,
        fingerprint={"kind": "autoencoder", "config": repr(autoencoder.config),
                     "batch_size": int(batch_size), "n_samples": int(data.shape[0]),
                     "adversarial": bool(adversarial)},
        learning_rate=learning_rate,
    )
    data = _maybe_to_device(data, device)
    autoencoder.to(device).train()
    model = _wrap_ddp(autoencoder, device, loop.world)
    updater = _Updater(autoencoder, loop, name="model", learning_rate=learning_rate,
                       precision=precision, ema_rate=ema_rate, max_grad_norm=max_grad_norm)
    if adversarial:
        discriminator.to(device).train()
        disc = _wrap_ddp(discriminator, device, loop.world)
        disc_updater = _Updater(discriminator, loop, name="discriminator",
                                learning_rate=discriminator_learning_rate or learning_rate,
                                precision=precision, betas=(0.5, 0.9))
    if perceptual_loss is not None and hasattr(perceptual_loss, "to"):
        perceptual_loss.to(device)
    latent_hw = (data.shape[2] // factor, data.shape[3] // factor)

    def step_fn(indices):
        x = loop.shard(_fetch(data, indices, device))
        uniform = loop.shard(loop.rand(loop.batch_size, autoencoder.latent_channels, *latent_hw))
        with autocast(device, precision):
            x_hat, probabilities, _ = model(x, uniform=uniform)
        x_hat, probabilities = x_hat.float(), probabilities.float()
        rec = reconstruction_loss(x_hat, x, reconstruction)
        losses = {"reconstruction": rec}
        total = rec
        if binarization_weight:
            penalty = binarization_penalty(probabilities)
            total = total + binarization_weight * penalty
            losses["binarization"] = penalty
        if perceptual_loss is not None and perceptual_weight:
            perceptual = perceptual_loss(x_hat, x)
            total = total + perceptual_weight * perceptual
            losses["perceptual"] = perceptual
        use_gan = adversarial and loop.step >= adversarial_start
        if use_gan:
            discriminator.requires_grad_(False)
            gen = generator_adversarial_loss(disc(x_hat))
            weight = adversarial_weight * adaptive_adversarial_weight(
                total, gen, autoencoder.last_layer)
            total = total + weight * gen
            losses["generator"] = gen
        updater.step(total)
        if use_gan:
            discriminator.requires_grad_(True)
            with autocast(device, precision):
                d_loss = hinge_discriminator_loss(disc(x), disc(x_hat.detach()))
            disc_updater.step(d_loss)
            losses["discriminator"] = d_loss
        losses["loss"] = total
        return {k: v.detach() for k, v in losses.items()}

    loop.run(step_fn)
    return updater.result()


@torch.inference_mode()
def encode_dataset(autoencoder: nn.Module, images, *, batch_size: int = 64, device="auto",
                   precision: str = "fp32", verbose: int = 0) -> torch.Tensor:
    """Encoder probabilities ``sigmoid(E(x))`` for a whole data set, on the CPU.

    Caching these for a frozen autoencoder and sampling ``z ~ B(p)`` on the fly gives the same
    training distribution as re-encoding every batch, at a fraction of the cost.

    Parameters
    ----------
    autoencoder : BinaryAutoencoder
        Trained autoencoder (moved to ``device`` and put in eval mode).
    images : array-like or torch.Tensor of shape (n, c, h, w)
        Images to encode.
    batch_size : int, default=64
        Images encoded at once.
    device : str or torch.device, default="auto"
        Device that runs the encoder.
    precision : {"fp32", "bf16", "fp16"}, default="fp32"
        Autocast precision of the encoder (the result is float32 either way).
    verbose : int, default=0
        0 hides the progress bar.

    Returns
    -------
    probabilities : torch.Tensor of shape (n, latent_channels, h / f, w / f), float32

    Examples
    --------
    >>> from skberdiff.nn import build_autoencoder
    >>> p = encode_dataset(build_autoencoder("tiny", 1, seed=0), torch.rand(3, 1, 16, 16),
    ...                    device="cpu")
    >>> tuple(p.shape)
    (3, 16, 4, 4)
    """
    device = resolve_device(device)
    precision = check_precision(precision, device)
    data = _as_tensor_data(images, "images")
    autoencoder = autoencoder.to(device).eval()
    out = []
    for start in progress(range(0, data.shape[0], batch_size), verbose=verbose, desc="encoding",
                          leave=False):
        x = data[start:start + batch_size].to(device, non_blocking=True)
        with autocast(device, precision):
            p = autoencoder.encode(x)
        out.append(p.float().cpu())
    return torch.cat(out)


def train_diffusion(
    unet: nn.Module,
    latent_probabilities,
    *,
    schedule: BernoulliSchedule | None = None,
    n_iterations: int = 1000,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    ema_rate: float | None = 0.999,
    max_grad_norm: float | None = None,
    device="auto",
    precision: str = "fp32",
    seed: int = 0,
    verbose: int = 1,
    checkpoint_path=None,
    checkpoint_every: int | None = None,
    log_every: int = 10,
    callback=None,
    validation_probabilities=None,
    validate_every: int | None = None,
) -> TrainingResult:
    """Train the eps-UNet on binary latents of healthy images.

    Each step: ``z_0 ~ B(p)`` from the cached encoder probabilities, ``t ~ U{1..T}``,
    ``z_t ~ q(z_t | z_0)``, loss = BCE in bits between the predicted and the true flips
    ``z_t XOR z_0`` (uniform time sampling, no loss weighting, as the reference).

    Parameters
    ----------
    unet : EpsUNet
        The network (trained in place; also returned).
    latent_probabilities : torch.Tensor of shape (n, C, h, w)
        ``sigmoid(E(x))`` of the training images (see :func:`encode_dataset`).
    schedule : BernoulliSchedule, optional
        Noise schedule and forward process (``schedule.forward_process``); defaults to the
        linear schedule with T = 1000 and the paper's symmetric forward process.
    n_iterations : int, default=1000
        Total optimiser steps (including steps done before a resume).
    batch_size : int, default=32
        Global batch size (split over processes under ``torchrun``).
    learning_rate : float, default=1e-4
        Adam learning rate.
    ema_rate : float or None, default=0.999
        EMA decay of the weights (0.999 as the reference); ``None`` or 0 disables the EMA.
    max_grad_norm : float, optional
        Clip the gradient norm.
    device : str or torch.device, default="auto"
        Training device.
    precision : {"fp32", "bf16", "fp16"}, default="fp32"
        Autocast precision of the forward pass (``"fp16"`` uses a gradient scaler, CUDA only).
    seed : int, default=0
        Seeds batch order, code sampling and noise (weights are initialised by the caller).
    verbose : int, default=1
        0 hides the progress bar.
    checkpoint_path : str or path-like, optional
        File for checkpoints; training resumes from it when it exists.
    checkpoint_every : int, optional
        Steps between checkpoints (a checkpoint is also written at the end and on Ctrl-C).
    log_every : int, default=10
        Steps between history entries (and host synchronisations).
    callback : callable, optional
        ``callback(step)`` after every step.
    validation_probabilities : torch.Tensor of shape (m, C, h, w), optional
        Encoder probabilities of held-out healthy images. Every ``validate_every`` steps
        the diffusion loss of the inference weights (EMA) on them is added to the history
        as ``"validation_loss"``, always on the same draws of codes, times and noise, so
        the curve shows when training plateaus.
    validate_every : int, optional
        Steps between validation losses; a multiple of ``log_every``. Default: about 20
        points over the run.

    Returns
    -------
    result : TrainingResult

    Examples
    --------
    >>> from skberdiff.nn import build_unet
    >>> res = train_diffusion(build_unet("tiny", seed=0), torch.rand(6, 16, 4, 4),
    ...                       n_iterations=3, batch_size=2, device="cpu", verbose=0)
    >>> res.n_steps
    3
    """
    device = resolve_device(device)
    precision = check_precision(precision, device)
    schedule = schedule if schedule is not None else make_schedule()
    data = _as_tensor_data(latent_probabilities, "latent_probabilities")
    if data.min() < 0 or data.max() > 1:
        raise ValueError("latent_probabilities must lie in [0, 1].")
    if data.shape[1] != unet.latent_channels:
        raise ValueError(f"latents have {data.shape[1]} channels but the UNet expects "
                         f"{unet.latent_channels}.")
    factor = unet.downsampling_factor
    if data.shape[2] % factor or data.shape[3] % factor:
        raise ValueError(f"latent size {tuple(data.shape[2:])} is not divisible by the UNet's "
                         f"downsampling factor {factor}; use fewer UNet levels or larger "
                         "images.")
    loop = _TrainingLoop(
        n_samples=data.shape[0], n_iterations=n_iterations, batch_size=batch_size, seed=seed,
        device=device, desc="diffusion", verbose=verbose, checkpoint_path=checkpoint_path,
        checkpoint_every=checkpoint_every, log_every=log_every, callback=callback,
        fingerprint={"kind": "diffusion", "config": repr(unet.config),
                     "batch_size": int(batch_size), "n_samples": int(data.shape[0]),
                     "forward_process": schedule.forward_process,
                     "T": schedule.n_timesteps},
        learning_rate=learning_rate,
    )
    data = _maybe_to_device(data, device)
    unet.to(device).train()
    model = _wrap_ddp(unet, device, loop.world)
    updater = _Updater(unet, loop, name="model", learning_rate=learning_rate,
                       precision=precision, ema_rate=ema_rate, max_grad_norm=max_grad_norm)
    if validation_probabilities is not None:
        if validate_every is None:
            validate_every = max(1, int(n_iterations) // (20 * loop.log_every)) * loop.log_every
        validate_every = check_int(validate_every, "validate_every", low=1)
        if validate_every % loop.log_every:
            raise ValueError(f"validate_every={validate_every} must be a multiple of "
                             f"log_every={loop.log_every}.")
        loop.validate = (validate_every, _validation_loss_fn(
            updater, unet, validation_probabilities, schedule, batch_size, device, precision))

    def step_fn(indices):
        p = _fetch(data, indices, device)
        z0 = (loop.rand(*p.shape) < p).float()
        t = loop.randint(1, schedule.n_timesteps + 1, (p.shape[0],))
        # Forward noise for the whole global batch, so every process sees the same draws.
        z_t, target, model_t = training_example(z0, schedule, rng=loop.noise_generator, t=t)
        z_t, target, model_t = loop.shard(z_t), loop.shard(target), loop.shard(model_t)
        with autocast(device, precision):
            logits = model(z_t, model_t)
        loss = diffusion_loss(logits, target)
        updater.step(loss)
        return {"loss": loss.detach()}

    loop.run(step_fn)
    return updater.result()


def _validation_loss_fn(updater, unet, probabilities, schedule, batch_size, device, precision,
                        n_points=256, seed=0):
    """A function giving the diffusion loss of the inference weights on fixed held-out draws.

    Codes, times (stratified over 1..T) and noise are drawn once, so successive values
    differ only through the weights.
    """
    data = _as_tensor_data(probabilities, "validation_probabilities")
    if data.shape[1] != unet.latent_channels:
        raise ValueError(f"validation latents have {data.shape[1]} channels but the UNet "
                         f"expects {unet.latent_channels}.")
    repeats = max(1, min(8, -(-n_points // data.shape[0])))
    p = data.repeat(repeats, 1, 1, 1)
    generator = torch.Generator().manual_seed(seed)
    z0 = (torch.rand(p.shape, generator=generator) < p).float()
    t = torch.linspace(1, schedule.n_timesteps, p.shape[0]).round().long()
    z_t, target, model_t = training_example(z0, schedule, rng=generator, t=t)

    @torch.no_grad()
    def validate():
        model = updater.ema.module if updater.ema is not None else unet
        losses = []
        for start in range(0, z_t.shape[0], batch_size):
            batch = slice(start, start + batch_size)
            with autocast(device, precision):
                logits = model(z_t[batch].to(device), model_t[batch].to(device))
            losses.append(diffusion_loss(logits, target[batch].to(device), reduction="none"))
        return torch.cat(losses).mean()

    return validate

"""Running skberdiff on several processes: initialisation and sharded inference.

Training needs nothing from this module: once a process group is initialised (for example
by :func:`init_from_env` under ``torchrun``), :func:`skberdiff.training.train_autoencoder`,
:func:`skberdiff.training.train_diffusion` and hence
:meth:`MaskedBernoulliDiffusionDetector.fit` wrap the networks in
``DistributedDataParallel``. Every process draws the same global batch and noise and trains
on its slice, so ``k`` processes with a global batch ``B`` train the same model as one
process with batch ``B`` (up to floating-point summation order).

Inference is embarrassingly parallel: the detector's noise is keyed by each image's content
and the random seed, so an image gives the same output whichever process handles it.
:func:`distributed_detect` splits a data set into one contiguous shard per process, runs
:meth:`MaskedBernoulliDiffusionDetector.detect` on each and gathers the results in the
original order.
"""

import dataclasses
import datetime
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "DistributedContext",
    "init_from_env",
    "shard_indices",
    "shard_inference",
    "distributed_detect",
]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a (possibly single-process) job.

    Attributes
    ----------
    rank : int
        Global rank (0 on a single process).
    world_size : int
        Number of processes.
    local_rank : int
        Rank on this node; selects the GPU.
    device : torch.device
        The device this process should use (``cuda:<local_rank>`` with NCCL, else the CPU or
        the default CUDA device).
    backend : str or None
        ``"nccl"`` or ``"gloo"``; None when no process group is initialised.

    Examples
    --------
    >>> ctx = DistributedContext(rank=0, world_size=1, local_rank=0,
    ...                          device=torch.device("cpu"), backend=None)
    >>> ctx.world_size
    1
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def is_main_process(self) -> bool:
        """True on rank 0 (the process that should write files and print)."""
        return self.rank == 0


def _env_int(names, default):
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                raise ValueError(
                    f"Environment variable {name}={value!r} is not an integer.") from None
    return default


def _group_info():
    """(rank, world size) of the initialised default group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(backend: str | None = None, *, timeout_s: float | None = None,
                  set_device: bool = True) -> DistributedContext:
    """Initialise ``torch.distributed`` from the variables set by ``torchrun`` or SLURM.

    Reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (``torchrun``), falling back to
    ``SLURM_PROCID``, ``SLURM_NTASKS`` and ``SLURM_LOCALID`` (one task per GPU started by
    ``srun``). The rendezvous uses ``MASTER_ADDR`` and ``MASTER_PORT`` (``torchrun`` sets
    them; under plain ``srun`` export them in the batch script). Without these variables, or
    with a world size of 1, nothing is initialised and a single-process context is returned,
    so the same script runs with or without a launcher. If a process group already exists,
    it is described and left alone.

    Parameters
    ----------
    backend : {"nccl", "gloo"}, default=None
        None picks NCCL when CUDA is available, else gloo.
    timeout_s : float, default=None
        Timeout of collective operations in seconds (torch's default when None).
    set_device : bool, default=True
        With CUDA, call ``torch.cuda.set_device(local_rank)`` so that ``device="auto"`` or
        ``"cuda"`` in skberdiff means this process's GPU.

    Returns
    -------
    context : DistributedContext

    Raises
    ------
    RuntimeError
        If a multi-process launch is detected but ``MASTER_ADDR`` or ``MASTER_PORT`` is
        missing, or if the node has fewer GPUs than ``LOCAL_RANK`` needs (a single visible GPU
        is used by any local rank: the case of ``srun --gpus-per-task=1``).

    Examples
    --------
    Without launcher variables this is a single-process no-op:

    >>> ctx = init_from_env()
    >>> ctx.rank, ctx.world_size, ctx.backend
    (0, 1, None)

    Under ``torchrun --nproc_per_node 4 train.py``, in ``train.py``:

    >>> ctx = init_from_env()  # doctest: +SKIP
    >>> det = MaskedBernoulliDiffusionDetector(device=ctx.device).fit(X)  # doctest: +SKIP
    """
    rank = _env_int(("RANK", "SLURM_PROCID"), 0)
    world_size = _env_int(("WORLD_SIZE", "SLURM_NTASKS"), 1)
    local_rank = _env_int(("LOCAL_RANK", "SLURM_LOCALID"), 0)
    cuda = torch.cuda.is_available()

    if dist.is_available() and dist.is_initialized():
        backend_now = dist.get_backend()
        rank, world_size = dist.get_rank(), dist.get_world_size()
        device = _device_for(local_rank, cuda, set_device)
        return DistributedContext(rank, world_size, local_rank, device, backend_now)

    if world_size <= 1:
        device = _device_for(local_rank, cuda, set_device and "LOCAL_RANK" in os.environ)
        return DistributedContext(0, 1, local_rank, device, None)

    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this build of torch.")
    if backend is None:
        backend = "nccl" if cuda else "gloo"
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"backend must be 'nccl', 'gloo' or None, got {backend!r}.")
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise RuntimeError(
            f"{world_size} processes requested but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set. torchrun sets them; under srun "
            "export MASTER_ADDR (the first node of the allocation) and a free MASTER_PORT."
        )
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside [0, {world_size}).")
    device = _device_for(local_rank, cuda, set_device)
    kwargs = {}
    if timeout_s is not None:
        kwargs["timeout"] = datetime.timedelta(seconds=float(timeout_s))
    dist.init_process_group(backend, init_method="env://", rank=rank,
                            world_size=world_size, **kwargs)
    return DistributedContext(rank, world_size, local_rank, device, backend)


def _device_for(local_rank, use_cuda, set_device):
    if not use_cuda:
        return torch.device("cpu")
    n_gpus = torch.cuda.device_count()
    if local_rank >= n_gpus == 1:
        # One visible GPU per task (srun --gpus-per-task=1 restricts CUDA_VISIBLE_DEVICES).
        local_rank = 0
    elif local_rank >= n_gpus:
        raise RuntimeError(
            f"LOCAL_RANK={local_rank} but this node has {n_gpus} GPU(s); start at most one "
            "process per GPU (torchrun --nproc_per_node)."
        )
    if set_device:
        torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def shard_indices(n: int, rank: int | None = None, world_size: int | None = None) -> np.ndarray:
    """Indices of this process's contiguous shard of ``n`` items.

    Shards differ in size by at most one; concatenating them in rank order gives
    ``0, ..., n - 1``. ``rank`` and ``world_size`` default to the initialised process group
    (or a single process).

    Parameters
    ----------
    n : int
        Number of items.
    rank : int, default=None
        This process's rank.
    world_size : int, default=None
        Number of processes.

    Returns
    -------
    indices : ndarray of int64, shape (n_local,)

    Examples
    --------
    >>> shard_indices(10, rank=0, world_size=3)
    array([0, 1, 2, 3])
    >>> shard_indices(10, rank=2, world_size=3)
    array([7, 8, 9])
    >>> shard_indices(1, rank=1, world_size=2)
    array([], dtype=int64)
    """
    group_rank, group_world = _group_info()
    rank = group_rank if rank is None else rank
    world_size = group_world if world_size is None else world_size
    for value, name in ((n, "n"), (rank, "rank"), (world_size, "world_size")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an integer, got {value!r}.")
    if n < 0 or world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"Need n >= 0, world_size >= 1 and 0 <= rank < world_size; got "
                         f"n={n}, rank={rank}, world_size={world_size}.")
    base, extra = divmod(int(n), int(world_size))
    start = rank * base + min(rank, extra)
    stop = start + base + (1 if rank < extra else 0)
    return np.arange(start, stop, dtype=np.int64)


def _to_host(value):
    """Tensors to CPU (gathering CUDA tensors as objects would pin them to one device)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _to_host(getattr(value, f.name))
                                             for f in dataclasses.fields(value)})
    if isinstance(value, dict):
        return {k: _to_host(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_host(v) for v in value)
    return value


def _concatenate(parts):
    """Concatenate per-shard results along their first axis, keeping their structure."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    first = parts[0]
    if isinstance(first, np.ndarray):
        return np.concatenate(parts, axis=0)
    if isinstance(first, torch.Tensor):
        return torch.cat(parts, dim=0)
    if dataclasses.is_dataclass(first) and not isinstance(first, type):
        return dataclasses.replace(first, **{
            f.name: _concatenate([getattr(p, f.name) for p in parts])
            for f in dataclasses.fields(first)})
    if isinstance(first, dict):
        return {k: _concatenate([p[k] for p in parts]) for k in first}
    if isinstance(first, tuple):
        return tuple(_concatenate([p[i] for p in parts]) for i in range(len(first)))
    if isinstance(first, list):
        return [item for p in parts for item in p]
    raise TypeError(f"Cannot concatenate shard results of type {type(first).__name__}; "
                    "return arrays, tensors, tuples, dicts or dataclasses of them.")


def shard_inference(fn, X, *, all_ranks: bool = False, root: int = 0):
    """Apply ``fn`` to this process's shard of ``X`` and gather the results in order.

    Every process passes the same ``X`` (an array, a memory-mapped array or anything
    indexable by an integer array); each runs ``fn`` on its contiguous shard (see
    :func:`shard_indices`) and the results are gathered with
    ``torch.distributed.gather_object`` (or ``all_gather_object``), which works with gloo and
    NCCL. Without a process group ``fn(X)`` is returned directly.

    Parameters
    ----------
    fn : callable
        ``fn(X_shard)`` returning an array, a tensor, or a tuple, dict or dataclass of them,
        with samples along the first axis. Not called on an empty shard.
    X : array-like of shape (n, ...)
        The full data set, identical on every process.
    all_ranks : bool, default=False
        Return the gathered result on every process; otherwise only on ``root`` (the others
        get None), which saves memory and traffic.
    root : int, default=0
        Rank receiving the result when ``all_ranks`` is False.

    Returns
    -------
    result : same type as ``fn``'s output, or None
        Shard results concatenated in rank order, equal to ``fn(X)`` for per-sample
        functions (tensors come back on the CPU).

    Examples
    --------
    >>> import numpy as np
    >>> shard_inference(lambda x: x * 2, np.arange(4))
    array([0, 2, 4, 6])

    Under ``torchrun``, every rank runs the same call; rank 0 receives the result:

    >>> maps = shard_inference(det.anomaly_map, X)  # doctest: +SKIP
    """
    rank, world = _group_info()
    if world == 1:
        return fn(X)
    if not 0 <= root < world:
        raise ValueError(f"root must be in [0, {world}), got {root}.")
    if not hasattr(X, "__getitem__") or not hasattr(X, "__len__"):
        raise TypeError("X must be an indexable array-like with a length.")
    if not isinstance(X, (np.ndarray, torch.Tensor)):
        X = np.asarray(X)
    n = len(X)
    if n == 0:
        raise ValueError("X is empty.")
    index = shard_indices(n, rank, world)
    local = _to_host(fn(X[index])) if index.size else None
    if all_ranks:
        parts = [None] * world
        dist.all_gather_object(parts, local)
        return _concatenate(parts)
    parts = [None] * world if rank == root else None
    dist.gather_object(local, parts, dst=root)
    return _concatenate(parts) if rank == root else None


def distributed_detect(detector, X, outputs=("score", "anomaly_map", "mask", "reconstruction"),
                       *, all_ranks: bool = False, root: int = 0):
    """:meth:`MaskedBernoulliDiffusionDetector.detect` over all processes of a job.

    Each process restores its shard of ``X`` on its own device; the per-image results are
    gathered in the original order. Because the detector keys its noise by image content,
    the result equals a single-process ``detector.detect(X, outputs)`` up to floating-point
    rounding. Every process needs the same fitted detector (fit on one process, ``save``,
    then ``skberdiff.load`` on each; or fit under ``torchrun``, which trains with DDP).

    Parameters
    ----------
    detector : MaskedBernoulliDiffusionDetector
        A fitted detector, identical on every process.
    X : array-like of shape (n, c, h, w) or (n, c*h*w)
        Images, identical on every process (a ``numpy.memmap`` avoids loading all of them).
    outputs : sequence of {"score", "anomaly_map", "mask", "reconstruction"}
        What to compute, as in ``detect``.
    all_ranks : bool, default=False
        Return the result on every process instead of only on ``root``.
    root : int, default=0
        Rank receiving the result.

    Returns
    -------
    result : DetectionResult or None
        The gathered result (None on other ranks when ``all_ranks`` is False).

    Examples
    --------
    Launched with ``torchrun --nproc_per_node 4 detect.py``:

    >>> import skberdiff
    >>> from skberdiff.distributed import distributed_detect, init_from_env
    >>> ctx = init_from_env()  # doctest: +SKIP
    >>> det = skberdiff.load("model.skbd", device=str(ctx.device))  # doctest: +SKIP
    >>> result = distributed_detect(det, X_test, outputs=("score", "mask"))  # doctest: +SKIP
    >>> if ctx.is_main_process:  # doctest: +SKIP
    ...     np.save("masks.npy", result.mask)
    """
    outputs = tuple(outputs)

    def detect(shard):
        return detector.detect(shard, outputs)

    return shard_inference(detect, X, all_ranks=all_ranks, root=root)

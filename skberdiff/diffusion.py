"""Bernoulli diffusion on binary latents: pure tensor functions.

Notation follows Wolleb et al. (2024), "Binary Noise for Binary Tasks" (eq. numbers refer to
that paper) and Sun et al. / Chen et al.'s Bernoulli diffusion (BerDiff). Paper time ``t`` runs
from 1 to T; ``alpha_bar[0] = 1``. The UNet receives the 0-based index ``t - 1``.

- Forward process (eq. 1-2): ``q(z_t | z_0) = B(abar_t z_0 + (1 - abar_t) / 2)``, i.e.
  ``z_t = z_0 XOR eps`` with ``eps ~ B((1 - abar_t) / 2)``. The public reference code
  effectively uses ``B(abar_t z_0)`` instead (a dropped line continuation); that process is
  available as ``forward_process="reference"`` to reproduce released checkpoints. The schedule
  object (:class:`BernoulliSchedule`) carries the forward process, so training and inference
  cannot disagree about it.
- Posterior (eq. 4/6): ``theta_post(z_t, z_0)`` below, exact for soft ``z_0`` under the prior
  ``z_0 ~ B(p)``; generalised to any earlier time ``s < t`` for step skipping. The paper feeds
  the network's soft prediction ``z~_0 = P(z_0 = 1 | z_t)`` into it
  (``posterior="paper"``), which conditions on ``z_t`` twice; ``posterior="marginal"`` is the
  Bayes-consistent step ``sum_{z_0} p(z_0 | z_t) q(z_s | z_t, z_0)`` (see
  :func:`marginal_posterior_probability`).
- Masked restoration: Algorithm 1, batched with one mask per sample.

Randomness comes from a ``torch.Generator`` or a :class:`CounterRNG`. The counter-based
generator derives every uniform number from (sample seed, stream, position) only, so a
sample's result does not depend on how a data set is split into batches, on the batch
composition, or on the device.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ._validation import check_choice, check_int, check_noise_level, check_probability

__all__ = [
    "FORWARD_PROCESSES",
    "FINAL_STEPS",
    "POSTERIORS",
    "BernoulliSchedule",
    "CounterRNG",
    "RestorationResult",
    "linear_betas",
    "cosine_betas",
    "make_schedule",
    "flip_probability",
    "forward_probability",
    "q_sample",
    "posterior_probability",
    "marginal_posterior_probability",
    "reverse_step_probability",
    "predict_z0",
    "training_example",
    "diffusion_loss",
    "sample_prior",
    "restoration_timesteps",
    "masked_restoration",
]

FORWARD_PROCESSES = ("paper", "reference")
FINAL_STEPS = ("paper", "reference")
POSTERIORS = ("paper", "marginal")

_M32 = 0xFFFFFFFF


# --------------------------------------------------------------------------- randomness
def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer finaliser (xor-shift-multiply) on int64 tensors holding uint32.

    The multiplier is below 2**31 so every product fits in int64 without overflow.
    """
    x = x ^ (x >> 16)
    x = (x * 0x45D9F3B) & _M32
    x = x ^ (x >> 16)
    x = (x * 0x45D9F3B) & _M32
    return x ^ (x >> 16)


class CounterRNG:
    """Counter-based uniform numbers: one independent stream per sample and purpose.

    ``uniform(like, stream)`` returns U[0, 1) numbers for a tensor shaped like ``like``
    (first axis = samples) that depend only on each sample's seed, the integer ``stream``
    and the position inside the sample. Results are therefore identical whatever the batch
    split, the batch composition or the device.

    Parameters
    ----------
    seeds : torch.Tensor or sequence of int, shape (B,)
        One seed per sample (any integers; reduced to 32 bits).

    Examples
    --------
    >>> rng = CounterRNG([1, 2])
    >>> u = rng.uniform(torch.zeros(2, 3), stream=0)
    >>> bool(((u >= 0) & (u < 1)).all())
    True
    >>> torch.equal(CounterRNG([2]).uniform(torch.zeros(1, 3), 0), u[1:])
    True
    """

    def __init__(self, seeds):
        seeds = torch.as_tensor(seeds, dtype=torch.int64).reshape(-1)
        self.seeds = _mix32(seeds & _M32)

    def to(self, device) -> "CounterRNG":
        """Move the seeds to ``device``.

        Parameters
        ----------
        device : str or torch.device
            Device to hold the seeds.

        Returns
        -------
        rng : CounterRNG
            A new generator with the same seeds on ``device``; ``self`` is unchanged.
        """
        out = CounterRNG.__new__(CounterRNG)
        out.seeds = self.seeds.to(device)
        return out

    def __len__(self):
        return self.seeds.shape[0]

    def uniform(self, like: torch.Tensor, stream: int) -> torch.Tensor:
        """U[0, 1) float32 numbers shaped like ``like`` (on its device).

        Parameters
        ----------
        like : torch.Tensor of shape (B, ...)
            Tensor giving the shape and the device; its first axis must match the number of
            seeds. Its values are not read.
        stream : int
            Stream index: different streams give independent numbers for the same seed.

        Returns
        -------
        uniform : torch.Tensor of float32, same shape as ``like``
            Numbers in ``[0, 1)`` on ``like``'s device.
        """
        if like.shape[0] != self.seeds.shape[0]:
            raise ValueError(
                f"CounterRNG has {self.seeds.shape[0]} seeds but the tensor has "
                f"{like.shape[0]} samples."
            )
        n = int(np.prod(like.shape[1:])) if like.dim() > 1 else 1
        seeds = self.seeds.to(like.device)
        key = _mix32(seeds ^ ((int(stream) * 0x9E3779B9) & _M32))
        positions = torch.arange(n, device=like.device, dtype=torch.int64)
        x = (key[:, None] + positions[None, :] * 0x9E3779B1) & _M32
        x = _mix32(_mix32(x) ^ key[:, None])
        # Top 24 bits -> exactly representable float32 in [0, 1).
        u = (x >> 8).to(torch.float32) * (1.0 / 16777216.0)
        return u.reshape(like.shape)


def _uniform(rng, like: torch.Tensor, stream: int) -> torch.Tensor:
    if isinstance(rng, CounterRNG):
        return rng.uniform(like, stream)
    if rng is not None and not isinstance(rng, torch.Generator):
        raise TypeError(
            f"rng must be a torch.Generator, a CounterRNG or None, got {type(rng).__name__}."
        )
    return torch.rand(like.shape, generator=rng, device=like.device, dtype=torch.float32)


def _bernoulli(probability: torch.Tensor, rng, stream: int) -> torch.Tensor:
    return (_uniform(rng, probability, stream) < probability).to(probability.dtype)


# Streams of the counter-based generator: one per purpose, then one per denoising step.
STREAM_ENCODE = 0
STREAM_FORWARD = 1
_STREAM_STEP0 = 16


# --------------------------------------------------------------------------- schedules
def linear_betas(n_timesteps: int = 1000, beta_start: float = 1e-4,
                 beta_end: float = 0.02, max_beta: float = 0.999) -> np.ndarray:
    """Linear beta schedule of DDPM, scaled by ``1000 / T`` as in guided-diffusion.

    The scaling keeps ``abar_T`` small for any ``T``; betas are capped at ``max_beta`` so
    that very short schedules (``T < 50``, used in tests) stay valid.

    Parameters
    ----------
    n_timesteps : int, default=1000
        Number of diffusion steps ``T``.
    beta_start : float, default=1e-4
        First beta for ``T = 1000`` (before the ``1000 / T`` scaling).
    beta_end : float, default=0.02
        Last beta for ``T = 1000`` (before the ``1000 / T`` scaling).
    max_beta : float, default=0.999
        Upper bound on every beta.

    Returns
    -------
    betas : ndarray of shape (n_timesteps,), float64
        ``betas[t - 1] = beta_t``.

    Examples
    --------
    >>> b = linear_betas(1000)
    >>> float(b[0]), float(b[-1])
    (0.0001, 0.02)
    """
    scale = 1000.0 / n_timesteps
    betas = np.linspace(scale * beta_start, scale * beta_end, n_timesteps, dtype=np.float64)
    return np.minimum(betas, max_beta)


def cosine_betas(n_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999,
                 squared: bool = True) -> np.ndarray:
    """Cosine schedule of improved DDPM: ``abar(u) = cos(((u + s) / (1 + s)) pi / 2) ** 2``.

    ``squared=False`` drops the square (the reference code's "cosine" option).

    Parameters
    ----------
    n_timesteps : int, default=1000
        Number of diffusion steps ``T``.
    s : float, default=0.008
        Small offset that keeps ``beta_1`` away from 0.
    max_beta : float, default=0.999
        Upper bound on every beta.
    squared : bool, default=True
        Square the cosine (improved DDPM); ``False`` gives the reference code's variant.

    Returns
    -------
    betas : ndarray of shape (n_timesteps,), float64
        ``betas[t - 1] = beta_t``.

    Examples
    --------
    >>> b = cosine_betas(10)
    >>> bool((b > 0).all() and (b <= 0.999).all())
    True
    """
    power = 2 if squared else 1

    def abar(u):
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** power

    betas = [min(1 - abar((i + 1) / n_timesteps) / abar(i / n_timesteps), max_beta)
             for i in range(n_timesteps)]
    return np.asarray(betas, dtype=np.float64)


@dataclass(frozen=True)
class BernoulliSchedule:
    """Noise schedule and forward process of a Bernoulli diffusion model.

    Parameters
    ----------
    betas : ndarray of shape (T,)
        ``betas[t - 1] = beta_t`` in float64.
    forward_process : {"paper", "reference"}, default="paper"
        ``"paper"``: symmetric flips ``q(z_t | z_0) = B(abar_t z_0 + (1 - abar_t) / 2)``
        (eq. 1-2); ``"reference"``: the public code's ``B(abar_t z_0)``. Training examples
        and the noising at inference both read it from here.

    Attributes
    ----------
    n_timesteps : int
        ``T``.
    alpha_bar : ndarray of shape (T + 1,)
        ``alpha_bar[t] = prod_{s <= t} (1 - beta_s)`` with ``alpha_bar[0] = 1`` (paper indexing).

    Examples
    --------
    >>> sched = make_schedule("linear", 1000)
    >>> round(float(sched.alpha_bar[201]), 4), sched.forward_process
    (0.6563, 'paper')
    """

    betas: np.ndarray
    forward_process: str = "paper"

    def __post_init__(self):
        betas = np.asarray(self.betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size == 0 or not ((betas > 0) & (betas < 1)).all():
            raise ValueError("betas must be a non-empty 1-D array with values in (0, 1).")
        check_choice(self.forward_process, "forward_process", FORWARD_PROCESSES)
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "alpha_bar", np.concatenate([[1.0], np.cumprod(1 - betas)]))

    @property
    def n_timesteps(self) -> int:
        """Number of diffusion steps ``T``."""
        return self.betas.shape[0]

    def alpha_bar_tensor(self, t: torch.Tensor) -> torch.Tensor:
        """``abar_t`` for a tensor of paper times ``t`` (float32 on ``t``'s device).

        Parameters
        ----------
        t : torch.Tensor of int
            Paper times in ``[0, T]``.

        Returns
        -------
        alpha_bar : torch.Tensor of float32, same shape as ``t``
        """
        table = torch.as_tensor(self.alpha_bar, dtype=torch.float32, device=t.device)
        return table[t.long()]


def make_schedule(name: str = "linear", n_timesteps: int = 1000,
                  forward_process: str = "paper") -> BernoulliSchedule:
    """Build a :class:`BernoulliSchedule` by name.

    Parameters
    ----------
    name : {"linear", "cosine"}, default="linear"
        ``"linear"`` is what the paper uses (beta from 1e-4 to 0.02); ``"cosine"`` is the
        improved-DDPM schedule.
    n_timesteps : int, default=1000
        ``T``.
    forward_process : {"paper", "reference"}, default="paper"
        Forward process carried by the schedule (see :class:`BernoulliSchedule`).

    Returns
    -------
    schedule : BernoulliSchedule

    Examples
    --------
    >>> make_schedule("cosine", 50).n_timesteps
    50
    """
    n_timesteps = check_int(n_timesteps, "n_timesteps", low=1)
    check_choice(name, "noise_schedule", ("linear", "cosine"))
    betas = linear_betas(n_timesteps) if name == "linear" else cosine_betas(n_timesteps)
    return BernoulliSchedule(betas, forward_process)


# --------------------------------------------------------------------------- forward
def _per_sample(value, like: torch.Tensor) -> torch.Tensor | float:
    """Broadcast a per-sample tensor (B,) against (B, ...) tensors; floats pass through."""
    if isinstance(value, torch.Tensor):
        return value.to(like.device, like.dtype).reshape((-1,) + (1,) * (like.dim() - 1))
    return float(value)


def flip_probability(alpha_bar):
    """Probability ``(1 - abar_t) / 2`` that the paper's forward process flips a bit (eq. 2).

    Parameters
    ----------
    alpha_bar : float, ndarray or torch.Tensor
        ``abar_t``.

    Returns
    -------
    probability : float, ndarray or torch.Tensor
        Flip probability, of the same type and shape as ``alpha_bar``.

    Examples
    --------
    >>> round(flip_probability(0.6563), 4)
    0.1719
    """
    return (1 - alpha_bar) / 2


def forward_probability(z0: torch.Tensor, alpha_bar,
                        forward_process: str = "paper") -> torch.Tensor:
    """``P(z_t = 1 | z_0)`` of the forward process.

    Parameters
    ----------
    z0 : torch.Tensor of shape (B, C, H, W)
        Clean latent, binary or soft in [0, 1].
    alpha_bar : float or torch.Tensor of shape (B,)
        ``abar_t``.
    forward_process : {"paper", "reference"}, default="paper"
        ``"paper"``: ``abar_t z_0 + (1 - abar_t) / 2`` (eq. 1). ``"reference"``: ``abar_t z_0``
        (what the public code computes).

    Returns
    -------
    probability : torch.Tensor of shape (B, C, H, W)

    Examples
    --------
    >>> forward_probability(torch.tensor([[0.0, 1.0]]), 0.5).tolist()
    [[0.25, 0.75]]
    """
    check_choice(forward_process, "forward_process", FORWARD_PROCESSES)
    ab = _per_sample(alpha_bar, z0)
    if forward_process == "paper":
        return ab * z0 + (1 - ab) / 2
    return ab * z0


def q_sample(z0: torch.Tensor, alpha_bar, rng=None, forward_process: str = "paper",
             stream: int = STREAM_FORWARD) -> torch.Tensor:
    """Sample ``z_t ~ q(z_t | z_0)``.

    For binary ``z_0`` and ``forward_process="paper"`` this is ``z_0 XOR eps`` with
    ``eps ~ B((1 - abar_t) / 2)`` (eq. 2).

    Parameters
    ----------
    z0 : torch.Tensor of shape (B, C, H, W), {0, 1} float
        Clean latent.
    alpha_bar : float or torch.Tensor of shape (B,)
        ``abar_t`` per sample.
    rng : torch.Generator or CounterRNG, optional
        Source of randomness.
    forward_process : {"paper", "reference"}, default="paper"
        Forward process, see :func:`forward_probability`.
    stream : int, default=STREAM_FORWARD
        Stream of a :class:`CounterRNG` (ignored for a ``torch.Generator``).

    Returns
    -------
    z_t : torch.Tensor of shape (B, C, H, W), {0, 1} float

    Examples
    --------
    >>> z0 = torch.ones(1, 4)
    >>> q_sample(z0, 1.0).tolist()
    [[1.0, 1.0, 1.0, 1.0]]
    """
    return _bernoulli(forward_probability(z0, alpha_bar, forward_process), rng, stream)


def posterior_probability(z_t: torch.Tensor, z0: torch.Tensor, alpha_ts,
                          alpha_bar_s) -> torch.Tensor:
    """``theta_post``: probability that ``z_s = 1`` given ``z_t`` and a (soft) ``z_0`` (eq. 6).

    With ``s = t - 1``, ``alpha_ts = alpha_t`` and ``alpha_bar_s = abar_{t-1}`` this is the
    paper's posterior. For any ``s < t`` the forward steps from ``s`` to ``t`` compose into one
    XOR with flip probability ``(1 - abar_t / abar_s) / 2`` (products of ``1 - 2 * flip``
    multiply), so ``alpha_ts = abar_t / abar_s`` gives the exact skip-step posterior.

    ``theta = A1 B1 / (A1 B1 + A0 B0)`` with ``A1 = a z_t + (1-a)/2``,
    ``A0 = a (1 - z_t) + (1-a)/2``, ``B1 = ab z_0 + (1-ab)/2``, ``B0 = ab (1 - z_0) + (1-ab)/2``.

    Parameters
    ----------
    z_t : torch.Tensor of shape (B, C, H, W), {0, 1} float
        Current latent.
    z0 : torch.Tensor of shape (B, C, H, W), values in [0, 1]
        (Predicted) clean latent; a soft value ``p`` is the prior ``z_0 ~ B(p)``.
    alpha_ts : float or torch.Tensor of shape (B,)
        ``abar_t / abar_s``.
    alpha_bar_s : float or torch.Tensor of shape (B,)
        ``abar_s`` (1 when ``s = 0``).

    Returns
    -------
    theta : torch.Tensor of shape (B, C, H, W), values in [0, 1]

    Examples
    --------
    >>> z_t, z0 = torch.tensor([[1.0]]), torch.tensor([[1.0]])
    >>> float(posterior_probability(z_t, z0, 0.9, 1.0))
    1.0
    """
    a = _per_sample(alpha_ts, z_t)
    ab = _per_sample(alpha_bar_s, z_t)
    a1 = a * z_t + (1 - a) / 2
    a0 = a * (1 - z_t) + (1 - a) / 2
    b1 = ab * z0 + (1 - ab) / 2
    b0 = ab * (1 - z0) + (1 - ab) / 2
    numerator = a1 * b1
    return (numerator / (numerator + a0 * b0)).clamp_(0.0, 1.0)


def marginal_posterior_probability(z_t: torch.Tensor, z0_probability: torch.Tensor, alpha_ts,
                                   alpha_bar_s) -> torch.Tensor:
    """Bayes-consistent reverse step: ``sum_{z_0} p(z_0 | z_t) q(z_s = 1 | z_t, z_0)``.

    ``z0_probability`` is the network's ``z~_0 = P(z_0 = 1 | z_t)``, which is already
    conditioned on ``z_t``. The paper's step (:func:`posterior_probability` fed ``z~_0``)
    treats it as a prior and multiplies by the likelihood of ``z_t`` again, so the sampler
    keeps the current bit too often and injected noise survives to the output. Here the
    unknown ``z_0`` is marginalised instead (the x0-parameterisation of D3PM)::

        p(z_s = 1 | z_t) = z~_0 theta_post(z_t, 1) + (1 - z~_0) theta_post(z_t, 0)

    Same cost as the paper's step, no extra network call; identical to it for binary
    ``z_0`` (the stitched, unmasked entries of Algorithm 1). Skip steps ``s < t`` use the
    composed ``alpha_ts = abar_t / abar_s``. Worked example at ``t = 1`` (``abar_0 = 1``):
    ``z_1 = 1, z~_0 = 0.1`` gives 0.1 here and 0.9996 with the paper's step.

    Parameters
    ----------
    z_t : torch.Tensor of shape (B, C, H, W), {0, 1} float
        Current latent.
    z0_probability : torch.Tensor of shape (B, C, H, W), values in [0, 1]
        ``P(z_0 = 1 | z_t)``.
    alpha_ts : float or torch.Tensor of shape (B,)
        ``abar_t / abar_s``.
    alpha_bar_s : float or torch.Tensor of shape (B,)
        ``abar_s`` (1 when ``s = 0``).

    Returns
    -------
    probability : torch.Tensor of shape (B, C, H, W), values in [0, 1]
        ``P(z_s = 1 | z_t)``.

    Examples
    --------
    >>> z_1, p = torch.tensor([[1.0]]), torch.tensor([[0.1]])
    >>> round(float(marginal_posterior_probability(z_1, p, 0.9999, 1.0)), 4)
    0.1
    >>> round(float(posterior_probability(z_1, p, 0.9999, 1.0)), 4)
    0.9996
    """
    one = torch.ones_like(z_t)
    theta_one = posterior_probability(z_t, one, alpha_ts, alpha_bar_s)
    theta_zero = posterior_probability(z_t, one.zero_(), alpha_ts, alpha_bar_s)
    return (z0_probability * theta_one + (1 - z0_probability) * theta_zero).clamp_(0.0, 1.0)


def reverse_step_probability(z_t: torch.Tensor, z0_hat: torch.Tensor, alpha_ts, alpha_bar_s,
                             posterior: str = "paper") -> torch.Tensor:
    """``P(z_s = 1 | z_t)`` of one denoising step with the chosen posterior.

    Parameters
    ----------
    z_t : torch.Tensor of shape (B, C, H, W), {0, 1} float
        Current latent.
    z0_hat : torch.Tensor of shape (B, C, H, W), values in [0, 1]
        (Stitched) prediction of ``z_0``.
    alpha_ts : float or torch.Tensor of shape (B,)
        ``abar_t / abar_s``.
    alpha_bar_s : float or torch.Tensor of shape (B,)
        ``abar_s``.
    posterior : {"paper", "marginal"}, default="paper"
        ``"paper"``: eq. 4, :func:`posterior_probability` fed ``z0_hat``; ``"marginal"``:
        :func:`marginal_posterior_probability`.

    Returns
    -------
    probability : torch.Tensor of shape (B, C, H, W)

    Examples
    --------
    >>> z_t, z0 = torch.tensor([[0.0]]), torch.tensor([[1.0]])
    >>> float(reverse_step_probability(z_t, z0, 0.5, 1.0, "marginal"))
    1.0
    """
    check_choice(posterior, "posterior", POSTERIORS)
    if posterior == "paper":
        return posterior_probability(z_t, z0_hat, alpha_ts, alpha_bar_s)
    return marginal_posterior_probability(z_t, z0_hat, alpha_ts, alpha_bar_s)


def predict_z0(z_t: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """``z~_0 = |z_t - eps_theta(z_t, t)|``: probability that each entry of ``z_0`` is 1.

    Parameters
    ----------
    z_t : torch.Tensor of shape (B, C, H, W), {0, 1} float
        Current latent.
    flip : torch.Tensor of shape (B, C, H, W), values in [0, 1]
        Predicted flip probabilities ``sigmoid(eps_theta(z_t, t))``.

    Returns
    -------
    z0_probability : torch.Tensor of shape (B, C, H, W), values in [0, 1]
        ``P(z_0 = 1 | z_t)``.

    Examples
    --------
    >>> predict_z0(torch.tensor([1.0, 0.0]), torch.tensor([0.25, 0.25])).tolist()
    [0.75, 0.25]
    """
    return (z_t - flip).abs()


def sample_prior(shape, rng=None, device=None) -> torch.Tensor:
    """Draw ``z_T ~ B(1/2)`` (the stationary distribution of the paper's forward process).

    Parameters
    ----------
    shape : tuple of int
        Shape of the latent, e.g. ``(B, C, H, W)``.
    rng : torch.Generator or CounterRNG, optional
        Source of randomness (a :class:`CounterRNG` draws from its forward stream).
    device : str or torch.device, optional
        Device of the result; ``None`` means PyTorch's default device.

    Returns
    -------
    z_T : torch.Tensor of shape ``shape``, {0, 1} float
        Uniformly random bits.

    Examples
    --------
    >>> set(sample_prior((2, 3), torch.Generator().manual_seed(0)).unique().tolist()) <= {0., 1.}
    True
    """
    like = torch.empty(shape, device=device)
    return _bernoulli(torch.full_like(like, 0.5), rng, STREAM_FORWARD)


# --------------------------------------------------------------------------- training
def training_example(z0: torch.Tensor, schedule: BernoulliSchedule, *, rng=None,
                     t: torch.Tensor | None = None):
    """Draw a training example: ``t ~ U{1..T}``, ``z_t ~ q(z_t | z_0)`` and the flip target.

    Parameters
    ----------
    z0 : torch.Tensor of shape (B, C, H, W), {0, 1} float
        Clean binary latents.
    schedule : BernoulliSchedule
        Noise schedule; its ``forward_process`` noises ``z0``.
    rng : torch.Generator, optional
        Source of randomness (on ``z0``'s device).
    t : torch.Tensor of shape (B,), optional
        Paper times to use instead of uniform draws.

    Returns
    -------
    z_t : torch.Tensor of shape (B, C, H, W)
        Noisy latents.
    target : torch.Tensor of shape (B, C, H, W)
        ``z_t XOR z_0``, the flips the model must predict.
    model_t : torch.Tensor of shape (B,)
        0-based time index ``t - 1`` to feed the UNet.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> z_t, target, model_t = training_example(torch.ones(2, 3), make_schedule(), rng=g)
    >>> torch.equal(target, 1 - z_t)
    True
    """
    if t is None:
        t = torch.randint(1, schedule.n_timesteps + 1, (z0.shape[0],), generator=rng,
                          device=z0.device)
    z_t = q_sample(z0, schedule.alpha_bar_tensor(t), rng, schedule.forward_process)
    target = (z_t - z0).abs()
    return z_t, target, (t - 1).to(torch.float32)


def diffusion_loss(flip_logits: torch.Tensor, target: torch.Tensor,
                   reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy between predicted flips and true flips, in bits.

    The reference clamps probabilities to ``[1e-7, 1 - 1e-7]``; logits give the same loss
    without clamping and stay stable in reduced precision.

    Parameters
    ----------
    flip_logits : torch.Tensor of shape (B, C, H, W)
        UNet output (pre-sigmoid).
    target : torch.Tensor of shape (B, C, H, W)
        ``z_t XOR z_0``.
    reduction : {"mean", "none"}, default="mean"
        ``"none"`` returns the per-sample loss (mean over C, H, W).

    Returns
    -------
    loss : torch.Tensor, scalar or of shape (B,)
        Loss in bits: the batch mean for ``reduction="mean"``, one value per sample for
        ``reduction="none"``.

    Examples
    --------
    >>> round(float(diffusion_loss(torch.zeros(1, 2), torch.ones(1, 2))), 6)
    1.0
    """
    bce = F.binary_cross_entropy_with_logits(flip_logits.float(), target.float(),
                                             reduction="none")
    per_sample = bce.flatten(1).mean(dim=1) / math.log(2.0)
    if reduction == "none":
        return per_sample
    if reduction == "mean":
        return per_sample.mean()
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}.")


# --------------------------------------------------------------------------- restoration
@dataclass
class RestorationResult:
    """Output of :func:`masked_restoration`.

    Attributes
    ----------
    latent : torch.Tensor of shape (B, C, H, W)
        Restored latent ``z_0``: binary for ``final_step="paper"``, soft for ``"reference"``.
    mask : torch.Tensor of shape (B, C, H, W), bool
        Final mask ``M_0``: entries whose predicted flip probability exceeded ``P`` at some
        step (all True when ``P = 0``, i.e. no stitching).
    masked_fraction : torch.Tensor of shape (B,)
        Share of masked entries, the paper's image-level anomaly score.
    injected : torch.Tensor of shape (B, C, H, W), bool
        Entries flipped by the noise injected at step ``L`` (``z_L XOR z``), known exactly.
    initial_flip : torch.Tensor of shape (B, C, H, W)
        Flip probabilities predicted at the first step ``t = L``.
    timesteps : list of int
        Paper times visited, from ``L`` down to 0.
    mean_flip : torch.Tensor of shape (n_steps, B)
        Mean predicted flip probability per step and sample.
    step_masked_fraction : torch.Tensor of shape (n_steps, B)
        Masked fraction after each step (non-decreasing).

    Examples
    --------
    >>> res = masked_restoration(lambda z_t, t: torch.zeros_like(z_t), torch.zeros(1, 2, 2, 2),
    ...                          schedule=make_schedule(), noise_level=3, mask_threshold=0.5)
    >>> res.timesteps, tuple(res.step_masked_fraction.shape)
    ([3, 2, 1, 0], (3, 1))
    """

    latent: torch.Tensor
    mask: torch.Tensor
    masked_fraction: torch.Tensor
    injected: torch.Tensor
    initial_flip: torch.Tensor
    timesteps: list
    mean_flip: torch.Tensor
    step_masked_fraction: torch.Tensor


def restoration_timesteps(noise_level: int, n_steps: int | None = None) -> list:
    """Paper times visited by the sampler, from ``L`` down to 0.

    ``L = t_0 > t_1 > ... > t_n = 0``. ``n_steps=None`` (or ``L``) gives every step
    ``L, L-1, ..., 1, 0`` as Algorithm 1; fewer steps are evenly strided.

    Parameters
    ----------
    noise_level : int
        ``L``.
    n_steps : int, optional
        Number of denoising steps in ``[1, L]``.

    Returns
    -------
    times : list of int

    Examples
    --------
    >>> restoration_timesteps(4)
    [4, 3, 2, 1, 0]
    >>> restoration_timesteps(200, 4)
    [200, 150, 100, 50, 0]
    """
    noise_level = int(noise_level)
    n_steps = check_int(noise_level if n_steps is None else n_steps, "n_steps", low=1,
                        high=noise_level)
    times = np.round(np.linspace(noise_level, 0, n_steps + 1)).astype(int)
    return [int(t) for t in times]


def injected_noise_loss(flip: torch.Tensor, injected: torch.Tensor) -> torch.Tensor:
    """Per-position denoising loss of known injected noise, in bits.

    The binary cross-entropy between predicted flip probabilities and the flips that were
    really injected, averaged over latent channels. On healthy codes a trained model
    predicts its own noise well; codes it has not seen in training (anomalies) make it
    mispredict, so the loss is a latent-resolution anomaly map.

    Parameters
    ----------
    flip : torch.Tensor of shape (B, C, H, W)
        Predicted flip probabilities ``sigmoid(eps_theta(z_t, t))``.
    injected : torch.Tensor of shape (B, C, H, W), bool or {0, 1}
        The flips ``z_t XOR z_0`` actually injected.

    Returns
    -------
    loss : torch.Tensor of shape (B, H, W), float32

    Examples
    --------
    >>> flip = torch.full((1, 2, 1, 2), 0.5)
    >>> injected_noise_loss(flip, torch.zeros(1, 2, 1, 2)).tolist()
    [[[1.0, 1.0]]]
    """
    bce = F.binary_cross_entropy(flip.float().clamp(1e-6, 1 - 1e-6), injected.float(),
                                 reduction="none")
    return bce.mean(dim=1) / math.log(2.0)


def masked_restoration(denoise_fn, z: torch.Tensor, *, schedule: BernoulliSchedule,
                       noise_level: int, mask_threshold: float, n_steps: int | None = None,
                       final_step: str = "paper", posterior: str = "paper",
                       rng=None) -> RestorationResult:
    """Algorithm 1: noise a latent for ``L`` steps and denoise it, stitching unmasked entries.

    For each step ``t -> s`` (``s = t - 1`` unless steps are skipped)::

        eps     = sigmoid(denoise_fn(z_t, t - 1))          # flip probabilities
        z0_hat  = |z_t - eps|                               # prediction of z_0
        M       = M or (eps > P)                            # mask only grows
        z0_st   = M * z0_hat + (1 - M) * z                  # stitch the input code back
        z_s     ~ B(p(z_s | z_t, z0_st))                    # eq. 4, or its marginal form

    All samples of the batch run together with their own masks; the loop has no host-device
    synchronisation (step scalars are Python floats computed before the loop).

    Parameters
    ----------
    denoise_fn : callable
        ``denoise_fn(z_t, model_t) -> flip logits`` with ``model_t`` (B,) float 0-based time
        indices; usually the UNet (wrapped in autocast by the caller if desired).
    z : torch.Tensor of shape (B, C, H, W), {0, 1} float
        Binary code of the input image, ``z ~ B(sigmoid(E(x)))``.
    schedule : BernoulliSchedule
        Noise schedule used in training; its ``forward_process`` noises ``z``.
    noise_level : int
        ``L`` in [1, T].
    mask_threshold : float
        ``P`` in [0, 1]. ``0`` means no mask (no stitching: plain denoising); ``P >= 1`` never
        masks, so the input code is kept.
    n_steps : int, optional
        Number of denoising steps (``<= L``); ``None`` means ``L`` (Algorithm 1).
    final_step : {"paper", "reference"}, default="paper"
        ``"paper"``: the last step stitches, updates the mask and samples a binary ``z_0``.
        ``"reference"``: the last step returns the soft, unstitched ``|z_1 - eps|`` without
        updating the mask (the public code).
    posterior : {"paper", "marginal"}, default="paper"
        Reverse step, see :func:`reverse_step_probability`.
    rng : torch.Generator or CounterRNG, optional
        Source of randomness.

    Returns
    -------
    result : RestorationResult

    Examples
    --------
    >>> never_flip = lambda z_t, t: torch.full_like(z_t, -20.0)
    >>> z = torch.randint(0, 2, (2, 3, 4, 4), generator=torch.Generator().manual_seed(0)).float()
    >>> res = masked_restoration(never_flip, z, schedule=make_schedule(), noise_level=10,
    ...                          mask_threshold=0.5, rng=torch.Generator().manual_seed(1))
    >>> torch.equal(res.latent, z), res.masked_fraction.tolist()
    (True, [0.0, 0.0])
    """
    noise_level = check_noise_level(noise_level, schedule.n_timesteps)
    mask_threshold = check_probability(mask_threshold, "mask_threshold")
    check_choice(final_step, "final_step", FINAL_STEPS)
    check_choice(posterior, "posterior", POSTERIORS)
    if z.dim() < 2:
        raise ValueError(f"z must have a batch axis, got shape {tuple(z.shape)}.")
    times = restoration_timesteps(noise_level, n_steps)
    ab = schedule.alpha_bar
    z = z.float()
    batch = z.shape[0]
    stitch = mask_threshold > 0.0

    z_t = q_sample(z, float(ab[noise_level]), rng, schedule.forward_process,
                   stream=STREAM_FORWARD)
    injected = z_t != z
    mask = torch.zeros_like(z, dtype=torch.bool) if stitch else torch.ones_like(z, dtype=torch.bool)
    n = len(times) - 1
    mean_flip = torch.empty(n, batch, device=z.device)
    step_fraction = torch.empty(n, batch, device=z.device)
    model_t = [torch.full((batch,), float(t - 1), device=z.device) for t in times[:-1]]
    initial_flip = None

    for k in range(n):
        t, s = times[k], times[k + 1]
        flip = torch.sigmoid(denoise_fn(z_t, model_t[k]).float())
        if k == 0:
            initial_flip = flip
        z0_hat = predict_z0(z_t, flip)
        mean_flip[k] = flip.flatten(1).mean(1)
        if s == 0 and final_step == "reference":
            step_fraction[k] = mask.flatten(1).float().mean(1)
            z_t = z0_hat
            break
        if stitch:
            mask |= flip > mask_threshold
            z0_hat = torch.where(mask, z0_hat, z)
        step_fraction[k] = mask.flatten(1).float().mean(1)
        theta = reverse_step_probability(z_t, z0_hat, float(ab[t] / ab[s]), float(ab[s]),
                                         posterior)
        z_t = _bernoulli(theta, rng, _STREAM_STEP0 + t)

    return RestorationResult(
        latent=z_t,
        mask=mask,
        masked_fraction=mask.flatten(1).float().mean(1),
        injected=injected,
        initial_flip=initial_flip,
        timesteps=times,
        mean_flip=mean_flip,
        step_masked_fraction=step_fraction,
    )

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from skberdiff.diffusion import (
    BernoulliSchedule,
    CounterRNG,
    cosine_betas,
    diffusion_loss,
    forward_probability,
    injected_noise_loss,
    make_schedule,
    marginal_posterior_probability,
    masked_restoration,
    posterior_probability,
    predict_z0,
    q_sample,
    restoration_timesteps,
    reverse_step_probability,
    sample_prior,
    training_example,
)

SCHEDULE = make_schedule("linear", 1000)
unit = st.floats(0.0, 1.0, allow_nan=False)
alpha = st.floats(1e-6, 1.0 - 1e-6, allow_nan=False)


def test_linear_schedule_reference_values():
    # Reference values of the 0-based array of the public code at index i = paper time i + 1.
    ab = SCHEDULE.alpha_bar
    assert ab[0] == 1.0
    for i, expected in [(100, 0.8951), (200, 0.6563), (300, 0.3940), (400, 0.1936),
                        (500, 0.0778)]:
        assert ab[i + 1] == pytest.approx(expected, abs=1e-4)
    assert ab[1000] == pytest.approx(4.0e-5, rel=0.05)
    assert (1 - ab[201]) / 2 == pytest.approx(0.172, abs=5e-4)


def test_cosine_schedule_and_bad_names():
    sched = make_schedule("cosine", 100)
    assert np.all(np.diff(sched.alpha_bar) < 0)
    assert np.all(cosine_betas(100, squared=False) <= 0.999)
    with pytest.raises(ValueError, match="noise_schedule must be one of"):
        make_schedule("quadratic")
    with pytest.raises(ValueError, match="n_timesteps"):
        make_schedule("linear", 0)
    with pytest.raises(ValueError, match="forward_process must be one of"):
        make_schedule("linear", 10, forward_process="buggy")
    assert make_schedule("linear", 10, "reference").forward_process == "reference"


@given(z0=unit, ab=unit, process=st.sampled_from(["paper", "reference"]))
def test_forward_probability_stays_in_unit_interval(z0, ab, process):
    p = forward_probability(torch.tensor([[z0]], dtype=torch.float64), ab, process)
    assert 0.0 <= float(p) <= 1.0


@given(zt=st.sampled_from([0.0, 1.0]), z0=unit, a=alpha, ab=st.floats(0.0, 1.0))
def test_posterior_stays_in_unit_interval(zt, z0, a, ab):
    theta = posterior_probability(torch.tensor([[zt]], dtype=torch.float64),
                                  torch.tensor([[z0]], dtype=torch.float64), a, ab)
    assert 0.0 <= float(theta) <= 1.0


def _flip(x, y, keep):
    """P(y | x) for one XOR step with 'keep' = 1 - 2 * flip probability."""
    f = (1 - keep) / 2
    return f if x != y else 1 - f


@given(zt=st.sampled_from([0, 1]), p=unit, a=alpha, ab=alpha)
def test_posterior_equals_brute_force_bayes(zt, p, a, ab):
    # Prior z0 ~ B(p); z_s | z0 flips with (1 - ab) / 2; z_t | z_s flips with (1 - a) / 2.
    joint = {zs: sum((p if z0 else 1 - p) * _flip(z0, zs, ab) * _flip(zs, zt, a)
                     for z0 in (0, 1)) for zs in (0, 1)}
    expected = joint[1] / (joint[0] + joint[1])
    theta = posterior_probability(torch.tensor([[float(zt)]], dtype=torch.float64),
                                  torch.tensor([[p]], dtype=torch.float64), a, ab)
    assert float(theta) == pytest.approx(expected, abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_skip_step_posterior_equals_enumeration_of_the_chain(data):
    sched = BernoulliSchedule(np.linspace(0.02, 0.3, 12))
    t = data.draw(st.integers(2, 12))
    s = data.draw(st.integers(0, t - 2))
    zt = data.draw(st.sampled_from([0, 1]))
    p = data.draw(unit)
    ab, alphas = sched.alpha_bar, 1 - sched.betas
    # Sum over every path z_s -> z_{s+1} -> ... -> z_t of one-step flips.
    joint = {}
    for zs in (0, 1):
        prior = sum((p if z0 else 1 - p) * _flip(z0, zs, ab[s]) for z0 in (0, 1))
        total = 0.0
        for path in itertools.product((0, 1), repeat=t - s - 1):
            states = (zs, *path, zt)
            prob = 1.0
            for k in range(t - s):
                prob *= _flip(states[k], states[k + 1], alphas[s + k])  # beta_{s+k+1}
            total += prob
        joint[zs] = prior * total
    expected = joint[1] / (joint[0] + joint[1])
    theta = posterior_probability(torch.tensor([[float(zt)]], dtype=torch.float64),
                                  torch.tensor([[p]], dtype=torch.float64),
                                  ab[t] / ab[s], ab[s])
    assert float(theta) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("t", [1, 50, 200, 600, 1000])
def test_paper_forward_flips_at_rate_one_minus_abar_over_two(t):
    n = 400_000
    g = torch.Generator().manual_seed(t)
    z0 = (torch.rand(1, n, generator=g) < 0.3).float()
    z_t = q_sample(z0, float(SCHEDULE.alpha_bar[t]), g, "paper")
    flip = (1 - SCHEDULE.alpha_bar[t]) / 2
    sigma = math.sqrt(flip * (1 - flip) / n)
    for value in (0.0, 1.0):  # symmetric: the same rate from 0 and from 1
        sel = z0 == value
        rate = float((z_t[sel] != z0[sel]).float().mean())
        assert abs(rate - flip) < 5 * sigma / math.sqrt(float(sel.float().mean()))


def test_reference_forward_only_removes_ones():
    n, t = 400_000, 200
    g = torch.Generator().manual_seed(0)
    z0 = (torch.rand(1, n, generator=g) < 0.5).float()
    z_t = q_sample(z0, float(SCHEDULE.alpha_bar[t]), g, "reference")
    assert z_t[z0 == 0].sum() == 0
    survive = float(z_t[z0 == 1].mean())
    ab = SCHEDULE.alpha_bar[t]
    assert abs(survive - ab) < 5 * math.sqrt(ab * (1 - ab) / (n / 2))


def test_sequential_one_step_noise_has_the_closed_form_marginal():
    sched = make_schedule("linear", 1000)
    g = torch.Generator().manual_seed(1)
    n, t = 200_000, 150
    z0 = torch.ones(1, n)
    z = z0.clone()
    for s in range(1, t + 1):
        z = q_sample(z, float(1 - sched.betas[s - 1]), g)
    expected = (1 - sched.alpha_bar[t]) / 2
    assert abs(float((z != z0).float().mean()) - expected) < 5 * math.sqrt(expected / n)


def test_training_example_targets_are_xor_and_time_is_zero_based():
    g = torch.Generator().manual_seed(0)
    z0 = torch.randint(0, 2, (64, 4, 4, 4), generator=g).float()
    z_t, target, model_t = training_example(z0, SCHEDULE, rng=g)
    assert torch.equal(target, (z_t != z0).float())
    assert model_t.min() >= 0 and model_t.max() <= 999
    t = torch.full((64,), 1000)
    _, target, model_t = training_example(z0, SCHEDULE, rng=g, t=t)
    assert torch.all(model_t == 999)
    assert abs(float(target.mean()) - 0.5) < 0.02  # abar_T ~ 0: every bit a coin flip


def test_diffusion_loss_is_bce_in_bits():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 2, 4, 4, generator=g)
    target = torch.randint(0, 2, (3, 2, 4, 4), generator=g).float()
    p = torch.sigmoid(logits).clamp(1e-7, 1 - 1e-7)
    manual = -(target * p.log() + (1 - target) * (1 - p).log()).flatten(1).mean(1) / math.log(2)
    assert torch.allclose(diffusion_loss(logits, target, "none"), manual, atol=1e-5)
    assert torch.allclose(diffusion_loss(logits, target), manual.mean(), atol=1e-5)
    with pytest.raises(ValueError, match="reduction"):
        diffusion_loss(logits, target, "sum")


def test_sample_prior_is_fair_coin():
    z = sample_prior((1, 100_000), torch.Generator().manual_seed(0))
    assert abs(float(z.mean()) - 0.5) < 0.01


def test_predict_z0_is_probability_of_one():
    z_t = torch.tensor([0.0, 0.0, 1.0, 1.0])
    flip = torch.tensor([0.0, 1.0, 0.0, 0.3])
    assert predict_z0(z_t, flip).tolist() == pytest.approx([0.0, 1.0, 1.0, 0.7])


def _random_denoiser(seed, scale=3.0):
    g = torch.Generator().manual_seed(seed)

    def fn(z_t, model_t):
        return scale * torch.randn(z_t.shape, generator=g) - 1.0

    return fn


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), noise_level=st.integers(1, 40),
       threshold=st.floats(0.01, 0.99), n_steps=st.one_of(st.none(), st.integers(1, 40)))
def test_masks_never_shrink_and_fraction_matches_mask(seed, noise_level, threshold, n_steps):
    if n_steps is not None:
        n_steps = min(n_steps, noise_level)
    g = torch.Generator().manual_seed(seed)
    z = torch.randint(0, 2, (3, 2, 4, 4), generator=g).float()
    res = masked_restoration(_random_denoiser(seed), z, schedule=SCHEDULE,
                             noise_level=noise_level, mask_threshold=threshold,
                             n_steps=n_steps, rng=g)
    frac = res.step_masked_fraction
    assert torch.all(frac[1:] >= frac[:-1])
    assert torch.equal(res.masked_fraction, res.mask.flatten(1).float().mean(1))
    assert torch.equal(frac[-1], res.masked_fraction)
    assert torch.all((0 <= res.mean_flip) & (res.mean_flip <= 1))
    # Unmasked entries were stitched from the input at every step, so they come back intact.
    assert torch.equal(res.latent[~res.mask], z[~res.mask])
    assert set(res.latent.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("threshold", [1.0])
def test_threshold_one_keeps_the_input_code(threshold):
    g = torch.Generator().manual_seed(0)
    z = torch.randint(0, 2, (4, 3, 4, 4), generator=g).float()
    res = masked_restoration(_random_denoiser(1, scale=10.0), z, schedule=SCHEDULE,
                             noise_level=300, mask_threshold=threshold, rng=g)
    assert torch.equal(res.latent, z)
    assert float(res.masked_fraction.max()) == 0.0


def test_threshold_zero_means_no_stitching():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    z = torch.randint(0, 2, (2, 3, 4, 4), generator=torch.Generator().manual_seed(0)).float()
    denoise = _random_denoiser(2)
    res = masked_restoration(denoise, z, schedule=SCHEDULE, noise_level=20, mask_threshold=0.0,
                             rng=g1)
    assert torch.all(res.mask) and torch.all(res.masked_fraction == 1)
    # Plain Bernoulli denoising written out by hand, with the same random draws.
    denoise = _random_denoiser(2)
    ab = SCHEDULE.alpha_bar
    z_t = (torch.rand(z.shape, generator=g2) < forward_probability(z, float(ab[20]))).float()
    for t in range(20, 0, -1):
        flip = torch.sigmoid(denoise(z_t, None))
        theta = posterior_probability(z_t, (z_t - flip).abs(), float(1 - SCHEDULE.betas[t - 1]),
                                      float(ab[t - 1]))
        z_t = (torch.rand(z.shape, generator=g2) < theta).float()
    assert torch.equal(res.latent, z_t)


def test_reference_final_step_returns_soft_unstitched_prediction():
    z = torch.randint(0, 2, (2, 3, 4, 4), generator=torch.Generator().manual_seed(0)).float()
    calls = []

    def denoise(z_t, model_t):
        calls.append((z_t.clone(), model_t.clone()))
        return torch.full_like(z_t, 0.3)  # sigmoid(0.3) ~ 0.574 > 0.5: masks everything

    res = masked_restoration(denoise, z, schedule=SCHEDULE, noise_level=5, mask_threshold=0.9,
                             final_step="reference", rng=torch.Generator().manual_seed(1))
    z1, t1 = calls[-1]
    assert torch.all(t1 == 0)
    assert torch.allclose(res.latent, (z1 - torch.sigmoid(torch.tensor(0.3))).abs())
    assert float(res.masked_fraction.max()) == 0.0  # P=0.9 never exceeded, no last update
    assert [int(c[1][0]) for c in calls] == [4, 3, 2, 1, 0]


def test_same_seed_same_output_and_counter_rng_is_batch_independent():
    z = torch.randint(0, 2, (4, 3, 4, 4), generator=torch.Generator().manual_seed(0)).float()

    def denoise(z_t, model_t):  # deterministic in its input, like a network
        return (z_t - 0.5) * 4 + model_t[:, None, None, None] / 100

    kwargs = dict(schedule=SCHEDULE, noise_level=30, mask_threshold=0.5)
    a = masked_restoration(denoise, z, rng=torch.Generator().manual_seed(3), **kwargs)
    b = masked_restoration(denoise, z, rng=torch.Generator().manual_seed(3), **kwargs)
    assert torch.equal(a.latent, b.latent) and torch.equal(a.mask, b.mask)
    seeds = torch.tensor([11, 12, 13, 14])
    full = masked_restoration(denoise, z, rng=CounterRNG(seeds), **kwargs)
    part = masked_restoration(denoise, z[2:], rng=CounterRNG(seeds[2:]), **kwargs)
    assert torch.equal(full.latent[2:], part.latent)
    assert torch.equal(full.mask[2:], part.mask)
    other = masked_restoration(denoise, z, rng=CounterRNG(seeds + 1), **kwargs)
    assert not torch.equal(full.latent, other.latent)


def test_counter_rng_is_uniform():
    u = CounterRNG(torch.arange(8)).uniform(torch.zeros(8, 50_000), stream=3).flatten()
    assert abs(float(u.mean()) - 0.5) < 0.005
    assert abs(float(u.var()) - 1 / 12) < 0.002
    hist = torch.histc(u, bins=20, min=0, max=1)
    expected = u.numel() / 20
    chi2 = float(((hist - expected) ** 2 / expected).sum())
    assert chi2 < 45  # 19 degrees of freedom, p ~ 0.001
    v = CounterRNG(torch.arange(8)).uniform(torch.zeros(8, 50_000), stream=4).flatten()
    assert abs(float(torch.corrcoef(torch.stack([u, v]))[0, 1])) < 0.01
    with pytest.raises(ValueError, match="seeds"):
        CounterRNG([1, 2]).uniform(torch.zeros(3, 2), 0)


def test_restoration_timesteps_and_step_skipping():
    assert restoration_timesteps(3) == [3, 2, 1, 0]
    assert restoration_timesteps(10, 10) == restoration_timesteps(10)
    assert restoration_timesteps(200, 5) == [200, 160, 120, 80, 40, 0]
    with pytest.raises(ValueError, match="n_steps"):
        restoration_timesteps(10, 11)
    z = torch.zeros(1, 2, 2, 2)
    calls = []
    masked_restoration(lambda zt, t: calls.append(int(t[0])) or torch.zeros_like(zt), z,
                       schedule=SCHEDULE, noise_level=100, mask_threshold=0.5, n_steps=4)
    assert calls == [99, 74, 49, 24]


@pytest.mark.parametrize("kwargs, match", [
    (dict(noise_level=0), r"noise_level must be in \[1, 1000\]"),
    (dict(noise_level=1001), r"noise_level must be in \[1, 1000\]"),
    (dict(noise_level=2.5), "noise_level must be an integer"),
    (dict(mask_threshold=1.5), r"mask_threshold must be in \[0.0, 1.0\]"),
    (dict(mask_threshold=-0.1), r"mask_threshold must be in"),
    (dict(final_step="last"), "final_step must be one of"),
    (dict(posterior="exact"), "posterior must be one of"),
    (dict(rng=np.random.default_rng(0)), "rng must be a torch.Generator"),
])
def test_restoration_rejects_bad_arguments(kwargs, match):
    args = dict(schedule=SCHEDULE, noise_level=10, mask_threshold=0.5)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        masked_restoration(lambda zt, t: torch.zeros_like(zt), torch.zeros(1, 2, 2, 2), **args)


# --------------------------------------------------------------------------- marginal posterior
def _brute_force_marginal(zt, p, keep_ts, ab_s):
    """sum_{z0} p(z0 | z_t) q(z_s = 1 | z_t, z0), every term by enumeration.

    ``p`` is P(z0 = 1 | z_t) (already conditioned on z_t); q(z_s | z_t, z0) follows from
    q(z_s | z0) (flip (1 - ab_s) / 2) and q(z_t | z_s) (flip (1 - keep_ts) / 2) by Bayes.
    """
    total = 0.0
    for z0 in (0, 1):
        weights = {zs: _flip(z0, zs, ab_s) * _flip(zs, zt, keep_ts) for zs in (0, 1)}
        total += (p if z0 else 1 - p) * weights[1] / (weights[0] + weights[1])
    return total


@settings(max_examples=200, deadline=None)
@given(zt=st.sampled_from([0, 1]), p=unit, data=st.data())
def test_marginal_posterior_equals_brute_force_bayes_for_every_step(zt, p, data):
    # Any (t, s) of the paper's schedule, including skipped steps and s = 0.
    t = data.draw(st.integers(1, 1000))
    s = data.draw(st.integers(0, t - 1))
    ab = SCHEDULE.alpha_bar
    expected = _brute_force_marginal(zt, p, ab[t] / ab[s], ab[s])
    got = marginal_posterior_probability(torch.tensor([[float(zt)]], dtype=torch.float64),
                                         torch.tensor([[p]], dtype=torch.float64),
                                         ab[t] / ab[s], ab[s])
    assert float(got) == pytest.approx(expected, abs=1e-9)
    assert 0.0 <= float(got) <= 1.0


@given(zt=st.sampled_from([0.0, 1.0]), z0=st.sampled_from([0.0, 1.0]), a=alpha, ab=alpha)
def test_posteriors_agree_on_binary_predictions(zt, z0, a, ab):
    # Stitched entries of Algorithm 1 are binary: both reverse steps must coincide there.
    args = (torch.tensor([[zt]], dtype=torch.float64), torch.tensor([[z0]], dtype=torch.float64),
            a, ab)
    assert float(reverse_step_probability(*args, "marginal")) == pytest.approx(
        float(reverse_step_probability(*args, "paper")), abs=1e-12)


def test_marginal_posterior_worked_example():
    # t = 1 (abar_0 = 1), z_1 = 1, p(z0 = 1 | z_1) = 0.1: the marginal is 0.1, eq. 4 ~ 1.
    a1 = SCHEDULE.alpha_bar[1]
    z1, p = torch.tensor([[1.0]], dtype=torch.float64), torch.tensor([[0.1]], dtype=torch.float64)
    assert float(marginal_posterior_probability(z1, p, a1, 1.0)) == pytest.approx(0.1, abs=1e-9)
    assert float(posterior_probability(z1, p, a1, 1.0)) > 0.999


PI = 0.98  # independent bits z0 ~ B(PI) of the toy model


def _oracle(schedule):
    """Exact flip probability P(z0 != z_t | z_t) of the independent-bit toy model."""
    ab = torch.as_tensor(schedule.alpha_bar, dtype=torch.float64)

    def denoise(z_t, model_t):
        a = ab[model_t.long() + 1].to(z_t.dtype).reshape(-1, 1, 1, 1)
        stay = (1 + a) / 2
        like_one = torch.where(z_t > 0.5, stay, 1 - stay)   # q(z_t | z0 = 1)
        like_zero = torch.where(z_t > 0.5, 1 - stay, stay)  # q(z_t | z0 = 0)
        p_one = PI * like_one / (PI * like_one + (1 - PI) * like_zero)
        flip = torch.where(z_t > 0.5, 1 - p_one, p_one).clamp(1e-12, 1 - 1e-12)
        return torch.log(flip) - torch.log1p(-flip)

    return denoise


def _exact_chain_error(noise_level, schedule):
    """Expected share of wrong bits after the exact reverse chain from z_L (analytic).

    For independent bits the exact chain ends with a sample of p(z0 | z_L), so the error is
    sum over (z, z_L) of p(z) q(z_L | z) P(z0 != z | z_L).
    """
    stay = (1 + schedule.alpha_bar[noise_level]) / 2
    error = 0.0
    for z in (0, 1):
        for zl in (0, 1):
            q = stay if z == zl else 1 - stay
            joint = {z0: (PI if z0 else 1 - PI) * (stay if z0 == zl else 1 - stay)
                     for z0 in (0, 1)}
            posterior_wrong = joint[1 - z] / (joint[0] + joint[1])
            error += (PI if z else 1 - PI) * q * posterior_wrong
    return error


@pytest.mark.parametrize("n_steps", [None, 20])
def test_marginal_posterior_with_an_oracle_matches_the_exact_reverse_chain(n_steps):
    # Ideal denoiser, no mask (P = 0): the marginal posterior *is* the exact reverse chain,
    # with or without step skipping; eq. 4 keeps much of the injected noise.
    schedule = SCHEDULE
    L, shape = 200, (8, 16, 32, 32)  # 131,072 independent bits
    z = (torch.rand(shape, generator=torch.Generator().manual_seed(0)) < PI).double()
    expected = _exact_chain_error(L, schedule)
    errors = {}
    for posterior in ("marginal", "paper"):
        res = masked_restoration(_oracle(schedule), z, schedule=schedule, noise_level=L,
                                 mask_threshold=0.0, n_steps=n_steps, posterior=posterior,
                                 rng=torch.Generator().manual_seed(1))
        errors[posterior] = float((res.latent != z.float()).float().mean())
    n = z.numel()
    tolerance = 5 * math.sqrt(expected * (1 - expected) / n)  # 5 binomial standard errors
    assert abs(errors["marginal"] - expected) < tolerance, (errors, expected)
    assert errors["paper"] > expected + 10 * tolerance, (errors, expected)


def test_injected_noise_loss_is_low_where_the_prediction_is_right():
    injected = torch.zeros(1, 3, 2, 2, dtype=torch.bool)
    injected[0, :, 0, 0] = True
    good = torch.where(injected, 0.99, 0.01).float()
    bad = 1 - good
    assert injected_noise_loss(good, injected).max() < 0.02
    assert injected_noise_loss(bad, injected).min() > 6.0
    assert injected_noise_loss(good, injected).shape == (1, 2, 2)


def test_restoration_reports_the_injected_noise():
    z = torch.zeros(2, 4, 8, 8)
    res = masked_restoration(lambda zt, t: torch.full_like(zt, -20.0), z, schedule=SCHEDULE,
                             noise_level=300, mask_threshold=0.5,
                             rng=torch.Generator().manual_seed(0))
    rate = float(res.injected.float().mean())
    assert abs(rate - (1 - SCHEDULE.alpha_bar[300]) / 2) < 0.05
    assert res.initial_flip.shape == z.shape

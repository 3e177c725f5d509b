"""Exact multi-scale mixture (theory.multiscale): score, density, speciation times, clone experiment."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import theory
from theory.multiscale import (
    DEFAULT_MIXTURE,
    MultiscaleMixture,
    clone_agreement,
    clone_experiment,
    exact_clone_agreement,
    factor_projections,
    mixture_eps,
    mixture_log_density,
    mixture_score,
    patterns,
    sample_mixture,
    speciation_alpha_bar,
)
from theory.schedules import DDPMSchedule, sampling_timesteps, timestep_at_alpha_bar

DDPM = DDPMSchedule()

SMALL = MultiscaleMixture(amplitudes=(3.0, 1.5, 0.8), s=0.3, size=8)


def brute_force_log_density(mix: MultiscaleMixture, x: torch.Tensor, ab: float) -> torch.Tensor:
    """log p_t(x) = log Σ_a 2^{−F} N(x; α Σ_f a_f A_f φ_f, v I): all 2^F sign patterns, no factorization."""
    phi = torch.from_numpy(patterns(mix))
    A = torch.tensor(mix.amplitudes, dtype=torch.float64)
    alpha, v = ab**0.5, ab * mix.s**2 + (1 - ab)
    flat = x.reshape(x.shape[0], -1)
    terms = []
    for signs in itertools.product((-1.0, 1.0), repeat=mix.num_factors):
        mean = alpha * (torch.tensor(signs, dtype=torch.float64) * A) @ phi  # (d,)
        terms.append(-0.5 * ((flat - mean) ** 2).sum(1) / v - 0.5 * mix.dim * np.log(2 * np.pi * v))
    return torch.logsumexp(torch.stack(terms), 0) - mix.num_factors * np.log(2.0)


@pytest.mark.parametrize("ab", [0.02, 0.3, 0.9])
def test_score_matches_autograd_of_exact_log_density(ab):
    rng = np.random.default_rng(0)
    x0, _ = sample_mixture(SMALL, 6, rng)
    xt = np.sqrt(ab) * x0 + np.sqrt(1 - ab) * rng.standard_normal(x0.shape)
    x = torch.tensor(xt, requires_grad=True)
    logp = brute_force_log_density(SMALL, x, ab)
    (grad,) = torch.autograd.grad(logp.sum(), x)
    np.testing.assert_allclose(mixture_score(SMALL, xt, ab), grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mixture_log_density(SMALL, xt, ab), logp.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(mixture_eps(SMALL, xt, ab), -np.sqrt(1 - ab) * grad.numpy(), atol=1e-12)


def test_patterns_orthonormal_and_global_to_local():
    phi = patterns(DEFAULT_MIXTURE)
    np.testing.assert_allclose(phi @ phi.T, np.eye(4), atol=1e-14)
    # spatial frequency: number of sign changes along rows + columns grows from global to local
    img = phi.reshape(4, 16, 16)
    changes = [
        np.sum(np.diff(np.sign(p), axis=0) != 0) + np.sum(np.diff(np.sign(p), axis=1) != 0) for p in img
    ]
    assert changes == sorted(changes) and len(set(changes)) == 4


def test_samples_have_the_stated_law():
    """Seeded statistical test: a_f A_f along φ_f, N(0, s²) in the complement (KS, mean within 5 SE)."""
    rng = np.random.default_rng(1)
    x, a = sample_mixture(DEFAULT_MIXTURE, 4000, rng)
    y = factor_projections(DEFAULT_MIXTURE, x)  # (n, F)
    resid = (y - a * np.asarray(DEFAULT_MIXTURE.amplitudes)) / DEFAULT_MIXTURE.s
    assert np.all(np.abs(resid.mean(0)) < 5 / np.sqrt(4000))
    assert stats.kstest(resid.ravel(), "norm").pvalue > 1e-3
    assert np.all(np.abs(a.mean(0)) < 5 / np.sqrt(4000))
    phi = patterns(DEFAULT_MIXTURE)
    perp = x.reshape(4000, -1) - y @ phi
    assert abs(perp.var() * 256 / (256 - 4) / DEFAULT_MIXTURE.s**2 - 1) < 0.02


def test_speciation_alpha_bar_is_where_kappa_crosses_one_and_matches_biroli():
    mix = DEFAULT_MIXTURE
    ab = speciation_alpha_bar(mix)
    A = np.asarray(mix.amplitudes)
    kappa = ab * A**2 / (ab * mix.s**2 + 1 - ab)  # eq. (50), γ → ∞: m²/c
    np.testing.assert_allclose(kappa, 1.0, rtol=1e-13)
    # Biroli et al.: ᾱ = e^{−2 t_S} with t_S = ½ log Λ (theory.biroli_speciation_time), Λ = A² + s²
    lam = A**2 + mix.s**2
    biroli = np.exp(-2 * theory.biroli_speciation_time(lam))
    np.testing.assert_allclose(speciation_alpha_bar(mix, "biroli"), biroli, rtol=1e-13)
    # the two criteria differ by the factor (A² + s²)/(1 + A² − s²) = 1 + O(1/A²); both order global → local
    t_exact = timestep_at_alpha_bar(DDPM, ab)
    assert np.all(np.diff(t_exact) < 0)
    ratio = ab / speciation_alpha_bar(mix, "biroli")
    np.testing.assert_allclose(ratio, (A**2 + mix.s**2) / (1 + A**2 - mix.s**2), rtol=1e-13)
    assert np.all(np.abs(ratio - 1) <= (1 + 2 * mix.s**2) / (A**2 - mix.s**2))


def test_clone_experiment_matches_closed_form_agreement():
    """Seeded statistical test: exact-score DDPM clones vs E[p² + (1 − p)²] within 4 binomial SE + 0.04."""
    mix, S, M = SMALL, 20, 150
    ab = DDPM.alphas_cumprod
    ts = sampling_timesteps(DDPM, S)
    t_int = [0, 6, 10, 14, 20]
    pairs = clone_experiment(lambda x, t: mixture_eps(mix, x, ab[t]), (1, 8, 8), S, t_int, M, seed=3)
    agree = clone_agreement(mix, pairs).mean(-1)  # (F, T)
    ab_split = np.array([ab[ts[s]] if s < S else 1 - 1e-12 for s in t_int])
    ref = exact_clone_agreement(mix, ab_split)
    se = np.sqrt(np.maximum(ref * (1 - ref), 0.05) / M)
    assert np.all(np.abs(agree - ref) < 4 * se + 0.04), (agree, ref)
    assert np.all(agree[:, -1] == 1.0)  # split after the last step: identical copies


@settings(max_examples=25, deadline=None)
@given(st.floats(1e-4, 0.999), st.floats(1e-4, 0.999))
def test_closed_form_agreement_is_monotone_and_bounded(ab1, ab2):
    lo, hi = sorted((ab1, ab2))
    a = exact_clone_agreement(DEFAULT_MIXTURE, np.array([lo, hi]))
    assert np.all(a >= 0.5 - 1e-12) and np.all(a <= 1 + 1e-12)
    assert np.all(a[:, 1] >= a[:, 0] - 1e-12)


@settings(max_examples=25, deadline=None)
@given(st.floats(1e-3, 0.999), st.integers(0, 10_000))
def test_score_is_odd(ab, seed):
    x, _ = sample_mixture(SMALL, 2, np.random.default_rng(seed))
    np.testing.assert_allclose(mixture_score(SMALL, -x, ab), -mixture_score(SMALL, x, ab), atol=1e-12)


def test_bad_input_messages():
    with pytest.raises(ValueError, match="amplitudes must hold between 2 and 4"):
        MultiscaleMixture(amplitudes=(1.0,))
    with pytest.raises(ValueError, match=r"s must lie in \(0, inf\], got -1"):
        MultiscaleMixture(s=-1.0)
    with pytest.raises(ValueError, match="size must be a multiple of 8"):
        MultiscaleMixture(size=12)
    with pytest.raises(ValueError, match=r"alpha_bar must lie in \(0, 1\]"):
        mixture_score(SMALL, np.zeros((1, 1, 8, 8)), 0.0)
    with pytest.raises(ValueError, match=r"t_int must lie in \[0, 5\]"):
        clone_experiment(lambda x, t: x, (1, 8, 8), 5, [6], 2)

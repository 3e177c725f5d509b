"""Local score gain γ estimator (dit_validation.gamma), validated where the true score is known.

On the exact multi-scale mixture one deterministic DDIM step is x_prev = c₁ x + γ_s ∇ log p_t(x) with the
score of eq. (35) along each φ_f, so γ_s (closed form) is the value to recover. Tolerances: 1e-9 relative
with the exact (m, c); 10% with (m, c) from the EM fit of eq. (34) on 20,000 samples where the fit
finds the factor bimodal.
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dit_validation.gamma import (
    block_odd_response,
    estimate_gamma,
    exact_eps_fn,
    fit_score_gain,
    step_odd_response,
)
from dit_validation.measure import linearized_copy
from dit_validation.models import build_random_dit
from theory import fit_symmetric_mixture
from theory.multiscale import (
    DEFAULT_MIXTURE,
    factor_projections,
    mixture_eps,
    mixture_score,
    sample_mixture,
)
from theory.schedules import DDPMSchedule, ddim_score_gain, ddim_step, sampling_timesteps

AB = DDPMSchedule().alphas_cumprod
TS = sampling_timesteps(DDPMSchedule(), 50)


def _step(s):
    return float(AB[TS[s]]), float(AB[TS[s + 1]])


def test_ddim_score_gain_is_the_score_coefficient_of_a_step():
    rng = np.random.default_rng(0)
    x, _ = sample_mixture(DEFAULT_MIXTURE, 3, rng)
    for s in (5, 25, 45):
        abt, abp = _step(s)
        out = ddim_step(x, mixture_eps(DEFAULT_MIXTURE, x, abt), abt, abp, 0.0, None)
        lin = np.sqrt(abp / abt) * x
        score_part = ddim_score_gain(abt, abp) * mixture_score(DEFAULT_MIXTURE, x, abt)
        np.testing.assert_allclose(out - lin, score_part, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("s", [10, 20, 30, 40])
def test_gamma_recovered_exactly_with_known_m_c(s):
    abt, abp = _step(s)
    m_all = np.sqrt(abt) * np.asarray(DEFAULT_MIXTURE.amplitudes)
    c = abt * DEFAULT_MIXTURE.s**2 + 1 - abt
    x0 = np.zeros((1, 16, 16))
    for f, m in enumerate(m_all):
        D = step_odd_response(exact_eps_fn(DEFAULT_MIXTURE), DEFAULT_MIXTURE, f, x0, abt, abp)
        fit = estimate_gamma(D, m, c)
        assert abs(fit.gamma / ddim_score_gain(abt, abp) - 1) < 1e-9
        eta = np.sqrt(abp / abt)  # the step's linear coefficient c₁; b = η − γ/c
        np.testing.assert_allclose(fit.b, eta - ddim_score_gain(abt, abp) / c, rtol=1e-9)
        assert fit.resid < 1e-12 and fit.gamma_se < 1e-9 * abs(fit.gamma)  # the exact form: no misfit


def test_gamma_recovered_with_sampled_m_c():
    """Seeded statistical test: (m, c) by the EM fit of eq. (34) from 20,000 noised samples."""
    rng = np.random.default_rng(0)
    x0 = np.zeros((1, 16, 16))
    checked = 0
    for s in (20, 30, 40):
        abt, abp = _step(s)
        x, _ = sample_mixture(DEFAULT_MIXTURE, 20_000, rng)
        xt = np.sqrt(abt) * x + np.sqrt(1 - abt) * rng.standard_normal(x.shape)
        y = factor_projections(DEFAULT_MIXTURE, xt)
        for f in range(DEFAULT_MIXTURE.num_factors):
            em = fit_symmetric_mixture(y[:, f])
            if not em.bimodal:
                continue
            D = step_odd_response(exact_eps_fn(DEFAULT_MIXTURE), DEFAULT_MIXTURE, f, x0, abt, abp)
            assert (
                abs(estimate_gamma(D, float(em.m), float(em.c)).gamma / ddim_score_gain(abt, abp) - 1) < 0.10
            )
            checked += 1
    assert checked >= 6


@settings(max_examples=40)
@given(st.floats(0.01, 2), st.floats(-1, 2), st.floats(0.2, 4), st.floats(0.1, 3))
def test_fit_inverts_the_model(gamma, b, m, c):
    a = np.linspace(0.1, 4 * c / m, 16)
    D = b * a + gamma * (m / c) * np.tanh(m * a / c)
    fit = fit_score_gain(a, D, m, c)
    np.testing.assert_allclose([fit.gamma, fit.b], [gamma, b], rtol=1e-6, atol=1e-8)


def test_gamma_standard_error_matches_the_scatter_of_noisy_fits():
    """Seeded statistical test: with white noise of std τ on D, the reported se of γ agrees with the
    spread of γ over 400 noisy draws within 15%."""
    rng = np.random.default_rng(7)
    m, c, gamma, b, tau = 1.5, 0.8, 0.6, 0.2, 0.05
    a = np.linspace(0.1, 4 * c / m, 16)
    D = b * a + gamma * (m / c) * np.tanh(m * a / c)
    fits = [fit_score_gain(a, D + tau * rng.standard_normal(a.size), m, c) for _ in range(400)]
    spread = np.std([f.gamma for f in fits])
    assert np.median([f.gamma_se for f in fits]) == pytest.approx(spread, rel=0.15)


def test_undefined_without_branch_separation():
    assert np.isnan(estimate_gamma(lambda a: a, 0.0, 1.0).gamma)
    assert np.isnan(fit_score_gain(np.ones(3), np.ones(3), 1.0, -1.0).gamma)
    with pytest.raises(ValueError, match=r"ab_prev must lie in \[0.5, 1\], got 0.4"):
        ddim_score_gain(0.5, 0.4)


def test_block_odd_response_is_odd_and_linear_at_small_amplitude():
    lin = linearized_copy(build_random_dit("tiny", seed=0).transformer)
    gen = torch.Generator().manual_seed(0)
    H0 = torch.randn(16, 16, generator=gen, dtype=torch.float64)
    r = torch.randn(16, 16, generator=gen, dtype=torch.float64)
    r = r / r.norm()
    D = block_odd_response(lin, 1, 500, 0, H0, r)
    v = np.array([1e-4, 2e-4])
    d = D(v)
    np.testing.assert_allclose(d[1] / d[0], 2.0, rtol=1e-6)  # linear regime
    np.testing.assert_allclose(D(-v), -d, rtol=1e-12)  # odd by construction

"""Eq. (50) on one whole exact DDIM step, and the closure of eq. (56) (theory.exact_step): a finding.

The exact mixture's DDIM step is x_prev = c₁ x + γ_s ∇log p_t(x) (tests/test_schedules.py checks γ_s), so
along φ_f it is eq. (36) with K = c₁ > 1, exact m_f = α_t A_f and c_f = v_t. These tests guard:

* eq. (55) holds at every step, yet the finite-γ κ of eq. (50) is ≥ 1 from step 0 for every factor, so
  eq. (51) puts every speciation at step 0 (fails if κ_50 < 1 anywhere at step 0, or if (55) fails);
* only the γ → ∞ limit κ = m²/c reproduces the exact speciation steps (within 0.1 step);
* κ_50 > 1 ⇔ the step's Jacobian J_s along φ_f at a symmetric point exceeds 1, and J_s (closed form)
  matches central differences of one exact DDIM step;
* the closure m_init ∏J/m_f(s) of eq. (56)–(57) with the full-step Jacobian is far from 1 (it would
  fail if the ratio stayed within [0.2, 5] for some factor), while with the propagator η = c₁ it is
  exact to rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

from theory import (
    DDPMSchedule,
    KappaStatus,
    ddim_step,
    directional_curvature,
    eq56_closure_ratio,
    exact_speciation_step,
    exact_step_kappa,
    speciation_step,
    symmetric_points,
)
from theory.multiscale import DEFAULT_MIXTURE, mixture_eps, patterns
from theory.streams import numpy_generator

DDPM = DDPMSchedule()
MIX = DEFAULT_MIXTURE


@pytest.mark.parametrize("num_steps", [50, 100])
def test_finite_gamma_kappa_is_at_least_one_from_step_0_although_eq55_holds(num_steps: int) -> None:
    """Measured κ_50 at step 0: (95.4, 19.3, 4.62, 1.37) at S = 50, (101, 20.4, 4.89, 1.45) at S = 100;
    the early-time limit A_f²/((1 + c₁)/2 − s²) (theory.exact_step docstring) within 2 %."""
    ek = exact_step_kappa(MIX, DDPM, num_steps)
    assert np.all(ek.status == KappaStatus.DEFINED) and np.all(ek.valid_55)  # eq. (55) everywhere
    assert np.all(ek.kappa[0] >= 1.0)
    np.testing.assert_array_equal(speciation_step(ek.kappa, axis=0), 0.0)  # eq. (51): all at step 0
    A = np.asarray(MIX.amplitudes)
    np.testing.assert_allclose(ek.kappa[0], A**2 / ((1 + ek.c1[0]) / 2 - MIX.s**2), rtol=0.02)
    # the γ → ∞ limit is the exact pitchfork: tiny at step 0, crossing 1 at the exact steps
    assert np.all(ek.kappa_limit[0] < 0.01)
    exact = exact_speciation_step(MIX, DDPM, num_steps)
    np.testing.assert_array_less(np.abs(speciation_step(ek.kappa_limit, axis=0) - exact), 0.1)


@pytest.mark.parametrize("num_steps", [50, 100])
def test_kappa_above_one_iff_the_step_expands_the_symmetric_state(num_steps: int) -> None:
    ek = exact_step_kappa(MIX, DDPM, num_steps)
    assert np.all(ek.jacobian > 1.0) and np.all(ek.c1 > 1.0)
    np.testing.assert_array_equal(ek.kappa > 1.0, ek.jacobian > 1.0)
    # the split is J_s > c₁ (faster than the signal scale grows) ⇔ κ_f = m²/c > 1
    np.testing.assert_array_equal(ek.jacobian > ek.c1[:, None], ek.kappa_limit > 1.0)


@pytest.mark.parametrize("num_steps", [50, 100])
def test_jacobian_matches_central_differences_of_one_exact_ddim_step(num_steps: int) -> None:
    """J_s = c₁ + γ_s(κ_f − 1)/c_f vs φ_fᵀ ∂(DDIM step)/∂x φ_f by central differences at symmetric points.

    Relative 1e-7 of c₁ + γ_s κ_f/c_f (the size of the two terms); measured ≤ 3.5e-9.
    """
    ek = exact_step_kappa(MIX, DDPM, num_steps)
    phi = patterns(MIX).reshape(MIX.num_factors, 1, MIX.size, MIX.size)
    for s in range(0, num_steps, 6):
        ab_t, ab_prev = float(ek.alpha_bar_t[s]), float(ek.alpha_bar_prev[s])

        def step(z: np.ndarray, ab_t: float = ab_t, ab_prev: float = ab_prev) -> np.ndarray:
            return ddim_step(z, mixture_eps(MIX, z, ab_t), ab_t, ab_prev, 0.0, None)

        x = symmetric_points(MIX, ab_t, 2, numpy_generator(5, s))
        v = float(ek.c[s, 0])
        h = 1e-4 * min(np.sqrt(v), v / float(ek.m[s].max()))
        J = directional_curvature(step, x, phi, 1.0, h)  # σ = 1: the plain directional derivative
        scale = ek.c1[s] + ek.gamma[s] * ek.kappa_limit[s] / ek.c[s]
        np.testing.assert_array_less(np.abs(J - ek.jacobian[s]) / scale, 1e-7)


@pytest.mark.parametrize("num_steps", [50, 100])
def test_eq56_closure_holds_with_the_propagator_and_fails_with_the_full_jacobian(num_steps: int) -> None:
    """Measured (S = 50): min over s of m_init∏J/m_f(s) = 0.099, 0.045, 0.022, 0.012 (global → local) and
    at s = S 1.8e27, 1.8e13, 9.8e4, 5.8; with η = c₁ the ratio is 1 within 1e-12."""
    prop = eq56_closure_ratio(MIX, DDPM, num_steps, gain="propagator")
    np.testing.assert_allclose(prop, 1.0, rtol=1e-12)
    ratio = eq56_closure_ratio(MIX, DDPM, num_steps)
    assert ratio.shape == (num_steps + 1, MIX.num_factors)
    assert np.all(ratio[0] == 1.0)
    assert np.all(ratio.min(axis=0) < 0.2) and np.all(ratio[-1] > 5.0)
    # before the exact speciation step the score contracts (J < c₁): the ratio only falls
    exact = exact_speciation_step(MIX, DDPM, num_steps)
    for f in range(MIX.num_factors):
        before = ratio[: int(np.floor(exact[f])) + 1, f]
        assert np.all(np.diff(before) < 0)


def test_with_ancestral_steps_eq50_crosses_early_but_not_at_step_0() -> None:
    """ddim_eta = 1 (DDPM-like): the deterministic part has a larger γ_s and contracts early (J < 1), so
    κ_50 starts below 1 (measured 0.009 … 1e-4 at step 0) and crosses 1 earlier than the exact step by
    2.4–3.1 steps at S = 50 (4.6–6.1 at S = 100): the deterministic-DDIM degeneracy is specific to
    ddim_eta = 0 (the paper's Protocol II sampler), but eq. (50) with a finite γ is off for both."""
    ek0, ek1 = exact_step_kappa(MIX, DDPM, 50), exact_step_kappa(MIX, DDPM, 50, ddim_eta=1.0)
    assert np.all(ek1.gamma[:-1] > ek0.gamma[:-1])
    assert np.all(ek1.valid_55) and np.all(ek1.kappa[0] < 0.01)
    np.testing.assert_array_equal(ek1.kappa > 1.0, ek1.jacobian > 1.0)
    early = exact_speciation_step(MIX, DDPM, 50) - speciation_step(ek1.kappa, axis=0)
    assert np.all((early > 2.0) & (early < 3.5))


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="gain must be 'jacobian' or 'propagator'"):
        eq56_closure_ratio(MIX, DDPM, 10, gain="eta")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="num_steps must be an integer"):
        exact_step_kappa(MIX, DDPM, 10.0)  # type: ignore[arg-type]

"""Eq. (50) on one whole exact DDIM step, in x and in x/α_t, and the closure of eq. (56) (theory.exact_step).

The exact mixture's DDIM step is x_prev = c₁ x + γ_s ∇log p_t(x) (tests/test_schedules.py checks γ_s), so
along φ_f it is eq. (36) with K = c₁ > 1, exact m_f = α_t A_f and c_f = v_t; in x̃ = x/α_t it is eq. (36)
with K̃ = 1 (docs/FINDINGS.md §4). These tests guard:

* in x, eq. (55) holds at every step and the finite-γ κ of eq. (50) is ≥ 1 from step 0 for every factor
  (κ = 1 ⇔ J = 1, and J > 1 at every step), while the bifurcation is J = c₁ ⇔ κ_f = 1;
* in x/α_t, K̃ = 1 and eq. (50) with the finite γ̃ is κ_f = m²/c to rounding, for deterministic and
  ancestral steps; J̃ = J/c₁ and γ̃ match central differences / an odd-response fit of the rescaled step;
* :func:`theory.in_coordinates` on arbitrary scales: κ_f unchanged, κ = 1 ⇔ J̃ = 1, scales compose;
* the closure m_init ∏J/m_f(s) of eq. (56)–(57) with the full-step Jacobian is far from 1 (it would
  fail if the ratio stayed within [0.2, 5] for some factor), while with the propagator η = c₁ it is
  exact to rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory import (
    DDPMSchedule,
    KappaStatus,
    ddim_step,
    directional_curvature,
    eq56_closure_ratio,
    exact_speciation_step,
    exact_step_kappa,
    in_coordinates,
    speciation_parameter_from_jacobian,
    speciation_step,
    symmetric_points,
)
from theory.multiscale import DEFAULT_MIXTURE, mixture_eps, patterns
from theory.streams import numpy_generator

DDPM = DDPMSchedule()
MIX = DEFAULT_MIXTURE


@pytest.mark.parametrize("num_steps", [50, 100])
def test_in_x_coordinates_eq50_is_at_least_one_from_step_0_although_eq55_holds(num_steps: int) -> None:
    """x coordinates (K = c₁): measured κ_50 at step 0: (95.4, 19.3, 4.62, 1.37) at S = 50, (101, 20.4, 4.89,
    1.45) at S = 100; the early-time limit A_f²/((1 + c₁)/2 − s²) (theory.exact_step docstring) within 2 %."""
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
    """x coordinates: κ_50 > 1 ⇔ J > 1 (eq. 50 in J), J > 1 at every step; the split is J > c₁ ⇔ κ_f > 1."""
    ek = exact_step_kappa(MIX, DDPM, num_steps)
    assert np.all(ek.jacobian > 1.0) and np.all(ek.c1 > 1.0)
    np.testing.assert_array_equal(ek.eta, ek.c1)  # K = c₁ I in x
    np.testing.assert_array_equal(ek.kappa > 1.0, ek.jacobian > 1.0)
    np.testing.assert_array_equal(ek.jacobian > ek.c1[:, None], ek.kappa_limit > 1.0)
    # eq. (50) is κ₅₀(J) = γκ_f/(c(1 − J) + γκ_f): 1e-9 relative (c(1 − J) cancels against γκ_f in x)
    kJ = speciation_parameter_from_jacobian(ek.gamma[:, None], ek.m, ek.c, ek.jacobian)
    np.testing.assert_allclose(kJ, ek.kappa, rtol=1e-9)


@pytest.mark.parametrize("ddim_eta", [0.0, 1.0])
@pytest.mark.parametrize("num_steps", [50, 100])
def test_in_x_over_alpha_eq50_with_finite_gamma_is_kappa_f(num_steps: int, ddim_eta: float) -> None:
    """x̃ = x/α_t: K̃ = c₁α_t/α_prev = 1 (1e-15), κ_50 = m²/c (measured ≤ 5e-15 relative, asserted 1e-12),
    J̃ = J/c₁, the (55) bracket > 0, and κ_50 crosses 1 within 0.03 step of the exact κ_f = 1 steps
    (measured 0.024 at S = 50, 0.015 at S = 100: the linear interpolation on the step grid)."""
    x = exact_step_kappa(MIX, DDPM, num_steps, ddim_eta)
    a = exact_step_kappa(MIX, DDPM, num_steps, ddim_eta, coordinates="x_over_alpha")
    np.testing.assert_allclose(a.eta, 1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(a.scale, np.sqrt(np.append(a.alpha_bar_t, a.alpha_bar_prev[-1])), rtol=1e-15)
    assert np.all(a.valid_55)
    np.testing.assert_allclose(a.kappa, a.kappa_limit, rtol=1e-12)
    np.testing.assert_array_equal(a.kappa_limit, x.kappa_limit)
    np.testing.assert_allclose(a.jacobian, x.jacobian / x.c1[:, None], rtol=1e-13)
    np.testing.assert_array_equal(a.c1, x.c1)
    exact = exact_speciation_step(MIX, DDPM, num_steps)
    np.testing.assert_array_less(np.abs(speciation_step(a.kappa, axis=0) - exact), 0.03)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(-3.0, 3.0))
def test_any_rescaling_keeps_kappa_f_and_moves_the_threshold_with_k(seed: int, log_spread: float) -> None:
    """x̃ = x/λ for random λ > 0: κ_f unchanged, J̃ = Jλ_t/λ_prev (1e-12), κ̃ = 1 ⇔ J̃ = 1 (eq. 50 in J), and
    κ̃ = κ_f only where K̃ = 1; in_coordinates composes (x → x/α → x/(αλ) equals x → x/(αλ))."""
    S = 20
    lam = np.exp(log_spread * np.random.default_rng(seed).uniform(-1, 1, S + 1))
    x = exact_step_kappa(MIX, DDPM, S)
    r = in_coordinates(x, lam)
    np.testing.assert_array_equal(r.kappa_limit, x.kappa_limit)
    np.testing.assert_allclose(r.jacobian, x.jacobian * (lam[:-1] / lam[1:])[:, None], rtol=1e-12)
    defined = r.valid_55
    np.testing.assert_array_equal((r.kappa > 1)[defined], (r.jacobian > 1)[defined])
    kJ = speciation_parameter_from_jacobian(r.gamma[:, None], r.m, r.c, r.jacobian)
    np.testing.assert_allclose(kJ[defined], r.kappa[defined], rtol=1e-8)
    a = exact_step_kappa(MIX, DDPM, S, coordinates="x_over_alpha")
    two = in_coordinates(a, lam)
    one = in_coordinates(x, lam * a.scale)
    np.testing.assert_allclose(two.kappa, one.kappa, rtol=1e-12)
    np.testing.assert_allclose(two.eta, lam[:-1] / lam[1:], rtol=1e-13)


@pytest.mark.parametrize("num_steps", [50, 100])
def test_rescaled_step_is_eq36_with_identity_propagator(num_steps: int) -> None:
    """The step x̃ ↦ ddim_step(α_t x̃)/α_prev itself, at symmetric points: its odd response along φ_f fitted by
    least squares to b a + γ (m̃/c̃) tanh(m̃a/c̃) returns γ̃ (1e-9) and b = K̃ − γ̃/c̃ with K̃ = 1 (1e-9 of
    γ̃/c̃); its slope by central differences is J̃ (1e-7 of 1 + γ̃κ_f/c̃)."""
    a = exact_step_kappa(MIX, DDPM, num_steps, coordinates="x_over_alpha")
    phi = patterns(MIX).reshape(MIX.num_factors, 1, MIX.size, MIX.size)
    for s in range(0, num_steps, 7):
        ab_t, ab_prev = float(a.alpha_bar_t[s]), float(a.alpha_bar_prev[s])

        def step(z: np.ndarray, ab_t: float = ab_t, ab_prev: float = ab_prev) -> np.ndarray:
            x = np.sqrt(ab_t) * z
            return ddim_step(x, mixture_eps(MIX, x, ab_t), ab_t, ab_prev, 0.0, None) / np.sqrt(ab_prev)

        z0 = symmetric_points(MIX, ab_t, 1, numpy_generator(9, s))[0] / np.sqrt(ab_t)
        for f in range(MIX.num_factors):
            m, c = float(a.m[s, f]), float(a.c[s, f])
            amp = 4.0 * (c / m) * np.arange(1, 17) / 16  # through the tanh's saturation
            out = step(np.stack([z0 + t * phi[f] for t in amp] + [z0 - t * phi[f] for t in amp]))
            D = np.sum((out[:16] - out[16:]) * phi[f], axis=(1, 2, 3)) / 2
            X = np.stack([amp, (m / c) * np.tanh(m * amp / c)], axis=1)
            (b, gamma), *_ = np.linalg.lstsq(X, D, rcond=None)
            assert gamma == pytest.approx(a.gamma[s], rel=1e-9)
            assert abs(b - (1.0 - a.gamma[s] / c)) < 1e-9 * (1.0 + a.gamma[s] / c)
        h = 1e-4 * min(np.sqrt(float(a.c[s, 0])), float(a.c[s, 0]) / float(a.m[s].max()))
        J = directional_curvature(step, z0[None], phi, 1.0, h)[0]
        scale = 1.0 + a.gamma[s] * a.kappa_limit[s] / a.c[s]
        np.testing.assert_array_less(np.abs(J - a.jacobian[s]) / scale, 1e-7)


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


def test_with_ancestral_steps_eq50_in_x_crosses_early_but_not_at_step_0() -> None:
    """ddim_eta = 1 (DDPM-like), x coordinates: the deterministic part has a larger γ_s and contracts early
    (J < 1), so κ_50 starts below 1 (measured 0.009 … 1e-4 at step 0) and crosses 1 where J = 1, i.e. at
    κ_f = 1 − (c₁ − 1)c/γ_s < 1: 2.4–3.1 steps before the exact step at S = 50 (4.6–6.1 at S = 100). In
    x/α_t the same steps give κ = κ_f (test_in_x_over_alpha_eq50_with_finite_gamma_is_kappa_f)."""
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
    with pytest.raises(ValueError, match=r"coordinates must be one of \('x', 'x_over_alpha'\), got 'z'"):
        exact_step_kappa(MIX, DDPM, 10, coordinates="z")  # type: ignore[arg-type]
    ek = exact_step_kappa(MIX, DDPM, 10)
    with pytest.raises(ValueError, match=r"scale must have shape \(11,\) .*got \(10,\)"):
        in_coordinates(ek, np.ones(10))
    with pytest.raises(ValueError, match="scale must"):
        in_coordinates(ek, np.r_[np.ones(10), 0.0])

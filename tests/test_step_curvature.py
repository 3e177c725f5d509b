"""The step-level predictor (theory.step_curvature, theory.exact_step): curvature along branch directions.

References: the closed form H_f = (1 − κ_f)/c_f of the exact mixture score (derived by hand in
theory.exact_step, checked here against float64 central differences of `mixture_eps`, whose score is in
turn checked against autograd of the brute-force density in tests/test_multiscale.py), the closed-form
speciation ᾱ* = 1/(1 + A_f² − s²) of theory.multiscale placed by the inverse map (a second algorithm
for the brentq root), and linear ε-functions whose curvature is known exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from theory import (
    DDPMSchedule,
    alpha_bar_at_step,
    curvature_sign_change,
    directional_curvature,
    exact_curvature,
    exact_speciation_step,
    speciation_step,
    step_at_alpha_bar,
    symmetric_points,
)
from theory.multiscale import DEFAULT_MIXTURE, MultiscaleMixture, mixture_eps, patterns, speciation_alpha_bar
from theory.streams import numpy_generator

DDPM = DDPMSchedule()
MIX = DEFAULT_MIXTURE


def _phi(mix: MultiscaleMixture) -> np.ndarray:
    return patterns(mix).reshape(mix.num_factors, mix.channels, mix.size, mix.size)


def _step_h(mix: MultiscaleMixture, ab: float) -> float:
    """Finite-difference step: 1e-4 of the shortest length scale along φ (√v, or v/m of the tanh)."""
    v = ab * mix.s**2 + 1 - ab
    return 1e-4 * min(np.sqrt(v), v / (np.sqrt(ab) * max(mix.amplitudes)))


@pytest.mark.parametrize("num_steps", [50, 100])
def test_central_differences_of_mixture_eps_match_the_closed_form(num_steps: int) -> None:
    """Error ≤ 1e-7 relative to 1/v + m_f²/v² (the two terms whose difference H is); measured ≤ 3.5e-9.

    Truncation (h²/6)·(m/v)⁴-type terms are ≤ 1e-8·scale at h = 1e-4 of the tanh length v/m; rounding
    ~1e-16·‖ε̂‖/h is far below.
    """
    for s in range(0, num_steps, 7):
        ab = float(alpha_bar_at_step(DDPM, s, num_steps))
        x = symmetric_points(MIX, ab, 3, numpy_generator(7, s))
        H = directional_curvature(
            lambda z, ab=ab: mixture_eps(MIX, z, ab), x, _phi(MIX), np.sqrt(1 - ab), _step_h(MIX, ab)
        )
        v = ab * MIX.s**2 + 1 - ab
        scale = 1 / v + ab * np.asarray(MIX.amplitudes) ** 2 / v**2
        assert H.shape == (3, MIX.num_factors)
        np.testing.assert_array_less(np.abs(H - exact_curvature(MIX, ab)) / scale, 1e-7)


def test_symmetric_points_lie_on_every_decision_boundary() -> None:
    ab = 0.3
    x = symmetric_points(MIX, ab, 500, numpy_generator(1))
    flat = x.reshape(500, -1)
    np.testing.assert_allclose(flat @ patterns(MIX).T, 0.0, atol=1e-12)
    v = ab * MIX.s**2 + 1 - ab  # marginal variance in the complement of the F patterns
    assert flat.var() * MIX.dim / (MIX.dim - MIX.num_factors) == pytest.approx(v, rel=0.02)  # 5 SE of 128k


@pytest.mark.parametrize("num_steps", [50, 100])
def test_exact_speciation_step_brentq_equals_closed_form(num_steps: int) -> None:
    """brentq on κ_f(ᾱ(s)) = 1 vs the inverse map at ᾱ* = 1/(1 + A² − s²): 1e-9 step (xtol 1e-12)."""
    got = exact_speciation_step(MIX, DDPM, num_steps)
    ref = step_at_alpha_bar(DDPM, speciation_alpha_bar(MIX), num_steps)
    np.testing.assert_allclose(got, ref, atol=1e-9)
    assert np.all(np.diff(got) > 0)  # global → local


@pytest.mark.parametrize("num_steps", [50, 100])
def test_step_level_predictor_reproduces_the_exact_speciation_steps(num_steps: int) -> None:
    """Issue acceptance: H_f on the integer step grid (central differences of the exact ε̂ at symmetric
    points), first sign change by linear interpolation, within 0.1 step of the exact κ_f = 1 step for
    every factor. Measured max deviation: 0.044 (S = 50), 0.016 (S = 100): the interpolation error of a
    curve that is not linear within one step."""
    H = np.empty((num_steps, MIX.num_factors))
    for s in range(num_steps):
        ab = float(alpha_bar_at_step(DDPM, s, num_steps))
        x = symmetric_points(MIX, ab, 2, numpy_generator(3, s))
        Hs = directional_curvature(
            lambda z, ab=ab: mixture_eps(MIX, z, ab), x, _phi(MIX), np.sqrt(1 - ab), _step_h(MIX, ab)
        )
        H[s] = Hs.mean(axis=0)
    predicted = curvature_sign_change(H, axis=0)
    exact = exact_speciation_step(MIX, DDPM, num_steps)
    assert np.all(np.isfinite(predicted))
    np.testing.assert_array_less(np.abs(predicted - exact), 0.1)
    assert np.all(predicted < exact)  # the chord of a concave-down-in-s H crosses early (measured sign)


def test_directional_curvature_of_a_linear_eps_is_exact() -> None:
    """ε̂(x) = σ M x (M symmetric) has H_k = φ_kᵀ M φ_k at every point; central differences are exact up
    to rounding (1e-10 absolute for h = 1e-3 and entries O(1))."""
    rng = numpy_generator(11)
    d = 12
    B = rng.standard_normal((d, d))
    M = B + B.T
    sigma = 0.7
    phi = rng.standard_normal((3, d))
    phi /= np.linalg.norm(phi, axis=1, keepdims=True)
    x = rng.standard_normal((5, d))
    H = directional_curvature(lambda z: sigma * z @ M, x, phi, sigma, 1e-3)
    np.testing.assert_allclose(H, np.broadcast_to(np.einsum("kd,de,ke->k", phi, M, phi), (5, 3)), atol=1e-10)


def test_curvature_sign_change_of_a_straight_line_is_its_root() -> None:
    steps = np.array([0.0, 1.0, 2.0, 4.0])
    H = 3.0 - 1.2 * steps  # root at 2.5
    assert curvature_sign_change(H, steps) == pytest.approx(2.5, abs=1e-14)
    assert curvature_sign_change(np.array([1.0, 0.0])) == 1.0  # H = 0 is "not positive": split
    assert curvature_sign_change(np.array([1.0, 0.5])) == np.inf
    assert np.isnan(curvature_sign_change(np.array([1.0, np.nan, -1.0])))


@given(st.lists(st.floats(-4.0, 4.0), min_size=2, max_size=10), st.floats(0.1, 10.0))
def test_curvature_sign_change_is_speciation_step_of_kappa(kappa: list[float], c: float) -> None:
    """H = (1 − κ)/c changes sign where κ crosses 1, for any c > 0 (the crossing is scale-free)."""
    k = np.array(kappa)
    got, ref = curvature_sign_change((1.0 - k) / c), speciation_step(k)
    assert got == ref or got == pytest.approx(ref, abs=1e-9)


def test_bad_input() -> None:
    x = np.zeros((2, 4))
    with pytest.raises(ValueError, match="phi must have unit norm"):
        directional_curvature(lambda z: z, x, np.ones((1, 4)), 1.0)
    with pytest.raises(ValueError, match=r"x must be \(n, \*shape\) and phi \(K, \*shape\)"):
        directional_curvature(lambda z: z, x, np.eye(3)[:1], 1.0)
    with pytest.raises(ValueError, match=r"sigma_t must lie in \(0, inf\], got 0"):
        directional_curvature(lambda z: z, x, np.eye(4)[:1], 0.0)
    with pytest.raises(ValueError, match=r"H must not contain ±inf"):
        curvature_sign_change(np.array([1.0, -np.inf]))
    with pytest.raises(ValueError, match=r"alpha_bar must lie in \(0, 1\], got 0"):
        exact_curvature(MIX, 0.0)

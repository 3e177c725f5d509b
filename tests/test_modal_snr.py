"""Modal SNR, speciation parameter and the synchronization gap (eq. 44–65)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy.optimize import brentq

from theory import (
    KappaStatus,
    cumulative_gain,
    effective_jacobian,
    eta,
    kappa_status,
    kappa_status_from_jacobian,
    modal_snr,
    modal_snr_expanded,
    propagated_snr,
    rho,
    snr_validity,
    speciation_parameter,
    speciation_parameter_from_jacobian,
    speciation_step,
    synchronization_gap,
    xi,
)
from theory.modal_snr import eta_routing_dominant, modal_snr_routing_dominant

pos = st.floats(1e-3, 1e3, allow_nan=False)
real = st.floats(-10.0, 10.0, allow_nan=False)
unit = st.floats(0.0, 1.0, allow_nan=False)


def test_eta_reference_values() -> None:
    # eq. (46) at g = 0 (ρ = ξ = 1) and g = 1 (ρ = 0, ξ = ½)
    assert eta(0.0, 0.1, 0.3, 0.2) == pytest.approx(1 + 0.1 + 0.3 + 0.2)
    assert eta(1.0, 0.1, 0.3, 0.2) == pytest.approx(1 + 0.1 + 0.0 + 0.1)
    g = np.linspace(0, 1, 5)
    np.testing.assert_allclose(eta(g, 0.1, 0.3, 0.2), 1.1 + rho(g) * 0.3 + xi(g) * 0.2, atol=1e-15)


def test_snr_and_kappa_reference() -> None:
    # m = 2, c = 0.5, η = 1.2, γ = 1: bracket (1 − η)c + γ = 0.9 ⇒ SNR = 4/(0.5·0.9)
    assert modal_snr(2.0, 0.5, 1.2, 1.0) == pytest.approx(4 / 0.45, rel=1e-15)
    assert speciation_parameter(1.0, 2.0, 0.5, 1.2) == pytest.approx(4 / 0.45, rel=1e-15)
    assert speciation_parameter(0.3, 2.0, 0.5, 1.2) == pytest.approx(0.3 * modal_snr(2.0, 0.5, 1.2, 0.3))


@given(pos, pos, pos, real, real, real, unit)
def test_eq53_equals_eq54(
    m: float, c: float, gamma: float, lam: float, chi: float, pi: float, g: float
) -> None:
    e = eta(g, lam, chi, pi)
    valid = bool(snr_validity(c, e, gamma))
    den54 = gamma / c - lam - rho(g) * chi - xi(g) * pi
    assume(abs(den54) > 1e-6 * (gamma / c + abs(lam) + abs(chi) + abs(pi)))  # away from the pole
    s53 = modal_snr(m, c, e, gamma)
    s54 = modal_snr_expanded(m, c, gamma, lam, chi, pi, g)
    if valid:
        assert s53 > 0 and s53 == pytest.approx(s54, rel=1e-9)
    else:  # eq. (55) fails: undefined, on both routes
        assert np.isnan(s53) and np.isnan(s54)


@given(pos, pos, pos, real, real, unit)
def test_routing_dominant_against_eq62_eq63_written_out(
    m: float, c: float, gamma: float, lam: float, chi: float, g: float
) -> None:
    """Eq. (62)/(63) typed from the paper with ρ(g) = (1 − g)/(1 + g) spelled out (no package helper)."""
    rho_g = (1.0 - g) / (1.0 + g)  # eq. (27)
    assert eta_routing_dominant(g, lam, chi) == pytest.approx(1.0 + lam + rho_g * chi, rel=1e-12, abs=1e-12)
    bracket = (-lam - rho_g * chi) * c + gamma  # eq. (63) denominator / c
    assume(abs(bracket) > 1e-6 * (gamma + (abs(lam) + abs(chi)) * c))
    got = modal_snr_routing_dominant(m, c, gamma, lam, chi, g)
    if bracket > 0:
        assert got == pytest.approx(m**2 / (c * bracket), rel=1e-9)
    else:
        assert np.isnan(got)


def _eq48_positive_root(gamma: float, m: float, c: float, eta_: float) -> float | None:
    """Independent reference: the root a > 0 of [(1 − η) + γ/c] a = (γ m/c) tanh(m a/c) (eq. 48), or None.

    Scan f(a) = rhs − lhs on a log grid of a > 0 for a sign change (f > 0 near 0⁺ iff the pitchfork
    branch exists; f → −∞ as a → ∞ when eq. 55 holds), then brentq to 1e-15 relative.
    """
    a = np.geomspace(1e-9, 1e6, 20001) * c / abs(m)

    def f(x: np.ndarray | float) -> np.ndarray | float:
        return gamma * m / c * np.tanh(m * x / c) - ((1.0 - eta_) + gamma / c) * x

    pos = np.flatnonzero(f(a) > 0)
    if pos.size == 0:
        return None
    return brentq(f, a[pos[-1]], a[pos[-1] + 1], xtol=1e-300, rtol=1e-15)


@given(st.floats(0.05, 5), st.floats(0.05, 5), st.floats(0.1, 5), st.floats(-1.0, 1.5))
def test_kappa_against_the_root_of_eq48(gamma: float, m: float, c: float, eta_: float) -> None:
    """Eq. (50) against eq. (48) solved numerically: the non-zero root a* exists exactly when κ > 1, and
    then u* = a* m/c (eq. 45) solves u = κ tanh u (eq. 49), so κ = u*/tanh u* (1e-8 relative)."""
    kappa = speciation_parameter(gamma, m, c, eta_)
    if not bool(snr_validity(c, eta_, gamma)):
        assert np.isnan(kappa)
        return
    assume(abs(kappa - 1.0) > 1e-3)  # the grid cannot resolve the branch as it is born
    root = _eq48_positive_root(gamma, m, c, eta_)
    assert (root is not None) == (kappa > 1.0)
    if root is not None:
        u = root * m / c  # eq. (45)
        assert kappa == pytest.approx(u / np.tanh(u), rel=1e-8)


any_float = st.floats(allow_nan=True, allow_infinity=True, width=64)


@given(any_float, any_float, any_float)
def test_zero_separation_never_speciates(gamma: float, c: float, eta_: float) -> None:
    """Issue acceptance: with m = 0, speciation_parameter never returns a value ≥ 1 (0 or NaN)."""
    k = speciation_parameter(gamma, 0.0, c, eta_)
    assert not k >= 1.0
    valid_inputs = np.isfinite([gamma, c, eta_]).all() and gamma > 0 and c > 0
    assert (k == 0.0) if valid_inputs else np.isnan(k)  # eq. (48) has no non-zero root
    assert modal_snr(0.0, c, eta_, gamma) == 0.0 if valid_inputs else np.isnan(modal_snr(0.0, c, eta_, gamma))


def test_undefined_is_nan_with_a_reason_and_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    gamma = np.array([1.0, 1.0, 1.0, 0.0, -1.0, 1.0, 1.0, 1.0, np.nan, 1.0])
    m = np.array([1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, np.nan, 1.0, 0.0])
    c = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.0, -2.0, 1.0, 1.0, 1.0])
    e = np.array([1.5, 3.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0])  # η < 1 + γ/c = 2 only for entry 0
    with caplog.at_level(logging.DEBUG, logger="theory"):
        k = speciation_parameter(gamma, m, c, e)
        s = modal_snr(m, c, e, gamma)
    assert caplog.records == []  # an undefined κ is a result, not an event
    S = KappaStatus
    expected = [S.DEFINED, S.VIOLATES_55, S.ZERO_SEPARATION, S.GAMMA_NOT_POSITIVE, S.GAMMA_NOT_POSITIVE]
    expected += [S.C_NOT_POSITIVE, S.C_NOT_POSITIVE, S.NOT_FINITE, S.GAMMA_NOT_POSITIVE, S.ZERO_SEPARATION]
    np.testing.assert_array_equal(kappa_status(gamma, m, c, e), expected)
    assert k[0] == pytest.approx(1.0 / (1.0 * (-0.5 + 1.0)))  # γ m²/(c((1 − η)c + γ)) = 1/0.5
    assert k[2] == 0.0 and k[9] == 0.0 and s[2] == 0.0  # m = 0: κ = 0, even where eq. (55) fails
    np.testing.assert_array_equal(np.isnan(k), [False, True, False] + [True] * 6 + [False])
    np.testing.assert_array_equal(np.isnan(s), np.isnan(k))
    valid_55 = [True] + [False] * 6 + [True, False, False]  # (55) alone does not look at m
    np.testing.assert_array_equal(snr_validity(c, e, gamma), valid_55)


def test_a_violation_of_eq55_is_not_speciated() -> None:
    """Issue acceptance: eq. (55) failing mid-trajectory makes the step undefined, never a crossing."""
    m = np.array([0.1, 0.3, 0.6, 0.9, 1.2])
    e = np.array([1.0, 1.0, 3.5, 1.0, 1.0])  # (1 − η)c + γ = −1.5 at step 2
    k = speciation_parameter(1.0, m, 1.0, e)
    assert np.isnan(k[2]) and np.all(k[[0, 1]] < 1) and np.all(k[[3, 4]] < 2)
    assert np.isnan(speciation_step(k))  # a crossing could hide at step 2: cannot tell
    k_ok = speciation_parameter(1.0, m, 1.0, 1.0)  # same m, η = 1: κ = m², crosses between 3 and 4
    assert speciation_step(k_ok) == pytest.approx(3 + (1 - 0.81) / (1.44 - 0.81), rel=1e-12)


def test_cumulative_gain_exclusive_product() -> None:
    e = np.array([[2.0, 3.0, 0.5, 4.0], [1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(cumulative_gain(e), [[1, 2, 6, 3], [1, 1, 1, 1]])
    np.testing.assert_allclose(cumulative_gain(e.T, axis=0), np.array([[1, 2, 6, 3], [1, 1, 1, 1]]).T)


def test_propagated_snr_eq58() -> None:
    e = np.array([1.1, 1.2, 0.9])
    G = cumulative_gain(e)
    got = propagated_snr(G, 0.5, 2.0, e, 3.0)
    ref = G**2 * 0.25 / (2.0 * ((1 - e) * 2.0 + 3.0))  # eq. (58) written out
    np.testing.assert_allclose(got, ref, rtol=1e-15)
    # an undefined gain upstream makes every later G, and so every later SNR, undefined
    G_nan = cumulative_gain(np.array([1.1, np.nan, 0.9, 1.0]))
    np.testing.assert_array_equal(np.isnan(G_nan), [False, False, True, True])
    np.testing.assert_array_equal(np.isnan(propagated_snr(G_nan, 0.5, 2.0, 1.0, 3.0)), np.isnan(G_nan))


def test_speciation_step_interpolation_and_edges() -> None:
    nan = np.nan
    k = np.array(
        [
            [0.2, 0.6, 1.4, 2.0],  # crosses between 1 and 2: 1 + 0.4/0.8 = 1.5
            [1.2, 1.5, 2.0, 3.0],  # already speciated at the first point
            [0.1, 0.2, 0.3, 0.4],  # defined everywhere, never: inf
            [0.1, 0.5, nan, 2.0],  # undefined before the first crossing: cannot tell
            [0.2, 0.6, 1.4, nan],  # undefined after the crossing: the crossing stands
            [0.1, nan, 0.3, 0.4],  # no crossing among defined points, one undefined: cannot tell
            [nan, 0.6, 1.4, 2.0],  # undefined first point
        ]
    )
    ref = [1.5, 0.0, np.inf, nan, 1.5, nan, nan]
    np.testing.assert_allclose(speciation_step(k), ref)
    steps = np.array([10.0, 20.0, 40.0, 80.0])
    np.testing.assert_allclose(speciation_step(k, steps), [30.0, 10.0, np.inf, nan, 30.0, nan, nan])
    np.testing.assert_allclose(speciation_step(k.T, axis=0), ref)


@given(st.lists(st.floats(0.0, 5.0), min_size=2, max_size=12))
def test_speciation_step_is_a_crossing(kappa: list[float]) -> None:
    k = np.array(kappa)
    s = speciation_step(k)
    if not np.any(k >= 1):
        assert s == np.inf
        return
    i = int(np.argmax(k >= 1))
    assert (i - 1 if i else 0) <= s <= i
    if i > 0:  # the linear interpolant through the bracketing points equals 1 at s
        assert k[i - 1] + (s - (i - 1)) * (k[i] - k[i - 1]) == pytest.approx(1.0, abs=1e-12)


def _first_crossing_loop(k: list[float]) -> float:
    """Second algorithm for the NaN convention: a plain loop over the points."""
    for i, v in enumerate(k):
        if np.isnan(v):
            return np.nan  # undefined before any crossing
        if v >= 1.0:
            return 0.0 if i == 0 else i - 1 + (1 - k[i - 1]) / (v - k[i - 1])
    return np.inf


@given(st.lists(st.one_of(st.floats(0.0, 5.0), st.just(np.nan)), min_size=1, max_size=12))
def test_speciation_step_nan_convention_against_a_loop(kappa: list[float]) -> None:
    got, ref = speciation_step(np.array(kappa)), _first_crossing_loop(kappa)
    assert (np.isnan(got) and np.isnan(ref)) or got == pytest.approx(ref, abs=1e-12)


def test_synchronization_gap(caplog: pytest.LogCaptureFixture) -> None:
    assert synchronization_gap(60.0, 45.5) == 14.5  # eq. (65): s_lo − s_hi
    np.testing.assert_array_equal(synchronization_gap([np.inf, 3.0], [2.0, np.inf]), [np.inf, -np.inf])
    with caplog.at_level(logging.DEBUG, logger="theory"):
        assert np.isnan(synchronization_gap(np.inf, np.inf))  # neither speciates: undefined
        np.testing.assert_array_equal(
            np.isnan(synchronization_gap([np.nan, 1.0], [2.0, np.nan])), [True, True]
        )
    assert caplog.records == []


def test_gap_collapses_with_g_in_routing_dominant_model() -> None:
    """Eq. (61)–(66) end to end: κ_k(s) from the routing-dominant SNR with m_k(s) growing along the
    trajectory; the leading (larger χ) mode speciates first, and the gap shrinks to 0 as g → 1."""
    s = np.arange(100.0)
    m = 0.02 * np.exp(s / 20.0)  # branch separation growing along the reverse process
    gaps = []
    for g in [0.0, 0.3, 0.6, 1.0]:
        k_hi = speciation_parameter(1.0, m, 1.0, eta_routing_dominant(g, -0.5, 0.4))
        k_lo = speciation_parameter(1.0, m, 1.0, eta_routing_dominant(g, -0.5, 0.1))
        gaps.append(synchronization_gap(speciation_step(k_lo), speciation_step(k_hi)))
    assert gaps[0] > 0 and np.all(np.diff(gaps) < 0) and gaps[-1] == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------- eq. (50) in the effective Jacobian (docs/FINDINGS.md §4)


def test_kappa_from_jacobian_reference_values() -> None:
    """Closed forms: γ = 2, m = 1, c = 0.5 (κ_f = 2); J = 1 gives κ = 1 for any γ; η = 1 gives κ = κ_f."""
    assert effective_jacobian(2.0, 1.0, 0.5, 1.0) == pytest.approx(1.0 + 2.0 * (2.0 - 1.0) / 0.5)  # 5
    assert speciation_parameter_from_jacobian(2.0, 1.0, 0.5, 0.8) == pytest.approx(4.0 / (0.1 + 4.0))
    for gamma in (1e-3, 0.7, 50.0):
        assert speciation_parameter_from_jacobian(gamma, 1.0, 0.5, 1.0) == pytest.approx(1.0, rel=1e-14)
        assert speciation_parameter(gamma, 1.0, 0.5, 1.0) == pytest.approx(2.0, rel=1e-14)  # η = 1: m²/c
    # the measured J put where eq. (50) expects η: κ_f/(2 − κ_f) at η = 1, and (55) fails from κ_f = 2 on
    J = effective_jacobian(0.7, 1.0, 0.5, 1.0)
    assert bool(np.isnan(speciation_parameter(0.7, 1.0, 0.5, J)))
    assert speciation_parameter(0.7, 0.6, 0.5, effective_jacobian(0.7, 0.6, 0.5, 1.0)) == pytest.approx(
        0.72 / (2 - 0.72)
    )


@given(pos, st.floats(0.0, 10.0), pos, real)
def test_kappa_from_jacobian_is_eq50(gamma: float, m: float, c: float, eta_: float) -> None:
    """κ₅₀(J) with J = effective_jacobian(η) equals eq. (50) (1e-9 relative, where both are defined and the
    eq. 55 bracket is not lost to cancellation), with the same status; κ > 1 ⇔ J > 1 where defined."""
    J = effective_jacobian(gamma, m, c, eta_)
    bracket, scale = (1 - eta_) * c + gamma, abs(eta_) * c + gamma + gamma * m**2 / c
    assume(abs(bracket) > 1e-9 * scale)
    k50, kJ = speciation_parameter(gamma, m, c, eta_), speciation_parameter_from_jacobian(gamma, m, c, J)
    assert kappa_status(gamma, m, c, eta_) == kappa_status_from_jacobian(gamma, m, c, J)
    if np.isnan(k50):
        assert np.isnan(kJ)
        return
    assert kJ == pytest.approx(k50, rel=1e-9, abs=1e-300)
    if m > 0 and abs(J - 1) > 1e-9 * max(1.0, abs(eta_) + gamma / c * (1 + m**2 / c)):
        assert (kJ > 1) == (J > 1)


@given(pos, pos, pos)
def test_no_propagator_beyond_the_identity_gives_the_exact_pitchfork(
    gamma: float, m: float, c: float
) -> None:
    """η = 1 (K = I): κ = m²/c for every γ > 0, in either form: 1e-12 relative from eq. (50); from J, whose
    bracket c(1 − J) + γκ_f cancels γ(κ_f − 1) against γκ_f, 1e-14·(1 + κ_f) relative."""
    kappa_f = m**2 / c
    assert speciation_parameter(gamma, m, c, 1.0) == pytest.approx(kappa_f, rel=1e-12)
    J = effective_jacobian(gamma, m, c, 1.0)
    assert speciation_parameter_from_jacobian(gamma, m, c, J) == pytest.approx(
        kappa_f, rel=1e-14 * (1 + kappa_f)
    )


def test_kappa_from_jacobian_undefined_with_reasons() -> None:
    S = KappaStatus
    gamma = np.array([1.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    m = np.array([1.0, 1.0, 1.0, 0.0, np.nan, 1.0])
    c = np.array([1.0, 1.0, 1.0, 1.0, 1.0, -1.0])
    J = np.array([1.5, 2.0, 1.0, 9.0, 1.0, 1.0])  # c(1 − J) + γκ_f = 0.5, 0, …
    expected = [S.DEFINED, S.VIOLATES_55, S.GAMMA_NOT_POSITIVE, S.ZERO_SEPARATION, S.NOT_FINITE]
    np.testing.assert_array_equal(kappa_status_from_jacobian(gamma, m, c, J), [*expected, S.C_NOT_POSITIVE])
    k = speciation_parameter_from_jacobian(gamma, m, c, J)
    assert k[0] == pytest.approx(1.0 / 0.5) and k[3] == 0.0
    np.testing.assert_array_equal(np.isnan(k), [False, True, True, False, True, True])
    with pytest.raises(ValueError, match=r"shape mismatch: gamma\(\), m\(2,\), c\(\), jacobian\(3,\)"):
        speciation_parameter_from_jacobian(1.0, np.ones(2), 1.0, np.ones(3))
    with pytest.raises(TypeError, match="jacobian must be a real number"):
        kappa_status_from_jacobian(1.0, 1.0, 1.0, "J")


def test_bad_input() -> None:
    with pytest.raises(ValueError, match=r"g must lie in \[0, 1\], got 1.5"):
        eta(1.5, 0.0, 0.0, 0.0)
    with pytest.raises(TypeError, match="m must be a real number"):
        modal_snr("abc", 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"shape mismatch: gamma\(\), m\(3,\), c\(4,\)"):
        modal_snr(np.ones(3), np.ones(4), 1.0, 1.0)
    with pytest.raises(ValueError, match=r"kappa must not contain ±inf"):
        speciation_step(np.array([0.1, np.inf]))
    with pytest.raises(ValueError, match=r"steps must have shape \(3,\)"):
        speciation_step(np.ones(3), steps=np.arange(4))
    with pytest.raises(ValueError, match="steps must be strictly increasing"):
        speciation_step(np.ones(3), steps=np.array([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="s_spec_hi must not contain -inf"):
        synchronization_gap(1.0, -np.inf)

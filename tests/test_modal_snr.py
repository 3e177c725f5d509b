"""Modal SNR, speciation parameter and the synchronization gap (eq. 44–65)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from theory import (
    cumulative_gain,
    eta,
    modal_snr,
    modal_snr_expanded,
    propagated_snr,
    rho,
    snr_validity,
    speciation_parameter,
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
    else:
        assert s53 == np.inf and s54 == np.inf


@given(pos, pos, pos, real, real, unit)
def test_routing_dominant_is_pi_zero_limit(
    m: float, c: float, gamma: float, lam: float, chi: float, g: float
) -> None:
    assert eta_routing_dominant(g, lam, chi) == eta(g, lam, chi, 0.0)
    assume(abs(gamma / c - lam - rho(g) * chi) > 1e-6 * (gamma / c + abs(lam) + abs(chi)))
    a = modal_snr_routing_dominant(m, c, gamma, lam, chi, g)
    b = modal_snr_expanded(m, c, gamma, lam, chi, 0.0, g)
    assert a == pytest.approx(b, rel=1e-9) or (a == b == np.inf)


def test_validity_violation_returns_inf_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    c = np.array([1.0, 1.0, 1.0])
    e = np.array([1.5, 2.0, 3.0])  # η < 1 + γ/c = 2 only for the first entry
    np.testing.assert_array_equal(snr_validity(c, e, 1.0), [True, False, False])
    with caplog.at_level(logging.WARNING, logger="theory.modal_snr"):
        s = modal_snr(1.0, c, e, 1.0)
    assert s[0] == pytest.approx(2.0) and np.all(np.isinf(s[1:])) and np.all(s > 0)
    assert "violated for 2 of 3" in caplog.text


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


def test_speciation_step_interpolation_and_edges() -> None:
    k = np.array(
        [
            [0.2, 0.6, 1.4, 2.0],  # crosses between 1 and 2: 1 + 0.4/0.8 = 1.5
            [1.2, 1.5, 2.0, 3.0],  # already speciated at the first point
            [0.1, 0.2, 0.3, 0.4],  # never
            [0.1, 0.5, np.inf, np.inf],  # eq. (55) broken at step 2
        ]
    )
    np.testing.assert_allclose(speciation_step(k), [1.5, 0.0, np.inf, 2.0])
    steps = np.array([10.0, 20.0, 40.0, 80.0])
    np.testing.assert_allclose(speciation_step(k, steps), [30.0, 10.0, np.inf, 40.0])
    np.testing.assert_allclose(speciation_step(k.T, axis=0), [1.5, 0.0, np.inf, 2.0])


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


def test_synchronization_gap() -> None:
    assert synchronization_gap(60.0, 45.5) == 14.5  # eq. (65): s_lo − s_hi
    np.testing.assert_array_equal(synchronization_gap([np.inf, 3.0], [2.0, np.inf]), [np.inf, -np.inf])
    assert np.isnan(synchronization_gap(np.inf, np.inf))


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


def test_bad_input() -> None:
    with pytest.raises(ValueError, match=r"g must lie in \[0, 1\], got 1.5"):
        eta(1.5, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match=r"c must lie in \(0, inf\], got -1"):
        modal_snr(1.0, -1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"gamma must lie in \(0, inf\], got 0"):
        speciation_parameter(0.0, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="m must be finite"):
        modal_snr(np.nan, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"shape mismatch: m\(3,\), c\(4,\)"):
        modal_snr(np.ones(3), np.ones(4), 1.0, 1.0)
    with pytest.raises(ValueError, match="kappa must not contain NaN"):
        speciation_step(np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match=r"steps must have shape \(3,\)"):
        speciation_step(np.ones(3), steps=np.arange(4))
    with pytest.raises(ValueError, match="steps must be strictly increasing"):
        speciation_step(np.ones(3), steps=np.array([0.0, 2.0, 1.0]))

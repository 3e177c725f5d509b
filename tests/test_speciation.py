"""Single-trajectory speciation (Biroli et al. 2024): t_S = ½ log Λ, its VP-time image, and the simulator.

Criterion (from theory). Cloning a trajectory at time t and continuing both copies with the
exact score, the probability P_split(t) of ending in different components rises from 0 (late
cloning) to 1/2 (cloning at pure noise). At the speciation time the signal variance along the
class direction equals the noise variance, and for large Λ P_split depends on t only through
t − t_S (scaling collapse). We test: (i) the exact P_split crosses half its maximum, 1/4, within
0.15 OU-time units of t_S for Λ ∈ {10, 100, 1000}, and P_split(t_S + δ) is Λ-independent to
0.03 for Λ = 100 vs 1000; (ii) the simulator reproduces P_split at t_S − ½, t_S, t_S + ½ within
4 binomial standard errors plus 0.01 (Euler–Maruyama bias at 150 steps, measured ≈ 0.005).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq

from theory import (
    VPSchedule,
    alpha,
    biroli_speciation_time,
    biroli_speciation_time_vp,
    decoupling_same_fraction,
    ou_time_to_vp_time,
    same_component_fraction,
    split_probability_exact,
    split_probability_simulated,
    symmetric_mixture,
    vp_time_to_ou_time,
)

VP = VPSchedule()
T_END = 1e-3


def _p_exact_ou(Lam: float, s: float) -> float:
    """Exact P_split for ½N(±μ, I) with Λ = |μ|² + 1, cloned at OU time s."""
    return split_probability_exact(np.sqrt(Lam - 1.0), 1.0, VP, ou_time_to_vp_time(VP, s), T_END)


def test_biroli_time_and_vp_mapping() -> None:
    assert biroli_speciation_time(np.e**2) == pytest.approx(1.0)
    Lam = np.array([2.0, 50.0, 1e3])
    t_vp = biroli_speciation_time_vp(VP, Lam)
    # matching α_t = e^{−s}: the VP speciation time has α² Λ = 1
    np.testing.assert_allclose(alpha(VP, t_vp) ** 2 * Lam, 1.0, rtol=1e-12)
    np.testing.assert_allclose(vp_time_to_ou_time(VP, t_vp), biroli_speciation_time(Lam), rtol=1e-12)
    assert np.all(np.diff(t_vp) > 0)  # larger separation ⇒ earlier speciation in reverse time


def test_exact_split_probability_limits() -> None:
    m = 5.0
    assert split_probability_exact(m, 1.0, VP, T_END, T_END) == pytest.approx(0.0, abs=1e-12)
    # at T the class signal α_T² Λ ≈ 1e-3 is buried: P_split ≈ 1/2
    assert split_probability_exact(m, 1.0, VP, 1.0, T_END) == pytest.approx(0.5, abs=2e-3)
    p = split_probability_exact(m, 1.0, VP, np.linspace(0.05, 1.0, 30), T_END)
    assert np.all(np.diff(p) > 0)


@pytest.mark.parametrize("Lam", [10.0, 100.0, 1000.0])
def test_exact_split_crosses_quarter_near_t_S(Lam: float) -> None:
    t_S = biroli_speciation_time(Lam)
    s_quarter = brentq(lambda s: _p_exact_ou(Lam, s) - 0.25, 0.01, 4.9)
    assert abs(s_quarter - t_S) < 0.15


def test_scaling_collapse_in_t_minus_t_S() -> None:
    for delta in (-1.0, -0.5, 0.0, 0.5, 1.0):
        p100 = _p_exact_ou(100.0, biroli_speciation_time(100.0) + delta)
        p1000 = _p_exact_ou(1000.0, biroli_speciation_time(1000.0) + delta)
        assert abs(p100 - p1000) < 0.03


def test_simulator_reproduces_split_probability() -> None:
    Lam, n = 50.0, 8000
    data = symmetric_mixture(np.array([np.sqrt(Lam - 1.0), 0.0, 0.0]), 1.0)
    assert data.covariance_eigenvalues[0] == pytest.approx(Lam)
    t_S = biroli_speciation_time(Lam)
    sims = []
    for delta in (-0.5, 0.0, 0.5):
        t_c = float(ou_time_to_vp_time(VP, t_S + delta))
        p_ex = _p_exact_ou(Lam, t_S + delta)
        p_sim = split_probability_simulated(data, VP, t_c, T_END, n, 150, seed=1)
        assert abs(p_sim - p_ex) < 4 * np.sqrt(p_ex * (1 - p_ex) / n) + 0.01, (delta, p_sim, p_ex)
        sims.append(p_sim)
    assert sims[0] < 0.25 < sims[2]  # the simulated crossing of 1/4 is bracketed by t_S ± ½


def test_decoupling_fraction_rises_through_t_S() -> None:
    """Replicas from independent N(0, I) starts, strongly coupled (g = 50) until t_dec, then free.

    Decoupling well before speciation (t_dec = 0.8 > t_S ≈ 0.53) leaves the classes independent
    (same-class fraction ½); decoupling after it locks them (→ 1); in between the fraction
    rises monotonically through t_S.
    """
    data = symmetric_mixture(np.array([4.0, 0.0]), 1.0)  # Λ = 17
    assert biroli_speciation_time_vp(VP, 17.0) == pytest.approx(0.5286, abs=1e-4)
    grid = np.linspace(1.0, T_END, 101)
    n = 3000
    se = np.sqrt(0.25 / n)

    def frac(t_dec: float, g: float = 50.0) -> float:
        return decoupling_same_fraction(data, VP, grid, t_decouple=t_dec, g=g, n_pairs=n, seed=0)

    assert abs(frac(1.0, 0.0) - 0.5) < 4 * se  # uncoupled: same class by chance
    assert abs(frac(0.8) - 0.5) < 4 * se + 0.01  # coupling that ends before t_S is forgotten
    f = [frac(t) for t in (0.6, 0.5, 0.4, 0.3)]
    assert np.all(np.diff(f) > 0) and f[0] < 0.75 and f[-1] > 0.95


def test_same_component_fraction_counts_pairs() -> None:
    data = symmetric_mixture(np.array([3.0]), 0.5)
    z = np.array([[[2.0], [1.0]], [[2.0], [-1.0]], [[-3.0], [-0.5]], [[0.5], [-0.5]]])
    assert same_component_fraction(data, VP, z, T_END) == 0.5


def test_bad_input() -> None:
    with pytest.raises(ValueError, match=r"Lambda must lie in \(1, inf\], got 0.5"):
        biroli_speciation_time(0.5)
    with pytest.raises(ValueError, match=r"s must lie in \[0, 5.025\]"):
        biroli_speciation_time_vp(VP, 1e6)  # speciates before T: no VP time in (0, 1]
    with pytest.raises(ValueError, match=r"t_clone must lie in \[0.001, 1\]"):
        split_probability_exact(2.0, 1.0, VP, 1e-4, T_END)

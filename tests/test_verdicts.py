"""The §2.7 verdicts (dit_validation.verdicts) on synthetic compare arrays whose answer is known.

* a verdict is decided only by a paired interval: holds above 0, fails below, undefined when it contains 0;
* paired intervals come from the differences of replicates (Student form over M clone pairs), not from
  marginal intervals (a pair with wide marginal CIs but a tight paired difference is decided);
* a direction the gate refused has no vote; with fewer than two learned directions nothing is decided;
* the collapse is undefined with two couplings where both directions split, decided with three, and its slope
  interval comes from per-replicate least-squares slopes (a plain loop).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import t as student_t

import theory
from dit_validation.verdicts import (
    MIN_COLLAPSE_POINTS,
    Verdict,
    collapse,
    decide,
    hierarchy,
    hierarchy_pairs,
    natural_gap,
    paired_ci,
)

M = 48  # clone pairs behind the synthetic replicates


def _arrays(tau: np.ndarray, noise: float = 0.3, shared: float = 3.0, B: int = 400, seed: int = 0) -> dict:
    """Compare-like arrays: τ (G, F) with replicates that share a large common term per (g, resample) — wide
    marginal intervals, tight paired differences (what seed resampling gives: a bad resample delays every
    direction alike)."""
    rng = np.random.default_rng(seed)
    G, F = tau.shape
    g = np.linspace(0.0, 0.5, G)
    common = rng.normal(0, shared, (G, 1, B))
    boot = tau[..., None] + common + rng.normal(0, noise, (G, F, B))
    return {
        "g": g,
        "rho": np.atleast_1d(theory.rho(g)),
        "factor_names": np.array([f"f{k}" for k in range(F)]),
        "tau_meas": tau.astype(float),
        "tau_meas_boot": boot,
        "splits": np.isfinite(tau),
        "learned": np.ones(F, bool),
        "agree": np.zeros((G, F, 2, M)),
    }


def test_decide_and_paired_ci():
    assert decide(np.array([0.1, 2.0]))[0] is Verdict.HOLDS
    assert decide(np.array([-2.0, -0.1]))[0] is Verdict.FAILS
    v, why = decide(np.array([-1.0, 2.0]))
    assert v is Verdict.UNDEFINED and "contains 0" in why
    assert decide(np.array([np.nan, np.nan]))[0] is Verdict.UNDEFINED
    x = np.random.default_rng(0).normal(2.0, 1.5, 400)
    half = student_t.ppf(0.975, M - 1) * np.sqrt(M / (M - 1)) * x.std()
    np.testing.assert_allclose(paired_ci(2.0, x, M), [2.0 - half, 2.0 + half])
    assert np.isnan(paired_ci(1.0, np.array([1.0] * 9 + [np.nan] * 50), M)).all()  # < 10 finite: none


def test_hierarchy_is_decided_by_the_paired_interval_not_the_marginal_ones():
    """τ = 10, 12, 14, 16 with a shared resample term of SD 3: each marginal 95% CI is ≈ ±6 steps and they
    all overlap, yet every paired difference is 2 ± 0.8 and the extremes' 6 ± 0.8: holds."""
    a = _arrays(np.array([[10.0, 12.0, 14.0, 16.0]]))
    d, pairs, est, cis = hierarchy(a)
    marg = np.percentile(a["tau_meas_boot"][0], [2.5, 97.5], axis=1).T
    assert marg[0, 1] > marg[-1, 0]  # the marginal intervals of the extremes overlap
    assert d.verdict is Verdict.HOLDS and d.estimate == pytest.approx(6.0)
    np.testing.assert_array_equal(pairs, [[0, 1], [1, 2], [2, 3], [0, 3]])
    diff = a["tau_meas_boot"][0, 3] - a["tau_meas_boot"][0, 0]
    half = student_t.ppf(0.975, M - 1) * np.sqrt(M / (M - 1)) * diff.std()
    np.testing.assert_allclose(cis[-1], [6.0 - half, 6.0 + half])
    # reversed order: fails; equal: undefined
    assert hierarchy(_arrays(np.array([[16.0, 14.0, 12.0, 10.0]])))[0].verdict is Verdict.FAILS
    assert hierarchy(_arrays(np.array([[10.0, 10.0, 10.0, 10.0]])))[0].verdict is Verdict.UNDEFINED


def test_an_unlearned_direction_has_no_vote():
    """The most local direction is the reversed one; once the gate refuses it, the extremes are f0 and f2."""
    a = _arrays(np.array([[10.0, 12.0, 14.0, 5.0]]))
    assert hierarchy(a)[0].verdict is Verdict.FAILS
    a["learned"] = np.array([True, True, True, False])
    d, pairs, _, _ = hierarchy(a)
    assert d.verdict is Verdict.HOLDS and pairs[-1].tolist() == [0, 2] and "not learned" in d.reason
    a["learned"] = np.array([True, False, False, False])
    for dec in (hierarchy(a)[0], natural_gap(a), collapse(a)[0]):
        assert dec.verdict is Verdict.UNDEFINED and np.isnan(dec.estimate)


def test_collapse_needs_three_points_and_its_slope_interval_is_a_loop():
    """Gap Δ(g) = 20 ρ(g): with the last direction splitting at only two couplings the collapse is undefined;
    at three or more it holds, and its interval is the percentile of the per-replicate slopes."""
    G = 5
    g = np.linspace(0.0, 0.5, G)
    rho = np.atleast_1d(theory.rho(g))
    tau = np.stack([np.full(G, 10.0), 10.0 + 20.0 * rho], axis=1)  # (G, 2)
    a = _arrays(tau)
    d, points, ci = collapse(a)
    assert points.all() and d.verdict is Verdict.HOLDS and d.estimate == pytest.approx(20.0)
    reps = a["tau_meas_boot"][:, 1] - a["tau_meas_boot"][:, 0]  # (G, B)
    slopes = np.array([np.polyfit(rho, reps[:, b], 1)[0] for b in range(reps.shape[1])])
    half = student_t.ppf(0.975, M - 1) * np.sqrt(M / (M - 1)) * slopes.std()
    np.testing.assert_allclose(ci, [d.estimate - half, d.estimate + half])
    tau2 = tau.copy()
    tau2[MIN_COLLAPSE_POINTS - 1 :, 1] = np.nan  # the local direction splits at two couplings only
    d2, points2, _ = collapse(_arrays(tau2))
    assert points2.sum() == 2 and d2.verdict is Verdict.UNDEFINED and "fewer than 3" in d2.reason
    # a flat gap is undefined, a growing one (Δ rising as ρ falls) fails
    flat = _arrays(np.stack([np.full(G, 10.0), np.full(G, 16.0)], axis=1))
    assert collapse(flat)[0].verdict is Verdict.UNDEFINED
    grow = _arrays(np.stack([np.full(G, 10.0), 30.0 - 20.0 * rho], axis=1))
    assert collapse(grow)[0].verdict is Verdict.FAILS


def test_natural_gap_at_g0():
    a = _arrays(np.array([[10.0, 18.0], [10.0, 12.0]]))
    d = natural_gap(a)
    assert d.verdict is Verdict.HOLDS and d.estimate == pytest.approx(8.0)
    a["splits"][0, 1] = False
    a["tau_meas"][0, 1] = np.nan
    assert natural_gap(a).verdict is Verdict.UNDEFINED


@given(st.lists(st.integers(0, 9), min_size=0, max_size=6, unique=True))
def test_hierarchy_pairs_are_adjacent_plus_extremes(order):
    pairs = hierarchy_pairs(np.asarray(order))
    if len(order) < 2:
        assert pairs.shape == (0, 2)
        return
    adj = [[order[k], order[k + 1]] for k in range(len(order) - 1)]
    want = adj + ([[order[0], order[-1]]] if len(order) > 2 else [])
    assert pairs.tolist() == want

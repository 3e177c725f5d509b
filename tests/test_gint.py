"""The held-out G_int (dit_validation.gint): its estimand, its interval's calibration, the split-half null,
the K rule, the depth stage's use of it, and bad input.

The synthetic model: Gaussian difference vectors with a known covariance. At s = 0, v_0 ~ N(0, Σ_0),
Σ_0 = diag(d); at s = τ, v_τ = F^{1/2}(ρ v_0 + √(1 − ρ²) w) with w ~ N(0, Σ_0) independent, so
Σ_τ = diag(f d) and v_τ is correlated with v_0 seed by seed, as in the DiT (deterministic DDIM). For a
fixed basis r_k the true G_int (eq. 75–80) is (mean_trail q_k)/(mean_lead q_k), q_k = r_kᵀΣ_τr_k/r_kᵀΣ_0r_k;
f ≡ c makes it exactly 1 for every basis.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dit_validation.gint import (
    BAND_FRACTION,
    HELDOUT_MODES,
    gint_bootstrap,
    gint_heldout,
    gint_interval,
    gint_null,
    heldout_bands,
    percentile_ci,
    resample_counts,
)

D, K = 400, 8  # D ≫ M, as in a DiT layer (D = 6144 on the shipped mixture model, M = 32)
DIAG0 = np.linspace(3.0, 0.5, D)  # Σ_0 = diag(d): a slowly decaying spectrum, eigenvectors the axes


def _draw(rng: np.random.Generator, n: int, f: np.ndarray, rho: float) -> tuple[np.ndarray, np.ndarray]:
    """n pairs' (v_0, v_τ), each (n, D)."""
    v0 = rng.standard_normal((n, D)) * np.sqrt(DIAG0)
    w = rng.standard_normal((n, D)) * np.sqrt(DIAG0)
    return v0, np.sqrt(f) * (rho * v0 + np.sqrt(1 - rho**2) * w)


def _basis(v: np.ndarray, k: int) -> np.ndarray:
    """Leading k eigenvectors (k, D) of vᵀv/n (eq. 42), descending."""
    w, r = np.linalg.eigh(v.T @ v / v.shape[0])
    return r[:, ::-1][:, :k].T


def _true_gint(r: np.ndarray, f: np.ndarray) -> float:
    """G_int of a fixed basis r (K, D) under Σ_0 = diag(d), Σ_τ = diag(f d) (eq. 75–80, population)."""
    q = (r**2 @ (f * DIAG0)) / (r**2 @ DIAG0)
    lead, trail = heldout_bands(r.shape[0])
    return float(q[trail].mean() / q[lead].mean())


def _projections(r: np.ndarray, v0: np.ndarray, vt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return ((v0 @ r.T) ** 2).T, ((vt @ r.T) ** 2).T  # (K, M)


def _same_seed_bootstrap(v0: np.ndarray, vt: np.ndarray, n_boot: int, rng: np.random.Generator):
    """The superseded interval: basis r_k and λ_k^(0) from the measured seeds themselves (K = M, eq. 42–43,
    76), seeds resampled with the basis kept. Returns (G_int − 1, bootstrap SD)."""
    M = v0.shape[0]
    w, a = np.linalg.eigh(v0 @ v0.T / M)  # dual Gram, eq. (43)
    w, a = w[::-1], a[:, ::-1]
    r = v0.T @ a / np.sqrt(M * w)  # (D, K = M), Nyström
    e = (vt @ r) ** 2 / w  # (M, K) per-seed eq. (76)
    lead, trail = heldout_bands(M)

    def g(x: np.ndarray) -> float:
        lam = x.mean(0)
        return lam[trail].mean() / lam[lead].mean()

    boot = [g(e[rng.integers(0, M, M)]) for _ in range(n_boot)]
    return g(e) - 1.0, float(np.std(boot, ddof=1))


# --- reference values -----------------------------------------------------------------------------------


def test_bands_are_the_first_and_last_quarter_of_a_fixed_k():
    assert heldout_bands(32) == (slice(0, 8), slice(24, 32))
    assert heldout_bands(8) == (slice(0, 2), slice(6, 8))
    assert heldout_bands(6) == (slice(0, 2), slice(4, 6))  # round(1.5) = 2
    assert heldout_bands(1) == (slice(0, 1), slice(0, 1))
    assert HELDOUT_MODES == 32 and BAND_FRACTION == 0.25  # the rule DESIGN.md states


def test_the_k_rule_does_not_follow_the_seed_count(tiny64):
    from dit_validation.protocol2 import Protocol2Config

    few = Protocol2Config(g=(0.0,), num_seeds=4).resolved(tiny64)
    many = Protocol2Config(g=(0.0,), num_seeds=40).resolved(tiny64)
    assert few.gint_modes == many.gint_modes == HELDOUT_MODES
    assert few.basis_pairs == many.basis_pairs
    assert (few.num_modes, many.num_modes) == (4, 40)  # the paper's basis keeps K = M


def test_gint_heldout_against_a_hand_computation():
    K_, M = 8, 3
    p0 = np.arange(1.0, 1.0 + K_ * M).reshape(K_, M)
    ps = p0 * np.array([2, 2, 1, 1, 1, 1, 3, 5.0])[:, None]  # λ_k = 2, 2, 1, 1, 1, 1, 3, 5
    assert gint_heldout(p0, ps) == pytest.approx((3 + 5) / 2 / 2)  # trail {6, 7} over lead {0, 1}
    layered = np.stack([p0, p0])  # leading axes are carried through
    np.testing.assert_allclose(gint_heldout(layered, np.stack([ps, p0])), [2.0, 1.0])
    # eq. (75) is a ratio of sums over the seeds, not a mean of per-seed ratios
    p0b = np.array([[1.0, 3.0]] * 4)
    psb = np.array([[2.0, 3.0]] * 2 + [[1.0, 1.0]] * 2)
    assert gint_heldout(p0b, psb) == pytest.approx((2 / 4) / (5 / 4))


def test_resample_counts_are_multinomial_draws_keyed_by_integers():
    w = resample_counts(7, 500, 3, 0)
    assert w.shape == (500, 7) and np.all(w.sum(1) == 7) and np.all(w >= 0)
    np.testing.assert_array_equal(w, resample_counts(7, 500, 3, 0))
    assert not np.array_equal(w, resample_counts(7, 500, 4, 0))
    assert abs(w.mean() - 1.0) < 0.05  # every seed is drawn once per resample on average


def test_percentile_ci_masks_columns_with_too_few_finite_replicates():
    boot = np.column_stack([np.arange(100.0), np.r_[np.arange(5.0), np.full(95, np.nan)]])
    ci = percentile_ci(boot)
    np.testing.assert_allclose(ci[0], np.percentile(np.arange(100.0), [2.5, 97.5]))
    assert np.isnan(ci[1]).all()


# --- seeded statistics: the interval is calibrated where the superseded one is too wide ------------------


@pytest.mark.parametrize(
    ("f", "rho"),
    [
        (np.full(D, 1.7), 0.95),  # Σ_τ = 1.7 Σ_0: G_int = 1 for every basis
        ((DIAG0 / DIAG0.mean()) ** 3, 0.95),  # leading directions grow more: G_int < 1
    ],
)
def test_heldout_interval_is_calibrated_where_the_same_seed_bootstrap_is_too_wide(f, rho):
    """200 independent sets of M = 32 measured seeds on one held-out basis of 400 pairs. Ours: coverage of
    the true G_int within [0.90, 0.985] (binomial SD at 0.95 is 0.015) and bootstrap SD within 20% of the
    SD across sets. The same-seed basis (K = M) with λ_k^(0) normalization, bootstrapped with its basis kept:
    its bootstrap SD is more than 2.5x the SD of its own estimate across sets (6.3x and 3.3x here). Fails if
    the resample misses the seed axis, if the basis leaks into the resample, or if the bands or eq. (75)
    are wrong. ρ = 0.95: the DiT's v_τ·r_k and v_0·r_k correlate 0.94–1.0 seed by seed."""
    rng = np.random.default_rng(20)
    r = _basis(_draw(rng, 400, f, rho)[0], K)
    truth = _true_gint(r, f) - 1.0
    M, n_sets = 32, 200
    est, lo, hi, boot_sd, old_est, old_sd = [], [], [], [], [], []
    for s in range(n_sets):
        v0, vt = _draw(rng, M, f, rho)
        out = gint_interval(*_projections(r, v0, vt), n_boot=400, seed=s)
        est.append(out.excess)
        lo.append(out.excess_ci[0])
        hi.append(out.excess_ci[1])
        boot_sd.append(out.excess_boot.std(ddof=1))
        x, sd = _same_seed_bootstrap(v0, vt, 200, rng)
        old_est.append(x)
        old_sd.append(sd)
    est, lo, hi = map(np.asarray, (est, lo, hi))
    coverage = np.mean((lo <= truth) & (truth <= hi))
    assert 0.90 <= coverage <= 0.985, coverage
    assert 0.8 <= np.mean(boot_sd) / est.std(ddof=1) <= 1.2
    assert abs(est.mean() - truth) < 3 * est.std(ddof=1) / np.sqrt(n_sets)  # the estimand is the truth
    assert np.mean(old_sd) > 2.5 * np.std(old_est, ddof=1)


def test_the_estimator_is_identically_one_at_s0_and_the_split_null_is_calibrated():
    """At s = 0 numerator and normalizer of eq. (75) are the same sums: G_int − 1 ≡ 0 and its interval is
    the point 0 (degenerate). The split-half null (one half normalized by the other; truth exactly 0)
    covers 0 in [0.90, 0.99] of 200 sets with a bootstrap SD within 25% of the SD across sets, while the
    same-seed bootstrap at s = 0 reports a wide interval around an estimate that is exactly 0 in every set."""
    rng = np.random.default_rng(21)
    f = np.ones(D)
    r = _basis(_draw(rng, 400, f, 0.5)[0], K)
    nulls, covered, boot_sd, old_sd = [], [], [], []
    for s in range(200):
        v0, _ = _draw(rng, 32, f, 0.5)
        p0, _ = _projections(r, v0, v0)
        out = gint_interval(p0, p0, n_boot=400, seed=s)
        assert out.excess == 0.0 and np.all(out.excess_ci == 0.0)
        nulls.append(out.null)
        covered.append(out.null_ci[0] <= 0.0 <= out.null_ci[1])
        boot_sd.append((out.null_ci[1] - out.null_ci[0]) / 3.92)
        x, sd = _same_seed_bootstrap(v0, v0, 200, rng)
        assert abs(x) < 1e-12  # the superseded estimate is also exactly 1 at s = 0 ...
        old_sd.append(sd)
    assert 0.90 <= np.mean(covered) <= 0.99
    assert 0.75 <= np.mean(boot_sd) / np.std(nulls, ddof=1) <= 1.25
    assert np.mean(old_sd) > 0.1  # ... yet its bootstrap claims an SD far from 0


def test_the_estimand_does_not_depend_on_the_seed_count():
    """One held-out basis, M = 16 and M = 128: the mean estimate over many sets is the same truth (ratio
    bias of eq. 75 small against the SE of the mean). Fails for a λ_k^(0) normalization (biased) or a basis
    that moves with M."""
    rng = np.random.default_rng(22)
    f = 1.0 + 1.5 * (DIAG0 - DIAG0.min()) / np.ptp(DIAG0)
    r = _basis(_draw(rng, 400, f, 0.8)[0], K)
    truth = _true_gint(r, f) - 1.0
    for M, n_sets in ((16, 400), (128, 100)):
        est = np.array([gint_heldout(*_projections(r, *_draw(rng, M, f, 0.8))) - 1 for _ in range(n_sets)])
        assert abs(est.mean() - truth) < 3 * est.std(ddof=1) / np.sqrt(n_sets), (M, est.mean(), truth)


def test_basis_eigenvalue_normalization_is_biased_for_held_out_seeds():
    """Why eq. (75) over the measured seeds, not λ_k^(0) of eq. (76): normalizing independent seeds by the
    basis set's sample eigenvalues makes G_int − 1 at s = 0 (truth 0) clearly positive (leading sample
    eigenvalues inflated, trailing deflated)."""
    rng = np.random.default_rng(23)
    f = np.ones(D)
    v_basis = _draw(rng, 64, f, 0.5)[0]
    lam = np.linalg.eigvalsh(v_basis.T @ v_basis / 64)[::-1][:K]
    r = _basis(v_basis, K)
    p0 = ((_draw(rng, 4000, f, 0.5)[0] @ r.T) ** 2).T  # (K, 4000) independent seeds at s = 0
    lead, trail = heldout_bands(K)
    by_eig = p0.mean(1) / lam
    assert by_eig[trail].mean() / by_eig[lead].mean() - 1.0 > 0.2
    assert gint_heldout(p0, p0) == 1.0


# --- properties -----------------------------------------------------------------------------------------

_POS = st.floats(0.01, 100.0)


@given(
    p0=arrays(np.float64, (8, 5), elements=_POS),
    ratio=arrays(np.float64, (8, 5), elements=_POS),
    scale=arrays(np.float64, (8,), elements=_POS),
    perm=st.permutations(range(5)),
)
def test_gint_properties(p0, ratio, scale, perm):
    ps = p0 * ratio
    g = gint_heldout(p0, ps)
    # a per-mode rescaling of both sums (another normalization of r_k) cancels in eq. (75)
    assert gint_heldout(p0 * scale[:, None], ps * scale[:, None]) == pytest.approx(g, rel=1e-9)
    assert gint_heldout(p0[:, perm], ps[:, perm]) == pytest.approx(g, rel=1e-12)  # seeds are exchangeable
    assert gint_heldout(p0, 2.5 * p0) == pytest.approx(1.0, rel=1e-12)  # uniform growth: no gap
    boot = gint_bootstrap(p0, ps, 50, 0)
    lo_ = np.min(ps.sum(1) / p0.sum(1))  # every replicate is a ratio of band means of positive λ_k
    assert boot.shape == (50,) and np.all(np.isfinite(boot)) and np.all(boot > 0) and lo_ > 0


# --- the depth stage reads Protocol II's interval ---------------------------------------------------------


def test_depth_resolves_only_layers_whose_interval_excludes_zero():
    """A Protocol II file whose G_int − 1 is 0.5 at the last layer and seed noise elsewhere: only the last
    layer is resolved; an undefined interval resolves nothing; the depth share is |G_int − 1|'s."""
    from dit_validation.analysis import depth_fraction
    from dit_validation.depth import gint_depth_interval, gint_profile, resolved_layers

    rng = np.random.default_rng(3)
    excess = np.array([0.001, -0.002, 0.0, 0.5])
    boot = excess + 0.01 * rng.standard_normal((400, 4))
    np.testing.assert_array_equal(resolved_layers(percentile_ci(boot)), [False, False, False, True])
    assert not resolved_layers(np.full((4, 2), np.nan)).any()
    p2 = {"gint_excess": excess[None], "gint_excess_boot": boot[None]}
    np.testing.assert_allclose(gint_profile(p2, 0), np.abs(excess))
    assert gint_depth_interval(p2, 0)[0] == pytest.approx(depth_fraction(np.abs(excess)))


@pytest.mark.parametrize(
    ("profile", "lowest"),
    [([0.02, 0.05, 0.1, 0.3], 0.9), ([0.01, 0.3, 0.3, 0.3], 0.9), ([0.0, 0.0, 0.0, 0.5], 0.5)],
)
def test_depth_share_interval_covers_the_true_share(profile, lowest):
    """G_int − 1 per layer = truth + N(0, 0.02²), replicates = estimate + N(0, 0.02²) (a calibrated
    bootstrap): over 300 draws the share's interval covers the share of |truth| at least ``lowest`` of the
    time (≤ 0.99). Where the gap is exactly 0 at some layers the true share sits on the boundary and |noise|
    biases every estimate away from it; the percentile interval there covers never, the reflected one often.
    """
    from dit_validation.analysis import depth_fraction
    from dit_validation.depth import gint_depth_interval

    rng = np.random.default_rng(4)
    truth = np.asarray(profile)
    target = depth_fraction(np.abs(truth))
    hits = 0
    for _ in range(300):
        x = truth + 0.02 * rng.standard_normal(4)
        p2 = {"gint_excess": x[None], "gint_excess_boot": (x + 0.02 * rng.standard_normal((300, 4)))[None]}
        lo, hi = gint_depth_interval(p2, 0)[1]
        hits += lo <= target <= hi
    assert lowest <= hits / 300 <= 0.99


# --- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: gint_heldout(np.ones((4, 3)), np.ones((4, 2))), ValueError, r"one shape \(\.\.\., K, M\)"),
        (lambda: gint_heldout(np.ones(3), np.ones(3)), ValueError, r"one shape \(\.\.\., K, M\)"),
        (lambda: gint_heldout(np.ones((4, 1)), np.ones((4, 1))), ValueError, r"at least 2, got 1"),
        (lambda: gint_null(np.ones((4, 1)), 10, 0), ValueError, r"M >= 2 measured seeds, got 1"),
        (lambda: gint_bootstrap(np.ones((4, 3)), np.ones((4, 3)), 0, 0), ValueError, "n_boot must be"),
        (lambda: heldout_bands(0), ValueError, "K must be an integer >= 1, got 0"),
        (lambda: percentile_ci(np.ones((20, 2)), level=1.5), ValueError, r"level must lie in \(0, 1\)"),
        (lambda: resample_counts(5, 10, -1), ValueError, "non-negative integers"),
    ],
)
def test_bad_input_names_the_parameter(call, error, message):
    with pytest.raises(error, match=message):
        call()

"""The measured speciation step from clone agreement (dit_validation.clone_tau) against references.

* references: the mean commitment step against a plain loop and against the center of noiseless logistic
  rises; the Student interval against scipy's t interval for a mean over seeds;
* seeded statistics: the interval covers the exact mean commitment step of a synthetic clone model;
* properties (hypothesis): τ, its interval and every replicate stay on the split grid, the status says
  which were clamped, paired differences are differences of the per-direction replicates.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from dit_validation import fits
from dit_validation.clone_tau import (
    SPLIT_AGREEMENT,
    TauStatus,
    fit_speciation,
    mean_commitment_step,
    paired_differences,
    seed_resamples,
    student_interval,
)

GRID = np.arange(0.0, 51.0, 5.0)  # the quick compare grid: S = 50, a split every 5 steps


def _loop_mean_step(t: np.ndarray, y: np.ndarray) -> float:
    """t_first + trapezoid area of the normalized rise, written as a plain loop."""
    u = [(y[-1] - v) / (y[-1] - y[0]) for v in y]
    return t[0] + sum((t[j + 1] - t[j]) * (u[j] + u[j + 1]) / 2 for j in range(len(t) - 1))


def test_mean_commitment_step_matches_a_loop_and_recovers_a_logistic_center() -> None:
    rng = np.random.default_rng(0)
    t = np.sort(rng.choice(np.arange(60.0), 9, replace=False))  # an uneven grid
    Y = rng.uniform(0, 1, (5, t.size))
    Y[:, -1] = 1.0
    np.testing.assert_allclose(mean_commitment_step(t, Y), [_loop_mean_step(t, y) for y in Y], rtol=1e-13)
    # the mean of a logistic rise is its center; the trapezoid rule on a grid as coarse as 2 widths
    # integrates it to ~1e-2 step when the rise lies well inside the grid
    for c, w in ((20.3, 2.5), (23.7, 2.5), (25.0, 3.0), (28.9, 2.0)):
        y = fits.sigmoid(GRID, 0.5, 1.0, c, w)
        assert mean_commitment_step(GRID, y) == pytest.approx(c, abs=2e-2), (c, w)
    # a curve that does not rise has no τ
    assert np.isnan(mean_commitment_step(GRID, np.full(GRID.size, 0.7)))
    assert np.isnan(mean_commitment_step(GRID, np.linspace(1.0, 0.5, GRID.size)))


def test_student_interval_is_students_t_interval_for_a_mean_over_seeds() -> None:
    """For a mean over M seeds, ± t_{M−1}·√(M/(M−1))·sd(bootstrap means) → scipy's t interval as
    n_boot → ∞; with 40 000 resamples the ends agree within 1% of the half-width (MC error ~0.4%)."""
    rng = np.random.default_rng(1)
    M = 20
    x = rng.exponential(2.0, M)
    boot = x[seed_resamples(M, 40_000, 3)].mean(axis=1)
    got = student_interval(x.mean(), boot, M)
    want = np.array(stats.t.interval(0.95, M - 1, loc=x.mean(), scale=stats.sem(x)))
    half = (want[1] - want[0]) / 2
    np.testing.assert_allclose(got, want, atol=0.01 * half)
    assert np.isnan(student_interval(1.0, np.r_[np.full(9, 1.0), np.full(5, np.nan)], M)).all()
    with pytest.raises(ValueError, match=r"level must lie in \(0, 1\), got 1.5"):
        student_interval(1.0, boot, M, level=1.5)


def _synthetic_agreement(rng: np.random.Generator, F: int, M: int, mean: np.ndarray) -> np.ndarray:
    """Clone agreement of a commitment model: pair m commits along f at τ ~ U(mean − 8, mean + 8); split at
    or after τ its clones agree, before τ they agree by a fair coin that is kept from one split step to the
    next with probability 0.8. Both samplers key clone noise by step, not by split, so clones split at
    neighbouring steps mostly meet the same fate (correlation 0.6–0.96 between adjacent splits in the exact
    sampler's bank of 600 experiments)."""
    tau = mean[:, None] + rng.uniform(-8, 8, (F, M))  # (F, M)
    coin = np.empty((F, GRID.size, M))
    coin[:, 0] = rng.integers(0, 2, (F, M))
    for j in range(1, GRID.size):
        coin[:, j] = np.where(rng.uniform(size=(F, M)) < 0.8, coin[:, j - 1], rng.integers(0, 2, (F, M)))
    committed = GRID[None, :, None] >= tau[:, None, :]  # (F, T, M)
    return np.where(committed, 1.0, coin)


def test_interval_covers_the_exact_mean_step_of_a_commitment_model() -> None:
    """Seeded coverage: 200 experiments of 48 pairs; the truth is the estimator on the exact agreement
    curve ½ + ½·P(τ ≤ t) of the model. Nominal 95%; a miscalibrated interval (e.g. one without the
    small-sample factor, or a wrong resampling axis) falls below 0.9, which is 3 SE under 0.95."""
    rng = np.random.default_rng(7)
    means = np.array([12.0, 24.0, 33.0])
    exact = 0.5 + 0.5 * np.clip((GRID[None, :] - (means[:, None] - 8)) / 16, 0, 1)
    truth = mean_commitment_step(GRID, exact)
    hits = []
    for r in range(200):
        out = fit_speciation(GRID, _synthetic_agreement(rng, 3, 48, means), n_boot=200, seed=r)
        hits.append((out["tau_ci"][:, 0] <= truth) & (truth <= out["tau_ci"][:, 1]))
    coverage = np.mean(hits, axis=0)
    assert np.all(coverage >= 0.9), coverage


@given(
    seed=st.integers(0, 2**31 - 1),
    M=st.integers(2, 12),
    p_hi=st.floats(0.0, 1.0),
    n_boot=st.integers(1, 30),
)
def test_tau_ci_and_replicates_stay_on_the_grid_with_their_status(seed, M, p_hi, n_boot) -> None:
    """Any agreement array: τ, both CI ends and every replicate lie in [t_first, t_last]; τ is NaN exactly
    where the status is NO_SPLIT (first-split agreement ≥ SPLIT_AGREEMENT, or no rise); an INSIDE τ is the
    unclamped estimate, a BEFORE/AFTER one the bound it passed; the CI contains τ."""
    rng = np.random.default_rng(seed)
    agree = (rng.uniform(size=(3, GRID.size, M)) < rng.uniform(0, p_hi + 1e-9, (3, GRID.size, 1))).astype(
        float
    )
    out = fit_speciation(GRID, agree, n_boot, seed)
    first, last = GRID[0], GRID[-1]
    raw = mean_commitment_step(GRID, agree.mean(axis=2))
    no_split = (agree[:, 0].mean(axis=1) >= SPLIT_AGREEMENT) | np.isnan(raw)
    np.testing.assert_array_equal(out["splits"], ~no_split)
    for f, code in enumerate(out["status"]):
        tau, ci = out["tau"][f], out["tau_ci"][f]
        if code == TauStatus.NO_SPLIT:
            assert np.isnan(tau) and np.isnan(ci).all() and np.isnan(out["tau_boot"][f]).all()
            assert no_split[f]
            continue
        assert first <= tau <= last
        want = {TauStatus.INSIDE: raw[f], TauStatus.BEFORE: first, TauStatus.AFTER: last}[TauStatus(code)]
        assert tau == want
        assert (code == TauStatus.BEFORE) == (raw[f] < first) and (code == TauStatus.AFTER) == (raw[f] > last)
        if np.isfinite(ci).all():
            assert first <= ci[0] <= tau <= ci[1] <= last
    boot = out["tau_boot"][np.isfinite(out["tau_boot"])]
    assert np.all((boot >= first) & (boot <= last))


def test_out_of_grid_estimates_are_labelled_not_extrapolated() -> None:
    """Agreement that dips below its first-split value and rises only at the end puts the normalized area
    past the last step (AFTER); agreement that overshoots its last-split value puts it before step 0
    (BEFORE). Both are stored as the bound."""
    late = np.r_[0.6, np.full(GRID.size - 2, 0.3), 1.0]
    early = np.r_[0.5, np.full(GRID.size - 2, 0.95), 0.9]
    M = 40
    agree = np.stack(
        [np.stack([(np.arange(M) < round(v * M)).astype(float) for v in y]) for y in (late, early)]
    )
    out = fit_speciation(GRID, agree, 50, 0)
    np.testing.assert_array_equal(out["status"], [TauStatus.AFTER, TauStatus.BEFORE])
    np.testing.assert_array_equal(out["tau"], [GRID[-1], GRID[0]])


def test_replicates_are_paired_across_directions_and_couplings() -> None:
    """The resamples are default_rng(seed).integers(0, M, (n_boot, M)) for every direction: τ*_f equals the
    estimator on that resample of direction f alone, so a difference of replicates is the replicate of
    the difference; the same (seed, M) gives the same resamples at another coupling's data."""
    rng = np.random.default_rng(4)
    a1 = _synthetic_agreement(rng, 3, 24, np.array([10.0, 20.0, 30.0]))
    a2 = _synthetic_agreement(rng, 3, 24, np.array([15.0, 22.0, 26.0]))
    n_boot = 40
    out1, out2 = fit_speciation(GRID, a1, n_boot, 5), fit_speciation(GRID, a2, n_boot, 5)
    draws = np.random.default_rng(5).integers(0, 24, (n_boot, 24))
    for out, a in ((out1, a1), (out2, a2)):
        for f in range(3):
            want = [np.clip(mean_commitment_step(GRID, a[f][:, d].mean(axis=1)), 0, 50) for d in draws]
            np.testing.assert_allclose(out["tau_boot"][f], want, rtol=1e-13)
        diff = paired_differences(out["tau_boot"], out["status"], 0, 2)
        np.testing.assert_array_equal(diff, out["tau_boot"][2] - out["tau_boot"][0])
    # the gap convention: neither direction splits → 0; only one → NaN
    status = np.array([TauStatus.NO_SPLIT, TauStatus.INSIDE, TauStatus.NO_SPLIT])
    np.testing.assert_array_equal(paired_differences(out1["tau_boot"], status, 0, 2), np.zeros(n_boot))
    assert np.isnan(paired_differences(out1["tau_boot"], status, 0, 1)).all()


@pytest.mark.parametrize(
    ("agree", "message"),
    [
        (np.full((2, 3, 4), 0.5), r"agree must have shape \(F, 11, M\) for 11 split steps, got \(2, 3, 4\)"),
        (np.full((2, 11, 4), 1.5), r"agree must lie in \[0, 1\] \(clone agreement\), got 1.5"),
        (np.full((2, 11, 1), 0.5), r"M \(clone pairs, agree.shape\[2\]\) must be an integer >= 2, got 1"),
    ],
)
def test_bad_input_is_one_line_naming_the_parameter(agree, message) -> None:
    with pytest.raises(ValueError, match=message):
        fit_speciation(GRID, agree, 10, 0)

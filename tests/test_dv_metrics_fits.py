"""Output metrics (eq. 70–72), commitment score, sigmoid fits and bootstrap CIs (eq. 73)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import OptimizeWarning, curve_fit

from dit_validation import fits, metrics


def test_feature_cosine_matches_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    ref = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(
        metrics.feature_cosine(torch.tensor(a), torch.tensor(b)).numpy(), ref, rtol=1e-12
    )
    np.testing.assert_allclose(
        metrics.feature_cosine(torch.tensor(a), torch.tensor(a)).numpy(), 1.0, rtol=1e-12
    )


def test_lowpass_is_block_mean_and_limits():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 2, 8, 8))
    block = x.reshape(3, 2, 4, 2, 4, 2).mean(axis=(3, 5))  # pool 4 on 8 px = 2x2 block means
    np.testing.assert_allclose(metrics.lowpass(torch.tensor(x), 4).numpy(), block, rtol=1e-12)
    xa, xb = torch.tensor(x), torch.tensor(rng.normal(size=x.shape))
    # pool = image side: P is the identity, so d_low is the full squared distance and d_high vanishes
    np.testing.assert_allclose(
        metrics.d_low(xa, xb, 8).numpy(), ((x - xb.numpy()) ** 2).sum((1, 2, 3)), rtol=1e-12
    )
    np.testing.assert_allclose(metrics.d_high(xa, xb, 8).numpy(), 0.0, atol=1e-20)
    # constant images: no high-frequency residual, d_low = pool² C (cA − cB)²
    ca, cb = (
        torch.full((1, 2, 8, 8), 0.3, dtype=torch.float64),
        torch.full((1, 2, 8, 8), 0.7, dtype=torch.float64),
    )
    np.testing.assert_allclose(metrics.d_high(ca, cb, 2).numpy(), 0.0, atol=1e-24)
    np.testing.assert_allclose(metrics.d_low(ca, cb, 2).numpy(), 4 * 2 * 0.16, rtol=1e-12)
    with pytest.raises(ValueError, match=r"pool must lie in \[1, 8\] \(the image side\), got 9"):
        metrics.lowpass(xa, 9)
    assert metrics.default_pool(256) == 8 and metrics.default_pool(16) == 4 and metrics.default_pool(8) == 2


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), pool=st.sampled_from([1, 2, 3, 4]))
def test_discrepancies_nonnegative_symmetric(seed, pool):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.rand(2, 1, 8, 8, generator=g), torch.rand(2, 1, 8, 8, generator=g)
    for d in (metrics.d_low, metrics.d_high):
        assert (d(a, b, pool) >= 0).all()
        torch.testing.assert_close(d(a, b, pool), d(b, a, pool))
        assert torch.all(d(a, a, pool) == 0)


def test_commitment_score():
    d = np.array([[4.0, 2.0, 1.0, 0.0], [2.0, 2.0, 0.5, 0.0]])
    np.testing.assert_allclose(metrics.commitment_score(d), [[0, 0.5, 0.75, 1], [0, 0, 0.75, 1]])
    assert np.isnan(metrics.commitment_score(np.array([0.0, 1.0]))).all()


def test_fit_sigmoid_recovers_parameters():
    t = np.arange(0, 101, dtype=float)
    true = (0.2, 0.9, 47.3, 6.5)
    f = fits.fit_sigmoid(t, fits.sigmoid(t, *true))
    np.testing.assert_allclose(f.params, true, rtol=1e-6)
    falling = fits.fit_sigmoid(t, fits.sigmoid(t, 1.0, 0.0, 30.0, 4.0))
    np.testing.assert_allclose(falling.params, (1.0, 0.0, 30.0, 4.0), rtol=1e-6, atol=1e-8)
    assert np.isnan(fits.fit_sigmoid(t, np.full_like(t, 0.4)).params).all()  # flat → NaN, no exception
    assert np.isnan(fits.fit_sigmoid(t[:3], t[:3]).center)


def test_bootstrap_ci_covers_truth_and_is_seeded():
    rng = np.random.default_rng(5)
    t = np.linspace(0, 100, 26)
    Y = fits.sigmoid(t, 0.1, 0.8, 55.0, 5.0)[:, None] + rng.normal(0, 0.05, size=(26, 32))
    fit, ci = fits.bootstrap_center(t, Y, n_boot=200, seed=1)
    assert abs(fit.center - 55.0) < 2.0
    assert ci[0] < 55.0 < ci[1] and ci[1] - ci[0] < 10
    _, ci2 = fits.bootstrap_center(t, Y, n_boot=200, seed=1)
    np.testing.assert_array_equal(ci, ci2)
    with pytest.raises(ValueError, match="n_boot must be an integer >= 1, got 0"):
        fits.bootstrap_center(t, Y, n_boot=0)


# ------------------------------------------------------- vectorized fits vs the former curve_fit loop

DATA = Path(__file__).parent / "data" / "protocol1_quick_raw.npz"  # raw Protocol I arrays of a quick run


def _reference_fit(t: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The package's former fit: scipy ``curve_fit`` (trust-region reflective), same start and bounds."""
    t, y = np.asarray(t, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(y)
    t, y = t[ok], y[ok]
    span, yr = float(t.max() - t.min()), float(np.ptp(y))
    if t.size < 4 or span <= 0 or yr <= 1e-9 * max(1.0, float(np.abs(y).max())):
        return np.full(4, np.nan)
    k = max(1, t.size // 5)
    lo0, hi0 = float(np.mean(y[:k])), float(np.mean(y[-k:]))
    center0 = float(t[np.argmin(np.abs(y - 0.5 * (lo0 + hi0)))])
    pad = 2.0 * yr
    lower = np.array([y.min() - pad, y.min() - pad, t.min() - span / 2, span / 1000])
    upper = np.array([y.max() + pad, y.max() + pad, t.max() + span / 2, span])
    p0 = np.clip([lo0, hi0, center0, span / 10], lower + 1e-12, upper - 1e-12)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            return curve_fit(fits.sigmoid, t, y, p0=p0, bounds=(lower, upper), maxfev=5000)[0]
    except (RuntimeError, ValueError):
        return np.full(4, np.nan)


def _reference_bootstrap(t, Y, curve, n_boot, seed):
    """The former bootstrap: one reference fit per resample in a Python loop, same resample stream."""
    rng = np.random.default_rng(seed)
    M = Y.shape[1]
    centers = np.array([_reference_fit(t, curve(Y[:, rng.integers(0, M, M)]))[2] for _ in range(n_boot)])
    centers = centers[np.isfinite(centers)]
    return _reference_fit(t, curve(Y))[2], np.percentile(centers, [2.5, 97.5])


def _commit(Y: np.ndarray) -> np.ndarray:
    return metrics.commitment_score(np.median(Y, axis=1))


def _quick_curves() -> list[tuple[str, np.ndarray, np.ndarray, object]]:
    with np.load(DATA) as d:
        a = {k: d[k] for k in d.files}
    t = a["t_int"].astype(np.float64)
    out = [
        (f"{key} g={g:g}", t, a[key][i], curve)
        for key, curve in (("a_feat", fits.median_curve), ("d_low", _commit), ("d_high", _commit))
        for i, g in enumerate(a["g"])
    ]
    return [*out, ("control a_feat", t, a["control_a_feat"], fits.median_curve)]


def test_batched_fit_matches_curve_fit_on_well_posed_curves() -> None:
    rng = np.random.default_rng(11)
    t = np.arange(0.0, 51.0, 5.0)
    Y, want = [], []
    for _ in range(40):
        true = (rng.uniform(0, 0.3), rng.uniform(0.6, 1.0), rng.uniform(10, 40), rng.uniform(2, 8))
        y = fits.sigmoid(t, *true) + rng.normal(0, 0.01, t.size)
        Y.append(y)
        want.append(_reference_fit(t, y))
    got = fits.fit_sigmoid_batch(t, np.stack(Y))
    np.testing.assert_allclose(got, np.stack(want), rtol=1e-4, atol=1e-4)  # the same least-squares optimum
    # rows that cannot be fitted are NaN, the others unaffected by them
    bad = np.stack([Y[0], np.full(t.size, 0.3), np.r_[Y[1][:3], np.full(t.size - 3, np.nan)]])
    out = fits.fit_sigmoid_batch(t, bad)
    np.testing.assert_allclose(out[0], want[0], rtol=1e-4, atol=1e-4)
    assert np.isnan(out[1:]).all()


def test_bootstrap_ci_on_quick_run_data_matches_the_reference() -> None:
    """One curve of a real quick run (the fast check; the slow test below covers all ten with MC errors)."""
    name, t, Y, curve = _quick_curves()[0]
    tau_ref, ci_ref = _reference_bootstrap(t, Y, curve, 200, 0)
    fit, ci = fits.bootstrap_center(t, Y, curve, n_boot=200, seed=0)
    assert fit.center == pytest.approx(tau_ref, abs=1e-3), name
    np.testing.assert_allclose(ci, ci_ref, atol=0.5)


@pytest.mark.slow
def test_bootstrap_cis_unchanged_within_monte_carlo_error() -> None:
    """τ and both CI endpoints of every Table 1 curve of a quick run (3 quantities × 3 g + the g = 0 control),
    vectorized LM vs the former curve_fit loop, over 5 bootstrap seeds. The Monte-Carlo error of an endpoint
    is its standard deviation across seeds (n_boot = 200, the quick grid's); the seed-averaged endpoints must
    agree within 3 of those (or 0.1 step where the endpoint does not move), τ within 1e-3 step."""
    seeds = range(5)
    for name, t, Y, curve in _quick_curves():
        ref = [_reference_bootstrap(t, Y, curve, 200, s) for s in seeds]
        new = [fits.bootstrap_center(t, Y, curve, n_boot=200, seed=s) for s in seeds]
        assert new[0][0].center == pytest.approx(ref[0][0], abs=1e-3), name
        ci_ref, ci_new = np.stack([r[1] for r in ref]), np.stack([n[1] for n in new])
        mc = ci_ref.std(axis=0, ddof=1)
        diff = np.abs(ci_new.mean(axis=0) - ci_ref.mean(axis=0))
        assert np.all(diff <= np.maximum(3 * mc, 0.1)), (name, ci_ref.mean(0), ci_new.mean(0), mc)


def test_bootstrap_is_faster_than_the_reference_loop() -> None:
    name, t, Y, curve = _quick_curves()[3]
    start = time.perf_counter()
    fits.bootstrap_center(t, Y, curve, n_boot=200, seed=0)
    fast = time.perf_counter() - start
    start = time.perf_counter()
    _reference_bootstrap(t, Y, curve, 50, 0)  # a quarter of the resamples
    slow = 4 * (time.perf_counter() - start)
    assert fast < slow / 3, (fast, slow)  # measured ≈ 20× on 2 CPU cores; 3× leaves room for a busy machine


# ------------------------------------------------- the [0, 1]-plateau fit for agreement curves


def _reference_rise(t: np.ndarray, y: np.ndarray) -> np.ndarray:
    """scipy ``least_squares`` (trust-region reflective) in the same parametrization and bounds:
    (lo, a, center, width) ∈ [0, 1] × [0, 1] × [t_min, t_max] × [span/1000, span], hi = lo + a(1 − lo)."""
    from scipy.optimize import least_squares

    span = float(t.max() - t.min())
    k = max(1, t.size // 5)
    lo0, hi0 = np.clip([y[:k].mean(), y[-k:].mean()], 0, 1)
    hi0 = max(hi0, lo0)
    a0 = (hi0 - lo0) / (1 - lo0) if lo0 < 1 else 0.5
    c0 = float(t[np.argmin(np.abs(y - 0.5 * (lo0 + hi0)))])
    lower = np.array([0.0, 0.0, t.min(), span / 1000])
    upper = np.array([1.0, 1.0, t.max(), span])
    q0 = np.clip([lo0, a0, c0, span / 10], lower + 1e-9 * (upper - lower), upper - 1e-9 * (upper - lower))

    def resid(q):
        return fits.sigmoid(t, q[0], q[0] + q[1] * (1 - q[0]), q[2], q[3]) - y

    q = least_squares(resid, q0, bounds=(lower, upper), xtol=1e-14, ftol=1e-14, gtol=1e-14).x
    return np.array([q[0], q[0] + q[1] * (1 - q[0]), q[2], q[3]])


def test_rise_fit_matches_least_squares_with_the_same_bounds() -> None:
    """Noisy agreement-like curves, including ones whose data pass 1 (hi pinned at 1) or start below 0 (lo
    pinned at 0): the vectorized LM and scipy's trust-region reflective solver find the same optimum."""
    rng = np.random.default_rng(12)
    t = np.arange(0.0, 51.0, 5.0)
    Y = []
    for i in range(30):
        true = (rng.uniform(0.0, 0.6), rng.uniform(0.8, 1.0), rng.uniform(12, 38), rng.uniform(2, 6))
        y = fits.sigmoid(t, *true) + rng.normal(0, 0.03, t.size)
        if i % 3 == 0:
            y[-3:] += 0.1  # above 1: the upper plateau must stop at 1
        if i % 3 == 1:
            y[:3] -= true[0] + 0.1  # below 0: the lower plateau must stop at 0
        Y.append(y)
    got = fits.fit_rise_batch(t, np.stack(Y))
    want = np.stack([_reference_rise(t, y) for y in Y])
    cost = [np.sum((fits.sigmoid(t, *p) - y) ** 2) for P in (got, want) for p, y in zip(P, Y, strict=True)]
    cost_got, cost_want = np.split(np.array(cost), 2)
    np.testing.assert_array_less(cost_got, cost_want * (1 + 1e-6) + 1e-12)  # never a worse optimum
    # where the rise spans more than a grid point the optimum is unique: the same parameters. Steeper fits
    # (width → 0) leave the center free between two grid points at equal cost, and the solvers stop apart.
    wide = want[:, 3] > 0.5
    assert wide.sum() >= 20
    np.testing.assert_allclose(got[wide], want[wide], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(cost_got, cost_want, rtol=1e-3, atol=1e-9)
    assert np.any(got[:, 1] == 1.0) and np.any(got[:, 0] == 0.0)  # the bounds were active


def test_rise_fit_recovers_a_logistic_and_pins_out_of_grid_rises_to_the_bound() -> None:
    t = np.arange(0.0, 51.0, 5.0)
    true = (0.5, 1.0, 23.7, 3.0)
    np.testing.assert_allclose(fits.fit_rise_batch(t, fits.sigmoid(t, *true)[None])[0], true, rtol=1e-6)
    # a rise centred before the first step (after the last): the center stops on the grid's bound
    before = fits.fit_rise_batch(t, fits.sigmoid(t, 0.5, 1.0, -5.0, 5.0)[None])[0]
    after = fits.fit_rise_batch(t, fits.sigmoid(t, 0.5, 1.0, 60.0, 5.0)[None])[0]
    assert before[2] == t[0] and after[2] == t[-1]
    # the unbounded fit extrapolates the same curves off the grid, with plateaus that need not be in [0, 1]
    assert fits.fit_sigmoid(t, fits.sigmoid(t, 0.5, 1.0, -5.0, 5.0)).center < t[0]
    assert np.isnan(fits.fit_rise_batch(t, np.full((1, t.size), 0.7))).all()  # flat → NaN


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(0.01, 3.0),
    offset=st.floats(-2.0, 2.0),
    n=st.integers(4, 15),
)
def test_rise_fit_keeps_plateaus_in_the_unit_interval_and_the_center_on_the_grid(seed, scale, offset, n):
    """Arbitrary curves — noise, falling, far outside [0, 1], uneven grids, missing points: every fitted row
    has 0 ≤ lo ≤ hi ≤ 1, the center within its finite points' t range and the width in [span/1000, span],
    or is NaN as a whole."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.choice(np.arange(100.0), n, replace=False))
    Y = offset + scale * rng.standard_normal((8, n))
    Y[0] = np.linspace(1.5, -0.5, n)  # falling
    Y[1, rng.integers(0, n)] = np.nan
    P = fits.fit_rise_batch(t, Y)
    for y, p in zip(Y, P, strict=True):
        if np.isnan(p).any():
            assert np.isnan(p).all()
            continue
        tt = t[np.isfinite(y)]
        assert 0.0 <= p[0] <= p[1] <= 1.0
        assert tt.min() <= p[2] <= tt.max()
        span = tt.max() - tt.min()
        assert span / 1000 * (1 - 1e-12) <= p[3] <= span * (1 + 1e-12)

"""Sigmoid fits and seed-bootstrap confidence intervals for Protocol I, eq. (73) and Table 1.

Curves y(t_int) are fitted with y = lo + (hi − lo) / (1 + exp(−(t − center)/width)); τ is the
midpoint ``center`` (the inflection point, where y is halfway between the fitted plateaus: the
"50% threshold" of §3.1). Flat or non-finite curves give NaN parameters instead of raising.

All fits are one vectorized, box-constrained Levenberg–Marquardt over a batch of curves
(:func:`_levenberg_marquardt`): the bootstrap refits its ``n_boot`` resampled curves in one call instead of
one ``scipy.optimize.curve_fit`` per resample. ``tests/test_dv_metrics_fits.py`` keeps the former
``curve_fit`` (trust-region reflective) implementation as a reference and checks that τ and its CI agree
within their Monte-Carlo error.

Two variants share it. :func:`fit_sigmoid_batch` (Protocol I's curves: feature similarities and
commitment scores, not probabilities) leaves the plateaus free within twice the data's range and the
center within the grid widened by half its span. :func:`fit_rise_batch` is for curves that are
probabilities (clone agreement): 0 ≤ lo ≤ hi ≤ 1 and the center on the sampled grid, so no plateau beyond
[0, 1] can carry the center off the grid.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from theory.validation import check_positive_int

__all__ = [
    "sigmoid",
    "SigmoidFit",
    "fit_sigmoid",
    "fit_sigmoid_batch",
    "fit_rise_batch",
    "median_curve",
    "bootstrap_center",
    "bootstrap_centers",
    "percentile_interval",
]

NAN4 = np.full(4, np.nan)

#: Levenberg–Marquardt: iteration cap and convergence tolerances (relative cost decrease, relative step).
LM_MAX_ITER = 200
LM_FTOL = 1e-12
LM_XTOL = 1e-10


def sigmoid(t: np.ndarray, lo: float, hi: float, center: float, width: float) -> np.ndarray:
    """Logistic curve lo + (hi − lo)/(1 + exp(−(t − center)/width))."""
    z = np.clip(-(np.asarray(t, dtype=np.float64) - center) / width, -700, 700)
    return lo + (hi - lo) / (1.0 + np.exp(z))


@dataclass(frozen=True)
class SigmoidFit:
    lo: float
    hi: float
    center: float
    width: float

    @property
    def params(self) -> np.ndarray:
        return np.array([self.lo, self.hi, self.center, self.width])


def _start_and_bounds(
    t: np.ndarray, Y: np.ndarray, ok: np.ndarray, rel_flat: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per curve: start p0, lower and upper bounds (B, 4), and which curves can be fitted (B,).

    Bounds: center within the sampled t range widened by half its span, width in [span/1000, span];
    lo/hi within the y range widened by twice its spread, so rising and falling curves both fit. The start
    takes the plateaus from the first/last fifth of the points and the center where y is nearest halfway.
    """
    B = Y.shape[0]
    n = ok.sum(axis=1)
    big = np.where(ok, t[None, :], np.nan)
    with warnings.catch_warnings():  # an unfittable (all-NaN) curve is reported as NaN, not warned about
        warnings.simplefilter("ignore", RuntimeWarning)
        t_min, t_max = np.nanmin(big, axis=1), np.nanmax(big, axis=1)
        y_min, y_max = np.nanmin(np.where(ok, Y, np.nan), axis=1), np.nanmax(np.where(ok, Y, np.nan), axis=1)
    span, yr = t_max - t_min, y_max - y_min
    y_abs = np.maximum(np.abs(y_min), np.abs(y_max))
    fit_ok = (n >= 4) & (span > 0) & (yr > rel_flat * np.maximum(1.0, y_abs))
    p0 = np.full((B, 4), np.nan)
    lower, upper = np.full((B, 4), np.nan), np.full((B, 4), np.nan)
    for b in np.flatnonzero(fit_ok):  # a few numpy calls per curve: cheap next to the fit itself
        tb, yb = t[ok[b]], Y[b, ok[b]]
        k = max(1, tb.size // 5)
        lo0, hi0 = yb[:k].mean(), yb[-k:].mean()
        center0 = tb[np.argmin(np.abs(yb - 0.5 * (lo0 + hi0)))]
        p0[b] = (lo0, hi0, center0, span[b] / 10)
    pad = 2.0 * yr
    lower[:] = np.stack([y_min - pad, y_min - pad, t_min - span / 2, span / 1000], axis=1)
    upper[:] = np.stack([y_max + pad, y_max + pad, t_max + span / 2, span], axis=1)
    p0 = np.clip(p0, lower + 1e-12, upper - 1e-12)
    return p0, lower, upper, fit_ok


def _inside(p: np.ndarray, step: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """``p + α·step`` with the largest α ≤ 1 that keeps every parameter strictly inside its bounds.

    A step that would cross a bound is shortened to 0.9 of the distance (as trust-region-reflective solvers
    keep their iterates strictly feasible), so the width never lands on its lower bound in one jump, where
    the fit's gradient in the center vanishes between grid points.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(step > 0, upper - p, np.where(step < 0, lower - p, np.inf)) / step
    alpha = np.minimum(1.0, 0.9 * np.min(np.where(room > 0, room, np.inf), axis=1))
    far = (upper - lower) * 1e-9  # closer than this to a bound counts as on it: snap instead of creeping
    out = p + alpha[:, None] * step
    out = np.where(out - lower <= far, lower, out)
    return np.clip(np.where(upper - out <= far, upper, out), lower, upper)


def _levenberg_marquardt(
    t: np.ndarray, Yf: np.ndarray, w: np.ndarray, p: np.ndarray, lower: np.ndarray, upper: np.ndarray, model
) -> np.ndarray:
    """Box-constrained Levenberg–Marquardt for every row at once; returns the parameters (B, 4).

    ``model(t, p)`` → (curve (B, T), Jacobian (B, T, 4)); the residuals are w·(curve − Yf). Steps stay
    strictly feasible (:func:`_inside`), a parameter on a bound that the gradient pushes outward is held
    there, and every curve is damped and stopped on its own (relative cost change < ``LM_FTOL`` or step
    < ``LM_XTOL``).
    """
    p = p.copy()

    def resid(Yb, wb, pb):
        f, J = model(t, pb)
        return wb * (f - Yb), J * wb[..., None]

    r, J = resid(Yf, w, p)
    cost = np.einsum("bt,bt->b", r, r)
    lam = np.full(p.shape[0], 1e-3)
    active = np.ones(p.shape[0], bool)
    eye = np.eye(p.shape[1])
    for _ in range(LM_MAX_ITER):
        a = np.flatnonzero(active)
        if a.size == 0:
            break
        JtJ = np.einsum("bti,btj->bij", J[a], J[a])
        g = np.einsum("bti,bt->bi", J[a], r[a])
        diag = np.maximum(np.einsum("bii->bi", JtJ), 1e-300)
        A = JtJ + lam[a, None, None] * diag[:, :, None] * eye  # Marquardt's scaling by diag(JᵀJ)
        # a parameter on its bound whose descent direction points outward stays there (active set)
        tol = 1e-9 * (upper[a] - lower[a])
        pinned = ((p[a] - lower[a] <= tol) & (g > 0)) | ((upper[a] - p[a] <= tol) & (g < 0))
        keep = ~pinned
        A = A * (keep[:, :, None] & keep[:, None, :]) + pinned[:, :, None] * eye
        g = np.where(pinned, 0.0, g)
        with np.errstate(all="ignore"):
            try:
                step = np.linalg.solve(A, -g[..., None])[..., 0]
            except np.linalg.LinAlgError:  # one singular system: solve them one by one
                step = np.stack([np.linalg.lstsq(A[i], -g[i], rcond=None)[0] for i in range(a.size)])
        trial = _inside(p[a], step, lower[a], upper[a])
        r_new, J_new = resid(Yf[a], w[a], trial)
        cost_new = np.einsum("bt,bt->b", r_new, r_new)
        better = np.isfinite(cost_new) & (cost_new < cost[a])
        moved = np.abs(trial - p[a]).max(axis=1) <= LM_XTOL * (np.abs(p[a]).max(axis=1) + LM_XTOL)
        small = better & (cost[a] - cost_new <= LM_FTOL * np.maximum(cost[a], 1e-300))
        acc = a[better]
        p[acc], r[acc], J[acc], cost[acc] = trial[better], r_new[better], J_new[better], cost_new[better]
        lam[acc] = np.maximum(lam[acc] / 3.0, 1e-12)
        rej = a[~better]
        lam[rej] = lam[rej] * 4.0
        done = small | (moved & better) | (lam[a] > 1e12) | (better & (cost_new == 0.0))
        active[a[done]] = False
    return p


def _sigmoid_model(t: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sigmoid(t; p) (B, T) and its Jacobian (B, T, 4) in (lo, hi, c, wd)."""
    lo, hi, c, wd = (p[:, i : i + 1] for i in range(4))
    z = np.clip((t[None, :] - c) / wd, -700, 700)
    s = 1.0 / (1.0 + np.exp(-z))  # σ(z), the logistic of the module docstring
    ds = s * (1.0 - s)
    amp = hi - lo
    J = np.stack([1.0 - s, s, -amp * ds / wd, -amp * ds * z / wd], axis=-1)
    return lo + amp * s, J


def fit_sigmoid_batch(t: np.ndarray, Y: np.ndarray, rel_flat: float = 1e-9) -> np.ndarray:
    """Least-squares sigmoids through (t, Y[b]) for every row b at once; params (B, 4), NaN rows when unfit.

    ``t`` (T,), ``Y`` (B, T); non-finite y are left out of their curve's fit. A curve with fewer than 4
    finite points, no t span or a flat y (range ≤ ``rel_flat``·max(1, |y|)) gives NaN. The solver is
    :func:`_levenberg_marquardt` with the analytic Jacobian inside the bounds of :func:`_start_and_bounds`.
    """
    t = np.asarray(t, dtype=np.float64)
    Y = np.atleast_2d(np.asarray(Y, dtype=np.float64))
    ok = np.isfinite(Y)
    p0, lower, upper, fit_ok = _start_and_bounds(t, Y, ok, rel_flat)
    out = np.full((Y.shape[0], 4), np.nan)
    idx = np.flatnonzero(fit_ok)
    if idx.size == 0:
        return out
    Yf, w = np.where(ok[idx], Y[idx], 0.0), ok[idx].astype(np.float64)
    p = _levenberg_marquardt(t, Yf, w, p0[idx], lower[idx], upper[idx], _sigmoid_model)
    out[idx] = np.where(np.isfinite(p).all(axis=1, keepdims=True), p, np.nan)
    return out


def _rise_model(t: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rising sigmoid in q = (lo, a, c, wd) with hi = lo + a(1 − lo): curve (B, T), Jacobian (B, T, 4).

    The map (lo, a) ∈ [0, 1]² → (lo, hi) covers exactly 0 ≤ lo ≤ hi ≤ 1, so box bounds on q are the
    plateau constraints.
    """
    lo, a, c, wd = (q[:, i : i + 1] for i in range(4))
    z = np.clip((t[None, :] - c) / wd, -700, 700)
    s = 1.0 / (1.0 + np.exp(-z))
    ds = s * (1.0 - s)
    amp = a * (1.0 - lo)  # hi − lo
    J = np.stack([1.0 - a * s, (1.0 - lo) * s, -amp * ds / wd, -amp * ds * z / wd], axis=-1)
    return lo + amp * s, J


def fit_rise_batch(t: np.ndarray, Y: np.ndarray, rel_flat: float = 1e-9) -> np.ndarray:
    """Least-squares *rising* sigmoids with plateaus in [0, 1] and the center on the sampled grid.

    For curves that are probabilities (clone agreement): params (B, 4) = (lo, hi, center, width) with
    0 ≤ lo ≤ hi ≤ 1, center ∈ [min t, max t] of the curve's finite points and width ∈ [span/1000, span];
    NaN rows where :func:`fit_sigmoid_batch` gives NaN (fewer than 4 finite points, no span, flat y). The
    fit runs in (lo, a, center, width) with hi = lo + a(1 − lo), a ∈ [0, 1] (:func:`_rise_model`), so the
    plateau constraints are box bounds. A center on a bound is censored, not measured (the rise lies at or
    before the first sampled step, or at or after the last): read it as a status, not as a number.
    """
    t = np.asarray(t, dtype=np.float64)
    Y = np.atleast_2d(np.asarray(Y, dtype=np.float64))
    ok = np.isfinite(Y)
    p0, lower, upper, fit_ok = _start_and_bounds(t, Y, ok, rel_flat)
    out = np.full((Y.shape[0], 4), np.nan)
    idx = np.flatnonzero(fit_ok)
    if idx.size == 0:
        return out
    Yf, w = np.where(ok[idx], Y[idx], 0.0), ok[idx].astype(np.float64)
    lower, upper = lower[idx], upper[idx]
    big = np.where(ok[idx], t[None, :], np.nan)
    t_lo, t_hi = np.nanmin(big, axis=1), np.nanmax(big, axis=1)  # the sampled grid of each curve
    lower[:, :3] = np.stack([np.zeros(idx.size), np.zeros(idx.size), t_lo], axis=1)  # (lo, a, center)
    upper[:, :3] = np.stack([np.ones(idx.size), np.ones(idx.size), t_hi], axis=1)
    lo0, hi0 = np.clip(p0[idx, 0], 0.0, 1.0), np.clip(p0[idx, 1], 0.0, 1.0)
    hi0 = np.maximum(hi0, lo0)
    with np.errstate(divide="ignore", invalid="ignore"):
        a0 = np.where(lo0 < 1.0, (hi0 - lo0) / (1.0 - lo0), 0.5)
    q0 = np.stack([lo0, a0, p0[idx, 2], p0[idx, 3]], axis=1)
    q0 = np.clip(q0, lower + 1e-9 * (upper - lower), upper - 1e-9 * (upper - lower))
    q = _levenberg_marquardt(t, Yf, w, q0, lower, upper, _rise_model)
    p = np.stack([q[:, 0], q[:, 0] + q[:, 1] * (1.0 - q[:, 0]), q[:, 2], q[:, 3]], axis=1)
    p[:, 2] = np.clip(p[:, 2], t_lo, t_hi)  # the box holds the center; the clip only removes rounding
    out[idx] = np.where(np.isfinite(p).all(axis=1, keepdims=True), p, np.nan)
    return out


def fit_sigmoid(t: np.ndarray, y: np.ndarray, rel_flat: float = 1e-9) -> SigmoidFit:
    """Least-squares sigmoid through (t, y) (bounded, :func:`fit_sigmoid_batch`); NaNs when flat or failing.

    Bounds: center within the sampled t range widened by half its span, width in
    [span/1000, span]; lo/hi free within the data's range so rising and falling curves both fit.
    """
    y = np.asarray(y, dtype=np.float64)
    return SigmoidFit(*map(float, fit_sigmoid_batch(t, y[None, :], rel_flat)[0]))


def median_curve(Y: np.ndarray) -> np.ndarray:
    """Median over seeds of a (T, M) array → (T,)."""
    return np.median(np.asarray(Y, dtype=np.float64), axis=1)


def bootstrap_centers(
    t: np.ndarray,
    Y: np.ndarray,
    curve: Callable[[np.ndarray], np.ndarray] = median_curve,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[SigmoidFit, np.ndarray]:
    """Fit of ``curve(Y)`` and the centers of its ``n_boot`` seed-bootstrap refits, (n_boot,), NaN where a
    refit fails. The resamples are ``default_rng(seed).integers(0, M, (n_boot, M))``: two curves of the
    same M seeds bootstrapped with the same ``seed`` are resampled alike, so differences of their centers
    are paired replicates (Table 1's Δτ = τ_l − τ_g)."""
    check_positive_int("n_boot", n_boot)
    Y = np.asarray(Y, dtype=np.float64)
    fit = fit_sigmoid(t, curve(Y))
    rng = np.random.default_rng(seed)
    M = Y.shape[1]
    draws = rng.integers(0, M, (n_boot, M))  # the same stream as n_boot successive draws of M
    curves = np.stack([curve(Y[:, d]) for d in draws])  # (n_boot, T)
    return fit, fit_sigmoid_batch(t, curves)[:, 2]


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> np.ndarray:
    """Central ``level`` percentile interval of the finite replicates; NaN when fewer than 10 are finite."""
    x = np.asarray(replicates, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 10:
        return np.array([np.nan, np.nan])
    a = 100 * (1 - level) / 2
    return np.percentile(x, [a, 100 - a])


def bootstrap_center(
    t: np.ndarray,
    Y: np.ndarray,
    curve: Callable[[np.ndarray], np.ndarray] = median_curve,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[SigmoidFit, np.ndarray]:
    """Fit of ``curve(Y)`` and the bootstrap CI of its center over seeds (columns of Y (T, M)).

    Each resample draws M seeds with replacement, recomputes the curve (e.g. the median, or the
    commitment score with its own t_int = 0 baseline) and refits — all ``n_boot`` refits in one
    :func:`fit_sigmoid_batch` (:func:`bootstrap_centers`); the CI is the central ``level`` percentile
    interval of the finite centers (NaN when fewer than 10 resamples fit).
    """
    fit, centers = bootstrap_centers(t, Y, curve, n_boot, seed)
    return fit, percentile_interval(centers, level)

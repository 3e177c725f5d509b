"""Sigmoid fits and seed-bootstrap confidence intervals for Protocol I, eq. (73) and Table 1.

Curves y(t_int) are fitted with y = lo + (hi − lo) / (1 + exp(−(t − center)/width)); τ is the
midpoint ``center`` (the inflection point, where y is halfway between the fitted plateaus: the
"50% threshold" of §3.1). Flat or non-finite curves give NaN parameters instead of raising.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

from theory.validation import check_positive_int

logger = logging.getLogger(__name__)

NAN4 = np.full(4, np.nan)


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


def fit_sigmoid(t: np.ndarray, y: np.ndarray, rel_flat: float = 1e-9) -> SigmoidFit:
    """Least-squares sigmoid through (t, y) (scipy curve_fit, bounded); NaNs when flat or failing.

    Bounds: center within the sampled t range widened by half its span, width in
    [span/1000, span]; lo/hi free so rising and falling curves both fit.
    """
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(y)
    t, y = t[ok], y[ok]
    if t.size < 4:
        return SigmoidFit(*NAN4)
    span = float(t.max() - t.min())
    yr = float(np.ptp(y))
    if span <= 0 or yr <= rel_flat * max(1.0, float(np.abs(y).max())):
        return SigmoidFit(*NAN4)
    k = max(1, t.size // 5)
    lo0, hi0 = float(np.mean(y[:k])), float(np.mean(y[-k:]))
    mid = 0.5 * (lo0 + hi0)
    center0 = float(t[np.argmin(np.abs(y - mid))])
    p0 = [lo0, hi0, center0, span / 10]
    pad = 2.0 * yr
    lower = [y.min() - pad, y.min() - pad, t.min() - span / 2, span / 1000]
    upper = [y.max() + pad, y.max() + pad, t.max() + span / 2, span]
    p0 = np.clip(p0, np.array(lower) + 1e-12, np.array(upper) - 1e-12)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            popt, _ = curve_fit(sigmoid, t, y, p0=p0, bounds=(lower, upper), maxfev=5000)
    except (RuntimeError, ValueError) as exc:
        logger.debug("sigmoid fit failed: %s", exc)
        return SigmoidFit(*NAN4)
    return SigmoidFit(*map(float, popt))


def median_curve(Y: np.ndarray) -> np.ndarray:
    """Median over seeds of a (T, M) array → (T,)."""
    return np.median(np.asarray(Y, dtype=np.float64), axis=1)


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
    commitment score with its own t_int = 0 baseline) and refits; the CI is the central ``level``
    percentile interval of the finite centers (NaN when fewer than 10 resamples fit).
    """
    check_positive_int("n_boot", n_boot)
    Y = np.asarray(Y, dtype=np.float64)
    fit = fit_sigmoid(t, curve(Y))
    rng = np.random.default_rng(seed)
    M = Y.shape[1]
    centers = np.array([fit_sigmoid(t, curve(Y[:, rng.integers(0, M, M)])).center for _ in range(n_boot)])
    centers = centers[np.isfinite(centers)]
    if centers.size < 10:
        return fit, np.array([np.nan, np.nan])
    a = 100 * (1 - level) / 2
    return fit, np.percentile(centers, [a, 100 - a])

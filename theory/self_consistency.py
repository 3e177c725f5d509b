"""Scalar self-consistency ``u = κ tanh u`` of the modal order parameter (eq. 49–51).

For ``κ ≤ 1`` the only real solution is ``u = 0``; for ``κ > 1`` a pitchfork bifurcation adds
``±u*`` (eq. 49). Near ``κ → 1⁺`` the naive residual ``u − κ tanh u`` loses all its digits to
cancellation (both terms are ``~u`` while their difference is ``~u³``), so there the solver
uses the equivalent form

    h(u) := u coth u − 1 = κ − 1 =: ε,

with ``h`` evaluated by its Maclaurin series ``Σ_{n≥1} 2^{2n} B_{2n} u^{2n}/(2n)!`` in
``w = u²``; ``κ − 1`` is exact in float64 for ``κ ∈ [1, 2]`` (Sterbenz). The start is the
pitchfork series ``u² = 3ε + 3ε²/5 + 12ε³/175 + 0·ε⁴ − 432ε⁵/336875 + …`` derived in
:func:`theory.symbolic.pitchfork_series` (a test checks the coefficients agree).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from scipy.special import bernoulli, factorial

from .validation import as_float_array, check_positive_int, check_range, describe

logger = logging.getLogger(__name__)

# Maclaurin coefficients of u·coth(u) − 1 in powers of w = u²: a_n = 2^{2n} B_{2n} / (2n)!.
_N_SERIES = 9
_B = bernoulli(2 * _N_SERIES)
_H_COEF = np.array(
    [2.0 ** (2 * n) * _B[2 * n] / factorial(2 * n, exact=True) for n in range(1, _N_SERIES + 1)]
)

# Pitchfork series u² = Σ c_n ε^n near κ = 1⁺ (coefficients from theory.symbolic.pitchfork_series).
PITCHFORK_COEFFS: tuple[float, ...] = (3.0, 3.0 / 5.0, 12.0 / 175.0, 0.0, -432.0 / 336875.0)
_SMALL_EPS = 0.025  # below: series regime (u* < 0.28)
_KAPPA_SATURATED = 20.0  # above: tanh(u*) = 1 − 2e^{−2u*} rounds the root to κ tanh κ

_MAX_ITER = 60
_RTOL = 1e-14  # last Newton step; the error after it is ~its square, i.e. rounding-limited
CHUNK = 65_536  # values per chunk: ~10 MiB of temporaries, bit-identical output for any chunk size


def _pitchfork_start(eps: np.ndarray) -> np.ndarray:
    """``w = u² ≈ Σ c_n εⁿ`` (pitchfork series), relative error O(ε⁵)."""
    w = np.zeros_like(eps)
    for c in PITCHFORK_COEFFS[::-1]:
        w = w * eps + c
    return w * eps


def _newton_small(eps: np.ndarray, w: np.ndarray, iters: int) -> tuple[np.ndarray, np.ndarray]:
    """Newton on ``h(w) = Σ a_n wⁿ = ε`` in ``w = u²`` (series form, valid for ``u < 0.3``).

    Returns ``(w, |last step| / w)``.
    """
    w = w.copy()
    rel = np.full_like(eps, np.inf)
    for _ in range(iters):
        acc = np.full_like(w, _H_COEF[_N_SERIES - 1])
        dacc = np.full_like(w, _N_SERIES * _H_COEF[_N_SERIES - 1])
        for n in range(_N_SERIES - 1, 0, -1):
            acc *= w
            acc += _H_COEF[n - 1]
            dacc *= w
            dacc += n * _H_COEF[n - 1]
        acc *= w  # h(w)
        step = (acc - eps) / dacc
        w -= step
        rel = np.abs(step) / w
    return w, rel


def _newton_mid(kappa: np.ndarray, u: np.ndarray, iters: int) -> tuple[np.ndarray, np.ndarray]:
    """Newton on ``f(u) = u − κ tanh u`` for ``u ≳ 0.25`` (no harmful cancellation there).

    ``f`` is convex on ``u > 0``; from a start right of the root the iterates decrease
    monotonically to it. Returns ``(u, |last step| / u)``.
    """
    rel = np.full_like(u, np.inf)
    for _ in range(iters):
        th = np.tanh(u)
        f = u - kappa * th
        df = th * th
        df -= 1.0
        df *= kappa
        df += 1.0  # f'(u) = 1 − κ sech² u
        f /= df
        u -= f
        rel = np.abs(f) / u
    return u, rel


def _kappa_array(kappa: Any) -> np.ndarray:
    """float64 κ ≥ 0, allowing +inf (the saturated limit κ → ∞) but not NaN.

    Checks in O(1) extra memory on the valid path (reductions, no full-size temporaries); the
    detailed error message is built only when a check fails.
    """
    try:
        k = np.asarray(kappa, dtype=np.float64)
    except (TypeError, ValueError):
        return as_float_array("kappa", kappa)  # raises the standard "must be a real number" error
    if k.size == 0:
        return k
    lo = np.min(k)  # NaN propagates; -inf is the minimum
    if np.isnan(lo) or np.isneginf(lo):
        raise ValueError(f"kappa must not be NaN or -inf (+inf allowed), got {describe(k)}")
    if lo < 0.0:
        check_range("kappa", np.where(np.isposinf(k), 0.0, k), 0.0, None)  # raises, naming the value
    return k


def _solve_flat(flat: np.ndarray, u: np.ndarray) -> None:
    """Write ``u*`` for the 1-D ``flat`` into ``u`` (same shape); the three regimes below."""
    u.fill(0.0)
    eps = flat - 1.0  # exact for κ ∈ [1, 2] (Sterbenz)

    big = flat >= _KAPPA_SATURATED
    u[big] = flat[big] * np.tanh(flat[big])  # κ = +inf gives +inf

    small_idx = np.flatnonzero((eps > 0.0) & (eps < _SMALL_EPS))
    if small_idx.size:
        e_small = eps[small_idx]
        w, rel = _newton_small(e_small, _pitchfork_start(e_small), iters=2)
        for _ in range(_MAX_ITER):
            bad = np.flatnonzero(rel > _RTOL)
            if bad.size == 0:
                break
            w[bad], rel[bad] = _newton_small(e_small[bad], w[bad], iters=1)
        u[small_idx] = np.sqrt(w)

    mid_idx = np.flatnonzero((eps >= _SMALL_EPS) & ~big)
    if mid_idx.size:
        kap = flat[mid_idx]
        x = kap * np.tanh(kap)
        near = kap < 1.5  # the pitchfork series is within 0.2 % of u* up to κ = 1.5
        x[near] = np.sqrt(_pitchfork_start(kap[near] - 1.0))
        x, rel = _newton_mid(kap, x, iters=3)
        for _ in range(_MAX_ITER):
            bad = np.flatnonzero(rel > _RTOL)
            if bad.size == 0:
                break
            x[bad], rel[bad] = _newton_mid(kap[bad], x[bad], iters=1)
        else:
            logger.warning("solve_self_consistency: %d values did not reach rtol=%g", bad.size, _RTOL)
        u[mid_idx] = x


def solve_self_consistency(kappa: Any, *, chunk: int = CHUNK) -> np.ndarray | float:
    """Non-negative root ``u*`` of ``u = κ tanh u`` (eq. 49), elementwise; ``0`` where ``κ ≤ 1``.

    Three regimes, each a vectorized Newton iteration with a fixed number of steps followed by
    a convergence loop on the (rare) elements whose last step still exceeds ``rtol``:

    * ``κ − 1 < 0.025`` (``u* < 0.28``): Newton on the series of ``u coth u − 1 = κ − 1`` in
      ``w = u²``, started from the pitchfork series (relative error O((κ−1)⁵));
    * ``0.025 ≤ κ − 1`` and ``κ < 20``: Newton on ``u − κ tanh u`` started at the pitchfork
      series (``κ < 1.5``) or at ``κ tanh κ ≥ u*``;
    * ``κ ≥ 20``: ``u* = κ tanh κ`` (the correction ``2κ e^{−2κ}`` is below half an ulp).

    Relative accuracy ~1e-15 for every ``κ ∈ (1, ∞)``, ``κ = 1 + 1e-12`` included.
    ``κ ≥ 0``, no NaN (an undefined κ from :func:`theory.speciation_parameter` has no root: mask it
    first); ``κ = +inf`` gives ``u* = +inf``. Float for scalar input.

    Memory: the input is processed in chunks of ``chunk`` values (every operation is
    elementwise, so the output does not depend on ``chunk``, bit for bit); beyond the output
    array the solver holds O(chunk) temporaries — peak ≈ 1× the input plus ~10 MiB.
    """
    check_positive_int("chunk", chunk)
    k = _kappa_array(kappa)
    flat = k.ravel()  # a view for contiguous input
    u = np.empty(flat.shape)
    for lo in range(0, flat.size, chunk):
        _solve_flat(flat[lo : lo + chunk], u[lo : lo + chunk])
    out = u.reshape(k.shape)
    return float(out) if out.ndim == 0 else out


def branches(kappa: Any) -> np.ndarray:
    """All real solutions ``(−u*, 0, u*)`` of eq. (49), shape ``kappa.shape + (3,)``.

    For ``κ ≤ 1`` the three entries coincide at 0 (the branches merge at the pitchfork).
    """
    u_star = np.asarray(solve_self_consistency(kappa), dtype=np.float64)
    return np.stack([-u_star, np.zeros_like(u_star), u_star], axis=-1)


def branch_stability(kappa: Any) -> np.ndarray:
    """Linear stability of each branch of :func:`branches` under the map ``u ↦ κ tanh u``.

    A fixed point is stable when ``|κ sech²(u)| < 1`` (the map's derivative). The trivial
    branch has derivative κ: it is unstable exactly when ``κ > 1`` (marginal, reported as not
    stable, at κ = 1); the ``±u*`` branches are stable for every ``κ > 1``. Boolean array of
    shape ``kappa.shape + (3,)``.
    """
    k = _kappa_array(kappa)
    u = branches(k)
    e = np.exp(-2.0 * np.abs(u))
    with np.errstate(invalid="ignore"):  # κ = inf on the ±u* = ±inf branches: inf·0
        deriv = k[..., None] * 4.0 * e / (1.0 + e) ** 2  # κ sech²u without overflow at large |u|
    deriv = np.where(np.isinf(u), 0.0, deriv)  # limit κ sech²(κ) → 0 as κ → ∞
    return np.abs(deriv) < 1.0

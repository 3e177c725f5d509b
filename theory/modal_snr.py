"""Modewise speciation parameter and signal-to-noise ratio (eq. 44–58, 62–65).

All functions broadcast their array arguments (numpy rules) and return float64.

Validity (eq. 55). The SNR (53) is only meaningful while the bracket
``(1 − η)c + γ`` is strictly positive, i.e. ``η < 1 + γ/c``. Past that point the linearized
difference mode is amplified by the block faster than the score restores it: the mean-field
fixed point picture has broken down and the mode is certainly unstable, i.e. already
speciated. Such entries are returned as ``+inf`` (never as a negative SNR), a warning is
logged with their fraction, and :func:`snr_validity` exposes the boolean mask so callers can
report it. ``+inf`` composes correctly downstream: ``κ = γ·SNR = inf ≥ 1`` marks the mode as
speciated in :func:`speciation_step`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .gating import rho, xi
from .validation import as_float_array, check_g, check_range, describe

logger = logging.getLogger(__name__)


def _broadcast(**arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Broadcast named arrays, raising a ValueError that names every shape on mismatch."""
    try:
        return tuple(np.broadcast_arrays(*arrays.values()))
    except ValueError:
        described = ", ".join(f"{k}{np.shape(v)}" for k, v in arrays.items())
        raise ValueError(f"shape mismatch: {described} cannot be broadcast together") from None


def _out(x: np.ndarray) -> np.ndarray | float:
    return float(x) if x.ndim == 0 else x


def eta(g: Any, lambda_mlp: Any, chi: Any, pi: Any) -> np.ndarray | float:
    """Projected one-block gain ``η_k(g) = 1 + λ_k^MLP + ρ(g) χ_k + ξ(g) π_k``, eq. (46)."""
    g_a = as_float_array("g", g)
    check_g(g_a)
    lam, ch, p = (as_float_array(n, v) for n, v in (("lambda_mlp", lambda_mlp), ("chi", chi), ("pi", pi)))
    g_a, lam, ch, p = _broadcast(g=g_a, lambda_mlp=lam, chi=ch, pi=p)
    return _out(1.0 + lam + rho(g_a) * ch + xi(g_a) * p)  # eq. (46)


def _modal_inputs(m: Any, c: Any, gamma: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m_a = as_float_array("m", m)
    c_a = as_float_array("c", c)
    check_range("c", c_a, 0.0, None, lo_open=True)  # projected covariance, C ≻ 0
    gamma_a = as_float_array("gamma", gamma)
    check_range("gamma", gamma_a, 0.0, None, lo_open=True)  # score gain γ > 0 (§2.4)
    return m_a, c_a, gamma_a


def snr_validity(c: Any, eta: Any, gamma: Any) -> np.ndarray:
    """Boolean mask of eq. (55): ``η_k < 1 + γ/c_k`` (equivalently ``γ μ_k > λ + ρχ + ξπ``)."""
    c_a = as_float_array("c", c)
    check_range("c", c_a, 0.0, None, lo_open=True)
    eta_a = as_float_array("eta", eta)
    gamma_a = as_float_array("gamma", gamma)
    check_range("gamma", gamma_a, 0.0, None, lo_open=True)
    c_a, eta_a, gamma_a = _broadcast(c=c_a, eta=eta_a, gamma=gamma_a)
    return (1.0 - eta_a) * c_a + gamma_a > 0.0  # eq. (55)


def _finish(num: np.ndarray, den: np.ndarray, where: str) -> np.ndarray | float:
    """``num/den`` where ``den > 0``; ``+inf`` (logged) where eq. (55) is violated."""
    valid = den > 0.0
    out = np.full(np.broadcast(num, den).shape, np.inf)
    np.divide(num, den, out=out, where=valid)
    n_bad = int(np.size(valid) - np.count_nonzero(valid))
    if n_bad:
        logger.warning(
            "%s: validity condition (55) violated for %d of %d entries; returned +inf there "
            "(mean-field picture broken: mode amplified faster than the score restores it)",
            where,
            n_bad,
            np.size(valid),
        )
    return _out(out)


def modal_snr(m: Any, c: Any, eta: Any, gamma: Any) -> np.ndarray | float:
    """Modewise difference-mode SNR ``m²/(c((1 − η)c + γ))``, eq. (53).

    ``m``: modal branch separation m_k; ``c > 0``: projected covariance c_k; ``eta``: η_k(g)
    (eq. 46); ``gamma > 0``: score gain γ_{s,ℓ}. ``+inf`` where eq. (55) fails (module docstring).
    """
    m_a, c_a, gamma_a = _modal_inputs(m, c, gamma)
    eta_a = as_float_array("eta", eta)
    m_a, c_a, eta_a, gamma_a = _broadcast(m=m_a, c=c_a, eta=eta_a, gamma=gamma_a)
    bracket = (1.0 - eta_a) * c_a + gamma_a  # eq. (55) requires > 0
    return _finish(m_a**2, c_a * bracket, "modal_snr")  # eq. (53)


def speciation_parameter(gamma: Any, m: Any, c: Any, eta: Any) -> np.ndarray | float:
    """Modewise speciation parameter ``κ = γ m²/(c((1 − η)c + γ))``, eq. (50) (= γ·SNR, eq. 52).

    ``+inf`` where eq. (55) fails, so the mode counts as speciated (κ ≥ 1).
    """
    m_a, c_a, gamma_a = _modal_inputs(m, c, gamma)
    eta_a = as_float_array("eta", eta)
    gamma_a, m_a, c_a, eta_a = _broadcast(gamma=gamma_a, m=m_a, c=c_a, eta=eta_a)
    bracket = (1.0 - eta_a) * c_a + gamma_a
    return _finish(gamma_a * m_a**2, c_a * bracket, "speciation_parameter")  # eq. (50)


def modal_snr_expanded(
    m: Any, c: Any, gamma: Any, lambda_mlp: Any, chi: Any, pi: Any, g: Any
) -> np.ndarray | float:
    """Expanded SNR ``m²μ²/(γμ − λ^MLP − ρ(g)χ − ξ(g)π)`` with ``μ = 1/c``, eq. (54).

    Algebraically identical to :func:`modal_snr` with ``η`` from eq. (46); ``+inf`` where the
    denominator is ≤ 0 (eq. 55).
    """
    m_a, c_a, gamma_a = _modal_inputs(m, c, gamma)
    g_a = as_float_array("g", g)
    check_g(g_a)
    lam, ch, p = (as_float_array(n, v) for n, v in (("lambda_mlp", lambda_mlp), ("chi", chi), ("pi", pi)))
    m_a, c_a, gamma_a, lam, ch, p, g_a = _broadcast(
        m=m_a, c=c_a, gamma=gamma_a, lambda_mlp=lam, chi=ch, pi=p, g=g_a
    )
    mu = 1.0 / c_a  # modal precision μ_k
    den = gamma_a * mu - lam - rho(g_a) * ch - xi(g_a) * p  # eq. (54) denominator
    return _finish(m_a**2 * mu**2, den, "modal_snr_expanded")  # eq. (54)


def cumulative_gain(eta_seq: Any, axis: int = -1) -> np.ndarray:
    """Exclusive cumulative product ``G_k(s, ℓ) = ∏_{(s',ℓ') ≺ (s,ℓ)} η_k``, eq. (57).

    ``eta_seq`` lists η along the processing order (flatten (step, layer) to one axis, earliest
    first); entry ``j`` of the result multiplies entries ``0 … j−1``, so it starts at 1.
    """
    e = as_float_array("eta_seq", eta_seq)
    if e.ndim == 0:
        raise ValueError(f"eta_seq must have at least one axis, got a scalar {describe(e)}")
    e = np.moveaxis(e, axis, -1)
    G = np.ones_like(e)
    G[..., 1:] = np.cumprod(e[..., :-1], axis=-1)  # eq. (57): up to but not including (s, ℓ)
    return np.moveaxis(G, -1, axis)


def propagated_snr(G: Any, m_init: Any, c: Any, eta: Any, gamma: Any) -> np.ndarray | float:
    """Propagated SNR ``G² m_init²/(c((1 − η)c + γ))``, eq. (58) (eq. 53 with m = G·m_init, eq. 56)."""
    G_a = as_float_array("G", G)
    m0 = as_float_array("m_init", m_init)
    G_a, m0 = _broadcast(G=G_a, m_init=m0)
    return modal_snr(G_a * m0, c, eta, gamma)  # eq. (56) into eq. (53)


def speciation_step(kappa: Any, steps: Any = None, axis: int = -1) -> np.ndarray | float:
    """First crossing of ``κ = 1`` along ``axis`` (eq. 51), linearly interpolated on the step grid.

    ``steps`` (default ``0 … n−1``) must be strictly increasing with length ``n = kappa.shape[axis]``.
    Per series: ``steps[0]`` if ``κ ≥ 1`` at the first point; otherwise, for the first ``i`` with
    ``κ_i ≥ 1``, ``s_{i−1} + (1 − κ_{i−1})/(κ_i − κ_{i−1}) (s_i − s_{i−1})``, or ``s_i`` when
    ``κ_i = +inf`` (eq. 55 violated: speciated at ``s_i``, the crossing itself unresolved);
    ``np.inf`` where κ never reaches 1. ``kappa`` may contain ``+inf`` but not NaN or ``−inf``.
    """
    k = np.asarray(kappa, dtype=np.float64)
    if np.any(np.isnan(k)) or np.any(k == -np.inf):
        raise ValueError(f"kappa must not contain NaN or -inf (+inf allowed), got {describe(k)}")
    if k.ndim == 0:
        raise ValueError(f"kappa must have at least one axis (the step axis), got a scalar {describe(k)}")
    k = np.moveaxis(k, axis, -1)
    n = k.shape[-1]
    if steps is None:
        s = np.arange(n, dtype=np.float64)
    else:
        s = as_float_array("steps", steps)
        if s.shape != (n,):
            raise ValueError(f"steps must have shape ({n},) to match kappa's axis {axis}, got {s.shape}")
        if n > 1 and np.any(np.diff(s) <= 0):
            raise ValueError(f"steps must be strictly increasing, got {describe(s)}")
    above = k >= 1.0
    any_above = above.any(axis=-1)
    i = np.argmax(above, axis=-1)  # first crossing index (0 if none; masked below)
    k_i = np.take_along_axis(k, i[..., None], -1)[..., 0]
    i_prev = np.maximum(i - 1, 0)
    k_prev = np.take_along_axis(k, i_prev[..., None], -1)[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):  # i = 0 rows (0/0) are replaced below
        frac = np.where(np.isinf(k_i), 1.0, (1.0 - k_prev) / (k_i - k_prev))
        out = s[i_prev] + frac * (s[i] - s[i_prev])
    out = np.where(i == 0, s[0], out)
    out = np.where(any_above, out, np.inf)
    return _out(out)


def synchronization_gap(s_spec_lo: Any, s_spec_hi: Any) -> np.ndarray | float:
    """Modewise synchronization gap ``Δs_v = s_spec^(k_lo) − s_spec^(k_hi)``, eq. (65).

    Inputs may be ``+inf`` (never speciated, :func:`speciation_step`): a trailing mode that
    never speciates gives ``+inf``; where *both* never speciate the gap is undefined and NaN is
    returned (and logged).
    """
    lo = np.asarray(s_spec_lo, dtype=np.float64)
    hi = np.asarray(s_spec_hi, dtype=np.float64)
    for name, v in (("s_spec_lo", lo), ("s_spec_hi", hi)):
        if np.any(np.isnan(v)) or np.any(v == -np.inf):
            raise ValueError(f"{name} must not contain NaN or -inf (+inf allowed), got {describe(v)}")
    lo, hi = _broadcast(s_spec_lo=lo, s_spec_hi=hi)
    both_inf = np.isinf(lo) & np.isinf(hi)
    if np.any(both_inf):
        logger.warning("synchronization_gap: %d entries where neither mode speciates -> NaN", both_inf.sum())
    with np.errstate(invalid="ignore"):
        gap = np.where(both_inf, np.nan, lo - hi)  # eq. (65)
    return _out(gap)


def eta_routing_dominant(g: Any, lambda_mlp: Any, chi: Any) -> np.ndarray | float:
    """Routing-dominant gain ``η_k ≈ 1 + λ^MLP + ρ(g) χ_k``, eq. (62) (eq. 46 with π_k → 0, eq. 59)."""
    return eta(g, lambda_mlp, chi, 0.0)  # eq. (62)


def modal_snr_routing_dominant(
    m: Any, c: Any, gamma: Any, lambda_mlp: Any, chi: Any, g: Any
) -> np.ndarray | float:
    """Routing-dominant SNR ``m²/(c((−λ^MLP − ρ(g)χ)c + γ))``, eq. (63)."""
    return modal_snr(m, c, eta_routing_dominant(g, lambda_mlp, chi), gamma)  # eq. (63)

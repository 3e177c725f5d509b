"""Modewise speciation parameter and signal-to-noise ratio (eq. 44–58, 62–65).

All functions broadcast their array arguments (numpy rules) and return float64.

Convention: undefined is undefined. The paper derives κ (eq. 50) and the SNR (eq. 53/54) from
the fixed-point equation (48) of the one-block map (36) with γ > 0 and C ≻ 0, and states (§2.5,
after eq. 55) only that where the bracket ``(1 − η)c + γ`` is not strictly positive "the mean
field picture breaks down". Accordingly:

* κ and SNR are **NaN** ("undefined") where eq. (55) fails, where γ ≤ 0 or is not finite, where
  c ≤ 0 or is not finite, or where m or η is not finite. :func:`kappa_status` returns, per
  entry, a :class:`KappaStatus` code saying which of these applies (first failing reason in
  the order of the enum's docstring), so callers can report *why* a point is undefined.
* ``m = 0`` (with valid γ, c, η) gives κ = SNR = 0 exactly: eq. (48) has no non-zero root, so
  no branch can form, whatever the bracket's sign.
* An undefined κ is a result, not an error: nothing is logged or raised for it. Malformed
  *inputs* (non-numeric values, shapes that do not broadcast, g outside [0, 1]) still raise.
* :func:`speciation_step` (eq. 51) looks for the first crossing of κ = 1 over defined points:
  NaN where an undefined point comes before the first crossing (a crossing could hide there),
  ``inf`` where κ is defined at every point and never reaches 1. An undefined κ is never
  counted as speciated. :func:`theory.curvature_sign_change` uses the same rule for the
  step-level curvature H = (1 − κ)/c.
* :func:`synchronization_gap` (eq. 65) propagates NaN; a pair of modes that both never
  speciate (``inf − inf``) is NaN as well.

Two parametrizations of the linear part. Eq. (50) takes η, the score-free part K of the map (36);
:func:`speciation_parameter_from_jacobian` takes the effective Jacobian J = η − γ/c + γm²/c² (eq. 39)
instead — what a JVP of a block or a finite difference of a step measures — and is the same κ. Feeding
a measured J in the place of η counts the score's linear part twice.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Literal

import numpy as np

from .gating import rho, xi
from .validation import as_float_array, check_g, describe


class KappaStatus(IntEnum):
    """Why κ (eq. 50) and the SNR (eq. 53/54) are or are not defined at a point.

    Codes are checked in this order and the first that applies is reported:
    ``C_NOT_POSITIVE``, ``GAMMA_NOT_POSITIVE``, ``NOT_FINITE``, ``ZERO_SEPARATION``,
    ``VIOLATES_55``, else ``DEFINED``. κ is a number exactly where the code is ``DEFINED`` or
    ``ZERO_SEPARATION`` (i.e. ``status <= KappaStatus.ZERO_SEPARATION``) and NaN elsewhere.
    """

    DEFINED = 0  #: eq. (50) applies: γ > 0, c > 0, m ≠ 0 finite, and eq. (55) holds
    ZERO_SEPARATION = 1  #: m = 0: κ = SNR = 0 exactly (eq. 48 has no non-zero root)
    VIOLATES_55 = 2  #: (1 − η)c + γ ≤ 0: the mean-field picture breaks down (§2.5)
    GAMMA_NOT_POSITIVE = 3  #: γ ≤ 0, NaN or ±inf (eq. 36 needs a restoring score gain γ > 0)
    C_NOT_POSITIVE = 4  #: c ≤ 0, NaN or ±inf (eq. 34 needs C ≻ 0)
    NOT_FINITE = 5  #: m or η is NaN or ±inf


def _real(name: str, value: Any) -> np.ndarray:
    """float64 array of ``value``; NaN and ±inf allowed (they mark undefined inputs)."""
    return as_float_array(name, value, finite=False)


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
    """Projected one-block gain ``η_k(g) = 1 + λ_k^MLP + ρ(g) χ_k + ξ(g) π_k``, eq. (46).

    ``g`` must lie in [0, 1]; NaN in a measured ``lambda_mlp``, ``chi`` or ``pi`` propagates to η.
    """
    g_a = as_float_array("g", g)
    check_g(g_a)
    lam, ch, p = (_real(n, v) for n, v in (("lambda_mlp", lambda_mlp), ("chi", chi), ("pi", pi)))
    g_a, lam, ch, p = _broadcast(g=g_a, lambda_mlp=lam, chi=ch, pi=p)
    return _out(1.0 + lam + rho(g_a) * ch + xi(g_a) * p)  # eq. (46)


def _status_and_bracket(
    gamma: Any, m: Any, c: Any, eta_: Any, linear: Literal["eta", "jacobian"] = "eta"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(status, γ, m, c, bracket (1 − η)c + γ), all broadcast; the bracket is NaN where undefined.

    ``linear="jacobian"``: ``eta_`` is the effective Jacobian J (eq. 39 projected) and the same bracket is
    computed as ``c(1 − J) + γ m²/c`` (:func:`speciation_parameter_from_jacobian`), without forming η.
    """
    gamma_a, m_a, c_a, lin_a = _broadcast(
        gamma=_real("gamma", gamma), m=_real("m", m), c=_real("c", c), **{linear: _real(linear, eta_)}
    )
    status = np.full(gamma_a.shape, KappaStatus.DEFINED, dtype=np.int8)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if linear == "eta":
            bracket = (1.0 - lin_a) * c_a + gamma_a  # eq. (55) requires > 0
        else:  # the same bracket with η = J + γ/c − γm²/c² (eq. 39 projected on the mode)
            bracket = c_a * (1.0 - lin_a) + gamma_a * m_a**2 / c_a
    checks = (  # reverse order of precedence: later assignments win
        (bracket <= 0.0, KappaStatus.VIOLATES_55),
        (m_a == 0.0, KappaStatus.ZERO_SEPARATION),
        (~(np.isfinite(m_a) & np.isfinite(lin_a)), KappaStatus.NOT_FINITE),
        (~(np.isfinite(gamma_a) & (gamma_a > 0.0)), KappaStatus.GAMMA_NOT_POSITIVE),
        (~(np.isfinite(c_a) & (c_a > 0.0)), KappaStatus.C_NOT_POSITIVE),
    )
    for bad, code in checks:
        status[bad] = code
    return status, gamma_a, m_a, c_a, bracket


def kappa_status(gamma: Any, m: Any, c: Any, eta: Any) -> np.ndarray:
    """:class:`KappaStatus` code (int8 array, broadcast shape) of κ(γ, m, c, η) (eq. 50, 55).

    Same arguments and broadcasting as :func:`speciation_parameter`; κ is NaN exactly where the
    code is above ``KappaStatus.ZERO_SEPARATION``.
    """
    return _status_and_bracket(gamma, m, c, eta)[0]


def _defined_ratio(status: np.ndarray, num: np.ndarray, den: np.ndarray) -> np.ndarray | float:
    """``num/den`` where DEFINED, 0 where ZERO_SEPARATION, NaN elsewhere (module docstring)."""
    out = np.full(status.shape, np.nan)
    ok = status == KappaStatus.DEFINED
    np.divide(num, den, out=out, where=ok)
    out[status == KappaStatus.ZERO_SEPARATION] = 0.0
    return _out(out)


def snr_validity(c: Any, eta: Any, gamma: Any) -> np.ndarray:
    """Boolean mask of eq. (55), ``η_k < 1 + γ/c_k`` (equivalently ``γ μ_k > λ + ρχ + ξπ``).

    False also where c ≤ 0, γ ≤ 0 or any input is not finite (the bracket is then meaningless).
    """
    status = _status_and_bracket(gamma, 1.0, c, eta)[0]  # m = 1: only the (55)/input checks matter
    return status == KappaStatus.DEFINED


def modal_snr(m: Any, c: Any, eta: Any, gamma: Any) -> np.ndarray | float:
    """Modewise difference-mode SNR ``m²/(c((1 − η)c + γ))``, eq. (53).

    ``m``: modal branch separation m_k; ``c``: projected covariance c_k; ``eta``: η_k(g) (eq. 46);
    ``gamma``: score gain γ_{s,ℓ}. NaN where undefined, 0 where m = 0 (module docstring).
    """
    status, _, m_a, c_a, bracket = _status_and_bracket(gamma, m, c, eta)
    with np.errstate(all="ignore"):
        return _defined_ratio(status, m_a**2, c_a * bracket)  # eq. (53)


def speciation_parameter(gamma: Any, m: Any, c: Any, eta: Any) -> np.ndarray | float:
    """Modewise speciation parameter ``κ = γ m²/(c((1 − η)c + γ))``, eq. (50) (= γ·SNR, eq. 52).

    NaN where undefined (eq. 55 fails, γ ≤ 0, c ≤ 0, non-finite input), 0 where m = 0; see
    :func:`kappa_status` for the reason per entry. A NaN κ is never "speciated".
    """
    status, gamma_a, m_a, c_a, bracket = _status_and_bracket(gamma, m, c, eta)
    with np.errstate(all="ignore"):
        return _defined_ratio(status, gamma_a * m_a**2, c_a * bracket)  # eq. (50)


def effective_jacobian(gamma: Any, m: Any, c: Any, eta: Any) -> np.ndarray | float:
    """Effective one-block Jacobian along the mode, ``J = η − γ/c + γ m²/c²`` (eq. 39 with 38, projected).

    ``r_kᵀ(K_g − γΛ_eff)r_k`` with C diagonal in the mode basis (eq. 44): the slope of the map (36) along
    r_k at the symmetric point, the quantity §2.4 calls invariant under repartitioning between K_g and γ —
    and what a JVP or finite difference of a block (or a whole step) at a symmetric point measures.
    Plain arithmetic, no validity check; NaN propagates.
    """
    g_a, m_a, c_a, e_a = _broadcast(
        gamma=_real("gamma", gamma), m=_real("m", m), c=_real("c", c), eta=_real("eta", eta)
    )
    with np.errstate(all="ignore"):
        return _out(e_a + g_a * (m_a**2 / c_a - 1.0) / c_a)  # eq. (39): η − γ(1 − m²/c)/c


def speciation_parameter_from_jacobian(gamma: Any, m: Any, c: Any, jacobian: Any) -> np.ndarray | float:
    """Eq. (50) written with the effective Jacobian: ``κ = γκ_f/(c(1 − J) + γκ_f)``, ``κ_f = m²/c``.

    Substituting ``η = J + γ(1 − κ_f)/c`` (:func:`effective_jacobian` solved for η) into eq. (50) gives
    this form exactly (:func:`theory.symbolic_step.kappa_from_jacobian_eq50`). Hence

    * ``κ = 1 ⇔ J = 1`` for every γ > 0 (where eq. 55 holds, i.e. ``c(1 − J) + γκ_f > 0``): the threshold
      depends on the map only through J, the invariance claimed in §2.4;
    * with no linear propagator beyond the identity (η = 1, ``J = 1 + γ(κ_f − 1)/c``) ``κ = κ_f`` for any
      γ > 0 — the exact pitchfork of the mixture (κ_f = 1 where the score's slope along the mode vanishes).

    J = 1 is a statement about a map whose input and output live in the same coordinates: it is the
    bifurcation only where the score-free part of the map is the identity (K = I); a map that also
    rescales the state (a DDIM step in x, K = c₁ I) moves the threshold (docs/FINDINGS.md §4,
    :func:`theory.exact_step_kappa`). Same conventions as :func:`speciation_parameter` (NaN where
    undefined, 0 where m = 0); :func:`kappa_status_from_jacobian` gives the reasons.
    """
    status, gamma_a, m_a, c_a, bracket = _status_and_bracket(gamma, m, c, jacobian, "jacobian")
    with np.errstate(all="ignore"):
        return _defined_ratio(status, gamma_a * m_a**2, c_a * bracket)  # eq. (50), bracket in J


def kappa_status_from_jacobian(gamma: Any, m: Any, c: Any, jacobian: Any) -> np.ndarray:
    """:class:`KappaStatus` of :func:`speciation_parameter_from_jacobian` (eq. 55 as c(1 − J) + γκ_f > 0)."""
    return _status_and_bracket(gamma, m, c, jacobian, "jacobian")[0]


def modal_snr_expanded(
    m: Any, c: Any, gamma: Any, lambda_mlp: Any, chi: Any, pi: Any, g: Any
) -> np.ndarray | float:
    """Expanded SNR ``m²μ²/(γμ − λ^MLP − ρ(g)χ − ξ(g)π)`` with ``μ = 1/c``, eq. (54).

    Algebraically identical to :func:`modal_snr` with η from eq. (46) (the denominator is the
    bracket of eq. 55 divided by c); NaN where undefined, 0 where m = 0.
    """
    e = eta(g, lambda_mlp, chi, pi)  # eq. (46); checks g
    status, gamma_a, m_a, c_a, _ = _status_and_bracket(gamma, m, c, e)
    lam, ch, p, g_a = (
        _real(n, v) for n, v in (("lambda_mlp", lambda_mlp), ("chi", chi), ("pi", pi), ("g", g))
    )
    with np.errstate(all="ignore"):
        mu = 1.0 / c_a  # modal precision μ_k
        den = gamma_a * mu - lam - rho(g_a) * ch - xi(g_a) * p  # eq. (54) denominator
        status = np.where((status == KappaStatus.DEFINED) & ~(den > 0.0), KappaStatus.VIOLATES_55, status)
        return _defined_ratio(status, m_a**2 * mu**2, den)  # eq. (54)


def cumulative_gain(eta_seq: Any, axis: int = -1) -> np.ndarray:
    """Exclusive cumulative product ``G_k(s, ℓ) = ∏_{(s',ℓ') ≺ (s,ℓ)} η_k``, eq. (57).

    ``eta_seq`` lists η along the processing order (flatten (step, layer) to one axis, earliest
    first); entry ``j`` of the result multiplies entries ``0 … j−1``, so it starts at 1. A NaN η
    makes every later G NaN.
    """
    e = _real("eta_seq", eta_seq)
    if e.ndim == 0:
        raise ValueError(f"eta_seq must have at least one axis, got a scalar {describe(e)}")
    e = np.moveaxis(e, axis, -1)
    G = np.ones_like(e)
    G[..., 1:] = np.cumprod(e[..., :-1], axis=-1)  # eq. (57): up to but not including (s, ℓ)
    return np.moveaxis(G, -1, axis)


def propagated_snr(G: Any, m_init: Any, c: Any, eta: Any, gamma: Any) -> np.ndarray | float:
    """Propagated SNR ``G² m_init²/(c((1 − η)c + γ))``, eq. (58) (eq. 53 with m = G·m_init, eq. 56).

    NaN propagates from G or m_init (and wherever eq. 53 is undefined).
    """
    G_a, m0 = _broadcast(G=_real("G", G), m_init=_real("m_init", m_init))
    with np.errstate(invalid="ignore", over="ignore"):
        m = G_a * m0  # eq. (56)
    return modal_snr(m, c, eta, gamma)  # eq. (56) into eq. (53)


def _first_sign_change(y: Any, steps: Any, axis: int, name: str) -> np.ndarray | float:
    """First ``+ → ≤ 0`` change of ``y`` along ``axis``, linearly interpolated on ``steps``.

    The shared core of :func:`speciation_step` (``y = 1 − κ``) and
    :func:`theory.curvature_sign_change` (``y = H``). Per series, with NaN marking undefined
    points: ``steps[0]`` if ``y_0 ≤ 0`` (at or before the first point); otherwise, for the first
    defined ``i`` with ``y_i ≤ 0``, ``s_{i−1} + y_{i−1}/(y_{i−1} − y_i) (s_i − s_{i−1})``; NaN if an
    undefined point precedes that ``i``, or if there is no crossing and some point is undefined;
    ``inf`` if every point is defined and none is ≤ 0. ``±inf`` values are rejected.
    """
    a = _real(name, y)
    if a.ndim == 0:
        raise ValueError(f"{name} must have at least one axis (the step axis), got a scalar {describe(a)}")
    if np.any(np.isinf(a)):
        raise ValueError(f"{name} must not contain ±inf (mark undefined points with NaN), got {describe(a)}")
    a = np.moveaxis(a, axis, -1)
    n = a.shape[-1]
    if steps is None:
        s = np.arange(n, dtype=np.float64)
    else:
        s = as_float_array("steps", steps)
        if s.shape != (n,):
            raise ValueError(f"steps must have shape ({n},) to match {name}'s axis {axis}, got {s.shape}")
        if n > 1 and np.any(np.diff(s) <= 0):
            raise ValueError(f"steps must be strictly increasing, got {describe(s)}")
    undefined = np.isnan(a)
    crossed = a <= 0.0  # False at NaN
    has_cross = crossed.any(axis=-1)
    i = np.argmax(crossed, axis=-1)  # first crossing (0 if none; masked below)
    j = np.where(undefined.any(axis=-1), np.argmax(undefined, axis=-1), n)  # first undefined point
    y_i = np.take_along_axis(a, i[..., None], -1)[..., 0]
    i_prev = np.maximum(i - 1, 0)
    y_prev = np.take_along_axis(a, i_prev[..., None], -1)[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):  # i = 0 rows (0/0) are replaced below
        out = s[i_prev] + y_prev / (y_prev - y_i) * (s[i] - s[i_prev])
    out = np.where(i == 0, s[0], out)
    out = np.where(has_cross, np.where(j < i, np.nan, out), np.where(j < n, np.nan, np.inf))
    return _out(out)


def speciation_step(kappa: Any, steps: Any = None, axis: int = -1) -> np.ndarray | float:
    """First crossing of ``κ = 1`` along ``axis`` (eq. 51), linearly interpolated on the step grid.

    ``steps`` (default ``0 … n−1``) must be strictly increasing with length ``n = kappa.shape[axis]``.
    Per series: ``steps[0]`` if ``κ ≥ 1`` at the first point; otherwise, for the first ``i`` with
    ``κ_i ≥ 1``, ``s_{i−1} + (1 − κ_{i−1})/(κ_i − κ_{i−1}) (s_i − s_{i−1})``. NaN (undefined, see
    :func:`kappa_status`) entries of ``kappa`` are never a crossing: the result is NaN where one
    comes before the first crossing, or where there is none and some entry is NaN; ``inf`` where
    every κ is defined and below 1. ``kappa`` must not contain ``±inf``.
    """
    k = _real("kappa", kappa)
    with np.errstate(invalid="ignore"):
        return _first_sign_change(1.0 - k, steps, axis, "kappa")  # eq. (51): κ = 1 ⇔ 1 − κ = 0


def synchronization_gap(s_spec_lo: Any, s_spec_hi: Any) -> np.ndarray | float:
    """Modewise synchronization gap ``Δs_v = s_spec^(k_lo) − s_spec^(k_hi)``, eq. (65).

    Inputs come from :func:`speciation_step`: ``+inf`` (never speciates) or NaN (undefined). NaN
    propagates; a trailing mode that never speciates gives ``+inf``, a leading one ``−inf``; where
    *both* never speciate the gap is undefined (NaN). ``−inf`` inputs are rejected.
    """
    lo = _real("s_spec_lo", s_spec_lo)
    hi = _real("s_spec_hi", s_spec_hi)
    for name, v in (("s_spec_lo", lo), ("s_spec_hi", hi)):
        if np.any(v == -np.inf):
            raise ValueError(
                f"{name} must not contain -inf (+inf = never speciates, NaN = undefined), got {describe(v)}"
            )
    lo, hi = _broadcast(s_spec_lo=lo, s_spec_hi=hi)
    with np.errstate(invalid="ignore"):
        return _out(lo - hi)  # eq. (65); inf − inf = NaN


def eta_routing_dominant(g: Any, lambda_mlp: Any, chi: Any) -> np.ndarray | float:
    """Routing-dominant gain ``η_k ≈ 1 + λ^MLP + ρ(g) χ_k``, eq. (62) (eq. 46 with π_k → 0, eq. 59)."""
    return eta(g, lambda_mlp, chi, 0.0)  # eq. (62)


def modal_snr_routing_dominant(
    m: Any, c: Any, gamma: Any, lambda_mlp: Any, chi: Any, g: Any
) -> np.ndarray | float:
    """Routing-dominant SNR ``m²/(c((−λ^MLP − ρ(g)χ)c + γ))``, eq. (63); NaN where undefined."""
    return modal_snr(m, c, eta_routing_dominant(g, lambda_mlp, chi), gamma)  # eq. (63)

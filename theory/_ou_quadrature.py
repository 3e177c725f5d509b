"""Exact Gaussian transition ``(Φ, Q)`` of one eigen-coordinate of eq. (9)–(10) over a step.

For ``dx = (a₀(t) − c) x dτ + √β dW`` (``a₀ = ½β − β/Σ_t``, ``Σ_t = α_t² λ + σ_t²``) from VP time
``t₁`` down to ``t₂ < t₁`` (:mod:`theory.ou`'s time convention), ``x₂ = Φ x₁ + √Q ξ`` with

    Φ = (α₁ Σ₂)/(α₂ Σ₁) · e^{−c (t₁−t₂)},
    Q = (Σ₂/α₂)² I,    I = ∫_{t₂}^{t₁} f(s) e^{−2c (s−t₂)} ds,    f(s) = β(s) α_s² / Σ_s².

``f = −d(α²/Σ)/ds``, so for ``c = 0`` the integral is closed-form: ``Q = Σ₂ (1 − α₁²/α₂²)/Σ₁``.

For ``c > 0`` the integral is computed by composite Gauss–Legendre quadrature whose panels follow
the step and the spectrum, with an a-posteriori check (the panel count is never fixed):

* Nearest singularities. ``f`` is analytic except at the zeros of ``Σ_s``; for ``λ < 1`` the
  zero of ``α_s² = 1/(1 − λ)`` (``B(s) = log(1 − λ)``) lies at distance ``ε_λ ≈ √(2λ/β′)`` (or
  ``λ/β_min``) from ``s = 0`` — close to the real axis when ``λ`` is small — and every other zero
  lies at least ``≈ π/β_max`` from the real axis. Panels are therefore uniform in
  ``η = log(s + ε_λ)``: a panel's width is proportional to its distance to the pole, so the
  Gauss–Legendre error per panel is the same geometric factor everywhere (graded mesh).
* The initial count makes every panel at most ``½`` in ``η`` and ``2/c`` in ``s`` (the scale of
  ``e^{−2cs}``); then the count doubles until two successive results agree to ``_RTOL``.
  Gauss–Legendre with ``_GL_NODES`` nodes converges geometrically in the panel width (error
  ``∝ r^{−2n}`` with ``r`` the Bernstein-ellipse parameter, which roughly doubles when the width
  halves), so the accepted, finer result is far more accurate than the observed difference.

``tests/test_ou.py`` checks one step over the whole interval, every step of a 100-step grid and
random steps, for ``λ ∈ [1e-6, 1e4]`` and ``g ∈ [0, 5]``, against ``scipy.integrate.quad``: the
relative error of ``Var = Φ² P₀ + Q`` is ≤ 1e-10 (observed ≲ 1e-14).
"""

from __future__ import annotations

import logging

import numpy as np

from .schedules import VPSchedule, alpha, beta, beta_integral, sigma2

logger = logging.getLogger(__name__)

_GL_NODES = 8
_GL_X, _GL_W = np.polynomial.legendre.leggauss(_GL_NODES)
_RTOL = 1e-13  # two successive panel counts must agree to this (relative)
_MAX_PANELS = 1 << 15
_ETA_WIDTH = 0.5  # initial panel width in η = log(s + ε_λ)
_NODE_CHUNK = 1 << 20  # integrals × nodes evaluated at once (memory bound)


def pole_distance(sched: VPSchedule, lam: np.ndarray) -> np.ndarray:
    """Distance ``ε_λ`` from ``s = 0`` of the zero of ``Σ_s`` nearest the real axis, shape of ``lam``.

    For ``λ < 1``: the root of ``B(s) = β_min s + ½(β_max − β_min)s² = log(1 − λ) < 0`` (real or a
    complex pair). For ``λ ≥ 1`` every zero is at least ``≈ π/β_max`` off the axis: returns 1
    (panels then are nearly uniform in ``s``).
    """
    lam = np.asarray(lam, dtype=np.float64)
    out = np.ones_like(lam)
    below = lam < 1.0
    L = np.log1p(-lam[below])  # < 0
    b0, b1 = sched.beta_min, sched.beta_max - sched.beta_min
    if b1 == 0.0:
        root = np.abs(L / b0).astype(complex)
    else:
        root = (-b0 + np.sqrt((b0 * b0 + 2.0 * b1 * L).astype(complex))) / b1
    out[below] = np.minimum(np.abs(root), 1.0)
    return out


def _gl_integral(
    sched: VPSchedule, lam: np.ndarray, eps: np.ndarray, lo: np.ndarray, hi: np.ndarray, c: np.ndarray, P: int
) -> np.ndarray:
    """``I`` for M integrals (all arrays shape (M,)) with ``P`` panels uniform in ``η = log(s + ε)``."""
    e_lo, e_hi = np.log(lo + eps), np.log(hi + eps)  # (M,)
    frac = np.linspace(0.0, 1.0, P + 1)
    edges = np.exp(e_lo[:, None] + (e_hi - e_lo)[:, None] * frac) - eps[:, None]  # (M, P+1) in s
    edges[:, 0], edges[:, -1] = lo, hi
    half = 0.5 * np.diff(edges, axis=1)  # (M, P)
    mid = 0.5 * (edges[:, :-1] + edges[:, 1:])
    s = (mid[..., None] + half[..., None] * _GL_X).reshape(lo.size, -1)  # (M, P·G)
    w = (half[..., None] * _GL_W).reshape(lo.size, -1)
    B = np.asarray(beta_integral(sched, s))
    a2 = np.exp(-B)  # α_s², eq. (3)
    Sig = a2 * lam[:, None] - np.expm1(-B)  # Σ_s = α²λ + σ², σ² = 1 − α² without cancellation
    f = np.asarray(beta(sched, s)) * a2 / (Sig * Sig) * np.exp(-2.0 * c[:, None] * (s - lo[:, None]))
    return np.sum(w * f, axis=1)


def damped_integral(
    sched: VPSchedule, lam: np.ndarray, lo: np.ndarray, hi: np.ndarray, c: np.ndarray
) -> np.ndarray:
    """``I = ∫_lo^hi β α² Σ⁻² e^{−2c(s−lo)} ds`` for M integrals (arrays of shape (M,), ``hi > lo``).

    Adaptive composite Gauss–Legendre (module docstring); a warning names the integrals that
    did not converge within ``_MAX_PANELS`` panels (none in the tested range).
    """
    out = np.empty(lo.shape)
    eps = pole_distance(sched, lam)
    d_eta = np.log(hi + eps) - np.log(lo + eps)
    width_s = (hi + eps) * np.expm1(_ETA_WIDTH)  # widest panel in s at η-width ½
    P0 = np.maximum(np.ceil(d_eta / _ETA_WIDTH), np.ceil(0.5 * c * width_s * d_eta / _ETA_WIDTH))
    P0 = np.maximum(P0, 2).astype(np.int64)
    for P_start in np.unique(P0):  # group integrals by their initial panel count
        idx = np.flatnonzero(P0 == P_start)
        P = int(P_start)
        chunk = max(1, _NODE_CHUNK // (2 * P * _GL_NODES))
        args = (lam[idx], eps[idx], lo[idx], hi[idx], c[idx])
        coarse = np.concatenate(
            [_gl_integral(sched, *(a[i : i + chunk] for a in args), P) for i in range(0, idx.size, chunk)]
        )
        todo = np.arange(idx.size)
        while todo.size:
            P *= 2
            chunk = max(1, _NODE_CHUNK // (P * _GL_NODES))
            fine = np.concatenate(
                [
                    _gl_integral(sched, *(a[todo[i : i + chunk]] for a in args), P)
                    for i in range(0, todo.size, chunk)
                ]
            )
            done = np.abs(fine - coarse[todo]) <= _RTOL * np.abs(fine)
            out[idx[todo]] = fine
            coarse[todo] = fine
            todo = todo[~done]
            if P >= _MAX_PANELS and todo.size:
                logger.warning(
                    "damped_integral: %d integrals not converged to rtol=%g with %d panels",
                    todo.size,
                    _RTOL,
                    P,
                )
                break
    return out


def transition_table(
    lam: np.ndarray, sched: VPSchedule, t_from: np.ndarray, t_to: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(Φ, Q)``, shape (S, d) each, for S steps ``t_from[i] → t_to[i]`` with damping ``c[i] ≥ 0``.

    ``lam``: the d eigenvalues of Σ₀. Closed form for Φ, and for Q where ``c = 0``; adaptive
    quadrature (:func:`damped_integral`) for Q where ``c > 0`` (module docstring).
    """
    lam_row = lam[None, :]  # (1, d)
    a1, a2 = np.asarray(alpha(sched, t_from)), np.asarray(alpha(sched, t_to))  # (S,)
    S1 = (a1**2)[:, None] * lam_row + np.asarray(sigma2(sched, t_from))[:, None]  # Σ_{t₁}, (S, d)
    S2 = (a2**2)[:, None] * lam_row + np.asarray(sigma2(sched, t_to))[:, None]
    dt = t_from - t_to
    Phi = (a1 / a2 * np.exp(-c * dt))[:, None] * S2 / S1
    # c = 0: Q = Σ₂(1 − α₁²/α₂²)/Σ₁ with 1 − α₁²/α₂² = −expm1(−(B₁ − B₂)), exact at small steps
    one_minus = -np.expm1(
        -(np.asarray(beta_integral(sched, t_from)) - np.asarray(beta_integral(sched, t_to)))
    )
    Q = S2 * one_minus[:, None] / S1
    quad = (c > 0.0) & (dt > 0.0)
    if np.any(quad):
        steps = np.flatnonzero(quad)
        d = lam.size
        ii = np.repeat(steps, d)  # (M,) step index of each integral, M = S'·d
        jj = np.tile(np.arange(d), steps.size)
        integral = damped_integral(sched, lam[jj], t_to[ii], t_from[ii], c[ii])
        Q[ii, jj] = (S2[ii, jj] / a2[ii]) ** 2 * integral
    return Phi, Q

"""The exact multi-scale mixture one reverse step at a time: step-level predictor, eq. (50) on a DDIM step.

Notation of :mod:`theory.multiscale`: along φ_f the time-t marginal is ½N(+m_f, c_f) + ½N(−m_f, c_f)
with ``m_f = α_t A_f`` and ``c_f = v_t = α_t² s² + σ_t²`` (the same for every f), and the exact score is
eq. (35) once per factor.

Step-level predictor. At a symmetric point (every ``y_g = ⟨x, φ_g⟩ = 0``) the exact ε̂ = −σ_t ∇ log p_t
has ``H_f = σ_t⁻¹ φ_fᵀ (∂ε̂/∂x) φ_f = 1/v_t − m_f²/v_t² = (1 − κ_f)/c_f`` with ``κ_f = m_f²/c_f``
(:func:`exact_curvature`), the γ → ∞ limit of eq. (50); it changes sign at κ_f = 1 (eq. 51).
:func:`exact_speciation_step` places that root on the exact discrete step map of
:mod:`theory.schedules` (brentq on the continuous map, not grid interpolation).

Eq. (50) on one whole DDIM step (a finding). A deterministic DDIM step is exactly
``x_prev = c₁ x + γ_s ∇ log p_t(x)`` (:func:`theory.ddim_score_gain`), so along φ_f it *is* the one-block
map (36) with ``K = c₁`` (η = c₁ > 1), ``γ = γ_s``, ``m = m_f``, ``c = c_f``. Eq. (48) for this map is
the fixed-point equation of the step, and

    κ_50 > 1  ⇔  γ_s m²/c > (1 − c₁)c + γ_s  ⇔  J_s := c₁ + γ_s (κ_f − 1)/c_f > 1     (given eq. 55)

where ``J_s`` is the step's Jacobian along φ_f at the symmetric point. Because every step towards the
data rescales x by ``c₁ = α_prev/α_t > 1``, ``J_s > 1`` at every step and eq. (50) gives κ ≥ 1 from
step 0 for every factor with A_f ≳ 1 (κ_50 → A_f²/((1 + c₁)/2 − s²) as α_t → 0) although eq. (55)
holds everywhere: with a finite γ, eq. (50) measures whether the step expands the symmetric state,
not whether the marginal has split. The split is ``J_s > c₁`` (the step expands φ_f faster than it
expands the signal scale), i.e. ``κ_f = m_f²/c_f > 1``: only the γ → ∞ limit reproduces the exact
speciation steps. :func:`exact_step_kappa` returns both κ's, the (55) status and ``J_s``. With
ancestral steps (``ddim_eta > 0``) the noise-free part has a larger γ_s and contracts early (J_s < 1),
so κ_50 starts below 1 but still crosses 1 several steps before the exact split (2.4–3.1 steps at
S = 50 for ``ddim_eta = 1``); the equivalence κ_50 > 1 ⇔ J_s > 1 holds for any ``ddim_eta``.

Closure of eq. (56)–(57). Propagating ``m_init = m_f(0)`` with the per-step gain gives
``m_init ∏_{s'<s} gain_{s'}``; :func:`eq56_closure_ratio` divides it by the true ``m_f(s) = α_s A_f``.
With the propagator alone (gain = η = c₁, the paper's eq. 57) the product telescopes to α_s/α_0 and
the closure is exact; with the full-step Jacobian ``J_s`` (the repartition-invariant quantity of
eq. 39 that a measurement sees) it is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.optimize import brentq

from .modal_snr import KappaStatus, cumulative_gain, kappa_status, speciation_parameter
from .multiscale import MultiscaleMixture, patterns
from .schedules import (
    DDPMSchedule,
    Spacing,
    alpha_bar_at_step,
    ddim_c1,
    ddim_score_gain,
)
from .validation import as_float_array, check_positive_int, check_range


def _m_and_c(mix: MultiscaleMixture, alpha_bar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``m_f = α A_f`` (..., F) and ``c = v = α² s² + 1 − α²`` (..., 1) for ᾱ (...)."""
    ab = np.asarray(alpha_bar, dtype=np.float64)[..., None]
    return np.sqrt(ab) * np.asarray(mix.amplitudes), ab * mix.s**2 + (1.0 - ab)


def exact_curvature(mix: MultiscaleMixture, alpha_bar: Any) -> np.ndarray:
    """``H_f = (1 − κ_f)/c_f`` at symmetric points, ``κ_f = m_f²/c_f``, ``c_f = v_t``; (..., F) for ᾱ (...).

    The closed form of :func:`theory.directional_curvature` of ``mixture_eps`` (module docstring).
    """
    ab = as_float_array("alpha_bar", alpha_bar)
    check_range("alpha_bar", ab, 0.0, 1.0, lo_open=True)
    m, c = _m_and_c(mix, ab)
    kappa = m**2 / c  # eq. (50), γ → ∞
    return (1.0 - kappa) / c


def symmetric_points(
    mix: MultiscaleMixture, alpha_bar: float, n: int, rng: np.random.Generator
) -> np.ndarray:
    """n points on every factor's decision boundary, (n, C, H, W) float64.

    Marginal-variance noise ``sqrt(v_t) ξ``, ξ ~ N(0, I_d) from ``rng``, with every φ_f component removed.
    """
    check_range("alpha_bar", alpha_bar, 0.0, 1.0, lo_open=True)
    check_positive_int("n", n)
    phi = patterns(mix)  # (F, d)
    v = alpha_bar * mix.s**2 + 1.0 - alpha_bar
    xi = rng.standard_normal((n, mix.dim))
    xi -= (xi @ phi.T) @ phi  # on all decision boundaries: ⟨x, φ_f⟩ = 0
    return (np.sqrt(v) * xi).reshape(n, mix.channels, mix.size, mix.size)


def exact_speciation_step(
    mix: MultiscaleMixture, sched: DDPMSchedule, num_steps: int, spacing: Spacing = "trailing"
) -> np.ndarray:
    """Fractional sampler step where κ_f = m_f²/c_f = 1 (eq. 51) on the exact discrete map, (F,).

    Root of ``κ_f(ᾱ(s)) − 1`` on ``s ∈ [0, S]`` by brentq (xtol 1e-12) with ᾱ(s) from
    :func:`theory.alpha_bar_at_step`; κ_f increases with s. ``0.0`` where κ_f ≥ 1 already at step 0,
    ``inf`` where κ_f < 1 up to the clean end (A_f ≤ s), as :func:`theory.speciation_step`.
    """
    num_steps = check_positive_int("num_steps", num_steps)

    def g(s: float, f: int) -> float:
        m, c = _m_and_c(mix, np.asarray(alpha_bar_at_step(sched, s, num_steps, spacing)))
        return float(m[f] ** 2 / c[0]) - 1.0

    out = np.empty(mix.num_factors)
    for f in range(mix.num_factors):
        lo, hi = g(0.0, f), g(float(num_steps), f)
        if lo >= 0.0:
            out[f] = 0.0
        elif hi < 0.0:
            out[f] = np.inf
        else:
            out[f] = brentq(g, 0.0, float(num_steps), args=(f,), xtol=1e-12)
    return out


@dataclass(frozen=True)
class ExactStepKappa:
    """Eq. (50) on each whole deterministic-part DDIM step of the exact mixture; S steps, F factors.

    steps (S,); alpha_bar_t, alpha_bar_prev (S,); c1 (S,) = η (K = c₁ I); gamma (S,) = γ_s;
    m (S, F) = α_t A_f; c (S, F) = v_t; kappa (S, F) eq. (50) with the finite γ_s; status (S, F)
    :class:`theory.KappaStatus` of that κ; kappa_limit (S, F) = m²/c (γ → ∞); jacobian (S, F) =
    J_s = c₁ + γ_s (kappa_limit − 1)/c, the step's Jacobian along φ_f at a symmetric point.
    """

    steps: np.ndarray
    alpha_bar_t: np.ndarray
    alpha_bar_prev: np.ndarray
    c1: np.ndarray
    gamma: np.ndarray
    m: np.ndarray
    c: np.ndarray
    kappa: np.ndarray
    status: np.ndarray
    kappa_limit: np.ndarray
    jacobian: np.ndarray

    @property
    def valid_55(self) -> np.ndarray:
        """(S, F) bool: eq. (55) holds and κ is defined (status DEFINED)."""
        return self.status == KappaStatus.DEFINED


def exact_step_kappa(
    mix: MultiscaleMixture,
    sched: DDPMSchedule,
    num_steps: int,
    ddim_eta: float = 0.0,
    spacing: Spacing = "trailing",
) -> ExactStepKappa:
    """Apply eq. (50) to one exact DDIM step per sampler step (module docstring, "a finding").

    Step s goes from ᾱ(s) to ᾱ(s + 1) of :func:`theory.alpha_bar_at_step` (the last to ᾱ = 1); along
    φ_f the deterministic part is eq. (36) with ``K = c₁ = ddim_c1``, ``γ = γ_s = ddim_score_gain(…,
    ddim_eta)``, ``m = α_t A_f``, ``c = v_t``; κ comes from :func:`theory.speciation_parameter`.
    """
    num_steps = check_positive_int("num_steps", num_steps)
    grid = np.asarray(alpha_bar_at_step(sched, np.arange(num_steps + 1), num_steps, spacing))
    ab_t, ab_prev = grid[:-1], grid[1:]
    c1 = np.asarray(ddim_c1(ab_t, ab_prev))
    gamma = np.asarray(ddim_score_gain(ab_t, ab_prev, ddim_eta))
    m, c = _m_and_c(mix, ab_t)
    c = np.broadcast_to(c, m.shape).copy()
    kappa = np.asarray(speciation_parameter(gamma[:, None], m, c, c1[:, None]))  # eq. (50)
    status = kappa_status(gamma[:, None], m, c, c1[:, None])
    kappa_limit = m**2 / c  # eq. (50) with γ → ∞
    jacobian = c1[:, None] + gamma[:, None] * (kappa_limit - 1.0) / c
    return ExactStepKappa(
        steps=np.arange(num_steps, dtype=np.float64),
        alpha_bar_t=ab_t,
        alpha_bar_prev=ab_prev,
        c1=c1,
        gamma=gamma,
        m=m,
        c=c,
        kappa=kappa,
        status=status,
        kappa_limit=kappa_limit,
        jacobian=jacobian,
    )


def eq56_closure_ratio(
    mix: MultiscaleMixture,
    sched: DDPMSchedule,
    num_steps: int,
    ddim_eta: float = 0.0,
    gain: Literal["jacobian", "propagator"] = "jacobian",
    spacing: Spacing = "trailing",
) -> np.ndarray:
    """``m_init G(s) / m_f(s)`` for s = 0 … S, (S + 1, F): how far eq. (56) holds on the exact sampler.

    ``G(s) = ∏_{s' < s} gain_{s'}`` (eq. 57, exclusive), ``m_init = m_f(0) = α_0 A_f`` and the true
    ``m_f(s) = α_s A_f`` (``α_S = 1`` after the last step). ``gain="jacobian"``: the full-step
    Jacobian J_s along φ_f at the symmetric point (:class:`ExactStepKappa`); ``gain="propagator"``:
    η = c₁, for which the ratio is 1 up to rounding (module docstring). 1 = the closure holds.
    """
    if gain not in ("jacobian", "propagator"):
        raise ValueError(f"gain must be 'jacobian' or 'propagator', got {gain!r}")
    ek = exact_step_kappa(mix, sched, num_steps, ddim_eta, spacing)
    per_step = ek.jacobian if gain == "jacobian" else np.broadcast_to(ek.c1[:, None], ek.m.shape)
    G = cumulative_gain(np.vstack([per_step, np.ones((1, mix.num_factors))]), axis=0)  # (S + 1, F)
    alpha = np.sqrt(np.append(ek.alpha_bar_t, ek.alpha_bar_prev[-1]))  # α_s, s = 0 … S
    return G * alpha[0] / alpha[:, None]  # eq. (56): m_init G(s) / m_f(s)

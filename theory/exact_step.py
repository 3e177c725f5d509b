"""The exact multi-scale mixture one reverse step at a time: step-level predictor, eq. (50) on a DDIM step.

Notation of :mod:`theory.multiscale`: along φ_f the time-t marginal is ½N(+m_f, c_f) + ½N(−m_f, c_f)
with ``m_f = α_t A_f`` and ``c_f = v_t = α_t² s² + σ_t²`` (the same for every f), and the exact score is
eq. (35) once per factor.

Step-level predictor. At a symmetric point (every ``y_g = ⟨x, φ_g⟩ = 0``) the exact ε̂ = −σ_t ∇ log p_t
has ``H_f = σ_t⁻¹ φ_fᵀ (∂ε̂/∂x) φ_f = 1/v_t − m_f²/v_t² = (1 − κ_f)/c_f`` with ``κ_f = m_f²/c_f``
(:func:`exact_curvature`): the γ → ∞ limit of eq. (50), and eq. (50) itself at finite γ in x/α_t (below); it
changes sign at κ_f = 1 (eq. 51).
:func:`exact_speciation_step` places that root on the exact discrete step map of
:mod:`theory.schedules` (brentq on the continuous map, not grid interpolation).

Eq. (50) on one whole DDIM step (docs/FINDINGS.md §4). A deterministic DDIM step is exactly
``x_prev = c₁ x + γ_s ∇ log p_t(x)`` (:func:`theory.ddim_score_gain`), so along φ_f it *is* the one-block
map (36) with ``K = c₁`` (η = c₁), ``γ = γ_s``, ``m = m_f``, ``c = c_f``. Its slope along φ_f at a
symmetric point is the effective Jacobian of eq. (39), ``J = η − γ/c + γm²/c² = c₁ + γ_s(κ_f − 1)/c_f``,
and eq. (50) rewritten with J (:func:`theory.speciation_parameter_from_jacobian`) reads

    κ_50 = γ κ_f / (c(1 − J) + γ κ_f),        κ_f = m²/c,

so κ_50 = 1 exactly where J = 1 under every partition of the map between K and γ: §2.4's invariance
holds. But J = 1 is the bifurcation only where the score-free part of the map is the identity: the
symmetric state loses stability where the score's own slope γ(κ_f − 1)/c changes sign, i.e. at J = K.
In x coordinates K = c₁ = α_prev/α_t > 1 at every step, so J > 1 and κ_50 ≥ 1 from step 0
(κ_50 → A_f²/((1 + c₁)/2 − s²) as α_t → 0) although eq. (55) holds throughout; the bifurcation there is
J = c₁.

Coordinates (:func:`in_coordinates`). In ``x̃ = x/λ`` (``λ_t > 0`` at each grid time) the step is
``x̃_prev = x_prev/λ_prev`` with ``x = λ_t x̃``, and the density p̃_t of x̃ has
``∇_x̃ log p̃_t(x̃) = λ_t ∇_x log p_t(x)`` and along φ_f the form ½N(±m/λ_t, c/λ_t²) again (eq. 34–35), so
the step is eq. (36) with

    K̃ = c₁ λ_t/λ_prev,   γ̃ = γ_s/(λ_t λ_prev),   m̃ = m/λ_t,   c̃ = c/λ_t²,   J̃ = J λ_t/λ_prev,

and κ_f = m̃²/c̃ = m²/c unchanged. For ``λ = α_t`` (``coordinates="x_over_alpha"``) K̃ = 1: the score-free
part of a DDIM step is the identity, eq. (50) with the finite γ̃ is κ = m²/c = κ_f (to rounding), and its
κ = 1 crossings are the exact speciation steps. The noise of an ancestral step (``ddim_eta > 0``) is
additive and c₁ does not depend on ddim_eta, so the same holds there; in x coordinates the larger γ_s
of an ancestral step makes J < 1 early, κ_50 starts near 0.009 and crosses 1 where J = 1, i.e. at
κ_f = 1 − (c₁ − 1)c/γ_s < 1, 2.4–3.1 steps before the exact split at S = 50 (4.6–6.1 at S = 100).
:mod:`theory.symbolic_step` derives these identities symbolically.

Closure of eq. (56)–(57). Propagating ``m_init = m_f(0)`` with the per-step gain gives
``m_init ∏_{s'<s} gain_{s'}``; :func:`eq56_closure_ratio` divides it by the true ``m_f(s) = α_s A_f``.
With the propagator alone (gain = η = c₁, the paper's eq. 57) the product telescopes to α_s/α_0 and
the closure is exact; with the full-step Jacobian ``J_s`` (the repartition-invariant quantity of
eq. 39 that a measurement sees) it is not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.optimize import brentq

from .modal_snr import (
    KappaStatus,
    cumulative_gain,
    effective_jacobian,
    kappa_status,
    speciation_parameter,
)
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


Coordinates = Literal["x", "x_over_alpha"]

# λ(ᾱ) of x̃ = x/λ on the step grid, by name (module docstring, "Coordinates")
COORDINATE_SCALES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "x": np.ones_like,  # the sampler's own coordinates: K = c₁ > 1
    "x_over_alpha": np.sqrt,  # x̃ = x/α_t: K̃ = 1, the score-free part of DDIM is the identity
}


@dataclass(frozen=True)
class ExactStepKappa:
    """Eq. (50) on each whole deterministic-part DDIM step of the exact mixture; S steps, F factors.

    In coordinates x̃ = x/λ (``scale`` = λ on the grid, (S + 1,); all ones for x itself):
    steps (S,); alpha_bar_t, alpha_bar_prev (S,); c1 (S,) = ``ddim_c1``, the same in every coordinates;
    eta (S,) = K̃ = c₁ λ_t/λ_prev, the score-free part of the step along φ_f; gamma (S,) = γ̃;
    m (S, F) = m̃; c (S, F) = c̃; kappa (S, F) eq. (50) with these; status (S, F)
    :class:`theory.KappaStatus` of that κ; kappa_limit (S, F) = m²/c = κ_f (γ → ∞, coordinate-free);
    jacobian (S, F) = J̃ = K̃ + γ̃(κ_f − 1)/c̃, the step's Jacobian along φ_f at a symmetric point
    (κ = 1 ⇔ J̃ = 1; the bifurcation κ_f = 1 ⇔ J̃ = K̃).
    """

    steps: np.ndarray
    alpha_bar_t: np.ndarray
    alpha_bar_prev: np.ndarray
    c1: np.ndarray
    scale: np.ndarray
    eta: np.ndarray
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


def in_coordinates(ek: ExactStepKappa, scale: Any) -> ExactStepKappa:
    """The same steps written in ``x̃ = x/λ`` with ``λ = scale`` (S + 1,) relative to ``ek``'s coordinates.

    Eq. (36) along φ_f with ``K̃ = K λ_t/λ_prev``, ``γ̃ = γ/(λ_t λ_prev)``, ``m̃ = m/λ_t``, ``c̃ = c/λ_t²``
    (module docstring, "Coordinates"); κ of eq. (50) and its status recomputed, κ_f unchanged. ``scale``
    must be finite and positive; scales compose (``ek.scale`` of the result is ``ek.scale · scale``).
    """
    lam = as_float_array("scale", scale)
    n = ek.steps.size + 1
    if lam.shape != (n,):
        raise ValueError(f"scale must have shape ({n},) (one λ per grid time s = 0 … S), got {lam.shape}")
    check_range("scale", lam, 0.0, None, lo_open=True)
    lam_t, lam_prev = lam[:-1], lam[1:]
    eta = ek.eta * lam_t / lam_prev  # K̃
    gamma = ek.gamma / (lam_t * lam_prev)  # γ̃
    m = ek.m / lam_t[:, None]  # m̃
    c = ek.c / lam_t[:, None] ** 2  # c̃
    return ExactStepKappa(
        steps=ek.steps,
        alpha_bar_t=ek.alpha_bar_t,
        alpha_bar_prev=ek.alpha_bar_prev,
        c1=ek.c1,
        scale=ek.scale * lam,
        eta=eta,
        gamma=gamma,
        m=m,
        c=c,
        kappa=np.asarray(speciation_parameter(gamma[:, None], m, c, eta[:, None])),  # eq. (50)
        status=kappa_status(gamma[:, None], m, c, eta[:, None]),
        kappa_limit=ek.kappa_limit,
        jacobian=np.asarray(effective_jacobian(gamma[:, None], m, c, eta[:, None])),  # eq. (39)
    )


def exact_step_kappa(
    mix: MultiscaleMixture,
    sched: DDPMSchedule,
    num_steps: int,
    ddim_eta: float = 0.0,
    spacing: Spacing = "trailing",
    coordinates: Coordinates = "x",
) -> ExactStepKappa:
    """Apply eq. (50) to one exact DDIM step per sampler step, in x or in x/α_t (module docstring).

    Step s goes from ᾱ(s) to ᾱ(s + 1) of :func:`theory.alpha_bar_at_step` (the last to ᾱ = 1); along
    φ_f the deterministic part is eq. (36) with ``K = c₁ = ddim_c1``, ``γ = γ_s = ddim_score_gain(…,
    ddim_eta)``, ``m = α_t A_f``, ``c = v_t`` in x, rescaled by :func:`in_coordinates` with
    ``λ = COORDINATE_SCALES[coordinates](ᾱ)``; κ comes from :func:`theory.speciation_parameter`.
    """
    num_steps = check_positive_int("num_steps", num_steps)
    if coordinates not in COORDINATE_SCALES:
        raise ValueError(f"coordinates must be one of {tuple(COORDINATE_SCALES)}, got {coordinates!r}")
    grid = np.asarray(alpha_bar_at_step(sched, np.arange(num_steps + 1), num_steps, spacing))
    ab_t, ab_prev = grid[:-1], grid[1:]
    c1 = np.asarray(ddim_c1(ab_t, ab_prev))
    gamma = np.asarray(ddim_score_gain(ab_t, ab_prev, ddim_eta))
    m, c = _m_and_c(mix, ab_t)
    c = np.broadcast_to(c, m.shape).copy()
    in_x = ExactStepKappa(
        steps=np.arange(num_steps, dtype=np.float64),
        alpha_bar_t=ab_t,
        alpha_bar_prev=ab_prev,
        c1=c1,
        scale=np.ones(num_steps + 1),
        eta=c1,
        gamma=gamma,
        m=m,
        c=c,
        kappa=np.full(m.shape, np.nan),  # filled by in_coordinates (λ = 1 leaves every number as is)
        status=np.zeros(m.shape, dtype=np.int8),
        kappa_limit=m**2 / c,  # eq. (50) with γ → ∞
        jacobian=np.full(m.shape, np.nan),
    )
    return in_coordinates(in_x, COORDINATE_SCALES[coordinates](grid))


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
    per_step = ek.jacobian if gain == "jacobian" else np.broadcast_to(ek.eta[:, None], ek.m.shape)
    G = cumulative_gain(np.vstack([per_step, np.ones((1, mix.num_factors))]), axis=0)  # (S + 1, F)
    alpha = np.sqrt(np.append(ek.alpha_bar_t, ek.alpha_bar_prev[-1]))  # α_s, s = 0 … S
    return G * alpha[0] / alpha[:, None]  # eq. (56): m_init G(s) / m_f(s)

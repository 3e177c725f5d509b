"""The step-level predictor, model-agnostic: learned curvature along branch directions and its sign change.

At reverse step s, along a unit branch direction φ_f, the curvature of the learned denoiser at a
symmetric point x (a point on every branch's decision boundary) is

    H_f(s) = σ_t⁻¹ φ_fᵀ (∂ε̂/∂x)(x) φ_f.

For the exact score, ε̂ = −σ_t ∇ log p_t, so ``H_f = −φ_fᵀ ∇² log p_t φ_f``: positive while the
time-t marginal along φ_f is unimodal at the boundary (a restoring force), non-positive once it has
split into two branches. For the multi-scale mixture ``H_f = (1 − κ_f)/c_f`` with the γ → ∞ limit
``κ_f = m_f²/c_f`` of eq. (50) (:func:`theory.exact_curvature`), so the first sign change of H_f is
the pitchfork κ_f = 1 of eq. (49)/(51), read directly off the network: no m, c or γ fit.

* :func:`directional_curvature` — float64 central differences for any numpy ε-function, batched over
  points and directions; the reference for a JVP implementation.
* :func:`curvature_sign_change` — first ``+ → ≤ 0`` change along the step axis, linearly
  interpolated, with the NaN/``inf`` convention of :func:`theory.speciation_step` (it is the same
  code: ``speciation_step(κ) = curvature_sign_change(1 − κ)``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .modal_snr import _first_sign_change
from .validation import as_float_array, check_range, describe


def curvature_sign_change(H: Any, steps: Any = None, axis: int = -1) -> np.ndarray | float:
    """First sign change ``H > 0 → H ≤ 0`` along ``axis`` (eq. 51 through ``H = (1 − κ)/c``), interpolated.

    ``steps`` (default ``0 … n−1``) strictly increasing, length ``n = H.shape[axis]``. Per series:
    ``steps[0]`` if ``H ≤ 0`` at the first point (split at or before it); otherwise the zero of the
    straight line through the bracketing points; NaN where an undefined (NaN) point comes before the
    first change, or where there is none and some point is NaN; ``inf`` where H is defined and
    positive everywhere. ``±inf`` entries are rejected.
    """
    return _first_sign_change(H, steps, axis, "H")


def directional_curvature(
    eps_fn: Callable[[np.ndarray], np.ndarray],
    x: Any,
    phi: Any,
    sigma_t: float,
    h: float = 1e-4,
) -> np.ndarray:
    """``H[i, k] = σ_t⁻¹ φ_kᵀ (∂ε̂/∂x)(x_i) φ_k`` by float64 central differences, shape (n, K).

    ``eps_fn``: ``(B, *shape) → (B, *shape)`` float64 (one call with ``B = 2 n K``); ``x``: points
    ``(n, *shape)``; ``phi``: unit directions ``(K, *shape)`` (norm 1 within 1e-8, else ValueError);
    ``sigma_t > 0``; ``h > 0`` the step along φ in units of x. The error is the truncation
    ``h²/6 · φᵀ∂³ε̂[φ,φ,φ]/σ_t`` plus rounding ``~ε_mach ‖ε̂‖/(h σ_t)``.
    """
    x_a = as_float_array("x", x)
    phi_a = as_float_array("phi", phi)
    if x_a.ndim < 2 or phi_a.shape[1:] != x_a.shape[1:]:
        raise ValueError(
            "x must be (n, *shape) and phi (K, *shape) with the same *shape, "
            f"got x{x_a.shape}, phi{phi_a.shape}"
        )
    norms = np.sqrt(np.sum(phi_a.reshape(phi_a.shape[0], -1) ** 2, axis=1))
    if np.any(np.abs(norms - 1.0) > 1e-8):
        raise ValueError(f"phi must have unit norm along each direction, got norms {describe(norms)}")
    check_range("sigma_t", sigma_t, 0.0, None, lo_open=True)
    check_range("h", h, 0.0, None, lo_open=True)
    n, K = x_a.shape[0], phi_a.shape[0]
    shape = x_a.shape[1:]
    shift = h * phi_a[None]  # (1, K, *shape)
    batch = np.concatenate([x_a[:, None] + shift, x_a[:, None] - shift])  # (2n, K, *shape)
    out = np.asarray(eps_fn(batch.reshape(2 * n * K, *shape)), dtype=np.float64).reshape(2, n, K, -1)
    d_eps = (out[0] - out[1]) / (2.0 * h)  # (n, K, d) directional derivative of ε̂ along φ_k
    return np.einsum("nkd,kd->nk", d_eps, phi_a.reshape(K, -1)) / sigma_t

"""Symmetric two-component Gaussian mixture model of the difference mode (eq. 34–41).

Local model at reverse step s and layer ℓ (subscripts dropped):
``p(h) = ½ N(h; +m, C) + ½ N(h; −m, C)`` (eq. 34) with ``m ∈ R^D`` and ``C ≻ 0``.
Vectors ``h``/``v`` have shape ``(..., D)`` (leading batch axes allowed), ``m`` shape ``(D,)``,
``C`` and ``K`` shape ``(D, D)``. ``C⁻¹`` is applied through a Cholesky factorization, never
an explicit inverse; a non-positive-definite ``C`` raises ``ValueError`` naming ``C``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from .validation import as_float_array, check_range, describe


def _inputs(h: Any, m: Any, C: Any, h_name: str = "h") -> tuple[np.ndarray, np.ndarray, tuple]:
    h_a = as_float_array(h_name, h)
    m_a = as_float_array("m", m)
    C_a = as_float_array("C", C)
    if m_a.ndim != 1:
        raise ValueError(f"m must be a vector of shape (D,), got shape {m_a.shape}")
    D = m_a.shape[0]
    if C_a.shape != (D, D):
        raise ValueError(
            f"shape mismatch: C must have shape ({D}, {D}) to match m{m_a.shape}, got {C_a.shape}"
        )
    if h_a.ndim == 0 or h_a.shape[-1] != D:
        raise ValueError(f"shape mismatch: {h_name} must have last axis D={D} to match m, got {h_a.shape}")
    if not np.allclose(C_a, C_a.T, rtol=1e-12, atol=1e-14 * np.abs(C_a).max()):
        raise ValueError(f"C must be symmetric positive definite, got a non-symmetric {describe(C_a)}")
    try:
        factor = cho_factor(C_a, lower=True)
    except np.linalg.LinAlgError:
        raise ValueError(f"C must be symmetric positive definite, got {describe(C_a)}") from None
    return h_a, m_a, factor


def _cinv(factor: tuple, x: np.ndarray) -> np.ndarray:
    """``C⁻¹ x`` for x of shape (..., D)."""
    flat = x.reshape(-1, x.shape[-1]).T  # (D, B)
    return cho_solve(factor, flat).T.reshape(x.shape)


def mixture_log_density(h: Any, m: Any, C: Any) -> np.ndarray | float:
    """``log p(h)`` of the symmetric mixture, eq. (34), shape ``h.shape[:-1]``."""
    h_a, m_a, factor = _inputs(h, m, C)
    D = m_a.shape[0]
    logdet = 2.0 * np.sum(np.log(np.diag(factor[0])))
    Cinv_h = _cinv(factor, h_a)
    Cinv_m = _cinv(factor, m_a)
    quad_h = np.einsum("...d,...d->...", h_a, Cinv_h)
    quad_m = float(m_a @ Cinv_m)
    a = h_a @ Cinv_m  # mᵀC⁻¹h
    # ½e^{−(h−m)ᵀC⁻¹(h−m)/2} + ½e^{−(h+m)ᵀC⁻¹(h+m)/2} = e^{−(hᵀC⁻¹h + mᵀC⁻¹m)/2} cosh(mᵀC⁻¹h)
    log_cosh = np.logaddexp(a, -a) - np.log(2.0)
    out = -0.5 * (quad_h + quad_m) + log_cosh - 0.5 * (D * np.log(2.0 * np.pi) + logdet)
    return float(out) if np.ndim(out) == 0 else out


def mixture_score(h: Any, m: Any, C: Any) -> np.ndarray:
    """Score ``∇_h log p = −C⁻¹h + C⁻¹m tanh(mᵀC⁻¹h)``, eq. (35); shape of ``h``."""
    h_a, m_a, factor = _inputs(h, m, C)
    Cinv_m = _cinv(factor, m_a)
    a = h_a @ Cinv_m  # mᵀC⁻¹h, C symmetric
    return -_cinv(factor, h_a) + np.tanh(a)[..., None] * Cinv_m  # eq. (35)


def lambda_eff(m: Any, C: Any) -> np.ndarray:
    """Effective precision ``Λ_eff = C⁻¹ − C⁻¹m mᵀC⁻¹``, eq. (38): ``−∇²log p`` at ``h = 0``."""
    _, m_a, factor = _inputs(np.zeros_like(np.asarray(m, dtype=np.float64)), m, C)
    Cinv = cho_solve(factor, np.eye(m_a.shape[0]))
    Cinv_m = Cinv @ m_a
    return Cinv - np.outer(Cinv_m, Cinv_m)  # eq. (38)


def nonlinear_remainder(v: Any, m: Any, C: Any, gamma: Any) -> np.ndarray:
    """Score beyond its linearization, ``γ C⁻¹m [tanh(mᵀC⁻¹v) − mᵀC⁻¹v] = O(‖v‖³)``, eq. (40)."""
    v_a, m_a, factor = _inputs(v, m, C, "v")
    gamma_a = as_float_array("gamma", gamma)
    check_range("gamma", gamma_a, 0.0, None, lo_open=True)
    Cinv_m = _cinv(factor, m_a)
    a = v_a @ Cinv_m
    return gamma_a * (np.tanh(a) - a)[..., None] * Cinv_m  # eq. (40)


def _check_K(K: Any, D: int) -> np.ndarray:
    K_a = as_float_array("K", K)
    if K_a.shape != (D, D):
        raise ValueError(f"shape mismatch: K must have shape ({D}, {D}) to match m, got {K_a.shape}")
    return K_a


def one_block_map(h: Any, K: Any, gamma: Any, m: Any, C: Any) -> np.ndarray:
    """One-block update ``h⁺ = K_g h + γ[−C⁻¹h + C⁻¹m tanh(mᵀC⁻¹h)]``, eq. (36)."""
    h_a, m_a, _ = _inputs(h, m, C)
    K_a = _check_K(K, m_a.shape[0])
    gamma_a = as_float_array("gamma", gamma)
    check_range("gamma", gamma_a, 0.0, None, lo_open=True)
    return h_a @ K_a.T + gamma_a * mixture_score(h_a, m_a, C)  # eq. (36)


def fixed_point_residual(v: Any, K: Any, gamma: Any, m: Any, C: Any) -> np.ndarray:
    """Residual of eq. (41): ``[(I − K) + γC⁻¹]v − γC⁻¹m tanh(mᵀC⁻¹v)`` (zero at a fixed point of eq. 36)."""
    v_a, m_a, factor = _inputs(v, m, C, "v")
    K_a = _check_K(K, m_a.shape[0])
    gamma_a = as_float_array("gamma", gamma)
    check_range("gamma", gamma_a, 0.0, None, lo_open=True)
    Cinv_m = _cinv(factor, m_a)
    lhs = v_a - v_a @ K_a.T + gamma_a * _cinv(factor, v_a)
    return lhs - gamma_a * np.tanh(v_a @ Cinv_m)[..., None] * Cinv_m  # eq. (41)

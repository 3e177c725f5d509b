"""Data models with an exact time-t score under the VP forward process (eq. 2, 6, 8).

Both act on states of shape ``(..., d)`` given as numpy arrays or torch tensors (the result has
the input's type, dtype and device), so the replica simulator in :mod:`theory.ou` can run the
same score on either backend.

* :class:`GaussianData` — ``z₀ ~ N(0, Σ₀)`` in Σ₀'s eigenbasis (eigenvalues ``λ_i``); the
  marginal at time t is ``N(0, Σ_t)``, ``Σ_t = α_t² Σ₀ + σ_t² I``, and the score is exactly
  linear, ``−Σ_t⁻¹ z`` (eq. 8, exact here rather than an approximation).
* :class:`GaussianMixtureData` — ``z₀ ~ Σ_k w_k N(μ_k, diag(s))``; at time t each component is
  ``N(α_t μ_k, diag(α_t² s + σ_t²))`` and the score is the responsibility-weighted component
  score. :func:`symmetric_mixture` builds the two-component ``±μ`` case of Biroli et al. (2024).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

from .schedules import VPSchedule, alpha, sigma2
from .validation import as_float_array, check_range


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _const(arr: np.ndarray, like: Any) -> Any:
    """Numpy constant converted to the backend (dtype, device) of ``like``."""
    if _is_torch(like):
        import torch

        return torch.as_tensor(arr, dtype=like.dtype, device=like.device)
    return arr.astype(like.dtype, copy=False)


@dataclass(frozen=True)
class GaussianData:
    """Centered Gaussian data ``N(0, Σ₀)`` given by Σ₀'s eigenvalues (coordinates = its eigenbasis)."""

    eigenvalues: np.ndarray

    def __post_init__(self) -> None:
        lam = as_float_array("eigenvalues", self.eigenvalues)
        if lam.ndim != 1 or lam.size == 0:
            raise ValueError(f"eigenvalues must be a non-empty 1-D array, got shape {lam.shape}")
        check_range("eigenvalues", lam, 0.0, None, lo_open=True)
        lam.setflags(write=False)
        object.__setattr__(self, "eigenvalues", lam)

    @property
    def dim(self) -> int:
        return int(self.eigenvalues.size)


@dataclass(frozen=True)
class GaussianMixtureData:
    """``Σ_k w_k N(μ_k, diag(cov_diag))``: means (K, d), weights (K,) summing to 1, cov_diag (d,) > 0."""

    means: np.ndarray
    weights: np.ndarray
    cov_diag: np.ndarray

    def __post_init__(self) -> None:
        mu = as_float_array("means", self.means)
        w = as_float_array("weights", self.weights)
        s = as_float_array("cov_diag", self.cov_diag)
        if mu.ndim != 2:
            raise ValueError(f"means must have shape (K, d), got {mu.shape}")
        if w.shape != (mu.shape[0],) or s.shape != (mu.shape[1],):
            raise ValueError(
                f"shape mismatch: means{mu.shape}, weights{w.shape}, cov_diag{s.shape}; "
                "need weights (K,) and cov_diag (d,)"
            )
        check_range("weights", w, 0.0, 1.0, lo_open=True)
        if abs(w.sum() - 1.0) > 1e-12:
            raise ValueError(f"weights must sum to 1, got sum {w.sum():.15g}")
        check_range("cov_diag", s, 0.0, None, lo_open=True)
        for name, arr in (("means", mu), ("weights", w), ("cov_diag", s)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    @property
    def covariance_eigenvalues(self) -> np.ndarray:
        """Eigenvalues of the data covariance ``Σ_k w_k μ_k μ_kᵀ − μ̄μ̄ᵀ + diag(s)``, descending."""
        mean = self.weights @ self.means
        centered = self.means - mean
        cov = (centered.T * self.weights) @ centered + np.diag(self.cov_diag)
        return np.linalg.eigvalsh(cov)[::-1]


def symmetric_mixture(mu: Any, cov_diag: Any) -> GaussianMixtureData:
    """``½ N(+μ, diag(s)) + ½ N(−μ, diag(s))`` — the two-class model of Biroli et al. (2024)."""
    mu_a = as_float_array("mu", mu)
    s = np.broadcast_to(as_float_array("cov_diag", cov_diag), mu_a.shape)
    return GaussianMixtureData(means=np.stack([mu_a, -mu_a]), weights=np.array([0.5, 0.5]), cov_diag=s.copy())


def marginal_variance(data: GaussianData, sched: VPSchedule, t: float) -> np.ndarray:
    """``Σ_t = α_t² λ + σ_t²`` per eigen-coordinate (d,) — the covariance in eq. (8)."""
    a2 = float(alpha(sched, t)) ** 2
    return a2 * data.eigenvalues + float(sigma2(sched, t))


def score(data: GaussianData | GaussianMixtureData, sched: VPSchedule, z: Any, t: float) -> Any:
    """Exact score ``∇ log p_t(z)`` at VP time ``t`` for ``z`` of shape (..., d) (numpy or torch)."""
    if isinstance(data, GaussianData):
        return z * _const(-1.0 / marginal_variance(data, sched, t), z)  # eq. (8)
    if isinstance(data, GaussianMixtureData):
        return _mixture_score(data, sched, z, t)
    raise TypeError(f"data must be GaussianData or GaussianMixtureData, got {type(data).__name__}")


def _mixture_logits_and_var(
    data: GaussianMixtureData, sched: VPSchedule, z: Any, t: float
) -> tuple[Any, np.ndarray, float]:
    a = float(alpha(sched, t))
    var = a * a * data.cov_diag + float(sigma2(sched, t))  # (d,)
    # log w_k − ½ Σ_d (z − αμ_k)²/var without the z-only term common to every k
    W = (a * data.means / var).T  # (d, K)
    bias = np.log(data.weights) - 0.5 * a * a * np.sum(data.means**2 / var, axis=1)  # (K,)
    logits = z @ _const(W, z) + _const(bias, z)  # (..., K)
    return logits, var, a


def _two_component_score(data: GaussianMixtureData, sched: VPSchedule, z: Any, t: float) -> Any:
    """K = 2: ``r₁ = σ(ℓ₁ − ℓ₀)`` from one matrix-vector product, mean ``α(μ₀ + r₁(μ₁ − μ₀))``.

    The same score as the K-component softmax form, in a third of the passes over ``z``.
    """
    a = float(alpha(sched, t))
    var = a * a * data.cov_diag + float(sigma2(sched, t))  # (d,)
    mu0, mu1 = data.means
    w = a * (mu1 - mu0) / var  # (d,): ℓ₁ − ℓ₀ = w·z + c
    c = np.log(data.weights[1] / data.weights[0]) - 0.5 * a * a * np.sum((mu1**2 - mu0**2) / var)
    if _is_torch(z):
        r1 = (z @ _const(w, z) + c).sigmoid_()[..., None]  # (..., 1)
    else:
        r1 = expit(z @ w + c)[..., None]
    mean = r1 * _const(a * (mu1 - mu0), z) + _const(a * mu0, z)  # (..., d)
    return (mean - z) * _const(1.0 / var, z)


def _mixture_score(data: GaussianMixtureData, sched: VPSchedule, z: Any, t: float) -> Any:
    if data.weights.size == 2:
        return _two_component_score(data, sched, z, t)
    logits, var, a = _mixture_logits_and_var(data, sched, z, t)
    if _is_torch(z):
        r = logits.softmax(dim=-1)
    else:
        r = np.exp(logits - logits.max(axis=-1, keepdims=True))
        r /= r.sum(axis=-1, keepdims=True)
    mean = r @ _const(a * data.means, z)  # (..., d) posterior-mean-weighted centre α Σ r_k μ_k
    return (mean - z) * _const(1.0 / var, z)


def responsibilities(data: GaussianMixtureData, sched: VPSchedule, z: Any, t: float) -> np.ndarray:
    """Posterior component probabilities ``P(k | z_t)`` (..., K) as a float64 numpy array."""
    z_np = z.detach().cpu().numpy() if _is_torch(z) else np.asarray(z)
    logits, _, _ = _mixture_logits_and_var(data, sched, z_np.astype(np.float64), t)
    r = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return r / r.sum(axis=-1, keepdims=True)


def assign_component(data: GaussianMixtureData, sched: VPSchedule, z: Any, t: float) -> np.ndarray:
    """Most probable component of each state at time ``t`` (int array, shape ``z.shape[:-1]``)."""
    return np.argmax(responsibilities(data, sched, z, t), axis=-1)

"""Estimator of the local score gain γ_{s,ℓ} of eq. (36) — the quantity the paper left unmeasured.

Eq. (36) models one block (or one reverse step) acting on the difference mode along r_k as

    D(a) = η a + γ [−a/c + (m/c) tanh(m a / c)]                                          # eq. (36) on r_k

with (m, c) the local two-Gaussian parameters of eq. (34) projected on r_k (eq. 44). The linear part of the
score is indistinguishable from the propagator (eq. 37–39: only K_g − γΛ_eff is identifiable), but the
tanh remainder (eq. 40) is not: it is the only odd nonlinearity at the scale c/m. The estimator therefore
probes the odd response D(a) = r_kᵀ[F(x0 + a r_k) − F(x0 − a r_k)]/2 of the map F at amplitudes
a ∈ (0, `span`·c/m] (through the tanh's saturation) and fits, by linear least squares,

    D(a) ≈ b a + γ (m/c) tanh(m a / c),          b = η − γ/c   (the repartition-invariant linear part)

returning γ (and b). On the exact multi-scale mixture the reverse step is F(x) = c₁ x + γ_s ∇ log p_t(x)
with ∇ log p_t exactly of the form eq. (35) along φ_f, so the fit recovers the known γ_s of
`theory.ddim_score_gain` to rounding error (the validation in tests/test_gamma.py); with (m, c) estimated from
samples it recovers it within the sampling error of the moments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from theory.multiscale import MultiscaleMixture, mixture_eps, patterns
from theory.schedules import ddim_step

from .measure import LinearizedDiT


@dataclass(frozen=True)
class GammaFit:
    """The fit of eq. (36) along one mode: γ with its standard error, the linear part b, and the misfit.

    ``resid`` = ‖fit − D‖/‖D‖: how well eq. (36)'s form b a + γ (m/c) tanh(m a/c) describes the map at
    all (a large value means γ is a number fitted to the wrong shape); ``gamma_se`` the least-squares
    standard error of γ from the residual variance (NaN with fewer than 3 amplitudes). NaN everywhere
    where m ≤ 0 or c ≤ 0: without a branch separation the tanh regressor vanishes and γ is not identified.
    """

    gamma: float
    b: float
    resid: float
    gamma_se: float


_NAN_FIT = GammaFit(np.nan, np.nan, np.nan, np.nan)


def fit_score_gain(a: np.ndarray, D: np.ndarray, m: float, c: float) -> GammaFit:
    """Least-squares fit of D(a) ≈ b a + γ (m/c) tanh(m a / c), eq. (36) projected on one mode."""
    a = np.asarray(a, dtype=np.float64)
    D = np.asarray(D, dtype=np.float64)
    if not (np.isfinite(m) and np.isfinite(c)) or m <= 0 or c <= 0:
        return _NAN_FIT
    X = np.stack([a, (m / c) * np.tanh(m * a / c)], axis=1)  # (n, 2) regressors of eq. (36)
    coef, *_ = np.linalg.lstsq(X, D, rcond=None)
    r = X @ coef - D
    resid = float(np.linalg.norm(r) / max(np.linalg.norm(D), 1e-300))
    se = np.nan
    if a.size > 2:
        cov = np.linalg.pinv(X.T @ X) * float(r @ r) / (a.size - 2)
        se = float(np.sqrt(max(cov[1, 1], 0.0)))
    return GammaFit(float(coef[1]), float(coef[0]), resid, se)


def amplitude_grid(m: float, c: float, n: int = 16, span: float = 4.0) -> np.ndarray:
    """a_j = (j/n)·span·c/m, j = 1 … n: from the linear regime through the tanh's saturation."""
    return span * (c / m) * np.arange(1, n + 1) / n


def estimate_gamma(
    odd_response: Callable[[np.ndarray], np.ndarray], m: float, c: float, n: int = 16, span: float = 4.0
) -> GammaFit:
    """γ from a map's odd response along one mode: odd_response(a (n,)) → D (n,)."""
    if not (np.isfinite(m) and np.isfinite(c)) or m <= 0 or c <= 0:
        return _NAN_FIT
    a = amplitude_grid(m, c, n, span)
    return fit_score_gain(a, odd_response(a), m, c)


def step_odd_response(
    eps_fn: Callable[[np.ndarray, float], np.ndarray],
    mix: MultiscaleMixture,
    factor: int,
    x0: np.ndarray,
    ab_t: float,
    ab_prev: float,
    ddim_eta: float = 0.0,
) -> Callable[[np.ndarray], np.ndarray]:
    """Odd response along φ_f of one deterministic DDIM step of denoiser eps_fn(x, ᾱ_t) from x0 (C, H, W)."""
    phi = patterns(mix)[factor].reshape(x0.shape)

    def D(a: np.ndarray) -> np.ndarray:
        x = np.concatenate([x0[None] + a[:, None, None, None] * phi, x0[None] - a[:, None, None, None] * phi])
        out = ddim_step(x, eps_fn(x, ab_t), ab_t, ab_prev, ddim_eta, None)  # (2n, C, H, W), noise-free part
        n = a.size
        return np.sum((out[:n] - out[n:]) * phi, axis=(1, 2, 3)) / 2

    return D


def exact_eps_fn(mix: MultiscaleMixture) -> Callable[[np.ndarray, float], np.ndarray]:
    """eps_fn(x, ᾱ) of the exact mixture denoiser (for `step_odd_response`)."""
    return lambda x, ab: mixture_eps(mix, x, ab)


def block_odd_response(
    lin: LinearizedDiT, layer: int, t: int, label: int, H0: torch.Tensor, r: torch.Tensor
) -> Callable[[np.ndarray], np.ndarray]:
    """Odd response of block `layer` to the replica difference along r (N, D), in v-coordinates.

    D(v) = rᵀ[f(H0 + v r/√2) − f(H0 − v r/√2)]/√2: the block's map of the difference mode v = (H^A − H^B)/√2
    (eq. 20) at g = 0, so (m_k, c_k) estimated from replica differences apply directly.
    """
    block = lin.transformer.transformer_blocks[layer]
    H = H0.to(torch.float64)
    r = r.to(torch.float64)

    @torch.no_grad()
    def D(v: np.ndarray) -> np.ndarray:
        a = torch.as_tensor(v, dtype=torch.float64).view(-1, 1, 1) / np.sqrt(2)
        batch = torch.cat([H + a * r, H - a * r])  # (2n, N, D)
        n = a.shape[0]
        ts = torch.full((2 * n,), int(t), dtype=torch.long)
        ys = torch.full((2 * n,), int(label), dtype=torch.long)
        o = block(batch, timestep=ts, class_labels=ys)
        return ((o[:n] - o[n:]) * r).flatten(1).sum(1).numpy() / np.sqrt(2)

    return D

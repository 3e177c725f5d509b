"""Speciation of a single trajectory (Biroli, Bonnaire, de Bortoli, Mézard 2024) and its measurement.

Result (Biroli et al. 2024, "Dynamical regimes of diffusion models", §2): for data from a
symmetric two-class Gaussian mixture noised by the forward OU process
``dx = −x ds + √2 dW`` (so ``x_s = e^{−s} x₀ + √(1 − e^{−2s}) ε``), trajectories of the backward
process commit to a class at the speciation time

    s_S = ½ log Λ,      Λ = largest eigenvalue of the data covariance,

the time at which the signal variance along the class direction, ``e^{−2s} Λ``, equals the
unit noise variance.

Mapping to VP time. The VP process (eq. 1–3) has ``α_t = exp(−½ B(t))``, ``B(t) = ∫_0^t β``,
and the same ``σ_t² = 1 − α_t²``; matching ``α_t = e^{−s}`` makes the two processes identical
under the reparametrization ``s = ½ B(t)``. Hence the VP speciation time solves
``B(t_S) = log Λ`` (equivalently ``α_{t_S}² Λ = 1``); it exists in ``(0, T]`` iff
``1 < Λ ≤ e^{B(T)}`` (``e^{10.05}`` for the default schedule).

Measurement. Clone a state drawn from the exact marginal at time ``t_c``, run two independent
reverse continuations with the exact score and record how often they end in different
components. For the symmetric isotropic mixture this split probability has an exact
one-dimensional expression (:func:`split_probability_exact`): only the projection on ``μ`` is
non-Gaussian, and the reverse SDE with the exact score reproduces the forward joint law, so
``P_split(t_c) = E_{x ~ p_{t_c}}[2 q(x)(1 − q(x))]`` with ``q(x) = P(μᵀx_{t_end} > 0 | x_{t_c} = x)``.
``P_split`` rises from 0 (late cloning) to 1/2 (cloning at pure noise).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit, ndtr

from .ou import Backend, init_replicas, simulate_replicas
from .ou_data import GaussianMixtureData, assign_component
from .schedules import VPSchedule, alpha, beta_integral, sigma2, time_of_beta_integral
from .streams import numpy_generator
from .validation import as_float_array, check_positive_int, check_range


def biroli_speciation_time(Lambda: Any) -> np.ndarray | float:
    """Speciation time ``s_S = ½ log Λ`` in the OU time of ``dx = −x ds + √2 dW`` (Biroli et al. 2024).

    ``Λ > 1`` is the largest eigenvalue of the data covariance.
    """
    lam = as_float_array("Lambda", Lambda)
    check_range("Lambda", lam, 1.0, None, lo_open=True)
    out = 0.5 * np.log(lam)
    return float(out) if out.ndim == 0 else out


def ou_time_to_vp_time(sched: VPSchedule, s: Any) -> np.ndarray | float:
    """VP time ``t`` with ``½ B(t) = s`` (so ``α_t = e^{−s}``); ``s ∈ [0, ½ B(T)]``."""
    s_arr = as_float_array("s", s)
    s_max = 0.5 * float(beta_integral(sched, sched.T))
    check_range("s", s_arr, 0.0, s_max)
    return time_of_beta_integral(sched, 2.0 * s_arr)


def vp_time_to_ou_time(sched: VPSchedule, t: Any) -> np.ndarray | float:
    """OU time ``s = ½ B(t)`` of VP time ``t`` (inverse of :func:`ou_time_to_vp_time`)."""
    return 0.5 * beta_integral(sched, t)


def biroli_speciation_time_vp(sched: VPSchedule, Lambda: Any) -> np.ndarray | float:
    """Speciation time in VP time: ``B(t_S) = log Λ``, i.e. ``α_{t_S}² Λ = 1`` (module docstring)."""
    return ou_time_to_vp_time(sched, biroli_speciation_time(Lambda))


def split_probability_exact(
    m: float, s2: float, sched: VPSchedule, t_clone: Any, t_end: float, n_nodes: int = 160
) -> np.ndarray | float:
    """Exact probability that two clones from time ``t_clone`` end on different sides of ``μᵀz = 0``.

    Data ``½N(+μ, s2·I) + ½N(−μ, s2·I)`` with ``m = |μ|``; continuations follow the exact reverse
    process down to ``t_end`` (module docstring). Gauss–Hermite quadrature with ``n_nodes``
    nodes over ``x_{t_clone}``.
    """
    check_range("m", m, 0.0, None, lo_open=True)
    check_range("s2", s2, 0.0, None, lo_open=True)
    tc = as_float_array("t_clone", t_clone)
    check_range("t_clone", tc, t_end, sched.T)
    check_range("t_end", t_end, 0.0, sched.T)
    a_e, v_e0 = float(alpha(sched, t_end)), float(sigma2(sched, t_end))
    var_e = a_e**2 * s2 + v_e0  # Var(x_te | c)
    x_gh, w_gh = np.polynomial.hermite_e.hermegauss(n_nodes)  # weight e^{−x²/2}
    w_gh = w_gh / np.sqrt(2.0 * np.pi)
    out = np.empty(tc.shape)
    for idx, t in np.ndenumerate(tc):
        a_c = float(alpha(sched, t))
        var_c = a_c**2 * s2 + float(sigma2(sched, t))  # Var(x_tc | c)
        cov = (a_c / a_e) * var_e  # Cov(x_te, x_tc | c): x_tc = (α_c/α_e) x_te + independent noise
        cond_var = max(var_e - cov**2 / var_c, 1e-300)  # 0 when t = t_end: q becomes a step
        x = a_c * m + np.sqrt(var_c) * x_gh  # nodes of the c = +1 component; 2q(1−q) is even in x
        post_plus = expit(2.0 * a_c * m * x / var_c)  # P(c = +1 | x_tc)
        q = 0.0
        for c, w in ((1.0, post_plus), (-1.0, 1.0 - post_plus)):
            mean = a_e * c * m + cov / var_c * (x - a_c * c * m)
            q = q + w * ndtr(mean / np.sqrt(cond_var))
        out[idx] = np.sum(w_gh * 2.0 * q * (1.0 - q))
    return float(out) if out.ndim == 0 else out


def sample_marginal(data: GaussianMixtureData, sched: VPSchedule, t: float, n: int, seed: int) -> np.ndarray:
    """``n`` exact samples (n, d) of the forward marginal ``Σ_k w_k N(α_t μ_k, diag(α_t² s + σ_t²))``."""
    n = check_positive_int("n", n)
    rng = numpy_generator(seed, 2)
    k = rng.choice(data.weights.size, size=n, p=data.weights)
    a = float(alpha(sched, t))
    std = np.sqrt(a * a * data.cov_diag + float(sigma2(sched, t)))
    return a * data.means[k] + std * rng.standard_normal((n, data.dim))


def same_component_fraction(data: GaussianMixtureData, sched: VPSchedule, z: Any, t: float) -> float:
    """Fraction of pairs ``z`` (n, 2, d) whose replicas sit in the same most-probable component at ``t``."""
    labels = assign_component(data, sched, z, t)  # (n, 2)
    return float(np.mean(labels[:, 0] == labels[:, 1]))


def split_probability_simulated(
    data: GaussianMixtureData,
    sched: VPSchedule,
    t_clone: float,
    t_end: float,
    n_pairs: int,
    n_steps: int,
    *,
    seed: int = 0,
    backend: Backend = "numpy",
    device: Any = None,
    dtype: Any = None,
) -> float:
    """Monte-Carlo split probability: clone exact ``p_{t_clone}`` samples, run both copies with
    Euler–Maruyama (``n_steps`` uniform steps to ``t_end``, g = 0, independent noise) and return
    the fraction of pairs ending in different components (labels at ``t_end``)."""
    n_steps = check_positive_int("n_steps", n_steps)
    check_range("t_clone", t_clone, t_end, sched.T, lo_open=True)
    x = sample_marginal(data, sched, t_clone, n_pairs, seed)
    z0 = np.stack([x, x], axis=1)  # (n, 2, d): identical replicas = a cloned trajectory
    t_grid = np.linspace(t_clone, t_end, n_steps + 1)
    z = simulate_replicas(
        data, sched, t_grid, z0, 0.0, seed=seed, backend=backend, device=device, dtype=dtype
    )
    return 1.0 - same_component_fraction(data, sched, z, t_end)


def decoupling_same_fraction(
    data: GaussianMixtureData,
    sched: VPSchedule,
    t_grid: Any,
    t_decouple: float,
    g: float,
    n_pairs: int,
    *,
    seed: int = 0,
) -> float:
    """Fraction of replica pairs (independent ``N(0, I)`` starts at ``t_grid[0]``) ending in the same
    component when coupled with strength ``g`` for ``t > t_decouple`` and uncoupled afterwards."""
    t = as_float_array("t_grid", t_grid)
    g_steps = np.where(t[:-1] > t_decouple, g, 0.0)
    z0 = init_replicas(n_pairs, data.dim, seed=seed)
    z = simulate_replicas(data, sched, t, z0, g_steps, seed=seed)
    return same_component_fraction(data, sched, z, float(t[-1]))

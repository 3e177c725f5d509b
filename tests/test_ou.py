"""Coupled OU replicas (eq. 4–10): exact transitions, covariances, EM convergence, streams, scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad, solve_ivp

from theory import (
    GaussianData,
    GaussianMixtureData,
    VPSchedule,
    common_difference,
    from_common_difference,
    init_replicas,
    linear_transition,
    marginal_variance,
    mode_variance,
    score,
    simulate_replicas,
    symmetric_mixture,
)
from theory.schedules import alpha, beta, sigma2

VP = VPSchedule()
SPECTRA = [np.array([0.1, 1.0, 4.0]), np.array([0.01, 0.5, 9.0, 25.0])]


def _lyapunov_reference(
    lam: np.ndarray, c: float, t0: float, t1: float, P0: float, rtol: float = 1e-12
) -> np.ndarray:
    """Var of dx = (½β − β/Σ_t − c) x dτ + √β dW by solve_ivp in forward time t (dτ = −dt)."""

    def rhs(t: float, P: np.ndarray) -> np.ndarray:
        b = float(beta(VP, t))
        S = float(alpha(VP, t)) ** 2 * lam + float(sigma2(VP, t))
        a = 0.5 * b - b / S - c
        return -(2 * a * P + b)

    sol = solve_ivp(rhs, (t0, t1), np.full(lam.shape, P0), method="DOP853", rtol=rtol, atol=1e-16)
    return sol.y[:, -1]


@pytest.mark.parametrize("lam", SPECTRA, ids=["spec3", "spec4"])
@pytest.mark.parametrize("g", [0.0, 0.5, 3.0])
def test_mode_variance_against_ode(lam: np.ndarray, g: float) -> None:
    data = GaussianData(lam)
    for t_end in (0.5, 0.05, 1e-3):
        got = mode_variance(data, VP, t_end, g, "difference")
        ref = _lyapunov_reference(lam, 2 * g, 1.0, t_end, 1.0)
        np.testing.assert_allclose(got, ref, rtol=1e-8)
    # common mode is g-independent and relaxes to the data marginal Σ_t (eq. 9)
    np.testing.assert_allclose(
        mode_variance(data, VP, 1e-3, g, "common"), _lyapunov_reference(lam, 0, 1, 1e-3, 1)
    )


def test_uncoupled_variance_is_the_marginal() -> None:
    """With var_start = Σ_T the reverse process stays on the forward marginals: Var = Σ_t exactly."""
    data = GaussianData(SPECTRA[1])
    t = np.array([0.9, 0.3, 0.01])
    got = mode_variance(data, VP, t, 0.0, "common", var_start=marginal_variance(data, VP, 1.0))
    np.testing.assert_allclose(got, np.stack([marginal_variance(data, VP, x) for x in t]), rtol=1e-12)


def test_quadrature_matches_closed_form_at_vanishing_coupling() -> None:
    data = GaussianData(SPECTRA[1])
    Phi0, Q0 = linear_transition(data, VP, 0.8, 0.2, 0.0)  # closed form
    Phi1, Q1 = linear_transition(data, VP, 0.8, 0.2, 1e-300)  # Gauss–Legendre path
    np.testing.assert_allclose(Phi1, Phi0, rtol=1e-15)
    np.testing.assert_allclose(Q1, Q0, rtol=1e-12)


def _one_step_variance_quad(lam: float, c: float, t1: float, t2: float, P0: float) -> float:
    """Var after one exact step ``t1 → t2`` from variance ``P0``, by ``scipy.integrate.quad`` alone.

    ``Φ = exp ∫ (a₀ − c) dτ`` and ``Q = (Σ₂/α₂)² ∫ β α² Σ⁻² e^{−2c(s−t2)} ds``, both integrands
    written here from the schedule's parameters (not the package's code), on geometric
    sub-intervals so that QUADPACK resolves the ``Σ_s ≈ λ`` peak near ``s = 0`` at tiny ``λ``.
    """
    b0, b1 = VP.beta_min, VP.beta_max - VP.beta_min

    def Bsig(s: float) -> tuple[float, float, float]:
        B = b0 * s + 0.5 * b1 * s * s
        return B, b0 + b1 * s, math.exp(-B) * lam - math.expm1(-B)  # B(s), β(s), Σ_s

    def drift(s: float) -> float:
        _, b, S = Bsig(s)
        return 0.5 * b - b / S - c

    def q_integrand(s: float) -> float:
        B, b, S = Bsig(s)
        return b * math.exp(-B) / S**2 * math.exp(-2.0 * c * (s - t2))

    edges = np.unique(np.r_[t2, np.geomspace(max(t2, 1e-9), t1, 25), t1])
    edges = edges[(edges >= t2) & (edges <= t1)]
    pieces = list(zip(edges[:-1], edges[1:], strict=True))
    log_phi = sum(quad(drift, a, b, epsabs=0, epsrel=1e-13, limit=200)[0] for a, b in pieces)
    integral = sum(quad(q_integrand, a, b, epsabs=0, epsrel=1e-13, limit=200)[0] for a, b in pieces)
    B2, _, S2 = Bsig(t2)
    return math.exp(2.0 * log_phi) * P0 + S2**2 * math.exp(B2) * integral


_ONE_STEPS = [(1.0, 0.0), (1.0, 1e-3), (0.01, 0.0), (0.5, 0.49), (1.0, 0.99), (0.01099, 0.001)]


@pytest.mark.parametrize("lam", [1e-6, 1e-3, 0.05, 1.0, 25.0, 1e4])
@pytest.mark.parametrize("g", [0.0, 0.1, 1.0, 5.0])  # 1 = the paper's stability bound (check_g)
def test_single_step_variance_error_below_1e_10(lam: float, g: float) -> None:
    """Any single exact step — including one step over the whole interval [0, 1] — has Var(v)
    relative error ≤ 1e-10 against quad (observed ≲ 1e-14; the former fixed 4-panel rule was
    off by 2.5e-5 at λ = 0.05, g = 1 and by 4 % at λ = 1e-3 on the whole interval)."""
    data = GaussianData(np.array([lam]))
    grid = np.linspace(1.0, 1e-3, 101)
    steps = _ONE_STEPS + [(grid[k], grid[k + 1]) for k in (0, 50, 99)]
    for t1, t2 in steps:
        Phi, Q = linear_transition(data, VP, t1, t2, 2.0 * g)
        for P0 in (1.0, 0.0):
            ref = _one_step_variance_quad(lam, 2.0 * g, t1, t2, P0)
            assert abs((Phi[0] ** 2 * P0 + Q[0]) / ref - 1.0) <= 1e-10, (t1, t2, P0)


def test_exact_step_table_matches_single_transitions() -> None:
    """The simulator's per-step table is the same adaptive quadrature as linear_transition."""
    from theory.ou import _transition_table

    data = GaussianData(np.array([1e-4, 0.3, 40.0]))
    t_from, t_to = np.array([1.0, 0.6, 0.01]), np.array([0.6, 0.01, 0.0])
    Phi, Q = _transition_table(data, VP, t_from, t_to, np.array([2.0, 0.5, 10.0]))
    for k, c in enumerate((2.0, 0.5, 10.0)):
        Phi_k, Q_k = linear_transition(data, VP, t_from[k], t_to[k], c)
        np.testing.assert_allclose(Phi[k], Phi_k, rtol=1e-15)
        np.testing.assert_allclose(Q[k], Q_k, rtol=1e-12)


def test_whole_interval_variance_against_lyapunov_ode() -> None:
    """One step over [1e-3, 1] against the Lyapunov ODE (DOP853, rtol 1e-13): ≤ 1e-10."""
    for lam in (0.05, 1.0, 25.0):
        for g in (0.1, 1.0):
            got = mode_variance(GaussianData(np.array([lam])), VP, 1e-3, g)
            ref = _lyapunov_reference(np.array([lam]), 2 * g, 1.0, 1e-3, 1.0, rtol=1e-13)
            np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_transition_factor_against_ode() -> None:
    lam, c = SPECTRA[0], 1.4
    Phi, _ = linear_transition(GaussianData(lam), VP, 0.9, 0.1, c)

    def rhs(t: float, x: np.ndarray) -> np.ndarray:
        b = float(beta(VP, t))
        S = float(alpha(VP, t)) ** 2 * lam + float(sigma2(VP, t))
        return -(0.5 * b - b / S - c) * x

    ref = solve_ivp(rhs, (0.9, 0.1), np.ones(3), method="DOP853", rtol=1e-12, atol=1e-14).y[:, -1]
    np.testing.assert_allclose(Phi, ref, rtol=1e-9)


def test_difference_variance_decreases_with_g() -> None:
    """Eq. (10)'s +2g v with dt < 0 is a restoring force: Var(v) strictly decreases in g."""
    data = GaussianData(SPECTRA[1])
    g = np.array([0.0, 0.1, 0.5, 1.0, 5.0])
    var = np.stack([mode_variance(data, VP, [0.5, 1e-3], gg) for gg in g])  # (G, 2, d)
    assert np.all(np.diff(var, axis=0) < 0)


@pytest.mark.parametrize("lam", SPECTRA, ids=["spec3", "spec4"])
@pytest.mark.parametrize("g", [0.0, 0.7, 4.0])
def test_empirical_covariance_matches_closed_form(lam: np.ndarray, g: float) -> None:
    """Exact-transition simulation: Var(u), Var(v) within 3 standard errors (SE = σ²√(2/(n−1)));
    Cov(u, v) within 3 SE of 0 (SE = √(Var u Var v / n))."""
    data, n = GaussianData(lam), 20_000
    t_grid = np.linspace(1.0, 1e-3, 41)
    seen: dict[int, np.ndarray] = {}

    def record(k: int, t: float, z: np.ndarray) -> None:
        if k in (20, 40):
            seen[k] = z.copy()

    z0 = init_replicas(n, data.dim, seed=3)
    simulate_replicas(data, VP, t_grid, z0, g, method="exact", seed=4, callback=record)
    for k, z in seen.items():
        u, v = common_difference(z)
        for mode, x in (("common", u), ("difference", v)):
            P = mode_variance(data, VP, t_grid[k], g, mode)
            se = P * np.sqrt(2.0 / (n - 1))
            assert np.all(np.abs(x.var(axis=0, ddof=1) - P) < 3 * se), (mode, k)
        cross = np.mean(u * v, axis=0)
        assert np.all(np.abs(cross) < 3 * np.sqrt(u.var(0) * v.var(0) / n))


def test_euler_maruyama_strong_order_one() -> None:
    """EM (additive noise ⇒ strong order 1) vs the exact transition on the same Brownian path.

    Reference: exact stepping on a fine grid (2048 steps) driven by the fine normalized
    increments ξ_j (its own pathwise error is O(h_fine)); coarse runs are driven by the summed
    increments. Fitted slope of log RMS error vs log h must lie in [0.8, 1.2] for EM. The exact
    transition on the coarse grid is exact in law but not pathwise (its noise weights the
    increments inside a step uniformly), so it too converges pathwise at order 1 — with a
    smaller constant, since the drift is integrated exactly.
    """
    data = GaussianData(np.array([0.3, 2.0]))
    n, g, t0, t1 = 500, 0.5, 1.0, 0.05
    n_fine = 2048
    rng = np.random.default_rng(12)
    xi = rng.standard_normal((n_fine, n, 2, 2))
    z0 = init_replicas(n, 2, seed=5)
    ref = simulate_replicas(data, VP, np.linspace(t0, t1, n_fine + 1), z0, g, method="exact", noise=xi)
    hs, err_em, err_ex = [], [], []
    for n_coarse in (32, 64, 128, 256):
        r = n_fine // n_coarse
        xi_c = xi.reshape(n_coarse, r, n, 2, 2).sum(axis=1) / np.sqrt(r)  # same Brownian path
        grid = np.linspace(t0, t1, n_coarse + 1)
        z_em = simulate_replicas(data, VP, grid, z0, g, noise=xi_c)
        z_ex = simulate_replicas(data, VP, grid, z0, g, method="exact", noise=xi_c)
        hs.append((t0 - t1) / n_coarse)
        err_em.append(np.sqrt(np.mean((z_em - ref) ** 2)))
        err_ex.append(np.sqrt(np.mean((z_ex - ref) ** 2)))
    slope_em = np.polyfit(np.log(hs), np.log(err_em), 1)[0]
    slope_ex = np.polyfit(np.log(hs), np.log(err_ex), 1)[0]
    assert 0.8 <= slope_em <= 1.2, (slope_em, err_em)
    assert 0.8 <= slope_ex <= 1.2, (slope_ex, err_ex)
    assert np.all(np.array(err_ex) < np.array(err_em))


def test_fused_linear_em_equals_generic_em() -> None:
    """The GaussianData EM fast path and the generic score-callable path give the same path."""
    data = GaussianData(SPECTRA[1])
    t_grid = np.linspace(1.0, 1e-3, 21)
    z0 = init_replicas(64, 4, seed=9)
    fast = simulate_replicas(data, VP, t_grid, z0, 0.8, seed=1)
    generic = simulate_replicas(lambda z, t: score(data, VP, z, t), VP, t_grid, z0, 0.8, seed=1)
    np.testing.assert_allclose(fast, generic, rtol=1e-12, atol=1e-12)


def test_streams_do_not_depend_on_batch_size() -> None:
    data = GaussianData(np.array([0.5, 2.0]))
    t_grid = np.linspace(1.0, 0.01, 11)
    a = simulate_replicas(
        data, VP, t_grid, init_replicas(10, 2, seed=1, block_size=4), 0.3, seed=2, block_size=4
    )
    b = simulate_replicas(
        data, VP, t_grid, init_replicas(13, 2, seed=1, block_size=4), 0.3, seed=2, block_size=4
    )
    np.testing.assert_array_equal(a, b[:10])
    c = simulate_replicas(
        data, VP, t_grid, init_replicas(13, 2, seed=1, block_size=4), 0.3, seed=3, block_size=4
    )
    assert not np.allclose(b, c)


def test_shared_init() -> None:
    z = init_replicas(5, 3, seed=0, shared=True)
    np.testing.assert_array_equal(z[:, 0], z[:, 1])


@pytest.mark.parametrize("method", ["euler_maruyama", "exact"])
def test_torch_backend_matches_numpy_on_same_noise(method: str) -> None:
    data = GaussianData(SPECTRA[0])
    t_grid = np.linspace(1.0, 0.01, 9)
    z0 = init_replicas(50, 3, seed=1)
    xi = np.random.default_rng(0).standard_normal((8, 50, 2, 3))
    a = simulate_replicas(data, VP, t_grid, z0, 0.4, method=method, noise=xi)
    b = simulate_replicas(
        data, VP, t_grid, z0, 0.4, method=method, noise=torch.as_tensor(xi), backend="torch"
    )
    assert isinstance(b, torch.Tensor) and b.dtype == torch.float64
    np.testing.assert_allclose(b.numpy(), a, rtol=1e-12, atol=1e-12)


def test_torch_backend_float32_statistics() -> None:
    data = GaussianData(np.array([0.2, 3.0]))
    n, g = 20_000, 1.0
    z0 = init_replicas(n, 2, seed=2, backend="torch", dtype=torch.float32)
    z = simulate_replicas(
        data,
        VP,
        np.linspace(1, 1e-3, 41),
        z0,
        g,
        method="exact",
        backend="torch",
        dtype=torch.float32,
        seed=1,
    )
    assert z.dtype == torch.float32
    _, v = common_difference(z.double().numpy())
    P = mode_variance(data, VP, 1e-3, g)
    assert np.all(np.abs(v.var(0) - P) < 3 * P * np.sqrt(2 / n))


@pytest.mark.gpu
def test_cuda_backend_statistics() -> None:
    data = GaussianData(np.array([0.2, 3.0]))
    n, g = 100_000, 1.0
    z0 = init_replicas(n, 2, seed=2, backend="torch", device="cuda")
    z = simulate_replicas(data, VP, np.linspace(1, 1e-3, 41), z0, g, backend="torch", device="cuda", seed=1)
    assert z.device.type == "cuda"
    _, v = common_difference(z.cpu().numpy())
    P = mode_variance(data, VP, 1e-3, g)
    assert np.all(np.abs(v.var(0) - P) < 3 * P * np.sqrt(2 / n) + 0.02 * P)  # + EM bias at 40 steps


def test_mode_transform_roundtrip() -> None:
    z = np.random.default_rng(0).standard_normal((4, 2, 3))
    u, v = common_difference(z)
    np.testing.assert_allclose(u, (z[:, 0] + z[:, 1]) / np.sqrt(2))  # eq. (7)
    np.testing.assert_allclose(from_common_difference(u, v), z, atol=1e-15)


def _mixture_log_p_torch(x: torch.Tensor, data: GaussianMixtureData, t: float) -> torch.Tensor:
    a = float(alpha(VP, t))
    var = torch.as_tensor(a**2 * data.cov_diag + float(sigma2(VP, t)))
    comps = [
        torch.distributions.Normal(torch.as_tensor(a * mu), var.sqrt()).log_prob(x).sum(-1) + np.log(w)
        for mu, w in zip(data.means, data.weights, strict=True)
    ]
    return torch.logsumexp(torch.stack(comps), 0)


@pytest.mark.parametrize("t", [1e-3, 0.3, 1.0])
@pytest.mark.parametrize("weights", [[0.2, 0.5, 0.3], [0.35, 0.65]], ids=["K3", "K2"])  # K = 2: sigmoid path
def test_mixture_score_against_autograd(t: float, weights: list[float]) -> None:
    rng = np.random.default_rng(4)
    K = len(weights)
    data = GaussianMixtureData(rng.standard_normal((K, 4)) * 2, np.array(weights), rng.uniform(0.2, 2, 4))
    x = torch.tensor(rng.standard_normal((6, 4)) * 2, requires_grad=True)
    (grad,) = torch.autograd.grad(_mixture_log_p_torch(x, data, t).sum(), x)
    np.testing.assert_allclose(score(data, VP, x.detach().numpy(), t), grad.numpy(), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(score(data, VP, x.detach(), t).numpy(), grad.numpy(), rtol=1e-9, atol=1e-10)


def test_single_component_mixture_equals_gaussian_score() -> None:
    lam = SPECTRA[1]
    z = np.random.default_rng(0).standard_normal((5, 4))
    mix = GaussianMixtureData(np.zeros((1, 4)), np.array([1.0]), lam)
    np.testing.assert_allclose(score(mix, VP, z, 0.2), score(GaussianData(lam), VP, z, 0.2), rtol=1e-13)


def test_bad_input() -> None:
    data = GaussianData(np.array([1.0, 2.0]))
    z0 = init_replicas(4, 2, seed=0)
    grid = np.linspace(1, 0.1, 5)
    with pytest.raises(ValueError, match=r"g must lie in \[0, inf\], got -0.5"):
        simulate_replicas(data, VP, grid, z0, -0.5)
    with pytest.raises(ValueError, match="g must be finite"):
        simulate_replicas(data, VP, grid, z0, float("nan"))
    with pytest.raises(ValueError, match=r"shape mismatch: g must be a scalar or have shape \(4,\)"):
        simulate_replicas(data, VP, grid, z0, np.zeros(3))
    with pytest.raises(ValueError, match="t_grid must be strictly decreasing"):
        simulate_replicas(data, VP, grid[::-1], z0)
    with pytest.raises(ValueError, match="shape mismatch: z_init has d=2 but data has dim=3"):
        simulate_replicas(GaussianData(np.ones(3)), VP, grid, z0)
    with pytest.raises(ValueError, match="method='exact' needs GaussianData"):
        simulate_replicas(symmetric_mixture(np.ones(2), 1.0), VP, grid, z0, method="exact")
    with pytest.raises(ValueError, match=r"shape mismatch: noise must have shape \(4, 4, 2, 2\)"):
        simulate_replicas(data, VP, grid, z0, noise=np.zeros((3, 4, 2, 2)))
    with pytest.raises(ValueError, match=r"eigenvalues must lie in \(0, inf\], got -1"):
        GaussianData(np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="weights must sum to 1"):
        GaussianMixtureData(np.zeros((2, 2)), np.array([0.5, 0.6]), np.ones(2))

"""Two-component mixture model of the difference mode (eq. 34–41)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from theory import (
    fixed_point_residual,
    lambda_eff,
    mixture_log_density,
    mixture_score,
    nonlinear_remainder,
    one_block_map,
)


def _model(D: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((D, D))
    C = A @ A.T / D + 0.5 * np.eye(D)  # well-conditioned SPD covariance
    m = rng.standard_normal(D)
    return m, C


def _torch_log_p(h: torch.Tensor, m: np.ndarray, C: np.ndarray) -> torch.Tensor:
    """Independent eq. (34): log of the two-component density via torch.distributions."""
    mt, Ct = torch.as_tensor(m), torch.as_tensor(C)
    plus = torch.distributions.MultivariateNormal(mt, covariance_matrix=Ct).log_prob(h)
    minus = torch.distributions.MultivariateNormal(-mt, covariance_matrix=Ct).log_prob(h)
    return torch.logsumexp(torch.stack([plus, minus]), 0) - np.log(2.0)


@pytest.mark.parametrize("D", [1, 3, 6])
def test_log_density_and_score_against_autograd(D: int) -> None:
    m, C = _model(D, D)
    h = np.random.default_rng(1).standard_normal((5, D)) * 2
    ht = torch.tensor(h, requires_grad=True)
    logp = _torch_log_p(ht, m, C)
    (grad,) = torch.autograd.grad(logp.sum(), ht)
    np.testing.assert_allclose(mixture_log_density(h, m, C), logp.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(mixture_score(h, m, C), grad.numpy(), rtol=1e-10, atol=1e-12)  # eq. (35)


def test_score_against_finite_differences() -> None:
    m, C = _model(3, 11)
    h = np.array([0.3, -0.7, 1.1])
    step = 1e-6
    fd = np.array(
        [
            (mixture_log_density(h + step * e, m, C) - mixture_log_density(h - step * e, m, C)) / (2 * step)
            for e in np.eye(3)
        ]
    )
    np.testing.assert_allclose(mixture_score(h, m, C), fd, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("D", [2, 4])
def test_lambda_eff_is_jacobian_at_zero(D: int) -> None:
    m, C = _model(D, 3)
    # central differences of the score at 0: the cubic remainder makes the error O(step²)
    step = 1e-5
    jac = np.stack(
        [(mixture_score(step * e, m, C) - mixture_score(-step * e, m, C)) / (2 * step) for e in np.eye(D)], 1
    )
    np.testing.assert_allclose(-jac, lambda_eff(m, C), rtol=1e-8, atol=1e-9)  # eq. (37)-(38)
    np.testing.assert_allclose(lambda_eff(m, C), lambda_eff(m, C).T, atol=1e-14)


def test_remainder_is_cubic() -> None:
    m, C = _model(3, 5)
    v = np.array([0.02, -0.01, 0.04])
    r1 = nonlinear_remainder(v, m, C, 0.7)
    r2 = nonlinear_remainder(v / 2, m, C, 0.7)
    # halving v divides an O(v³) remainder by 8 up to the O(v⁵) correction
    np.testing.assert_allclose(r1 / r2, 8.0, rtol=0.01)
    r3 = nonlinear_remainder(v / 64, m, C, 0.7)
    np.testing.assert_allclose(r2 / r3, 32.0**3, rtol=1e-3)


def test_remainder_is_score_minus_its_linearization() -> None:
    m, C = _model(4, 9)
    v = np.random.default_rng(2).standard_normal((3, 4))
    gamma = 0.4
    lin = -v @ lambda_eff(m, C).T
    np.testing.assert_allclose(
        gamma * mixture_score(v, m, C), gamma * lin + nonlinear_remainder(v, m, C, gamma), atol=1e-12
    )  # eq. (37) + (40)


@given(st.integers(0, 1000))
def test_residual_is_v_minus_block_map(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m, C = _model(3, seed)
    K = np.eye(3) + 0.1 * rng.standard_normal((3, 3))
    v = rng.standard_normal(3)
    gamma = float(rng.uniform(0.1, 2))
    # eq. (41) is v = eq. (36)(v) rearranged
    np.testing.assert_allclose(
        fixed_point_residual(v, K, gamma, m, C), v - one_block_map(v, K, gamma, m, C), atol=1e-11
    )
    assert np.all(fixed_point_residual(np.zeros(3), K, gamma, m, C) == 0.0)  # v = 0 is always a fixed point


def test_nontrivial_fixed_point_matches_self_consistency() -> None:
    """1-D check of eq. (41) → (49): with K = η, the root u* of u = κ tanh u gives v = u* c/m."""
    from theory import solve_self_consistency, speciation_parameter

    m, c, eta_, gamma = 1.3, 0.8, 1.05, 0.6
    kappa = speciation_parameter(gamma, m, c, eta_)
    assert kappa > 1
    v = solve_self_consistency(kappa) * c / m  # eq. (45)
    res = fixed_point_residual(np.array([v]), np.array([[eta_]]), gamma, np.array([m]), np.array([[c]]))
    assert abs(res[0]) < 1e-12


def test_bad_input() -> None:
    m, C = _model(3, 0)
    with pytest.raises(ValueError, match="C must be symmetric positive definite"):
        mixture_score(np.zeros(3), m, -np.eye(3))
    with pytest.raises(ValueError, match=r"shape mismatch: C must have shape \(3, 3\)"):
        lambda_eff(m, np.eye(2))
    with pytest.raises(ValueError, match=r"shape mismatch: h must have last axis D=3"):
        mixture_score(np.zeros(4), m, C)
    with pytest.raises(ValueError, match=r"shape mismatch: K must have shape \(3, 3\)"):
        one_block_map(np.zeros(3), np.eye(2), 1.0, m, C)
    with pytest.raises(ValueError, match=r"gamma must lie in \(0, inf\], got -1"):
        nonlinear_remainder(np.zeros(3), m, C, -1.0)
    with pytest.raises(ValueError, match="v must be finite"):
        fixed_point_residual(np.array([np.nan, 0, 0]), np.eye(3), 1.0, m, C)

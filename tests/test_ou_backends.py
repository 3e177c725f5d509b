"""Replica simulator backends (theory.ou): numba bit-identity, numpy fallback, torch u/v form, statistics.

Reference tier: the numba kernels against the numpy path with ``np.array_equal`` (same draws, same
float64 operations). Statistical tier, run for every backend: sample variances of the modes
against their exact law (closed form for the exact transition; EM's own second-moment recursion
for Euler–Maruyama) within 3.5 standard errors, and a KS test of the standardized modes.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from theory import (
    GaussianData,
    VPSchedule,
    common_difference,
    init_replicas,
    mode_variance,
    simulate_replicas,
    symmetric_mixture,
)
from theory.schedules import beta

VP = VPSchedule()
DATA = GaussianData(np.array([0.02, 0.7, 9.0]))
GRID = np.linspace(1.0, 1e-3, 31)
G_SCHEDULE = np.where(GRID[:-1] > 0.4, 0.8, 0.0)  # coupled, then free: exercises g = 0 steps


def _numba_or_skip() -> None:
    pytest.importorskip("numba")


@pytest.mark.parametrize("method", ["euler_maruyama", "exact"])
@pytest.mark.parametrize("g", [0.0, 0.6, "schedule"])
@pytest.mark.parametrize("n, block", [(1000, 4096), (1000, 128), (37, 8)])  # partial last blocks
def test_numba_bit_identical_to_numpy(method: str, g: object, n: int, block: int) -> None:
    _numba_or_skip()
    g_arg = G_SCHEDULE if g == "schedule" else g
    z0 = init_replicas(n, DATA.dim, seed=1, block_size=block)
    kw = dict(method=method, seed=5, block_size=block)
    ref = simulate_replicas(DATA, VP, GRID, z0, g_arg, backend="numpy", **kw)
    fast = simulate_replicas(DATA, VP, GRID, z0, g_arg, backend="numba", **kw)
    assert np.array_equal(fast, ref)
    assert np.array_equal(simulate_replicas(DATA, VP, GRID, z0, g_arg, backend="auto", **kw), ref)


@pytest.mark.parametrize("method", ["euler_maruyama", "exact"])
def test_numba_bit_identical_with_callback_and_noise(method: str) -> None:
    _numba_or_skip()
    z0 = init_replicas(300, DATA.dim, seed=2, block_size=64)
    seen: dict[str, list[np.ndarray]] = {"numpy": [], "numba": []}
    for backend in seen:
        simulate_replicas(
            DATA,
            VP,
            GRID,
            z0,
            0.5,
            method=method,
            seed=3,
            block_size=64,
            backend=backend,
            callback=lambda k, t, z, b=backend: seen[b].append(z.copy()),
        )
    assert len(seen["numba"]) == GRID.size
    assert all(np.array_equal(a, b) for a, b in zip(seen["numpy"], seen["numba"], strict=True))
    xi = np.random.default_rng(0).standard_normal((GRID.size - 1, 300, 2, DATA.dim))
    a = simulate_replicas(DATA, VP, GRID, z0, G_SCHEDULE, method=method, noise=xi, backend="numpy")
    b = simulate_replicas(DATA, VP, GRID, z0, G_SCHEDULE, method=method, noise=xi, backend="numba")
    assert np.array_equal(a, b)


def _hide_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import numba`` fail, as on a machine without the ``fast`` extra."""
    monkeypatch.setitem(sys.modules, "numba", None)  # None in sys.modules: ImportError on import
    monkeypatch.delitem(sys.modules, "theory._ou_numba", raising=False)


def test_fallback_to_numpy_without_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    z0 = init_replicas(50, DATA.dim, seed=1)
    ref = simulate_replicas(DATA, VP, GRID, z0, 0.5, backend="numpy", seed=2)
    _hide_numba(monkeypatch)
    from theory.ou import _load_numba

    assert _load_numba() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "auto" falls back silently
        auto = simulate_replicas(DATA, VP, GRID, z0, 0.5, backend="auto", seed=2)
    with pytest.warns(RuntimeWarning, match="backend='numba' needs numba"):
        asked = simulate_replicas(DATA, VP, GRID, z0, 0.5, backend="numba", seed=2)
    assert np.array_equal(auto, ref) and np.array_equal(asked, ref)


def test_numba_backend_runs_numpy_code_where_no_kernel_applies() -> None:
    """Mixture data (nonlinear score) under backend='numba': the numpy path, same numbers."""
    data = symmetric_mixture(np.array([1.5, 0.0]), 0.3)
    z0 = init_replicas(40, 2, seed=0)
    a = simulate_replicas(data, VP, GRID, z0, 0.4, backend="numpy", seed=1)
    b = simulate_replicas(data, VP, GRID, z0, 0.4, backend="numba", seed=1)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("method", ["euler_maruyama", "exact"])
def test_torch_uv_matches_numpy_on_same_noise(method: str) -> None:
    """The torch u/v stepper is the z-form scheme in rotated coordinates: equal to rounding."""
    z0 = init_replicas(64, DATA.dim, seed=4)
    xi = np.random.default_rng(1).standard_normal((GRID.size - 1, 64, 2, DATA.dim))
    states: list[torch.Tensor] = []
    a = simulate_replicas(DATA, VP, GRID, z0, G_SCHEDULE, method=method, noise=xi, backend="numpy")
    b = simulate_replicas(
        DATA,
        VP,
        GRID,
        torch.as_tensor(z0),
        G_SCHEDULE,
        method=method,
        noise=torch.as_tensor(xi),
        backend="torch",
        callback=lambda k, t, z: states.append(z.clone()),
    )
    np.testing.assert_allclose(b.numpy(), a, rtol=1e-11, atol=1e-12)
    assert len(states) == GRID.size and states[0].shape == (64, 2, DATA.dim)
    np.testing.assert_allclose(states[-1].numpy(), a, rtol=1e-11, atol=1e-12)


def _em_law_variance(g: float, var0: float, mode: str) -> np.ndarray:
    """Exact variance of the EM scheme's own law on GRID: ``P ← (1 + h a)² P + β h`` (drift at the left)."""
    P = np.full(DATA.dim, var0)
    for t1, t2 in zip(GRID[:-1], GRID[1:], strict=True):
        h, b = t1 - t2, float(beta(VP, t1))
        a2 = np.exp(-(VP.beta_min * t1 + 0.5 * (VP.beta_max - VP.beta_min) * t1**2))
        a = 0.5 * b - b / (a2 * DATA.eigenvalues + 1.0 - a2) - (2.0 * g if mode == "difference" else 0.0)
        P = (1.0 + h * a) ** 2 * P + b * h
    return P


BACKENDS = ["numpy", "numba", "torch64", "torch32"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["euler_maruyama", "exact"])
def test_mode_statistics_every_backend(backend: str, method: str) -> None:
    """Var(u), Var(v) within 3.5 SE (SE = σ²√(2/(n−1))) of the scheme's exact law, and a KS test
    (p > 1e-3) of the standardized modes against N(0, 1), for every backend."""
    if backend == "numba":
        _numba_or_skip()
    n, g = 20_000, 0.8
    kw: dict = {"backend": backend}
    if backend.startswith("torch"):
        kw = {"backend": "torch", "dtype": torch.float64 if backend == "torch64" else torch.float32}
    z0 = init_replicas(n, DATA.dim, seed=11, **kw)
    z = simulate_replicas(DATA, VP, GRID, z0, g, method=method, seed=12, **kw)
    z = z.double().numpy() if isinstance(z, torch.Tensor) else z
    for mode, x in zip(("common", "difference"), common_difference(z), strict=True):
        if method == "exact":
            P = mode_variance(DATA, VP, GRID[-1], g, mode)
        else:
            P = _em_law_variance(g, 1.0, mode)
        se = P * np.sqrt(2.0 / (n - 1))
        assert np.all(np.abs(x.var(axis=0, ddof=1) - P) < 3.5 * se), (mode, x.var(axis=0), P)
        for j in range(DATA.dim):
            assert stats.kstest(x[:, j] / np.sqrt(P[j]), "norm").pvalue > 1e-3, (mode, j)

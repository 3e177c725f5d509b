"""benchmarks/bench_theory.py: its baselines and RNG floor against references, and a --quick smoke run.

The benchmark's numbers are printed, never asserted; what is tested is that it times what it says:
torchsde driven by genuine N(0, h) Brownian increments, root finders that converge to the 60-digit
reference where float64 allows, and an RNG floor drawing the simulator's own normals.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _bench_solver import (  # noqa: E402
    find_root_vectorized,
    newton_vectorized,
    reference_root,
)

from theory import solve_self_consistency  # noqa: E402


@pytest.mark.parametrize("kappa", [1.0 + 1e-12, 1.0 + 1e-6, 1.02, 1.5, 3.0, 19.0, 1e6])
def test_reference_root_agrees_with_the_solver(kappa: float) -> None:
    # two independent algorithms: 60-digit Newton from u = κ vs the package's float64 solver (~1e-15)
    assert reference_root(kappa) == pytest.approx(solve_self_consistency(kappa), rel=1e-14)


def test_vectorized_baselines_converge_where_float64_allows() -> None:
    kappa = np.random.default_rng(3).uniform(1.5, 50.0, 300)
    ref = np.array([reference_root(float(k)) for k in kappa])
    assert np.max(np.abs(newton_vectorized(kappa, 1e-12) / ref - 1)) < 1e-12
    assert np.max(np.abs(find_root_vectorized(kappa, 1e-13) / ref - 1)) < 1e-12


def test_vectorized_baselines_have_a_cancellation_floor_near_kappa_one() -> None:
    # the premise of the table's "none reaches it": at κ − 1 = 1e-12 no tolerance gets below ~1e-8
    kappa = np.full(4, 1.0 + 1e-12)
    ref = reference_root(float(kappa[0]))
    for u in (newton_vectorized(kappa, 1e-22), find_root_vectorized(kappa, 1e-15)):
        assert np.min(np.abs(u / ref - 1)) > 1e-8


def test_forward_increments_are_independent_gaussians_of_variance_h() -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchsde")
    from _baselines import ForwardIncrements

    t = np.concatenate([[0.0], np.cumsum(np.random.default_rng(1).uniform(0.01, 0.5, 40))])
    bm = ForwardIncrements(0.0, (500, 4), torch.float64, torch.Generator().manual_seed(5))
    dW = np.stack([bm(a, b).numpy() for a, b in zip(t[:-1], t[1:], strict=True)])  # (40, 500, 4)
    xi = dW / np.sqrt(np.diff(t))[:, None, None]
    assert stats.kstest(xi.ravel(), "norm").pvalue > 1e-3
    # independent across steps: lag-1 correlation within 5 standard errors of 0
    r = np.corrcoef(xi[:-1].ravel(), xi[1:].ravel())[0, 1]
    assert abs(r) < 5 / np.sqrt(xi[1:].size)


def test_forward_increments_refuse_queries_a_fixed_step_sweep_never_makes() -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchsde")
    from _baselines import ForwardIncrements

    bm = ForwardIncrements(0.0, (3, 2), torch.float64, torch.Generator().manual_seed(0))
    bm(0.0, 0.1)
    for bad in ((0.0, 0.1), (0.2, 0.3), (0.1, 0.1)):  # repeated, a gap, empty
        with pytest.raises(ValueError, match="consecutive forward intervals"):
            bm(*bad)
    with pytest.raises(ValueError, match="interval queries only"):
        bm(0.2)
    with pytest.raises(ValueError, match="interval queries only"):
        bm(0.1, 0.2, return_A=True)


def test_torchsde_with_plain_increments_follows_the_em_law() -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchsde")
    import bench_theory as bt

    torch.set_num_threads(1)
    n, N = 25, 40_000
    law = bt.em_law_variance(n)  # the scheme's exact second moment (independent N(0, I) starts)
    var = bt.torchsde_var_v(n, N, seed=9)
    # Var(s²)/σ⁴ ≈ 2/N for near-Gaussian v: 5 standard errors, every mode
    assert np.all(np.abs(var / law - 1) < 5 * np.sqrt(2 / N)), var / law - 1


def test_numba_rng_floor_draws_the_simulators_own_normals() -> None:
    pytest.importorskip("numba")
    import bench_theory as bt

    draw_steps = bt._numba_floor()
    buf = np.empty((16, 2, 4))
    draw_steps(np.random.default_rng(11), buf, 3)  # the third step's block of normals
    expected = np.random.default_rng(11).standard_normal((3, 16, 2, 4))[2]
    np.testing.assert_array_equal(buf, expected)


@pytest.mark.slow
def test_bench_theory_quick_prints_every_table(run_benchmark) -> None:
    run = run_benchmark("bench_theory.py", "--quick")
    for title in (
        "(a1) time to accuracy",
        "(a2) time to accuracy",
        "(b) equal steps",
        "torchsde euler, plain dW (float64)",
        "normals alone: numba Generator.standard_normal",
        "x the RNG floor",
        "(c) self-consistency",
        "scipy find_root (Chandrupatla), vectorized",
        "60-digit Newton reference",
    ):
        assert title in run.stdout, run.stdout[-2000:]
    assert "load average" in run.stdout and "threads: torch 1" in run.stdout

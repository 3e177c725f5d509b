"""Self-consistency u = κ tanh u (eq. 49–51): root accuracy, branches, stability."""

from __future__ import annotations

import tracemalloc

import mpmath as mp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from theory import branch_stability, branches, solve_self_consistency
from theory.self_consistency import PITCHFORK_COEFFS
from theory.symbolic import pitchfork_series

kappa_above = st.floats(1.0, 1e6, exclude_min=True, allow_nan=False)


def _mp_root(k: float) -> mp.mpf:
    """50-digit reference root of u coth u = κ (the κ as given in float64)."""
    with mp.workdps(50):
        kk = mp.mpf(k)
        start = mp.sqrt(3 * (kk - 1)) if kk < 1.5 else kk
        return mp.findroot(lambda x: x * mp.coth(x) - kk, start)


@pytest.mark.parametrize(
    "kappa", [1 + 1e-12, 1 + 1e-9, 1 + 1e-6, 1.001, 1.0249, 1.0251, 1.1, 1.5, 2.0, 5.0, 19.9, 20.0, 1e3, 1e6]
)
def test_root_against_mpmath(kappa: float) -> None:
    u = solve_self_consistency(kappa)
    ref = _mp_root(kappa)
    assert abs(float((mp.mpf(u) - ref) / ref)) < 1e-12


def test_random_roots_against_mpmath() -> None:
    rng = np.random.default_rng(7)
    k = np.concatenate([1 + 10 ** rng.uniform(-12, 0, 40), 10 ** rng.uniform(0.1, 6, 20)])
    u = solve_self_consistency(k)
    rel = [abs(float((mp.mpf(ui) - _mp_root(ki)) / _mp_root(ki))) for ui, ki in zip(u, k, strict=True)]
    assert max(rel) < 1e-12


def test_trivial_below_threshold_and_shapes() -> None:
    k = np.array([[0.0, 0.5], [1.0, 3.0]])
    u = solve_self_consistency(k)
    assert u.shape == (2, 2) and u.dtype == np.float64
    np.testing.assert_array_equal(u[k <= 1], 0.0)
    assert u[1, 1] > 0
    assert isinstance(solve_self_consistency(2.0), float)


@given(kappa_above)
def test_root_solves_equation(kappa: float) -> None:
    u = solve_self_consistency(kappa)
    # residual in the well-conditioned form u/tanh(u) = κ (relative)
    assert u / np.tanh(u) == pytest.approx(kappa, rel=1e-13)


@given(kappa_above, kappa_above)
def test_root_increasing_in_kappa(k1: float, k2: float) -> None:
    lo, hi = sorted((k1, k2))
    assert solve_self_consistency(lo) <= solve_self_consistency(hi)


@given(kappa_above)
def test_root_below_kappa(kappa: float) -> None:
    # u* = κ tanh u* < κ; in float64 the two coincide once 2κ e^{−2κ} is below half an ulp
    u = solve_self_consistency(kappa)
    assert 0 < u <= kappa
    if kappa < 18:
        assert u < kappa


def test_ratio_to_kappa_tends_to_one() -> None:
    k = np.array([2.0, 5.0, 10.0, 50.0, 1e3, 1e6])
    gap = 1 - solve_self_consistency(k) / k
    assert np.all(np.diff(gap) <= 0)
    assert gap[-1] == 0.0 and gap[2] < 1e-7  # 1 − u*/κ ≈ 2 e^{−2κ}


def test_pitchfork_asymptotics() -> None:
    kappa = 1 + np.array([1e-10, 1e-8, 1e-6, 1e-4, 1e-2])
    eps = kappa - 1  # exact in float64
    ratio = solve_self_consistency(kappa) / np.sqrt(3 * eps)
    # u*² = 3ε(1 + ε/5 + …) ⇒ u*/√(3ε) = 1 + ε/10 + O(ε²)
    np.testing.assert_array_less(np.abs(ratio - 1 - eps / 10), eps**2 + 4e-16)


def test_solver_series_matches_symbolic() -> None:
    assert [float(c) for c in pitchfork_series(order=5)] == pytest.approx(list(PITCHFORK_COEFFS), abs=0)


def test_infinite_kappa_is_the_saturated_limit() -> None:
    """κ = +inf is the κ → ∞ limit of u = κ tanh u: u* = inf. (A failure of eq. 55 is *not* κ = inf:
    theory.speciation_parameter returns NaN there, see theory.modal_snr.)"""
    u = solve_self_consistency(np.array([np.inf, 3.0]))
    assert u[0] == np.inf and np.isfinite(u[1])
    np.testing.assert_array_equal(branches(np.inf), [-np.inf, 0.0, np.inf])
    np.testing.assert_array_equal(branch_stability(np.inf), [True, False, True])


def test_branches_and_stability() -> None:
    k = np.array([0.5, 1.0, 2.0])
    b = branches(k)
    assert b.shape == (3, 3)
    np.testing.assert_array_equal(b[:2], 0.0)
    np.testing.assert_allclose(b[2], [-solve_self_consistency(2.0), 0.0, solve_self_consistency(2.0)])
    st_ = branch_stability(k)
    np.testing.assert_array_equal(st_[0], [True, True, True])  # κ < 1: single stable branch
    np.testing.assert_array_equal(st_[1], [False, False, False])  # κ = 1: marginal
    np.testing.assert_array_equal(st_[2], [True, False, True])  # κ > 1: pitchfork


@given(st.floats(0.0, 1e3, allow_nan=False))
def test_trivial_branch_unstable_iff_kappa_above_one(kappa: float) -> None:
    stable = branch_stability(kappa)
    assert stable.shape == (3,)
    assert bool(stable[1]) == (kappa < 1.0)
    if kappa > 1.0:
        # nontrivial branches: |κ sech² u*| < 1 (strictly, since κ sech² u* = u*/ (sinh u* cosh u*))
        assert stable[0] and stable[2]


@pytest.mark.parametrize("fn", [solve_self_consistency, branches, branch_stability])
def test_bad_input(fn) -> None:
    with pytest.raises(ValueError, match=r"kappa must lie in \[0, inf\], got -1"):
        fn(-1.0)
    with pytest.raises(ValueError, match=r"kappa must not be NaN or -inf \(\+inf allowed\)"):
        fn(np.array([2.0, np.nan]))
    with pytest.raises(TypeError, match="kappa must be a real number"):
        fn("abc")


def test_chunked_solution_is_bit_identical() -> None:
    """Every operation is elementwise, so the chunk size never changes a bit of the output."""
    rng = np.random.default_rng(3)
    k = np.concatenate([1 + 10 ** rng.uniform(-12, 6, 5000), rng.uniform(0, 50, 5000), [np.inf, 1.0, 0.0]])
    rng.shuffle(k)
    whole = solve_self_consistency(k, chunk=k.size)
    for chunk in (1, 7, 1000, 65_536):
        assert np.array_equal(solve_self_consistency(k, chunk=chunk), whole)
    grid = solve_self_consistency(k[:10000].reshape(100, -1), chunk=333)
    np.testing.assert_array_equal(grid, whole[:10000].reshape(100, -1))


def test_peak_memory_within_twice_the_input() -> None:
    """tracemalloc peak during the call ≤ 2× the input (the output alone is 1×)."""
    k = 1 + 10 ** np.random.default_rng(0).uniform(-12, 6, 1_000_000)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        solve_self_consistency(k)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 2 * k.nbytes, peak / k.nbytes


def test_bad_chunk() -> None:
    with pytest.raises(ValueError, match="chunk must be an integer >= 1, got 0"):
        solve_self_consistency(2.0, chunk=0)

"""Appendix B, eq. (85)–(106): identities to round-off and bounds never violated.

Three tiers: reference tests (closed forms; the softmax Jacobian against a complex-step
derivative, exact to float64 round-off and independent of eq. 87), hypothesis property
tests with ≥ 500 examples, and a proof that the property harness can fail (a deliberately
wrong bound fed to the same harness yields a counterexample via ``hypothesis.find``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

from theory import (
    BoundCheck,
    adversarial_head_eq99,
    bound_eq95,
    bound_eq97,
    bound_eq98,
    bound_eq99,
    bound_eq104,
    bound_eq105,
    coherence,
    delta_A,
    dominance_report,
    eq99_normalized,
    eq99_scaling,
    identity_A0P0,
    identity_eq89,
    identity_eq90,
    identity_eq91,
    lambda_perp,
    n_eff,
    projectors,
    softmax_jacobian,
)

ID_TOL = 1e-10  # identities (87)–(91), relative to the natural scale of each side
H_CS = 1e-30  # complex-step size: no subtractive cancellation, so exact to round-off


def _softmax(S: np.ndarray) -> np.ndarray:
    """Test-local stable softmax (works for complex S via the real part's max)."""
    Z = np.exp(S - S.real.max(-1, keepdims=True))
    return Z / Z.sum(-1, keepdims=True)


@dataclass(frozen=True, repr=False)
class Case:
    S0: np.ndarray  # (B, N, N) logits at the symmetric state
    A0: np.ndarray  # (B, N, N) = softmax(S0)
    dS: np.ndarray  # (B, N, N)
    V0: np.ndarray  # (B, N, d)
    dV: np.ndarray  # (B, N, d)

    def __repr__(self) -> str:  # short: hypothesis prints failing examples
        return f"Case(B, N, d = {self.V0.shape}, |dS|max={np.abs(self.dS).max():.3g})"


def _coherent(rng: np.random.Generator, B: int, N: int, d: int, eps: float) -> np.ndarray:
    """Constant-token field plus a mean-free part of relative size ~eps (ε of eq. 100/102)."""
    const = rng.standard_normal((B, 1, d))
    noise = rng.standard_normal((B, N, d))
    noise -= noise.mean(-2, keepdims=True)
    noise *= eps * np.sqrt(N * d) / max(np.sqrt(np.sum(noise**2)), 1e-300) * np.sqrt(B)
    return const + noise


@st.composite
def cases(draw) -> Case:
    """Random N in [2, 64], width d, temperature one-hot..uniform, δ scales over 6 decades."""
    seed = draw(st.integers(0, 2**32 - 1))
    B = draw(st.integers(1, 3))  # batch/head axis
    N = draw(st.integers(2, 64))
    d = draw(st.integers(1, 16))
    log_tau = draw(st.floats(-3.0, 3.0))  # τ = 1e-3: one-hot rows; τ = 1e3: uniform rows
    log_scale = draw(st.floats(-6.0, 0.0))  # six decades of perturbation size
    eps_V0 = 10.0 ** draw(st.floats(-4.0, 1.0))
    eps_dV = 10.0 ** draw(st.floats(-4.0, 1.0))
    # δS either i.i.d. or aligned with the values' spatial pattern (the worst case of (93)-(98):
    # every row pushes weight towards tokens with one sign of ε_j), with equal or random rows.
    aligned, sign_cols, equal_rows = draw(st.booleans()), draw(st.booleans()), draw(st.booleans())
    rng = np.random.default_rng(seed)
    S0 = rng.standard_normal((B, N, N)) / 10.0**log_tau
    V0 = _coherent(rng, B, N, d, eps_V0)
    dV = 10.0**log_scale * _coherent(rng, B, N, d, eps_dV)
    if aligned:
        c = np.swapaxes((V0 - V0.mean(-2, keepdims=True)) @ rng.standard_normal((B, d, 1)), -1, -2)
        c_max = np.maximum(np.abs(c).max(-1, keepdims=True), 1e-300)
        col = np.sign(c) if sign_cols else c / c_max  # (B, 1, N)
        rows = np.ones((B, N, 1)) if equal_rows else rng.standard_normal((B, N, 1))
        dS = rows * col
    else:
        dS = rng.standard_normal((B, N, N))
    return Case(S0, _softmax(S0), 10.0**log_scale * dS, V0, dV)


# ------------------------------------------------------------------------ reference tests


def test_projectors_eq85():
    P0, Pp = projectors(7)
    for P in (P0, Pp):
        assert np.allclose(P @ P, P, atol=1e-15) and np.allclose(P, P.T, atol=0)
    assert np.allclose(P0 + Pp, np.eye(7), atol=1e-15) and np.allclose(P0 @ Pp, 0, atol=1e-15)
    assert np.allclose(P0 @ np.ones(7), np.ones(7), atol=1e-15)


def test_n_eff_closed_forms_eq92():
    N = 9
    assert np.allclose(n_eff(np.full((N, N), 1.0 / N)), N, rtol=1e-14)
    assert np.allclose(n_eff(np.eye(N)), 1.0, rtol=0)
    two = np.zeros((N, N))
    two[:, :2] = 0.5
    assert np.allclose(n_eff(two), 2.0, rtol=1e-15)


def test_lambda_perp_against_explicit_matrix_eq103():
    rng = np.random.default_rng(0)
    A0 = _softmax(rng.standard_normal((2, 6, 6)) * 3)
    _, Pp = projectors(6)
    want = [np.linalg.norm(a @ Pp, 2) for a in A0]
    assert np.allclose(lambda_perp(A0), want, rtol=1e-13)
    assert np.allclose(lambda_perp(np.full((6, 6), 1 / 6)), 0.0, atol=1e-15)  # uniform: A0P⊥ = 0


def test_coherence_definition():
    _, Pp = projectors(5)
    X = np.random.default_rng(1).standard_normal((5, 3))
    assert coherence(X) == pytest.approx(np.linalg.norm(Pp @ X) / np.linalg.norm(X - Pp @ X), rel=1e-14)
    assert coherence(np.array([[1.0, 2.0], [-1.0, -2.0]])) == np.inf and coherence(np.zeros((5, 3))) == 0.0


def test_bounds_batched_equal_unbatched():
    c = find(cases(), lambda c: c.A0.shape[0] == 3 and c.A0.shape[-1] > 4)
    for fn, args in ((bound_eq99, (c.dS, c.V0)), (bound_eq104, (c.dV,)), (bound_eq105, (c.dS, c.V0, c.dV))):
        batched = fn(c.A0, *args)
        single = fn(c.A0[1], *(a[1] for a in args))
        assert np.allclose(batched.value[1], single.value, rtol=1e-14)
        assert np.allclose(batched.bound[1], single.bound, rtol=1e-14)


def test_dominance_report_coherent_regime():
    """Coherent V0, δV and diffuse heads: measured ratio ≪ 1 and below the bound (105)."""
    rng = np.random.default_rng(3)
    N, d = 256, 8
    A0 = _softmax(0.3 * rng.standard_normal((N, N)))
    V0 = _coherent(rng, 1, N, d, 1e-2)[0]
    dV = 1e-3 * _coherent(rng, 1, N, d, 1e-2)[0]
    dS = 1e-3 * rng.standard_normal((N, N))
    rep = dominance_report(A0, dS, V0, dV)
    assert rep.ratio < 1e-3 and rep.ratio <= rep.bound and bool(rep.holds)
    assert 1e-3 < rep.eps_V0 < 1e-1 and 1e-3 < rep.eps_dV < 1e-1
    assert 1.0 <= rep.n_eff_min <= N and rep.lambda_perp > 0
    direct = np.linalg.norm(delta_A(A0, dS) @ V0) / np.linalg.norm(A0 @ dV)
    assert rep.ratio == pytest.approx(direct, rel=1e-13)


def test_eq105_bound_is_inf_when_premise_fails():
    """1 − λ⊥ε_δV ≤ 0 (incoherent δV): (104) is vacuous and (105) returns inf."""
    rng = np.random.default_rng(4)
    A0 = np.eye(6)  # one-hot rows: λ⊥ = ‖P⊥‖₂ = 1
    dV = _coherent(rng, 1, 6, 2, 3.0)[0]  # ε_δV = 3 > 1/λ⊥
    b = bound_eq105(A0, rng.standard_normal((6, 6)), rng.standard_normal((6, 2)), dV)
    assert b.bound == np.inf and b.all_hold
    assert bound_eq104(A0, dV).bound < 0


def test_bound_check_semantics():
    b = BoundCheck(np.array([1.0, 2.0, 0.0]), np.array([2.0, 1.0, 0.0]))
    assert list(b.holds) == [True, False, True] and np.allclose(b.ratio, [0.5, 2.0, 0.0])
    assert not b.all_hold
    assert BoundCheck(np.array(3.0), np.array(2.0), kind="lower").all_hold


def test_float32_attention_is_renormalized():
    """A0 captured in float32 (rows off by ~1e-7) still satisfies (89)-(91) to float64 round-off."""
    rng = np.random.default_rng(6)
    A32 = _softmax(rng.standard_normal((8, 8))).astype(np.float32)
    dS = rng.standard_normal((8, 8))
    assert identity_eq89(A32, dS).max_abs_error <= 1e-14
    assert identity_A0P0(A32).max_abs_error <= 1e-15


def test_rejects_non_stochastic_A0_and_bad_shapes():
    with pytest.raises(ValueError, match=r"A0 must be row-stochastic .* max \|row sum - 1\| = 2"):
        n_eff(np.ones((3, 3)))
    with pytest.raises(ValueError, match="min entry -0.5"):
        n_eff(np.array([[1.5, -0.5], [0.5, 0.5]]))
    with pytest.raises(ValueError, match=r"A0 must have shape \(\.\.\., N, N\)"):
        n_eff(np.ones((3, 2)) / 2)
    with pytest.raises(ValueError, match=r"dS must have shape \(\.\.\., N, N\)"):
        delta_A(np.eye(3), np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"V0 must have shape \(\.\.\., N=3, d\)"):
        bound_eq99(np.eye(3), np.zeros((3, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="N must be an integer >= 1"):
        projectors(0)


def test_eq88_eq89_symbolic():
    """(88) and (89) against sympy's derivative of a symbolic 3-token softmax row."""
    sp = pytest.importorskip("sympy")
    s = sp.symbols("s0:3")
    t = sp.symbols("t0:3")
    e = sp.symbols("e")
    row = [sp.exp(s[j] + e * t[j]) / sum(sp.exp(s[k] + e * t[k]) for k in range(3)) for j in range(3)]
    dA_sym = [sp.diff(r, e).subs(e, 0) for r in row]
    vals = {s[0]: 0.3, s[1]: -1.2, s[2]: 2.0, t[0]: 0.7, t[1]: -0.4, t[2]: 1.1}
    S0 = np.tile([0.3, -1.2, 2.0], (3, 1))  # a square A0 whose rows are the symbolic row
    dS = np.tile([0.7, -0.4, 1.1], (3, 1))
    want = np.tile([float(x.subs(vals)) for x in dA_sym], (3, 1))
    assert np.allclose(delta_A(_softmax(S0), dS), want, rtol=0, atol=1e-15)
    assert sp.simplify(sum(dA_sym)) == 0  # eq. (89), symbolically


# ------------------------------------------------------------- identities (87)–(91), ≥ 500 ex.


@given(c=cases())
@settings(max_examples=500, deadline=None)
def test_identities_eq87_to_91(c: Case):
    N = c.A0.shape[-1]
    # (87) against the complex-step Jacobian: row i, direction e_k -> J[i, j, k]
    Sc = c.S0[..., :, None, :] + 1j * H_CS * np.eye(N)  # (B, i, k, j)
    J_cs = np.swapaxes(_softmax(Sc).imag / H_CS, -1, -2)  # (B, i, j, k)
    assert np.max(np.abs(softmax_jacobian(c.A0) - J_cs)) <= ID_TOL
    # (88) against the complex-step directional derivative along δS, and consistent with (87)
    dS_max = np.max(np.abs(c.dS))
    dA = delta_A(c.A0, c.dS)
    dA_cs = _softmax(c.S0 + 1j * H_CS * c.dS).imag / H_CS
    assert np.max(np.abs(dA - dA_cs)) <= ID_TOL * dS_max
    if N <= 24:  # the (B, N, N, N) contraction is cheap only for small N
        via_87 = np.einsum("bijk,bik->bij", softmax_jacobian(c.A0), c.dS)
        assert np.max(np.abs(via_87 - dA)) <= ID_TOL * dS_max
    # (89) δA 1 = 0
    assert identity_eq89(c.A0, c.dS).max_abs_error <= ID_TOL * dS_max
    # (90) δA V0 = δA P⊥ V0
    assert identity_eq90(c.A0, c.dS, c.V0).max_abs_error <= ID_TOL * dS_max * np.max(np.abs(c.V0))
    # A0 P0 = P0 and (91) A0 δV = P0 δV + A0 P⊥ δV
    assert identity_A0P0(c.A0).max_abs_error <= ID_TOL
    assert identity_eq91(c.A0, c.dV).max_abs_error <= ID_TOL * np.max(np.abs(c.dV))


# ------------------------------------------------------------------- bounds, ≥ 500 examples

BoundFn = Callable[[Case], BoundCheck]


def _bound_99_spectral(c: Case) -> BoundCheck:
    """(99) with spectral norms on both sides, also valid: ‖δA P⊥V0‖₂ ≤ ‖δA‖₂‖P⊥V0‖₂, ‖δA‖₂ ≤ ‖δA‖_F."""
    spec = lambda X: np.linalg.norm(X, 2, axis=(-2, -1))  # noqa: E731
    frob = bound_eq99(c.A0, c.dS, c.V0)
    Vperp = c.V0 - c.V0.mean(-2, keepdims=True)
    ratio = frob.bound / np.linalg.norm(Vperp, axis=(-2, -1))  # 2√(N/N_eff^min)‖δS‖_max
    return BoundCheck(spec(delta_A(c.A0, c.dS) @ c.V0), ratio * spec(Vperp))


BOUNDS: dict[str, BoundFn] = {
    "95": lambda c: bound_eq95(c.A0, c.dS),
    "97": lambda c: bound_eq97(c.A0, c.dS),
    "98": lambda c: bound_eq98(c.A0, c.dS, c.V0),
    "99": lambda c: bound_eq99(c.A0, c.dS, c.V0),
    "104": lambda c: bound_eq104(c.A0, c.dV),
    "105": lambda c: bound_eq105(c.A0, c.dS, c.V0, c.dV),
    "99 (spectral norms)": lambda c: _bound_99_spectral(c),
}


def violated(c: Case, bounds: dict[str, BoundFn]) -> list[str]:
    """The harness: names of the bounds that fail on this case."""
    return [name for name, fn in bounds.items() if not fn(c).all_hold]


@given(c=cases())
@settings(max_examples=500, deadline=None)
def test_bounds_never_violated(c: Case):
    assert violated(c, BOUNDS) == []


def _wrong_97(c: Case) -> BoundCheck:
    """(97) with 1/N_eff replaced by 1/N_eff² -- a deliberately wrong bound."""
    right = bound_eq97(c.A0, c.dS)
    return BoundCheck(right.value, right.bound / n_eff(c.A0))


def _wrong_99(c: Case) -> BoundCheck:
    """(99) without its √N: the 'N_eff^{-1/2} suppression' reading of the text after (106)."""
    right = bound_eq99(c.A0, c.dS, c.V0)
    return BoundCheck(right.value, right.bound / np.sqrt(c.A0.shape[-1]))


@pytest.mark.parametrize("wrong", [_wrong_97, _wrong_99])
def test_harness_catches_a_wrong_bound(wrong):
    """The same strategy + harness finds a counterexample once the bound is wrong."""
    example = find(
        cases(),
        lambda c: violated(c, {"wrong": wrong}) != [],
        settings=settings(max_examples=2000, database=None),
    )
    assert violated(example, {"wrong": wrong}) == ["wrong"]
    assert violated(example, BOUNDS) == []  # ... while the correct bounds hold there


# ------------------------------------------------------------- eq. (99) at its worst (issue 15, finding 1)


@pytest.mark.parametrize("N", [4, 7, 64, 1024])
def test_adversarial_head_attains_eq99_closed_form(N):
    """‖δA V0‖_F/(‖δS‖_max‖P⊥V0‖_F) = √(1 − ε̄²), δA from a complex-step softmax derivative (not eq. 88)."""
    A0, dS, V0 = adversarial_head_eq99(N, d=4)
    assert np.allclose(A0, 1.0 / N, rtol=1e-15) and np.allclose(n_eff(A0), N, rtol=1e-13)
    S0 = np.zeros((N, N))  # zero queries: S0 = Q0 K0ᵀ/√d = 0
    dA = (_softmax(S0 + 1j * H_CS * dS)).imag / H_CS  # exact first-order response, independent of (88)
    eps_bar = np.mean(np.where(np.arange(N) % 2 == 0, 1.0, -1.0))
    want = np.sqrt(1.0 - eps_bar**2)
    direct = np.linalg.norm(dA @ V0) / (np.abs(dS).max() * np.linalg.norm(V0 - V0.mean(0)))
    assert direct == pytest.approx(want, rel=1e-12)
    check = eq99_normalized(A0, dS, V0)
    assert check.value == pytest.approx(want, rel=1e-12) and check.bound == pytest.approx(2.0, rel=1e-13)
    b99 = bound_eq99(A0, dS, V0)
    assert b99.all_hold and b99.ratio == pytest.approx(want / 2, rel=1e-12)


def test_eq99_normalized_is_eq99_divided_through():
    c = find(cases(), lambda c: c.A0.shape[-1] > 3)
    b99, norm = bound_eq99(c.A0, c.dS, c.V0), eq99_normalized(c.A0, c.dS, c.V0)
    mean_free = c.V0 - c.V0.mean(-2, keepdims=True)
    scale = np.abs(c.dS).max(axis=(-2, -1)) * np.linalg.norm(mean_free, axis=(-2, -1))
    assert np.allclose(norm.value * scale, b99.value, rtol=1e-12)
    assert np.allclose(norm.bound * scale, b99.bound, rtol=1e-12)
    assert np.allclose(norm.ratio, b99.ratio, rtol=1e-12)


def test_eq99_scaling_seeded_and_validated():
    a, b = eq99_scaling([8, 16], draws=3, seed=5), eq99_scaling([16], draws=3, seed=5)
    assert np.array_equal(a.random.value[1], b.random.value[0])  # keyed per (seed, N, draw)
    assert not np.array_equal(a.random.value, eq99_scaling([8, 16], draws=3, seed=6).random.value)
    with pytest.raises(ValueError, match="N must be an integer >= 2, got 1"):
        eq99_scaling([1, 4])
    with pytest.raises(ValueError, match="draws must be an integer >= 1, got 0"):
        eq99_scaling(draws=0)
    with pytest.raises(ValueError, match="N must be an integer >= 2"):
        adversarial_head_eq99(1)

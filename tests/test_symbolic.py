"""Symbolic derivations (sympy): each returns (lhs, rhs) whose difference must simplify to 0."""

from __future__ import annotations

import pytest
import sympy as sp

from theory import symbolic as S


def _zero(expr) -> bool:
    if isinstance(expr, sp.MatrixBase):
        return all(sp.simplify(x) == 0 for x in expr)
    return sp.simplify(expr) == 0


def test_eq25_noncommutative() -> None:
    lhs, rhs = S.attention_difference_eq25()
    assert sp.expand(lhs - rhs) == 0
    assert lhs != 0


def test_eq25_explicit_matrices() -> None:
    lhs, rhs = S.attention_difference_eq25_matrices(n=2)
    assert _zero(lhs - rhs)


def test_eq38_from_eq35() -> None:
    lhs, rhs = S.lambda_eff_eq38(D=2)
    assert _zero(lhs - rhs)


def test_eq40_is_cubic() -> None:
    low_order, zero = S.remainder_order_eq40(D=2)
    assert low_order == zero == 0
    lead, ref = S.remainder_cubic_coefficient_eq40()
    assert sp.simplify(lead - ref) == 0


def test_eq48_gives_eq49_50() -> None:
    kappa_derived, kappa_50 = S.self_consistency_eq49_50()
    assert _zero(kappa_derived - kappa_50)


def test_eq53_equals_eq54() -> None:
    s53, s54 = S.snr_eq53_eq54()
    assert _zero(s53 - s54)


def test_eq66_first_order_in_split() -> None:
    first, expected, Dbar = S.snr_split_eq66()
    assert _zero(first - expected)
    assert sp.simplify(first.subs(S.g, 1)) == 0  # ρ(1) = 0: the routing split vanishes
    # the O(δ²) term vanishes too (the difference is odd in δ), so the next correction is O(δ³)
    m, c, gam, lam, chibar, pi, delta = sp.symbols("m c gamma lambda_MLP chibar pi delta", real=True)
    rho_g, xi_g = (1 - S.g) / (1 + S.g), 1 / (1 + S.g)

    def snr(chi):
        return m**2 / c**2 / (gam / c - lam - rho_g * chi - xi_g * pi)

    diff = snr(chibar + delta / 2) - snr(chibar - delta / 2)
    assert sp.simplify(sp.diff(diff, delta, 2).subs(delta, 0)) == 0


def test_pitchfork_series() -> None:
    assert S.pitchfork_series(order=3) == [3, sp.Rational(3, 5), sp.Rational(12, 175)]
    lhs, rhs = S.pitchfork_leading()
    assert _zero(lhs - rhs)


# ------------------------------------------------------- derivations the paper skips (issue 15, finding 7)


def test_eq9_eq10_from_eq4_to_eq8() -> None:
    du, dv = S.common_difference_eq9_10()
    assert sp.simplify(du.derived - du.stated) == 0 and du.holds
    assert sp.simplify(dv.derived - dv.stated) == 0 and dv.holds
    assert du.notes["noise_covariance"] == sp.eye(2)  # (dW^A ± dW^B)/√2: independent, unit variance
    assert du.notes["cubic_score_du_v_dependence"] != 0  # a nonlinear score couples u to v


def test_eq9_eq10_check_can_fail() -> None:
    """A wrong coupling coefficient in (10) (g instead of 2g) is detected."""
    _, dv = S.common_difference_eq9_10()
    zA, zB = sp.symbols("z_A z_B", commutative=False)
    dt = sp.Symbol("dt", positive=True)
    wrong = dv.stated - S.g * (zA - zB) / sp.sqrt(2) * dt  # 2g v dt -> g v dt
    assert sp.simplify(sp.expand(dv.derived - wrong)) != 0


def test_eq32_by_expanding_eq30() -> None:
    d = S.product_eq30_eq32()
    assert sp.expand(d.derived - d.stated) == 0
    J, R = sp.symbols("J_MLP R", commutative=False)
    assert sp.expand(d.derived - (d.stated - d.notes["cross"])) != 0  # (33) drops a nonzero term
    assert J * R != R * J


def test_eq48_from_eq41_rotated_basis() -> None:
    d = S.projection_eq41_eq48(D=2)
    assert sp.simplify(d.derived - d.stated) == 0
    assert sp.simplify(d.notes["c_k"] - sp.Symbol("c1", positive=True)) == 0
    assert sp.simplify(d.notes["transverse_1"] - d.notes["transverse_1_expected"]) == 0


def test_eq48_from_eq41_dropped_components_d3() -> None:
    """The components of (41) off r_1 are −K_j1 a − γ m_j/c_j tanh(u): zero only if K, m are aligned."""
    d = S.projection_eq41_eq48(D=3)
    assert d.holds
    a, gamma = sp.symbols("a gamma", real=True)
    c1, c2 = sp.symbols("c1 c2", positive=True)
    K10, m0, m1 = sp.symbols("K_10 m_0 m_1")
    want = -K10 * a - gamma * m1 / c2 * sp.tanh(a * m0 / c1)
    assert sp.simplify(d.notes["transverse_1"] - want) == 0
    assert sp.simplify(d.notes["transverse_1"].subs({K10: 0, m1: 0})) == 0


def test_eq58_from_eq53_56_57() -> None:
    d = S.propagated_snr_eq58(n_blocks=4)
    assert sp.simplify(d.derived - d.stated) == 0


def test_eq58_matches_the_numerical_propagated_snr() -> None:
    """theory.propagated_snr and cumulative_gain against the symbolic (58), evaluated at numbers."""
    import numpy as np

    from theory import cumulative_gain, propagated_snr

    d = S.propagated_snr_eq58(n_blocks=3)
    etas = [1.1, 0.9, 1.3]
    vals = {sp.Symbol(f"eta_{i + 1}", real=True): e for i, e in enumerate(etas)}
    vals.update({sp.Symbol("eta", real=True): 1.05, sp.Symbol("m_init", real=True): 0.7})
    vals.update({sp.Symbol("gamma", real=True): 2.0, sp.Symbol("c", positive=True): 0.5})
    G = cumulative_gain(np.array([*etas, 1.05]))[-1]
    num = propagated_snr(G, 0.7, 0.5, 1.05, 2.0)
    assert float(d.stated.subs(vals)) == pytest.approx(num, rel=1e-14)


def test_eq66_general_identity_and_g1_limit() -> None:
    d = S.snr_split_eq66_general()
    assert sp.simplify(d.derived - d.stated) == 0
    assert sp.simplify(d.notes["at_g1"] - d.notes["at_g1_expected"]) == 0
    chi_hi, chi_lo, pi_hi, pi_lo = sp.symbols("chi_hi chi_lo pi_hi pi_lo", real=True)
    assert sp.simplify(d.notes["crossover_g"] - (1 - (pi_hi - pi_lo) / (chi_hi - chi_lo))) == 0
    m_hi, m_lo, mu_hi, mu_lo = sp.symbols("m_hi m_lo mu_hi mu_lo", positive=True)
    unequal = d.notes["at_g1_unequal_m_mu"]
    assert unequal != 0 and sp.simplify(unequal.subs({m_lo: m_hi, mu_lo: mu_hi})) == 0
    # the paper's eq. (66) special case: λ, π mode independent, χ = χ̄ ± δ/2 -> ρ(g)δ m²μ²/D̄² at first order
    first, expected, _ = S.snr_split_eq66()
    assert sp.simplify(first - expected) == 0


# ------------------------------------------------- eq. (50) in the effective Jacobian (docs/FINDINGS.md §4)


def test_eq50_in_the_effective_jacobian() -> None:
    """κ₅₀(J) with J = η − γ/c + γm²/c² is eq. (50); κ = 1 only at J = 1 (any γ); η = 1 gives m²/c."""
    from theory import symbolic_step as SS

    d = SS.kappa_from_jacobian_eq50()
    assert d.holds and d.notes["slope_of_36"] == 0 and d.notes["bracket_55"] == 0
    gamma, m, c = sp.symbols("gamma m c", positive=True)
    J = sp.Symbol("J", real=True)
    assert sp.simplify(d.notes["one_minus_kappa"] - c * (1 - J) / (c * (1 - J) + gamma * m**2 / c)) == 0
    assert d.notes["roots_kappa_1"] == [1]
    assert sp.simplify(d.notes["at_eta_1"] - m**2 / c) == 0
    # the check can fail: eq. (50) with the measured J in η's place is not κ₅₀(J)
    wrong = gamma * m**2 / (c * ((1 - J) * c + gamma))
    assert sp.simplify(wrong - gamma * (m**2 / c) / (c * (1 - J) + gamma * m**2 / c)) != 0


def test_step_in_x_over_alpha_has_identity_propagator() -> None:
    """Eq. (36) in x̃ = x/λ: K̃ = Kλ_t/λ_p, γ̃ = γ/(λ_tλ_p), m̃ = m/λ_t, c̃ = c/λ_t²; for DDIM in x/α, K̃ = 1 and
    eq. (50) is m²/c for every γ; in x itself K̃ = c₁."""
    from theory import symbolic_step as SS

    d = SS.rescaled_step_eq36()
    assert d.holds
    for key in ("score_tilde", "kappa_f_tilde", "J_tilde"):
        assert d.notes[key] == 0, key
    assert d.notes["K_tilde_alpha"] == 1
    m, c = sp.symbols("m c", positive=True)
    assert sp.simplify(d.notes["kappa_50_alpha"] - m**2 / c) == 0
    alpha_t, alpha_p = sp.symbols("alpha_t alpha_p", positive=True)
    assert sp.simplify(d.notes["K_tilde_x"] - alpha_p / alpha_t) == 0


def test_eq50_in_jacobian_matches_the_numerical_form() -> None:
    """theory.speciation_parameter_from_jacobian against the symbolic κ₅₀(J) at numbers where eq. (55) holds
    (1e-14)."""
    from theory import speciation_parameter_from_jacobian
    from theory import symbolic_step as SS

    gamma, m, c = sp.symbols("gamma m c", positive=True)
    J = sp.Symbol("J", real=True)
    one_minus = SS.kappa_from_jacobian_eq50().notes["one_minus_kappa"]
    for vals in ((0.3, 1.2, 0.7, 0.9), (2.0, 0.5, 1.5, 1.01), (0.05, 3.0, 4.0, 1.02)):
        ref = 1 - float(one_minus.subs(dict(zip((gamma, m, c, J), vals, strict=True))))
        assert speciation_parameter_from_jacobian(*vals) == pytest.approx(ref, rel=1e-14)

"""Symbolic derivations (sympy): each returns (lhs, rhs) whose difference must simplify to 0."""

from __future__ import annotations

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

"""Symbolic (sympy) derivations of the paper's key steps; each returns ``(lhs, rhs)`` or the derived object.

Tests check ``simplify(lhs − rhs) == 0``. Nothing here is used at run time by the numerical
code except as a cross-check (e.g. :data:`theory.self_consistency.PITCHFORK_COEFFS`).
"""

from __future__ import annotations

import sympy as sp

g = sp.Symbol("g", nonnegative=True)
_eps = sp.Symbol("epsilon")


def attention_difference_eq25() -> tuple[sp.Expr, sp.Expr]:
    """Eq. (25) from eq. (19) with eq. (21)–(24) (Appendix A, eq. 81–84).

    ``A0, δA±, V0, δV`` are noncommutative symbols (matrices); ``ε`` marks first order. Returns
    ``(O(ε) part of Attn^A − Attn^B, rhs of eq. 25)`` with the ``ε`` set to 1.
    """
    A0, dAp, dAm, V0, dV = sp.symbols("A_0 deltaA_p deltaA_m V_0 deltaV", commutative=False)
    e = _eps
    A_AA, A_BB = A0 + e * dAp, A0 - e * dAp  # eq. (23)
    A_AB, A_BA = A0 + e * dAm, A0 - e * dAm  # eq. (24)
    V_A, V_B = V0 + e * dV, V0 - e * dV  # eq. (21)-(22)
    attn_A = (A_AA * V_A + g * A_AB * V_B) / (1 + g)  # eq. (81) = row A of eq. (19)
    attn_B = (A_BB * V_B + g * A_BA * V_A) / (1 + g)  # row B of eq. (19)
    diff = sp.expand(attn_A - attn_B)
    first_order = sp.expand(diff.coeff(e, 1))
    rhs = (1 - g) / (1 + g) * 2 * A0 * dV + 1 / (1 + g) * 2 * (dAp + g * dAm) * V0  # eq. (25)
    return first_order, sp.expand(rhs)


def attention_difference_eq25_matrices(n: int = 2) -> tuple[sp.Matrix, sp.Matrix]:
    """Eq. (25) with explicit symbolic ``n × n`` matrices (a second, commutativity-free check)."""

    def mat(name: str) -> sp.Matrix:
        return sp.Matrix(n, n, lambda i, j: sp.Symbol(f"{name}_{i}{j}"))

    A0, dAp, dAm, V0, dV = (mat(s) for s in ("A0", "dAp", "dAm", "V0", "dV"))
    e = _eps
    attn_A = ((A0 + e * dAp) * (V0 + e * dV) + g * (A0 + e * dAm) * (V0 - e * dV)) / (1 + g)
    attn_B = ((A0 - e * dAp) * (V0 - e * dV) + g * (A0 - e * dAm) * (V0 + e * dV)) / (1 + g)
    first_order = (attn_A - attn_B).applyfunc(lambda x: sp.expand(x).coeff(e, 1))
    rhs = (1 - g) / (1 + g) * 2 * A0 * dV + 2 / (1 + g) * (dAp + g * dAm) * V0
    return first_order, rhs


def _symmetric_C_and_m(D: int) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix]:
    C = sp.Matrix(D, D, lambda i, j: sp.Symbol(f"C_{min(i, j)}{max(i, j)}"))
    m = sp.Matrix(D, 1, lambda i, _: sp.Symbol(f"m_{i}"))
    h = sp.Matrix(D, 1, lambda i, _: sp.Symbol(f"h_{i}"))
    return C, m, h


def lambda_eff_eq38(D: int = 2) -> tuple[sp.Matrix, sp.Matrix]:
    """Eq. (38) from eq. (35): ``−∂ score/∂h`` at ``h = 0`` vs ``C⁻¹ − C⁻¹m mᵀC⁻¹`` (symbolic D × D)."""
    C, m, h = _symmetric_C_and_m(D)
    Ci = C.inv()
    score = -Ci * h + Ci * m * sp.tanh((m.T * Ci * h)[0, 0])  # eq. (35)
    jac = score.jacobian(h).subs({hi: 0 for hi in h})
    return -jac, Ci - Ci * m * m.T * Ci  # eq. (38)


def remainder_order_eq40(D: int = 2) -> tuple[sp.Expr, sp.Expr]:
    """Eq. (40) is O(‖v‖³): with ``v → s·v``, returns ``(series of the remainder to O(s³), 0)``.

    The first returned item is the remainder's Taylor polynomial in ``s`` up to and including
    ``s²``, which must vanish identically.
    """
    C, m, v = _symmetric_C_and_m(D)
    s, gamma = sp.symbols("s gamma", positive=True)
    Ci = C.inv()
    a = (m.T * Ci * (s * v))[0, 0]
    rem = gamma * Ci * m * (sp.tanh(a) - a)  # eq. (40)
    low_order = rem.applyfunc(lambda x: sp.series(x, s, 0, 3).removeO())
    return sp.simplify(low_order.norm() ** 2), sp.Integer(0)


def remainder_cubic_coefficient_eq40() -> tuple[sp.Expr, sp.Expr]:
    """Leading term of eq. (40) in ``a = mᵀC⁻¹v``: ``tanh a − a = −a³/3 + O(a⁵)``."""
    a = sp.Symbol("a")
    return sp.series(sp.tanh(a) - a, a, 0, 5).removeO(), -(a**3) / 3


def self_consistency_eq49_50() -> tuple[sp.Expr, sp.Expr]:
    """Eq. (48) ⇒ eq. (49)–(50): substituting ``a = u c/m`` turns eq. (48) into ``u = κ tanh u``.

    Returns ``(κ read off from eq. 48, κ of eq. 50)``.
    """
    u, m, c, gam = sp.symbols("u m c gamma", positive=True)
    eta_ = sp.Symbol("eta")
    a = u * c / m  # eq. (45): u = a m / c
    lhs48 = ((1 - eta_) + gam / c) * a  # eq. (48) left side
    rhs48_over_tanh = gam * m / c  # eq. (48) right side / tanh(u)
    kappa_from_48 = sp.simplify(lhs48 / rhs48_over_tanh / u)  # = 1/κ: u = κ tanh u ⇔ u/tanh u = κ
    kappa_eq50 = gam * m**2 / (c * ((1 - eta_) * c + gam))  # eq. (50)
    return sp.simplify(1 / kappa_from_48), kappa_eq50


def snr_eq53_eq54() -> tuple[sp.Expr, sp.Expr]:
    """Eq. (53) with eq. (46) substituted, and eq. (54) with ``μ = 1/c``."""
    m, c, gam, lam, chi, pi = sp.symbols("m c gamma lambda_MLP chi pi", real=True)
    rho_g, xi_g = (1 - g) / (1 + g), 1 / (1 + g)  # eq. (27)
    eta_ = 1 + lam + rho_g * chi + xi_g * pi  # eq. (46)
    snr53 = m**2 / (c * ((1 - eta_) * c + gam))  # eq. (53)
    mu = 1 / c
    snr54 = m**2 * mu**2 / (gam * mu - lam - rho_g * chi - xi_g * pi)  # eq. (54)
    return snr53, snr54


def snr_split_eq66() -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """Eq. (66): ``SNR_hi − SNR_lo`` with ``χ_{hi,lo} = χ̄ ± δ/2`` (same m, c, γ, λ, π; eq. 59–60).

    Returns ``(first-order-in-δ coefficient, ρ(g)·m²μ²/D̄², D̄)`` with ``D̄ = γμ − λ − ρχ̄ − ξπ``:
    the difference is ``ρ(g)·δ·m²μ²/D̄² + O(δ³)`` (the δ² term cancels by symmetry), hence
    vanishes at ``g = 1``.
    """
    m, c, gam, lam, chibar, pi, delta = sp.symbols("m c gamma lambda_MLP chibar pi delta", real=True)
    rho_g, xi_g = (1 - g) / (1 + g), 1 / (1 + g)
    mu = 1 / c

    def snr(chi: sp.Expr) -> sp.Expr:
        return m**2 * mu**2 / (gam * mu - lam - rho_g * chi - xi_g * pi)  # eq. (54)

    diff = snr(chibar + delta / 2) - snr(chibar - delta / 2)  # eq. (66) lhs
    first = sp.simplify(sp.diff(diff, delta).subs(delta, 0))
    Dbar = gam * mu - lam - rho_g * chibar - xi_g * pi
    return first, rho_g * m**2 * mu**2 / Dbar**2, Dbar


def pitchfork_series(order: int = 5) -> list[sp.Rational]:
    """Coefficients ``c_n`` of ``u*² = Σ_{n=1}^{order} c_n εⁿ`` for ``u = (1+ε) tanh u`` near ``ε → 0⁺``.

    Derived by inverting ``u coth u − 1 = ε`` order by order in ``w = u²``; the leading term
    gives the mean-field pitchfork ``u* ≈ √(3(κ − 1))``.
    """
    u, w = sp.symbols("u w", positive=True)
    h = sp.expand(sp.series(u * sp.coth(u) - 1, u, 0, 2 * order + 2).removeO()).subs(u, sp.sqrt(w))
    coeffs = sp.symbols(f"c1:{order + 1}")
    W = sum(coeffs[i] * _eps ** (i + 1) for i in range(order))
    expansion = sp.expand(sp.series(h.subs(w, W), _eps, 0, order + 1).removeO()) - _eps
    sol: dict[sp.Symbol, sp.Expr] = {}
    for n in range(1, order + 1):
        eq = expansion.coeff(_eps, n).subs(sol)
        sol[coeffs[n - 1]] = sp.solve(eq, coeffs[n - 1])[0]
    return [sp.nsimplify(sol[c]) for c in coeffs]


def pitchfork_leading() -> tuple[sp.Expr, sp.Expr]:
    """``u* ≈ √(3(κ − 1))``: leading term of :func:`pitchfork_series` vs the mean-field pitchfork."""
    kappa = sp.Symbol("kappa", positive=True)
    c1 = pitchfork_series(order=1)[0]
    return sp.sqrt(c1 * (kappa - 1)), sp.sqrt(3 * (kappa - 1))

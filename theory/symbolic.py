"""Symbolic (sympy) derivations of the paper's key steps; each returns ``(lhs, rhs)`` or the derived object.

Tests check ``simplify(lhs − rhs) == 0``. Nothing here is used at run time by the numerical
code except as a cross-check (e.g. :data:`theory.self_consistency.PITCHFORK_COEFFS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


# ------------------------------------------------------------ derivations the paper skips (finding 7)


@dataclass(frozen=True, eq=False)
class Derivation:
    """A step carried out symbolically: ``derived`` (from the starting equations) vs ``stated`` (the paper's).

    ``notes`` holds the by-products a reader needs (the neglected terms, the value at g = 1, ...), each
    a sympy expression named by what it is.
    """

    derived: sp.Expr | sp.MatrixBase
    stated: sp.Expr | sp.MatrixBase
    notes: dict[str, sp.Expr] = field(default_factory=dict)

    def residual(self) -> sp.Expr | sp.MatrixBase:
        """``simplify(derived − stated)``: 0 (or a zero matrix) when the step holds."""
        diff = self.derived - self.stated
        if isinstance(diff, sp.MatrixBase):
            return diff.applyfunc(sp.simplify)
        return sp.simplify(diff)

    @property
    def holds(self) -> bool:
        r = self.residual()
        return bool(r.is_zero_matrix) if isinstance(r, sp.MatrixBase) else r == 0


def common_difference_eq9_10() -> tuple[Derivation, Derivation]:
    """Eq. (9)–(10) from eq. (4)–(8): u, v of (7) decouple when the score is linear, s(z) = −Σ⁻¹z (8).

    z^A, z^B, the Wiener increments dW^A, dW^B and Σ⁻¹ are noncommutative symbols (vectors and a
    matrix); the drift of (4)–(5) with f of (6) is combined as du = (dz^A + dz^B)/√2,
    dv = (dz^A − dz^B)/√2. Returns one :class:`Derivation` per mode, whose ``derived`` is du (dv)
    and ``stated`` the right side of (9) ((10)). Notes: the covariance of the rotated noises
    (dW^A ± dW^B)/√2 (identity: independent standard Wiener processes, so (9)–(10) are two
    uncoupled OU processes), and, for a scalar score with a cubic term −z/σ² + b z³, the part of
    du that still depends on v (nonzero: a nonlinear score does not decouple).
    """
    zA, zB, Si, dWA, dWB = sp.symbols("z_A z_B Sigma^-1 dW_A dW_B", commutative=False)
    beta, dt = sp.symbols("beta dt", positive=True)
    r2 = sp.sqrt(2)

    def f(z):  # eq. (6) with the linear score (8): s(z) = −Σ⁻¹z
        return -beta / 2 * z - beta * (-Si * z)

    dzA = (f(zA) + g * (zA - zB)) * dt + sp.sqrt(beta) * dWA  # eq. (4)
    dzB = (f(zB) + g * (zB - zA)) * dt + sp.sqrt(beta) * dWB  # eq. (5)
    u, v = (zA + zB) / r2, (zA - zB) / r2  # eq. (7)
    du_stated = (-beta / 2 * u + beta * Si * u) * dt + sp.sqrt(beta / 2) * (dWA + dWB)  # eq. (9)
    dv_stated = (-beta / 2 * v + beta * Si * v + 2 * g * v) * dt + sp.sqrt(beta / 2) * (dWA - dWB)  # (10)
    T = sp.Matrix([[1, 1], [1, -1]]) / r2  # (dW^A, dW^B) -> ((dW^A + dW^B)/√2, (dW^A − dW^B)/√2)
    noise_cov = T * sp.eye(2) * T.T  # covariance of the rotated increments per unit dt
    x, y, s2, b = sp.symbols("x y sigma2 b", real=True)  # scalar u, v; cubic score strength b

    def f_cubic(z):
        return -beta / 2 * z - beta * (-z / s2 + b * z**3)

    zA_s, zB_s = (x + y) / r2, (x - y) / r2
    du_cubic = sp.expand((f_cubic(zA_s) + f_cubic(zB_s)) / r2)
    notes = {
        "noise_covariance": noise_cov,
        "cubic_score_du_v_dependence": sp.expand(du_cubic - du_cubic.subs(y, 0)),
    }
    return (
        Derivation(sp.expand((dzA + dzB) / r2), sp.expand(du_stated), notes),
        Derivation(sp.expand((dzA - dzB) / r2), sp.expand(dv_stated), notes),
    )


def product_eq30_eq32() -> Derivation:
    """Eq. (32) by expanding the product of eq. (30): (I + J)(I + ρR + ξP) with noncommutative J, R, P.

    ``derived`` is the expanded product, ``stated`` the five terms of (32); note ``cross`` is
    J(ρR + ξP), the term (33) drops (J R ≠ R J: order kept).
    """
    J, R, P = sp.symbols("J_MLP R P", commutative=False)
    rho_g, xi_g = (1 - g) / (1 + g), 1 / (1 + g)  # eq. (27)
    attn = rho_g * R + xi_g * P  # eq. (29)
    derived = sp.expand((1 + J) * (1 + attn))  # eq. (30), I -> 1
    stated = sp.expand(1 + J + rho_g * R + xi_g * P + J * attn)  # eq. (32)
    return Derivation(derived, stated, {"cross": sp.expand(J * attn)})


def projection_eq41_eq48(D: int = 2) -> Derivation:
    """Eq. (48) from eq. (41) under v = a r_k with C diagonal in the orthonormal basis {r_k}.

    The basis is a general rotation (angle θ, via t = tan(θ/2)) of the standard one for D = 2 (for
    D > 2 it is the standard basis); C = Σ_k c_k r_k r_kᵀ, while K_g and m are general (symbolic
    entries). Projecting the residual of (41) at v = a r_1 onto r_1 gives ``derived``; ``stated`` is (48) with
    η = r_1ᵀK r_1 (44), m_1 = r_1ᵀm, c_1 = r_1ᵀC r_1. The used facts are C⁻¹r_1 = r_1/c_1 (so
    mᵀC⁻¹v = a m_1/c_1, eq. 45, and r_1ᵀC⁻¹ = r_1ᵀ/c_1) and r_1ᵀr_1 = 1.

    Notes: ``transverse_<j>`` is r_jᵀ(residual of 41) for j ≠ 1, which equals
    −(r_jᵀK r_1) a − γ (r_jᵀm / c_j) tanh(a m_1/c_1): the ansatz solves (41) exactly only if K has no
    r_j–r_1 element and m ⟂ r_j (the paper's two conditions); otherwise (48) is the r_1 component of
    a vector equation whose other components are dropped.
    """
    t, a, gamma = sp.symbols("t a gamma", real=True)
    cs = sp.symbols(f"c1:{D + 1}", positive=True)
    if D == 2:  # rotation by θ with t = tan(θ/2): cos θ = (1 − t²)/(1 + t²), sin θ = 2t/(1 + t²)
        cos, sin = (1 - t**2) / (1 + t**2), 2 * t / (1 + t**2)
        O = sp.Matrix([[cos, -sin], [sin, cos]])
    else:
        O = sp.eye(D)
    r = [O[:, k] for k in range(D)]
    C = O * sp.diag(*cs) * O.T  # C diagonal in the r basis
    Ci = O * sp.diag(*[1 / c for c in cs]) * O.T
    K = sp.Matrix(D, D, lambda i, j: sp.Symbol(f"K_{i}{j}"))
    m = sp.Matrix(D, 1, lambda i, _: sp.Symbol(f"m_{i}"))
    v = a * r[0]  # single-mode ansatz
    arg = sp.cancel((m.T * Ci * v)[0, 0])
    resid41 = ((sp.eye(D) - K) + gamma * Ci) * v - gamma * Ci * m * sp.tanh(arg)  # eq. (41), lhs − rhs
    derived = (r[0].T * resid41)[0, 0]
    eta_k = (r[0].T * K * r[0])[0, 0]  # eq. (44)
    m_k = (r[0].T * m)[0, 0]
    c_k = sp.cancel((r[0].T * C * r[0])[0, 0])  # = c1
    u_k = sp.cancel(m_k / c_k * a)  # eq. (45)
    stated = ((1 - eta_k) + gamma / c_k) * a - gamma * m_k / c_k * sp.tanh(u_k)  # eq. (48)
    notes: dict[str, sp.Expr] = {"c_k": c_k, "eta_k": eta_k, "m_k": m_k}
    for j in range(1, D):
        notes[f"transverse_{j}"] = (r[j].T * resid41)[0, 0]
        notes[f"transverse_{j}_expected"] = -(r[j].T * K * r[0])[0, 0] * a - gamma * (r[j].T * m)[0, 0] / cs[
            j
        ] * sp.tanh(m_k / c_k * a)
    return Derivation(derived, stated, notes)


def snr_split_eq66_general() -> Derivation:
    """SNR_hi − SNR_lo from eq. (54) with every modal quantity mode dependent (eq. 66 without its premises).

    With D_k = γμ_k − λ_k − ρ(g)χ_k − ξ(g)π_k (the denominator of 54) and equal m, μ for the two modes
    ("remaining modal factors comparable", §2.6) the difference is exactly

        SNR_hi − SNR_lo = m²μ² [Δλ + ρ(g)Δχ + ξ(g)Δπ] / (D_hi D_lo),     Δx = x_hi − x_lo,

    the ``stated`` form (``derived`` is the raw difference). It is O(ρ(g)) — vanishes at g = 1 — iff
    Δλ + Δπ/2 = 0 there; eq. (60) taken exactly (Δλ = 0) and a *mode-independent* π (Δπ = 0) suffice.
    Eq. (59), |π_k| ≪ |χ_k|, does not: ``at_g1`` is m²μ²(Δλ + Δπ/2)/(D_hi D_lo) at g = 1, and the
    routing term ρΔχ dominates ξΔπ only for g below ``crossover_g`` = 1 − Δπ/Δχ (where ρΔχ = ξΔπ).
    Eq. (61) fixes only the sign of the ρ term. Unequal m_k or μ_k leave a g-independent term even with
    Δλ = Δπ = 0 (``at_g1_unequal_m_mu``).

    Notes also carry the refinement where P(g) keeps its own g of eq. (26): δS(+) + gδS(−) =
    (1 + g)δQK0ᵀ/√d + (1 − g)Q0δKᵀ/√d, so π_k(g) = (1 + g)π_k^q + (1 − g)π_k^K and
    ξ(g)π_k(g) = π_k^q + ρ(g)π_k^K (``xi_pi_split`` is their difference, 0): only the query-side part
    survives at g = 1 and ``at_g1_split`` is m²μ²(Δλ + Δπ^q)/(D_hi D_lo).
    """
    m, mu, gamma = sp.symbols("m mu gamma", positive=True)
    lam_hi, lam_lo, chi_hi, chi_lo, pi_hi, pi_lo = sp.symbols(
        "lambda_hi lambda_lo chi_hi chi_lo pi_hi pi_lo", real=True
    )
    rho_g, xi_g = (1 - g) / (1 + g), 1 / (1 + g)  # eq. (27)

    def denom(lam, chi, pi):
        return gamma * mu - lam - rho_g * chi - xi_g * pi  # denominator of eq. (54)

    def snr(lam, chi, pi):
        return m**2 * mu**2 / denom(lam, chi, pi)  # eq. (54)

    D_hi, D_lo = denom(lam_hi, chi_hi, pi_hi), denom(lam_lo, chi_lo, pi_lo)
    derived = snr(lam_hi, chi_hi, pi_hi) - snr(lam_lo, chi_lo, pi_lo)
    d_lam, d_chi, d_pi = lam_hi - lam_lo, chi_hi - chi_lo, pi_hi - pi_lo
    stated = m**2 * mu**2 * (d_lam + rho_g * d_chi + xi_g * d_pi) / (D_hi * D_lo)
    at_g1 = sp.simplify(derived.subs(g, 1))
    crossover = sp.solve(sp.Eq(rho_g * d_chi, xi_g * d_pi), g)[0]
    # P(g) with its own g (eq. 26 with δS(+) + gδS(−) split into query- and key-side parts)
    pq_hi, pq_lo, pk_hi, pk_lo = sp.symbols("piq_hi piq_lo piK_hi piK_lo", real=True)
    dQK, QdK = sp.symbols("deltaQK0 Q0deltaK", real=True)
    dS_plus, dS_minus = dQK + QdK, dQK - QdK  # eq. (23)–(24) logits (times √d)
    logit_split = sp.expand(dS_plus + g * dS_minus - ((1 + g) * dQK + (1 - g) * QdK))
    pi_g_hi, pi_g_lo = (1 + g) * pq_hi + (1 - g) * pk_hi, (1 + g) * pq_lo + (1 - g) * pk_lo
    split_diff = snr(lam_hi, chi_hi, pi_g_hi) - snr(lam_lo, chi_lo, pi_g_lo)
    m_hi, m_lo, mu_hi, mu_lo = sp.symbols("m_hi m_lo mu_hi mu_lo", positive=True)
    unequal = m_hi**2 * mu_hi**2 / denom(lam_hi, chi_hi, pi_hi).subs(mu, mu_hi) - m_lo**2 * mu_lo**2 / denom(
        lam_hi, chi_lo, pi_hi
    ).subs(mu, mu_lo)  # Δλ = Δπ = 0 but m_k, μ_k mode dependent
    notes = {
        "at_g1_unequal_m_mu": sp.simplify(unequal.subs(g, 1)),
        "at_g1": at_g1,
        "at_g1_expected": sp.simplify(
            m**2 * mu**2 * (d_lam + d_pi / 2) / (D_hi.subs(g, 1) * D_lo.subs(g, 1))
        ),
        "under_60_and_equal_pi": sp.simplify(derived.subs({lam_lo: lam_hi, pi_lo: pi_hi}) / rho_g),
        "crossover_g": crossover,
        "logit_split": logit_split,
        "xi_pi_split": sp.simplify(xi_g * pi_g_hi - (pq_hi + rho_g * pk_hi)),
        "at_g1_split": sp.simplify(split_diff.subs(g, 1)),
        "at_g1_split_expected": sp.simplify(
            m**2
            * mu**2
            * (d_lam + pq_hi - pq_lo)
            / ((gamma * mu - lam_hi - pq_hi) * (gamma * mu - lam_lo - pq_lo))
        ),
    }
    return Derivation(derived, stated, notes)


def propagated_snr_eq58(n_blocks: int = 3) -> Derivation:
    """Eq. (58) from eq. (53) with m_k = G m_init (56) and G = ∏ η over the earlier blocks (57).

    ``n_blocks`` earlier blocks with gains η_1 … η_n (the current block's η is separate: (57) stops
    before (s, ℓ)). ``derived`` substitutes (56)–(57) into (53); ``stated`` is (58).
    """
    etas = sp.symbols(f"eta_1:{n_blocks + 1}", real=True)
    eta_now, m_init, gamma = sp.symbols("eta m_init gamma", real=True)
    c = sp.Symbol("c", positive=True)
    G = sp.Mul(*etas)  # eq. (57): exclusive product over (s', ℓ') ≺ (s, ℓ)
    m_k = G * m_init  # eq. (56)
    snr53 = m_k**2 / (c * ((1 - eta_now) * c + gamma))  # eq. (53)
    stated = G**2 * m_init**2 / (c * ((1 - eta_now) * c + gamma))  # eq. (58)
    return Derivation(snr53, stated, {"G": G})

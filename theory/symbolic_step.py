"""Symbolic (sympy) checks of eq. (50) on one map: its form in the effective Jacobian, and a change of scale.

Companion of :mod:`theory.symbolic` (same :class:`~theory.symbolic.Derivation` convention: ``derived`` from
the starting equations against ``stated``, with by-products in ``notes``); the numerical counterparts are
:func:`theory.speciation_parameter_from_jacobian` and :func:`theory.exact_step_kappa`, and docs/FINDINGS.md
§4 is the finding they support. Scalars along one mode (C diagonal in the mode basis, eq. 44–48).
"""

from __future__ import annotations

import sympy as sp

from .symbolic import Derivation

_gamma, _m, _c = sp.symbols("gamma m c", positive=True)
_eta, _J = sp.symbols("eta J", real=True)


def _kappa_eq50(gamma: sp.Expr, m: sp.Expr, c: sp.Expr, eta: sp.Expr) -> sp.Expr:
    return gamma * m**2 / (c * ((1 - eta) * c + gamma))  # eq. (50)


def _kappa_of_J(gamma: sp.Expr, m: sp.Expr, c: sp.Expr, J: sp.Expr) -> sp.Expr:
    kappa_f = m**2 / c
    return gamma * kappa_f / (c * (1 - J) + gamma * kappa_f)  # eq. (50) with η eliminated for J


def kappa_from_jacobian_eq50() -> Derivation:
    """Eq. (50) in the effective Jacobian: κ₅₀(J) = γκ_f/(c(1 − J) + γκ_f) with J = η − γ/c + γm²/c².

    J is the slope of the map (36) along the mode at the symmetric point (eq. 39 with 38, projected).
    ``derived`` is κ₅₀(J) with that J substituted, ``stated`` eq. (50). Notes: ``slope_of_36`` (the
    derivative of eq. 36 along the mode at 0, minus J: 0), ``one_minus_kappa`` (1 − κ₅₀(J), which is
    c(1 − J)/(c(1 − J) + γκ_f): zero only at J = 1), ``roots_kappa_1`` (the solutions J of κ₅₀(J) = 1 for
    γ, m, c > 0: [1], whatever γ), ``at_eta_1`` (eq. 50 at η = 1, any γ > 0: m²/c) and ``bracket_55``
    ((1 − η)c + γ of eq. 55 minus c(1 − J) − γκ_f: 0, so eq. 55 reads c(1 − J) + γκ_f > 0).
    """
    a = sp.Symbol("a", real=True)
    J_of_eta = _eta - _gamma / _c + _gamma * _m**2 / _c**2  # eq. (39), projected
    map36 = _eta * a + _gamma * (-a / _c + _m / _c * sp.tanh(_m * a / _c))  # eq. (36) along the mode
    notes = {
        "slope_of_36": sp.simplify(sp.diff(map36, a).subs(a, 0) - J_of_eta),
        "one_minus_kappa": sp.factor(sp.simplify(1 - _kappa_of_J(_gamma, _m, _c, _J))),
        "roots_kappa_1": sp.solve(sp.Eq(_kappa_of_J(_gamma, _m, _c, _J), 1), _J),
        "at_eta_1": sp.simplify(_kappa_eq50(_gamma, _m, _c, 1)),
        "bracket_55": sp.simplify((1 - _eta) * _c + _gamma - (_c * (1 - J_of_eta) + _gamma * _m**2 / _c)),
    }
    return Derivation(
        sp.simplify(_kappa_of_J(_gamma, _m, _c, J_of_eta)), _kappa_eq50(_gamma, _m, _c, _eta), notes
    )


def rescaled_step_eq36() -> Derivation:
    """One step x⁺ = K x + γ[score of eq. 35] along a mode, written in x̃ = x/λ (λ_t before, λ_p after).

    ``derived`` is x̃⁺ = F(λ_t x̃)/λ_p with F the step in x; ``stated`` is eq. (36) in x̃ with
    K̃ = Kλ_t/λ_p, γ̃ = γ/(λ_t λ_p), m̃ = m/λ_t, c̃ = c/λ_t². Notes: ``score_tilde`` (the score of the
    density of x̃, ½N(±m̃, c̃), minus λ_t times the x score at x = λ_t x̃: 0), ``kappa_f_tilde``
    (m̃²/c̃ − m²/c: 0), ``J_tilde`` (the slope of the x̃ map at 0 minus J λ_t/λ_p: 0), and for the DDIM
    step (K = c₁ = α_p/α_t) in x̃ = x/α (λ = α): ``K_tilde_alpha`` (K̃: 1) and ``kappa_50_alpha`` (eq. 50
    with the rescaled γ̃, m̃, c̃, K̃: m²/c for every γ > 0); ``K_tilde_x`` (K̃ with λ = 1: c₁ ≠ 1).
    """
    y, K = sp.symbols("y K", real=True)
    lam_t, lam_p, alpha_t, alpha_p = sp.symbols("lambda_t lambda_p alpha_t alpha_p", positive=True)

    def score35(z: sp.Expr, m: sp.Expr, c: sp.Expr) -> sp.Expr:
        return -z / c + m / c * sp.tanh(m * z / c)  # eq. (35) along the mode

    def step(z: sp.Expr) -> sp.Expr:
        return K * z + _gamma * score35(z, _m, _c)  # eq. (36) along the mode, in x

    Kt, gt, mt, ct = K * lam_t / lam_p, _gamma / (lam_t * lam_p), _m / lam_t, _c / lam_t**2
    derived = step(lam_t * y) / lam_p
    stated = Kt * y + gt * score35(y, mt, ct)  # eq. (36) in x̃

    def log_mixture(z: sp.Expr, m: sp.Expr, c: sp.Expr) -> sp.Expr:  # eq. (34), 1-D, up to constants
        return sp.log(sp.exp(-((z - m) ** 2) / (2 * c)) + sp.exp(-((z + m) ** 2) / (2 * c)))

    score_tilde = sp.diff(log_mixture(y, mt, ct), y)
    ddim = {K: alpha_p / alpha_t, lam_t: alpha_t, lam_p: alpha_p}  # c₁ = α_prev/α_t, λ = α
    notes = {
        "score_tilde": sp.simplify((score_tilde - lam_t * score35(lam_t * y, _m, _c)).rewrite(sp.exp)),
        "kappa_f_tilde": sp.simplify(mt**2 / ct - _m**2 / _c),
        "J_tilde": sp.simplify(
            sp.diff(derived, y).subs(y, 0) - (K - _gamma / _c + _gamma * _m**2 / _c**2) * lam_t / lam_p
        ),
        "K_tilde_alpha": sp.simplify(Kt.subs(ddim)),
        "kappa_50_alpha": sp.simplify(_kappa_eq50(gt, mt, ct, Kt).subs(ddim)),
        "K_tilde_x": sp.simplify(Kt.subs({K: alpha_p / alpha_t, lam_t: 1, lam_p: 1})),
    }
    return Derivation(sp.simplify(derived), sp.simplify(stated), notes)

"""One test per finding of docs/FINDINGS.md (issue 15), each computed from the public API of ``theory``.

Each docstring says what
would make the test fail, i.e. which outcome would overturn the finding.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from theory import eq32_check, eq99_scaling, random_attention_layer, random_toy_block, remainder_scaling
from theory import symbolic as S
from theory.streams import numpy_generator

# ------------------------------------------------------------------ finding 1: eq. (99), no N_eff^{-1/2}


def test_finding1_eq99_gives_no_n_eff_suppression():
    """Adversarial head: ‖δA V0‖_F/(‖δS‖_max‖P⊥V0‖_F) = 1 = half the bound (99) at every N = 4 … 1024.

    Fails if (99) were violated anywhere, if the adversarial value fell with N (slope ≠ 0: the bound
    would then carry a real N_eff^{-1/2} suppression), if it stopped reaching half the bound, or if the
    would-be suppressed bound 2/√N_eff (the remark after 106) held for it. Also fails if random
    perturbations stopped falling roughly like N^{-1/2} (fitted slope outside [−0.9, −0.45]).
    """
    r = eq99_scaling()
    assert list(r.N) == [4, 8, 16, 32, 64, 128, 256, 512, 1024]
    assert r.adversarial.all_hold and r.random.all_hold
    np.testing.assert_allclose(r.adversarial.bound, 2.0, rtol=1e-13)  # uniform attention: N_eff = N
    np.testing.assert_allclose(r.adversarial.value, 1.0, rtol=1e-12)
    np.testing.assert_allclose(r.adversarial.ratio, 0.5, rtol=1e-12)
    assert abs(r.adversarial_slope) < 1e-12
    suppressed = 2.0 / np.sqrt(r.N)  # 2‖δS‖_max‖P⊥V0‖/√N_eff with N_eff = N: what "suppression" would give
    assert np.all(r.adversarial.value[r.N > 4] > suppressed[r.N > 4])
    assert -0.9 < r.random_slope < -0.45
    assert np.all(r.random.value.max(axis=-1)[r.N >= 64] < 0.1)  # typical draws are far below the bound


# ------------------------------------------------------- finding 2: the √2 of eq. (20), (21), (26)


@pytest.mark.parametrize("g", [0.0, 0.5, 1.0])
def test_finding2_eq32_holds_in_the_mode_convention(g):
    """Eq. (32) with R = A0J_V, P(g)h = (δA(+) + gδA(−))[h]V0 equals the block's JVP to round-off.

    Fails if the package's R, P left the mode convention (residual of reading 1 above 1e-12), or if a
    literal reading of the paper (R, P ×√2 from eq. 25, ×2 from eq. 26) matched the JVP as well
    (residual below 5%), which would mean the toy block no longer tests the factor.
    """
    block = random_toy_block(8, 2, 0, eps=0.1)
    rng = numpy_generator(15, 2)
    H0, h = rng.standard_normal((6, 8)), rng.standard_normal((6, 8))
    check = eq32_check(block, H0, h, g)
    assert check.factors == (1.0, np.sqrt(2.0), 2.0)
    assert check.residual[0] < 1e-12
    assert check.residual[1] > 0.05 and check.residual[2] > 0.05
    # the wrong readings miss by exactly (f − 1)·(I + J_MLP)[ρR + ξP]h: their errors are in ratio (√2 − 1) : 1
    err = np.linalg.norm(check.expanded - check.jvp, axis=(-2, -1))
    assert err[1] / err[2] == pytest.approx(np.sqrt(2.0) - 1.0, rel=1e-9)


@given(
    seed=st.integers(0, 2**16),
    g=st.floats(0.0, 1.0),
    eps=st.floats(0.01, 0.5),
    N=st.integers(2, 6),
)
@settings(max_examples=25, deadline=None)
def test_finding2_mode_convention_property(seed, g, eps, N):
    """Over random toy blocks, gate scales, N and g, only the mode convention closes eq. (32).

    Fails on any draw where the package reading misses the JVP by more than 1e-11 (relative to
    ‖(K_g − I)h‖) or a paper reading (×√2, ×2) does not miss it.
    """
    block = random_toy_block(4, 2, seed, eps=eps)
    rng = numpy_generator(15, 2, seed)
    check = eq32_check(block, rng.standard_normal((N, 4)), rng.standard_normal((N, 4)), g)
    assert check.residual[0] < 1e-11
    assert np.all(check.residual[1:] > 1e3 * max(check.residual[0], 1e-16))


# ------------------------------------------------------ finding 3: the remainder of (25) is O(‖h‖³)


@pytest.mark.parametrize("g", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_finding3_difference_remainder_is_third_order(g, seed):
    """Log–log slopes over two decades of ‖h‖: 3 for Attn^A − Attn^B, 2 for replica A alone.

    Fails if the difference remainder's slope leaves [2.9, 3.1] (2 would confirm the O(‖h‖²) written
    after eq. 25), if one replica's slope leaves [1.9, 2.1], if either fit is not a clean power law
    (max log deviation > 0.1), or if D(h) + D(−h) exceeds round-off (D not odd).
    """
    layer = random_attention_layer(8, 2, seed)
    rng = numpy_generator(15, 3, seed)
    H0, h = rng.standard_normal((6, 8)), rng.standard_normal((6, 8))
    r = remainder_scaling(layer, H0, h, g)
    assert 2.9 <= r.difference_slope <= 3.1
    assert 1.9 <= r.replica_slope <= 2.1
    assert r.difference_fit[2] < 0.1 and r.replica_fit[2] < 0.1
    assert np.all(r.odd <= 1e-13 * np.linalg.norm(H0))
    assert np.all(r.difference < r.replica)  # the odd remainder is the smaller one on this range


# ------------------------------------------------------------ finding 7: derivations the paper skips


def test_finding7_derivations_hold():
    """Eq. (9)–(10), (32), (48), (58) and the general (66) follow symbolically from their sources.

    Fails if any ``simplify(derived − stated)`` is nonzero: a wrong factor in the paper's step or in
    the derivation (e.g. a 2g instead of g in (10), a missing cross term in (32)).
    """
    du, dv = S.common_difference_eq9_10()
    steps = [du, dv, S.product_eq30_eq32(), S.projection_eq41_eq48(2), S.propagated_snr_eq58()]
    steps.append(S.snr_split_eq66_general())
    for step in steps:
        assert sp.simplify(step.derived - step.stated) == 0


def test_finding7_eq66_needs_mode_independent_pi_not_small_pi():
    """SNR_hi − SNR_lo at g = 1 is m²μ²(Δλ + Δπ/2)/(D_hi D_lo): O(ρ(g)) needs Δλ = 0 and Δπ = 0.

    Fails if the difference vanished at g = 1 for mode-dependent π (then (59) would suffice), if it
    did not vanish once λ and π are mode independent, or if, with P(g)'s own g kept, any term other
    than the query-side Δπ^q (and Δλ) survived at g = 1.
    """
    d = S.snr_split_eq66_general()
    at_g1 = d.notes["at_g1"]
    assert sp.simplify(at_g1 - d.notes["at_g1_expected"]) == 0
    lam_hi, lam_lo, pi_hi, pi_lo = sp.symbols("lambda_hi lambda_lo pi_hi pi_lo", real=True)
    assert sp.simplify(at_g1.subs(lam_lo, lam_hi)) != 0  # (60) alone: the ξΔπ term stays
    assert sp.simplify(at_g1.subs({lam_lo: lam_hi, pi_lo: pi_hi})) == 0
    finite = d.notes["under_60_and_equal_pi"]  # (SNR_hi − SNR_lo)/ρ(g): regular at g = 1
    assert sp.simplify(finite.subs(S.g, 1)) != 0
    assert sp.simplify(d.notes["at_g1_split"] - d.notes["at_g1_split_expected"]) == 0
    assert d.notes["xi_pi_split"] == 0 and d.notes["logit_split"] == 0


# ------------------------------------------------------------------ finding 4: eq. (50) on a whole step


@pytest.mark.parametrize("ddim_eta", [0.0, 1.0])
@pytest.mark.parametrize("num_steps", [50, 100])
def test_finding4_eq50_holds_in_coordinates_where_the_score_free_part_is_the_identity(num_steps, ddim_eta):
    """One exact DDIM step on the mixture is eq. (36) along φ_f: in x with K = c₁ > 1, in x̃ = x/α_t with
    K̃ = 1 (rescaled γ̃, m̃, c̃). Eq. (50) with the finite γ̃ in x/α_t equals κ_f = m²/c at every step and
    factor, and its κ = 1 crossings are the exact κ_f = 1 steps; in x, κ = 1 sits where the step's Jacobian
    J = 1, while the bifurcation is J = c₁. Deterministic (ddim_eta = 0) and ancestral (1) steps alike.

    Fails on the old reading ("the residual stream's identity / a finite γ inflates κ; only γ → ∞ works"):
    if in x/α_t K̃ differed from 1 (> 1e-14), if κ_50 there differed from m²/c by more than 1e-10 relative
    anywhere, or if its crossings missed the exact steps (theory.exact_speciation_step) by more than 0.05
    step. Also fails if in x κ > 1 ⇔ J > 1 broke (eq. 50 ⇔ J = 1), if the sign of J − c₁ differed from that
    of κ_f − 1 at any step, or if the first J = c₁ crossing missed the exact steps by more than 0.05 step —
    or if in x the deterministic steps stopped putting every crossing at step 0 and the ancestral ones
    stopped crossing more than 2 steps early (the x reading would then be right after all).
    """
    import theory

    mix, sched = theory.multiscale.DEFAULT_MIXTURE, theory.DDPMSchedule()
    exact = theory.exact_speciation_step(mix, sched, num_steps)
    a = theory.exact_step_kappa(mix, sched, num_steps, ddim_eta, coordinates="x_over_alpha")
    np.testing.assert_allclose(a.eta, 1.0, rtol=0, atol=1e-14)
    assert np.all(a.status == int(theory.KappaStatus.DEFINED))
    np.testing.assert_allclose(a.kappa, a.m**2 / a.c, rtol=1e-10)
    steps = a.steps.astype(float)
    np.testing.assert_allclose(theory.speciation_step(a.kappa, steps, axis=0), exact, atol=0.05)

    x = theory.exact_step_kappa(mix, sched, num_steps, ddim_eta)  # the sampler's own coordinates
    assert np.all(x.c1 > 1.0) and np.all(x.status == int(theory.KappaStatus.DEFINED))
    np.testing.assert_array_equal(x.kappa > 1.0, x.jacobian > 1.0)  # eq. (50): κ = 1 ⇔ J = 1
    np.testing.assert_array_equal(np.sign(x.jacobian - x.c1[:, None]), np.sign(x.kappa_limit - 1.0))
    to_c1 = theory.curvature_sign_change(x.c1[:, None] - x.jacobian, steps, axis=0)  # first J ≥ c₁
    np.testing.assert_allclose(to_c1, exact, atol=0.05)
    x_crossing = theory.speciation_step(x.kappa, steps, axis=0)
    if ddim_eta == 0.0:
        np.testing.assert_array_equal(x_crossing, 0.0)  # J > 1 from step 0: κ ≥ 1 from step 0
    else:
        assert np.all(x_crossing < exact - 2.0)  # J = 1 before J = c₁


# ------------------------------------------------------------------ finding 5: routing dominance and modes


def test_finding5_routing_dominance_holds_on_coherent_modes_only():
    """On the shipped mixture DiT, at one step and block: token-constant (coherent, Appendix B's premise)
    modes have ε_δV ≪ 1 and a small pattern/routing ratio; random modes are incoherent (ε_δV > 1) with a
    ratio about 1. The branch directions split by *token-space* frequency, not pixel frequency: the global
    half/quadrant/block patterns change sign across tokens (incoherent), while the pixel-scale checkerboard
    is the same 2×2 pattern in every patch-2 token — perfectly coherent, and routing-dominated.

    Fails if the coherent ratio reached 0.5, if random or global-pattern modes had ε_δV ≤ 1, if their ratio
    fell below twice the coherent one (then the premise would not matter), or if the checkerboard direction
    stopped being coherent and routing-dominated.
    """
    import torch

    from dit_validation.branches import branch_directions, to_tensor
    from dit_validation.measure import dominance, linearized_copy, pushed_modes
    from dit_validation.models import resolve_model

    bundle = resolve_model("mixture")
    lin = linearized_copy(bundle.transformer)
    d = branch_directions(bundle)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 256, generator=gen, dtype=torch.float64).numpy()
    x = torch.as_tensor(d.symmetric(noise, 0.5)).view(1, 16, 16)  # on every branch's decision boundary
    t, layer = 499, 2
    H0, r, _ = pushed_modes(lin, x, to_tensor(d, (1, 16, 16), torch.device("cpu")), t, 0, [layer])
    N, D = H0.shape[1:]
    rand = torch.randn((4, N, D), generator=gen, dtype=torch.float64)
    coherent = torch.randn((4, 1, D), generator=gen, dtype=torch.float64).expand(-1, N, -1)
    out = {}
    for name, modes in (("coherent", coherent), ("random", rand), ("branch", r[0])):
        modes = modes / modes.flatten(1).norm(dim=1)[:, None, None]
        out[name] = dominance(lin, layer, t, 0, H0[0], modes)
    assert np.all(out["coherent"]["eps_dv"] < 0.5) and np.all(out["coherent"]["ratio"] < 0.5)
    assert np.all(out["random"]["eps_dv"] > 1.0)
    assert np.median(out["random"]["ratio"]) > 2 * np.median(out["coherent"]["ratio"])
    glob, checker = slice(0, 3), 3  # half, quadrant, block4 | checker
    assert np.all(out["branch"]["eps_dv"][glob] > 1.0)
    assert np.median(out["branch"]["ratio"][glob]) > 2 * np.median(out["coherent"]["ratio"])
    assert out["branch"]["eps_dv"][checker] < 0.5 and out["branch"]["ratio"][checker] < 0.5


# ------------------------------------------------------------------ finding 6: the closure of eq. (56)


def test_finding6_eq56_closes_with_the_propagator_not_with_the_step_jacobian():
    """Exact mixture, deterministic DDIM, S = 50: with the propagator alone (η = c₁, the paper's eq. 57
    literally) m_init·∏η equals m_f(s) = α_s A_f to round-off (the product telescopes to α_s/α_0); with the
    full-step Jacobian along φ_f — what a measurement sees — the ratio falls to about 0.1 … 0.01 at the
    speciation step and explodes after it.

    Fails if the propagator version deviated from 1, or if the Jacobian version came within a factor 2
    of 1 everywhere (then the closure would hold for what is measured).
    """
    import theory

    mix, sched = theory.multiscale.DEFAULT_MIXTURE, theory.DDPMSchedule()
    prop = theory.eq56_closure_ratio(mix, sched, 50, gain="propagator")
    np.testing.assert_allclose(prop, 1.0, atol=1e-12)
    jac = theory.eq56_closure_ratio(mix, sched, 50)
    assert np.all(np.nanmin(jac, axis=0) < 0.15)
    assert np.all(jac[-1] > 5.0)
    spec = theory.exact_speciation_step(mix, sched, 50)
    np.testing.assert_allclose(
        np.nanargmin(jac, axis=0), np.round(spec), atol=1.0
    )  # the minimum sits at κ_f = 1

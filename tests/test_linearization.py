"""Linearized attention difference (20)–(28) and the block propagator K_g (31)–(33).

The explicit decomposition ρRh + ξP(g)h (closed-form LayerNorm JVP, eq. 88 softmax JVP)
is compared with forward-mode autodiff of the exact coupled layer; each pathway is also
checked alone against autodiff with the other pathway frozen (§2.3: routing = value path
with the attention map frozen; pattern = kernel path with the values frozen).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from theory import (
    AttentionLayer,
    attention_difference,
    attention_difference_jvp,
    attention_difference_terms,
    attention_forward,
    dominance_report,
    eq32_check,
    head_linearization,
    linearized_logits,
    pattern_term,
    propagator,
    random_attention_layer,
    random_toy_block,
    remainder_scaling,
    rho,
    routing_term,
    xi,
)

DECOMP_TOL = 1e-10  # eq. (25) vs JVP, relative, float64


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


@st.composite
def layer_cases(draw):
    """Layer + state + direction; logit temperature from peaked to uniform via W_Q's scale."""
    seed = draw(st.integers(0, 2**32 - 1))
    N = draw(st.integers(2, 64))
    heads = draw(st.sampled_from([1, 2]))
    D = 2 * draw(st.integers(2, 4))  # D = 2 LayerNorm is degenerate (its Jacobian is O(ln_eps))
    log_temp = draw(st.floats(-2.0, 1.5))
    layer = random_attention_layer(D, heads, seed, layernorm=draw(st.booleans()))
    layer = dataclasses.replace(layer, W_Q=layer.W_Q * 10.0**log_temp)
    rng = np.random.default_rng([seed, 7])
    H0 = rng.standard_normal((N, D))
    h = rng.standard_normal((N, D))
    return layer, H0, h, draw(st.floats(0.0, 1.0))


@given(case=layer_cases(), log_scale=st.floats(-6.0, 0.0))
@settings(max_examples=500, deadline=None)
def test_eq25_decomposition_equals_jvp(case, log_scale):
    """ρ(g)Rh + ξ(g)P(g)h (explicit formulas) = JVP of Attn^A − Attn^B, to ≤ 1e-10."""
    layer, H0, h, g = case
    h = 10.0**log_scale * h
    terms = attention_difference_terms(layer, H0, h, g)
    jvp = attention_difference_jvp(layer, H0, h, g)
    scale = max(
        np.linalg.norm(terms.rho * terms.routing) + np.linalg.norm(terms.xi * terms.pattern),
        np.linalg.norm(jvp),
        1e-300,
    )
    assert np.linalg.norm(terms.total - jvp) <= DECOMP_TOL * scale


def _unit_scale(layer: AttentionLayer, H0: np.ndarray, h: np.ndarray) -> float:
    """Size of h relative to the nonlinearity: max(‖h‖/‖H0‖, ‖δS(±)‖_max of the unit direction)."""
    x = H0 @ layer.W_Q  # logits grow with W_Q's scale; LayerNorm makes x ~ O(1) per entry
    return max(
        np.linalg.norm(h) / np.linalg.norm(H0),
        float(np.abs(x).max() * np.abs(h @ layer.W_K).max()) / math.sqrt(layer.head_dim),
    )


def _replica_A_residuals(layer, H0, h, g) -> tuple[float, float]:
    """‖Attn^A(x) − Attn^A(0) − (first order)‖ at x = h and h/2, replica A alone (eq. 21–24)."""
    H0_t, u = torch.from_numpy(H0), torch.from_numpy(h) / math.sqrt(2.0)
    fA = lambda w: attention_forward(layer, torch.stack([H0_t + w, H0_t - w]), g)[0]  # noqa: E731
    f0, lin = torch.func.jvp(fA, (torch.zeros_like(u),), (u,))
    return tuple(float(torch.linalg.norm(fA(c * u) - f0 - c * lin)) for c in (1.0, 0.5))


EPS = np.finfo(np.float64).eps
K_MAX = 30.0  # quadratic coefficient bound in normalized units (observed max ≈ 3 over 400 draws)


def _out_scale(layer: AttentionLayer, H0: np.ndarray, g: float) -> float:
    H0_t = torch.from_numpy(H0)
    return 1.0 + float(torch.linalg.norm(attention_forward(layer, torch.stack([H0_t, H0_t]), g)[0]))


@given(case=layer_cases(), log_s=st.floats(-8.0, -2.0))
@settings(max_examples=500, deadline=None)
def test_replica_remainder_is_second_order(case, log_s):
    """Each replica's linearization remainder is O(‖h‖²) over six decades of ‖h‖ (eq. 21–24).

    r(h) ≤ K_MAX s² ‖out‖ + round-off always; where r is resolvable above float64 round-off
    (s ≳ 1e-6), halving h divides it by 4 ± 0.5.
    """
    layer, H0, h, g = case
    s = 10.0**log_s
    h = s / _unit_scale(layer, H0, h) * h
    r1, r2 = _replica_A_residuals(layer, H0, h, g)
    out_scale = _out_scale(layer, H0, g)
    floor = 32 * EPS * out_scale  # round-off of Attn^A(h) − Attn^A(0): no 2nd-order signal below it
    assert r1 <= K_MAX * s * s * out_scale + 500 * floor
    if r2 > 100 * floor:
        assert 3.5 <= r1 / r2 <= 4.5


def test_residual_check_detects_a_wrong_linear_term():
    """Dropping the pattern term leaves an O(‖h‖) remainder: the halving ratio falls to ~2."""
    layer = random_attention_layer(8, 2, 0)
    rng = np.random.default_rng(1)
    H0, h = rng.standard_normal((6, 8)), 1e-3 * rng.standard_normal((6, 8))
    wrong = lambda x: attention_difference_terms(layer, H0, x, 0.3)  # noqa: E731
    res = lambda x: np.linalg.norm(  # noqa: E731
        attention_difference(layer, H0, x, 0.3) - wrong(x).rho * wrong(x).routing
    )
    assert 1.9 <= res(h) / res(h / 2) <= 2.1


@given(case=layer_cases(), log_s=st.floats(-4.0, -2.0))
@settings(max_examples=100, deadline=None)
def test_difference_remainder_is_third_order(case, log_s):
    """Attn^A − Attn^B is odd in h (A↔B maps h -> −h), so the remainder of (25) is O(‖h‖³): ratio ~8."""
    layer, H0, h, g = case
    h = 10.0**log_s / _unit_scale(layer, H0, h) * h
    res = lambda x: np.linalg.norm(  # noqa: E731
        attention_difference(layer, H0, x, g) - attention_difference_jvp(layer, H0, x, g)
    )
    r1, r2 = res(h), res(h / 2)
    floor = 1e-13 * max(1.0, float(np.abs(attention_difference(layer, H0, h, g)).max())) * math.sqrt(h.size)
    if r2 > 100 * floor:
        assert 7.0 <= r1 / r2 <= 9.0
    else:
        assert r1 <= 1000 * floor


def test_remainder_ratios_fixed_seed():
    """Deterministic version with the paper's two claims side by side."""
    layer = random_attention_layer(8, 2, 0)
    rng = np.random.default_rng(1)
    H0, h = rng.standard_normal((6, 8)), 1e-3 * rng.standard_normal((6, 8))
    res = lambda x: np.linalg.norm(  # noqa: E731
        attention_difference(layer, H0, x, 0.3) - attention_difference_jvp(layer, H0, x, 0.3)
    )
    assert 7.8 <= res(h) / res(h / 2) <= 8.2
    r1, r2 = _replica_A_residuals(layer, H0, h, 0.3)
    assert 3.9 <= r1 / r2 <= 4.1


def test_remainder_scaling_against_autodiff_first_order():
    """remainder_scaling (exact forward − explicit first order) vs remainders built on a torch JVP.

    Both remainders are recomputed with the first-order terms from forward-mode autodiff instead of
    the explicit formulas; they agree to far below their own size, and the fitted slopes are 3 and 2.
    """
    layer = random_attention_layer(8, 2, 0)
    rng = np.random.default_rng(1)
    H0, h = rng.standard_normal((6, 8)), rng.standard_normal((6, 8))
    scales = np.logspace(-3.0, -1.0, 5)
    r = remainder_scaling(layer, H0, h, 0.3, scales)
    for i, s in enumerate(scales):
        x = s * h
        jvp_first = attention_difference_jvp(layer, H0, x, 0.3)
        diff = np.linalg.norm(attention_difference(layer, H0, x, 0.3) - jvp_first)
        assert diff == pytest.approx(r.difference[i], rel=1e-6)
        assert _replica_A_residuals(layer, H0, x, 0.3)[0] == pytest.approx(r.replica[i], rel=1e-8)
    assert r.difference_slope == pytest.approx(3.0, abs=0.05)
    assert r.replica_slope == pytest.approx(2.0, abs=0.05)
    assert np.allclose(r.h_norm, scales * np.linalg.norm(h), rtol=1e-15)


def _frozen_difference_jvp(layer: AttentionLayer, H0, h, g, freeze: str) -> np.ndarray:
    """JVP of Attn^A − Attn^B with the attention map ("A") or the values ("V") held fixed."""
    H0_t, u = torch.from_numpy(H0), torch.from_numpy(h) / math.sqrt(2.0)
    T = torch.from_numpy

    def diff(w):
        H = torch.stack([H0_t + w, H0_t - w])
        x = torch.nn.functional.layer_norm(H, (layer.D,), eps=layer.ln_eps) if layer.layernorm else H
        x = x * (1 + T(layer.scale)) + T(layer.shift)
        split = lambda Z: Z.reshape(2, -1, layer.num_heads, layer.head_dim).transpose(1, 2)  # noqa: E731
        q, k, v = (
            split(x @ T(W) + T(b))
            for W, b in ((layer.W_Q, layer.b_Q), (layer.W_K, layer.b_K), (layer.W_V, layer.b_V))
        )
        if freeze == "A":
            q, k = q.detach(), k.detach()
        else:
            v = v.detach()
        att = lambda a, b: torch.softmax(a @ b.transpose(-1, -2) / math.sqrt(layer.head_dim), -1)  # noqa: E731
        oA = (att(q[0], k[0]) @ v[0] + g * att(q[0], k[1]) @ v[1]) / (1 + g)
        oB = (att(q[1], k[1]) @ v[1] + g * att(q[1], k[0]) @ v[0]) / (1 + g)
        merge = lambda o: o.transpose(0, 1).reshape(-1, layer.D)  # noqa: E731
        return (merge(oA) - merge(oB)) @ T(layer.W_O) * T(layer.alpha)

    return torch.func.jvp(diff, (torch.zeros_like(u),), (u,))[1].numpy()


@pytest.mark.parametrize("g", [0.0, 0.4, 1.0])
@pytest.mark.parametrize("layernorm", [True, False])
def test_each_pathway_matches_frozen_autodiff(g, layernorm):
    """ρRh = JVP with A frozen (value path); ξP(g)h = JVP with V frozen (kernel path)."""
    layer = random_attention_layer(6, 3, 5, layernorm=layernorm)
    rng = np.random.default_rng(2)
    H0, h = rng.standard_normal((7, 6)), rng.standard_normal((7, 6))
    terms = attention_difference_terms(layer, H0, h, g)
    assert terms.rho == rho(g) and terms.xi == xi(g)
    routing = _frozen_difference_jvp(layer, H0, h, g, "A")
    pattern = _frozen_difference_jvp(layer, H0, h, g, "V")
    assert np.linalg.norm(terms.rho * terms.routing - routing) <= 1e-12 * np.linalg.norm(terms.routing)
    assert _rel(terms.xi * terms.pattern, pattern) <= 1e-12
    if g == 1.0:
        assert np.linalg.norm(routing) <= 1e-14 * np.linalg.norm(terms.routing)  # ρ(1) = 0


def test_linearized_logits_match_finite_difference():
    """δS(±) are the exact first-order changes of S_AA, S_AB (bilinear: central difference is exact)."""
    rng = np.random.default_rng(3)
    Q0, K0, dQ, dK = (rng.standard_normal((2, 5, 4)) for _ in range(4))
    dS_p, dS_m = linearized_logits(Q0, K0, dQ, dK)
    S = lambda q, k: q @ k.swapaxes(-1, -2) / 2.0  # noqa: E731 -- √d_h = 2
    assert np.allclose(dS_p, (S(Q0 + dQ, K0 + dK) - S(Q0 - dQ, K0 - dK)) / 2, atol=1e-13)
    assert np.allclose(dS_m, (S(Q0 + dQ, K0 - dK) - S(Q0 - dQ, K0 + dK)) / 2, atol=1e-13)


@given(case=layer_cases())
@settings(max_examples=200, deadline=None)
def test_layer_heads_satisfy_dominance_bound(case):
    """Appendix B on a layer's own A0, V0, δV and δS = δS(+) + gδS(−): (105) holds per head and the
    measured ratio is the per-head pattern/routing ratio of eq. (25) before W_O (δA linear in δS)."""
    layer, H0, h, g = case
    lin = head_linearization(layer, H0, h)
    rep = dominance_report(lin.A0, lin.dS_plus + g * lin.dS_minus, lin.V0, lin.dV)
    assert rep.ratio.shape == (layer.num_heads,) and np.all(rep.holds)
    pattern = pattern_term(lin.A0, lin.dS_plus, lin.dS_minus, lin.V0, g)
    routing = routing_term(lin.A0, lin.dV)
    want = np.linalg.norm(pattern, axis=(-2, -1)) / np.linalg.norm(routing, axis=(-2, -1))
    # One-hot rows (N_eff = 1) make both norms tiny differences of O(1) terms, so the two routes agree
    # only to ~1e-9 relative (or to round-off, ~1e-13, when δA V0 vanishes); these tolerances still
    # separate them from any real formula error, whose ratio is O(1).
    assert np.allclose(rep.ratio, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("g", [0.0, 0.5, 1.0])
def test_propagator_equals_eq32(g):
    """The full block Jacobian of the difference mode equals (32) to round-off."""
    block = random_toy_block(4, 2, 0, eps=0.2)
    H0 = np.random.default_rng(4).standard_normal((3, 4))
    P = propagator(block, H0, g)
    assert P.K.shape == (12, 12)
    assert np.max(np.abs(P.K - P.K_expanded)) <= 1e-13
    # J_MLP is block diagonal in tokens: no spatial routing through the MLP (§2.4)
    J = P.J_mlp.reshape(3, 4, 3, 4)
    for n in range(3):
        for m in range(3):
            if n != m:
                assert np.all(J[n, :, m, :] == 0)


@pytest.mark.parametrize("g", [0.0, 0.5, 1.0])
def test_eq32_check_matches_the_propagator_matrices(g):
    """eq32_check (one JVP per direction) agrees with propagator's full matrices, in the mode convention."""
    block = random_toy_block(4, 2, 0, eps=0.2)
    rng = np.random.default_rng(4)
    H0, h = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    P = propagator(block, H0, g)
    check = eq32_check(block, H0, h, g)
    assert np.max(np.abs(P.K @ h.ravel() - check.jvp.ravel())) <= 1e-14
    assert np.max(np.abs(P.K_expanded @ h.ravel() - check.expanded[0].ravel())) <= 1e-14
    literal = np.eye(12) + P.J_mlp + 2.0 * (P.attention + P.cross)  # eq. (26) read literally: R = 2A0J_V
    assert np.max(np.abs(literal @ h.ravel() - check.expanded[2].ravel())) <= 1e-14
    assert check.residual[0] <= 1e-13 and check.residual[2] > 0.1


def test_cross_term_is_second_order_in_gate_scale():
    """ε -> ε/2: cross term /4, J_MLP, R, P /2; K − K_approx(33) is exactly the cross term."""
    H0 = np.random.default_rng(5).standard_normal((3, 4))
    big, small = (propagator(random_toy_block(4, 2, 1, eps=e), H0, 0.3) for e in (0.02, 0.01))
    norm = np.linalg.norm
    assert 3.8 <= norm(big.cross) / norm(small.cross) <= 4.2
    assert norm(big.R) / norm(small.R) == pytest.approx(2.0, rel=1e-12)  # R, P exactly linear in α
    assert norm(big.P) / norm(small.P) == pytest.approx(2.0, rel=1e-12)
    assert 1.9 <= norm(big.J_mlp) / norm(small.J_mlp) <= 2.1
    for p in (big, small):
        assert np.max(np.abs(p.K - p.K_approx - p.cross)) <= 1e-13


def test_bad_input_errors():
    layer = random_attention_layer(4, 2, 0)
    with pytest.raises(ValueError, match=r"num_heads=3 must divide D_inner=4"):
        dataclasses.replace(layer, num_heads=3)
    with pytest.raises(ValueError, match=r"W_K must have shape \(4, 4\) like W_Q"):
        dataclasses.replace(layer, W_K=np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"alpha must have shape \(4,\)"):
        dataclasses.replace(layer, alpha=np.zeros(3))
    with pytest.raises(ValueError, match=r"g must lie in \[0, 1\], got 1.2"):
        attention_difference_terms(layer, np.zeros((3, 4)), np.zeros((3, 4)), 1.2)
    with pytest.raises(ValueError, match=r"H0 must be \(N, 4\)"):
        attention_difference_terms(layer, np.zeros((3, 4)), np.zeros((2, 4)), 0.5)
    with pytest.raises(ValueError, match=r"H0 must have shape \(N, 4\), got \(3, 5\)"):
        propagator(random_toy_block(4, 2, 0), np.zeros((3, 5)), 0.5)
    with pytest.raises(ValueError, match=r"scales must lie in \(0, inf\]"):
        remainder_scaling(layer, np.zeros((3, 4)), np.ones((3, 4)), 0.5, [1e-3, 0.0])
    with pytest.raises(ValueError, match=r"H0 and h must both have shape \(N, 4\)"):
        remainder_scaling(layer, np.zeros((3, 4)), np.ones((2, 4)), 0.5)
    with pytest.raises(ValueError, match=r"H0 and h must both have shape \(N, 4\)"):
        eq32_check(random_toy_block(4, 2, 0), np.zeros((3, 4)), np.ones((3, 5)), 0.5)
    with pytest.raises(ValueError, match=r"g must lie in \[0, 1\], got -0.5"):
        pattern_term(np.eye(2), np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 1)), -0.5)

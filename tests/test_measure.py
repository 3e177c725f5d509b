"""Block quantities measured inside a DiT (dit_validation.measure), eq. (25)–(47).

Reference: the full block Jacobian's quadratic form along r_k, once from an unsplit JVP and once from a
float64 central difference of the block's replica difference; the coupled block (eq. 19, dit_validation.
coupling) for g > 0. Tiny random DiT with re-initialized weights (adaLN-zero gates nonzero), and the shipped
mixture checkpoint.
"""

import numpy as np
import pytest
import torch

from dit_validation.measure import (
    block_quantities,
    coupled_quadratic_form,
    cross_of_g,
    dominance,
    linearized_copy,
    pi_of_g,
)
from dit_validation.models import SHIPPED_DIR, build_random_dit, load_checkpoint


def _setup(transformer, K=3, seed=0):
    lin = linearized_copy(transformer)
    cfg = transformer.config
    N = (cfg.sample_size // cfg.patch_size) ** 2
    D = cfg.num_attention_heads * cfg.attention_head_dim
    gen = torch.Generator().manual_seed(seed)
    H0 = torch.randn(N, D, generator=gen, dtype=torch.float64)
    r = torch.randn(K, N, D, generator=gen, dtype=torch.float64)
    return lin, H0, r / r.flatten(1).norm(dim=1)[:, None, None]


@pytest.fixture(scope="module")
def tiny():
    return build_random_dit("tiny", seed=0).transformer


def _fd_quad(lin, layer, t, label, H0, r, step=1e-5):
    """r_kᵀ(J − I) r_k by a central difference of v⁺ = (f(H0 + a r/√2) − f(H0 − a r/√2))/√2 (float64)."""
    return coupled_quadratic_form(lin, layer, t, label, H0, r, 0.0, step)


@pytest.mark.parametrize("layer", [0, 1])
def test_parts_reproduce_full_block_jacobian_tiny(tiny, layer):
    lin, H0, r = _setup(tiny)
    q = block_quantities(lin, layer, 400, 1, H0, r)
    total = q["chi"] + q["pi"] + q["lambda_mlp"] + q["cross"]
    np.testing.assert_allclose(total, q["quad_full"], rtol=1e-10, atol=1e-13)  # eq. (32) at g = 0
    # the unsplit JVP against an independent float64 finite difference of the replica difference
    np.testing.assert_allclose(q["quad_full"], _fd_quad(lin, layer, 400, 1, H0, r), rtol=1e-6, atol=1e-9)
    assert np.all(np.abs(q["lambda_mlp"]) > 0) and np.all(np.abs(q["chi"]) > 0)  # nothing trivially zero


@pytest.mark.parametrize("g", [0.3, 1.0])
def test_coupled_block_matches_rho_xi_decomposition(tiny, g):
    """K_g along r_k = ρ χ + ξ π(g) + λ + cross(g) with P(g) = (1+g)P_q + (1−g)P_k (eq. 25–32)."""
    lin, H0, r = _setup(tiny, seed=1)
    q = block_quantities(lin, 1, 700, 0, H0, r)
    rho, xi = (1 - g) / (1 + g), 1 / (1 + g)
    pred = rho * q["chi"] + xi * pi_of_g(q, g) + q["lambda_mlp"] + cross_of_g(q, g)
    ref = coupled_quadratic_form(lin, 1, 700, 0, H0, r, g)
    np.testing.assert_allclose(pred, ref, rtol=1e-6, atol=1e-9)


def test_routing_vanishes_at_full_coupling_and_original_model_untouched(tiny):
    lin, H0, r = _setup(tiny, seed=2)
    q = block_quantities(lin, 0, 100, 2, H0, r)
    # g = 1: the routing channel and the key-side pattern channel drop out, only P_q and the MLP survive
    ref = coupled_quadratic_form(lin, 0, 100, 2, H0, r, 1.0)
    np.testing.assert_allclose(ref, q["pi_q"] + q["lambda_mlp"] + q["cross_q"], rtol=1e-6, atol=1e-9)
    assert next(tiny.parameters()).dtype == torch.float32  # the measured copy is separate


def test_parts_reproduce_full_block_jacobian_shipped():
    bundle = load_checkpoint(SHIPPED_DIR / "mixture")
    lin, H0, r = _setup(bundle.transformer, K=2)
    H0 = H0 * 0.5
    last = bundle.num_layers - 1
    q = block_quantities(lin, last, 300, 0, H0, r)
    total = q["chi"] + q["pi"] + q["lambda_mlp"] + q["cross"]
    np.testing.assert_allclose(total, q["quad_full"], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(q["quad_full"], _fd_quad(lin, last, 300, 0, H0, r), rtol=1e-5, atol=1e-8)


def test_dominance_ratio_matches_direct_softmax_jvp(tiny):
    """‖δA V0‖/‖A0 δV‖ from `dominance` vs δA = A0 ⊙ (δS − Σ_n A0 δS) (softmax JVP) on the same tangents."""
    lin, H0, r = _setup(tiny, K=2, seed=3)
    dom = dominance(lin, 1, 500, 0, H0, r)
    proc = lin.processors[1]
    H = H0.expand(2, *H0.shape).contiguous()
    from torch.func import jvp

    from dit_validation.measure import _block_call

    f = _block_call(lin, 1, 500, 0)

    def logits_values_map(x):
        f(x)
        return proc.last["S"], proc.last["V0"], proc.last["A0"]

    proc.record = True
    (_, V0, A0), (dS, dV, _) = jvp(logits_values_map, (H,), (r,))
    proc.record = False
    dA = A0 * (dS - (A0 * dS).sum(-1, keepdim=True))  # (K, H, N, N)
    ratio = (dA @ V0).flatten(2).norm(dim=-1) / (A0 @ dV).flatten(2).norm(dim=-1)  # (K, H)
    np.testing.assert_allclose(dom["ratio"], np.median(ratio.numpy(), axis=-1), rtol=1e-10)
    # ε_δV (eq. 102): mean-free over mean part of δV, per head, median
    tok_mean = dV.mean(dim=-2, keepdim=True).expand_as(dV)
    eps = (dV - tok_mean).flatten(2).norm(dim=-1) / tok_mean.flatten(2).norm(dim=-1)
    np.testing.assert_allclose(dom["eps_dv"], np.median(eps.numpy(), axis=-1), rtol=1e-10)

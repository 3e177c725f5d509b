"""The causal depth measurements (dit_validation.causal, .patching): the curvature decomposition by block and
activation patching between clones.

References: the learned curvature from an independent forward-mode JVP of the replica difference channel
through ``predict_eps`` (no hooks, no head covector) and from the step predictor's float64 central
difference; each unit's term from float64 central differences of its captured writes pushed through the
head; the clone experiment (``sample_clones``) for the continued trajectories. The patch controls are
exact (bit-identical) by construction and checked as such.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.autograd.forward_ad as fwAD
from hypothesis import given
from hypothesis import strategies as st
from torch.nn.attention import SDPBackend, sdpa_kernel

from dit_validation.branches import BranchDirections
from dit_validation.causal import (
    CausalConfig,
    causal_depth,
    causal_trajectories,
    curvature_contributions,
    trajectory_seeds,
)
from dit_validation.causal_stats import VARIANT_ALL, VARIANT_NONE
from dit_validation.clone_sampler import sample_clones
from dit_validation.coupling import install_coupling
from dit_validation.patching import ResidualPatch, patch_variants, patch_window
from dit_validation.sampler import make_scheduler, predict_eps, sample_pairs
from dit_validation.step_predictor import difference_curvature, trajectory_states

T, SIGMA, LABEL = 400, 0.7, 1


def _points(seed: int, n: int = 3, F: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=gen, dtype=torch.float64)
    phi = torch.randn(F, 1, 8, 8, generator=gen, dtype=torch.float64)
    return x, phi / phi.flatten(1).norm(dim=1)[:, None, None, None]


def _contributions(b, x, phi, g):
    with install_coupling(b.transformer) as handle:
        return curvature_contributions(b, handle, x, phi, T, SIGMA, g, LABEL)


def _jvp_curvature(b, x, phi, g) -> np.ndarray:
    """σ⁻¹ φᵀ dε_v/da with A = x + aφ/√2, B = x − aφ/√2, ε_v = (ε_A − ε_B)/√2, by one dual forward."""
    n = x.shape[0]
    out = np.empty((n, phi.shape[0]))
    with install_coupling(b.transformer) as handle, sdpa_kernel(SDPBackend.MATH):
        for f in range(phi.shape[0]):
            with fwAD.dual_level():
                a = fwAD.make_dual(torch.zeros((), dtype=torch.float64), torch.ones((), dtype=torch.float64))
                z = torch.cat([x + a * phi[f] / math.sqrt(2), x - a * phi[f] / math.sqrt(2)])
                eps = predict_eps(b, handle, z, T, np.full(n, g), LABEL, b.guidance_scale)
                d = fwAD.unpack_dual((eps[:n] - eps[n:]) / math.sqrt(2)).tangent
            out[:, f] = (d * phi[f]).flatten(1).sum(1).numpy() / SIGMA
    return out


@pytest.mark.parametrize("guidance", [1.0, 3.0])
@pytest.mark.parametrize("g", [0.0, 0.4, 1.0])
def test_curvature_terms_sum_to_the_full_model_curvature(tiny64, g, guidance):
    """Σ_units = H_f: against a full-model JVP to 1e-12 relative (measured ~1e-15: both are exact
    derivatives, only rounding differs) and against the step predictor's float64 central difference at
    h = 1e-4 to 1e-8 relative (its O(h²) truncation; measured ≤ 2e-10). With guidance the terms are
    guided like ε̂; at g > 0 B's rows move by −φ and supply the keys A attends to."""
    b = replace(tiny64, guidance_scale=guidance)
    x, phi = _points(0)
    c = _contributions(b, x, phi, g)
    assert c.shape == (3, 2, b.num_layers + 1)
    H_jvp = _jvp_curvature(b, x, phi, g)
    np.testing.assert_allclose(c.sum(-1), H_jvp, rtol=0, atol=1e-12 * np.abs(H_jvp).max())
    with install_coupling(b.transformer) as handle:
        H_fd = difference_curvature(b, handle, x, phi, T, SIGMA, g, LABEL, h=1e-4)
    np.testing.assert_allclose(c.sum(-1), H_fd, rtol=0, atol=1e-8 * np.abs(H_fd).max())


def _writes(b, handle, z, g):
    """Plain forward of the pair batch z = [A; B]: each unit's write (rows, N, D) and the final stream."""
    dit = b.transformer
    seen: dict[int, torch.Tensor] = {}
    hooks = [dit.pos_embed.register_forward_hook(lambda _m, _a, o: seen.__setitem__(0, o))]
    for ell, blk in enumerate(dit.transformer_blocks):
        hooks.append(blk.register_forward_hook(lambda _m, a, o, u=1 + ell: seen.__setitem__(u, o - a[0])))
        hooks.append(blk.register_forward_hook(lambda _m, _a, o: seen.__setitem__(-1, o)))
    handle.state.assign(g)
    ts = torch.full((z.shape[0],), T)
    ys = torch.full((z.shape[0],), LABEL)
    try:
        with torch.no_grad():
            dit(z, timestep=ts, class_labels=ys)
    finally:
        for h in hooks:
            h.remove()
    return seen


def _head(b, z, h_L):
    """ε̂ of the rows of z (only their timestep and label matter) with the final stream set to h_L."""
    dit = b.transformer
    hook = dit.transformer_blocks[-1].register_forward_hook(lambda _m, _a, _o: h_L)
    try:
        with torch.no_grad():
            n = z.shape[0]
            return dit(z, timestep=torch.full((n,), T), class_labels=torch.full((n,), LABEL)).sample[:, :1]
    finally:
        hook.remove()


@pytest.mark.parametrize("g", [0.0, 0.5])
def test_each_unit_term_is_a_central_difference_of_its_write(tiny64, g):
    """Unit u's term σ⁻¹ φᵀ J_out dΔ_u from plain float64 forwards only: the writes of the pair (A, B) =
    (x + hφ/√2, x − hφ/√2) and its mirror give δ_u = (write_u(+h) − write_u(−h))/2 ≈ h dΔ_u/√2 in row A,
    the head evaluated at the unperturbed final stream ± √2 δ_u gives the term by a second central
    difference. Both O(h²): 1e-6 relative to the largest term at h = 1e-4 (measured ~1e-9)."""
    b, h = tiny64, 1e-4
    x, phi = _points(1, n=2, F=2)
    c = _contributions(b, x, phi, g)
    n = x.shape[0]
    ref = np.empty_like(c)
    with install_coupling(b.transformer) as handle:
        base = _writes(b, handle, torch.cat([x, x]), g)[-1][:n]  # h_L of replica A at the symmetric point
        for f in range(phi.shape[0]):
            s = h * phi[f] / math.sqrt(2)
            plus = _writes(b, handle, torch.cat([x + s, x - s]), g)
            minus = _writes(b, handle, torch.cat([x - s, x + s]), g)
            for u in range(b.num_layers + 1):
                delta = math.sqrt(2) * (plus[u][:n] - minus[u][:n]) / 2  # ≈ h dΔ_u along +φ (B at −φ)
                d_eps = (_head(b, x, base + delta) - _head(b, x, base - delta)) / (2 * h)
                ref[:, f, u] = (d_eps * phi[f]).flatten(1).sum(1).numpy() / SIGMA
    np.testing.assert_allclose(c, ref, rtol=0, atol=1e-6 * np.abs(ref).max())


# --- patching ------------------------------------------------------------------------------------------


def _pairs(seed: int, P: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(P, 1, 8, 8, generator=gen, dtype=torch.float64) for _ in range(2))


def _eps(b, z, g, patch=None):
    P = z.shape[0] // 2
    with install_coupling(b.transformer) as handle:
        if patch is None:
            return predict_eps(b, handle, z, T, np.full(P, g), LABEL, b.guidance_scale)
        with patch:
            return predict_eps(b, handle, z, T, np.full(P, g), LABEL, b.guidance_scale)


@pytest.mark.parametrize("guidance", [1.0, 3.0])
@pytest.mark.parametrize("g", [0.0, 0.5])
def test_patching_every_unit_gives_replica_A_the_partner_output_bit_for_bit(tiny64, g, guidance):
    """All units patched: A's ε̂ is B's of the same forward, exactly, although A's state differs; a patch
    of each row with its own writes changes nothing, exactly; at g = 0 B's rows are untouched, exactly."""
    b = replace(tiny64, guidance_scale=guidance)
    zA, zB = _pairs(3, 4)
    z = torch.cat([zA, zB])
    guided = guidance > 1
    every = [frozenset(range(b.num_layers + 1))]
    clean = _eps(b, z, g)
    patched = _eps(b, z, g, ResidualPatch(b.transformer, every, [T], guided))
    assert torch.equal(patched[:4], patched[4:])
    assert not torch.equal(clean[:4], clean[4:])
    if g == 0.0:
        assert torch.equal(patched[4:], clean[4:])
    for variants in (every, [frozenset({1})], [frozenset({0})]):
        same = _eps(b, z, g, ResidualPatch(b.transformer, variants, [T], guided, donor="self"))
        assert torch.equal(same, clean)
    off_window = _eps(b, z, g, ResidualPatch(b.transformer, every, [T + 1], guided))
    assert torch.equal(off_window, clean)


def test_a_single_block_patch_writes_B_update_onto_A_input(tiny64):
    """Block ℓ patched alone: A's output of block ℓ is in_A + (out_B − in_B) (to rounding), later blocks
    run on it unpatched, and the hooks are gone after the context."""
    b = tiny64
    zA, zB = _pairs(4, 3)
    z = torch.cat([zA, zB])
    seen: dict[str, torch.Tensor] = {}
    blk = b.transformer.transformer_blocks[0]
    probe = blk.register_forward_hook(lambda _m, a, o: seen.update(inp=a[0], out=o))
    try:
        _eps(b, z, 0.0)
        inp, out = seen["inp"], seen["out"]
        with install_coupling(b.transformer) as handle:
            patch = ResidualPatch(b.transformer, [frozenset({1})], [T], guided=False)
            after: dict[str, torch.Tensor] = {}
            nxt = b.transformer.transformer_blocks[1].register_forward_pre_hook(
                lambda _m, a: after.update(h=a[0])
            )
            try:
                with patch:
                    predict_eps(b, handle, z, T, np.zeros(3), LABEL, 1.0)
            finally:
                nxt.remove()
    finally:
        probe.remove()
    np.testing.assert_allclose(after["h"][:3], inp[:3] + out[3:] - inp[3:], rtol=0, atol=1e-14)
    assert torch.equal(after["h"][3:], out[3:])
    dit = b.transformer
    assert not dit._forward_pre_hooks and not dit.pos_embed._forward_hooks
    assert not any(blk._forward_hooks for blk in dit.transformer_blocks)


def test_replica_A_handed_B_state_and_noise_follows_B_trajectory(tiny64):
    """Every unit patched at every step and A started from its partner's state with its partner's noise:
    A's trajectory is B's, bit for bit, pair by pair (a wrong donor row or a wrong patch formula breaks
    it, as pairs differ). And A started from its own state but driven by B's ε̂ at every step equals a
    reference loop that steps A's state with B's unpatched ε̂ (to float64 rounding)."""
    b, S = tiny64, 6
    seeds = [5, 6, 7]
    _, zB = _pairs(5, 3)
    every = [frozenset(range(b.num_layers + 1))]
    ts = make_scheduler(b, S).timesteps.tolist()
    kw = dict(g=0.0, num_steps=S, ddim_eta=1.0, sigma=0.0, class_label=LABEL, shared_noise_until=S)
    with ResidualPatch(b.transformer, every, ts, guided=False):
        A, B = sample_pairs(b, seeds, start_step=1, start_states=(zB, zB.clone()), **kw)
    assert torch.equal(A, B)
    zA, _ = _pairs(6, 3)
    with ResidualPatch(b.transformer, every, ts, guided=False):
        A, B = sample_pairs(b, seeds, start_step=1, start_states=(zA, zB), **kw)
    sched = make_scheduler(b, S)
    a, bb = zA.clone(), zB.clone()
    with install_coupling(b.transformer) as handle:
        for s, t in list(enumerate(ts))[1:]:
            eps_B = predict_eps(b, handle, torch.cat([bb, bb]), t, np.zeros(3), LABEL, 1.0)[:3]
            noise = torch.stack([torch.as_tensor(_noise(sd, s)) for sd in seeds])
            a = sched.step(eps_B, t, a, eta=1.0, variance_noise=noise).prev_sample
            bb = sched.step(eps_B, t, bb, eta=1.0, variance_noise=noise).prev_sample
    np.testing.assert_allclose(A.numpy(), a.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(B.numpy(), bb.numpy(), rtol=0, atol=1e-12)


def _noise(seed: int, step: int) -> torch.Tensor:
    from dit_validation.sampler import STREAM_NOISE_A, stream_normal

    return stream_normal(seed, STREAM_NOISE_A, step, (1, 8, 8))


@pytest.mark.parametrize("g", [0.0, 0.6])
def test_continued_trajectories_are_the_clone_experiment(tiny64, g):
    """Pairs continued from the stored trajectory at s_split with start_states equal sample_clones' pairs
    split there (float64: to 1e-12; the batches differ, so rounding may)."""
    b, S, split = tiny64, 8, 3
    seeds = [11, 12, 13]
    states = trajectory_states(b, seeds, S, LABEL)
    z = torch.as_tensor(states[split])
    A, B = sample_pairs(
        b, seeds, g=g, num_steps=S, ddim_eta=1.0, sigma=0.0, class_label=LABEL, start_step=split,
        start_states=(z, z.clone()),
    )  # fmt: skip
    ref_A, ref_B = sample_clones(b, seeds, [split], g=g, num_steps=S, class_label=LABEL)[split]
    np.testing.assert_allclose(A.numpy(), ref_A.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(B.numpy(), ref_B.numpy(), rtol=0, atol=1e-12)
    assert not np.allclose(A.numpy(), B.numpy())


@given(
    tau=st.floats(-2, 60) | st.sampled_from([np.nan, np.inf, -np.inf]),
    W=st.integers(1, 6),
    lead=st.integers(1, 5),
    S=st.integers(2, 50),
)
def test_patch_window_lies_on_the_grid_after_the_split(tau, W, lead, S):
    win = patch_window(tau, W, lead, S)
    if not np.isfinite(tau) or tau < 0 or tau > S - 1:
        assert win is None
        return
    assert win is not None
    split, first, last = win
    assert 0 <= split < first <= last <= S - 1
    assert last - first + 1 <= W
    assert first - split <= lead
    if split > 0 and last < S - 1:  # not clipped: centred on round(τ)
        assert first <= round(tau) <= last


def _directions(F: int = 2) -> BranchDirections:
    phi = np.zeros((F, 64))
    for f in range(F):
        phi[f, f * 32 : (f + 1) * 32] = 1 / math.sqrt(32)
    return BranchDirections("factors", phi, np.zeros(F), np.ones(F), tuple(f"d{f}" for f in range(F)))


def test_causal_depth_end_to_end_on_a_tiny_model(tiny64):
    """Shapes, windows and the controls inside one run: the unpatched variant's agreement is the clone
    experiment's (same pairs, same split), and the curvature terms sum to the step predictor's H."""
    b, S = tiny64, 8
    cfg = CausalConfig(pairs=4, sym_points=2, window=1, patch_steps=2, split_lead=1, batch_pairs=3)
    seeds, states = causal_trajectories(b, cfg, S, LABEL)
    assert seeds == trajectory_seeds(cfg.seed, cfg.pairs) and len(set(seeds)) == 4
    d = _directions()
    tau = np.array([3.4, np.inf])
    out = causal_depth(b, b, d, seeds, states, 0.0, tau, tau, cfg, LABEL)
    L = b.num_layers
    assert out["curv_steps"].tolist() == [2, 3, 4]
    assert out["curv_windows"].tolist() == [[2, 4], [-1, -1]]
    assert out["curv_contrib"].shape == (3, 2, 2, L + 1)
    assert out["patch_windows"].tolist() == [[2, 3, 4], [-1, -1, -1]]
    agree = out["patch_agree"]
    assert agree.shape == (2, L + 2, 4) and np.isnan(agree[1]).all()
    assert set(np.unique(agree[0])) <= {0.0, 1.0}
    A, B = sample_clones(b, seeds, [2], num_steps=S, class_label=LABEL)[2]
    ref = d.sides(A.numpy())[:, 0] == d.sides(B.numpy())[:, 0]
    np.testing.assert_array_equal(agree[0, VARIANT_NONE], ref)
    assert len(patch_variants(L)) == L + 2 and patch_variants(L)[VARIANT_ALL] == frozenset(range(L + 1))


def test_bad_input(tiny64):
    with pytest.raises(ValueError, match="sym_points"):
        CausalConfig(pairs=4, sym_points=8).validate()
    with pytest.raises(ValueError, match="window"):
        CausalConfig(window=0).validate()
    with pytest.raises(ValueError, match="variant units"):
        ResidualPatch(tiny64.transformer, [frozenset({7})], [T], guided=False)
    with pytest.raises(ValueError, match="donor"):
        ResidualPatch(tiny64.transformer, [frozenset({1})], [T], guided=False, donor="other")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="start_step"):
        sample_pairs(tiny64, [0], num_steps=4, start_step=2)
    with pytest.raises(ValueError, match="start_states A"):
        z = torch.zeros(2, 1, 8, 8, dtype=torch.float64)
        sample_pairs(tiny64, [0], num_steps=4, start_step=2, start_states=(z, z))


def test_curvature_terms_of_the_shipped_mixture_sum_to_its_curvature():
    """On the shipped 4-block mixture DiT (float64 copy), at symmetric points of its own trajectories near
    the half factor's sign change: the unit terms sum to the step predictor's central difference at
    h = 1e-4 to 1e-7 relative (measured ≤ 6e-9, and 100× more at h = 1e-3: the O(h²) truncation), and
    most of the change across the window sits in the last block (measured share 0.80)."""
    from dit_validation.branches import branch_directions, to_tensor
    from dit_validation.causal import curvature_decomposition
    from dit_validation.models import float64_copy, resolve_model
    from dit_validation.step_predictor import symmetric_states
    from theory import DDPMSchedule, sampling_timesteps

    b = resolve_model("mixture")
    b64 = float64_copy(b)
    d = branch_directions(b, num=1)
    S, steps = 50, [15, 19]
    states = trajectory_states(b, [0, 1, 2], S, 0)
    contrib = curvature_decomposition(b64, states, steps, d, 0.0, 0)
    sym = symmetric_states(states, d, S)
    sched = DDPMSchedule()
    ts = sampling_timesteps(sched, S)
    phi = to_tensor(d, states.shape[2:], b64.device)
    with install_coupling(b64.transformer) as handle:
        for j, s in enumerate(steps):
            sigma = math.sqrt(1 - sched.alphas_cumprod[ts[s]])
            x = torch.as_tensor(sym[s])
            H = difference_curvature(b64, handle, x, phi, int(ts[s]), sigma, 0.0, 0, h=1e-4)
            np.testing.assert_allclose(contrib[j].sum(-1), H, rtol=0, atol=1e-7 * np.abs(H).max())
    change = np.abs((contrib[1] - contrib[0]).mean(0)[0, 1:])  # (L,) blocks
    assert change[-1] / change.sum() > 0.5

"""Replica initialization (eq. 67–69), DDIM pair sampling, guidance, noise streams, prefix sharing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler
from hypothesis import given, settings
from hypothesis import strategies as st

from dit_validation import sampler
from dit_validation.coupling import install_coupling
from dit_validation.sampler import (
    branched_row_steps,
    make_scheduler,
    predict_eps,
    replica_correlation,
    replica_init,
    sample_branched,
    sample_pairs,
)

B64 = torch.float64


def test_replica_init_preserves_variance_and_correlation():
    """Seeded statistical test of eq. (67)–(69): Var(z^A) = Var(z^B) = 1, corr = ϱ(σ)."""
    n = 400_000
    g = torch.Generator().manual_seed(0)
    z, d = torch.randn(n, generator=g, dtype=B64), torch.randn(n, generator=g, dtype=B64)
    for sigma in (0.0, 0.5, 1.0, 2.0):
        a, b = replica_init(z, d, sigma)
        se = np.sqrt(2.0 / n)  # standard error of a unit-variance sample variance
        assert abs(a.var().item() - 1) < 5 * se and abs(b.var().item() - 1) < 5 * se
        corr = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
        assert abs(corr - replica_correlation(sigma)) < 5 / np.sqrt(n)
        v = (a - b) / np.sqrt(2)  # eq. (68)
        torch.testing.assert_close(v, np.sqrt(2) * sigma * d / np.sqrt(1 + sigma**2))
    assert (
        replica_correlation(0.0) == 1.0 and replica_correlation(1.0) == 0.0 and replica_correlation(2.0) < 0
    )


@settings(max_examples=30, deadline=None)
@given(sigma=st.floats(0, 50), seed=st.integers(0, 1000))
def test_replica_init_properties(sigma, seed):
    g = torch.Generator().manual_seed(seed)
    z, d = torch.randn(16, generator=g, dtype=B64), torch.randn(16, generator=g, dtype=B64)
    a, b = replica_init(z, d, sigma)
    torch.testing.assert_close((a + b) / 2, z / np.sqrt(1 + sigma**2))  # common mode carries z_T only
    assert -1.0 <= replica_correlation(sigma) <= 1.0


def test_bad_sampler_inputs(tiny64):
    z = torch.zeros(3, dtype=B64)
    with pytest.raises(ValueError, match=r"sigma must lie in \[0, inf\], got -0.1"):
        replica_init(z, z, -0.1)
    b = tiny64
    with pytest.raises(ValueError, match=r"t_int must lie in \[0, 4\], got 5"):
        sample_pairs(b, [0], t_int=5, num_steps=4)
    with pytest.raises(ValueError, match=r"ddim_eta must lie in \[0, 1\], got 2"):
        sample_pairs(b, [0], num_steps=4, ddim_eta=2.0)
    with pytest.raises(ValueError, match=r"g must lie in \[0, 1\], got -0.5"):
        sample_branched(b, [0], [0, 2], g=-0.5, num_steps=4)


def test_trailing_spacing_starts_at_T(tiny64):
    s = make_scheduler(tiny64, 100)
    assert s.timesteps[0].item() == 999 and s.timesteps[-1].item() == 9 and len(s.timesteps) == 100


def _reference_ddim(bundle, z, steps, eta, noises):
    """Independent single-trajectory DDIM loop on the unmodified model (no coupling installed)."""
    sched = DDIMScheduler.from_config(bundle.scheduler_config, timestep_spacing="trailing", clip_sample=False)
    sched.set_timesteps(steps)
    for s, t in enumerate(sched.timesteps):
        with torch.no_grad():
            eps = bundle.transformer(
                z, timestep=t.repeat(z.shape[0]), class_labels=torch.zeros(z.shape[0], dtype=torch.long)
            ).sample[:, :1]
        z = sched.step(eps, t, z, eta=eta, variance_noise=noises[s] if eta > 0 else None).prev_sample
    return z


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_uncoupled_pairs_equal_independent_trajectories(tiny64, eta):
    b = tiny64
    seeds, S = [3, 7], 5
    zA, zB = sample_pairs(b, seeds, g=0.0, num_steps=S, ddim_eta=eta, sigma=0.5)
    a0, b0 = sampler.initial_pairs(seeds, (1, 8, 8), 0.5)
    nA = [
        torch.stack([sampler.stream_normal(s, sampler.STREAM_NOISE_A, k, (1, 8, 8)) for s in seeds])
        for k in range(S)
    ]
    nB = [
        torch.stack([sampler.stream_normal(s, sampler.STREAM_NOISE_B, k, (1, 8, 8)) for s in seeds])
        for k in range(S)
    ]
    torch.testing.assert_close(zA, _reference_ddim(b, a0, S, eta, nA), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(zB, _reference_ddim(b, b0, S, eta, nB), rtol=1e-10, atol=1e-10)


def test_results_do_not_depend_on_batch_composition(tiny64):
    b = tiny64
    full = sample_pairs(b, [0, 1, 2], g=0.6, t_int=3, num_steps=5, ddim_eta=1.0)
    one = sample_pairs(b, [1], g=0.6, t_int=3, num_steps=5, ddim_eta=1.0)
    torch.testing.assert_close(full[0][1:2], one[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(full[1][1:2], one[1], rtol=1e-10, atol=1e-10)


def test_symmetric_start_and_shared_noise_stay_identical(tiny64):
    b = tiny64
    # σ = 0 and shared noise throughout: the replicas never differ, coupled or not
    for g in (0.0, 0.8):
        zA, zB = sample_pairs(b, [4], g=g, num_steps=4, ddim_eta=1.0, sigma=0.0, shared_noise_until=4)
        torch.testing.assert_close(zA, zB, rtol=0, atol=0)
    zA, zB = sample_pairs(b, [4], num_steps=4, ddim_eta=1.0, sigma=0.0, shared_noise_until=2)
    assert (zA - zB).abs().max() > 1e-3  # independent noise after step 2 separates them


def test_guided_eps_matches_manual_cfg_and_couples_cond_rows(tiny64):
    b = tiny64
    z = torch.randn(4, 1, 8, 8, dtype=B64, generator=torch.Generator().manual_seed(0))  # 2 pairs
    t, s = 500, 3.0
    with install_coupling(b.transformer) as h:
        eps = predict_eps(b, h, z, t, np.zeros(2), class_label=1, guidance_scale=s)
        eps_g = predict_eps(b, h, z, t, np.full(2, 0.7), class_label=1, guidance_scale=s)
        swapped = predict_eps(b, h, z[[2, 3, 0, 1]], t, np.full(2, 0.7), class_label=1, guidance_scale=s)
    with torch.no_grad():
        tt = torch.full((4,), t)
        c = b.transformer(z, timestep=tt, class_labels=torch.full((4,), 1)).sample[:, :1]
        u = b.transformer(z, timestep=tt, class_labels=torch.full((4,), b.null_class)).sample[:, :1]
    torch.testing.assert_close(eps, u + s * (c - u), rtol=1e-10, atol=1e-10)
    assert (eps_g - eps).abs().max() > 1e-6
    torch.testing.assert_close(swapped, eps_g[[2, 3, 0, 1]], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shared", [False, True])
def test_prefix_sharing_equals_from_scratch(tiny64, forward_counter, shared):
    """Every branch of the shared trunk equals an independent run with the same streams."""
    b = tiny64
    seeds, S, grid, g = [0, 5], 6, [0, 2, 3, 6], 0.0 if shared else 0.7
    with forward_counter(b.transformer) as count:
        br = sample_branched(
            b, seeds, grid, g=g, shared_trunk_noise=shared, num_steps=S, ddim_eta=1.0, batch_size=3
        )
    # pair-forward rows: trunk (6 steps) + branches (6 + 4 + 3) per seed
    assert count.rows == 2 * len(seeds) * branched_row_steps(S, grid) == 2 * 2 * 19
    for t in grid:
        ref = sample_pairs(
            b, seeds, g=g, t_int=t, num_steps=S, ddim_eta=1.0, shared_noise_until=t if shared else 0
        )
        torch.testing.assert_close(br[t][0], ref[0], rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(br[t][1], ref[1], rtol=1e-6, atol=1e-9)


def test_callback_sees_every_step(tiny64):
    seen = []
    sample_pairs(
        tiny64, [0, 1], num_steps=4, ddim_eta=0.0, callback=lambda s, t, z: seen.append((s, t, z.shape))
    )
    assert [x[0] for x in seen] == [0, 1, 2, 3] and seen[0][1] == 999
    assert seen[0][2] == (4, 1, 8, 8)


@pytest.mark.parametrize("g", [0.0, 0.7])
def test_pairs_continued_from_their_stored_state_are_the_pairs(tiny64, g):
    """start_states at step s = the state the run itself reached there: the continuation is the run, to
    rounding (the noise of each step is the same keyed draw); pairs and replicas stay in their rows."""
    b, S, s0 = tiny64, 6, 2
    seen = {}
    kw = dict(g=g, t_int=4, num_steps=S, ddim_eta=1.0, sigma=0.5)
    full = sample_pairs(b, [3, 8], callback=lambda s, t, z: seen.setdefault(s, z.clone()), **kw)
    z = seen[s0 - 1]  # the state after step s0 − 1 enters step s0
    cont = sample_pairs(b, [3, 8], start_step=s0, start_states=(z[:2], z[2:]), **kw)
    torch.testing.assert_close(cont[0], full[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(cont[1], full[1], rtol=0, atol=1e-12)
    assert (full[0] - full[1]).abs().max() > 1e-3

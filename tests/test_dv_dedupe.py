"""No forward computed twice: each deduplicated sampling path against the straightforward one, bit for bit.

The deduplicated paths run fewer rows per forward than the straightforward ones, so bit-identity rests on
one premise, tested first: a row's result does not depend on the other rows of its batch. That holds on
the CPU once a forward has a few rows (float64 here: ≥ 4; below, BLAS switches to small-matrix GEMM
kernels whose last bits differ), so every comparison below keeps its forwards at ≥ 4 rows. Forward counts
are checked with the test suite's own counter (a pre-hook on the transformer), independent of the
package's tally.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from dit_validation.branches import BranchDirections
from dit_validation.clone_sampler import clone_row_steps, clone_trunk, sample_clones
from dit_validation.coupling import install_coupling
from dit_validation.forwards import forwards
from dit_validation.sampler import (
    branched_row_steps,
    initial_pairs,
    predict_eps,
    sample_branched,
    sample_pairs,
    sample_single,
)
from dit_validation.step_predictor import trajectory_states

S = 6
SHAPE = (1, 8, 8)


def _equal(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    assert torch.equal(a, b), f"max |difference| {(a - b).abs().max().item():.3g}"


def test_rows_do_not_depend_on_the_rest_of_the_batch(tiny64):
    """The premise: pair i's ε̂ is the same bits whichever other pairs share its forward (≥ 4 rows)."""
    z = torch.randn(16, *SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)  # 8 pairs
    g = np.linspace(0.0, 0.9, 8)
    with install_coupling(tiny64.transformer) as h:
        full = predict_eps(tiny64, h, z, 700, g, 1, 1.0)
        for pairs in ([0, 1], [5, 2, 7], [3, 4, 6, 0, 1]):
            rows = pairs + [8 + p for p in pairs]
            _equal(predict_eps(tiny64, h, z[rows], 700, g[pairs], 1, 1.0), full[rows])


def test_tally_counts_every_model_row(tiny64, forward_counter):
    """predict_eps counts its model rows: 2 per pair, 4 per pair under guidance (cond and null class)."""
    z = torch.zeros(6, *SHAPE, dtype=torch.float64)
    guided = replace(tiny64, guidance_scale=3.0)
    with install_coupling(tiny64.transformer) as h, forward_counter(tiny64.transformer) as count:
        before = forwards.snapshot()
        predict_eps(tiny64, h, z, 500, np.zeros(3), 0, 1.0)
        predict_eps(guided, h, z, 500, np.full(3, 0.5), 0, 3.0)
        added = forwards.snapshot() - before
    assert count.rows == 6 + 12 and dict(added) == {"float64": 18}


@pytest.mark.parametrize("sigma", [0.0, 0.5])
@pytest.mark.parametrize("n", [4, 5])
def test_single_rows_are_replica_a_at_g0(tiny64, forward_counter, sigma, n):
    """sample_single = replica A of sample_pairs(g = 0) bit for bit, at half the rows (an odd count pads
    one row); with σ = 0 and shared noise it is both replicas."""
    seeds = list(range(10, 10 + n))
    with forward_counter(tiny64.transformer) as count:
        single = sample_single(tiny64, seeds, num_steps=S, sigma=sigma, batch_size=64)
    assert count.rows == S * (n + n % 2)
    A, B = sample_pairs(
        tiny64, seeds, g=0.0, num_steps=S, sigma=sigma, shared_noise_until=S if sigma == 0 else 0
    )
    _equal(single, A)
    if sigma == 0:
        _equal(single, B)
    else:
        assert (single - B).abs().max() > 1e-3  # σ > 0: B is another trajectory, not sampled here
    # micro-batched two slots (4 rows) per forward: the same bits
    _equal(sample_single(tiny64, seeds[:4], num_steps=S, sigma=sigma, batch_size=2), A[:4])


def test_trajectory_states_sample_one_row_per_seed(tiny64, forward_counter):
    """The states entering each step equal the straightforward σ = 0 shared-noise pair run's, at half the
    forwards."""
    seeds = [3, 4, 5, 6]
    with forward_counter(tiny64.transformer) as count:
        states = trajectory_states(tiny64, seeds, S, class_label=1, batch_size=2)
    assert count.rows == S * len(seeds) and states.shape == (S, 4, *SHAPE) and states.dtype == np.float64
    ref = [initial_pairs(seeds, SHAPE, 0.0)[0].numpy()]

    def keep(step, _t, z):
        if step + 1 < S:
            ref.append(z[: len(seeds)].double().numpy())
            np.testing.assert_array_equal(z[: len(seeds)], z[len(seeds) :])  # B is A: repeated work

    sample_pairs(
        tiny64, seeds, g=0.0, shared_noise_until=S, num_steps=S, sigma=0.0, class_label=1, callback=keep
    )
    np.testing.assert_array_equal(states, np.stack(ref))
    with forward_counter(tiny64.transformer) as count:  # the pair run, kept for a handful of seeds
        paired = trajectory_states(tiny64, seeds, S, class_label=1, dedupe=False)
    assert count.rows == 2 * S * len(seeds)
    np.testing.assert_array_equal(paired, states)


GRID = [0, 2, 3, S]


def _straightforward_clones(bundle, seeds, g, batch_size=64):
    """The clone experiment as it ran before sharing: a coupled-sampler trunk of two identical replicas,
    one per g, clone A re-sampled at g = 0."""
    return sample_branched(
        bundle,
        seeds,
        GRID,
        g=0.0,
        branch_g=g,
        shared_trunk_noise=True,
        num_steps=S,
        ddim_eta=1.0,
        sigma=0.0,
        class_label=1,
        guidance_scale=bundle.guidance_scale,
        device=bundle.device,
        batch_size=batch_size,
    )


def test_one_trunk_serves_every_g_and_g0_clone_a_is_the_trunk(tiny64, forward_counter):
    seeds = [0, 1, 2, 3]
    M = len(seeds)
    with forward_counter(tiny64.transformer) as count:
        trunk = clone_trunk(tiny64, seeds, GRID, num_steps=S, class_label=1, batch_size=2)
    assert count.rows == M * S  # one row per seed: σ = 0 and shared noise make the replicas one
    for g in (0.0, 0.6):
        with forward_counter(tiny64.transformer) as count:
            shared = sample_clones(tiny64, seeds, GRID, g=g, num_steps=S, class_label=1, trunk=trunk)
        per_clone = sum(S - t for t in GRID if t < S)
        assert count.rows == M * clone_row_steps(S, GRID, g) == M * per_clone * (1 if g == 0 else 2)
        with forward_counter(tiny64.transformer) as count:
            ref = _straightforward_clones(tiny64, seeds, g)
        assert count.rows == 2 * M * branched_row_steps(S, GRID)
        assert sorted(shared) == GRID
        for t in GRID:
            _equal(shared[t][0], ref[t][0])
            _equal(shared[t][1], ref[t][1])
        if g == 0:  # clone A continues the trunk with the trunk's noise: the trunk's final state
            assert all(torch.equal(shared[t][0], trunk.states[S]) for t in GRID)
        # sampling the trunk inside (no shared trunk) and micro-batching give the same bits
        alone = sample_clones(tiny64, seeds, GRID, g=g, num_steps=S, class_label=1, batch_size=2)
        for t in GRID:
            _equal(alone[t][0], shared[t][0])
            _equal(alone[t][1], shared[t][1])


def test_clones_refuse_a_trunk_sampled_for_other_seeds(tiny64):
    trunk = clone_trunk(tiny64, [0, 1, 2, 3], [0, 3], num_steps=S, class_label=1)
    with pytest.raises(ValueError, match=r"trunk was sampled for seeds \[0, 1, 2, 3\], 6 steps, class 1; "):
        sample_clones(tiny64, [4, 5, 6, 7], [0, 3], g=0.0, num_steps=S, class_label=1, trunk=trunk)
    with pytest.raises(ValueError, match=r"trunk has no state at split step\(s\) \[2\]"):
        sample_clones(tiny64, [0, 1, 2, 3], [0, 2], g=0.5, num_steps=S, class_label=1, trunk=trunk)
    with pytest.raises(ValueError, match=r"g must lie in \[0, 1\], got 1.5"):
        sample_clones(tiny64, [0, 1, 2, 3], [0, 3], g=1.5, num_steps=S, class_label=1, trunk=trunk)
    with pytest.raises(ValueError, match=r"t_int must lie in \[0, 6\], got 7"):
        clone_trunk(tiny64, [0, 1], [0, 7], num_steps=S, class_label=1)


def _directions(F: int = 2) -> BranchDirections:
    phi = np.linalg.qr(np.random.default_rng(0).normal(size=(64, F)))[0].T  # (F, 64) orthonormal
    return BranchDirections("test", phi, np.zeros(F), np.ones(F), tuple(f"d{f}" for f in range(F)))


def test_compare_runs_the_forwards_its_plan_needs(tiny32, tmp_path):
    """The package's tally over a whole micro comparison equals the closed form of its plan, with every
    repeated forward gone (the straightforward run's count in the comments)."""
    from conftest import TINY_COMPARE as cfg

    from dit_validation.compare import run_compare

    S, M, G, n, E = cfg.num_steps, cfg.clone_seeds, len(cfg.g), cfg.sym_points, cfg.em_pairs
    splits = sum(S - t for t in cfg.t_ints() if t < S)
    directions = 2 * cfg.clone_pairs * S  # clone endpoints split at step 0: trunk (clone A) + clone B
    clones = M * S + sum(M * splits * (1 if g == 0 else 2) for g in cfg.g)  # was 2·M·(S + splits) per g
    symmetric = 2 * n * S  # the pair run, kept (trajectory_states' dedupe=False)
    block = G * 2 * E * S  # Protocol II pairs at every g
    closure = E * S  # one row per seed (was 2·E·S)
    curvature = G * S * 2 * n * cfg.num_directions  # float64: one pair per point and direction
    before = forwards.snapshot()
    run_compare(tiny32, cfg, tmp_path, model_name="random:tiny", progress=False)
    counted = forwards.snapshot() - before
    assert dict(counted) == {
        "float32": directions + clones + symmetric + block + closure,
        "float64": curvature,
    }
    assert dict(counted) == {"float32": 1000, "float64": 160}

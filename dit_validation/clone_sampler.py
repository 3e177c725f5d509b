"""The clone experiment's sampling: one shared trunk per seed, cloned at split steps, continued at any g.

One stochastic DDIM trajectory (η = 1) per seed runs from z_T; at split step s (the state entering step s)
it is cloned into two copies (σ = 0 of eq. 67: no replica offset) that finish with independent noise,
coupled at g (eq. 19). What the experiment computes once:

* the **trunk** is one row per seed: its two replicas start equal (σ = 0), share their noise and are
  uncoupled, so they are the same trajectory; and it does not depend on the clones' g, so one
  :class:`CloneTrunk` serves every g of a comparison;
* at **g = 0 clone A is the trunk**: it continues the trunk's state, uncoupled, with the trunk's own noise
  (stream A of the key (seed, stream, step)), so its final state is the trunk's final state, for every
  split step; only clone B is sampled.

Every draw is keyed by (seed, replica, step), never by row position, so the sharing changes no draw; a
model whose per-row results do not depend on the batch's other rows (the premise of
``tests/test_dv_sampler.py``'s batch tests) gives bit-identical finals to running each clone pair from
scratch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from theory.validation import check_g, check_positive_int, check_range

from ._logging import progress as progress_bar
from .coupling import install_coupling
from .models import DiTBundle
from .sampler import (
    STREAM_NOISE_A,
    STREAM_NOISE_B,
    Stepper,
    initial_pairs,
    make_scheduler,
    sample_single,
    state_dtype,
    stream_normal,
)

__all__ = ["CloneTrunk", "clone_trunk", "sample_clones", "clone_row_steps"]


@dataclass(frozen=True)
class CloneTrunk:
    """The shared trajectory of the clone experiment: ``states[s]`` (M, C, H, W) is the state entering split
    step s for the seeds in order, ``states[num_steps]`` the final sample (the trunk always runs to the end:
    it is every g = 0 clone A)."""

    seeds: tuple[int, ...]
    num_steps: int
    class_label: int
    states: dict[int, torch.Tensor]


def _grid(t_ints: Sequence[int], num_steps: int) -> list[int]:
    grid = sorted({int(t) for t in t_ints})
    if not grid:
        raise ValueError("t_ints must contain at least one split step")
    check_range("t_int", np.asarray(grid), 0, num_steps)
    return grid


def clone_trunk(
    bundle: DiTBundle,
    seeds: Sequence[int],
    t_ints: Sequence[int],
    *,
    num_steps: int,
    class_label: int,
    batch_size: int = 64,
    progress: bool = False,
) -> CloneTrunk:
    """One DDIM η = 1 trajectory per seed from z_T, one row each, keeping the states entering ``t_ints``."""
    grid = set(_grid(t_ints, num_steps))
    shape = (bundle.latent_channels, bundle.sample_size, bundle.sample_size)
    z_T = initial_pairs(seeds, shape, 0.0)[0].to(device=bundle.device, dtype=state_dtype(bundle.dtype))
    states = {0: z_T} if 0 in grid else {}

    def keep(s: int, _t: int, z: torch.Tensor) -> None:
        if s + 1 in grid or s + 1 == num_steps:
            states[s + 1] = z

    sample_single(
        bundle,
        seeds,
        num_steps=num_steps,
        ddim_eta=1.0,
        sigma=0.0,
        class_label=class_label,
        guidance_scale=bundle.guidance_scale,
        batch_size=batch_size,
        callback=keep,
        progress=progress,
    )
    return CloneTrunk(tuple(int(s) for s in seeds), num_steps, int(class_label), states)


def clone_row_steps(num_steps: int, t_ints: Sequence[int], g: float) -> int:
    """Image rows per seed that :func:`sample_clones` runs at coupling g, the trunk not counted: both clones
    of every split before the end (S − t steps each), only clone B at g = 0 (clone A is the trunk)."""
    per_clone = sum(num_steps - t for t in _grid(t_ints, num_steps) if t < num_steps)
    return per_clone * (1 if g == 0 else 2)


def sample_clones(
    bundle: DiTBundle,
    seeds: Sequence[int],
    t_ints: Sequence[int],
    *,
    g: float = 0.0,
    num_steps: int,
    class_label: int,
    batch_size: int = 64,
    trunk: CloneTrunk | None = None,
    progress: bool = False,
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Final clone pairs {t_int: (z_0^A, z_0^B)} for every split step in ``t_ints``, clones coupled at g.

    ``trunk`` (from :func:`clone_trunk` for these seeds, steps and class, with every split step of
    ``t_ints``) is shared between the g of a comparison; None samples it here. Pairs are micro-batched to
    ``batch_size`` per forward; at g = 0 clone B's rows fill the pair slots two at a time. At t_int = S
    both clones are the trunk's final state, and at g = 0 every clone A is (the module docstring).
    """
    check_g(g)
    check_positive_int("num_steps", num_steps)
    check_positive_int("batch_size", batch_size)
    grid = _grid(t_ints, num_steps)
    seeds = [int(s) for s in seeds]
    if trunk is None:
        trunk = clone_trunk(
            bundle, seeds, grid, num_steps=num_steps, class_label=class_label, batch_size=batch_size
        )
    elif (trunk.seeds, trunk.num_steps, trunk.class_label) != (tuple(seeds), num_steps, int(class_label)):
        have = f"seeds {list(trunk.seeds)}, {trunk.num_steps} steps, class {trunk.class_label}"
        raise ValueError(
            f"trunk was sampled for {have}; these clones need seeds {seeds}, {num_steps} steps, class "
            f"{class_label}: sample the trunk for them (clone_trunk)"
        )
    missing = sorted(set(grid) - set(trunk.states))
    if missing:
        raise ValueError(f"trunk has no state at split step(s) {missing}; sample it with these t_ints")
    sched = make_scheduler(bundle, num_steps)
    sdt = state_dtype(bundle.dtype)
    shape = (bundle.latent_channels, bundle.sample_size, bundle.sample_size)
    M, final = len(seeds), trunk.states[num_steps]
    # split step → the clones' (A, B) states, equal at the split
    clones: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def noise(stream: int, s: int, copies: int) -> torch.Tensor:
        n = torch.stack([stream_normal(m, stream, s, shape) for m in seeds])
        return n.to(device=bundle.device, dtype=sdt).repeat(copies, 1, 1, 1)  # (copies·M, C, H, W)

    with install_coupling(bundle.transformer) as handle:
        step = Stepper(bundle, handle, sched, class_label, bundle.guidance_scale, 1.0, batch_size)
        for s, t in progress_bar(
            list(enumerate(sched.timesteps.tolist())), desc=f"clones g={g:g}", enabled=progress, leave=False
        ):
            if s in grid:
                clones[s] = (trunk.states[s], trunk.states[s])  # σ = 0: the clones start equal
            keys = sorted(clones)
            if not keys:
                continue  # before the first split there is only the trunk, sampled once
            B = torch.cat([clones[k][1] for k in keys])  # (len(keys)·M, C, H, W)
            nB = noise(STREAM_NOISE_B, s, len(keys))
            if g == 0:
                newA, newB = None, step.singles(t, B, nB)  # clone A continues the trunk: its final state
            else:
                A = torch.cat([clones[k][0] for k in keys])
                nA = noise(STREAM_NOISE_A, s, len(keys))
                newA, newB = step.pairs(t, A, B, np.full(A.shape[0], g), nA, nB)
            for j, k in enumerate(keys):
                rows = slice(j * M, (j + 1) * M)
                clones[k] = (final if newA is None else newA[rows], newB[rows])
    out = {t: clones[t] for t in grid if t < num_steps}
    if num_steps in grid:
        out[num_steps] = (final, final)  # split at the end: nothing left to diverge
    return {t: out[t] for t in grid}

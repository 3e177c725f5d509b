"""The measured side of the comparison: per-direction speciation steps from clone splits, at any coupling g.

One trajectory is run with shared noise (σ = 0, DDIM η = 1); at split step s (the state entering step s)
it is cloned into two replicas that finish with independent noise, coupled at g (eq. 19; g = 0 decouples
them, the shared-noise control of Fig. 5). The clones *agree* along φ_f when they end on the same side of
that direction's branch midpoint. Agreement rises from chance (split before the decision) to 1 (split
after it). The measured speciation step τ_f(g), its seed-bootstrap interval, replicates and status come
from the agreement arrays made here by :func:`dit_validation.clone_tau.fit_speciation`; a direction along
which the clones never split has no speciation step, reported as such, never as a number.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from theory import DDPMSchedule, exact_clone_agreement, sampling_timesteps
from theory.multiscale import DEFAULT_MIXTURE, clone_agreement, clone_experiment, mixture_eps

from .branches import BranchDirections
from .clone_sampler import CloneTrunk, sample_clones
from .models import DiTBundle

__all__ = ["dit_clone_agreement", "exact_clone_agreements", "exact_endpoints"]


def dit_clone_agreement(
    bundle: DiTBundle,
    directions: BranchDirections,
    g: float,
    seeds: Sequence[int],
    t_ints: Sequence[int],
    num_steps: int,
    class_label: int,
    batch_size: int = 64,
    progress: bool = False,
    trunk: CloneTrunk | None = None,
) -> np.ndarray:
    """Clone agreement along each direction: (F, T, M) in {0, 1} for split steps ``t_ints`` (T,); ``trunk``
    (:func:`~dit_validation.clone_sampler.clone_trunk`) is shared between the g of a comparison."""
    finals = sample_clones(
        bundle,
        list(seeds),
        t_ints,
        g=g,
        num_steps=num_steps,
        class_label=class_label,
        batch_size=batch_size,
        trunk=trunk,
        progress=progress,
    )
    agree = np.empty((directions.num, len(t_ints), len(seeds)))
    for j, t in enumerate(t_ints):
        zA, zB = finals[int(t)]
        sA, sB = directions.sides(zA.double().cpu().numpy()), directions.sides(zB.double().cpu().numpy())
        agree[:, j] = (sA == sB).T  # (F, M)
    return agree


def exact_clone_agreements(
    t_ints: Sequence[int], num_steps: int, num_seeds: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact-score sampler clone agreement (F, T, M) and its closed form (F, T) for the mixture, g = 0."""
    mix = DEFAULT_MIXTURE
    sched = DDPMSchedule()
    ab = sched.alphas_cumprod
    shape = (mix.channels, mix.size, mix.size)
    pairs = clone_experiment(
        lambda x, t: mixture_eps(mix, x, ab[t]), shape, num_steps, t_ints, num_seeds, seed=seed, ddim_eta=1.0
    )
    ts = sampling_timesteps(sched, num_steps)
    ab_split = np.array([ab[ts[s]] if s < num_steps else 1.0 - 1e-12 for s in t_ints])
    return clone_agreement(mix, pairs), exact_clone_agreement(mix, ab_split)


def exact_endpoints(num_pairs: int, num_steps: int, seed: int) -> np.ndarray:
    """Samples of the exact-score sampler (DDIM η = 1, the clone convention): the endpoints of ``num_pairs``
    clone pairs split at step 0 on the mixture testbed, (2·num_pairs, d) float64."""
    mix = DEFAULT_MIXTURE
    ab = DDPMSchedule().alphas_cumprod
    shape = (mix.channels, mix.size, mix.size)
    pairs = clone_experiment(
        lambda x, t: mixture_eps(mix, x, ab[t]), shape, num_steps, [0], num_pairs, seed=seed, ddim_eta=1.0
    )
    return pairs[0].reshape(2 * num_pairs, -1)

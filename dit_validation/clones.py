"""The measured side of the comparison: per-direction speciation steps from clone splits, at any coupling g.

One trajectory is run with shared noise (σ = 0, DDIM η = 1); at split step s (the state entering step s)
it is cloned into two replicas that finish with independent noise, coupled at g (eq. 19; g = 0 decouples
them, the shared-noise control of Fig. 5). The clones *agree* along φ_f when they end on the same side of
that direction's branch midpoint. Agreement rises from chance (split before the decision) to 1 (split
after it); the sigmoid center of the mean agreement over split steps, with a seed-bootstrap CI, is the
measured speciation step τ_f(g). A direction along which the clones never split (≥ 90% agree even when
split at step 0) has no speciation step, reported as such (``splits`` False, τ NaN), never as a number.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from theory import DDPMSchedule, exact_clone_agreement, sampling_timesteps
from theory.multiscale import DEFAULT_MIXTURE, clone_agreement, clone_experiment, mixture_eps

from .branches import BranchDirections
from .clone_sampler import CloneTrunk, sample_clones
from .fits import bootstrap_center
from .models import DiTBundle

__all__ = ["SPLIT_AGREEMENT", "dit_clone_agreement", "exact_clone_agreements", "fit_speciation"]

#: A direction "splits" when fewer than this fraction of clone pairs split at step 0 agree along it.
SPLIT_AGREEMENT = 0.9


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


def fit_speciation(t_ints: np.ndarray, agree: np.ndarray, n_boot: int, seed: int) -> dict[str, np.ndarray]:
    """Sigmoid center of the mean agreement per direction with a 95% seed-bootstrap CI.

    agree (F, T, M) → ``fit`` (F, 4), ``tau`` (F,), ``tau_ci`` (F, 2), ``splits`` (F,) bool and the bootstrap
    centers are recomputed from the same seed resamples for every direction (``seed``), so differences of
    τ between directions have a paired CI (:func:`gap_bootstrap`).
    """
    F = agree.shape[0]
    t = np.asarray(t_ints, dtype=np.float64)
    out = {
        "fit": np.full((F, 4), np.nan),
        "tau": np.full(F, np.nan),
        "tau_ci": np.full((F, 2), np.nan),
        "splits": np.zeros(F, bool),
    }
    first = int(np.argmin(t))
    for f in range(F):
        out["splits"][f] = agree[f, first].mean() < SPLIT_AGREEMENT
        if not out["splits"][f]:
            continue
        # mean, not median: per-seed agreement is binary, its median is a step function
        fit, ci = bootstrap_center(t, agree[f], curve=lambda Y: Y.mean(axis=1), n_boot=n_boot, seed=seed)
        out["fit"][f], out["tau"][f], out["tau_ci"][f] = fit.params, fit.center, ci
    return out


def gap_bootstrap(
    t_ints: np.ndarray, agree: np.ndarray, splits: np.ndarray, lead: int, trail: int, n_boot: int, seed: int
) -> np.ndarray:
    """Replicates of the measured gap from paired seed resamples, (n_boot,), with the convention of
    :func:`dit_validation.compare_report.gaps`: τ_trail − τ_lead where both directions split, 0 where neither
    does, NaN where only one does or a fit fails."""
    from .fits import fit_sigmoid

    t = np.asarray(t_ints, dtype=np.float64)
    rng = np.random.default_rng(seed)
    M = agree.shape[-1]
    out = np.full(n_boot, np.nan)
    if not splits[lead] and not splits[trail]:
        return np.zeros(n_boot)
    if not (splits[lead] and splits[trail]):
        return out
    for b in range(n_boot):
        idx = rng.integers(0, M, M)
        lo = fit_sigmoid(t, agree[lead][:, idx].mean(axis=1)).center
        hi = fit_sigmoid(t, agree[trail][:, idx].mean(axis=1)).center
        out[b] = hi - lo
    return out

"""The step-level predictor inside a DiT: the learned curvature along branch directions at symmetric points.

At reverse step s the network's ε̂ is the score, up to −σ_t. Along a unit branch direction φ_f and at a
point x on every branch's decision boundary (a *symmetric point*), the learned curvature

    H_f(s; g) = σ_t⁻¹ φ_fᵀ (∂ε̂_v/∂v) φ_f

is positive while the symmetric state is stable along φ_f and turns non-positive when it splits: for the
exact score H_f = (1 − κ_f)/c_f with κ_f = m_f²/c_f, the γ → ∞ limit of eq. (50), so its first sign change
is the pitchfork κ_f = 1 of eq. (49)/(51) read off the network, with no m, c or γ fit
(:mod:`theory.step_curvature`). With replica coupling g (eq. 19) the derivative is the difference
channel's: both replicas sit at x, replica A is moved by +hφ/√2 and B by −hφ/√2 (eq. 20), and
ε̂_v = (ε̂_A − ε̂_B)/√2; at g = 0 this is the single-model curvature. The difference response is odd in h
(exchange symmetry), so one evaluation at +h is a central difference: error O(h²), in float64.

Symmetric points at step s are the states x_s of sampled trajectories (the model's own marginal at
step s) moved onto every decision boundary (:meth:`BranchDirections.symmetric`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from theory import DDPMSchedule, curvature_sign_change, sampling_timesteps

from .branches import BranchDirections, to_tensor
from .coupling import install_coupling
from .models import DiTBundle
from .sampler import initial_pairs, predict_eps, sample_pairs, sample_single

__all__ = ["trajectory_states", "symmetric_states", "difference_curvature", "step_curvatures"]


@torch.no_grad()
def trajectory_states(
    bundle: DiTBundle,
    seeds: Sequence[int],
    num_steps: int,
    class_label: int = 0,
    batch_size: int = 64,
    dedupe: bool = True,
) -> np.ndarray:
    """States x_s entering every reverse step s of one DDPM trajectory per seed: (S, n, C, H, W) float64.

    Single trajectories, DDIM η = 1 as the clone experiment: σ = 0 replicas sharing their noise at g = 0
    are one trajectory, sampled once (:func:`~dit_validation.sampler.sample_single`), ``batch_size`` pair
    slots per forward. ``dedupe`` False samples each seed as that pair of identical replicas, all seeds in
    one forward per step (twice the rows: the run before deduplication), for a handful of seeds whose
    deduplicated forwards would be smaller than the batch size at which BLAS switches GEMM kernels, so
    that they stay bit-identical (tests/test_dv_dedupe.py).
    """
    shape = (bundle.latent_channels, bundle.sample_size, bundle.sample_size)
    states: list[np.ndarray] = [initial_pairs(seeds, shape, 0.0)[0].numpy()]  # z_T, float64
    n = len(seeds)

    def keep(step: int, _t: int, z: torch.Tensor) -> None:
        if step + 1 < num_steps:
            states.append(z[:n].double().cpu().numpy())  # replica A (the only one when deduplicated)

    common = dict(num_steps=num_steps, ddim_eta=1.0, sigma=0.0, class_label=class_label, callback=keep)
    if dedupe:
        sample_single(bundle, seeds, guidance_scale=bundle.guidance_scale, batch_size=batch_size, **common)
    else:
        sample_pairs(
            bundle,
            seeds,
            g=0.0,
            shared_noise_until=num_steps,
            guidance_scale=bundle.guidance_scale,
            device=bundle.device,
            **common,
        )
    return np.stack(states)


def symmetric_states(states: np.ndarray, directions: BranchDirections, num_steps: int) -> np.ndarray:
    """``states`` (S, n, C, H, W) moved onto every decision boundary at step s's signal scale √ᾱ_t."""
    sched = DDPMSchedule()
    ab = sched.alphas_cumprod[sampling_timesteps(sched, num_steps)]  # (S,)
    S, n = states.shape[:2]
    flat = states.reshape(S, n, -1)
    out = np.stack([directions.symmetric(flat[s], math.sqrt(ab[s])) for s in range(S)])
    return out.reshape(states.shape)


@torch.no_grad()
def difference_curvature(
    bundle64: DiTBundle,
    handle,
    x: torch.Tensor,
    phi: torch.Tensor,
    timestep: int,
    sigma_t: float,
    g: float,
    class_label: int,
    h: float = 1e-3,
) -> np.ndarray:
    """H[i, f] = σ_t⁻¹ φ_fᵀ ∂ε̂_v/∂v φ_f at points x (n, C, H, W) for unit directions φ (F, C, H, W), (n, F).

    One forward of n·F replica pairs (A = x + hφ/√2, B = x − hφ/√2) through the coupled float64 model.
    """
    n, F = x.shape[0], phi.shape[0]
    shift = (h / math.sqrt(2.0)) * phi[None]  # (1, F, C, H, W)
    A = (x[:, None] + shift).reshape(n * F, *x.shape[1:])
    B = (x[:, None] - shift).reshape(n * F, *x.shape[1:])
    eps = predict_eps(
        bundle64, handle, torch.cat([A, B]), timestep, np.full(n * F, g), class_label, bundle64.guidance_scale
    )
    eps_v = (eps[: n * F] - eps[n * F :]).reshape(n, F, -1) / math.sqrt(2.0)  # (n, F, d)
    return (torch.einsum("nfd,fd->nf", eps_v, phi.flatten(1)) / (h * sigma_t)).cpu().numpy()


def step_curvatures(
    bundle64: DiTBundle,
    sym: np.ndarray,
    directions: BranchDirections,
    g_values: Sequence[float],
    class_label: int,
    h: float = 1e-3,
    progress: bool = False,
) -> np.ndarray:
    """H_f(s; g) at every step and symmetric point: (G, S, n, F) float64 (``sym`` (S, n, C, H, W))."""
    sched = DDPMSchedule()
    S = sym.shape[0]
    ts = sampling_timesteps(sched, S)
    sigma = np.sqrt(1.0 - sched.alphas_cumprod[ts])
    shape = sym.shape[2:]
    phi = to_tensor(directions, shape, bundle64.device)
    out = np.full((len(g_values), S, sym.shape[1], directions.num), np.nan)
    with install_coupling(bundle64.transformer) as handle:
        for i, g in enumerate(g_values):
            for s in tqdm(range(S), disable=not progress, desc=f"curvature g={g:g}", leave=False):
                x = torch.as_tensor(sym[s], dtype=torch.float64, device=bundle64.device)
                out[i, s] = difference_curvature(
                    bundle64, handle, x, phi, int(ts[s]), float(sigma[s]), float(g), class_label, h
                )
    return out


def predicted_steps(H: np.ndarray) -> np.ndarray:
    """First sign change of the point-averaged curvature along the step axis: H (..., S, n, F) → (..., F)."""
    return np.asarray(curvature_sign_change(H.mean(axis=-2), axis=-2))

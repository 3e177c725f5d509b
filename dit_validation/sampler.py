"""Replica-pair DDIM sampling with coupling schedules and prefix sharing (§3, eq. 67–69).

Layout: a batch of P replica pairs is the latent tensor ``z`` of shape (2P, C, H, W) with rows
[A_1..A_P, B_1..B_P]; the model batch (with or without guidance) is built by
:class:`~dit_validation.layout.ReplicaLayout`, the module that owns the replica/guidance layout.
Uncoupled single trajectories (:func:`sample_single`, replica A at g = 0, where B would repeat A or go
unused) fill the same layout two rows to a pair slot.

Time: DDIM with ``timestep_spacing="trailing"``, so step s = 0 is at t = T - 1 = 999 (the fully
noised end, where z_T ~ N(0, I) of eq. 67 lives) and s = S - 1 is the last update; this matches
§3.2's "s = 0 (t = T)". Randomness: z_T, δ and every DDIM noise draw come from generators keyed by
(seed, stream, step), drawn on the CPU in float64, so results depend neither on batch size,
on batching order nor on the device's RNG.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DDIMScheduler

from theory.schedules import DDPMSchedule, sampling_timesteps
from theory.streams import torch_normal
from theory.validation import check_g, check_positive_int, check_range

from ._logging import progress as progress_bar
from .coupling import CouplingHandle, install_coupling
from .forwards import forwards
from .layout import ReplicaLayout
from .models import DiTBundle

logger = logging.getLogger(__name__)

# Random stream ids: z_T, δ (eq. 67) and per-step DDIM noise of replica A and B.
STREAM_Z, STREAM_DELTA, STREAM_NOISE_A, STREAM_NOISE_B = 0, 1, 2, 3
# z_T, δ of the held-out pairs that build Protocol II's mode basis: streams of their own, so basis pair i
# and measured pair i are independent draws whatever the seed integers.
STREAM_BASIS_Z, STREAM_BASIS_DELTA = 4, 5
MEASURED_STREAMS = (STREAM_Z, STREAM_DELTA)
BASIS_STREAMS = (STREAM_BASIS_Z, STREAM_BASIS_DELTA)

StepCallback = Callable[[int, int, torch.Tensor], None]


def stream_normal(seed: int, stream: int, step: int, shape: Sequence[int]) -> torch.Tensor:
    """Standard normal draw (float64, CPU) from the torch stream keyed by (seed, stream, step)."""
    return torch_normal((seed, stream, step), shape)


def replica_init(z_T: torch.Tensor, delta: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Variance-preserving antisymmetric replica initialization, eq. (67).

    z_T^{A,B} = (z_T ± σ δ) / sqrt(1 + σ²); with z_T, δ ~ N(0, I) each replica has Var = I and the
    difference mode is v_T = sqrt(2) σ δ / sqrt(1 + σ²) (eq. 68).
    """
    check_range("sigma", sigma, 0.0)
    norm = (1.0 + sigma**2) ** 0.5
    return (z_T + sigma * delta) / norm, (z_T - sigma * delta) / norm


def replica_correlation(sigma: float | np.ndarray) -> float | np.ndarray:
    """Inter-replica correlation ϱ(σ) = (1 − σ²)/(1 + σ²), eq. (69)."""
    check_range("sigma", sigma, 0.0)
    s2 = np.asarray(sigma, dtype=np.float64) ** 2
    out = (1.0 - s2) / (1.0 + s2)
    return float(out) if out.ndim == 0 else out


def initial_pairs(
    seeds: Sequence[int],
    shape: Sequence[int],
    sigma: float,
    streams: tuple[int, int] = MEASURED_STREAMS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_T^A, z_T^B), each (M, *shape) float64 on CPU, one z_T and δ stream per seed (eq. 67).

    ``streams`` = (z_T stream, δ stream): :data:`MEASURED_STREAMS` for sampled pairs,
    :data:`BASIS_STREAMS` for Protocol II's held-out basis pairs.
    """
    z = torch.stack([stream_normal(s, streams[0], 0, shape) for s in seeds])  # (M, C, H, W)
    delta = torch.stack([stream_normal(s, streams[1], 0, shape) for s in seeds])
    return replica_init(z, delta, sigma)


def make_scheduler(bundle: DiTBundle, num_steps: int) -> DDIMScheduler:
    """DDIM on the bundle's DDPM schedule, trailing spacing (s = 0 ↔ t = 999).

    diffusers' ``DDIMScheduler`` does the stepping; its timesteps and ᾱ are checked against the package's
    one schedule (:class:`theory.schedules.DDPMSchedule`) whenever the config is a linear-β DDPM schedule.
    """
    check_positive_int("num_steps", num_steps)
    sched = DDIMScheduler.from_config(bundle.scheduler_config, timestep_spacing="trailing", clip_sample=False)
    cfg = sched.config
    if cfg.num_train_timesteps % num_steps:
        logger.warning(
            "num_steps=%d does not divide %d: DDIM's prev-timestep rule is then inexact",
            num_steps,
            cfg.num_train_timesteps,
        )
    sched.set_timesteps(num_steps)
    if cfg.beta_schedule == "linear" and not cfg.get("trained_betas"):
        ref = DDPMSchedule(cfg.num_train_timesteps, cfg.beta_start, cfg.beta_end)
        ts = sched.timesteps.cpu().numpy()
        if not np.array_equal(ts, sampling_timesteps(ref, num_steps)) or not np.allclose(
            sched.alphas_cumprod.double().numpy(), ref.alphas_cumprod, rtol=1e-6, atol=0
        ):
            raise RuntimeError("diffusers' DDIMScheduler disagrees with theory.schedules.DDPMSchedule")
    return sched


def resolve_guidance(bundle: DiTBundle, guidance_scale: float | None) -> float:
    """None → the bundle's default (4.0 for DiT-XL/2 as in diffusers' DiTPipeline)."""
    s = bundle.guidance_scale if guidance_scale is None else float(guidance_scale)
    check_range("guidance_scale", s, 0.0)
    return s


@torch.no_grad()
def predict_eps(
    bundle: DiTBundle,
    handle: CouplingHandle,
    z: torch.Tensor,
    t: int,
    g_pairs: np.ndarray,
    class_label: int,
    guidance_scale: float,
) -> torch.Tensor:
    """ε̂ for a replica-pair batch z (2P, C, H, W) at timestep t, coupling g_pairs (P,) (already validated).

    Guidance as diffusers' DiTPipeline: for scale > 1 the batch is doubled with the null class and
    ε = ε_u + s (ε_c − ε_u) on all ``latent_channels`` output channels (the original DiT code guides
    only 3 of the 4 latent channels; diffusers, and we, guide all). Learned-sigma channels are dropped.
    The batch layout is :class:`~dit_validation.layout.ReplicaLayout`'s. Every model row is counted in
    :data:`dit_validation.forwards.forwards`.
    """
    dit = bundle.transformer
    layout = ReplicaLayout(z.shape[0] // 2, guided=guidance_scale > 1.0)
    param = next(dit.parameters())
    x, labels = layout.model_batch(
        z.to(device=param.device, dtype=param.dtype), class_label, bundle.null_class
    )
    handle.state.assign(layout.row_g(g_pairs))
    forwards.add(x.shape[0], str(param.dtype).removeprefix("torch."))
    timestep = torch.full((x.shape[0],), int(t), dtype=torch.long, device=param.device)
    out = dit(x, timestep=timestep, class_labels=labels).sample[:, : bundle.latent_channels]  # drop learned σ
    return layout.guide(out.to(z.dtype), guidance_scale).to(z.device)


def _step_noise(
    seeds: Sequence[int], step: int, shape: Sequence[int], shared: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    nA = torch.stack([stream_normal(s, STREAM_NOISE_A, step, shape) for s in seeds])
    nB = nA if shared else torch.stack([stream_normal(s, STREAM_NOISE_B, step, shape) for s in seeds])
    return nA, nB


def _ddim(
    sched: DDIMScheduler,
    eps: torch.Tensor,
    t: int,
    z: torch.Tensor,
    ddim_eta: float,
    noise: torch.Tensor | None,
):
    """One DDIM update (Song et al. 2020a, eq. 12) with caller-owned noise; η = 1 ≈ DDPM."""
    kw = {"variance_noise": noise} if ddim_eta > 0 else {}
    return sched.step(eps, int(t), z, eta=float(ddim_eta), **kw).prev_sample


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    # Latent states stay in float32 (float64 in float64 runs) even when the model runs in bf16.
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_common(num_steps: int, ddim_eta: float, sigma: float) -> None:
    check_positive_int("num_steps", num_steps)
    check_range("ddim_eta", ddim_eta, 0.0, 1.0)
    check_range("sigma", sigma, 0.0)


@dataclass(frozen=True)
class Stepper:
    """What every reverse step of one sampling loop shares; steps replica pairs or uncoupled single rows,
    micro-batched to ``batch_size`` pair slots (2·batch_size states) per forward."""

    bundle: DiTBundle
    handle: CouplingHandle
    sched: DDIMScheduler
    class_label: int
    guidance_scale: float
    ddim_eta: float
    batch_size: int

    def pairs(
        self,
        t: int,
        A: torch.Tensor,
        B: torch.Tensor,
        g_pairs: np.ndarray,
        noise_A: torch.Tensor | None,
        noise_B: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of the pairs (A_i, B_i), each (R, C, H, W), pair i coupled at g_pairs[i] (eq. 19)."""
        newA, newB = torch.empty_like(A), torch.empty_like(B)
        for lo in range(0, A.shape[0], self.batch_size):
            hi = min(lo + self.batch_size, A.shape[0])
            z = torch.cat([A[lo:hi], B[lo:hi]])  # (2p, C, H, W)
            eps = predict_eps(
                self.bundle, self.handle, z, t, g_pairs[lo:hi], self.class_label, self.guidance_scale
            )
            noise = torch.cat([noise_A[lo:hi], noise_B[lo:hi]]) if self.ddim_eta > 0 else None
            z = _ddim(self.sched, eps, t, z, self.ddim_eta, noise)
            newA[lo:hi], newB[lo:hi] = z[: hi - lo], z[hi - lo :]
        return newA, newB

    def singles(self, t: int, z: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """One step of uncoupled trajectories z (n, C, H, W), two to a pair slot: at g = 0 eq. (19) has no
        inter block, so the rows of a slot never see each other. An odd n is padded with a copy of its last
        row (one row of extra work, its result dropped)."""
        n = z.shape[0]
        if n % 2:
            z = torch.cat([z, z[-1:]])
            noise = None if noise is None else torch.cat([noise, noise[-1:]])
        h = z.shape[0] // 2
        nA, nB = (None, None) if noise is None else (noise[:h], noise[h:])
        A, B = self.pairs(t, z[:h], z[h:], np.zeros(h), nA, nB)
        return torch.cat([A, B])[:n]


def sample_pairs(
    bundle: DiTBundle,
    seeds: Sequence[int],
    *,
    g: float = 0.0,
    t_int: int | None = None,
    shared_noise_until: int = 0,
    num_steps: int = 100,
    ddim_eta: float = 1.0,
    sigma: float = 0.5,
    class_label: int = 0,
    guidance_scale: float | None = None,
    blocks: Sequence[int] | None = None,
    device: str | torch.device = "cpu",
    callback: StepCallback | None = None,
    progress: bool = False,
    start_step: int = 0,
    start_states: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample P = len(seeds) replica pairs from scratch in one batch; returns final (z_0^A, z_0^B).

    Coupling schedule (Protocol I, §3.1): strength g for steps s < t_int, then 0 (t_int None →
    coupled throughout: Protocol II). Noise: replicas share the DDIM noise for s < shared_noise_until
    (the g = 0 control of Fig. 5), independent after. ``callback(step, timestep, latents)`` sees the
    (2P, C, H, W) state after each step. The model runs in its own dtype; states in float32/64.
    ``start_states`` (z^A, z^B), each (P, C, H, W): the pairs continue from these states entering step
    ``start_step`` instead of starting from eq. (67) (``sigma`` then unused); the noise of step s is the
    same keyed draw either way, so a stored trajectory continued from step s is the trajectory itself.
    """
    _check_common(num_steps, ddim_eta, sigma)
    check_g(g)
    t_int = num_steps if t_int is None else t_int
    check_range("t_int", t_int, 0, num_steps)
    check_range("start_step", start_step, 0, num_steps)
    sched = make_scheduler(bundle, num_steps)
    gs = resolve_guidance(bundle, guidance_scale)
    sdt = state_dtype(next(bundle.transformer.parameters()).dtype)
    shape = (bundle.latent_channels, bundle.sample_size, bundle.sample_size)
    P = len(seeds)
    if start_states is None:
        if start_step:
            raise ValueError(f"start_step={start_step} needs start_states (the states entering that step)")
        zA, zB = initial_pairs(seeds, shape, sigma)
    else:
        zA, zB = start_states
        for name, zs in (("A", zA), ("B", zB)):
            if tuple(zs.shape) != (P, *shape):
                raise ValueError(f"start_states {name} must have shape {(P, *shape)}, got {tuple(zs.shape)}")
    z = torch.cat([zA, zB]).to(device=device, dtype=sdt)  # (2P, C, H, W)
    with install_coupling(bundle.transformer, blocks) as handle:
        steps = list(enumerate(sched.timesteps.tolist()))[start_step:]
        for s, t in progress_bar(steps, desc=f"g={g:g} steps", enabled=progress, leave=False):
            g_pairs = np.full(P, g if s < t_int else 0.0)
            eps = predict_eps(bundle, handle, z, t, g_pairs, class_label, gs)
            noise = None
            if ddim_eta > 0:
                nA, nB = _step_noise(seeds, s, shape, shared=s < shared_noise_until)
                noise = torch.cat([nA, nB]).to(device=device, dtype=sdt)
            z = _ddim(sched, eps, t, z, ddim_eta, noise)
            if callback is not None:
                callback(s, int(t), z)
    return z[:P], z[P:]


def sample_single(
    bundle: DiTBundle,
    seeds: Sequence[int],
    *,
    num_steps: int,
    ddim_eta: float = 1.0,
    sigma: float = 0.0,
    class_label: int = 0,
    guidance_scale: float | None = None,
    batch_size: int = 64,
    callback: StepCallback | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Replica A of :func:`sample_pairs` at g = 0, without replica B: the final z_0^A, (M, C, H, W).

    At g = 0 eq. (19) has no inter block, so replica A never sees replica B: it is the DDIM trajectory of
    z_T^A of eq. (67) (σ = 0: z_T itself) with the stream-A noise, and this returns
    ``sample_pairs(bundle, seeds, g=0, sigma=sigma, ...)[0]`` at half the forwards. With σ = 0 and the
    noise shared throughout, replica B equals A and this is the whole pair. Rows fill the model batch two
    to a pair slot, ``batch_size`` slots per forward (the size of a pair forward); the noise is keyed by
    (seed, replica, step), never by row position. ``callback(step, timestep, latents)`` sees the
    (M, C, H, W) state after each step; the model runs on the bundle's device.
    """
    _check_common(num_steps, ddim_eta, sigma)
    check_positive_int("batch_size", batch_size)
    sched = make_scheduler(bundle, num_steps)
    gs = resolve_guidance(bundle, guidance_scale)
    sdt = state_dtype(bundle.dtype)
    shape = (bundle.latent_channels, bundle.sample_size, bundle.sample_size)
    z = initial_pairs(seeds, shape, sigma)[0].to(device=bundle.device, dtype=sdt)  # (M, C, H, W)
    with install_coupling(bundle.transformer) as handle:
        step = Stepper(bundle, handle, sched, class_label, gs, ddim_eta, batch_size)
        steps = list(enumerate(sched.timesteps.tolist()))
        for s, t in progress_bar(steps, desc="single steps", enabled=progress, leave=False):
            noise = None
            if ddim_eta > 0:
                noise = torch.stack([stream_normal(m, STREAM_NOISE_A, s, shape) for m in seeds])
                noise = noise.to(device=bundle.device, dtype=sdt)
            z = step.singles(t, z, noise)
            if callback is not None:
                callback(s, int(t), z)
    return z


def branched_row_steps(num_steps: int, t_ints: Sequence[int]) -> int:
    """Pair-forwards of one seed under prefix sharing: trunk up to max t_int plus S − t per branch."""
    grid = sorted(set(int(t) for t in t_ints))
    trunk = min(max(grid), num_steps)
    return trunk + sum(num_steps - t for t in grid if t < num_steps)


def sample_branched(
    bundle: DiTBundle,
    seeds: Sequence[int],
    t_ints: Sequence[int],
    *,
    g: float,
    branch_g: float = 0.0,
    shared_trunk_noise: bool = False,
    num_steps: int = 100,
    ddim_eta: float = 1.0,
    sigma: float = 0.5,
    class_label: int = 0,
    guidance_scale: float | None = None,
    blocks: Sequence[int] | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
    callback: StepCallback | None = None,
    progress: bool = False,
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Final pairs for every t_int in ``t_ints`` with prefix sharing; {t_int: (z_0^A, z_0^B)}.

    A coupled trunk (strength g, or g = 0 with shared noise when ``shared_trunk_noise``) is advanced
    once per seed; at step s = t_int its state is cloned into a branch with independent noise, coupled
    at ``branch_g`` (0: decoupled, Protocol I; > 0: branches that stay coupled after the split).
    Trunk and branch rows share forwards through a per-pair g, micro-batched to ``batch_size`` pairs. With
    ``branch_g = 0`` each branch equals ``sample_pairs(g=g, t_int=t_int)`` for the same streams (noise is
    keyed by (seed, replica, step), never by row position).
    """
    _check_common(num_steps, ddim_eta, sigma)
    check_g(g)
    check_g(branch_g, "branch_g")
    check_positive_int("batch_size", batch_size)
    grid = sorted(set(int(t) for t in t_ints))
    if not grid:
        raise ValueError("t_ints must contain at least one intervention step")
    check_range("t_int", np.asarray(grid), 0, num_steps)
    sched = make_scheduler(bundle, num_steps)
    gs = resolve_guidance(bundle, guidance_scale)
    sdt = state_dtype(next(bundle.transformer.parameters()).dtype)
    shape = (bundle.latent_channels, bundle.sample_size, bundle.sample_size)
    M = len(seeds)
    zA, zB = initial_pairs(seeds, shape, sigma)
    trunk = (zA.to(device=device, dtype=sdt), zB.to(device=device, dtype=sdt))
    branches: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    trunk_end = min(grid[-1], num_steps)  # the trunk is only needed until the last branch point
    steps = list(enumerate(sched.timesteps.tolist()))
    with install_coupling(bundle.transformer, blocks) as handle:
        step = Stepper(bundle, handle, sched, class_label, gs, ddim_eta, batch_size)
        for s, t in progress_bar(steps, desc=f"g={g:g} steps", enabled=progress, leave=False):
            if s in grid:
                branches[s] = (trunk[0].clone(), trunk[1].clone())
            keys: list[int | None] = ([None] if s < trunk_end else []) + sorted(branches)
            states = [trunk if k is None else branches[k] for k in keys]
            row_g = np.concatenate([np.full(M, g if k is None else branch_g) for k in keys])
            A = torch.cat([st[0] for st in states])  # (R, C, H, W), R = M * len(keys)
            B = torch.cat([st[1] for st in states])
            if ddim_eta > 0:
                nA, nB = _step_noise(seeds, s, shape, shared=False)
                nA, nB = nA.to(device=device, dtype=sdt), nB.to(device=device, dtype=sdt)
                noise_A = nA.repeat(len(keys), 1, 1, 1)
                noise_B = torch.cat([nA if (k is None and shared_trunk_noise) else nB for k in keys])
            else:
                noise_A = noise_B = None
            newA, newB = step.pairs(t, A, B, row_g, noise_A, noise_B)
            for j, k in enumerate(keys):
                new = (newA[j * M : (j + 1) * M], newB[j * M : (j + 1) * M])
                if k is None:
                    trunk = new
                else:
                    branches[k] = new
            if callback is not None:
                callback(s, int(t), torch.cat([newA, newB]))
    if num_steps in grid:
        branches[num_steps] = trunk  # t_int = S: coupled for the whole trajectory
    return {t: branches[t] for t in grid}

"""Where in depth a DiT makes its branch decision, measured causally (§2.7 prediction 2), once per g.

**Curvature decomposition.** The DiT is ε̂ = Head(h_L) with the residual stream h_L = h_0 + Σ_ℓ Δ_ℓ
(h_0 the embedded input, Δ_ℓ = block ℓ's output − input, ada_norm_zero blocks). Along a branch direction
φ_f at a symmetric point (a state on every decision boundary, :mod:`dit_validation.step_predictor`) the
learned curvature H_f(s; g) = σ_t⁻¹ φ_fᵀ (∂ε̂_v/∂v) φ_f — whose first sign change is the step-level
predicted τ_f (eq. 49–51 in the γ → ∞ limit) — therefore splits exactly by unit:

    H_f = σ_t⁻¹ φ_fᵀ J_out (dh_0 + Σ_ℓ dΔ_ℓ),

dh_0 and dΔ_ℓ the forward-mode tangents (``torch.autograd.forward_ad``, float64) that the embedding and
block ℓ write into the stream, read by hooks, and J_out the Jacobian of the output head at the final
stream, applied as the covector J_outᵀφ_f (one reverse-mode pass through the head alone). With
classifier-free guidance each term is guided like ε̂ (the decomposition is linear).

Coupling g (eq. 19): the replicas both sit at x and the difference channel moves A by +φ and B by −φ
(eq. 20; the √2 of v = (A − B)/√2 cancels). At a symmetric point A and B are equal, so by exchange
symmetry B's tangents are exactly minus A's and H_f is read off A's rows; B's rows are needed only as the
keys and values A attends to at g > 0. At g = 0 the replicas do not interact, so single rows suffice —
half the work, the same derivative.

**Patching** between clones: :mod:`dit_validation.patching`. The statistics and the verdict of prediction
2: :mod:`dit_validation.causal_stats`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
from torch.nn.attention import SDPBackend, sdpa_kernel

from theory import DDPMSchedule, sampling_timesteps
from theory.streams import stream_seed
from theory.validation import check_positive_int

from ._logging import progress as progress_bar
from .branches import BranchDirections, to_tensor
from .causal_stats import curvature_windows
from .coupling import CouplingHandle, install_coupling
from .layout import ReplicaLayout
from .models import DiTBundle
from .patching import patch_agreement
from .step_predictor import trajectory_states

__all__ = [
    "CausalConfig",
    "trajectory_seeds",
    "causal_trajectories",
    "curvature_contributions",
    "curvature_decomposition",
    "causal_depth",
]

#: Stream purpose of the trajectory seeds (key (seed, purpose) of :func:`theory.streams.stream_seed`).
PURPOSE_TRAJECTORIES = 0


@dataclass(frozen=True)
class CausalConfig:
    """Sizes of the causal depth measurements (one set for every g)."""

    pairs: int = 128  # trajectories = clone pairs patched per direction
    sym_points: int = 32  # the first of them, moved onto every decision boundary, for the curvature
    window: int = 2  # k: the curvature change is read across [round(τ_f) − k, round(τ_f) + k]
    patch_steps: int = 3  # W: steps patched, centred on round(τ_f)
    split_lead: int = 2  # the clones split this many steps before the patch window
    batch_pairs: int = 16  # clone pairs per patched batch (× L + 2 variants)
    n_boot: int = 1000
    seed: int = 0

    def validate(self) -> None:
        check_positive_int("pairs", self.pairs, minimum=2)
        check_positive_int("sym_points", self.sym_points, minimum=2)
        if self.sym_points > self.pairs:
            raise ValueError(f"sym_points must be at most pairs={self.pairs}, got {self.sym_points}")
        check_positive_int("window", self.window)
        check_positive_int("patch_steps", self.patch_steps)
        check_positive_int("split_lead", self.split_lead)
        check_positive_int("batch_pairs", self.batch_pairs)
        check_positive_int("n_boot", self.n_boot)


def trajectory_seeds(seed: int, n: int) -> list[int]:
    """n distinct sampler seeds for the causal measurements, from the stream keyed (seed, purpose)."""
    words = stream_seed(seed, PURPOSE_TRAJECTORIES).generate_state(n, dtype=np.uint64)
    out = [int(w) >> 1 for w in words]  # 63 bits: non-negative in any signed 64-bit consumer
    if len(set(out)) != n:
        raise RuntimeError(f"trajectory seeds for seed={seed} collide; choose another seed")
    return out


def causal_trajectories(
    bundle: DiTBundle, cfg: CausalConfig, num_steps: int, class_label: int
) -> tuple[list[int], np.ndarray]:
    """Seeds and states (S, pairs, C, H, W) of the trajectories every g shares (DDIM η = 1, g = 0)."""
    cfg.validate()
    seeds = trajectory_seeds(cfg.seed, cfg.pairs)
    return seeds, trajectory_states(bundle, seeds, num_steps, class_label)


class _UnitTerms:
    """Hooks that, during a dual forward, project the tangent each unit writes into the residual stream on
    the head's covector w = J_outᵀφ: one number per row and unit, so memory does not grow with depth."""

    def __init__(self, transformer: torch.nn.Module, w: torch.Tensor) -> None:
        self.t, self.w = transformer, w  # w (B, N, D)
        self.terms: list[torch.Tensor | None] = [None] * (len(transformer.transformer_blocks) + 1)

    def _keep(self, unit: int, tangent: torch.Tensor) -> None:
        self.terms[unit] = (self.w * tangent).flatten(1).sum(1)  # ⟨J_outᵀφ, d(write)⟩, (B,)

    def _embed(self, _m, _a, out: torch.Tensor) -> None:
        self._keep(0, fwAD.unpack_dual(out).tangent)  # dh_0

    def _block(self, ell: int):
        def hook(_m, args, out: torch.Tensor) -> None:
            self._keep(1 + ell, fwAD.unpack_dual(out).tangent - fwAD.unpack_dual(args[0]).tangent)  # dΔ_ℓ

        return hook

    def __enter__(self) -> _UnitTerms:
        self._h = [self.t.pos_embed.register_forward_hook(self._embed)] + [
            b.register_forward_hook(self._block(ell)) for ell, b in enumerate(self.t.transformer_blocks)
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._h:
            h.remove()


def _head_covector(bundle64: DiTBundle, x: torch.Tensor, kw: dict, cot: torch.Tensor) -> torch.Tensor:
    """J_outᵀ cot per row, (B, N, D): J_out the output head's Jacobian at the model's own final stream for
    input x, cot (B, C, H, W) on the ε̂ channels. The last block's output is swapped for a leaf copy, so
    the gradient runs through the head alone (the diffusers head is run, not copied)."""
    leaf: list[torch.Tensor] = []

    def swap(_m, _a, out: torch.Tensor) -> torch.Tensor:
        leaf.append(out.detach().requires_grad_(True))
        return leaf[0]

    hook = bundle64.transformer.transformer_blocks[-1].register_forward_hook(swap)
    try:
        with torch.enable_grad():
            out = bundle64.transformer(x, **kw).sample[:, : bundle64.latent_channels]
            (w,) = torch.autograd.grad((out * cot).sum(), leaf[0])
    finally:
        hook.remove()
    return w


def curvature_contributions(
    bundle64: DiTBundle,
    handle: CouplingHandle,
    x: torch.Tensor,
    phi: torch.Tensor,
    timestep: int,
    sigma_t: float,
    g: float,
    class_label: int,
) -> np.ndarray:
    """Per-unit terms of H_f at points x (n, C, H, W) along unit directions φ (F, C, H, W): (n, F, L + 1),
    unit 0 the embedded input, unit 1 + ℓ block ℓ; their sum over units is H_f(s; g) (module docstring)."""
    n, F = x.shape[0], phi.shape[0]
    R = n * F
    X = x[:, None].expand(n, F, *x.shape[1:]).reshape(R, *x.shape[1:])  # (R, C, H, W) row = (i, f)
    T = phi[None].expand(n, F, *phi.shape[1:]).reshape(R, *phi.shape[1:])
    if g == 0.0:  # independent rows: laid out as pairs of unrelated points (padded to even), all "A"
        pad = R % 2
        z = torch.cat([X, X[:pad]])
        tangent = torch.cat([T, T[:pad]])
    else:  # replica A at x moved by +φ, its partner B by −φ (eq. 20)
        z, tangent = torch.cat([X, X]), torch.cat([T, -T])
    layout = ReplicaLayout(z.shape[0] // 2, guided=bundle64.guidance_scale > 1.0)
    xm, labels = layout.model_batch(z, class_label, bundle64.null_class)
    tm, _ = layout.model_batch(tangent, class_label, bundle64.null_class)
    handle.state.assign(layout.row_g(np.full(layout.pairs, g)))
    kw = {"timestep": torch.full((xm.shape[0],), int(timestep), device=xm.device), "class_labels": labels}
    w = _head_covector(bundle64, xm, kw, tm)  # the covector J_outᵀφ, (rows, N, D)
    with _UnitTerms(bundle64.transformer, w) as tap, sdpa_kernel(SDPBackend.MATH), fwAD.dual_level():
        bundle64.transformer(fwAD.make_dual(xm, tm), **kw)  # SDPA's fused kernels have no forward AD
    units = torch.stack(tap.terms, dim=1)  # (rows, L + 1)
    guided = layout.guide(units, bundle64.guidance_scale)[:R]  # replica A rows, (R, L + 1)
    return (guided / sigma_t).reshape(n, F, -1).detach().cpu().numpy()


def curvature_decomposition(
    bundle64: DiTBundle,
    states: np.ndarray,
    steps: Sequence[int],
    directions: BranchDirections,
    g: float,
    class_label: int,
    progress: bool = False,
) -> np.ndarray:
    """Per-unit curvature terms at the symmetric points of ``states`` (S, n, C, H, W) (trajectory states
    entering every step, moved here onto every decision boundary), at ``steps``: (len(steps), n, F, L + 1)."""
    sched = DDPMSchedule()
    S = states.shape[0]
    ts = sampling_timesteps(sched, S)
    ab = sched.alphas_cumprod[ts]
    phi = to_tensor(directions, states.shape[2:], bundle64.device)
    out = np.full((len(steps), states.shape[1], directions.num, bundle64.num_layers + 1), np.nan)
    with install_coupling(bundle64.transformer) as handle:
        for j, s in enumerate(progress_bar(list(steps), desc=f"curvature g={g:g}", enabled=progress)):
            flat = states[s].reshape(states.shape[1], -1)
            sym = directions.symmetric(flat, math.sqrt(ab[s])).reshape(states[s].shape)
            x = torch.as_tensor(sym, dtype=torch.float64, device=bundle64.device)
            sigma = math.sqrt(1.0 - ab[s])
            out[j] = curvature_contributions(bundle64, handle, x, phi, int(ts[s]), sigma, g, class_label)
    return out


def causal_depth(
    bundle: DiTBundle,
    bundle64: DiTBundle,
    directions: BranchDirections,
    seeds: Sequence[int],
    states: np.ndarray,
    g: float,
    tau_curvature: np.ndarray,
    tau_patch: np.ndarray,
    cfg: CausalConfig,
    class_label: int,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Both causal measurements at one coupling g, raw (the statistics: :mod:`dit_validation.causal_stats`).

    ``seeds``, ``states`` from :func:`causal_trajectories` (shared by every g). ``tau_curvature`` (F,):
    where H_f changes sign, the comparison's step-level predicted τ_f(g) (``tau_pred_step``), which
    centres the curvature window; ``tau_patch`` (F,): where the clones decide, the comparison's measured
    τ_f(g) (``tau_meas``, NaN where a direction does not split), which centres the patch window. Returns
    ``curv_steps`` (S_w,), ``curv_contrib`` (S_w, n, F, L + 1) at the union of the windows' steps,
    ``curv_windows`` (F, 2), ``patch_agree`` (F, L + 2, M) and ``patch_windows`` (F, 3) (s_split, first,
    last patched step); −1 marks a direction without a window.
    """
    cfg.validate()
    S = states.shape[0]
    windows = curvature_windows(tau_curvature, cfg.window, S)
    steps = sorted({int(s) for lo, hi in windows if lo >= 0 for s in range(lo, hi + 1)})
    contrib = curvature_decomposition(
        bundle64, states[:, : cfg.sym_points], steps, directions, g, class_label, progress
    )
    agree, patch_windows = patch_agreement(
        bundle,
        directions,
        seeds,
        states,
        g,
        tau_patch,
        patch_steps=cfg.patch_steps,
        split_lead=cfg.split_lead,
        num_steps=S,
        class_label=class_label,
        batch_pairs=cfg.batch_pairs,
        progress=progress,
    )
    return {
        "curv_steps": np.asarray(steps, dtype=np.int64),
        "curv_contrib": contrib,
        "curv_windows": windows,
        "patch_agree": agree,
        "patch_windows": patch_windows,
    }

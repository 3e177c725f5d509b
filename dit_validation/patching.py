"""Activation patching between clones: which blocks carry the branch decision along φ_f (§2.7 prediction 2).

A trajectory is cloned at step s_split into a pair (A, B) that continues with independent noise (the clone
experiment of :mod:`dit_validation.clones`, coupled at g). During the *patch window* — W steps centred
on τ_f — replica A's residual writes of a set of *units* are replaced by B's: unit 0 is the embedded input
h_0, unit 1 + ℓ block ℓ's update Δ_ℓ = output − input. Outside the window nothing is touched. The outcome
is the pair's final agreement along φ_f (both on one side of the branch midpoint).

Identifiability: the split is ``split_lead`` steps before the window, so the clones differ when it starts
(split at or after the window, A and B are identical there and any patch is the identity), and it is
close enough to τ_f that their final sides are still correlated; the baseline agreement then lies strictly
between chance and 1, leaving room for a patch to move it. The window is centred on τ_f because the
clone experiment says the decision is made there (agreement changes fastest around τ_f). What a patch
of block ℓ moves is the state-dependent part of its write: B's update minus the update A would have
written, ≈ dΔ_ℓ (x_B − x_A), the finite-difference counterpart of block ℓ's curvature term
(:mod:`dit_validation.causal`), downstream blocks' responses included. Patching every unit drives A by
B's ε̂ from A's own state; around τ_f, where the curvature — the net state-dependent write along φ_f —
crosses 0, that total moves the agreement little by construction, while single blocks whose writes
cancel in the sum do.

The patched output of block ℓ in A's rows is ``out_B + (in_A − in_B)`` — A's input plus B's update,
written so that both controls are exact in floating point: patching a unit with its own rows adds
``in_A − in_A = 0`` (bit-identical output), and when A's input equals B's (every earlier unit patched)
it is ``out_B`` exactly. Hence patching every unit makes A's ε̂ at that step B's, bit for bit, and a
replica A handed B's state and noise follows B's trajectory.

The measured side is replica A's: at g = 0 replica B is never affected (its rows do not see A's, eq. 19
with g = 0), so the agreement change is A's move towards B's final side. At g > 0 B attends to A's keys
and values, so a patch in A reaches B as well; the agreement is then that of the patched coupled pair.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import torch

from theory.validation import check_positive_int

from ._logging import progress as progress_bar
from .branches import BranchDirections
from .causal_stats import VARIANT_ALL, VARIANT_BLOCK0, VARIANT_NONE
from .layout import ReplicaLayout
from .models import DiTBundle
from .sampler import make_scheduler, sample_pairs

__all__ = ["ResidualPatch", "patch_variants", "patch_window", "patch_agreement"]

log = logging.getLogger(__name__)

Donor = Literal["partner", "self"]


def patch_variants(num_layers: int) -> list[frozenset[int]]:
    """Unit sets in the order of :mod:`dit_validation.causal_stats`: none, every unit, block 0 … L − 1."""
    out: list[frozenset[int]] = [frozenset()] * (num_layers + 2)
    out[VARIANT_NONE] = frozenset()
    out[VARIANT_ALL] = frozenset(range(num_layers + 1))
    for ell in range(num_layers):
        out[VARIANT_BLOCK0 + ell] = frozenset({1 + ell})
    return out


class ResidualPatch:
    """Forward hooks that replace replica A's residual writes by its partner's, per variant and unit.

    The model batch holds V variants of the same pairs, variant-major (pair p belongs to variant
    p // (P/V)); in the A rows of variant v (both guidance copies, :class:`ReplicaLayout`), every unit in
    ``variants[v]`` is patched, but only in forwards whose timestep is in ``timesteps``. ``donor="self"``
    patches each row with its own write (the null control). Use as a context manager: the hooks are
    removed on exit, always.
    """

    def __init__(
        self,
        transformer: torch.nn.Module,
        variants: Sequence[frozenset[int]],
        timesteps: Iterable[int],
        guided: bool,
        donor: Donor = "partner",
    ) -> None:
        if donor not in ("partner", "self"):
            raise ValueError(f"donor must be 'partner' or 'self', got {donor!r}")
        num_units = len(transformer.transformer_blocks) + 1
        for v in variants:
            if any(not 0 <= u < num_units for u in v):
                raise ValueError(f"variant units must lie in [0, {num_units - 1}], got {sorted(v)}")
        self.transformer = transformer
        self.variants = list(variants)
        self.timesteps = {int(t) for t in timesteps}
        self.guided = guided
        self.donor = donor
        self._rows: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _plan(self, _module, _args, kwargs) -> None:
        """Before each forward: which rows of which unit are patched in this forward (none off-window)."""
        self._rows = {}
        if int(kwargs["timestep"].flatten()[0]) not in self.timesteps:
            return
        x = kwargs.get("hidden_states", _args[0] if _args else None)
        R = x.shape[0]
        layout = ReplicaLayout.of_batch(R, self.guided)
        V = len(self.variants)
        if layout.pairs % V:
            raise ValueError(f"the batch holds {layout.pairs} pairs, not a multiple of {V} variants")
        pair_variant = np.repeat(np.arange(V), layout.pairs // V)
        row_variant = layout.row_g(pair_variant).astype(np.int64)  # the layout's per-pair → per-row map
        half = R // 2  # replica A is the first half of the model batch, its partner the row R/2 later
        for u in set().union(*self.variants):
            rows = np.flatnonzero([u in self.variants[row_variant[r]] for r in range(half)])
            if rows.size:
                donor = rows + half if self.donor == "partner" else rows
                self._rows[u] = (
                    torch.as_tensor(rows, device=x.device),
                    torch.as_tensor(donor, device=x.device),
                )

    def _embed(self, _module, _args, out: torch.Tensor) -> torch.Tensor | None:
        if 0 not in self._rows:
            return None
        rows, donor = self._rows[0]
        return out.index_copy(0, rows, out[donor])  # h_0 is the embedding's whole write

    def _block(self, unit: int):
        def hook(_module, args, out: torch.Tensor) -> torch.Tensor | None:
            if unit not in self._rows:
                return None
            rows, donor = self._rows[unit]
            h = args[0]  # (B, N, D) the block's input
            return out.index_copy(0, rows, out[donor] + (h[rows] - h[donor]))  # in_A + Δ_B, exact controls

        return hook

    def __enter__(self) -> ResidualPatch:
        t = self.transformer
        self._handles = [
            t.register_forward_pre_hook(self._plan, with_kwargs=True),
            t.pos_embed.register_forward_hook(self._embed),
            *(blk.register_forward_hook(self._block(1 + i)) for i, blk in enumerate(t.transformer_blocks)),
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles, self._rows = [], {}


def patch_window(
    tau: float, patch_steps: int, split_lead: int, num_steps: int
) -> tuple[int, int, int] | None:
    """(s_split, first, last) patched step: W = ``patch_steps`` steps centred on round(τ) (the earlier
    centre for even W), the split ``split_lead`` steps before the first; clipped so that 0 ≤ s_split <
    first ≤ last ≤ S − 1. None where τ is not a step of the grid (NaN, ±inf, beyond S − 1)."""
    if not np.isfinite(tau) or tau > num_steps - 1 or tau < 0:
        return None
    first = int(round(tau)) - (patch_steps - 1) // 2
    split = max(0, first - split_lead)
    first = max(first, split + 1)
    last = min(num_steps - 1, first + patch_steps - 1)
    if first > last:
        return None
    return split, first, last


@torch.no_grad()
def patch_agreement(
    bundle: DiTBundle,
    directions: BranchDirections,
    seeds: Sequence[int],
    states: np.ndarray,
    g: float,
    tau: np.ndarray,
    *,
    patch_steps: int,
    split_lead: int,
    num_steps: int,
    class_label: int,
    batch_pairs: int = 16,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Final agreement of patched clone pairs, (F, V, M) in {0, 1}, and the windows (F, 3) (−1: none).

    ``states`` (S, M, C, H, W): the trajectories of ``seeds`` entering every step
    (:func:`~dit_validation.step_predictor.trajectory_states`); for direction f the pairs are cloned from
    them at s_split of :func:`patch_window` (τ = ``tau[f]``) and continued with the clone experiment's
    convention (DDIM η = 1, independent keyed noise, coupled at g, the bundle's guidance), once per
    variant of :func:`patch_variants`, ``batch_pairs`` pairs (× V variants) per batch. A direction
    without a window is NaN.
    """
    check_positive_int("patch_steps", patch_steps)
    check_positive_int("batch_pairs", batch_pairs)
    check_positive_int("split_lead", split_lead)
    variants = patch_variants(bundle.num_layers)
    V, M, F = len(variants), len(seeds), directions.num
    if states.shape[:2] != (num_steps, M):
        raise ValueError(f"states must be (num_steps={num_steps}, pairs={M}, ...), got {states.shape}")
    timesteps = make_scheduler(bundle, num_steps).timesteps.tolist()
    guided = bundle.guidance_scale > 1.0
    agree = np.full((F, V, M), np.nan)
    windows = np.full((F, 3), -1, dtype=np.int64)
    for f in range(F):
        win = patch_window(float(tau[f]), patch_steps, split_lead, num_steps)
        if win is None:
            continue
        windows[f] = split, first, last = win
        chunks = range(0, M, batch_pairs)
        for lo in progress_bar(chunks, desc=f"patch {directions.names[f]}", enabled=progress, leave=False):
            hi = min(lo + batch_pairs, M)
            z = torch.as_tensor(states[split, lo:hi]).repeat(V, 1, 1, 1)  # (V·m, C, H, W) variant-major
            patch = ResidualPatch(bundle.transformer, variants, timesteps[first : last + 1], guided)
            with patch:
                zA, zB = sample_pairs(
                    bundle,
                    list(seeds[lo:hi]) * V,
                    g=float(g),
                    num_steps=num_steps,
                    ddim_eta=1.0,
                    sigma=0.0,
                    class_label=class_label,
                    guidance_scale=bundle.guidance_scale,
                    device=bundle.device,
                    start_step=split,
                    start_states=(z, z.clone()),
                )
            sA = directions.sides(zA.double().cpu().numpy())[:, f].reshape(V, hi - lo)
            sB = directions.sides(zB.double().cpu().numpy())[:, f].reshape(V, hi - lo)
            agree[f, :, lo:hi] = sA == sB
        log.info(
            "patch %s: split %d, window %d-%d, agreement none %.2f all %.2f",
            directions.names[f],
            split,
            first,
            last,
            agree[f, VARIANT_NONE].mean(),
            agree[f, VARIANT_ALL].mean(),
        )
    return agree, windows

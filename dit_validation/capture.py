"""Capture of the hidden-state replica difference inside the DiT (eq. 74) and its fixed basis (eq. 42–43).

:class:`DifferenceCapture` is a context manager that registers forward hooks on chosen transformer blocks
for the duration of a ``with`` block and hands every forward's difference
V = (H^A − H^B)/√2 (P, D) float64 (eq. 74; conditional rows under guidance) to a consumer; it always
removes its hooks. The consumers below own their state: :class:`RowCollector` stores V_{0,ℓ} rows for the
basis, :class:`ModeProjector` accumulates (V_{s,ℓ} r_k)² per step without storing V (O(M·K) per (s, ℓ)).
:func:`gram_basis` is the package's one construction of the empirical modes r_k.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch

from .layout import ReplicaLayout

__all__ = ["gram_basis", "DifferenceCapture", "RowCollector", "ModeProjector"]

Consumer = Callable[[int, torch.Tensor], None]


def gram_basis(V0: torch.Tensor, K: int, rtol: float = 1e-10) -> tuple[torch.Tensor, torch.Tensor]:
    """Leading eigenpairs of C_0 = V_0ᵀV_0/M (eq. 42) via the dual Gram G_0 = V_0V_0ᵀ/M (eq. 43).

    V0 (M, D) float64 → (r (K, D) orthonormal rows, λ (K,)) in descending order; modes whose eigenvalue
    is below ``rtol``·λ_max (rank deficiency) are NaN. Nyström: r_k = V_0ᵀ a_k / √(M λ_k).
    """
    M = V0.shape[0]
    if not 1 <= K <= M:
        raise ValueError(f"K must lie in [1, {M}] (the number of replica pairs), got {K}")
    G0 = V0 @ V0.T / M  # (M, M), eq. (43)
    lam, a = torch.linalg.eigh(G0)
    lam, a = lam.flip(0)[:K], a.flip(1)[:, :K]  # descending
    ok = lam > rtol * lam[0].clamp_min(1e-300)
    r = (V0.T @ a / torch.sqrt(M * lam.clamp_min(1e-300))).T  # (K, D)
    r[~ok] = float("nan")
    lam = torch.where(ok, lam, torch.full_like(lam, float("nan")))
    return r, lam


class DifferenceCapture:
    """``with DifferenceCapture(transformer, layers, guided, consumer):`` — hooks that see eq. (74).

    ``consumer(j, v)`` is called on every forward of block ``layers[j]`` with v (P, D) float64. ``at``:
    ``"output"`` (the block's output, Protocol II's convention) or ``"input"`` (what enters the block,
    where the block Jacobian is taken).
    """

    def __init__(
        self,
        transformer: torch.nn.Module,
        layers: Sequence[int],
        guided: bool,
        consumer: Consumer,
        at: Literal["output", "input"] = "output",
    ) -> None:
        if at not in ("output", "input"):
            raise ValueError(f"at must be 'output' or 'input', got {at!r}")
        self._blocks = [transformer.transformer_blocks[ell] for ell in layers]
        self._guided = guided
        self._consumer = consumer
        self._at = at
        self._handles: list = []

    def _difference(self, j: int, hidden: torch.Tensor) -> None:
        layout = ReplicaLayout.of_batch(hidden.shape[0], self._guided)
        hA, hB = layout.conditional_replicas(hidden)
        self._consumer(j, (hA.double() - hB.double()).flatten(1) / math.sqrt(2.0))  # (P, D), eq. (74)

    def __enter__(self) -> DifferenceCapture:
        for j, block in enumerate(self._blocks):
            if self._at == "output":
                hook = block.register_forward_hook(lambda _m, _a, out, j=j: self._difference(j, out))
            else:
                hook = block.register_forward_pre_hook(lambda _m, args, j=j: self._difference(j, args[0]))
            self._handles.append(hook)
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


class RowCollector:
    """Stores V_{0,ℓ} (M, D) per captured layer; :meth:`into` gives the consumer for a batch of seed rows.

    ``dtype`` of the stored rows: float64 by default; float32 halves the memory of a large basis set
    (M_B·D per layer), whose Gram matrix is still formed in float64 by the caller.
    """

    def __init__(self, num_layers: int, M: int, dtype: torch.dtype = torch.float64) -> None:
        self.M = M
        self.dtype = dtype
        self.V: list[torch.Tensor | None] = [None] * num_layers

    def into(self, rows: Sequence[int]) -> Consumer:
        rows = list(rows)

        def consume(j: int, v: torch.Tensor) -> None:
            if self.V[j] is None:
                self.V[j] = torch.zeros(self.M, v.shape[1], dtype=self.dtype, device=v.device)
            self.V[j][rows] = v.to(self.dtype)

        return consume


class ModeProjector:
    """Accumulates sq[s, j, k, m] = (V_{s,ℓ_j} r_k)² for a fixed basis, one reverse step at a time.

    ``bases[j]`` (K, D) on the model's device; the step index advances through :meth:`on_step`, the
    sampler's per-step callback, and restarts for each batch of seeds given to :meth:`into`.
    """

    def __init__(self, bases: Sequence[torch.Tensor], num_steps: int, M: int) -> None:
        self.bases = list(bases)
        K = self.bases[0].shape[0]
        self.sq = torch.full(
            (num_steps, len(self.bases), K, M), float("nan"), dtype=torch.float64, device=self.bases[0].device
        )
        self._step = 0

    def into(self, rows: Sequence[int]) -> Consumer:
        rows = list(rows)
        self._step = 0

        def consume(j: int, v: torch.Tensor) -> None:
            proj = v @ self.bases[j].T  # (P, K)
            self.sq[self._step, j][:, rows] = proj.pow(2).T

        return consume

    def on_step(self, step: int, timestep: int, latents: torch.Tensor) -> None:
        """Sampler callback after reverse step ``step``: the next forward belongs to step + 1."""
        self._step = step + 1

    def numpy(self) -> np.ndarray:
        return self.sq.cpu().numpy()

"""The one owner of the replica / guidance batch layout.

A batch of P replica pairs enters the DiT as one model batch whose **first half is replica A and second
half replica B**, so row i's partner is row i ± B/2 — the rule the coupled attention of eq. (18)–(19)
uses (:func:`partner_rows`). Without guidance the model batch is [A_1..A_P, B_1..B_P] (2P rows); with
classifier-free guidance it is [A_cond, A_uncond, B_cond, B_uncond] (4P rows), so conditional rows of A
couple to conditional rows of B and unconditional to unconditional. The sampler assembles batches,
the attention processor pairs rows and the capture hooks read the conditional replicas, all through
this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["ReplicaLayout", "partner_rows"]


def partner_rows(x: torch.Tensor) -> torch.Tensor:
    """Each row's partner replica: rows i and i + B/2 swapped (B = x.shape[0], even)."""
    return x.roll(x.shape[0] // 2, dims=0)


@dataclass(frozen=True)
class ReplicaLayout:
    """P replica pairs, with or without classifier-free guidance (doubling the batch with the null class)."""

    pairs: int
    guided: bool

    @property
    def rows(self) -> int:
        """Rows of the model batch."""
        return 4 * self.pairs if self.guided else 2 * self.pairs

    def model_batch(
        self, z: torch.Tensor, class_label: int, null_class: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(model input, class labels) from replica states z (2P, C, H, W) = [A; B]."""
        P = self.pairs
        zA, zB = z[:P], z[P:]
        y = torch.full((P,), int(class_label), dtype=torch.long, device=z.device)
        if not self.guided:
            return z, torch.cat([y, y])
        null = torch.full_like(y, int(null_class))
        return torch.cat([zA, zA, zB, zB]), torch.cat([y, null, y, null])  # [A_c, A_u, B_c, B_u]

    def row_g(self, g_pairs: np.ndarray) -> np.ndarray:
        """Coupling per model row from one g per pair: both replicas (and both guidance copies) carry it."""
        g_pairs = np.asarray(g_pairs, dtype=np.float64)
        per_half = np.concatenate([g_pairs, g_pairs]) if self.guided else g_pairs
        return np.concatenate([per_half, per_half])

    def guide(self, out: torch.Tensor, scale: float) -> torch.Tensor:
        """Model output (rows) → guided ε for [A; B] (2P): ε_u + s (ε_c − ε_u) as diffusers' DiTPipeline."""
        if not self.guided:
            return out
        c_A, u_A, c_B, u_B = out.chunk(4)
        return torch.cat([u_A + scale * (c_A - u_A), u_B + scale * (c_B - u_B)])

    def conditional_replicas(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, B) conditional rows (P each) of any per-row tensor of the model batch."""
        P = self.pairs
        if self.guided:
            return rows[:P], rows[2 * P : 3 * P]
        return rows[:P], rows[P : 2 * P]

    @classmethod
    def of_batch(cls, rows: int, guided: bool) -> ReplicaLayout:
        """The layout of a model batch with ``rows`` rows."""
        per = 4 if guided else 2
        if rows % per:
            kind = "guided" if guided else "plain"
            raise ValueError(f"a {kind} replica batch needs a multiple of {per} rows, got {rows}")
        return cls(rows // per, guided)

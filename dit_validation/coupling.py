"""Replica-coupled self-attention as a diffusers attention processor, eq. (15)–(19).

The paper concatenates the replicas along the token axis, X = [X^A; X^B] (eq. 15), and mixes
blockwise-normalized intra- and inter-replica attention (eq. 18–19):

    Attn_g(X) = (1/(1+g)) ( [A_AA V_A; A_BB V_B] + g [A_AB V_B; A_BA V_A] ).

diffusers' DiT unpatchifies with ``sqrt(sequence length)``, so a 2N-token sequence cannot be fed through
the model. Instead the replicas are the two halves of the batch (:mod:`dit_validation.layout`) and each
attention layer computes the two blocks with ``scaled_dot_product_attention``: intra (q, k, v as is) and
inter (q against the partner half's k, v). Each block has its own row-wise softmax (eq. 18), so this is
exactly eq. (19) and never forms a 2N × 2N matrix. The inter call runs only on rows whose g ≠ 0, and
(intra + g·inter)/(1 + g) is computed as ``lerp(intra, inter, g/(1 + g))``.

g is validated where it is configured (``install_coupling``, ``CouplingHandle.set_g``, the protocol
configs), never on every forward.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

from theory.validation import check_g

from .heads import check_self_attention, merge_heads, output_projection, project_qkv
from .layout import partner_rows

__all__ = ["CouplingState", "CoupledAttnProcessor", "CouplingHandle", "install_coupling", "attention_layers"]


class CouplingState:
    """Coupling strength per model row, shared by all processors of one :class:`CouplingHandle`.

    ``assign`` takes a float (every row) or one value per row (B,) whose halves are equal (the pair's
    g, eq. 19 is symmetric); it does not validate (callers validate at their configuration boundary).
    Row weights g/(1 + g) live in persistent device buffers updated in place, so torch.compile and CUDA
    graphs see one tensor whose values change (no recompiles; graph replays pick up the new g).
    """

    def __init__(self) -> None:
        self.g_host: float | np.ndarray = 0.0
        self.zero = True
        self._active: np.ndarray | None = None  # rows with g ≠ 0 when only some are
        self._bufs: dict[tuple[int, torch.device, torch.dtype], torch.Tensor] = {}
        self._idx: dict[tuple[int, torch.device], torch.Tensor] = {}

    def assign(self, g: float | np.ndarray) -> None:
        arr = np.asarray(g, dtype=np.float64)
        self.g_host = float(arr) if arr.ndim == 0 else arr.copy()
        nonzero = arr != 0.0
        self.zero = not bool(np.any(nonzero))
        self._active = None if (arr.ndim == 0 or bool(np.all(nonzero))) else np.flatnonzero(nonzero)
        self._idx.clear()
        for key in list(self._bufs):
            batch, _, dtype = key
            if arr.ndim == 0 or arr.size == batch:
                self._bufs[key].copy_(self._host_weights(batch, dtype), non_blocking=True)
            else:
                del self._bufs[key]  # another batch size: rebuilt when that size is seen again

    def _host_weights(self, batch: int, dtype: torch.dtype) -> torch.Tensor:
        if np.ndim(self.g_host) == 0:
            g = np.full(batch, self.g_host)
        else:
            g = np.asarray(self.g_host)
            if g.size != batch:
                raise ValueError(f"per-row g has {g.size} entries but the attention batch has {batch} rows")
        return torch.as_tensor(g / (1.0 + g), dtype=dtype).view(batch, 1, 1, 1)  # lerp weight of eq. (19)

    def weights(self, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Lerp weights g/(1 + g) per batch row, (B, 1, 1, 1), on ``device``."""
        key = (batch, device, dtype)
        if key not in self._bufs:
            self._bufs[key] = self._host_weights(batch, dtype).to(device)
        return self._bufs[key]

    def active_rows(self, device: torch.device) -> torch.Tensor | None:
        """Indices of the rows with g ≠ 0, or None when every row is coupled."""
        if self._active is None:
            return None
        key = (int(self._active.size), device)
        if key not in self._idx:
            self._idx[key] = torch.as_tensor(self._active, dtype=torch.long, device=device)
        return self._idx[key]


class CoupledAttnProcessor:
    """Blockwise-normalized replica coupling, eq. (18)–(19), for a self-attention ``Attention``.

    Projections, head split, optional q/k norms, output projection, residual connection and output
    rescaling follow diffusers' ``AttnProcessor2_0`` (:mod:`dit_validation.heads`), so at g = 0 the result
    is the unmodified layer's (the inter call is skipped entirely).
    """

    def __init__(self, state: CouplingState) -> None:
        self.state = state

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        check_self_attention(
            attn, hidden_states, encoder_hidden_states, attention_mask, "CoupledAttnProcessor"
        )
        B = hidden_states.shape[0]
        if B % 2:
            raise ValueError(f"replica coupling needs an even batch (two halves = replicas A, B), got {B}")
        q, k, v = project_qkv(attn, hidden_states)  # (B, H, N, d)
        # eq. (18), diagonal blocks: A_AA V_A and A_BB V_B with their own softmax normalization.
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False, scale=attn.scale)
        if not self.state.zero:
            w = self.state.weights(B, out.device, out.dtype)
            k_p, v_p = partner_rows(k), partner_rows(v)
            rows = self.state.active_rows(out.device)
            if rows is None:
                # eq. (18), off-diagonal blocks: row i attends to its partner i ± B/2 (A_AB V_B, A_BA V_A)
                inter = F.scaled_dot_product_attention(
                    q, k_p, v_p, dropout_p=0.0, is_causal=False, scale=attn.scale
                )
                out = torch.lerp(out, inter, w)  # (intra + g·inter)/(1 + g), eq. (19)
            else:
                inter = F.scaled_dot_product_attention(
                    q[rows], k_p[rows], v_p[rows], dropout_p=0.0, is_causal=False, scale=attn.scale
                )
                out = out.index_copy(0, rows, torch.lerp(out[rows], inter, w[rows]))  # eq. (19) on g ≠ 0 rows
        out = merge_heads(out).to(q.dtype)  # (B, N, H*d)
        return output_projection(attn, out, hidden_states)


def attention_layers(transformer: torch.nn.Module, blocks: Iterable[int] | None = None) -> list[Attention]:
    """The self-attention module ``attn1`` of each chosen ``BasicTransformerBlock`` (all when None)."""
    all_blocks = list(transformer.transformer_blocks)
    idx = range(len(all_blocks)) if blocks is None else list(blocks)
    for i in idx:
        if not 0 <= i < len(all_blocks):
            raise ValueError(f"blocks must lie in [0, {len(all_blocks) - 1}], got {i}")
    return [all_blocks[i].attn1 for i in idx]


def _check_symmetric_rows(g: np.ndarray) -> None:
    if g.ndim > 1:
        raise ValueError(f"g must be a scalar or one value per batch row (B,), got shape {g.shape}")
    if g.ndim == 1:
        half = g.size // 2
        if g.size % 2 or not np.array_equal(g[:half], g[half:]):
            raise ValueError(
                "per-row g must give both replicas of a pair the same value (rows i and i + B/2, eq. 19)"
            )


class CouplingHandle:
    """Installed coupling processors: ``set_g`` sets g for all of them, ``remove`` restores the originals."""

    def __init__(self, layers: list[Attention], state: CouplingState) -> None:
        self.state = state
        self._layers = layers
        self._original = [layer.processor for layer in layers]
        proc = CoupledAttnProcessor(state)
        for layer in layers:
            layer.set_processor(proc)
        self.installed = True

    def set_g(self, g: float | np.ndarray | torch.Tensor) -> None:
        """Coupling strength g ∈ [0, 1] (eq. 19): a scalar or one value per batch row, validated here."""
        if isinstance(g, torch.Tensor):
            g = g.detach().cpu().numpy()
        arr = np.asarray(g, dtype=np.float64)
        check_g(arr)
        _check_symmetric_rows(arr)
        self.state.assign(arr)

    @property
    def g(self) -> float | np.ndarray:
        return self.state.g_host

    def remove(self) -> None:
        if self.installed:
            for layer, proc in zip(self._layers, self._original, strict=True):
                layer.set_processor(proc)
            self.installed = False

    def __enter__(self) -> CouplingHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def install_coupling(
    transformer: torch.nn.Module, blocks: Iterable[int] | None = None, g: float = 0.0
) -> CouplingHandle:
    """Install :class:`CoupledAttnProcessor` on ``attn1`` of the chosen blocks (all when None).

    Usable as a context manager: ``with install_coupling(dit, g=0.5) as h: ...``.
    """
    handle = CouplingHandle(attention_layers(transformer, blocks), CouplingState())
    handle.set_g(g)
    return handle

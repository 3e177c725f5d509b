"""Replica-coupled self-attention as a diffusers attention processor, eq. (15)–(19).

The paper concatenates the replicas along the token axis, X = [X^A; X^B] (eq. 15), and mixes
blockwise-normalized intra- and inter-replica attention (eq. 18–19):

    Attn_g(X) = (1/(1+g)) ( [A_AA V_A; A_BB V_B] + g [A_AB V_B; A_BA V_A] ).

diffusers' DiT unpatchifies with ``sqrt(sequence length)``, so a 2N-token sequence cannot be fed
through the model. Instead the replicas are the two halves of the batch (row i pairs with row
i + B/2) and each attention layer computes the two blocks with two ``scaled_dot_product_attention``
calls: intra (q, k, v as is) and inter (q against the partner half's k, v). Because each block has
its own row-wise softmax (eq. 18), this is exactly eq. (19) and never forms a 2N × 2N matrix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

from theory.validation import check_g


class CouplingState:
    """Coupling strength shared by all processors of one :class:`CouplingHandle`.

    ``g`` is a float (all pairs) or a per-pair vector of shape (B/2,). ``zero`` is a host bool, so
    the g = 0 fast path never synchronizes with the GPU. Row weights live in persistent device
    buffers that :meth:`set` updates in place: torch.compile and CUDA graphs see one tensor whose
    values change, not a new constant (no recompiles, graph replays pick up the new g).
    """

    def __init__(self) -> None:
        self.g_host: float | np.ndarray = 0.0
        self.zero = True
        self._bufs: dict[tuple[int, torch.device, torch.dtype], torch.Tensor] = {}

    def set(self, g: float | Sequence[float] | np.ndarray | torch.Tensor) -> None:
        if isinstance(g, torch.Tensor):
            g = g.detach().cpu().numpy()
        arr = np.asarray(g, dtype=np.float64)
        check_g(arr)
        if arr.ndim > 1:
            raise ValueError(
                f"g must be a scalar or a per-pair vector of shape (B/2,), got shape {arr.shape}"
            )
        self.g_host = float(arr) if arr.ndim == 0 else arr.copy()
        self.zero = bool(np.all(arr == 0.0))
        for key in list(self._bufs):
            batch, _, dtype = key
            if arr.ndim == 0 or 2 * arr.size == batch:
                self._bufs[key].copy_(self._host_rows(batch, dtype), non_blocking=True)
            else:
                del self._bufs[key]  # another batch size: rebuilt lazily when that size is seen again

    @property
    def is_zero(self) -> bool:
        return self.zero

    def _host_rows(self, batch: int, dtype: torch.dtype) -> torch.Tensor:
        if np.ndim(self.g_host) == 0:
            rows = np.full(batch, self.g_host)
        else:
            pairs = len(self.g_host)
            if batch != 2 * pairs:
                raise ValueError(
                    f"per-pair g has {pairs} entries but the attention batch has {batch} rows "
                    f"(need {2 * pairs})"
                )
            rows = np.concatenate([self.g_host, self.g_host])  # both halves carry their pair's g (eq. 19)
        return torch.as_tensor(rows, dtype=dtype).view(batch, 1, 1, 1)

    def row_weights(self, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """g per batch row, (B, 1, 1, 1), on ``device``."""
        key = (batch, device, dtype)
        if key not in self._bufs:
            self._bufs[key] = self._host_rows(batch, dtype).to(device)
        return self._bufs[key]


class CoupledAttnProcessor:
    """Blockwise-normalized replica coupling, eq. (18)–(19), for a self-attention ``Attention``.

    Projections, head split, optional q/k norms, output projection, residual connection and
    output rescaling follow the order of diffusers' ``AttnProcessor2_0`` so that at g = 0 the
    result is the unmodified layer's (the inter call is skipped entirely).
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
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("CoupledAttnProcessor couples self-attention only (no encoder states or masks)")
        if attn.spatial_norm is not None or attn.group_norm is not None or hidden_states.ndim != 3:
            raise ValueError(
                "CoupledAttnProcessor expects DiT-style token attention: (B, N, D), no spatial/group norm"
            )
        residual = hidden_states
        B, N, _ = hidden_states.shape  # (B, N, D)
        if B % 2:
            raise ValueError(f"replica coupling needs an even batch (two halves = replicas A, B), got {B}")
        q = attn.to_q(hidden_states)  # (B, N, H*d)
        k = attn.to_k(hidden_states)
        v = attn.to_v(hidden_states)
        d = k.shape[-1] // attn.heads
        q = q.view(B, N, attn.heads, d).transpose(1, 2)  # (B, H, N, d)
        k = k.view(B, N, attn.heads, d).transpose(1, 2)
        v = v.view(B, N, attn.heads, d).transpose(1, 2)
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        # eq. (18), diagonal blocks: A_AA V_A and A_BB V_B with their own softmax normalization.
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False, scale=attn.scale)
        if not self.state.is_zero:
            # eq. (18), off-diagonal blocks: row i attends to its partner i ± B/2 (A_AB V_B, A_BA V_A).
            k_p, v_p = k.roll(B // 2, dims=0), v.roll(B // 2, dims=0)
            inter = F.scaled_dot_product_attention(
                q, k_p, v_p, dropout_p=0.0, is_causal=False, scale=attn.scale
            )
            g = self.state.row_weights(B, out.device, out.dtype)
            out = (out + g * inter) / (1.0 + g)  # eq. (19)
        out = out.transpose(1, 2).reshape(B, N, attn.heads * d).to(q.dtype)  # (B, N, H*d)
        out = attn.to_out[0](out)
        out = attn.to_out[1](out)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def attention_layers(transformer: torch.nn.Module, blocks: Iterable[int] | None = None) -> list[Attention]:
    """The self-attention module ``attn1`` of each chosen ``BasicTransformerBlock`` (all when None)."""
    all_blocks = list(transformer.transformer_blocks)
    idx = range(len(all_blocks)) if blocks is None else list(blocks)
    for i in idx:
        if not 0 <= i < len(all_blocks):
            raise ValueError(f"blocks must lie in [0, {len(all_blocks) - 1}], got {i}")
    return [all_blocks[i].attn1 for i in idx]


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

    def set_g(self, g: float | Sequence[float] | np.ndarray | torch.Tensor) -> None:
        """Coupling strength g ∈ [0, 1] (eq. 19): a scalar or one value per replica pair."""
        self.state.set(g)

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
    state = CouplingState()
    state.set(g)
    return CouplingHandle(attention_layers(transformer, blocks), state)

"""Query/key/value of a diffusers self-attention, split into heads: the one place that does it.

Follows the order of diffusers' ``AttnProcessor2_0`` (projections, head split, optional q/k norms), so
processors built on it reproduce the stock layer exactly; used by the coupled processor (eq. 18–19) and the
linearization processor of the block measurements (eq. 25–26).
"""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention

__all__ = ["check_self_attention", "project_qkv", "merge_heads", "output_projection"]


def check_self_attention(
    attn: Attention,
    hidden_states: torch.Tensor,
    encoder_hidden_states: object,
    attention_mask: object,
    who: str,
) -> None:
    """Refuse anything but DiT-style token self-attention on (B, N, D), naming the processor."""
    if encoder_hidden_states is not None or attention_mask is not None:
        raise ValueError(f"{who} handles self-attention only (no encoder states or masks)")
    if attn.spatial_norm is not None or attn.group_norm is not None or hidden_states.ndim != 3:
        raise ValueError(f"{who} expects DiT-style token attention: (B, N, D), no spatial/group norm")


def project_qkv(
    attn: Attention, hidden_states: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(q, k, v), each (B, H, N, d), from tokens (B, N, D)."""
    B, N, _ = hidden_states.shape  # (B, N, D)
    q = attn.to_q(hidden_states)  # (B, N, H*d)
    k = attn.to_k(hidden_states)
    v = attn.to_v(hidden_states)
    d = k.shape[-1] // attn.heads
    q, k, v = (t.view(B, N, attn.heads, d).transpose(1, 2) for t in (q, k, v))  # (B, H, N, d)
    if attn.norm_q is not None:
        q = attn.norm_q(q)
    if attn.norm_k is not None:
        k = attn.norm_k(k)
    return q, k, v


def merge_heads(out: torch.Tensor) -> torch.Tensor:
    """(B, H, N, d) → (B, N, H*d)."""
    B, H, N, d = out.shape
    return out.transpose(1, 2).reshape(B, N, H * d)


def output_projection(attn: Attention, out: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """Output projection, dropout, residual connection and output rescaling of the stock processor."""
    out = attn.to_out[1](attn.to_out[0](out))
    if attn.residual_connection:
        out = out + residual
    return out / attn.rescale_output_factor

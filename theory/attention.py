"""Coupled replica self-attention, eq. (16)–(19).

Two replicas A and B are stacked on a leading axis of size 2. Each of the four blocks
(AA, AB, BA, BB) of the logit matrix S = Q Kᵀ/√d_h (16)–(17) gets its own row-wise
softmax (18), so that at g = 0 no partition function is shared between the replicas, and
the outputs are the normalized mixture (19)

    out_A = (A_AA V_A + g A_AB V_B) / (1 + g),   out_B = (A_BB V_B + g A_BA V_A) / (1 + g).

numpy input is computed in float64; torch input keeps its dtype, device and autograd graph
(``dit_validation`` uses the torch path as its float64 reference on a GPU).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .validation import as_float_array, check_finite, check_g

__all__ = ["BlockWeights", "coupled_attention", "mixture_weights", "attention_weights"]


class BlockWeights(NamedTuple):
    """The four row-stochastic blocks of eq. (18), each of shape (..., N, N) (query, key)."""

    AA: Any
    AB: Any
    BA: Any
    BB: Any


def mixture_weights(g: Any) -> tuple[float, float]:
    """Intra- and inter-replica weights (1/(1+g), g/(1+g)) of eq. (19); they sum to 1.

    ``g`` must be a scalar in [0, 1] (the paper's stability range, §2.2).
    """
    g_arr = as_float_array("g", g)
    if g_arr.ndim != 0:
        raise ValueError(f"g must be a scalar, got an array of shape {g_arr.shape}")
    check_g(g_arr)
    g_f = float(g_arr)
    return 1.0 / (1.0 + g_f), g_f / (1.0 + g_f)  # eq. (19)


def _is_torch(x: Any) -> bool:
    return hasattr(x, "detach") and hasattr(x, "dtype") and type(x).__module__.startswith("torch")


def _softmax_rows(S: Any) -> Any:
    """Numerically stable softmax over the last axis (key tokens), eq. (18)."""
    if _is_torch(S):
        return S.softmax(dim=-1)  # torch subtracts the row maximum internally
    # Subtracting the row maximum leaves (18) unchanged and keeps exp() from overflowing.
    Z = np.exp(S - S.max(axis=-1, keepdims=True))
    return Z / Z.sum(axis=-1, keepdims=True)


def attention_weights(q: Any, k: Any) -> Any:
    """Row-stochastic weights softmax(q kᵀ/√d) over the last two axes, eq. (16) + (18).

    ``q``: (..., N, d), ``k``: (..., N, d) -> (..., N, N). numpy or torch (same rules as
    :func:`coupled_attention`; no input checks -- this is the inner kernel).
    """
    d = q.shape[-1]
    S = (q @ k.swapaxes(-1, -2)) / math.sqrt(d)  # eq. (16), (..., N, N)
    return _softmax_rows(S)


def _check_qkv(q: Any, k: Any, v: Any) -> None:
    """Shape checks with messages naming the argument and the offending axis."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.ndim < 3:
            raise ValueError(
                f"{name} must have shape (2, ..., N, d) with the replicas on axis 0, "
                f"got {x.ndim}-d shape {tuple(x.shape)}"
            )
        if x.shape[0] != 2:
            raise ValueError(
                f"{name} must stack the two replicas on a leading axis of size 2, "
                f"got axis 0 of size {x.shape[0]} (shape {tuple(x.shape)})"
            )
    for name, x in (("k", k), ("v", v)):
        if x.shape[-2] != q.shape[-2]:
            raise ValueError(
                f"{name} has N={x.shape[-2]} tokens but q has N={q.shape[-2]}; "
                "q, k and v must have the same number of tokens N (self-attention, eq. 18)"
            )
        if x.shape[-1] != q.shape[-1]:
            raise ValueError(
                f"{name} has feature width d={x.shape[-1]} but q has d={q.shape[-1]}; "
                "q, k and v must have the same per-head width d"
            )
        if tuple(x.shape[1:-2]) != tuple(q.shape[1:-2]):
            raise ValueError(
                f"{name} has batch/head axes {tuple(x.shape[1:-2])} but q has {tuple(q.shape[1:-2])}; "
                "they must match"
            )


def coupled_attention(q: Any, k: Any, v: Any, g: Any, *, return_weights: bool = False) -> Any:
    """Coupled replica attention Attn_g, eq. (16)–(19).

    Parameters
    ----------
    q, k, v : (2, ..., N, d) numpy arrays or torch tensors (all of one kind); axis 0 is the
        replica (A = 0, B = 1), the middle axes are batch/heads.
    g : coupling strength in [0, 1] (scalar).
    return_weights : also return the four softmax blocks of eq. (18) as :class:`BlockWeights`.

    Returns
    -------
    out : (2, ..., N, d), ``out[0]`` = Attn_g^A and ``out[1]`` = Attn_g^B of eq. (19); numpy
        input gives float64, torch input keeps its dtype and autograd graph.
    """
    kinds = {_is_torch(x) for x in (q, k, v)}
    if len(kinds) != 1:
        raise TypeError("q, k and v must be all numpy arrays or all torch tensors, got a mix")
    if kinds == {False}:
        q, k, v = (as_float_array(n, x) for n, x in (("q", q), ("k", k), ("v", v)))
    else:
        for name, x in (("q", q), ("k", k), ("v", v)):
            if not x.is_floating_point():
                raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
            check_finite(name, x.detach())
        if len({q.dtype, k.dtype, v.dtype}) != 1:
            raise TypeError(f"q, k and v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    _check_qkv(q, k, v)
    w_intra, w_inter = mixture_weights(g)

    qA, qB, kA, kB, vA, vB = q[0], q[1], k[0], k[1], v[0], v[1]
    A_AA = attention_weights(qA, kA)  # eq. (18), intra-replica blocks
    A_BB = attention_weights(qB, kB)
    A_AB = attention_weights(qA, kB)  # eq. (18), inter-replica blocks
    A_BA = attention_weights(qB, kA)
    out_A = w_intra * (A_AA @ vA) + w_inter * (A_AB @ vB)  # eq. (19), replica A
    out_B = w_intra * (A_BB @ vB) + w_inter * (A_BA @ vA)  # eq. (19), replica B
    if _is_torch(q):
        import torch

        out = torch.stack([out_A, out_B])
    else:
        out = np.stack([out_A, out_B])
    if return_weights:
        return out, BlockWeights(A_AA, A_AB, A_BA, A_BB)
    return out

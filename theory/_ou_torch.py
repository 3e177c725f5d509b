"""Torch stepper for Gaussian data in the modes ``u, v`` (eq. 7), where eq. (9)–(10) decouple.

With the linear score (eq. 8) the pair ``(z^A, z^B)`` is an orthogonal change of variables
away from two independent scalar equations per eigen-coordinate,

    du = a₀ u dτ + √β dW_u,    dv = (a₀ − 2g) v dτ + √β dW_v,    a₀ = ½β − β/Σ_t,   (eq. 9–10)

so one step of either scheme is a diagonal affine map of the state ``Y = (u, v)``, shape
(n, 2, d), applied in place:

* Euler–Maruyama: ``Y ← C_k ⊙ Y + √(β h) η`` with ``C_k = (1 + h a₀, 1 + h(a₀ − 2g))`` — the
  same scheme as the z-form step (``u′ = (z^A′ + z^B′)/√2`` reproduces it to rounding);
* exact: ``Y ← Φ_k ⊙ Y + √Q_k ⊙ η`` (:mod:`theory._ou_quadrature`).

``η`` are the u/v noises: the stream's (n, 2, d) normals are used as ``(η_u, η_v)`` directly
(independent standard normals either way, so the law is unchanged), and an explicit z-form
``noise`` is rotated to ``((ξ^A + ξ^B)/√2, (ξ^A − ξ^B)/√2)``. Each step is one ``randn(out=)``
per block and two in-place tensor operations; no allocation inside the loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .ou_streams import _NormalStream

_SQRT_HALF = math.sqrt(0.5)


def to_uv(z: torch.Tensor) -> torch.Tensor:
    """``(u, v)`` stacked on axis 1, shape (n, 2, d), from ``z`` (n, 2, d) (eq. 7)."""
    zA, zB = z[:, 0], z[:, 1]
    return torch.stack(((zA + zB) * _SQRT_HALF, (zA - zB) * _SQRT_HALF), dim=1)


def from_uv(y: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_uv`; ``to_uv`` is its own inverse (an orthogonal involution)."""
    return to_uv(y)


def run_uv(
    z: torch.Tensor,
    t: np.ndarray,
    scale: np.ndarray,
    shift: np.ndarray,
    shift_is_scalar: bool,
    stream: _NormalStream | None,
    noise: Any,
    callback: Callable[[int, float, Any], None] | None,
) -> torch.Tensor:
    """Run ``Y ← scale_k ⊙ Y + shift_k ⊙ η`` for k = 0 … K−1 and return ``z`` (n, 2, d).

    ``scale``: (K, 2, d) float64 tables (``C_k`` or ``Φ_k``); ``shift``: (K,) scalars (EM's
    ``√(β h)``, ``shift_is_scalar``) or (K, 2, d) (``√Q_k``). ``callback(k, t_k, z)`` gets z-form
    states (k = 0 … K).
    """
    y = to_uv(z)
    scale_t = torch.as_tensor(scale, dtype=z.dtype, device=z.device)
    shift_t = None if shift_is_scalar else torch.as_tensor(shift, dtype=z.dtype, device=z.device)
    eta = torch.empty_like(y)
    if callback is not None:
        callback(0, float(t[0]), z)
    for k in range(scale.shape[0]):
        if stream is not None:
            stream.draw(out=eta)  # (η_u, η_v) drawn directly
        else:
            xi = torch.as_tensor(noise[k], dtype=z.dtype, device=z.device)
            eta = to_uv(xi)
        y.mul_(scale_t[k])
        if shift_is_scalar:
            y.add_(eta, alpha=float(shift[k]))
        else:
            y.addcmul_(eta, shift_t[k])
        if callback is not None:
            callback(k + 1, float(t[k + 1]), from_uv(y))
    return from_uv(y)

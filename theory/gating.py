"""Attention-gating functions of the coupled attention (eq. 27)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .validation import as_float_array, check_g


def rho(g: Any) -> np.ndarray | float:
    """Spatial-routing gate ρ(g) = (1 − g)/(1 + g), eq. (27).

    Suppresses the routing term R of eq. (25)/(26); ρ(0) = 1 and ρ(1) = 0.
    ``g`` is a scalar or array in [0, 1]; returns the same shape (float64).
    """
    g_arr = as_float_array("g", g)
    check_g(g_arr)
    out = (1.0 - g_arr) / (1.0 + g_arr)  # eq. (27)
    return float(out) if out.ndim == 0 else out


def xi(g: Any) -> np.ndarray | float:
    """Pattern-modulation gate ξ(g) = 1/(1 + g), eq. (27); ξ ∈ [1/2, 1] on g ∈ [0, 1]."""
    g_arr = as_float_array("g", g)
    check_g(g_arr)
    out = 1.0 / (1.0 + g_arr)  # eq. (27)
    return float(out) if out.ndim == 0 else out

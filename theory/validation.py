"""Input checks shared by every public function of ``theory`` and ``dit_validation``.

A public module: the rest of the package validates its inputs with these helpers.

Bad input must fail at the boundary with a message that names the parameter, the value
and the allowed range -- never as a traceback from deep inside numpy/torch, never as a
silent NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def describe(value: Any) -> str:
    """Short human-readable rendering of a scalar or array for error messages."""
    arr = np.asarray(value) if not hasattr(value, "detach") else value.detach().cpu().numpy()
    if arr.ndim == 0:
        return repr(arr.item())
    flat = arr.ravel()
    head = ", ".join(f"{x:.6g}" for x in flat[:4])
    return f"array(shape={arr.shape}, [{head}{', ...' if flat.size > 4 else ''}])"


def as_float_array(name: str, value: Any, dtype: Any = np.float64, *, finite: bool = True) -> np.ndarray:
    """Convert ``value`` to a float array, rejecting non-numeric input and (unless ``finite=False``) NaN/inf.

    ``finite=False`` is for quantities where NaN means "undefined" and is a legitimate value
    (e.g. a measured κ, see ``theory.modal_snr``); the type check still applies.
    """
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a real number or array of real numbers, got {value!r}") from exc
    if finite and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN or inf), got {describe(arr)}")
    return arr


def check_finite(name: str, value: Any) -> None:
    """Raise ``ValueError`` if ``value`` (numpy or torch) contains NaN or inf."""
    if hasattr(value, "detach"):
        import torch

        ok = bool(torch.isfinite(value).all())
    else:
        ok = bool(np.all(np.isfinite(np.asarray(value, dtype=np.float64))))
    if not ok:
        raise ValueError(f"{name} must be finite (no NaN or inf), got {describe(value)}")


def check_range(
    name: str,
    value: Any,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    """Raise ``ValueError`` unless every element of ``value`` lies in the stated interval.

    The message reads e.g. ``g must lie in [0, 1], got 1.5``.
    """
    check_finite(name, value)
    arr = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value, dtype=np.float64)
    bad = np.zeros(arr.shape, dtype=bool)
    if lo is not None:
        bad |= arr <= lo if lo_open else arr < lo
    if hi is not None:
        bad |= arr >= hi if hi_open else arr > hi
    if np.any(bad):
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        offending = arr[bad].ravel()[0] if arr.ndim else arr.item()
        raise ValueError(
            f"{name} must lie in {left}{lo_s}, {hi_s}{right}, got {offending:g}"
            + ("" if arr.ndim == 0 else f" (in {describe(arr)})")
        )


def check_g(g: Any, name: str = "g") -> None:
    """Coupling strength of eq. (19): the paper keeps g in [0, 1] for stability."""
    check_range(name, g, 0.0, 1.0)


def check_same_shape(**arrays: Any) -> None:
    """Raise ``ValueError`` naming every argument if the shapes differ."""
    shapes = {k: tuple(np.shape(v)) if not hasattr(v, "shape") else tuple(v.shape) for k, v in arrays.items()}
    if len(set(shapes.values())) > 1:
        described = ", ".join(f"{k}{s}" for k, s in shapes.items())
        raise ValueError(f"shape mismatch: {described}; these arguments must have the same shape")


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` as int, raising if it is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)

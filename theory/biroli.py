"""Biroli et al. (2024) as a predictor on DiT's exact discrete schedule, and their collapse time.

Biroli, Bonnaire, de Bortoli & Mézard (2024, "Dynamical regimes of diffusion models") place the
speciation of a Gaussian-mixture class structure at the OU time ``t_S = ½ log Λ`` (Λ the largest
eigenvalue of the data covariance, :func:`theory.biroli_speciation_time`), i.e. where
``ᾱ = e^{−2 t_S} = 1/Λ``, and the collapse onto the training set at

    t_C = ½ log(1 + σ²/(P^{2/d} − 1))                                   (P samples in dimension d)

for data of per-coordinate variance σ². Their Table 1 reports the speciation as the first index of
the discrete DDPM schedule whose ``ᾱ_i`` falls below ``1/Λ``; :func:`biroli_speciation_index`
reproduces it exactly, and :func:`biroli_speciation_step` gives the fractional sampler step of
``ᾱ = 1/Λ`` on the exact discrete map of :mod:`theory.schedules` (never the Riemann-sum route,
which misplaces it by up to ≈ 3.4 timesteps near t = T; see that module's docstring).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .schedules import DDPMSchedule, Spacing, step_at_alpha_bar
from .speciation import biroli_speciation_time
from .validation import as_float_array, check_range


def _out(x: np.ndarray) -> Any:
    return x.item() if x.ndim == 0 else x


def biroli_speciation_index(sched: DDPMSchedule, Lambda: Any) -> int | np.ndarray:
    """First DDPM training index ``i`` with ``ᾱ_i < 1/Λ`` (Biroli et al. 2024, Table 1), int64.

    ``Λ`` must lie in ``(1, 1/ᾱ_{N−1})`` so that such an index exists (``(1, 24778.1)`` for DiT's
    schedule); outside, ``ValueError``. Vectorized over ``Lambda``.
    """
    ab = sched.alphas_cumprod
    lam = as_float_array("Lambda", Lambda)
    check_range("Lambda", lam, 1.0, float(1.0 / ab[-1]), lo_open=True, hi_open=True)
    below = ab < (1.0 / lam)[..., None]  # (..., N), ᾱ decreasing: a prefix of False then True
    return _out(np.argmax(below, axis=-1).astype(np.int64))


def biroli_speciation_step(
    sched: DDPMSchedule, Lambda: Any, num_steps: int, spacing: Spacing = "trailing"
) -> np.ndarray | float:
    """Fractional sampler step of ``t_S = ½ log Λ``: where ``ᾱ = e^{−2 t_S} = 1/Λ`` on the exact map.

    NaN where ``1/Λ`` is below ᾱ of the sampler's first step (speciation before the sampler starts,
    see :func:`theory.step_at_alpha_bar`); ``Λ > 1``.
    """
    t_S = np.asarray(biroli_speciation_time(Lambda))
    return step_at_alpha_bar(sched, np.exp(-2.0 * t_S), num_steps, spacing)


def collapse_time(P: Any, d: Any, sigma2: Any = 1.0) -> np.ndarray | float:
    """Collapse time ``t_C = ½ log(1 + σ²/(P^{2/d} − 1))`` in OU time (Biroli et al. 2024).

    ``P > 1`` training samples, dimension ``d > 0``, per-coordinate data variance ``sigma2 > 0``.
    ``P^{2/d} − 1`` is evaluated as ``expm1(2 log P / d)`` (no cancellation at large d).
    """
    P_a = as_float_array("P", P)
    check_range("P", P_a, 1.0, None, lo_open=True)
    d_a = as_float_array("d", d)
    check_range("d", d_a, 0.0, None, lo_open=True)
    s2 = as_float_array("sigma2", sigma2)
    check_range("sigma2", s2, 0.0, None, lo_open=True)
    out = 0.5 * np.log1p(s2 / np.expm1(2.0 * np.log(P_a) / d_a))
    return float(out) if out.ndim == 0 else out

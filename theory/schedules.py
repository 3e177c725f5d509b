"""Noise schedules: the continuous VP process (eq. 1–3) and DiT's discrete DDPM schedule.

Two time axes meet here and the validation code needs both on one axis:

* continuous VP time ``t ∈ [0, T]`` with ``T = 1`` (the theory side, eq. 1–3), forward
  ``dz = −½ β(t) z dt + √β(t) dW`` with the linear ``β(t) = β_min + t (β_max − β_min)``;
* discrete training timesteps ``i ∈ {0, …, N−1}`` of the DDPM schedule DiT was trained with
  (``β_i`` linear from ``beta_start`` to ``beta_end``), visited by a sampler in ``num_steps``
  steps ``s = 0, 1, …`` (``s = 0`` is the first, noisiest step).

The discrete schedule is the Riemann sum of the continuous one with
``β_min = N·beta_start`` and ``β_max = N·beta_end``; timestep ``i`` is identified with
``t = (i + 1)/N`` (the end of the ``i``-th interval of length ``1/N``), so ``ᾱ_i ≈ α(t)²``
(checked in ``tests/test_schedules.py``; the residual is the O(β_i²) term of ``log(1 − β_i)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .validation import as_float_array, check_positive_int, check_range

Spacing = Literal["trailing", "leading", "linspace"]
_SPACINGS: tuple[str, ...] = ("trailing", "leading", "linspace")


@dataclass(frozen=True)
class VPSchedule:
    """Linear-β variance-preserving schedule on ``t ∈ [0, T]`` (eq. 1–3).

    Defaults are Song et al. (2021)'s VP-SDE values ``β_min = 0.1, β_max = 20``, ``T = 1``.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    T: float = 1.0

    def __post_init__(self) -> None:
        check_range("beta_min", self.beta_min, 0.0, None, lo_open=True)
        check_range("beta_max", self.beta_max, self.beta_min, None)
        check_range("T", self.T, 0.0, None, lo_open=True)


@dataclass(frozen=True)
class DDPMSchedule:
    """Discrete linear-β DDPM schedule (Ho et al. 2020), the one DiT-XL/2 was trained with.

    Defaults: ``num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02`` (DiT paper §3 /
    diffusers ``facebook/DiT-XL-2-256`` scheduler config, ``beta_schedule="linear"``).
    """

    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02

    def __post_init__(self) -> None:
        check_positive_int("num_train_timesteps", self.num_train_timesteps, minimum=2)
        check_range("beta_start", self.beta_start, 0.0, 1.0, lo_open=True, hi_open=True)
        check_range("beta_end", self.beta_end, self.beta_start, 1.0, hi_open=True)

    @property
    def betas(self) -> np.ndarray:
        """``β_i``, shape (N,), float64."""
        return np.linspace(self.beta_start, self.beta_end, self.num_train_timesteps, dtype=np.float64)

    @property
    def alphas_cumprod(self) -> np.ndarray:
        """``ᾱ_i = ∏_{j ≤ i} (1 − β_j)``, shape (N,), the discrete analogue of ``α(t)²`` (eq. 3)."""
        return np.cumprod(1.0 - self.betas)

    def continuous(self) -> VPSchedule:
        """The VP schedule whose Riemann sum this is: ``β_min = N·beta_start``, ``β_max = N·beta_end``."""
        n = self.num_train_timesteps
        return VPSchedule(beta_min=n * self.beta_start, beta_max=n * self.beta_end, T=1.0)


def _t(sched: VPSchedule, t: Any) -> np.ndarray:
    t_arr = as_float_array("t", t)
    check_range("t", t_arr, 0.0, sched.T)
    return t_arr


def _out(x: np.ndarray) -> np.ndarray | float:
    return float(x) if x.ndim == 0 else x


def beta(sched: VPSchedule, t: Any) -> np.ndarray | float:
    """Noise rate ``β(t) = β_min + t (β_max − β_min)`` of eq. (1)."""
    t_arr = _t(sched, t)
    return _out(sched.beta_min + t_arr * (sched.beta_max - sched.beta_min))


def beta_integral(sched: VPSchedule, t: Any) -> np.ndarray | float:
    """``B(t) = ∫_0^t β(s) ds = β_min t + ½ (β_max − β_min) t²`` (the exponent of eq. 3)."""
    t_arr = _t(sched, t)
    return _out(sched.beta_min * t_arr + 0.5 * (sched.beta_max - sched.beta_min) * t_arr**2)


def alpha(sched: VPSchedule, t: Any) -> np.ndarray | float:
    """Signal scale ``α_t = exp(−½ ∫_0^t β)``, eq. (3)."""
    return _out(np.exp(-0.5 * np.asarray(beta_integral(sched, t))))  # eq. (3)


def sigma2(sched: VPSchedule, t: Any) -> np.ndarray | float:
    """Noise variance ``σ_t² = 1 − α_t²``, eq. (3); computed with ``expm1`` to stay accurate at small t."""
    return _out(-np.expm1(-np.asarray(beta_integral(sched, t))))  # eq. (3)


def time_of_beta_integral(sched: VPSchedule, B: Any) -> np.ndarray | float:
    """Inverse of :func:`beta_integral`: the ``t`` with ``∫_0^t β = B`` (positive root of a quadratic)."""
    B_arr = as_float_array("B", B)
    B_max = float(beta_integral(sched, sched.T))
    check_range("B", B_arr, 0.0, B_max)
    a = 0.5 * (sched.beta_max - sched.beta_min)
    b = sched.beta_min
    if a == 0.0:
        return _out(B_arr / b)
    # stable form of (−b + √(b² + 4aB)) / (2a), no cancellation at small B
    return _out(2.0 * B_arr / (b + np.sqrt(b * b + 4.0 * a * B_arr)))


def sampling_timesteps(sched: DDPMSchedule, num_steps: int, spacing: Spacing = "trailing") -> np.ndarray:
    """Training timesteps visited by a ``num_steps``-step sampler, noisiest first (int64, shape (num_steps,)).

    Equals ``diffusers.DDIMScheduler(num_train_timesteps=N, steps_offset=0,
    timestep_spacing=spacing).set_timesteps(num_steps)`` for ``spacing`` in
    {"trailing", "leading", "linspace"} (Lin et al. 2024, Table 2 defines the three spacings).
    """
    n = sched.num_train_timesteps
    num_steps = check_positive_int("num_steps", num_steps)
    if num_steps > n:
        raise ValueError(f"num_steps must be an integer in [1, {n}] (num_train_timesteps), got {num_steps}")
    if spacing == "trailing":
        ratio = n / num_steps
        ts = np.round(np.arange(n, 0, -ratio)) - 1
    elif spacing == "leading":
        ratio = n // num_steps
        ts = (np.arange(num_steps) * ratio)[::-1]
    elif spacing == "linspace":
        ts = np.linspace(0, n - 1, num_steps).round()[::-1]
    else:
        raise ValueError(f"spacing must be one of {_SPACINGS}, got {spacing!r}")
    return ts.astype(np.int64)


def step_to_time(
    sched: DDPMSchedule, s: Any, num_steps: int, spacing: Spacing = "trailing"
) -> np.ndarray | float:
    """Continuous VP time ``t = (timestep_s + 1)/N ∈ (0, 1]`` of sampler step ``s`` (s = 0 noisiest).

    ``s`` may be fractional (e.g. an interpolated speciation step): the timestep is then
    linearly interpolated between the bracketing integer steps, and linearly extrapolated with
    the end segments' slope for ``s`` outside ``[0, num_steps − 1]`` (never clipped).
    The time belongs to ``sched.continuous()`` (see the module docstring).
    """
    ts = sampling_timesteps(sched, num_steps, spacing).astype(np.float64)
    s_arr = as_float_array("s", s)
    steps = np.arange(ts.size, dtype=np.float64)
    timestep = _interp_extrap(s_arr, steps, ts)
    return _out((timestep + 1.0) / sched.num_train_timesteps)


def time_to_step(
    sched: DDPMSchedule, t: Any, num_steps: int, spacing: Spacing = "trailing"
) -> np.ndarray | float:
    """Inverse of :func:`step_to_time`: fractional sampler step at continuous time ``t`` (float).

    Piecewise-linear in ``t`` between the sampler's grid times, linearly extrapolated outside
    them, so ``time_to_step(step_to_time(s)) == s`` for every real ``s``.
    """
    ts = sampling_timesteps(sched, num_steps, spacing).astype(np.float64)
    t_arr = as_float_array("t", t)
    timestep = t_arr * sched.num_train_timesteps - 1.0
    steps = np.arange(ts.size, dtype=np.float64)
    # timesteps decrease with s; interpolate on the increasing reversed grid
    return _out(_interp_extrap(timestep, ts[::-1], steps[::-1]))


def _interp_extrap(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """``np.interp`` with linear extrapolation from the first/last segment (xp increasing)."""
    if xp.size == 1:
        return np.full(np.shape(x), fp[0], dtype=np.float64)
    y = np.interp(x, xp, fp)
    lo_slope = (fp[1] - fp[0]) / (xp[1] - xp[0])
    hi_slope = (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    y = np.where(x < xp[0], fp[0] + (x - xp[0]) * lo_slope, y)
    y = np.where(x > xp[-1], fp[-1] + (x - xp[-1]) * hi_slope, y)
    return y

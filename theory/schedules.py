"""Noise schedules: the continuous VP process (eq. 1–3), DiT's discrete DDPM schedule, DDIM steps.

Two time axes meet here and the validation code needs both on one axis:

* continuous VP time ``t ∈ [0, T]`` with ``T = 1`` (the theory side, eq. 1–3), forward
  ``dz = −½ β(t) z dt + √β(t) dW`` with the linear ``β(t) = β_min + t (β_max − β_min)``;
* discrete training timesteps ``i ∈ {0, …, N−1}`` of the DDPM schedule DiT was trained with
  (``β_i`` linear from ``beta_start`` to ``beta_end``), visited by a sampler in ``num_steps``
  steps ``s = 0, 1, …`` (``s = 0`` is the first, noisiest step).

The exact discrete map (use this one). Everything a sampler or a network sees is ``ᾱ_i``; the
package therefore places fractional times on the discrete table itself:

* a fractional training timestep ``τ ∈ [−1, N−1]`` has ``log ᾱ(τ)`` linear between the integer
  timesteps, with ``ᾱ_{−1} = 1`` (the empty product: the clean end a sampler's last step lands
  on, diffusers' ``final_alpha_cumprod`` with ``set_alpha_to_one=True``);
* a fractional sampler step ``s ∈ [0, S]`` has its timestep linear in ``s`` between the sampler's
  grid timesteps ``τ_0 > τ_1 > … > τ_{S−1}`` (:func:`sampling_timesteps`) and ``τ_S = −1``.

:func:`alpha_bar_at_timestep`, :func:`alpha_bar_at_step` and their inverses
:func:`timestep_at_alpha_bar`, :func:`step_at_alpha_bar` are this map; all four are strictly
monotone and reproduce the table exactly (bit for bit) at integer arguments.

The Riemann-sum route (kept for the continuous theory, not for placing things on DiT's axis).
The discrete schedule is the Riemann sum of the continuous one with ``β_min = N·beta_start`` and
``β_max = N·beta_end``, timestep ``i`` identified with ``t = (i + 1)/N``; :meth:`DDPMSchedule.continuous`
+ :func:`step_to_time` / :func:`time_to_step` implement it. It is only approximate: ``log ᾱ_i =
Σ_{j≤i} log(1 − β_j) = −Σ β_j − ½ Σ β_j² − …`` while ``log α(t)² = −∫β`` keeps only the first
term, so the two differ by ``½ Σ β_j² ≈ 0.07`` at ``i = N − 1`` (plus a half-interval grid offset).
Near ``t = T`` one timestep moves ``log ᾱ`` by only ``β_{N−1} = 0.02``, so a 0.07 error in
``log ᾱ`` is ≈ 3.4 training timesteps: placing a given ``ᾱ`` (e.g. Biroli's ``1/Λ``) through the
continuous route misplaces it by up to 3.4 of DiT's 1000 timesteps near ``t = T`` (0.17 sampler
steps at S = 50), measured in ``tests/test_schedules.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .validation import as_float_array, check_positive_int, check_range, describe

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


# ----------------------------------------------------------------------------------------------------------
# The exact discrete map (module docstring): fractional training timesteps and sampler steps ↔ ᾱ.


def _alphas_cumprod_ext(sched: DDPMSchedule) -> np.ndarray:
    """``ᾱ_i`` for ``i = −1, 0, …, N−1`` (``ᾱ_{−1} = 1``), shape (N + 1,)."""
    return np.concatenate([[1.0], sched.alphas_cumprod])


def _timesteps_ext(sched: DDPMSchedule, num_steps: int, spacing: Spacing) -> np.ndarray:
    """Grid timesteps ``τ_0 > … > τ_{S−1}`` and the clean end ``τ_S = −1``, float64 (S + 1,)."""
    return np.append(sampling_timesteps(sched, num_steps, spacing).astype(np.float64), -1.0)


def alpha_bar_at_timestep(sched: DDPMSchedule, tau: Any) -> np.ndarray | float:
    """``ᾱ`` at a fractional training timestep ``τ ∈ [−1, N−1]`` (``log ᾱ`` linear between integers).

    Integer ``τ`` give the table value ``ᾱ_τ`` exactly; ``τ = −1`` is ``ᾱ = 1`` (module docstring).
    Raises ``ValueError`` outside ``[−1, N−1]``.
    """
    n = sched.num_train_timesteps
    tau_a = as_float_array("tau", tau)
    check_range("tau", tau_a, -1.0, n - 1.0)
    table = _alphas_cumprod_ext(sched)  # index k ↔ timestep k − 1
    x = tau_a + 1.0
    lo = np.minimum(np.floor(x).astype(np.int64), n - 1)
    w = x - lo
    log_t = np.log(table)
    interp = np.exp(log_t[lo] + w * (log_t[lo + 1] - log_t[lo]))
    on_grid = x == np.round(x)
    return _out(np.where(on_grid, table[np.round(x).astype(np.int64)], interp))


def timestep_at_alpha_bar(sched: DDPMSchedule, alpha_bar: Any) -> np.ndarray | float:
    """Inverse of :func:`alpha_bar_at_timestep`: the fractional timestep ``τ ∈ [−1, N−1]`` of ``ᾱ``.

    ``alpha_bar`` must lie in ``(0, 1]`` (else ``ValueError``); below ``ᾱ_{N−1}`` (noisier than the
    schedule reaches) the result is NaN.
    """
    ab = as_float_array("alpha_bar", alpha_bar)
    check_range("alpha_bar", ab, 0.0, 1.0, lo_open=True)
    neg_log = -np.log(_alphas_cumprod_ext(sched))  # increasing from 0
    taus = np.arange(-1.0, sched.num_train_timesteps)
    return _out(np.interp(-np.log(ab), neg_log, taus, right=np.nan))


def timestep_at_step(
    sched: DDPMSchedule, s: Any, num_steps: int, spacing: Spacing = "trailing"
) -> np.ndarray | float:
    """Fractional training timestep of sampler step ``s ∈ [0, S]``: linear between the grid's timesteps.

    ``s = S`` (after the last step) is the clean end ``τ = −1``; raises ``ValueError`` outside ``[0, S]``.
    """
    num_steps = check_positive_int("num_steps", num_steps)
    s_a = as_float_array("s", s)
    check_range("s", s_a, 0.0, float(num_steps))
    taus = _timesteps_ext(sched, num_steps, spacing)
    return _out(np.interp(s_a, np.arange(num_steps + 1, dtype=np.float64), taus))


def alpha_bar_at_step(
    sched: DDPMSchedule, s: Any, num_steps: int, spacing: Spacing = "trailing"
) -> np.ndarray | float:
    """``ᾱ`` at a fractional sampler step ``s ∈ [0, S]`` on the exact discrete map (module docstring).

    Integer ``s < S`` give ``sched.alphas_cumprod[sampling_timesteps(sched, S)[s]]`` exactly and
    ``s = S`` gives 1; raises ``ValueError`` outside ``[0, S]``.
    """
    return alpha_bar_at_timestep(sched, timestep_at_step(sched, s, num_steps, spacing))


def step_at_alpha_bar(
    sched: DDPMSchedule, alpha_bar: Any, num_steps: int, spacing: Spacing = "trailing"
) -> np.ndarray | float:
    """Inverse of :func:`alpha_bar_at_step`: the fractional sampler step ``s ∈ [0, S]`` of ``ᾱ``.

    ``alpha_bar`` must lie in ``(0, 1]`` (else ``ValueError``); where it is below ``ᾱ`` of step 0
    (noisier than the sampler's first step) the result is NaN.
    """
    num_steps = check_positive_int("num_steps", num_steps)
    tau = np.asarray(timestep_at_alpha_bar(sched, alpha_bar))
    taus = _timesteps_ext(sched, num_steps, spacing)  # decreasing in s
    steps = np.arange(num_steps + 1, dtype=np.float64)
    return _out(np.interp(tau, taus[::-1], steps[::-1], right=np.nan))


# ----------------------------------------------------------------------------------------------------------
# One DDIM step (Song, Meng & Ermon 2020, eq. 12) and its score form x_prev = c₁ x + γ_s ∇ log p_t(x).
# Notation map to diffusers' DDIMScheduler.step: ab_t = alpha_prod_t, ab_prev = alpha_prod_t_prev,
# ddim_eta = eta, σ_η = std_dev_t; ``eta`` itself is reserved for the paper's block gain η_k (eq. 46).


def _check_step_pair(ab_t: Any, ab_prev: Any) -> tuple[np.ndarray, np.ndarray]:
    ab_t_a = as_float_array("ab_t", ab_t)
    check_range("ab_t", ab_t_a, 0.0, 1.0, lo_open=True, hi_open=True)
    ab_prev_a = as_float_array("ab_prev", ab_prev)
    if ab_t_a.ndim == 0:
        check_range("ab_prev", ab_prev_a, float(ab_t_a), 1.0)
    else:
        check_range("ab_prev", ab_prev_a, 0.0, 1.0)
        if np.any(ab_prev_a < ab_t_a):
            raise ValueError(f"ab_prev must lie in [ab_t, 1] elementwise, got {describe(ab_prev_a)}")
    return ab_t_a, ab_prev_a


def _ddim_sigma(ab_t: Any, ab_prev: Any, ddim_eta: Any) -> Any:
    """``σ_η = η_DDIM sqrt((1 − ᾱ_prev)/(1 − ᾱ_t)) sqrt(1 − ᾱ_t/ᾱ_prev)`` (Song et al. 2020, eq. 16)."""
    return ddim_eta * np.sqrt((1 - ab_prev) / (1 - ab_t)) * np.sqrt(np.maximum(0.0, 1 - ab_t / ab_prev))


def ddim_c1(ab_t: Any, ab_prev: Any) -> np.ndarray | float:
    """Linear coefficient ``c₁ = sqrt(ᾱ_prev/ᾱ_t)`` of a DDIM step ``x_prev = c₁ x + γ_s ∇ log p_t(x)``.

    ``c₁ > 1`` for every step towards the data (it is the growth of the signal scale α).
    """
    ab_t_a, ab_prev_a = _check_step_pair(ab_t, ab_prev)
    return _out(np.sqrt(ab_prev_a / ab_t_a))


def ddim_score_gain(ab_t: Any, ab_prev: Any, ddim_eta: Any = 0.0) -> np.ndarray | float:
    """γ_s of one DDIM step ``x_prev = c₁ x + γ_s ∇ log p_t(x)`` (+ noise): the score gain of eq. (36).

    With ``ε̂ = −σ_t ∇ log p_t`` and ``x̂₀ = (x − σ_t ε̂)/α_t``,
    ``x_prev = c₁ x + (c₁ σ_t − sqrt(1 − ᾱ_prev − σ_η²)) σ_t ∇ log p_t``,
    ``c₁ = sqrt(ᾱ_prev/ᾱ_t)``, ``σ_η = ddim_eta·sqrt((1 − ᾱ_prev)/(1 − ᾱ_t))·sqrt(1 − ᾱ_t/ᾱ_prev)``,
    so ``γ_s = σ_t (c₁ σ_t − sqrt(1 − ᾱ_prev − σ_η²))``. Broadcasts; ``ab_t ∈ (0, 1)``,
    ``ab_prev ∈ [ab_t, 1]``.
    """
    ab_t_a, ab_prev_a = _check_step_pair(ab_t, ab_prev)
    e = as_float_array("ddim_eta", ddim_eta)
    check_range("ddim_eta", e, 0.0, None)
    s_t = np.sqrt(1 - ab_t_a)
    c1 = np.sqrt(ab_prev_a / ab_t_a)
    sig = _ddim_sigma(ab_t_a, ab_prev_a, e)
    return _out(s_t * (c1 * s_t - np.sqrt(np.maximum(0.0, 1 - ab_prev_a - sig**2))))


def ddim_step(
    x: np.ndarray, eps: np.ndarray, ab_t: float, ab_prev: float, ddim_eta: float, noise: np.ndarray | None
) -> np.ndarray:
    """One DDIM update t → t_prev (Song et al. 2020, eq. 12); ``ddim_eta = 1`` is DDPM-like ancestral.

    ``x_prev = sqrt(ᾱ_prev) x̂₀ + sqrt(1 − ᾱ_prev − σ_η²) ε + σ_η z`` with
    ``x̂₀ = (x − sqrt(1 − ᾱ_t) ε)/sqrt(ᾱ_t)`` and σ_η of Song et al. eq. (16);
    ``noise`` (same shape as x) is ``z``, ignored when ``σ_η = 0`` or None (the deterministic part).
    ``ab_t``, ``ab_prev`` are scalars (one step for the whole batch).
    """
    _check_step_pair(float(ab_t), float(ab_prev))
    check_range("ddim_eta", ddim_eta, 0.0, None)
    x0 = (x - np.sqrt(1 - ab_t) * eps) / np.sqrt(ab_t)
    sig = ddim_eta * np.sqrt((1 - ab_prev) / (1 - ab_t)) * np.sqrt(max(0.0, 1 - ab_t / ab_prev))
    out = np.sqrt(ab_prev) * x0 + np.sqrt(max(0.0, 1 - ab_prev - sig**2)) * eps  # Song et al. eq. (12)
    return out if noise is None or sig == 0 else out + sig * noise

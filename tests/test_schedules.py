"""Schedules: continuous VP (eq. 1–3), DiT's DDPM schedule, sampler grids and the step↔time map."""

from __future__ import annotations

import numpy as np
import pytest
from diffusers import DDIMScheduler
from hypothesis import given
from hypothesis import strategies as st
from scipy.integrate import quad

from theory import (
    DDPMSchedule,
    VPSchedule,
    alpha,
    beta,
    beta_integral,
    sampling_timesteps,
    sigma2,
    step_to_time,
    time_to_step,
)
from theory.schedules import time_of_beta_integral

VP = VPSchedule()
DDPM = DDPMSchedule()


def test_vp_closed_forms_against_quadrature() -> None:
    t = np.array([0.0, 1e-4, 0.1, 0.5, 1.0])
    B_ref = np.array([quad(lambda s: float(beta(VP, s)), 0.0, x, epsabs=1e-14)[0] for x in t])
    np.testing.assert_allclose(beta_integral(VP, t), B_ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(alpha(VP, t), np.exp(-0.5 * B_ref), rtol=1e-12)  # eq. (3)
    np.testing.assert_allclose(sigma2(VP, t) + alpha(VP, t) ** 2, 1.0, rtol=0, atol=1e-15)
    assert beta(VP, 0.0) == 0.1 and beta(VP, 1.0) == 20.0


def test_sigma2_accurate_at_small_t() -> None:
    # σ² = 1 − α² would cancel catastrophically; expm1 keeps ~full precision: σ²(t) ≈ β_min t
    t = 1e-9
    assert sigma2(VP, t) == pytest.approx(0.1 * t + 0.5 * 19.9 * t**2, rel=1e-12)


def test_ddpm_matches_diffusers_tables() -> None:
    ref = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    np.testing.assert_allclose(DDPM.betas, ref.betas.numpy(), rtol=1e-6)  # diffusers stores float32
    np.testing.assert_allclose(DDPM.alphas_cumprod, ref.alphas_cumprod.numpy(), rtol=2e-5)


@pytest.mark.parametrize("spacing", ["trailing", "leading", "linspace"])
@pytest.mark.parametrize("n", [10, 25, 50, 100])
def test_sampling_timesteps_equal_diffusers(spacing: str, n: int) -> None:
    ref = DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing, steps_offset=0)
    ref.set_timesteps(n)
    np.testing.assert_array_equal(sampling_timesteps(DDPM, n, spacing), ref.timesteps.numpy())


def test_discrete_alphabar_matches_continuous() -> None:
    """ᾱ_i ≈ α(t_i)² with t_i = (i+1)/N for the VP schedule with β_min = N β_start, β_max = N β_end.

    log ᾱ_i = Σ_{j≤i} log(1 − β_j) = −Σβ_j − ½Σβ_j² − …, while −∫_0^{t_i} β is the midpoint-type
    Riemann sum of the same linear β; the mismatch is the O(β²) term (≤ ½ Σ_j β_j² ≈ 0.07 at
    i = N − 1) plus the grid offset (β_end − β_start)/2·(i+1)/N ≤ 0.01. Tolerance on
    |log ᾱ − log α²|: that bound, computed per i.
    """
    cont = DDPM.continuous()
    assert (cont.beta_min, cont.beta_max) == pytest.approx((0.1, 20.0))
    i = np.arange(DDPM.num_train_timesteps)
    t = (i + 1) / DDPM.num_train_timesteps
    err = np.abs(np.log(DDPM.alphas_cumprod) - np.log(alpha(cont, t) ** 2))
    b = DDPM.betas
    bound = 0.5 * np.cumsum(b**2 / (1 - b)) + 0.5 * (DDPM.beta_end - DDPM.beta_start) * t + 1e-12
    assert np.all(err <= bound)
    assert err.max() < 0.08
    # and in absolute terms on ᾱ itself (what the sampler uses)
    assert np.max(np.abs(DDPM.alphas_cumprod - alpha(cont, t) ** 2)) < 2e-3


@pytest.mark.parametrize("spacing", ["trailing", "leading", "linspace"])
def test_step_to_time_on_grid(spacing: str) -> None:
    n = 50
    ts = sampling_timesteps(DDPM, n, spacing)
    t = step_to_time(DDPM, np.arange(n), n, spacing)
    np.testing.assert_allclose(t, (ts + 1) / 1000, rtol=0, atol=1e-15)
    assert np.all(np.diff(t) < 0)  # s = 0 is the noisiest step
    assert 0.0 < t.min() and t.max() <= 1.0


@given(st.floats(-5.0, 104.0), st.sampled_from(["trailing", "leading", "linspace"]))
def test_time_to_step_inverts_step_to_time(s: float, spacing: str) -> None:
    t = step_to_time(DDPM, s, 100, spacing)
    assert time_to_step(DDPM, t, 100, spacing) == pytest.approx(s, abs=1e-9)


def test_fractional_step_interpolates() -> None:
    t0, t1 = step_to_time(DDPM, [3.0, 4.0], 25, "trailing")
    assert step_to_time(DDPM, 3.25, 25, "trailing") == pytest.approx(0.75 * t0 + 0.25 * t1, abs=1e-15)


@given(st.floats(0.0, float(beta_integral(VP, 1.0))))
def test_time_of_beta_integral_inverse(B: float) -> None:
    assert beta_integral(VP, time_of_beta_integral(VP, B)) == pytest.approx(B, rel=1e-12, abs=1e-15)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\], got 1.5"):
        alpha(VP, 1.5)
    with pytest.raises(ValueError, match="t must be finite"):
        sigma2(VP, float("nan"))
    with pytest.raises(ValueError, match=r"num_steps must be an integer in \[1, 1000\]"):
        sampling_timesteps(DDPM, 2000)
    with pytest.raises(ValueError, match="spacing must be one of"):
        sampling_timesteps(DDPM, 10, "karras")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"beta_max must lie in \[0.1, inf\], got 0.05"):
        VPSchedule(beta_min=0.1, beta_max=0.05)
    with pytest.raises(TypeError, match="num_train_timesteps must be an integer"):
        DDPMSchedule(num_train_timesteps=10.5)  # type: ignore[arg-type]

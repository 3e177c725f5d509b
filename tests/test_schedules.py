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
    alpha_bar_at_step,
    alpha_bar_at_timestep,
    beta,
    beta_integral,
    ddim_c1,
    ddim_score_gain,
    ddim_step,
    sampling_timesteps,
    sigma2,
    step_at_alpha_bar,
    step_to_time,
    time_to_step,
    timestep_at_alpha_bar,
    timestep_at_step,
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


# ----------------------------------------------------------------------------------------------------------
# The exact discrete map (theory.schedules module docstring) and one DDIM step.


def test_alpha_bar_at_timestep_is_the_table_on_integers_and_log_linear_between() -> None:
    ab = DDPM.alphas_cumprod
    i = np.arange(DDPM.num_train_timesteps)
    np.testing.assert_array_equal(alpha_bar_at_timestep(DDPM, i.astype(float)), ab)  # bit for bit
    assert alpha_bar_at_timestep(DDPM, -1.0) == 1.0  # the clean end, ᾱ_{−1} = ∏ over nothing
    # halfway between two timesteps: the geometric mean (log ᾱ linear); 1e-14 relative is rounding
    np.testing.assert_allclose(
        alpha_bar_at_timestep(DDPM, i[:-1] + 0.5), np.sqrt(ab[:-1] * ab[1:]), rtol=1e-14
    )
    assert alpha_bar_at_timestep(DDPM, -0.5) == pytest.approx(np.sqrt(ab[0]), rel=1e-15)


@given(st.floats(-1.0, 999.0))
def test_timestep_at_alpha_bar_inverts(tau: float) -> None:
    ab = alpha_bar_at_timestep(DDPM, tau)
    assert timestep_at_alpha_bar(DDPM, ab) == pytest.approx(tau, abs=1e-9)


@pytest.mark.parametrize("spacing", ["trailing", "leading", "linspace"])
@pytest.mark.parametrize("n", [10, 50, 100])
def test_alpha_bar_at_step_on_the_sampler_grid(spacing: str, n: int) -> None:
    """Integer steps give exactly ᾱ[timesteps[s]] (the numbers the samplers use), s = S gives 1."""
    ts = sampling_timesteps(DDPM, n, spacing)
    grid = alpha_bar_at_step(DDPM, np.arange(n + 1.0), n, spacing)
    np.testing.assert_array_equal(grid[:-1], DDPM.alphas_cumprod[ts])
    assert grid[-1] == 1.0
    s = np.linspace(0, n, 20 * n + 1)
    assert np.all(np.diff(alpha_bar_at_step(DDPM, s, n, spacing)) > 0)  # strictly monotone
    np.testing.assert_allclose(timestep_at_step(DDPM, np.arange(n + 1.0), n, spacing), np.append(ts, -1))


@given(st.floats(0.0, 50.0), st.sampled_from(["trailing", "leading", "linspace"]))
def test_step_at_alpha_bar_inverts(s: float, spacing: str) -> None:
    ab = alpha_bar_at_step(DDPM, s, 50, spacing)
    assert step_at_alpha_bar(DDPM, ab, 50, spacing) == pytest.approx(s, abs=1e-9)


def test_exact_map_out_of_range() -> None:
    ab0 = float(DDPM.alphas_cumprod[-1])
    assert np.isnan(timestep_at_alpha_bar(DDPM, 0.5 * ab0))  # noisier than the schedule reaches
    # "leading" starts at timestep 980: ᾱ_999 is before the sampler's first step
    assert np.isnan(step_at_alpha_bar(DDPM, ab0, 50, "leading"))
    assert step_at_alpha_bar(DDPM, ab0, 50, "trailing") == 0.0
    with pytest.raises(ValueError, match=r"alpha_bar must lie in \(0, 1\], got 1.5"):
        step_at_alpha_bar(DDPM, 1.5, 50)
    with pytest.raises(ValueError, match=r"alpha_bar must lie in \(0, 1\], got 0"):
        timestep_at_alpha_bar(DDPM, 0.0)
    with pytest.raises(ValueError, match=r"s must lie in \[0, 50\], got 50.5"):
        alpha_bar_at_step(DDPM, 50.5, 50)
    with pytest.raises(ValueError, match=r"tau must lie in \[-1, 999\], got -2"):
        alpha_bar_at_timestep(DDPM, -2.0)


def test_riemann_sum_route_misplaces_dit_schedule_near_T() -> None:
    """The continuous route (DDPMSchedule.continuous() + time_to_step) vs the exact discrete map.

    For ᾱ = α(t)² of the continuous schedule, the exact map places ᾱ at training timestep τ_exact(ᾱ),
    the Riemann route at N t − 1. The error is the neglected ½Σβ_j² term of log(1 − β) (≈ 0.067 at
    i = 999) divided by the local slope β_i (0.02 at t = T): measured 3.36 timesteps, at t = T, i.e.
    0.168 sampler steps at S = 50. Bands: [3.2, 3.5] timesteps, argmax at t > 0.99.
    """
    cont = DDPM.continuous()
    t = np.linspace(0.01, 1.0, 99_001)
    ab = alpha(cont, t) ** 2
    dev = timestep_at_alpha_bar(DDPM, ab) - (DDPM.num_train_timesteps * t - 1.0)  # training timesteps
    worst = float(np.max(np.abs(dev)))
    assert 3.2 < worst < 3.5 and t[np.argmax(np.abs(dev))] > 0.99
    dev_steps = step_at_alpha_bar(DDPM, ab, 50) - time_to_step(DDPM, t, 50)  # sampler steps, S = 50
    assert np.max(np.abs(dev_steps)) == pytest.approx(worst / 20.0, rel=1e-6)  # 20 timesteps per step
    assert np.max(np.abs(dev[t < 0.3])) < 0.5  # near t = 0 the two routes agree to half a timestep


@pytest.mark.parametrize("ddim_eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("n", [10, 50])
def test_ddim_step_matches_diffusers(ddim_eta: float, n: int) -> None:
    """Independent reference: diffusers' DDIMScheduler.step (float32 tables, so 1e-5 relative)."""
    import torch

    ref = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        timestep_spacing="trailing",
        steps_offset=0,
        clip_sample=False,
        set_alpha_to_one=True,
    )
    ref.set_timesteps(n)
    rng = np.random.default_rng(0)
    grid = alpha_bar_at_step(DDPM, np.arange(n + 1.0), n)
    for s in (0, n // 2, n - 1):
        x, eps, z = rng.standard_normal((3, 2, 4, 4))
        got = ddim_step(x, eps, grid[s], grid[s + 1], ddim_eta, z)
        out = ref.step(
            torch.from_numpy(eps),
            int(ref.timesteps[s]),
            torch.from_numpy(x),
            eta=ddim_eta,
            variance_noise=torch.from_numpy(z),
        ).prev_sample
        np.testing.assert_allclose(got, out.numpy(), rtol=1e-5, atol=1e-5)


@given(st.floats(1e-4, 0.99), st.floats(1e-3, 1.0), st.floats(0.0, 1.0))
def test_ddim_score_gain_is_the_score_coefficient_of_a_step(
    ab_t: float, frac: float, ddim_eta: float
) -> None:
    """Gaussian data N(0, I): ∇log p_t = −x (v = 1), ε̂ = σ_t x, so x_prev − c₁x = −γ_s x exactly."""
    ab_prev = ab_t + frac * (1.0 - ab_t)
    x = np.array([0.3, -1.2, 2.0])
    out = ddim_step(x, np.sqrt(1 - ab_t) * x, ab_t, ab_prev, ddim_eta, None)  # deterministic part
    c1 = ddim_c1(ab_t, ab_prev)
    np.testing.assert_allclose(out - c1 * x, -ddim_score_gain(ab_t, ab_prev, ddim_eta) * x, atol=1e-12)
    assert c1 == pytest.approx(np.sqrt(ab_prev / ab_t), rel=1e-15)
    if ddim_eta == 0.0:  # closed form σ_t(c₁σ_t − σ_prev) > 0 of the deterministic step
        g = np.sqrt(1 - ab_t) * (c1 * np.sqrt(1 - ab_t) - np.sqrt(1 - ab_prev))
        assert ddim_score_gain(ab_t, ab_prev) == pytest.approx(g, rel=1e-12) and g > 0


def test_ddim_bad_input() -> None:
    with pytest.raises(ValueError, match=r"ab_prev must lie in \[0.5, 1\], got 0.4"):
        ddim_score_gain(0.5, 0.4)
    with pytest.raises(ValueError, match=r"ab_t must lie in \(0, 1\), got 1"):
        ddim_c1(1.0, 1.0)
    with pytest.raises(ValueError, match=r"ab_prev must lie in \[ab_t, 1\] elementwise"):
        ddim_score_gain(np.array([0.5, 0.6]), np.array([0.7, 0.55]))
    with pytest.raises(ValueError, match=r"ddim_eta must lie in \[0, inf\], got -1"):
        ddim_step(np.zeros(2), np.zeros(2), 0.5, 0.6, -1.0, None)

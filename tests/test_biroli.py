"""Biroli et al. (2024) on DiT's exact discrete schedule (theory.biroli): Table 1 and the collapse time."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import theory
from theory import (
    DDPMSchedule,
    alpha_bar_at_step,
    biroli_speciation_index,
    biroli_speciation_step,
    collapse_time,
    timestep_at_step,
)

DDPM = DDPMSchedule()

# Biroli, Bonnaire, de Bortoli & Mézard (2024), Table 1: top covariance eigenvalue Λ and the first DDPM
# index whose ᾱ falls below 1/Λ (linear β, 1e-4 → 0.02, 1000 steps).
TABLE1_LAMBDA = (7.66, 16.72, 3.05, 12.11, 60.52)
TABLE1_INDEX = (446, 526, 329, 495, 635)


def test_table1_indices_exactly_through_the_public_api() -> None:
    """Issue acceptance: the published indices, exactly (vectorized and one by one)."""
    np.testing.assert_array_equal(theory.biroli_speciation_index(DDPM, TABLE1_LAMBDA), TABLE1_INDEX)
    for lam, idx in zip(TABLE1_LAMBDA, TABLE1_INDEX, strict=True):
        got = biroli_speciation_index(DDPM, lam)
        assert isinstance(got, int) and got == idx


@given(st.floats(1.001, 2.4e4))
def test_index_is_the_first_below_a_loop(lam: float) -> None:
    """Second algorithm: a plain loop over the table."""
    ab = DDPM.alphas_cumprod
    ref = next(i for i, a in enumerate(ab) if a < 1.0 / lam)
    assert biroli_speciation_index(DDPM, lam) == ref


@pytest.mark.parametrize("num_steps", [50, 100])
def test_speciation_step_is_where_alpha_bar_is_one_over_lambda(num_steps: int) -> None:
    """t_S = ½ log Λ ⇔ ᾱ = e^{−2 t_S} = 1/Λ on the exact map; its timestep lies in (index − 1, index]."""
    lam = np.array(TABLE1_LAMBDA)
    s = biroli_speciation_step(DDPM, lam, num_steps)
    np.testing.assert_allclose(alpha_bar_at_step(DDPM, s, num_steps), 1.0 / lam, rtol=1e-12)
    tau = timestep_at_step(DDPM, s, num_steps)
    idx = np.array(TABLE1_INDEX)
    assert np.all((idx - 1 < tau) & (tau <= idx))
    assert np.all(np.diff(s[np.argsort(lam)]) < 0)  # larger Λ: speciates earlier in the reverse process


def test_speciation_step_before_the_sampler_starts_is_nan() -> None:
    assert np.isnan(biroli_speciation_step(DDPM, 2.4e4, 50, "leading"))  # "leading" starts at t = 980


def test_collapse_time_published_values() -> None:
    """Issue acceptance: P = 20000, σ² = 1, d = 256, 1024, 4096 ⇒ 1.299, 1.978, 2.667 (3 decimals)."""
    got = collapse_time(20000, np.array([256, 1024, 4096]))
    np.testing.assert_array_equal(np.round(got, 3), [1.299, 1.978, 2.667])


def test_collapse_time_large_d_asymptote() -> None:
    """P^{2/d} − 1 → 2 log P/d, so t_C → ½ log(1 + σ² d/(2 log P)); gap O(log P/d) ≈ 1e-5 at d = 1e6."""
    P, d, s2 = 20000.0, 1e6, 2.0
    ref = 0.5 * np.log1p(s2 * d / (2 * np.log(P)))
    assert collapse_time(P, d, s2) == pytest.approx(ref, rel=1e-5)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match=r"Lambda must lie in \(1, 24778.1\), got 1"):
        biroli_speciation_index(DDPM, 1.0)
    with pytest.raises(ValueError, match=r"Lambda must lie in \(1, 24778.1\), got 30000"):
        biroli_speciation_index(DDPM, 3e4)
    with pytest.raises(ValueError, match=r"P must lie in \(1, inf\], got 1"):
        collapse_time(1.0, 10)
    with pytest.raises(ValueError, match=r"sigma2 must lie in \(0, inf\], got 0"):
        collapse_time(100.0, 10, 0.0)

"""Branch directions and the branch-validity gate (dit_validation.branches) against independent references.

* the low-pass basis spans exactly the row space of Protocol I's pooling (eq. 71): projecting on it leaves
  d_low unchanged and d_high of its complement equal to the full residual;
* the spectral centroid orders the testbed's factor patterns global → local;
* on the exact-score sampler (the testbed's known answer), band directions found from clone-pair endpoints
  recover the factor patterns in their bands, and the gate passes them and refuses a unimodal noise direction;
* the gate refuses a synthetic unimodal coordinate and passes a bimodal one; the fraction equals a loop.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dit_validation.branches import (
    BranchDirections,
    band_directions,
    factor_directions,
    lowpass_basis,
    midpoint_fraction,
    spectral_centroid,
)
from dit_validation.clones import exact_endpoints
from dit_validation.metrics import d_low, lowpass
from dit_validation.verdicts import GATE_FRACTION, learned
from theory.multiscale import DEFAULT_MIXTURE, patterns

SHAPE = (1, 16, 16)


def test_lowpass_basis_is_the_row_space_of_the_pooling():
    """Q (k, d) orthonormal; P(x) depends only on QᵀQx, and x − QᵀQx is invisible to P — so the low band of
    a difference carries all of d_low (eq. 71) and the complement none of it. Fails if the basis misses a
    pooled direction or includes one P cannot see."""
    Q = lowpass_basis(SHAPE, 4)
    assert Q.shape == (16, 256)
    np.testing.assert_allclose(Q @ Q.T, np.eye(16), atol=1e-12)
    x = np.random.default_rng(0).standard_normal((5, 256))
    low = x @ Q.T @ Q
    t = lambda v: torch.as_tensor(v).view(-1, *SHAPE)  # noqa: E731
    np.testing.assert_allclose(lowpass(t(low), 4).numpy(), lowpass(t(x), 4).numpy(), atol=1e-12)
    np.testing.assert_allclose(lowpass(t(x - low), 4).numpy(), 0.0, atol=1e-12)
    zero = torch.zeros(5, *SHAPE, dtype=torch.float64)
    np.testing.assert_allclose(d_low(t(x - low), zero, 4).numpy(), 0.0, atol=1e-20)
    np.testing.assert_allclose(d_low(t(low), zero, 4).numpy(), d_low(t(x), zero, 4).numpy(), rtol=1e-12)
    # a 3-channel latent: one block indicator per channel and pooled cell
    assert lowpass_basis((3, 8, 8), 2).shape == (12, 192)


def test_spectral_centroid_orders_the_factors_and_matches_a_loop():
    phi = patterns(DEFAULT_MIXTURE)
    c = spectral_centroid(phi, SHAPE)
    assert np.all(np.diff(c) > 0)  # half < quadrant < block4 < checker
    assert c[-1] == pytest.approx(np.hypot(0.5, 0.5))  # the checkerboard sits at the Nyquist corner
    img = phi[1].reshape(16, 16)
    P = np.abs(np.fft.fft2(img)) ** 2
    f = np.fft.fftfreq(16)
    num = sum(P[i, j] * np.hypot(f[i], f[j]) for i in range(16) for j in range(16))
    assert c[1] == pytest.approx(num / P.sum(), rel=1e-12)


@pytest.fixture(scope="module")
def exact_samples():
    return exact_endpoints(256, 50, seed=3).reshape(2, 256, -1)


def test_band_directions_recover_the_factors_on_the_exact_score_sampler(exact_samples):
    """With the answer known: clone pairs of the exact-score sampler split at step 0 branch along the factor
    patterns, so the band directions are those patterns (|cos| > 0.98): half, quadrant, block4 in the low band
    (block4's 4 × 4-pixel blocks are constant on P's cells), checker in the high band; the remaining high-band
    direction is a unimodal noise direction, which the gate refuses."""
    xA, xB = exact_samples
    d = band_directions(xA, xB, SHAPE, 6)
    assert sorted(d.band) == sorted(("low",) * 3 + ("high",) * 3)
    cos = np.abs(d.phi @ patterns(DEFAULT_MIXTURE).T)  # (6, 4)
    best = cos.max(axis=0)
    np.testing.assert_array_less(0.98, best)  # every factor is found
    frac = midpoint_fraction(np.concatenate([xA, xB]), d)
    ok = learned(frac)
    is_factor = cos.max(axis=1) > 0.98
    np.testing.assert_array_equal(ok, is_factor)
    assert np.all(np.diff(d.centroid) >= 0)
    # the factor half separations are the amplitudes A_f (to the sampler's and the fit's error)
    A = np.asarray(DEFAULT_MIXTURE.amplitudes)
    got = np.array([d.half_separation[np.argmax(cos[:, f])] for f in range(4)])
    np.testing.assert_allclose(got, A, rtol=0.05)


def test_exact_sampler_passes_the_factor_gate(exact_samples):
    """The exact-score sampler puts ≈ 1 % of samples within A_f/2 of 0 for the checker (Φ(−2.4) ≈ 0.8 %
    analytically at s = 0.25), none for the others."""
    frac = midpoint_fraction(exact_samples.reshape(512, -1), factor_directions(4))
    np.testing.assert_array_less(frac, GATE_FRACTION)
    assert learned(frac).all()


def _directions(half: float) -> BranchDirections:
    phi = np.eye(3)[:1]
    return BranchDirections(
        "bands", phi, np.zeros(1), np.ones(1), ("x",), np.array([half]), ("low",), np.zeros(1)
    )


def test_gate_refuses_a_unimodal_coordinate_and_passes_a_bimodal_one():
    """A Gaussian (unimodal) coordinate with the variance of a branch pair has ≈ 38 % of its samples within
    A/2 of the midpoint — what the shipped DiT did along the checker — and is refused; the symmetric mixture
    ±A + N(0, (A/5)²) passes. With no branches found (m = 0) the fraction is undefined and refused."""
    rng = np.random.default_rng(0)
    A = 1.2
    gauss = rng.normal(0.0, np.sqrt(A**2 + 0.0625), (512, 1)) @ np.eye(3)[:1]
    bimodal = (rng.choice([-A, A], 512) + rng.normal(0, A / 5, 512))[:, None] @ np.eye(3)[:1]
    f_gauss = midpoint_fraction(gauss, _directions(A))
    f_bi = midpoint_fraction(bimodal, _directions(A))
    assert 0.3 < f_gauss[0] < 0.46 and not learned(f_gauss)[0]
    assert f_bi[0] < 0.01 and learned(f_bi)[0]
    assert np.isnan(midpoint_fraction(bimodal, _directions(0.0))[0]) and not learned([np.nan])[0]


@given(st.integers(2, 60), st.floats(0.05, 5.0), st.integers(0, 2**31 - 1))
def test_midpoint_fraction_equals_a_loop(n, half, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 2, (n, 3))
    d = BranchDirections(
        "bands",
        np.eye(3)[:2],
        np.array([0.3, -0.2]),
        np.ones(2),
        ("a", "b"),
        np.array([half, 2 * half]),
        ("low", "high"),
        np.zeros(2),
    )
    got = midpoint_fraction(x, d)
    want = [
        np.mean([abs(x[i, f] - d.midpoint[f]) < d.half_separation[f] / 2 for i in range(n)]) for f in (0, 1)
    ]
    np.testing.assert_allclose(got, want)

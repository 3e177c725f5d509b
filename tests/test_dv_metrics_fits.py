"""Output metrics (eq. 70–72), commitment score, sigmoid fits and bootstrap CIs (eq. 73)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dit_validation import fits, metrics


def test_feature_cosine_matches_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    ref = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(
        metrics.feature_cosine(torch.tensor(a), torch.tensor(b)).numpy(), ref, rtol=1e-12
    )
    np.testing.assert_allclose(
        metrics.feature_cosine(torch.tensor(a), torch.tensor(a)).numpy(), 1.0, rtol=1e-12
    )


def test_lowpass_is_block_mean_and_limits():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 2, 8, 8))
    block = x.reshape(3, 2, 4, 2, 4, 2).mean(axis=(3, 5))  # pool 4 on 8 px = 2x2 block means
    np.testing.assert_allclose(metrics.lowpass(torch.tensor(x), 4).numpy(), block, rtol=1e-12)
    xa, xb = torch.tensor(x), torch.tensor(rng.normal(size=x.shape))
    # pool = image side: P is the identity, so d_low is the full squared distance and d_high vanishes
    np.testing.assert_allclose(
        metrics.d_low(xa, xb, 8).numpy(), ((x - xb.numpy()) ** 2).sum((1, 2, 3)), rtol=1e-12
    )
    np.testing.assert_allclose(metrics.d_high(xa, xb, 8).numpy(), 0.0, atol=1e-20)
    # constant images: no high-frequency residual, d_low = pool² C (cA − cB)²
    ca, cb = (
        torch.full((1, 2, 8, 8), 0.3, dtype=torch.float64),
        torch.full((1, 2, 8, 8), 0.7, dtype=torch.float64),
    )
    np.testing.assert_allclose(metrics.d_high(ca, cb, 2).numpy(), 0.0, atol=1e-24)
    np.testing.assert_allclose(metrics.d_low(ca, cb, 2).numpy(), 4 * 2 * 0.16, rtol=1e-12)
    with pytest.raises(ValueError, match=r"pool must lie in \[1, 8\] \(the image side\), got 9"):
        metrics.lowpass(xa, 9)
    assert metrics.default_pool(256) == 8 and metrics.default_pool(16) == 4 and metrics.default_pool(8) == 2


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), pool=st.sampled_from([1, 2, 3, 4]))
def test_discrepancies_nonnegative_symmetric(seed, pool):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.rand(2, 1, 8, 8, generator=g), torch.rand(2, 1, 8, 8, generator=g)
    for d in (metrics.d_low, metrics.d_high):
        assert (d(a, b, pool) >= 0).all()
        torch.testing.assert_close(d(a, b, pool), d(b, a, pool))
        assert torch.all(d(a, a, pool) == 0)


def test_commitment_score():
    d = np.array([[4.0, 2.0, 1.0, 0.0], [2.0, 2.0, 0.5, 0.0]])
    np.testing.assert_allclose(metrics.commitment_score(d), [[0, 0.5, 0.75, 1], [0, 0, 0.75, 1]])
    assert np.isnan(metrics.commitment_score(np.array([0.0, 1.0]))).all()


def test_fit_sigmoid_recovers_parameters():
    t = np.arange(0, 101, dtype=float)
    true = (0.2, 0.9, 47.3, 6.5)
    f = fits.fit_sigmoid(t, fits.sigmoid(t, *true))
    np.testing.assert_allclose(f.params, true, rtol=1e-6)
    falling = fits.fit_sigmoid(t, fits.sigmoid(t, 1.0, 0.0, 30.0, 4.0))
    np.testing.assert_allclose(falling.params, (1.0, 0.0, 30.0, 4.0), rtol=1e-6, atol=1e-8)
    assert np.isnan(fits.fit_sigmoid(t, np.full_like(t, 0.4)).params).all()  # flat → NaN, no exception
    assert np.isnan(fits.fit_sigmoid(t[:3], t[:3]).center)


def test_bootstrap_ci_covers_truth_and_is_seeded():
    rng = np.random.default_rng(5)
    t = np.linspace(0, 100, 26)
    Y = fits.sigmoid(t, 0.1, 0.8, 55.0, 5.0)[:, None] + rng.normal(0, 0.05, size=(26, 32))
    fit, ci = fits.bootstrap_center(t, Y, n_boot=200, seed=1)
    assert abs(fit.center - 55.0) < 2.0
    assert ci[0] < 55.0 < ci[1] and ci[1] - ci[0] < 10
    _, ci2 = fits.bootstrap_center(t, Y, n_boot=200, seed=1)
    np.testing.assert_array_equal(ci, ci2)
    with pytest.raises(ValueError, match="n_boot must be an integer >= 1, got 0"):
        fits.bootstrap_center(t, Y, n_boot=0)

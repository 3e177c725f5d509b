"""The causal depth statistics and prediction 2's verdict (dit_validation.causal_stats) on synthetic inputs.

References: profiles whose last-quarter share is known by construction (all change in the last block → 1,
an even spread → n_last/L exactly), agreement arrays whose patch effects are counted by hand, the
bootstrap CI's coverage of a known share in repeated synthetic experiments (seeded), and the verdict's
three outcomes and its combination rule.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dit_validation.analysis import uniform_share
from dit_validation.causal_stats import (
    VARIANT_ALL,
    VARIANT_BLOCK0,
    PatchEffects,
    ShareEstimate,
    causal_arrays,
    curvature_change,
    curvature_share,
    curvature_windows,
    patch_effects,
    prediction2_verdict,
    share_margin,
)
from theory.streams import numpy_generator


def test_curvature_windows_round_and_clip():
    w = curvature_windows(np.array([10.4, 0.2, 48.7, np.nan, np.inf, 52.0]), 2, 50)
    assert w.tolist() == [[8, 12], [0, 2], [47, 49], [-1, -1], [-1, -1], [-1, -1]]


def test_curvature_change_is_the_paired_difference_of_the_window_ends():
    contrib = np.arange(3 * 2 * 2 * 3, dtype=float).reshape(3, 2, 2, 3) ** 2  # (S_w, n, F, U)
    steps = np.array([4, 5, 9])
    d = curvature_change(contrib, steps, np.array([[4, 9], [5, 7]]))
    np.testing.assert_array_equal(d[:, 0], contrib[2, :, 0] - contrib[0, :, 0])
    assert np.isnan(d[:, 1]).all()  # step 7 was not measured


def _delta(profile: np.ndarray, n: int = 40, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Per-point changes (n, F=1, U) with mean ``profile`` (embed first) plus Gaussian point noise."""
    rng = numpy_generator(seed, 99)
    return profile[None, None, :] + noise * rng.standard_normal((n, 1, profile.size))


@pytest.mark.parametrize("L", [4, 12, 28])
def test_curvature_share_of_known_profiles(L):
    last = np.zeros(L + 1)
    last[-1] = -3.0
    est, embed = curvature_share(_delta(last), 50, 0)
    assert est.value == 1.0 and np.allclose(est.ci, 1.0) and embed[0] == 0.0
    even = np.r_[2.0, np.full(L, -1.0)]
    est, embed = curvature_share(_delta(even), 50, 0)
    assert est.value == pytest.approx(uniform_share(L), abs=1e-12)
    assert embed[0] == pytest.approx(2 / (2 + L))
    signs = np.r_[0.0, np.tile([1.0, -1.0], L // 2)]  # blocks pushing against each other count once each
    assert curvature_share(_delta(signs), 20, 0)[0].value == pytest.approx(uniform_share(L))


def test_curvature_share_ci_covers_the_true_share():
    """Seeded coverage: 60 synthetic experiments (n = 30 noisy points, profile share 0.6), the 95% point
    bootstrap CI contains 0.6 in ≥ 80% of them (binomial: P(< 80% | 95%) < 1e-3)."""
    prof = np.r_[0.0, np.full(6, -0.2), -0.9, -0.9]  # L = 8: |last two| = 1.8 of 3.0 → 0.6
    assert np.sum(np.abs(prof[-2:])) / np.sum(np.abs(prof[1:])) == pytest.approx(0.6)
    hits = 0
    for rep in range(60):
        est, _ = curvature_share(_delta(prof, n=30, noise=0.3, seed=rep), 200, rep)
        hits += est.ci[0] <= 0.6 <= est.ci[1]
    assert hits >= 48


def _agree(M: int, L: int, flips: dict[int, int], total: int, base: float = 0.5, F: int = 1) -> np.ndarray:
    """Agreement (F, L + 2, M): baseline agreement on the first base·M pairs; patching block ℓ makes the
    first flips[ℓ] disagreeing pairs agree, patching every unit the first ``total`` of them."""
    a = np.zeros((F, L + 2, M))
    n0 = int(base * M)
    a[:, :, :n0] = 1.0
    a[:, VARIANT_ALL, n0 : n0 + total] = 1.0
    for ell, k in flips.items():
        a[:, VARIANT_BLOCK0 + ell, n0 : n0 + k] = 1.0
    return a


def test_patch_effects_count_the_pairs_a_patch_moves():
    L, M = 8, 200
    pe = patch_effects(_agree(M, L, {7: 40, 6: 20, 0: 20}, total=80), 300, 0)
    assert isinstance(pe, PatchEffects)
    assert pe.baseline[0] == 0.5 and pe.total[0] == pytest.approx(0.4) and pe.resolved[0]
    np.testing.assert_allclose(pe.effect[0], [0.1, 0, 0, 0, 0, 0, 0.1, 0.2])
    assert pe.share.value == pytest.approx(0.75)  # (0.2 + 0.1) / 0.4: blocks 6, 7 are the last quarter
    assert pe.share.ci[0] < 0.75 < pe.share.ci[1]
    assert np.all(pe.effect_ci[0, :, 0] <= pe.effect[0]) and np.all(pe.effect[0] <= pe.effect_ci[0, :, 1])
    binomial = np.sqrt(0.2 * 0.8 / M)  # block 7 moves 40 of 200 pairs one way
    assert pe.effect_se[0, 7] == pytest.approx(binomial, rel=0.15)


def test_blocks_that_cancel_are_resolved_although_every_unit_patched_moves_nothing():
    """At τ_f the net write along φ_f vanishes (H_f = 0): patching every unit moves nothing, while a block
    pushing the clones apart (effect +) and one pulling them together (effect −) both count, by |e|."""
    L, M = 8, 200
    a = _agree(M, L, {7: 40}, total=0)
    a[0, VARIANT_BLOCK0 + 2, :30] = 0.0  # block 2: 30 agreeing pairs now disagree
    pe = patch_effects(a, 300, 0)
    assert pe.total[0] == 0.0 and pe.resolved[0]
    assert pe.effect[0, 2] == pytest.approx(-0.15) and pe.effect[0, 7] == pytest.approx(0.2)
    assert pe.share.value == pytest.approx(0.2 / 0.35)


def test_patch_effects_with_nothing_moved_leave_the_share_undefined():
    L, M = 4, 100
    pe = patch_effects(_agree(M, L, {}, total=0), 100, 0)
    assert not pe.resolved.any() and np.isnan(pe.share.value) and np.isnan(pe.share.ci).all()
    pe = patch_effects(_agree(M, L, {3: 2}, total=50), 200, 0)  # 2 of 100 pairs: z ≈ 1.4, noise
    assert not pe.resolved.any() and pe.total[0] == 0.5
    a = _agree(M, L, {3: 30}, total=30, F=2)
    a[1] = np.nan  # a direction not patched (no window)
    pe = patch_effects(a, 100, 0)
    assert pe.resolved.tolist() == [True, False] and np.isnan(pe.baseline[1])
    assert pe.share.used.tolist() == [True, False] and pe.share.value == 1.0


def _share(lo: float, hi: float) -> ShareEstimate:
    return ShareEstimate(np.array([(lo + hi) / 2]), (lo + hi) / 2, np.array([lo, hi]), np.array([True]))


def _patch(lo: float, hi: float, resolved: bool = True) -> PatchEffects:
    one = np.zeros(1)
    return PatchEffects(one, np.zeros((1, 4)), np.zeros((1, 4, 2)), np.ones((1, 4)), one, np.zeros((1, 2)),
                        np.array([resolved]), _share(lo, hi))  # fmt: skip


def test_verdict_holds_fails_and_undefined():
    u = uniform_share(28)  # 7 / 28 = 0.25
    v = prediction2_verdict(28, _share(0.4, 0.7), None)
    assert v.holds and v.margin == pytest.approx(0.4 - u) and "above" in v.reason
    v = prediction2_verdict(28, _share(0.05, 0.2), None)
    assert not v.holds and v.margin == pytest.approx(0.2 - u) and "below" in v.reason
    v = prediction2_verdict(28, _share(0.1, 0.4), None)
    assert not v.holds and np.isnan(v.margin) and "contains" in v.reason
    v = prediction2_verdict(28, _share(np.nan, np.nan), None)
    assert np.isnan(v.margin) and "no confidence interval" in v.reason
    assert np.isnan(prediction2_verdict(28, None, None).margin)


def test_verdict_combines_the_two_measurements():
    # both above: holds with the weaker margin
    v = prediction2_verdict(28, _share(0.5, 0.8), _patch(0.3, 0.9))
    assert v.holds and v.margin == pytest.approx(0.05)
    # one undecided, one decides: that one's verdict
    v = prediction2_verdict(28, _share(0.1, 0.4), _patch(0.3, 0.9))
    assert v.holds and v.margin == pytest.approx(0.05) and "contains" in v.reason
    # patching moved nothing: undefined on that side whatever its share says
    v = prediction2_verdict(28, None, _patch(0.6, 0.9, resolved=False))
    assert np.isnan(v.margin) and "no block's patch effect is resolved" in v.reason
    # opposite verdicts: undefined, and said so
    v = prediction2_verdict(28, _share(0.5, 0.8), _patch(0.0, 0.1))
    assert np.isnan(v.margin) and "disagree" in v.reason
    v = prediction2_verdict(28, _share(0.0, 0.1), _patch(0.05, 0.2))
    assert not v.holds and v.margin == pytest.approx(-0.05)


@given(
    lo=st.floats(0, 1),
    width=st.floats(0, 1),
    L=st.integers(1, 40),
)
def test_share_margin_sign_says_where_the_interval_lies(lo, width, L):
    hi = min(1.0, lo + width)
    u = uniform_share(L)
    m, _ = share_margin(np.array([lo, hi]), u)
    if lo > u:
        assert m == pytest.approx(lo - u) and m > 0
    elif hi < u:
        assert m == pytest.approx(hi - u) and m < 0
    else:
        assert np.isnan(m)


@given(st.lists(st.floats(-5, 5), min_size=3, max_size=13), st.integers(2, 30))
def test_curvature_share_lies_in_the_unit_interval(profile, n):
    p = np.asarray(profile)
    est, embed = curvature_share(_delta(p, n=n, noise=0.5), 20, 0)
    for x in (est.value, *est.ci, *embed):
        assert np.isnan(x) or -1e-12 <= x <= 1 + 1e-12


def test_causal_arrays_of_a_run_where_nothing_is_defined():
    """No direction has a window (no sign change, no split): every statistic NaN, the verdict undefined,
    and no warning or error on the way."""
    L, F = 4, 2
    raw = {
        "curv_steps": np.zeros(0, dtype=np.int64),
        "curv_contrib": np.zeros((0, 3, F, L + 1)),
        "curv_windows": np.full((F, 2), -1),
        "patch_agree": np.full((F, L + 2, 5), np.nan),
        "patch_windows": np.full((F, 3), -1),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        arrays, verdict = causal_arrays(raw, L, 50, 0)
    assert arrays["curv_change"].shape == (F, L + 1) and arrays["patch_effect"].shape == (F, L)
    for key in ("curv_share_mean", "curv_share_ci", "patch_share_mean", "patch_share_ci", "patch_total"):
        assert np.isnan(arrays[key]).all(), key
    assert np.isnan(verdict.margin) and not verdict.holds


def test_causal_arrays_decide_from_a_clear_profile():
    L, F, n = 4, 1, 20
    contrib = np.zeros((2, n, F, L + 1))
    contrib[1, :, 0, -1] = -2.0 + 0.1 * numpy_generator(0, 1).standard_normal(n)  # only the last block
    raw = {
        "curv_steps": np.array([10, 14]),
        "curv_contrib": contrib,
        "curv_windows": np.array([[10, 14]]),
        "patch_agree": _agree(100, L, {3: 30}, total=40),
        "patch_windows": np.array([[9, 11, 13]]),
    }
    arrays, verdict = causal_arrays(raw, L, 200, 0)
    assert arrays["curv_share_mean"] == 1.0 and arrays["patch_share_mean"] == 1.0
    assert verdict.holds and verdict.margin == pytest.approx(0.75)

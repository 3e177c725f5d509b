"""The measured speciation step τ_f from clone agreement: estimator, seed-bootstrap interval, status, pairs.

Notation: ``agree[f, j, m]`` ∈ {0, 1} says whether clone pair m, split at step t_j (``t_ints[j]``, sorted),
ends on the same side along φ_f; ȳ_f(t_j) is its mean over the M pairs.

**Estimator: the mean commitment step.** If a pair's fate along φ_f is sealed at a random step τ (clones split
after τ agree; split before it they agree at the baseline of the first split), then
ȳ(s) = ȳ(t_first) + (ȳ(t_last) − ȳ(t_first))·F(s) with F the distribution function of τ, and

    τ̂_f = t_first + ∫ (ȳ(t_last) − ȳ(s)) / (ȳ(t_last) − ȳ(t_first)) ds    (trapezoid rule on the split grid)

is the mean of τ over the grid. For the logistic rise of §3.1 (eq. 73's sigmoid) the mean is the sigmoid's
midpoint, and the trapezoid rule integrates a logistic almost exactly even on a grid as coarse as its width.
It is chosen over the sigmoid center by measured coverage (``benchmarks/bench_tau_coverage.py``; 600
exact-sampler experiments of M = 48 pairs, nominal 95%): the fitted center (bounded least squares or
binomial likelihood), the 0.75 crossing and the crossing halfway between the first and last split are
skewed and biased at M = 48, and each of their percentile, BCa and studentized intervals covered 0.93 or
less on some factor (0.88–0.93); τ̂ is a smooth function of seed means, close to normal, and its interval
below covered 0.937–0.955. It is the less efficient estimator (late directions' intervals ~35% wider than
the sigmoid center's), because the noise of the first split's agreement scales the whole area; clone noise
keyed by step, not split (both samplers), makes the agreement at neighbouring splits move together, which
keeps that in check.

The grid starts at step 0 (pure noise, where nothing is decided yet) and ends at S (identical copies), so
the rise lies inside it; τ̂ is the mean commitment step of the pairs not committed at the first split (with
a later first split, earlier commitments show only as a higher baseline, and ≥ ``SPLIT_AGREEMENT`` as no
split). Only noise can carry τ̂ outside the grid, and then it is clamped (:class:`TauStatus`).

**Interval.** τ̂ ± t_{M−1}·√(M/(M−1))·sd(τ*) over ``n_boot`` seed resamples (pairs drawn with replacement):
for a mean over seeds this is exactly Student's interval (the plug-in bootstrap variance is (M−1)/M of the
unbiased one), for a smooth function of means its delta-method version. The percentile interval of the same
replicates undercovers at M = 48 (0.915–0.937, and as much for the plain mean with a known baseline). Ends
are clamped to the split grid; an end on a bound reads "before step 0" / "after the last step".

**Paired differences.** The resamples are ``default_rng(seed).integers(0, M, (n_boot, M))``, the same for
every direction and, given (seed, M), at every coupling g (the clone seeds are the same at every g), so
τ*_trail − τ*_lead is a replicate of the difference (:func:`paired_differences`).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from scipy.stats import t as student_t

from theory.validation import check_positive_int, check_range

__all__ = [
    "SPLIT_AGREEMENT",
    "TauStatus",
    "mean_commitment_step",
    "seed_resamples",
    "student_interval",
    "clamp_to_grid",
    "fit_speciation",
    "paired_differences",
    "mask_unlearned",
]

#: A direction "splits" when fewer than this fraction of clone pairs split at the first step agree along it.
SPLIT_AGREEMENT = 0.9

#: Fewer finite bootstrap replicates than this give no interval (NaN), as in :func:`fits.bootstrap_center`.
MIN_REPLICATES = 10


class TauStatus(IntEnum):
    """What a direction's τ̂ is.

    ``BEFORE``/``AFTER``: the estimate fell outside the split grid (possible only through noise, e.g.
    agreement dipping below its first-split value) and is stored clamped to the bound: a bound, not a value.
    Bootstrap replicates are clamped the same way; a replicate equal to a bound is censored there.
    """

    INSIDE = 0  #: τ̂ lies on the split grid [t_first, t_last]: a measurement
    BEFORE = 1  #: τ̂ < t_first, stored as t_first ("before step 0")
    AFTER = 2  #: τ̂ > t_last, stored as t_last ("after the last step")
    NO_SPLIT = 3  #: ≥ SPLIT_AGREEMENT of the pairs split at t_first agree, or agreement never rises: NaN
    NOT_LEARNED = 4  #: the model's samples are not bimodal along φ_f (the branch-validity gate): no τ, NaN


def _trapezoid_weights(t: np.ndarray) -> np.ndarray:
    """c_j with Σ_j c_j u_j the trapezoid rule of u on the grid t (T,)."""
    dt = np.diff(t)
    c = np.zeros(t.size)
    c[:-1] += dt / 2
    c[1:] += dt / 2
    return c


def mean_commitment_step(t: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """τ̂ of the module docstring for mean agreement curves Y (..., T) on the sorted split grid t (T,) → (...).

    Unclamped; NaN where the curve does not rise from its first to its last split (ȳ(t_last) ≤ ȳ(t_first)).
    """
    t = np.asarray(t, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    rise = Y[..., -1] - Y[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        area = ((Y[..., -1:] - Y) * _trapezoid_weights(t)).sum(axis=-1) / rise
    return np.where(rise > 0, t[0] + area, np.nan)


def clamp_to_grid(tau: np.ndarray, first: float, last: float) -> tuple[np.ndarray, np.ndarray]:
    """(τ clamped to [first, last], :class:`TauStatus` codes); NaN stays NaN with status ``NO_SPLIT``."""
    tau = np.asarray(tau, dtype=np.float64)
    status = np.where(
        np.isnan(tau),
        TauStatus.NO_SPLIT,
        np.where(tau < first, TauStatus.BEFORE, np.where(tau > last, TauStatus.AFTER, TauStatus.INSIDE)),
    ).astype(np.int64)
    return np.clip(tau, first, last), status


def seed_resamples(num_seeds: int, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap draws of seed indices, (n_boot, M): ``default_rng(seed).integers(0, M, (n_boot, M))``."""
    check_positive_int("n_boot", n_boot)
    check_positive_int("num_seeds", num_seeds)
    return np.random.default_rng(seed).integers(0, num_seeds, (n_boot, num_seeds))


def student_interval(
    estimate: np.ndarray, replicates: np.ndarray, num_seeds: int, level: float = 0.95
) -> np.ndarray:
    """estimate ± t_{M−1}·√(M/(M−1))·sd(replicates) (module docstring), (..., 2); replicates (..., B).

    NaN where the estimate is NaN or fewer than ``MIN_REPLICATES`` replicates are finite.
    """
    check_positive_int("num_seeds", num_seeds, minimum=2)
    check_range("level", level, 0.0, 1.0, lo_open=True, hi_open=True)
    estimate = np.asarray(estimate, dtype=np.float64)
    replicates = np.asarray(replicates, dtype=np.float64)
    n = np.isfinite(replicates).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(replicates, axis=-1) / n
        sd = np.sqrt(np.nansum((replicates - mean[..., None]) ** 2, axis=-1) / n)
    half = student_t.ppf((1 + level) / 2, num_seeds - 1) * np.sqrt(num_seeds / (num_seeds - 1)) * sd
    half = np.where(n >= MIN_REPLICATES, half, np.nan)
    return np.stack([estimate - half, estimate + half], axis=-1)


def fit_speciation(
    t_ints: np.ndarray, agree: np.ndarray, n_boot: int, seed: int, level: float = 0.95
) -> dict[str, np.ndarray]:
    """τ_f per direction with its seed-bootstrap interval, replicates and status (module docstring).

    agree (F, T, M) in [0, 1] → ``tau`` (F,) clamped to the split grid, ``status`` (F,) :class:`TauStatus`,
    ``tau_ci`` (F, 2) clamped, ``tau_boot`` (F, n_boot) (each replicate clamped: a replicate outside the
    grid is censored at the bound), ``splits`` (F,) bool (status ≠ NO_SPLIT) and ``fit`` (F, 4), the
    bounded sigmoid (lo, hi, center, width) of the mean agreement (:func:`fits.fit_rise_batch`) for
    figures. Directions that do not split have NaN τ, interval and replicates.
    """
    from .fits import fit_rise_batch

    t = np.asarray(t_ints, dtype=np.float64)
    agree = np.asarray(agree, dtype=np.float64)
    if agree.ndim != 3 or agree.shape[1] != t.size:
        raise ValueError(
            f"agree must have shape (F, {t.size}, M) for {t.size} split steps, got {agree.shape}"
        )
    if t.size < 2 or np.any(np.diff(t) <= 0):
        raise ValueError(f"t_ints must be at least 2 strictly increasing split steps, got {t.tolist()}")
    bad = ~((agree >= 0) & (agree <= 1))
    if bad.any():
        raise ValueError(f"agree must lie in [0, 1] (clone agreement), got {float(agree[bad].flat[0])!r}")
    F, _, M = agree.shape
    check_positive_int("M (clone pairs, agree.shape[2])", M, minimum=2)
    draws = seed_resamples(M, n_boot, seed)
    ybar = agree.mean(axis=2)  # (F, T)
    first, last = float(t[0]), float(t[-1])
    raw = mean_commitment_step(t, ybar)
    # no τ where the clones agree from the first split on, or where agreement never rises above it
    splits = (ybar[:, 0] < SPLIT_AGREEMENT) & np.isfinite(raw)
    tau, status = clamp_to_grid(np.where(splits, raw, np.nan), first, last)
    boot_curves = agree[:, :, draws].mean(axis=3).transpose(0, 2, 1)  # (F, n_boot, T)
    tau_boot, _ = clamp_to_grid(mean_commitment_step(t, boot_curves), first, last)
    tau_boot[~splits] = np.nan
    ci = np.clip(student_interval(tau, tau_boot, M, level), first, last)
    return {
        "tau": tau,
        "status": status.astype(np.int64),
        "tau_ci": ci,
        "tau_boot": tau_boot,
        "splits": splits,
        "fit": fit_rise_batch(t, ybar),
    }


def mask_unlearned(fit: dict[str, np.ndarray], learned: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`fit_speciation`'s output with the directions the gate refused set to NaN / ``NOT_LEARNED``: a
    branch the model never learned has no speciation step (``splits`` stays what the clones did)."""
    off = ~np.asarray(learned, bool)
    out = dict(fit)
    out["tau"] = np.where(off, np.nan, fit["tau"])
    out["tau_ci"] = np.where(off[:, None], np.nan, fit["tau_ci"])
    out["tau_boot"] = np.where(off[:, None], np.nan, fit["tau_boot"])
    out["status"] = np.where(off, int(TauStatus.NOT_LEARNED), fit["status"]).astype(np.int64)
    return out


def paired_differences(tau_boot: np.ndarray, status: np.ndarray, lead: int, trail: int) -> np.ndarray:
    """Replicates of Δ = τ_trail − τ_lead (n_boot,) from :func:`fit_speciation`'s paired replicates.

    Both directions split: τ*_trail − τ*_lead, replicate by replicate (the same seed resample). Neither
    splits: 0 (no window between two joint commitments, :func:`compare_report._gap`'s convention). Only
    one splits: NaN. A replicate censored at a grid bound enters with the bound, so that replicate of Δ
    is a bound too: a lower bound on the uncensored Δ when the leading direction is censored before step
    0 or the trailing one after the last step (the cases that can only shrink a positive gap), an upper
    bound in the other two cases. No direction is refitted.
    """
    tau_boot = np.asarray(tau_boot, dtype=np.float64)
    if TauStatus.NOT_LEARNED in (int(status[lead]), int(status[trail])):
        return np.full(tau_boot.shape[1], np.nan)
    lead_split = int(status[lead]) != TauStatus.NO_SPLIT
    trail_split = int(status[trail]) != TauStatus.NO_SPLIT
    if lead_split and trail_split:
        return tau_boot[trail] - tau_boot[lead]
    if not lead_split and not trail_split:
        return np.zeros(tau_boot.shape[1])
    return np.full(tau_boot.shape[1], np.nan)

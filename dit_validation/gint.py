"""The internal gap G_int (eq. 80) on a held-out mode basis, with a calibrated seed interval (numpy only).

Protocol II as the paper states it builds the fixed basis r_k (eq. 42–43) from the M seeds it then
measures and normalizes by that basis' eigenvalues λ_k^(0) (eq. 76). Both tie the number to the sample:
with K = M the basis fits the seeds exactly, so G_int ≡ 1 at s = 0 while a seed bootstrap that keeps the
basis reports an interval ~4/M wide, and the value moves with M and K. Here the estimand is fixed first:

* **basis** — the leading K = :data:`HELDOUT_MODES` eigenvectors of C_0 (eq. 42) from
  M_B = :data:`BASIS_PAIRS` *held-out* replica pairs (their own random streams; one forward at s = 0
  each), never from the measured seeds; K and M_B are constants, not functions of M;
* **normalization** — eq. (75) as written, λ_k(s) = ‖V_s r_k‖²/‖V_0 r_k‖², both sums over the *measured*
  seeds. The basis eigenvalue λ_k^(0) of eq. (76) is not used: for seeds outside the basis set it is a
  biased normalizer (sample eigenvalues of leading modes are inflated, of trailing ones deflated);
* **bands** — the first and last quarter of the K modes in basis-eigenvalue order (eq. 78–79);
* **interval** — percentile bootstrap over the measured seeds, one resample shared by all layers. The
  basis is independent of those seeds and is held fixed: nothing estimated from the resampled data is
  left out of the resample;
* **null** — at s = 0 the estimator is identically 1 (numerator and normalizer are the same sums), so its
  interval is degenerate. The non-degenerate null check normalizes one half of the measured seeds by the
  other half at s = 0 (independent halves, each resampled); its true value is exactly 1.

Shapes: ``p0``, ``ps`` (..., K, M) are squared projections (v_{s,m}·r_k)² at s = 0 and s = τ of M seeds
(any leading axes, e.g. layers).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from theory.streams import numpy_generator
from theory.validation import check_positive_int

__all__ = [
    "HELDOUT_MODES",
    "BASIS_PAIRS",
    "BAND_FRACTION",
    "GINT_BOOT",
    "heldout_bands",
    "gint_heldout",
    "resample_counts",
    "gint_bootstrap",
    "gint_null",
    "percentile_ci",
    "GintInterval",
    "gint_interval",
]

#: K: the paper's basis keeps every mode of its M = 32 seeds' Gram matrix (§3.2, §4.1: K = M = 32); here
#: K stays 32 whatever M is, so leading and trailing bands are the same modes at every seed count.
HELDOUT_MODES = 32
#: M_B: held-out pairs that build the basis (one forward at s = 0 each). On the shipped mixture model
#: G_int − 1 of the K = 32 basis (g = 0, blocks 1–3) differs between M_B = 512 (mean of 3 bases) and 1024
#: by ≤ 0.007 and between 1024 and 1536 by ≤ 0.0005 (DESIGN.md).
BASIS_PAIRS = 1024
#: |K_lead| = |K_trail| = a quarter of the K modes (the paper does not state its bands).
BAND_FRACTION = 0.25
#: Bootstrap replicates of the interval.
GINT_BOOT = 1000

# stream purposes of the resampling keys (theory.streams): the interval and the split-half null
_BOOT, _NULL_A, _NULL_B = 0, 1, 2


def heldout_bands(K: int) -> tuple[slice, slice]:
    """K_lead and K_trail (eq. 78–79) of K modes in descending eigenvalue order: first and last quarter."""
    check_positive_int("K", K)
    n = max(1, int(round(BAND_FRACTION * K)))
    return slice(0, n), slice(K - n, K)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """G_int = λ̄_trail/λ̄_lead (eq. 80) from per-mode sums (..., K) of ‖V_s r_k‖² and ‖V_0 r_k‖²."""
    lead, trail = heldout_bands(num.shape[-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = num / den  # eq. (75)
        return lam[..., trail].mean(-1) / lam[..., lead].mean(-1)  # eq. (78)-(80)


def _check_pair(p0: np.ndarray, ps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p0, ps = np.asarray(p0, dtype=np.float64), np.asarray(ps, dtype=np.float64)
    if p0.shape != ps.shape or p0.ndim < 2:
        raise ValueError(f"p0 and ps must have one shape (..., K, M), got p0 {p0.shape} and ps {ps.shape}")
    if p0.shape[-1] < 2:
        raise ValueError(f"M (the last axis, measured seeds) must be at least 2, got {p0.shape[-1]}")
    return p0, ps


def gint_heldout(p0: np.ndarray, ps: np.ndarray) -> np.ndarray:
    """G_int (eq. 80) of eq. (75) over the measured seeds: squared projections (..., K, M) → (...)."""
    p0, ps = _check_pair(p0, ps)
    return _ratio(ps.sum(-1), p0.sum(-1))


def resample_counts(M: int, n_boot: int, *key: int) -> np.ndarray:
    """(n_boot, M) how often each of M seeds is drawn in a resample with replacement, keyed by ``key``."""
    check_positive_int("M", M)
    check_positive_int("n_boot", n_boot)
    rng = numpy_generator(*key)
    return rng.multinomial(M, np.full(M, 1.0 / M), size=n_boot).astype(np.float64)


def gint_bootstrap(p0: np.ndarray, ps: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap replicates (n_boot, ...) of :func:`gint_heldout`: seeds resampled, the same resample for
    every leading index (layers share their seeds), the held-out basis fixed."""
    p0, ps = _check_pair(p0, ps)
    w = resample_counts(p0.shape[-1], n_boot, seed, _BOOT)  # (B, M)
    out = _ratio(np.moveaxis(ps @ w.T, -1, 0), np.moveaxis(p0 @ w.T, -1, 0))  # (B, ...)
    return out


def gint_null(p0: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The split-half null at s = 0: (estimate (...), replicates (n_boot, ...)); true value exactly 1.

    The first ⌊M/2⌋ measured seeds supply ‖V_0 r_k‖² in the numerator of eq. (75), the others its
    normalizer; the two halves are independent draws of one distribution, so λ_k is 1 in expectation of
    either sum. Each half is resampled on its own stream.
    """
    p0 = np.asarray(p0, dtype=np.float64)
    M = p0.shape[-1]
    if M < 2:
        raise ValueError(f"the split-half null needs M >= 2 measured seeds, got {M}")
    h = M // 2
    a, b = p0[..., :h], p0[..., h:]
    wa = resample_counts(h, n_boot, seed, _NULL_A)
    wb = resample_counts(M - h, n_boot, seed, _NULL_B)
    est = _ratio(a.mean(-1), b.mean(-1))
    boot = _ratio(np.moveaxis(a @ wa.T, -1, 0) / h, np.moveaxis(b @ wb.T, -1, 0) / (M - h))
    return est, boot


def percentile_ci(boot: np.ndarray, level: float = 0.95, min_finite: int = 10) -> np.ndarray:
    """Percentile interval (..., 2) over axis 0 of replicates (B, ...); NaN where fewer than ``min_finite``
    replicates are finite (too few to place a 2.5% tail)."""
    boot = np.asarray(boot, dtype=np.float64)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    out = np.full((*boot.shape[1:], 2), np.nan)
    enough = np.isfinite(boot).sum(axis=0) >= min_finite
    if np.any(enough):
        tail = 50.0 * (1.0 - level)
        with warnings.catch_warnings():  # all-NaN columns are masked out below
            warnings.simplefilter("ignore", RuntimeWarning)
            ci = np.moveaxis(np.nanpercentile(boot, [tail, 100.0 - tail], axis=0), 0, -1)
        out[enough] = ci[enough]
    return out


@dataclass(frozen=True)
class GintInterval:
    """G_int − 1 on the held-out basis (...), its 95% interval (..., 2) and replicates (B, ...), and the
    split-half null's G − 1 at s = 0 (...) with its interval (..., 2)."""

    excess: np.ndarray
    excess_ci: np.ndarray
    excess_boot: np.ndarray
    null: np.ndarray
    null_ci: np.ndarray


def gint_interval(p0: np.ndarray, ps: np.ndarray, n_boot: int, seed: int) -> GintInterval:
    """G_int − 1 (...), its 95% percentile interval (..., 2), replicates (n_boot, ...), and the split-half
    null's G − 1 and interval at s = 0, from squared projections (..., K, M) at s = 0 and s = τ."""
    p0, ps = _check_pair(p0, ps)
    excess_boot = gint_bootstrap(p0, ps, n_boot, seed) - 1.0
    null, null_boot = gint_null(p0, n_boot, seed)
    return GintInterval(
        excess=gint_heldout(p0, ps) - 1.0,
        excess_ci=percentile_ci(excess_boot),
        excess_boot=excess_boot,
        null=null - 1.0,
        null_ci=percentile_ci(null_boot - 1.0),
    )

"""Summaries shared by the protocols, the comparison, the run summary and the figures (numpy only).

One home for each helper that turns stored arrays into a reported number: values at a fractional step
(eq. 77), the leading/trailing bands of eq. (78)–(79), the internal gap G_int of eq. (80), which layers
count as "deep" (§4.2), and the least-squares line against ρ(g) (eq. 66). torch-free.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "DEEP_FRACTION",
    "deep_layer_count",
    "at_step",
    "band_masks",
    "band_energies",
    "linfit",
    "DEPTH_LAST_FRACTION",
    "deep_quarter",
    "depth_fraction",
    "uniform_share",
]

#: §4.2: the internal gap of DiT-XL/2 lives in its final ≈ 5 of 28 blocks.
DEEP_FRACTION = 5 / 28


def deep_layer_count(num_layers: int) -> int:
    """How many final layers count as "deep": the paper's 5 of 28, scaled to the model's depth (≥ 1)."""
    return max(1, min(num_layers, round(DEEP_FRACTION * num_layers)))


def at_step(x: np.ndarray, s: float) -> np.ndarray:
    """``x[s]`` along axis 0 with linear interpolation between integer steps (s fractional, clipped)."""
    s = float(np.clip(s, 0, x.shape[0] - 1))
    lo = int(np.floor(s))
    hi = min(lo + 1, x.shape[0] - 1)
    w = s - lo
    return (1 - w) * x[lo] + w * x[hi]


def band_masks(lam0: np.ndarray, lead_frac: float, trail_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """K_lead, K_trail of eq. (78)–(79): first/last fractions of the valid (finite) modes, per row of lam0.

    ``lam0`` (L, K) initial eigenvalues in descending order per layer (NaN beyond the Gram rank).
    """
    lead = np.zeros(lam0.shape, bool)
    trail = np.zeros(lam0.shape, bool)
    for j in range(lam0.shape[0]):
        valid = np.flatnonzero(np.isfinite(lam0[j]))
        if valid.size == 0:
            continue
        n_lead = max(1, int(round(lead_frac * valid.size)))
        n_trail = max(1, int(round(trail_frac * valid.size)))
        lead[j, valid[:n_lead]] = True
        trail[j, valid[-n_trail:]] = True
    return lead, trail


def band_energies(
    energy: np.ndarray,
    energy_seed: np.ndarray,
    lam0: np.ndarray,
    tau: float,
    lead_frac: float,
    trail_frac: float,
) -> dict[str, np.ndarray]:
    """λ̄_lead, λ̄_trail (eq. 78–79) at s = τ (eq. 77), their spread over seeds, and G_int (eq. 80).

    energy (S, L, K), energy_seed (S, L, K, M), lam0 (L, K) → lead, trail, lead_std, trail_std, G_int (L,)
    and the band masks (L, K). NaN rows where τ is not finite.
    """
    L = energy.shape[1]
    out = {k: np.full(L, np.nan) for k in ("lead", "trail", "lead_std", "trail_std", "G_int")}
    lead_band, trail_band = band_masks(lam0, lead_frac, trail_frac)
    out["lead_band"], out["trail_band"] = lead_band, trail_band
    if not np.isfinite(tau):
        return out
    e = at_step(energy, tau)  # (L, K)
    es = at_step(energy_seed, tau)  # (L, K, M)
    for j in range(L):
        lb, tb = lead_band[j], trail_band[j]
        if not lb.any():
            continue
        out["lead"][j], out["trail"][j] = e[j, lb].mean(), e[j, tb].mean()  # eq. (78), (79)
        out["lead_std"][j] = es[j, lb].mean(0).std()
        out["trail_std"][j] = es[j, tb].mean(0).std()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["G_int"] = out["trail"] / out["lead"]  # eq. (80)
    return out


def linfit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(slope, intercept, R²) of y ≈ slope·x + intercept over the finite points; NaNs if < 3 points."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0:
        return np.full(3, np.nan)
    slope, icpt = np.polyfit(x[ok], y[ok], 1)
    resid = y[ok] - (slope * x[ok] + icpt)
    tot = np.sum((y[ok] - y[ok].mean()) ** 2)
    return np.array([slope, icpt, 1 - np.sum(resid**2) / tot if tot > 0 else np.nan])


#: The depth-localization statistic's deep part: the last quarter of the blocks (§2.7 prediction 2).
DEPTH_LAST_FRACTION = 0.25


def deep_quarter(num_layers: int) -> int:
    """Blocks in the last quarter (at least 1)."""
    return max(1, int(round(DEPTH_LAST_FRACTION * num_layers)))


def depth_fraction(profile: np.ndarray) -> float:
    """Share of a non-negative per-layer profile (L,) carried by the last quarter of the blocks.

    The depth-localization statistic: ``uniform_share(L)`` for a profile spread evenly over depth, 1 when
    it all sits in the last quarter. NaN when the profile has a NaN or sums to 0 (nothing to localize).
    """
    x = np.asarray(profile, dtype=np.float64)
    total = float(np.sum(x))
    if not np.all(np.isfinite(x)) or total <= 0:
        return float("nan")
    return float(np.sum(x[-deep_quarter(x.size) :]) / total)


def uniform_share(num_layers: int) -> float:
    """The depth fraction of a profile spread evenly over ``num_layers`` blocks."""
    return deep_quarter(num_layers) / num_layers

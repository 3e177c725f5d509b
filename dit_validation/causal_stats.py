"""Where in depth the branch decision is made, causally: statistics and prediction 2's verdict (torch-free).

§2.7 prediction 2 puts the synchronization gap in the last blocks (the final ≈ 5 of 28 on DiT-XL/2). Two
causal measurements along the branch directions φ_f decide it (:mod:`dit_validation.causal` makes them):

* **Curvature decomposition.** The learned curvature H_f = σ_t⁻¹ φ_fᵀ (∂ε̂/∂x) φ_f at symmetric points
  splits exactly into one term per *unit* — unit 0 the embedded input, unit 1 + ℓ block ℓ's residual
  update — ``contrib[s, i, f, u]`` (steps, points, directions, units), summing to H_f. Across the window
  [s_lo, s_hi] = [round(τ_f) − k, round(τ_f) + k] (clipped to the grid) where H_f changes sign (eq. 51 in
  the γ → ∞ limit), block ℓ changes its term by δ_ℓ = mean_i (contrib[s_hi, i, f, 1 + ℓ] −
  contrib[s_lo, i, f, 1 + ℓ]) (the points at s_lo and s_hi are the same trajectories, so they are paired).
  The **share of the change carried by the last quarter** is Σ_{ℓ ≥ L − n_last} |δ_ℓ| / Σ_ℓ |δ_ℓ|
  (:func:`~dit_validation.analysis.depth_fraction`, n_last = ``deep_quarter(L)``): n_last/L (the uniform
  share) for a change spread evenly over depth, 1 when it all happens in the last quarter. Absolute values,
  so blocks that push against each other count once each and the share stays in [0, 1]; the embedded
  input's term (the input read straight off by the head) is not a block and is reported beside it as
  ``embed_share`` = |δ_embed| / (|δ_embed| + Σ_ℓ |δ_ℓ|).
* **Activation patching between clones.** Variant v of a clone pair (A, B) replaces A's residual writes of
  the units in v by B's during the patch window; ``agree[f, v, i]`` ∈ {0, 1} says whether A and B end on the
  same side of φ_f. Variants are ordered [none, all units, block 0, …, block L − 1] (:data:`VARIANT_NONE`,
  :data:`VARIANT_ALL`, :data:`VARIANT_BLOCK0`). The effect of patching block ℓ is e_ℓ = mean_i (agree_ℓ,i −
  agree_none,i) (paired), downstream blocks' responses included; a block whose write pushes the clones
  apart along φ_f (a negative curvature term) typically raises the agreement when replaced. The share
  is Σ_{last quarter} |e_ℓ| / Σ_ℓ |e_ℓ|, over the directions where some block's effect is resolved: |e_ℓ|
  above z·se_ℓ (se_ℓ the bootstrap standard error, z the two-sided 95% normal quantile Bonferroni-corrected
  over the L blocks); elsewhere the e_ℓ are noise and their share says nothing. The total effect e_all
  (every unit patched: A is driven by B's ε̂) is reported but decides nothing: a window centred on τ_f,
  where H_f = 0, is where the net state-dependent write along φ_f vanishes, so e_all ≈ 0 there by
  construction while single blocks, whose terms cancel in the sum, move the agreement.

Both statistics are averaged over the directions where they are defined; 95% percentile intervals come
from bootstraps over the symmetric points (curvature) or clone pairs (patching), one resample shared by
all directions and blocks, drawn from keyed streams (:mod:`theory.streams`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from theory.streams import numpy_generator

from .analysis import deep_quarter, depth_fraction

__all__ = [
    "VARIANT_NONE",
    "VARIANT_ALL",
    "VARIANT_BLOCK0",
    "BOOT_CURVATURE",
    "BOOT_PATCH",
    "ShareEstimate",
    "PatchEffects",
    "DepthVerdict",
    "curvature_windows",
    "curvature_change",
    "curvature_share",
    "patch_effects",
    "share_margin",
    "prediction2_verdict",
    "causal_arrays",
]

#: Patch variants, in the order of the ``agree`` axis: nothing patched, every unit, then one block each.
VARIANT_NONE, VARIANT_ALL, VARIANT_BLOCK0 = 0, 1, 2
#: Bootstrap stream purposes (keys (seed, purpose) of :func:`theory.streams.numpy_generator`).
BOOT_CURVATURE, BOOT_PATCH = 1, 2
#: Fewer finite bootstrap replicates than this leave a CI undefined.
MIN_REPLICATES = 10


@dataclass(frozen=True)
class ShareEstimate:
    """A last-quarter share: per direction (F,) (NaN where undefined), their mean and its 95% CI."""

    per_direction: np.ndarray  # (F,)
    value: float  # mean over the directions used
    ci: np.ndarray  # (2,) 95% percentile bootstrap interval of ``value``; NaN when undefined
    used: np.ndarray  # (F,) bool: directions entering ``value``


@dataclass(frozen=True)
class PatchEffects:
    """Patch effects on the final agreement along each φ_f, with 95% pair-bootstrap intervals."""

    baseline: np.ndarray  # (F,) agreement with nothing patched
    effect: np.ndarray  # (F, L) e_ℓ: agreement change from patching block ℓ
    effect_ci: np.ndarray  # (F, L, 2)
    effect_se: np.ndarray  # (F, L) bootstrap standard error of e_ℓ
    total: np.ndarray  # (F,) e_all: every unit patched
    total_ci: np.ndarray  # (F, 2)
    resolved: np.ndarray  # (F,) bool: some block's |e_ℓ| above its Bonferroni-corrected z·se_ℓ
    share: ShareEstimate


def curvature_windows(tau: np.ndarray, k: int, num_steps: int) -> np.ndarray:
    """Window ends (F, 2) int: [round(τ_f) − k, round(τ_f) + k] clipped to [0, S − 1]; (−1, −1) where τ_f is
    not a step of the grid (NaN: undefined; ±inf: no sign change) or the clipped window has one step."""
    tau = np.asarray(tau, dtype=np.float64)
    out = np.full((tau.size, 2), -1, dtype=np.int64)
    for f, t in enumerate(tau):
        if not np.isfinite(t) or t > num_steps - 1:
            continue
        lo, hi = max(0, int(round(t)) - k), min(num_steps - 1, int(round(t)) + k)
        if hi > lo:
            out[f] = lo, hi
    return out


def curvature_change(contrib: np.ndarray, steps: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Per-point change of every unit's curvature term across each direction's window, (n, F, U).

    contrib (S_w, n, F, U) at ``steps`` (S_w,); windows (F, 2) from :func:`curvature_windows`. NaN for a
    direction without a window or whose window ends were not measured.
    """
    steps = list(np.asarray(steps).tolist())
    n, F, U = contrib.shape[1:]
    out = np.full((n, F, U), np.nan)
    for f, (lo, hi) in enumerate(np.asarray(windows)):
        if lo < 0 or lo not in steps or hi not in steps:
            continue
        out[:, f] = contrib[steps.index(hi), :, f] - contrib[steps.index(lo), :, f]
    return out


def _block_share(delta: np.ndarray) -> np.ndarray:
    """Last-quarter share of |mean change| per direction from per-point changes (n, F, U) → (F,)."""
    d = np.abs(np.mean(delta, axis=0))  # (F, U)
    return np.array([depth_fraction(d[f, 1:]) for f in range(d.shape[0])])


def _percentile_ci(boot: np.ndarray) -> np.ndarray:
    boot = boot[np.isfinite(boot)]
    return np.percentile(boot, [2.5, 97.5]) if boot.size >= MIN_REPLICATES else np.full(2, np.nan)


def _mean_used(x: np.ndarray, used: np.ndarray) -> float:
    return float(np.mean(x[used])) if used.any() and np.all(np.isfinite(x[used])) else float("nan")


def curvature_share(delta: np.ndarray, n_boot: int, seed: int) -> tuple[ShareEstimate, np.ndarray]:
    """The last-quarter share of the curvature change (module docstring) and ``embed_share`` (F,).

    delta (n, F, U) from :func:`curvature_change`; the bootstrap resamples the n symmetric points (one
    resample for every direction), stream key (seed, :data:`BOOT_CURVATURE`).
    """
    share = _block_share(delta)
    used = np.isfinite(share)
    d = np.abs(np.mean(delta, axis=0))  # (F, U)
    with np.errstate(invalid="ignore", divide="ignore"):
        embed = d[:, 0] / d.sum(axis=1)
    rng = numpy_generator(seed, BOOT_CURVATURE)
    n = delta.shape[0]
    boot = np.full(n_boot, np.nan)
    for b in range(n_boot):
        boot[b] = _mean_used(_block_share(delta[rng.integers(0, n, n)]), used)
    est = ShareEstimate(share, _mean_used(share, used), _percentile_ci(boot), used)
    return est, embed


def _effects(agree: np.ndarray) -> np.ndarray:
    """(F, V, M) agreement → (F, V) mean change against the unpatched variant (paired by pair)."""
    return np.mean(agree - agree[:, VARIANT_NONE : VARIANT_NONE + 1], axis=-1)


def patch_effects(agree: np.ndarray, n_boot: int, seed: int) -> PatchEffects:
    """Patch effects per block and direction, the total effect, and the last-quarter share (module
    docstring). agree (F, V, M) in {0, 1}, NaN for directions not patched; V = L + 2 variants. The bootstrap
    resamples the M clone pairs, stream key (seed, :data:`BOOT_PATCH`)."""
    agree = np.asarray(agree, dtype=np.float64)
    F, V, M = agree.shape
    ran = np.all(np.isfinite(agree), axis=(1, 2))  # (F,)
    rng = numpy_generator(seed, BOOT_PATCH)
    boot = np.full((n_boot, F, V), np.nan)
    for b in range(n_boot):
        boot[b] = _effects(agree[..., rng.integers(0, M, M)])
    eff = _effects(agree)
    ci = np.full((F, V, 2), np.nan)
    if n_boot >= MIN_REPLICATES:
        ci[ran] = np.moveaxis(np.percentile(boot[:, ran], [2.5, 97.5], axis=0), 0, -1)
    blocks = slice(VARIANT_BLOCK0, V)
    L = V - VARIANT_BLOCK0
    se = np.full((F, L), np.nan)
    if n_boot >= MIN_REPLICATES:
        se[ran] = np.std(boot[:, ran, blocks], axis=0, ddof=1)
    z = NormalDist().inv_cdf(1 - 0.025 / L)  # two-sided 95%, Bonferroni over the L blocks
    resolved = ran & np.any(np.abs(eff[:, blocks]) > z * se, axis=1)  # se = 0: any nonzero effect counts

    def shares(e: np.ndarray) -> np.ndarray:
        return np.array([depth_fraction(np.abs(e[f, blocks])) if resolved[f] else np.nan for f in range(F)])

    per = shares(eff)
    used = resolved & np.isfinite(per)
    share_boot = np.array([_mean_used(shares(boot[b]), used) for b in range(n_boot)])
    share = ShareEstimate(per, _mean_used(per, used), _percentile_ci(share_boot), used)
    return PatchEffects(
        baseline=np.where(ran, np.mean(agree[:, VARIANT_NONE], axis=-1), np.nan),
        effect=eff[:, blocks],
        effect_ci=ci[:, blocks],
        effect_se=se,
        total=eff[:, VARIANT_ALL],
        total_ci=ci[:, VARIANT_ALL],
        resolved=resolved,
        share=share,
    )


@dataclass(frozen=True)
class DepthVerdict:
    """Prediction 2's verdict: ``holds`` when ``margin`` > 0, fails when it is negative, undefined (NaN)
    otherwise; ``reason`` says which measurement decided it, or why none could."""

    holds: bool
    margin: float
    reason: str


def share_margin(ci: np.ndarray, uniform: float) -> tuple[float, str]:
    """Margin of a share's 95% CI against the uniform share: ci_lo − u when ci_lo > u (above uniform:
    the decision sits in the last quarter), ci_hi − u when ci_hi < u (below uniform: it does not), NaN with
    the reason when the interval contains u or is undefined."""
    lo, hi = (float(v) for v in np.asarray(ci, dtype=np.float64))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return float("nan"), "no confidence interval"
    if lo > uniform:
        return lo - uniform, f"CI [{lo:.2f}, {hi:.2f}] above the uniform share {uniform:.2f}"
    if hi < uniform:
        return hi - uniform, f"CI [{lo:.2f}, {hi:.2f}] below the uniform share {uniform:.2f}"
    return float("nan"), f"CI [{lo:.2f}, {hi:.2f}] contains the uniform share {uniform:.2f}"


def prediction2_verdict(
    num_layers: int, curvature: ShareEstimate | None, patching: PatchEffects | None
) -> DepthVerdict:
    """§2.7 prediction 2 ("the gap lives in the last blocks") from the causal measurements.

    Each measurement gives a margin (:func:`share_margin`) of its last-quarter share's 95% CI against the
    uniform share n_last/L (``analysis.uniform_share``): positive — the share's CI lies above uniform;
    negative — below; NaN — it contains uniform or is undefined (the curvature: no direction has a sign
    change of H_f on the grid; the patching: no block's patch effect is resolved in any direction).
    Combined: with both margins finite and of one sign, that verdict with the margin nearer 0 (the weaker
    evidence); of opposite signs, undefined ("the two measurements disagree"); with one finite, its
    verdict; with none, undefined with both reasons. ``None`` for a measurement not made.
    """
    u = deep_quarter(num_layers) / num_layers
    found: list[tuple[str, float, str]] = []
    if curvature is not None:
        m, why = share_margin(curvature.ci, u)
        found.append(("curvature decomposition", m, why))
    if patching is not None:
        if not patching.resolved.any():
            found.append(("patching", float("nan"), "no block's patch effect is resolved from 0"))
        else:
            m, why = share_margin(patching.share.ci, u)
            found.append(("patching", m, why))
    if not found:
        return DepthVerdict(False, float("nan"), "no causal measurement")
    text = "; ".join(f"{name}: {why}" for name, _, why in found)
    margins = np.array([m for _, m, _ in found])
    finite = margins[np.isfinite(margins)]
    if finite.size == 0:
        return DepthVerdict(False, float("nan"), text)
    if np.any(finite > 0) and np.any(finite < 0):
        return DepthVerdict(False, float("nan"), f"the measurements disagree — {text}")
    margin = float(finite[np.argmin(np.abs(finite))])
    return DepthVerdict(margin > 0, margin, text)


def causal_arrays(
    raw: Mapping[str, np.ndarray], num_layers: int, n_boot: int, seed: int
) -> tuple[dict[str, np.ndarray], DepthVerdict]:
    """The statistics of one g's raw measurements (:func:`dit_validation.causal.causal_depth`) as arrays
    for a result file, and prediction 2's verdict from them.

    ``curv_change`` (F, L + 1): mean change of each unit's curvature term across the window (unit 0 the
    embedded input); ``curv_share`` (F,), ``curv_share_mean`` (), ``curv_share_ci`` (2,),
    ``curv_embed_share`` (F,); ``patch_baseline`` (F,), ``patch_effect`` (F, L), ``patch_effect_ci``
    (F, L, 2), ``patch_effect_se`` (F, L), ``patch_total`` (F,), ``patch_total_ci`` (F, 2),
    ``patch_resolved`` (F,), ``patch_share`` (F,), ``patch_share_mean`` (), ``patch_share_ci`` (2,). Where no
    direction was patched (every window absent), the verdict rests on the curvature alone.
    """
    delta = curvature_change(raw["curv_contrib"], raw["curv_steps"], raw["curv_windows"])
    curv, embed = curvature_share(delta, n_boot, seed)
    patch = patch_effects(raw["patch_agree"], n_boot, seed)
    arrays = {
        "curv_change": np.mean(delta, axis=0),
        "curv_share": curv.per_direction,
        "curv_share_mean": np.asarray(curv.value),
        "curv_share_ci": curv.ci,
        "curv_embed_share": embed,
        "patch_baseline": patch.baseline,
        "patch_effect": patch.effect,
        "patch_effect_ci": patch.effect_ci,
        "patch_effect_se": patch.effect_se,
        "patch_total": patch.total,
        "patch_total_ci": patch.total_ci,
        "patch_resolved": patch.resolved,
        "patch_share": patch.share.per_direction,
        "patch_share_mean": np.asarray(patch.share.value),
        "patch_share_ci": patch.share.ci,
    }
    patched = bool(np.isfinite(np.asarray(raw["patch_agree"], dtype=np.float64)).any())
    return arrays, prediction2_verdict(num_layers, curv, patch if patched else None)

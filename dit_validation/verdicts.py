"""The §2.7 verdicts, each decided by a paired confidence interval or left undefined with its reason (numpy).

A prediction *holds* only where the 95 % interval of its statistic lies above 0, *fails* only where it lies
below 0, and is *undefined* otherwise — with the reason (the interval contains 0; a direction the model never
learned; too few couplings where both directions split). Intervals of differences are **paired**: the
speciation steps τ_f of every direction, at every coupling, are re-estimated on the same seed resamples
(``tau_meas_boot`` of the compare file, one row of resample indices shared by all directions and couplings:
the clone seeds are the same everywhere), so a difference of two τ's has the interval of its own replicates,
never one built from two marginal intervals. The interval is the one whose coverage
``benchmarks/bench_tau_coverage.py`` measures for τ itself (:func:`dit_validation.clone_tau.student_interval`:
estimate ± t_{M−1}·√(M/(M−1))·sd of the replicates, M clone pairs).

* **commitment hierarchy** (prediction 1): Δ = τ(local) − τ(global) between the most global and the most local
  *learned* direction (the global → local order of the factors, or the spectral-centroid order of band
  directions), and for every adjacent learned pair (``hierarchy_ci``); the verdict is the extremes'.
* **natural gap** (prediction 3): the same extremes' Δ at g = 0 (eq. 63, 65).
* **coupling-induced collapse** (prediction 4): Δ(g) against ρ(g) (eq. 66) through the couplings at which both
  extremes split (``collapse_points``); decided only with at least :data:`MIN_COLLAPSE_POINTS` of them, from
  the slope's paired bootstrap interval (holds: the gap shrinks as ρ → 0, slope > 0).

torch-free: the comparison calls these when it finishes; summaries and figures read their arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from .clone_tau import student_interval

__all__ = [
    "GATE_FRACTION",
    "learned",
    "Verdict",
    "Decision",
    "MIN_COLLAPSE_POINTS",
    "MIN_REPLICATES",
    "paired_ci",
    "decide",
    "learned_order",
    "hierarchy_pairs",
    "hierarchy",
    "natural_gap",
    "collapse",
    "verdict_text",
    "compare_verdicts",
    "PREDICTION_ORDER",
    "depth_decision",
    "decisions",
    "decision_text",
    "gap_directions",
]

#: The branch-validity gate: a direction is learned when at most this fraction of the model's own samples lies
#: within half a branch separation of the midpoint (:func:`dit_validation.branches.midpoint_fraction`).
GATE_FRACTION = 0.05
#: Couplings at which both directions of the gap must split before a slope against ρ(g) decides anything.
MIN_COLLAPSE_POINTS = 3
#: Finite bootstrap replicates needed for an interval (fewer: the interval is undefined).
MIN_REPLICATES = 10
LEVEL = 0.95


class Verdict(IntEnum):
    FAILS = -1
    UNDEFINED = 0
    HOLDS = 1


@dataclass(frozen=True)
class Decision:
    """One prediction's verdict with the estimate and the interval that decide it (unit: ``unit``)."""

    name: str
    verdict: Verdict
    estimate: float
    ci: np.ndarray  # (2,)
    unit: str
    reason: str

    @classmethod
    def undefined(cls, name: str, unit: str, reason: str) -> Decision:
        """No estimate and no interval: the prediction cannot be decided, for ``reason``."""
        return cls(name, Verdict.UNDEFINED, float("nan"), np.full(2, np.nan), unit, reason)


def paired_ci(estimate: float, replicates: np.ndarray, num_seeds: int, level: float = LEVEL) -> np.ndarray:
    """The interval (2,) of a statistic from its paired bootstrap replicates (B,) over ``num_seeds`` clone
    pairs (:func:`~dit_validation.clone_tau.student_interval`); NaN with fewer than :data:`MIN_REPLICATES`
    finite replicates (a replicate is not finite where a direction did not split in that resample)."""
    x = np.asarray(replicates, dtype=np.float64)
    if np.isfinite(x).sum() < MIN_REPLICATES:
        return np.full(2, np.nan)
    return student_interval(np.asarray(estimate, dtype=np.float64), x, num_seeds, level)


def decide(ci: np.ndarray) -> tuple[Verdict, str]:
    """HOLDS when the interval lies above 0, FAILS when below, UNDEFINED (with why) otherwise."""
    lo, hi = (float(v) for v in ci)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return Verdict.UNDEFINED, "no interval (too few resamples in which both directions split)"
    if lo > 0:
        return Verdict.HOLDS, f"95% CI [{lo:.2f}, {hi:.2f}] above 0"
    if hi < 0:
        return Verdict.FAILS, f"95% CI [{lo:.2f}, {hi:.2f}] below 0"
    return Verdict.UNDEFINED, f"95% CI [{lo:.2f}, {hi:.2f}] contains 0"


def learned(fraction: np.ndarray) -> np.ndarray:
    """The gate (F,): a direction is learned where its midpoint fraction is at most :data:`GATE_FRACTION`
    (NaN — no bimodal branches at all — is not learned)."""
    f = np.asarray(fraction, dtype=np.float64)
    return np.isfinite(f) & (f <= GATE_FRACTION)


def learned_order(a: dict[str, np.ndarray]) -> np.ndarray:
    """Indices of the learned directions, global → local (factor order; bands are stored by centroid)."""
    return np.flatnonzero(np.asarray(a["learned"], bool))


def _splits_inside(a: dict[str, np.ndarray], i: int, f: int) -> bool:
    return bool(a["splits"][i, f]) and bool(np.isfinite(a["tau_meas"][i, f]))


def hierarchy_pairs(order: np.ndarray) -> np.ndarray:
    """(global, local) direction pairs: every adjacent pair of ``order`` and the extremes, (P, 2) int."""
    order = np.asarray(order, dtype=np.int64)
    if order.size < 2:
        return np.zeros((0, 2), np.int64)
    pairs = [(int(order[k]), int(order[k + 1])) for k in range(order.size - 1)]
    if order.size > 2:
        pairs.append((int(order[0]), int(order[-1])))
    return np.asarray(pairs, dtype=np.int64)


def pair_difference(a: dict[str, np.ndarray], i: int, lead: int, trail: int) -> tuple[float, np.ndarray]:
    """Δ = τ_trail − τ_lead at coupling i and its paired CI; NaN where either does not split in the grid."""
    if not (_splits_inside(a, i, lead) and _splits_inside(a, i, trail)):
        return float("nan"), np.full(2, np.nan)
    boot = a["tau_meas_boot"][i, trail] - a["tau_meas_boot"][i, lead]
    est = float(a["tau_meas"][i, trail] - a["tau_meas"][i, lead])
    return est, paired_ci(est, boot, _num_seeds(a))


def _num_seeds(a: dict[str, np.ndarray]) -> int:
    """M, the clone pairs per split step behind every τ (the last axis of ``agree``)."""
    return int(np.shape(a["agree"])[-1])


def _g0(a: dict[str, np.ndarray]) -> int:
    return int(np.argmin(np.abs(np.asarray(a["g"], dtype=np.float64))))


def _gate_reason(a: dict[str, np.ndarray]) -> str:
    names = [str(n) for n in a["factor_names"]]
    off = [names[f] for f in np.flatnonzero(~np.asarray(a["learned"], bool))]
    return f"; not learned (no vote): {', '.join(off)}" if off else ""


def hierarchy(a: dict[str, np.ndarray]) -> tuple[Decision, np.ndarray, np.ndarray, np.ndarray]:
    """Prediction 1 at g = 0: (decision, pairs (P, 2), Δ per pair (P,), paired CIs (P, 2)).

    The decision is the extremes' (most global vs most local learned direction); adjacent pairs are reported
    beside it. Undefined with fewer than two learned directions that split."""
    i0 = _g0(a)
    order = np.asarray([f for f in learned_order(a) if _splits_inside(a, i0, f)], dtype=np.int64)
    pairs = hierarchy_pairs(order)
    est = np.full(len(pairs), np.nan)
    cis = np.full((len(pairs), 2), np.nan)
    for k, (lo, hi) in enumerate(pairs):
        est[k], cis[k] = pair_difference(a, i0, int(lo), int(hi))
    if len(pairs) == 0:
        d = Decision.undefined(
            "hierarchy",
            "steps",
            "fewer than two learned directions split at g = 0" + _gate_reason(a),
        )
        return d, pairs, est, cis
    v, why = decide(cis[-1])
    names = [str(n) for n in a["factor_names"]]
    lo, hi = pairs[-1]
    adj = len(pairs) - 1 if len(pairs) > 1 else 1
    resolved = int(np.sum(cis[:adj, 0] > 0))
    reason = (
        f"tau({names[hi]}) - tau({names[lo]}): {why}; adjacent pairs above 0: {resolved} of {adj}"
        + _gate_reason(a)
    )
    return Decision("hierarchy", v, float(est[-1]), cis[-1], "steps", reason), pairs, est, cis


def gap_directions(a: dict[str, np.ndarray]) -> tuple[int, int] | None:
    """(leading, trailing) directions of the gap (eq. 65): the most global and most local learned ones."""
    order = learned_order(a)
    return (int(order[0]), int(order[-1])) if order.size >= 2 else None


def gap_series(a: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Δ(g) (G,), its paired CI (G, 2) and its replicates (G, B) between the gap's directions; NaN at a g
    where either does not split."""
    G, B = a["tau_meas_boot"].shape[0], a["tau_meas_boot"].shape[-1]
    est, ci, boot = np.full(G, np.nan), np.full((G, 2), np.nan), np.full((G, B), np.nan)
    pair = gap_directions(a)
    if pair is None:
        return est, ci, boot
    lead, trail = pair
    for i in range(G):
        est[i], ci[i] = pair_difference(a, i, lead, trail)
        if np.isfinite(est[i]):
            boot[i] = a["tau_meas_boot"][i, trail] - a["tau_meas_boot"][i, lead]
    return est, ci, boot


def natural_gap(a: dict[str, np.ndarray]) -> Decision:
    """Prediction 3: the gap Δ at g = 0 between the most global and the most local learned directions."""
    pair = gap_directions(a)
    if pair is None:
        return Decision.undefined(
            "natural_gap",
            "steps",
            "fewer than two learned directions" + _gate_reason(a),
        )
    est, ci, _ = gap_series(a)
    i0 = _g0(a)
    names = [str(n) for n in a["factor_names"]]
    if not np.isfinite(est[i0]):
        return Decision.undefined(
            "natural_gap",
            "steps",
            f"{names[pair[0]]} or {names[pair[1]]} does not split at g = 0" + _gate_reason(a),
        )
    v, why = decide(ci[i0])
    reason = f"tau({names[pair[1]]}) - tau({names[pair[0]]}) at g = 0: {why}" + _gate_reason(a)
    return Decision("natural_gap", v, float(est[i0]), ci[i0], "steps", reason)


def _slope(rho: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(y)
    if ok.sum() < 2 or np.ptp(rho[ok]) == 0:
        return float("nan")
    return float(np.polyfit(rho[ok], y[ok], 1)[0])


def collapse(a: dict[str, np.ndarray]) -> tuple[Decision, np.ndarray, np.ndarray]:
    """Prediction 4: (decision, collapse_points (G,) bool, slope's paired CI (2,)).

    The slope of Δ(g) against ρ(g) (eq. 66) by least squares through the couplings where both directions of
    the gap split; its interval from the same fit on every bootstrap replicate (a replicate needs a finite
    Δ at every collapse point). A coupling where a direction does not split is no point of the fit (a gap
    there is not a difference of two speciation steps), so with fewer than :data:`MIN_COLLAPSE_POINTS`
    points the collapse is undefined."""
    est, _, boot = gap_series(a)
    points = np.isfinite(est)
    rho = np.asarray(a["rho"], dtype=np.float64)
    n = int(points.sum())
    if n < MIN_COLLAPSE_POINTS:
        d = Decision.undefined(
            "collapse",
            "steps per unit rho",
            f"both directions of the gap split at {n} coupling(s), fewer than {MIN_COLLAPSE_POINTS}"
            + _gate_reason(a),
        )
        return d, points, np.full(2, np.nan)
    slope = _slope(rho[points], est[points])
    reps = boot[points]  # (n, B)
    full = np.isfinite(reps).all(axis=0)
    slopes = np.array([_slope(rho[points], reps[:, b]) for b in np.flatnonzero(full)])
    ci = paired_ci(slope, slopes, _num_seeds(a))
    v, why = decide(ci)
    gs = ", ".join(f"{x:g}" for x in np.asarray(a["g"])[points])
    reason = f"slope of the gap against rho(g) through g = {gs}: {why}" + _gate_reason(a)
    return Decision("collapse", v, slope, ci, "steps per unit rho", reason), points, ci


def compare_verdicts(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The compare file's verdict arrays: the three predictions it decides, the hierarchy's pairs and the
    collapse points (schema ``compare``)."""
    hier, pairs, delta, cis = hierarchy(a)
    col, points, slope_ci = collapse(a)
    decisions = (hier, natural_gap(a), col)
    return {
        "hierarchy_pairs": pairs.reshape(-1, 2),
        "hierarchy_delta": delta,
        "hierarchy_ci": cis.reshape(-1, 2),
        "collapse_points": points,
        "gap_slope": np.asarray(col.estimate),
        "gap_slope_ci": slope_ci,
        "prediction_names": np.array([d.name for d in decisions]),
        "prediction_verdict": np.array([int(d.verdict) for d in decisions], dtype=np.int64),
        "prediction_estimate": np.array([d.estimate for d in decisions]),
        "prediction_ci": np.stack([d.ci for d in decisions]),
        "prediction_unit": np.array([d.unit for d in decisions]),
        "prediction_reason": np.array([d.reason for d in decisions]),
    }


#: §2.7's four predictions in the paper's order: the depth file decides the second, the compare file the rest.
PREDICTION_ORDER = ("hierarchy", "depth_localization", "natural_gap", "collapse")


def depth_decision(depth: dict[str, np.ndarray] | None) -> Decision:
    """Prediction 2 at g = 0 from a depth file's causal verdict (:func:`causal_stats.prediction2_verdict`):
    the estimate is its margin, the deciding share's 95% CI end minus the uniform share n_last/L."""
    if depth is None or "prediction2_verdict" not in depth:
        return Decision.undefined(
            "depth_localization",
            "share",
            "no depth file",
        )
    i0 = int(np.argmin(np.abs(np.asarray(depth["g"], dtype=np.float64))))
    u = float(depth["uniform_share"])
    return Decision(
        "depth_localization",
        Verdict(int(depth["prediction2_verdict"][i0])),
        float(depth["prediction2_margin"][i0]),
        np.full(2, np.nan),
        f"share above the uniform {u:.2f} (CI end)",
        str(depth["prediction2_reason"][i0]),
    )


def decisions(
    compare: dict[str, np.ndarray] | None, depth: dict[str, np.ndarray] | None = None
) -> list[Decision]:
    """The four §2.7 decisions in :data:`PREDICTION_ORDER`, read from a compare and a depth file's arrays
    (undefined, with the reason, for what a run did not measure)."""
    out = {"depth_localization": depth_decision(depth)}
    if compare is not None and "prediction_verdict" in compare:
        for k, name in enumerate(compare["prediction_names"]):
            out[str(name)] = Decision(
                str(name),
                Verdict(int(compare["prediction_verdict"][k])),
                float(compare["prediction_estimate"][k]),
                np.asarray(compare["prediction_ci"][k], dtype=np.float64),
                str(compare["prediction_unit"][k]),
                str(compare["prediction_reason"][k]),
            )
    return [
        out.get(n, Decision(n, Verdict.UNDEFINED, float("nan"), np.full(2, np.nan), "", "not measured"))
        for n in PREDICTION_ORDER
    ]


def decision_text(d: Decision, nd: int = 2) -> str:
    """``estimate [lo, hi] unit`` of a decision (the interval only where there is one)."""
    if not np.isfinite(d.estimate):
        return "n/a"
    ci = f" [{d.ci[0]:.{nd}f}, {d.ci[1]:.{nd}f}]" if np.all(np.isfinite(d.ci)) else ""
    return f"{d.estimate:+.{nd}f}{ci} {d.unit}".rstrip()


def verdict_text(v: int | Verdict) -> str:
    return {Verdict.HOLDS: "holds", Verdict.FAILS: "FAILS", Verdict.UNDEFINED: "undefined"}[Verdict(int(v))]

"""Summaries of a comparison: gaps and their fits in ρ(g), the eq. (56) closure, §2.7, Markdown (numpy only).

Pure functions over the arrays of a ``compare`` result file (:mod:`dit_validation.schema`); the comparison
calls them when it finishes, ``reproduce`` for its summary, the figures may too. torch-free.
"""

from __future__ import annotations

import numpy as np

from theory import DDPMSchedule, sampling_timesteps
from theory.schedules import ddim_c1

from .analysis import linfit
from .clone_tau import TauStatus, student_interval
from .verdicts import GATE_FRACTION, decide, decision_text, decisions, verdict_text

__all__ = [
    "gap_pair",
    "gaps",
    "closure_ratio",
    "markdown_table",
    "summary_lines",
]

#: The §2.7 predictions a comparison file decides (depth localization is decided from Protocol II).
PREDICTIONS = ("hierarchy", "natural_gap", "collapse")


def gap_pair(num_directions: int) -> tuple[int, int]:
    """(leading, trailing) directions of the gap (eq. 65): the most global and the most local, (0, F − 1)."""
    return 0, num_directions - 1


def _gap(t_lead: float, t_trail: float, lead_defined: bool, trail_defined: bool) -> float:
    """Δ = τ_trail − τ_lead where both directions split; 0 where neither does; NaN where only one does.

    A direction whose clones never split is committed jointly from the first split step on: when neither
    direction splits there is no window between their commitments (the gap has collapsed to 0); when only
    one splits the window is not a difference of two speciation steps and is left undefined.
    """
    if lead_defined and trail_defined:
        return t_trail - t_lead
    if not lead_defined and not trail_defined:
        return 0.0
    return np.nan


def gaps(
    a: dict[str, np.ndarray],
    block: dict[str, np.ndarray],
    boot: np.ndarray,
    num_seeds: int,
    pair: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """Gap Δ = τ_trail − τ_lead (eq. 65) per g, measured (paired-bootstrap CI) and predicted; fits in ρ(g).

    Measured: from clone splits, with the convention of :func:`_gap` (a direction that never splits counts
    as committed jointly). Step-level: a direction whose curvature never changes sign ("never", the
    difference channel stays stable) is the analogue of "never splits". ``boot`` (G, B): bootstrap
    replicates of the measured gap with the same seed resamples at every g
    (:func:`clone_tau.paired_differences`), so the slope against ρ(g) (eq. 66: the routing part of the gap
    scales with ρ) gets a CI too. Both CIs are :func:`clone_tau.student_interval` over the M =
    ``num_seeds`` clone pairs, the interval whose coverage ``benchmarks/bench_tau_coverage.py`` measures.
    ``pair``: (leading, trailing) directions, by default the first and last (the compare stage passes the
    most global and most local *learned* ones, :func:`verdicts.gap_directions`). The fit against ρ(g)
    runs through the couplings where both directions split, the points of the collapse verdict
    (:func:`verdicts.collapse`): a Δ = 0 set by the convention for "neither splits" is no measurement and
    would pull the slope wherever the grid puts such couplings.
    """
    G = a["g"].size
    lo, hi = gap_pair(a["splits"].shape[1]) if pair is None else pair
    split = a["splits"]
    meas = np.array(
        [_gap(a["tau_meas"][i, lo], a["tau_meas"][i, hi], split[i, lo], split[i, hi]) for i in range(G)]
    )
    step = a["tau_pred_step"]
    pred = np.array(
        [
            np.nan
            if np.isnan(step[i, [lo, hi]]).any()
            else _gap(step[i, lo], step[i, hi], np.isfinite(step[i, lo]), np.isfinite(step[i, hi]))
            for i in range(G)
        ]
    )
    with np.errstate(invalid="ignore"):
        block_gap = block["tau_pred_block"][..., hi] - block["tau_pred_block"][..., lo]
    out = {
        "gap_meas": meas,
        "gap_meas_ci": student_interval(meas, boot, num_seeds),
        "gap_pred_step": pred,
        "gap_pred_block": np.where(np.isfinite(block_gap), block_gap, np.nan),
        "gap_pred_biroli": np.full(G, float(a["tau_pred_biroli"][hi] - a["tau_pred_biroli"][lo])),
        "gap_lead": np.full(G, lo),
        "gap_trail": np.full(G, hi),
    }
    rho = a["rho"]
    both = split[:, lo] & split[:, hi] & np.isfinite(meas)  # a direction the gate refused has no τ
    out["gap_fit_meas"] = linfit(rho[both], meas[both])
    crossed = np.isfinite(step[:, lo]) & np.isfinite(step[:, hi])
    out["gap_fit_pred_step"] = linfit(rho[crossed], pred[crossed])
    return out


def closure_ratio(a: dict[str, np.ndarray], num_steps: int) -> np.ndarray:
    """Eq. (56)–(57) against the full-step Jacobian along φ_f, (S, F).

    For deterministic DDIM, x_prev = c₁x + b_s ε̂ with b_s = √(1 − ᾱ_prev) − c₁σ_t, so along φ_f at the
    symmetric point J_s = c₁ + b_s σ_t H_f(s; 0). Starting at the first step s₀ where the states along φ_f are
    bimodal (the EM test of ``m_state``) and stays bimodal to the end, m_f(s₀)·∏_{s₀ ≤ s' < s} J_{s'} is
    eq. (56)'s propagated branch separation; the ratio to the measured m_f(s) is 1 where the closure holds.
    NaN before s₀ (a bimodal flag that does not last is a false positive of the test, not a branch).
    """
    sched = DDPMSchedule()
    ab_all = sched.alphas_cumprod
    ts = sampling_timesteps(sched, num_steps)
    ab = ab_all[ts]
    ab_prev = np.append(ab[1:], 1.0)
    c1 = np.asarray(ddim_c1(ab, ab_prev))
    sigma = np.sqrt(1.0 - ab)
    b = np.sqrt(1.0 - ab_prev) - c1 * sigma
    g0 = int(np.argmin(np.abs(a["g"])))
    J = c1[:, None] + (b * sigma)[:, None] * a["H_step"][g0]  # (S, F)
    m = a["m_state"]
    out = np.full(m.shape, np.nan)
    for f in range(m.shape[1]):
        off = np.flatnonzero(~a["state_bimodal"][:, f])
        s0 = 0 if off.size == 0 else off[-1] + 1
        if s0 >= m.shape[0]:
            continue
        prop = m[s0, f] * np.concatenate([[1.0], np.cumprod(J[s0:-1, f])])  # eq. (56)-(57)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[s0:, f] = prop / m[s0:, f]
    return out


def _median(x: np.ndarray) -> float:
    """nanmedian that is NaN, without a warning, where nothing was measured (e.g. no split at any g)."""
    x = np.asarray(x, dtype=np.float64)
    return float(np.nanmedian(x)) if (~np.isnan(x)).any() else float("nan")


def _fmt(x: float, nd: int = 2) -> str:
    if not np.isfinite(x):
        return "never" if x == np.inf else "—"
    return f"{x:.{nd}f}"


def _bound(x: float) -> str:
    return "∞" if x == np.inf else _fmt(x, 3)


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _ci_text(ci: np.ndarray, nd: int = 2) -> str:
    return f"[{_fmt(ci[0], nd)}, {_fmt(ci[1], nd)}]" if np.all(np.isfinite(ci)) else ""


def _with_ci(x: float, ci: np.ndarray, nd: int = 2) -> str:
    return " ".join(t for t in (_fmt(float(x), nd), _ci_text(ci, nd)) if t)


def _frac(x: np.ndarray) -> str:
    return f"{100 * float(np.mean(x)):.0f}%"


def _step_text(x: float, first: float, last: float, nd: int = 2) -> str:
    """A step on the clone grid; a value clamped to a bound reads "before step 0" / "after step S"."""
    if not np.isfinite(x):
        return _fmt(x, nd)
    if x <= first:
        return f"before step {first:g}"
    if x >= last:
        return f"after step {last:g}"
    return f"{x:.{nd}f}"


def _tau_text(a: dict[str, np.ndarray], key: str, idx: tuple[int, ...], nd: int = 2, ci: bool = True) -> str:
    """Measured τ (with its CI) from ``key``, ``key``_ci and ``key``_status (:class:`clone_tau.TauStatus`).

    A τ or CI end on a bound of the split grid was clamped there (the estimate or the interval reaches past
    the grid) and is written as "before step 0" / "after step S", never as the bound's number.
    """
    status = a.get(f"{key}_status")
    if status is None:  # a file without statuses: NaN τ is "no split"
        code = TauStatus.INSIDE if np.isfinite(a[key][idx]) else TauStatus.NO_SPLIT
    else:
        code = TauStatus(int(status[idx]))
    if code == TauStatus.NO_SPLIT:
        return "no split"
    if code == TauStatus.NOT_LEARNED:
        return "not learned"
    if code == TauStatus.INSIDE:
        tau = _fmt(float(a[key][idx]), nd)
    else:
        grid = a["t_int"]
        tau = f"before step {grid[0]:g}" if code == TauStatus.BEFORE else f"after step {grid[-1]:g}"
    lo, hi = (float(v) for v in a[f"{key}_ci"][idx]) if ci else (np.nan, np.nan)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return tau
    first, last = float(a["t_int"][0]), float(a["t_int"][-1])
    return f"{tau} [{_step_text(lo, first, last, nd)}, {_step_text(hi, first, last, nd)}]"


def gate_table(a: dict[str, np.ndarray]) -> list[str]:
    """Markdown rows of the branch-validity gate, one per direction."""
    exact = "branch_midpoint_fraction_exact" in a
    head = ["direction", "band", "spectral centroid", "m_f", "model fraction"]
    head += ["exact-score sampler"] if exact else []
    head += ["learned"]
    rows = [_row(*head), _row(*["---"] * len(head))]
    for f, name in enumerate(a["factor_names"]):
        cells = [
            str(name),
            str(a["direction_band"][f]),
            _fmt(float(a["centroid"][f]), 3),
            _fmt(float(a["half_separation"][f]), 3),
            _fmt(float(a["branch_midpoint_fraction"][f]), 3),
        ]
        cells += [_fmt(float(a["branch_midpoint_fraction_exact"][f]), 3)] if exact else []
        cells += ["yes" if a["learned"][f] else "**no**"]
        rows.append(_row(*cells))
    return rows


def markdown_table(a: dict[str, np.ndarray], meta: dict) -> str:
    """compare.md: predicted (three ways) beside measured, per direction and coupling, and what they mean."""
    cfg = meta["config"]
    names = [str(n) for n in a["factor_names"]]
    lines = [
        f"# Predicted vs measured — {cfg['model']} ({cfg['dataset']}, {cfg['grid']} grid)",
        "",
        f"S = {cfg['num_steps']} DDIM steps; {cfg['clone_seeds']} clone pairs per split step (every "
        f"{cfg['t_int_stride']} steps); {cfg['sym_points']} symmetric points per step; "
        f"EM on {cfg['em_pairs']} "
        f"pairs; branch directions: {a['direction_source']}; {meta.get('wall_time_s', float('nan')):.0f} s.",
        "",
        "## 0. Branch validity: did the model learn the branches it is measured along?",
        "",
        "Fraction of the model's own samples (g = 0, clone pairs split at step 0) within half a branch "
        "separation of the midpoint (|φ_fᵀx − midpoint| < m_f/2, branches at midpoint ± m_f); a direction "
        f"above {GATE_FRACTION:.2f} (or with no bimodal branches, m_f = 0) is not learned and gets no τ, no "
        "prediction and no vote.",
        "",
        *gate_table(a),
        "",
        "## 1. Speciation step per branch direction (steps; 95% CI)",
        "",
        "τ_meas: mean commitment step of clone agreement (clones split at step s, continued at coupling g; "
        "the area above the rise from the first to the last split, dit_validation.clone_tau), Student "
        'interval over clone-pair resamples; "before step 0"/"after step S": clamped to the split grid. '
        "Step-level: first sign change of the learned curvature H_f(s; g) (eq. 49–51 at γ → ∞). "
        "Biroli: ᾱ = 1/Λ_f. Per-block: first κ = 1 crossing of eq. (50) in the last block "
        "(NaN: undefined before a crossing).",
        "",
    ]
    head = ["g", "direction", "measured τ [CI]", "step-level", "Biroli", "per-block (last)"]
    lines += [_row(*head), _row(*["---"] * len(head))]
    L = a["tau_pred_block"].shape[1]
    for i, g in enumerate(a["g"]):
        for f, name in enumerate(names):
            meas = _tau_text(a, "tau_meas", (i, f))
            lines.append(
                _row(
                    f"{g:g}",
                    name,
                    meas,
                    _fmt(a["tau_pred_step"][i, f]),
                    _fmt(a["tau_pred_biroli"][f]),
                    _fmt(a["tau_pred_block"][i, L - 1, f]),
                )
            )
    if "tau_exact_kappa" in a:
        lines += [
            "",
            "Exact score (the testbed's known answer, g = 0): the same step-level estimator on the exact ε "
            "against the exact κ_f = 1 step, and clone splits of the exact-score sampler.",
            "",
            _row(
                "direction", "exact κ_f = 1", "step-level on exact ε", "|difference|", "exact sampler τ [CI]"
            ),
            _row(*["---"] * 5),
        ]
        for f, name in enumerate(names):
            lines.append(
                _row(
                    name,
                    _fmt(a["tau_exact_kappa"][f], 3),
                    _fmt(a["tau_pred_step_exact"][f], 3),
                    _fmt(abs(a["tau_pred_step_exact"][f] - a["tau_exact_kappa"][f]), 3),
                    _tau_text(a, "tau_meas_exact", (f,)),
                )
            )
    lines += [
        "",
        "## 2. The gap Δ = τ(trailing) − τ(leading) (eq. 65) against ρ(g) (eq. 66)",
        "",
        _row("g", "ρ(g)", "measured Δ [CI]", "step-level Δ", "Biroli Δ", "per-block Δ (last block)"),
        _row(*["---"] * 6),
    ]
    lo, hi = int(a["gap_lead"][0]), int(a["gap_trail"][0])
    pair_learned = bool(np.asarray(a.get("learned", np.ones(hi + 1, bool)))[[lo, hi]].all())
    both = a["splits"][:, lo] & a["splits"][:, hi] & pair_learned
    for i, g in enumerate(a["g"]):
        if not pair_learned:
            meas = "— (fewer than two learned directions)"
        elif both[i]:
            meas = _with_ci(a["gap_meas"][i], a["gap_meas_ci"][i])
        elif a["splits"][i, lo] or a["splits"][i, hi]:
            meas = "— (one direction splits)"
        else:
            meas = "0 (neither splits)"
        lines.append(
            _row(
                f"{g:g}",
                f"{a['rho'][i]:.3f}",
                meas,
                _fmt(a["gap_pred_step"][i]),
                _fmt(a["gap_pred_biroli"][i]),
                _fmt(a["gap_pred_block"][i, -1]),
            )
        )
    s, c, r2 = a["gap_fit_meas"]
    gs = ", ".join(f"{x:g}" for x in a["g"][both]) or "none"
    fit = (
        f"Δ ≈ {_fmt(s)}·ρ(g) {'−' if c < 0 else '+'} {_fmt(abs(c))} (R² {_fmt(r2)})"
        if np.isfinite(s)
        else "no fit (fewer than 3 points)"
    )
    lines += [
        "",
        f"Measured, through the couplings where both directions split (g = {gs}; the collapse verdict's "
        f"points): {fit}, slope 95% CI {_ci_text(a['gap_slope_ci']) or '—'}. Where neither splits the gap "
        "is 0 by convention and no point of the fit. Step-level, through the couplings where both "
        f"curvatures change sign: slope {_fmt(a['gap_fit_pred_step'][0])}.",
        "",
        "## 3. Per-block eq. (50) at its premises",
        "",
        f"κ defined (eq. 55 holds, γ > 0, or m = 0 ⇒ κ = 0) at {_frac(a['kappa_defined'])} "
        f"of (g, step, block, "
        f"mode); EM finds a bimodal difference at {_frac(a['bimodal'])}; γ fit relative residual median "
        f"{_median(a['gamma_resid']):.1e} (fitted at {_frac(np.isfinite(a['gamma_resid']))} of points).",
        "",
        _row("block", "χ", "π", "λ^MLP", "cross", "γ [± se]", "κ defined"),
        _row(*["---"] * 7),
    ]
    for ell in range(L):
        med = [_fmt(_median(a[k][:, ell]), 4) for k in ("chi", "pi", "lambda_mlp", "cross")]
        gam_med, se_med = (_median(a[k][:, ell]) for k in ("gamma", "gamma_se"))
        gam = f"{_fmt(gam_med, 4)} ± {_fmt(se_med, 4)}"
        lines.append(_row(ell, *med, gam, _frac(a["kappa_defined"][:, :, ell])))
    lines += [
        "",
        "## 4. Routing dominance (Appendix B, eq. 105), medians over steps, blocks and modes",
        "",
        "Appendix B claims routing dominance only for coherent modes (ε_δV ≪ 1, eq. 102); the bound (105) is "
        "∞ (vacuous) where 1 − λ⊥ε_δV ≤ 0.",
        "",
        _row("modes", "‖δA V0‖/‖A0 δV‖", "ε_δV (eq. 102)", "bound (eq. 105)"),
        _row(*["---"] * 4),
        *(
            _row(
                label,
                *(_bound(_median(a[f"{q}{suffix}"])) for q in ("dominance_ratio", "eps_dv")),
                _bound(_median(a[f"dominance_bound{suffix}"])),
            )
            for label, suffix in (
                ("token-constant (coherent: the premise)", "_coherent"),
                ("branch directions pushed into the block", ""),
                ("random", "_random"),
            )
        ),
        "",
        "## 5. §2.7 predictions decided here",
        "",
        "Decided only by a paired 95% interval (τ's re-estimated on the same seed resamples for every "
        "direction and coupling): holds above 0, FAILS below, undefined otherwise, with the reason. "
        "Directions the branch-validity gate refused (section 0) have no vote.",
        "",
        _row("prediction", "verdict", "estimate [95% CI]", "what decides it"),
        _row(*["---"] * 4),
    ]
    for d in decisions(a)[::1]:
        if d.name == "depth_localization":
            continue
        lines.append(_row(d.name, verdict_text(d.verdict), decision_text(d), d.reason))
    lines += ["", "Hierarchy, every adjacent learned pair and the extremes (g = 0):", ""]
    lines += _hierarchy_rows(a)
    return "\n".join(lines) + "\n"


def _hierarchy_rows(a: dict[str, np.ndarray]) -> list[str]:
    names = [str(n) for n in a["factor_names"]]
    rows = [_row("pair", "Δτ = τ(local) − τ(global) [95% CI]", "verdict"), _row(*["---"] * 3)]
    for (lo, hi), est, ci in zip(a["hierarchy_pairs"], a["hierarchy_delta"], a["hierarchy_ci"], strict=True):
        v, _ = decide(ci)
        rows.append(_row(f"{names[lo]} → {names[hi]}", _with_ci(est, ci), verdict_text(v)))
    if len(a["hierarchy_pairs"]) == 0:
        rows.append(_row("— (fewer than two learned directions split at g = 0)", "", "undefined"))
    return rows


def summary_lines(meta: dict, a: dict[str, np.ndarray]) -> list[str]:
    """The comparison's lines of ``synchrogap reproduce``'s one-screen summary."""
    names = [str(n) for n in a["factor_names"]]
    i0 = int(np.argmin(np.abs(a["g"])))
    lines = ["Predicted vs measured speciation step at g = 0 (compare):"]
    for f, name in enumerate(names):
        meas = _tau_text(a, "tau_meas", (i0, f), 1)
        lines.append(
            f"  {name:<12} measured {meas:<22} step-level {_fmt(a['tau_pred_step'][i0, f], 1):>6}  "
            f"Biroli {_fmt(a['tau_pred_biroli'][f], 1):>6}"
        )
    lines.append(f"  per-block eq. (50): kappa defined at {_frac(a['kappa_defined'])} of points")
    off = [n for n, ok in zip(names, a["learned"], strict=True) if not ok]
    if off:
        lines.append(
            f"  not learned (branch-validity gate, > {GATE_FRACTION:.0%} of samples near the midpoint): "
            f"{', '.join(off)} -- no tau, no prediction, no vote"
        )
    return lines


def _resolved(d: dict[str, np.ndarray], i: int) -> str:
    r = np.asarray(d["gint_resolved"][i], bool)
    return f"{int(r.sum())}/{r.size}"


def depth_table(d: dict[str, np.ndarray]) -> list[str]:
    """Prediction 2 per g (markdown rows): the causal shares of the last quarter of the blocks with their
    95% CIs beside the uniform share, the verdict, and Protocol II's calibrated internal gap."""
    out = [
        _row(
            "g",
            "curvature change, last-quarter share",
            "patching, last-quarter share",
            "verdict",
            "layers with G_int − 1 resolved",
            "Protocol II \\|G_int − 1\\| share",
        ),
        _row(*["---"] * 6),
    ]
    for i, g in enumerate(d["g"]):
        out.append(
            _row(
                f"{float(g):g}",
                _with_ci(d["curvature_share_last_quarter"][i], d["curvature_share_last_quarter_ci"][i]),
                _with_ci(d["patch_share_last_quarter"][i], d["patch_share_last_quarter_ci"][i]),
                verdict_text(int(d["prediction2_verdict"][i])),
                _resolved(d, i),
                _with_ci(d["gint_depth"][i], d["gint_depth_ci"][i]),
            )
        )
    return out


def predictions_markdown(compare: tuple[dict, dict], depth: tuple[dict, dict] | None = None) -> str:
    """predictions.md: the four predictions of §2.7 on this model, each with the statistic and the paired
    interval that decide it, and prediction 2 at every g."""
    meta, a = compare
    d = None if depth is None else depth[1]
    i0 = int(np.argmin(np.abs(a["g"])))
    names = [str(n) for n in a["factor_names"]]
    tau = ", ".join(f"{n} {_tau_text(a, 'tau_meas', (i0, f), 1)}" for f, n in enumerate(names))
    lines = [
        f"# §2.7 predictions — {meta['config']['model']}",
        "",
        "A prediction holds only where the paired 95% interval of its statistic lies above 0 (for depth "
        "localization: a causal last-quarter share above the uniform share), fails only where it lies "
        "below, and is undefined otherwise, with the reason; a failing prediction is a result. Directions "
        "the model never learned (the branch-validity gate) have no vote.",
        "",
        f"Measured τ at g = 0 (steps, 95% CI): {tau}.",
        "",
        _row("prediction", "verdict", "estimate [95% CI]", "what decides it"),
        _row(*["---"] * 4),
    ]
    for k, dec in enumerate(decisions(a, d), start=1):
        lines.append(_row(f"{k}. {dec.name}", verdict_text(dec.verdict), decision_text(dec), dec.reason))
    lines += ["", "## Hierarchy pairs (g = 0)", "", *_hierarchy_rows(a)]
    pts = ", ".join(f"{x:g}" for x in np.asarray(a["g"])[np.asarray(a["collapse_points"], bool)]) or "none"
    lines += [
        "",
        "## Gap against ρ(g)",
        "",
        f"Couplings where both directions of the gap split (collapse points): {pts}.",
        "",
        _row("g", "ρ(g)", "Δ = τ(trailing) − τ(leading) [95% CI]"),
        _row(*["---"] * 3),
        *(
            _row(f"{g:g}", f"{a['rho'][i]:.3f}", _with_ci(a["gap_meas"][i], a["gap_meas_ci"][i]))
            for i, g in enumerate(a["g"])
        ),
    ]
    if d is not None:
        lines += [
            "",
            "## Depth localization at every g",
            "",
            f"Share of the change carried by the last quarter of the {d['layers'].size} blocks (uniform: "
            f"{float(d['uniform_share']):.2f}), 95% bootstrap CIs: the learned curvature split by block "
            "across the step-level τ_f, and activation patching between clones at the measured τ_f "
            "(— where not measured). Protocol II's |G_int − 1| (held-out basis) beside it.",
            "",
            *depth_table(d),
        ]
    return "\n".join(lines) + "\n"

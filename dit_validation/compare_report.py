"""Summaries of a comparison: gaps and their fits in ρ(g), the eq. (56) closure, §2.7, Markdown (numpy only).

Pure functions over the arrays of a ``compare`` result file (:mod:`dit_validation.schema`); the comparison
calls them when it finishes, ``reproduce`` for its summary, the figures may too. torch-free.
"""

from __future__ import annotations

import numpy as np

from theory import DDPMSchedule, sampling_timesteps
from theory.schedules import ddim_c1

from .analysis import linfit
from .verdicts import GATE_FRACTION

__all__ = [
    "PREDICTIONS",
    "gap_pair",
    "gaps",
    "closure_ratio",
    "predictions",
    "markdown_table",
    "summary_lines",
]

#: The §2.7 predictions a comparison file decides (depth localization is decided from Protocol II).
PREDICTIONS = ("hierarchy", "natural_gap", "collapse")


def gap_pair(num_directions: int) -> tuple[int, int]:
    """(leading, trailing) directions of the gap (eq. 65): the most global and the most local, (0, F − 1)."""
    return 0, num_directions - 1


def _ci(x: np.ndarray) -> np.ndarray:
    x = x[np.isfinite(x)]
    return np.percentile(x, [2.5, 97.5]) if x.size >= 10 else np.full(2, np.nan)


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


def gaps(a: dict[str, np.ndarray], block: dict[str, np.ndarray], boot: np.ndarray) -> dict[str, np.ndarray]:
    """Gap Δ = τ_trail − τ_lead (eq. 65) per g, measured (paired-bootstrap CI) and predicted; fits in ρ(g).

    Measured: from clone splits, with the convention of :func:`_gap` (a direction that never splits counts
    as committed jointly). Step-level: a direction whose curvature never changes sign ("never", the
    difference channel stays stable) is the analogue of "never splits". ``boot`` (G, B): bootstrap
    replicates of the measured gap with the same seed resamples at every g, so the slope against ρ(g)
    (eq. 66: the routing part of the gap scales with ρ) gets a CI too.
    """
    G = a["g"].size
    lo, hi = gap_pair(a["splits"].shape[1])
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
        "gap_meas_ci": np.stack(
            [_ci(boot[i]) if np.isfinite(meas[i]) else np.full(2, np.nan) for i in range(G)]
        ),
        "gap_pred_step": pred,
        "gap_pred_block": np.where(np.isfinite(block_gap), block_gap, np.nan),
        "gap_pred_biroli": np.full(G, float(a["tau_pred_biroli"][hi] - a["tau_pred_biroli"][lo])),
        "gap_lead": np.full(G, lo),
        "gap_trail": np.full(G, hi),
    }
    rho = a["rho"]
    out["gap_fit_meas"] = linfit(rho, meas)
    out["gap_fit_pred_step"] = linfit(rho, pred)
    slopes = np.array([linfit(rho, boot[:, b])[0] for b in range(boot.shape[1])])
    out["gap_slope_ci"] = _ci(slopes)
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


def predictions(a: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The §2.7 predictions a comparison decides, each with a signed margin (> 0 holds) and its CI bound.

    hierarchy: at g = 0 the measured τ increases from global to local over the directions that split
        (margin: the smallest consecutive increase, steps).
    natural_gap: the measured gap at g = 0 is positive (margin: the CI's lower end, steps).
    collapse: the measured gap grows with ρ(g), i.e. collapses as g → 1 (eq. 66; margin: the slope CI's
        lower end, steps per unit ρ).
    """
    i0 = int(np.argmin(np.abs(a["g"])))
    tau = a["tau_meas"][i0][a["splits"][i0]]
    hier = float(np.min(np.diff(tau))) if tau.size >= 2 and np.all(np.isfinite(tau)) else np.nan
    natural = float(out["gap_meas_ci"][i0, 0])
    collapse = float(out["gap_slope_ci"][0])
    margin = np.array([hier, natural, collapse])
    return {
        "prediction_names": np.array(PREDICTIONS),
        "prediction_margin": margin,
        "prediction_holds": np.isfinite(margin) & (margin > 0),
    }


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


def _verdict(holds: bool, margin: float) -> str:
    return "undefined" if not np.isfinite(margin) else ("holds" if holds else "FAILS")


def _with_ci(x: float, ci: np.ndarray, nd: int = 2) -> str:
    return " ".join(t for t in (_fmt(float(x), nd), _ci_text(ci, nd)) if t)


def _frac(x: np.ndarray) -> str:
    return f"{100 * float(np.mean(x)):.0f}%"


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
        "τ_meas: sigmoid center of clone agreement (clones split at step s, continued at coupling g). "
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
            meas = _with_ci(a["tau_meas"][i, f], a["tau_meas_ci"][i, f]) if a["splits"][i, f] else "no split"
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
                    _with_ci(a["tau_meas_exact"][f], a["tau_meas_exact_ci"][f]),
                )
            )
    lines += [
        "",
        "## 2. The gap Δ = τ(trailing) − τ(leading) (eq. 65) against ρ(g) (eq. 66)",
        "",
        _row("g", "ρ(g)", "measured Δ [CI]", "step-level Δ", "Biroli Δ", "per-block Δ (last block)"),
        _row(*["---"] * 6),
    ]
    for i, g in enumerate(a["g"]):
        lines.append(
            _row(
                f"{g:g}",
                f"{a['rho'][i]:.3f}",
                _with_ci(a["gap_meas"][i], a["gap_meas_ci"][i]),
                _fmt(a["gap_pred_step"][i]),
                _fmt(a["gap_pred_biroli"][i]),
                _fmt(a["gap_pred_block"][i, -1]),
            )
        )
    s, c, r2 = a["gap_fit_meas"]
    lines += [
        "",
        f"Measured Δ ≈ {_fmt(s)}·ρ(g) {'−' if c < 0 else '+'} {_fmt(abs(c))} (R² {_fmt(r2)}), "
        f"slope 95% CI {_ci_text(a['gap_slope_ci']) or '—'}; "
        f"step-level Δ slope {_fmt(a['gap_fit_pred_step'][0])}.",
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
        _row("prediction", "verdict", "margin"),
        _row(*["---"] * 3),
    ]
    for n, h, m in zip(a["prediction_names"], a["prediction_holds"], a["prediction_margin"], strict=True):
        lines.append(_row(n, _verdict(bool(h), float(m)), _fmt(float(m), 3)))
    return "\n".join(lines) + "\n"


def summary_lines(meta: dict, a: dict[str, np.ndarray]) -> list[str]:
    """The comparison's lines of ``synchrogap reproduce``'s one-screen summary."""
    names = [str(n) for n in a["factor_names"]]
    i0 = int(np.argmin(np.abs(a["g"])))
    lines = ["Predicted vs measured speciation step at g = 0 (compare):"]
    for f, name in enumerate(names):
        meas = (
            _with_ci(a["tau_meas"][i0, f], a["tau_meas_ci"][i0, f], 1) if a["splits"][i0, f] else "no split"
        )
        lines.append(
            f"  {name:<12} measured {meas:<22} step-level {_fmt(a['tau_pred_step'][i0, f], 1):>6}  "
            f"Biroli {_fmt(a['tau_pred_biroli'][f], 1):>6}"
        )
    lines.append(f"  per-block eq. (50): kappa defined at {_frac(a['kappa_defined'])} of points")
    lines.append("Section 2.7 predictions (compare):")
    for n, h, m in zip(a["prediction_names"], a["prediction_holds"], a["prediction_margin"], strict=True):
        lines.append(f"  {str(n):<20} {_verdict(bool(h), float(m)):<9} margin {_fmt(float(m), 3)}")
    return lines


def depth_prediction(depth: dict[str, np.ndarray]) -> tuple[bool, float]:
    """§2.7 prediction 2 at g = 0 from a depth file: holds when the internal gap's depth share exceeds the
    uniform share with 95% confidence (margin: the CI's lower end minus the uniform share).

    Undefined (NaN margin) when G_int − 1 is within seed noise at every layer: the share of a profile that
    is noise everywhere says nothing about depth, and its bootstrap interval need not even contain it."""
    i0 = int(np.argmin(np.abs(depth["g"])))
    if not np.any(depth["gint_resolved"][i0]):
        return False, float("nan")
    margin = float(depth["gint_depth_ci"][i0, 0] - depth["uniform_share"])
    return bool(np.isfinite(margin) and margin > 0), margin


def _resolved(d: dict[str, np.ndarray], i: int) -> str:
    r = np.asarray(d["gint_resolved"][i], bool)
    return f"{int(r.sum())}/{r.size}"


def depth_summary_lines(d: dict[str, np.ndarray]) -> list[str]:
    """Prediction 2's line of the one-screen summary, in the format of the compare predictions above it,
    and a warning when Protocol II's internal gap is seed noise everywhere (its lines above then say
    nothing about collapse either)."""
    ok, m = depth_prediction(d)
    j = int(np.argmin(np.abs(d["g"])))
    lines = [
        f"  {'depth_localization':<20} {_verdict(ok, m):<9} margin {_fmt(m, 3)}  (depth.npz: G_int - 1 above "
        f"seed noise at {_resolved(d, j)} layers at g = 0; last-quarter share "
        f"{_with_ci(d['gint_depth'][j], d['gint_depth_ci'][j])} vs uniform {float(d['uniform_share']):.2f})"
    ]
    if not np.any(d["gint_resolved"]):
        lines.append(
            "  note: G_int - 1 is within seed noise at every layer and every g, so Protocol II's internal "
            "gap and its collapse line above decide nothing at this seed count"
        )
    return lines


def depth_table(d: dict[str, np.ndarray]) -> list[str]:
    """The depth-localization statistic per g (markdown rows): the share of each profile in the last
    quarter of the blocks, with 95% bootstrap CIs, beside the share of a profile spread evenly."""
    out = [
        _row(
            "g",
            "Protocol II \\|G_int − 1\\|",
            "layers with G_int − 1 above seed noise",
            "probe readability gains",
            "per-block eq. (50)",
        ),
        _row(*["---"] * 5),
    ]
    for i, g in enumerate(d["g"]):
        out.append(
            _row(
                f"{float(g):g}",
                _with_ci(d["gint_depth"][i], d["gint_depth_ci"][i]),
                _resolved(d, i),
                _with_ci(d["probe_depth"][i], d["probe_depth_ci"][i]),
                _fmt(float(d["block_depth"][i])),
            )
        )
    return out


def predictions_markdown(compare: tuple[dict, dict], depth: tuple[dict, dict] | None = None) -> str:
    """predictions.md: the four predictions of §2.7 on this model, each with the numbers that decide it,
    and the depth-localization statistic at every g."""
    meta, a = compare
    i0 = int(np.argmin(np.abs(a["g"])))
    names = [str(n) for n in a["factor_names"]]
    margins = dict(zip(map(str, a["prediction_names"]), a["prediction_margin"], strict=True))
    holds = dict(zip(map(str, a["prediction_names"]), a["prediction_holds"], strict=True))
    tau = ", ".join(
        f"{n} {_fmt(t, 1)}" if s else f"{n} no split"
        for n, t, s in zip(names, a["tau_meas"][i0], a["splits"][i0], strict=True)
    )
    rows = [
        (
            "1. commitment hierarchy (global before local)",
            holds["hierarchy"],
            margins["hierarchy"],
            f"measured τ at g = 0: {tau}",
        ),
    ]
    if depth is not None:
        _, d = depth
        ok, m = depth_prediction(d)
        j = int(np.argmin(np.abs(d["g"])))
        detail = (
            f"share of \\|G_int − 1\\| in the last quarter of {d['layers'].size} blocks at g = 0: "
            f"{_with_ci(d['gint_depth'][j], d['gint_depth_ci'][j])} vs uniform "
            f"{float(d['uniform_share']):.2f}, G_int − 1 above seed noise at {_resolved(d, j)} layers; "
            "probe readability gains "
            f"{_with_ci(d['probe_depth'][j], d['probe_depth_ci'][j])}; per-block eq. (50) "
            f"{_fmt(float(d['block_depth'][j]))}"
        )
        rows.append(("2. depth localization", ok, m, detail))
    else:
        rows.append(("2. depth localization", False, np.nan, "no depth file (Protocol II and the probes)"))
    rows += [
        (
            "3. natural gap at g = 0",
            holds["natural_gap"],
            margins["natural_gap"],
            f"Δ = {_with_ci(a['gap_meas'][i0], a['gap_meas_ci'][i0])} steps "
            f"(step-level predicted {_fmt(a['gap_pred_step'][i0])})",
        ),
        (
            "4. coupling-induced collapse",
            holds["collapse"],
            margins["collapse"],
            f"Δ against ρ(g): slope {_with_ci(a['gap_fit_meas'][0], a['gap_slope_ci'])}, "
            f"R² {_fmt(a['gap_fit_meas'][2])}; "
            "directions that never split at a g leave Δ undefined there",
        ),
    ]
    lines = [
        f"# §2.7 predictions — {meta['config']['model']}",
        "",
        "A prediction holds when its margin (the lower end of a 95% CI where there is one) is positive, "
        "fails when it is not, and is undefined when the measurements cannot decide it (a NaN margin); "
        "a failing prediction is a result.",
        "",
        _row("prediction", "verdict", "margin", "what decides it"),
        _row(*["---"] * 4),
    ]
    lines += [_row(n, _verdict(bool(h), float(m)), _fmt(float(m), 3), detail) for n, h, m, detail in rows]
    if depth is not None:
        lines += [
            "",
            "## Depth localization at every g",
            "",
            "Share of each per-layer profile carried by the last quarter of the "
            f"{d['layers'].size} blocks (uniform: {float(d['uniform_share']):.2f}), 95% bootstrap CIs; "
            "— where nothing was measured (no direction splits at that g, or κ undefined). A layer's "
            "G_int − 1 is above seed noise when its 95% seed-bootstrap interval excludes 0; with no such "
            "layer the share is a share of noise and prediction 2 is undefined.",
            "",
            *depth_table(d),
        ]
    return "\n".join(lines) + "\n"

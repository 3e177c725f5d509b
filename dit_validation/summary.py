"""The one-screen summary of a ``reproduce`` run, and the step formatting every table shares (torch-free).

Each printed number has one definition and one name: Protocol I's τ's are sigmoid midpoints in sampling
steps (eq. 73), Protocol II's G_int is the trail/lead band-energy ratio at s = τ_spec(g) (eq. 80) over that
run's layers, and the comparison's numbers (``compare``) come from its own runs (clone experiment, last
block at s = τ_clone) and are labelled so. Intervals outside the sampled steps are written "before step 0"
/ "after step S" rather than as negative or impossible steps. When two measurements disagree, the summary
says so instead of printing both verdicts side by side.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from theory import rho as theory_rho

from .analysis import deep_layer_count
from .compare_report import depth_summary_lines, summary_lines
from .results import load_result

__all__ = ["fmt_step", "fmt_interval", "table1_text", "protocol2_lines", "summary_text", "fmt_duration"]


def fmt_step(x: float, first: float, last: float) -> str:
    """A step on the sampled grid [first, last]: one decimal, "before step 0"/"after step S" outside, n/a."""
    if not np.isfinite(x):
        return "n/a"
    if x < first:
        return f"before step {first:g}"
    if x > last:
        return f"after step {last:g}"
    return f"{x:.1f}"


def fmt_interval(ci: np.ndarray, first: float, last: float) -> str:
    """``[lo, hi]`` of a CI in steps, each end clipped to the grid by :func:`fmt_step`."""
    lo, hi = (float(v) for v in np.asarray(ci, dtype=np.float64))
    return f"[{fmt_step(lo, first, last)}, {fmt_step(hi, first, last)}]"


def fmt_duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def table1_text(a: Mapping[str, np.ndarray]) -> str:
    """Table 1 (τ_spec with its 95 % CI, τ_g, τ_l, Δτ = τ_l − τ_g of eq. 73) from protocol1 arrays."""
    t = np.asarray(a["t_int"], dtype=np.float64)
    first, last = float(t.min()), float(t.max())
    rows = [("g", "tau_spec [95% CI]", "tau_g", "tau_l", "delta_tau")]
    for i, g in enumerate(a["g"]):
        rows.append(
            (
                f"{g:.2f}",
                f"{fmt_step(a['tau_spec'][i], first, last)} {fmt_interval(a['tau_spec_ci'][i], first, last)}",
                fmt_step(a["tau_g"][i], first, last),
                fmt_step(a["tau_l"][i], first, last),
                "n/a" if not np.isfinite(a["delta_tau"][i]) else f"{a['delta_tau'][i]:.1f}",
            )
        )
    if "control_tau_spec" in a:
        tau = float(a["control_tau_spec"])
        ci = fmt_interval(a["control_tau_spec_ci"], first, last)
        rows.append(("ctrl", f"{fmt_step(tau, first, last)} {ci}", "", "", "(g = 0, shared noise, Fig. 5)"))
    widths = [max(len(r[j]) for r in rows) for j in range(5)]
    return "\n".join(
        "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def _protocol1_lines(meta: Mapping, a: Mapping[str, np.ndarray]) -> list[str]:
    t = np.asarray(a["t_int"], dtype=np.float64)
    lines = [
        f"Protocol I (eq. 70-73): speciation step tau_spec (sigmoid midpoint of the feature similarity) and "
        f"output-space gap delta_tau = tau_l - tau_g, in sampling steps {t.min():g}-{t.max():g}",
        table1_text(a),
    ]
    flat = [f"{g:g}" for g, tau in zip(a["g"], a["tau_spec"], strict=True) if not np.isfinite(tau)]
    if flat:
        lines.append(
            f"  no sigmoid midpoint (flat curve) at g = {', '.join(flat)}: no speciation within the grid"
        )
    return lines


def protocol2_lines(a: Mapping[str, np.ndarray]) -> list[str]:
    """Where the internal gap lives in depth, and whether it shrinks with ρ(g) (eq. 66), from Protocol II."""
    g, layers = np.asarray(a["g"], dtype=np.float64), np.asarray(a["layers"])
    gap = np.abs(np.asarray(a["G_int"], dtype=np.float64) - 1.0)  # |G_int − 1|, eq. (80)
    n_deep = deep_layer_count(layers.size)  # §4.2: the gap sits in the final ~5 of 28 blocks
    deep_name = f"mean of last {n_deep} layers" if n_deep > 1 else f"last layer ({int(layers[-1])})"
    early_name = (
        f"mean of layers {int(layers[0])}-{int(layers[-n_deep - 1])}" if layers.size > n_deep else "none"
    )
    rho = np.atleast_1d(theory_rho(g))  # eq. (27)
    wd, we = len(deep_name), len(early_name)  # column widths
    with warnings.catch_warnings():  # all-NaN rows (τ_spec not found) stay NaN without a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        deep = np.nanmean(gap[:, -n_deep:], axis=1)
        early = np.nanmean(gap[:, :-n_deep], axis=1) if layers.size > n_deep else np.full(g.size, np.nan)
    lines = [
        f"Protocol II (eq. 75-80): internal gap |G_int - 1|, G_int = trailing/leading band energy at "
        f"s = tau_spec(g): {deep_name} vs {early_name}",
        f"  {'g':>4}  {'rho':>4}  {deep_name:>{wd}}  {early_name:>{we}}  largest |G_int - 1|",
    ]
    for i in range(g.size):
        row = np.asarray(a["G_int"][i], dtype=np.float64)
        if np.any(np.isfinite(row)):
            j = int(np.nanargmax(np.abs(row - 1.0)))
            where = f"layer {int(layers[j])} (G_int = {row[j]:.3f})"
        else:
            where = "n/a (no tau_spec for this g)"
        lines.append(f"  {g[i]:4.2f}  {rho[i]:4.2f}  {_f(deep[i]):>{wd}}  {_f(early[i]):>{we}}  {where}")
    verdict = collapse_verdict(rho, deep)
    if verdict is not None:
        r, holds = verdict
        n = int(np.isfinite(deep).sum())
        caveat = "" if n >= 5 else f"; {n} couplings give a sign, not a test"
        lines.append(
            f"  collapse (eq. 66: the gap shrinks as rho(g) -> 0): corr(rho, {deep_name}) = {r:+.2f} "
            f"-> {'consistent' if holds else 'not consistent'}{caveat}"
        )
    return lines


def collapse_verdict(rho: np.ndarray, deep: np.ndarray) -> tuple[float, bool] | None:
    """(corr(ρ, deep gap), corr > 0) over the finite couplings; None with fewer than 3 or a flat gap."""
    ok = np.isfinite(deep)
    if ok.sum() < 3 or np.ptp(deep[ok]) == 0 or np.ptp(rho[ok]) == 0:
        return None
    r = float(np.corrcoef(rho[ok], deep[ok])[0, 1])
    return r, r > 0


def _f(x: float, nd: int = 3) -> str:
    return f"{x:.{nd}f}" if np.isfinite(x) else "n/a"


def degenerate_predictions(a: Mapping[str, np.ndarray]) -> list[str]:
    """Plain statements of the predictions that carry no information in a compare result."""
    out = []
    names = [str(n) for n in a.get("factor_names", [])]
    if "tau_pred_block" in a and not np.isfinite(np.asarray(a["tau_pred_block"], dtype=np.float64)).any():
        frac = float(np.mean(a["kappa_defined"])) if "kappa_defined" in a else float("nan")
        out.append(
            f"the per-block eq. (50) gives no finite speciation step at any g, block or direction "
            f"(kappa defined at {100 * frac:.0f}% of points; undefined where eq. (55) fails or gamma <= 0)"
        )
    if "tau_pred_step" in a and names:
        step = np.asarray(a["tau_pred_step"], dtype=np.float64)
        i0 = int(np.argmin(np.abs(np.asarray(a["g"]))))
        never = [n for n, t in zip(names, step[i0], strict=True) if t == np.inf]
        if never:
            out.append(f"the step-level curvature never changes sign at g = 0 along: {', '.join(never)}")
    if "gap_meas" in a:
        g = np.asarray(a["g"], dtype=np.float64)
        undefined = g[~np.isfinite(np.asarray(a["gap_meas"], dtype=np.float64))]
        if undefined.size:
            out.append(
                "the measured gap is undefined (only one of its directions splits) at g = "
                + ", ".join(f"{x:g}" for x in undefined)
            )
    return out


def _compare_lines(meta: Mapping, a: Mapping[str, np.ndarray], p2_collapse: bool | None) -> list[str]:
    cfg = meta.get("config", {})
    lines = [
        f"Comparison (compare.npz, its own runs: clone splits at every g, M = {cfg.get('clone_seeds', '?')} "
        f"pairs per split step; its gap is tau(most local) - tau(most global) in steps, not Protocol II's "
        "G_int above)",
        *summary_lines(dict(meta), dict(a)),
    ]
    degenerate = degenerate_predictions(a)
    if degenerate:
        lines += ["  degenerate predictions:", *(f"    - {d}" for d in degenerate)]
    names = [str(n) for n in a.get("prediction_names", [])]
    if p2_collapse is not None and "collapse" in names:
        k = names.index("collapse")
        cmp_holds = bool(a["prediction_holds"][k])
        if (
            np.isfinite(float(a["prediction_margin"][k])) and cmp_holds != p2_collapse
        ):  # undefined: no verdict
            lines.append(
                f"  note: on the collapse, Protocol II ({'consistent' if p2_collapse else 'not consistent'}) "
                f"and compare ({'holds' if cmp_holds else 'FAILS'}) disagree: they measure different gaps "
                "(internal mode energies at tau_spec vs clone-split steps), at this grid size"
            )
    return lines


def _plan_grid(path: Path) -> str:
    try:
        return f" ({json.loads(path.read_text())['grid']} grid)"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _timings(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


def summary_text(files: Mapping[str, Path]) -> str:
    """One screen from the files of a run: header with run time, Protocol I, Protocol II, compare, paths."""
    lines: list[str] = []
    p2_collapse: bool | None = None
    out = next((p.parent for k, p in files.items() if k in ("protocol1", "protocol2", "compare")), None)
    timing = _timings(out / "timings.json") if out is not None else {}
    if files.get("protocol1") and files["protocol1"].is_file():
        meta, a = load_result(files["protocol1"])
        if meta["complete"]:
            cfg = meta["config"]
            grid = _plan_grid(files["protocol1"].parent / "reproduce.json")
            lines += [
                f"synchrogap reproduce: {cfg.get('model', '?')}{grid}, {cfg.get('num_steps')} DDIM steps, "
                f"M = {len(meta.get('seeds', []))} seeds",
                "",
                *_protocol1_lines(meta, a),
            ]
    if files.get("protocol2") and files["protocol2"].is_file():
        meta, b = load_result(files["protocol2"])
        if meta["complete"]:
            lines += ["", *protocol2_lines(b)]
            g = np.asarray(b["g"], dtype=np.float64)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                n_deep = deep_layer_count(np.asarray(b["layers"]).size)
                deep = np.nanmean(np.abs(np.asarray(b["G_int"], dtype=np.float64) - 1)[:, -n_deep:], axis=1)
            verdict = collapse_verdict(np.atleast_1d(theory_rho(g)), deep)
            p2_collapse = None if verdict is None else verdict[1]
    if files.get("compare") and files["compare"].is_file():
        meta, c = load_result(files["compare"], kind="compare")
        if meta["complete"]:
            lines += ["", *_compare_lines(meta, c, p2_collapse)]
    if files.get("depth") and files["depth"].is_file():
        meta, d = load_result(files["depth"], kind="depth")
        if meta["complete"]:
            lines += depth_summary_lines(dict(d))
    if timing:
        total = sum(timing.values())
        parts = ", ".join(f"{k} {fmt_duration(v)}" for k, v in timing.items())
        lines += ["", f"run time: {fmt_duration(total)} of computation ({parts})"]
    results = [
        str(files[k])
        for k in ("theory", "protocol1", "protocol2", "compare")
        if files.get(k) and files[k].is_file()
    ]
    if results:
        lines.append("results: " + ", ".join(results))
    if files.get("figures"):
        lines.append(f"figures and tables: {files['figures']}")
    return "\n".join(lines)

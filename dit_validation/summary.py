"""The one-screen summary of a ``reproduce`` run, and the step formatting every table shares (torch-free).

Each printed number has one definition and one name: Protocol I's τ's are sigmoid midpoints in sampling
steps (eq. 73), Protocol II's G_int is the trail/lead band-energy ratio at s = τ_spec(g) (eq. 80) over that
run's layers, and the comparison's numbers (``compare``) come from its own runs (clone experiment, last
block at s = τ_clone) and are labelled so. Intervals outside the sampled steps are written "before step 0"
/ "after step S" rather than as negative or impossible steps. Each of §2.7's four predictions gets one
verdict, in one place (:func:`prediction_lines`), with its margin in units; Protocol II's correlation with
ρ(g) is printed as a measurement beside the collapse verdict, never as a second verdict. The ``results:``
line lists every file the run wrote.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from theory import rho as theory_rho

from .analysis import deep_layer_count
from .compare_report import summary_lines
from .results import load_result
from .verdicts import decision_text, decisions, verdict_text

__all__ = [
    "fmt_step",
    "fmt_interval",
    "table1_text",
    "protocol2_lines",
    "prediction_lines",
    "summary_text",
    "fmt_duration",
    "read_timings",
]


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


def _signed(x: float) -> str:
    """A difference of steps, always signed (never ``-0.0``) so it cannot be read as a step."""
    return f"{round(float(x), 1) + 0.0:+.1f}"


def table1_text(a: Mapping[str, np.ndarray]) -> str:
    """Table 1 (τ_spec with its 95 % CI, τ_g, τ_l, Δτ = τ_l − τ_g of eq. 73) from protocol1 arrays."""
    t = np.asarray(a["t_int"], dtype=np.float64)
    first, last = float(t.min()), float(t.max())
    rows = [("g", "tau_spec [95% CI]", "tau_g", "tau_l", "delta_tau [paired 95% CI]")]
    dci = np.asarray(a.get("delta_tau_ci", np.full((len(a["g"]), 2), np.nan)), dtype=np.float64)
    for i, g in enumerate(a["g"]):
        rows.append(
            (
                f"{g:.2f}",
                f"{fmt_step(a['tau_spec'][i], first, last)} {fmt_interval(a['tau_spec_ci'][i], first, last)}",
                fmt_step(a["tau_g"][i], first, last),
                fmt_step(a["tau_l"][i], first, last),
                "n/a"
                if not np.isfinite(a["delta_tau"][i])
                else _signed(a["delta_tau"][i])
                + (f" [{_signed(dci[i, 0])}, {_signed(dci[i, 1])}]" if np.isfinite(dci[i]).all() else ""),
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
    """Where the internal gap lives in depth, and how it varies with ρ(g) (eq. 66), from Protocol II: a
    measurement; the collapse verdict is :func:`prediction_lines`'."""
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
        n = int(np.isfinite(deep).sum())
        lines.append(
            f"  corr(rho, {deep_name}) = {verdict[0]:+.2f} over {n} couplings (eq. 66 expects > 0; the "
            "collapse verdict is below)"
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
    learned = np.asarray(a.get("learned", np.ones(len(names), bool)), dtype=bool)
    if "gap_meas" in a and learned.sum() < 2:
        out.append("the measured gap is undefined at every g: fewer than two learned directions")
    elif "gap_meas" in a:
        g = np.asarray(a["g"], dtype=np.float64)
        undefined = g[~np.isfinite(np.asarray(a["gap_meas"], dtype=np.float64))]
        if undefined.size:
            out.append(
                "the measured gap is undefined (only one of its directions splits) at g = "
                + ", ".join(f"{x:g}" for x in undefined)
            )
    return out


def _compare_lines(meta: Mapping, a: Mapping[str, np.ndarray]) -> list[str]:
    cfg = meta.get("config", {})
    tau_lines = summary_lines(dict(meta), dict(a))
    cut = next((i for i, ln in enumerate(tau_lines) if ln.startswith("Section 2.7")), len(tau_lines))
    lines = [
        f"Comparison (compare.npz, its own runs: clone splits at every g, M = {cfg.get('clone_seeds', '?')} "
        f"pairs per split step; its gap is tau(most local) - tau(most global) in steps, not Protocol II's "
        "G_int above)",
        *tau_lines[:cut],  # the §2.7 verdicts are printed once, by prediction_lines
    ]
    degenerate = degenerate_predictions(a)
    if degenerate:
        lines += ["  degenerate predictions:", *(f"    - {d}" for d in degenerate)]
    return lines


def prediction_lines(
    compare: Mapping[str, np.ndarray] | None,
    depth: Mapping[str, np.ndarray] | None,
    p2_corr: tuple[float, int] | None,
    smoke: bool = False,
) -> list[str]:
    """§2.7's four predictions, one verdict each, with the statistic and the paired 95% interval that
    decide it, in its units, and the reason (:func:`dit_validation.verdicts.decisions`). Protocol II's
    corr(ρ, internal gap) (``p2_corr``: r and the number of couplings) is shown beside the collapse verdict
    as a measurement of a different gap, not as a second verdict."""
    head = "Section 2.7 predictions, one verdict each (holds / FAILS only where a paired 95% CI decides it)"
    lines = [head + (" -- smoke grid: too few samples, these decide nothing" if smoke else "") + ":"]
    for d in decisions(None if compare is None else dict(compare), None if depth is None else dict(depth)):
        lines.append(f"  {d.name:<20} {verdict_text(d.verdict):<9} {decision_text(d)}")
        lines.append(f"  {'':<20} {d.reason}")
    if p2_corr is not None:
        r, n = p2_corr
        why = "a sign, not a test" if n < 5 else "not a test: no interval"
        lines.append(
            f"  {'':<20} beside collapse: Protocol II's internal gap, corr(rho, |G_int - 1| deep) = "
            f"{r:+.2f} over {n} couplings ({why})"
        )
    return lines


def _plan_grid(path: Path) -> str:
    try:
        return f" ({json.loads(path.read_text())['grid']} grid)"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def read_timings(path: Path) -> dict[str, dict]:
    """``timings.json`` of a run: per stage ``{"wall_s", "image_forwards", "image_forwards_by_dtype"}``.

    A file written before image-forwards were counted holds bare seconds per stage: read as that wall time
    with 0 counted forwards (their count is unknown, never invented). Unreadable entries are dropped.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    out: dict[str, dict] = {}
    for stage, v in data.items() if isinstance(data, dict) else ():
        try:
            if isinstance(v, dict):
                by_dtype = {str(k): int(n) for k, n in dict(v.get("image_forwards_by_dtype", {})).items()}
                out[str(stage)] = {
                    "wall_s": float(v["wall_s"]),
                    "image_forwards": int(v.get("image_forwards", sum(by_dtype.values()))),
                    "image_forwards_by_dtype": by_dtype,
                }
            else:
                out[str(stage)] = {"wall_s": float(v), "image_forwards": 0, "image_forwards_by_dtype": {}}
        except (KeyError, TypeError, ValueError):
            continue
    return out


def _written(files: Mapping[str, Path]) -> list[str]:
    """Every file of the run directory the run wrote (stage files, reports, plan, timings, summary)."""
    out = next((p.parent for k, p in files.items() if k in ("protocol1", "protocol2", "compare")), None)
    names = [files[k] for k in ("theory", "protocol1", "protocol2", "compare", "depth") if files.get(k)]
    if out is not None:
        names += [out / "compare.md", out / "reproduce.json", out / "timings.json"]
    if files.get("summary"):
        names.append(files["summary"])  # being written with this text
    return [str(p) for p in names if p.is_file() or p == files.get("summary")]


def summary_text(files: Mapping[str, Path]) -> str:
    """One screen from the files of a run: header with run time, Protocol I, Protocol II, compare, the §2.7
    verdicts, every file written."""
    lines: list[str] = []
    p2_corr: tuple[float, int] | None = None
    compare = depth = None
    out = next((p.parent for k, p in files.items() if k in ("protocol1", "protocol2", "compare")), None)
    timing = read_timings(out / "timings.json") if out is not None else {}
    grid = _plan_grid(out / "reproduce.json") if out is not None else ""
    smoke = grid == " (smoke grid)"
    if files.get("protocol1") and files["protocol1"].is_file():
        meta, a = load_result(files["protocol1"])
        if meta["complete"]:
            cfg = meta["config"]
            lines += [
                f"synchrogap reproduce: {cfg.get('model', '?')}{grid}, {cfg.get('num_steps')} DDIM steps, "
                f"M = {len(meta.get('seeds', []))} seeds",
            ]
            if smoke:
                lines.append(
                    "smoke grid: a demo that every stage runs and every figure draws; far too few samples "
                    "for any number below to decide anything"
                )
            lines += ["", *_protocol1_lines(meta, a)]
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
            p2_corr = None if verdict is None else (verdict[0], int(np.isfinite(deep).sum()))
    if files.get("compare") and files["compare"].is_file():
        meta, c = load_result(files["compare"], kind="compare")
        if meta["complete"]:
            lines += ["", *_compare_lines(meta, c)]
            compare = c
    if files.get("depth") and files["depth"].is_file():
        meta, d = load_result(files["depth"], kind="depth")
        if meta["complete"]:
            depth = d
    if compare is not None or depth is not None:
        lines += ["", *prediction_lines(compare, depth, p2_corr, smoke)]
    if timing:
        total = sum(v["wall_s"] for v in timing.values())
        parts = ", ".join(f"{k} {fmt_duration(v['wall_s'])}" for k, v in timing.items())
        lines += ["", f"run time: {fmt_duration(total)} of computation ({parts})"]
        counted = {k: v["image_forwards"] for k, v in timing.items() if v["image_forwards"]}
        if counted:
            parts = ", ".join(f"{k} {n:,}" for k, n in counted.items())
            lines.append(f"image-forwards: {sum(counted.values()):,} ({parts})")
    results = _written(files)
    if results:
        lines.append("results: " + ", ".join(results))
    if files.get("figures"):
        fig_dir = Path(files["figures"])
        n = sum(1 for p in fig_dir.iterdir() if p.is_file()) if fig_dir.is_dir() else 0
        lines.append(f"figures and tables: {fig_dir} ({n} files, listed in its manifest.json)")
    return "\n".join(lines)

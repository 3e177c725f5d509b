"""Predicted vs measured speciation along branch directions, and the gap against ρ(g).

Reads a ``compare`` result file (``dit_validation.schema``, kind "compare"). Writes:

* ``fig_factor_tau``: per branch direction (global → local), one panel per coupling g: the measured
  speciation step ``tau_meas`` with its 95 % CI (clone splits), beside the three predictions — the
  step-level sign change ``tau_pred_step``, Biroli's ``tau_pred_biroli`` and the per-block eq. (50) in the
  last block ``tau_pred_block`` — and, for the exact-score mixture, the exact κ_f = 1 step. A direction
  whose clones never split, or a prediction that never crosses / is undefined, is written as text on the
  panel instead of a point;
* ``fig_curvature``: the learned curvature H_f(s; g) at symmetric points (``H_step``) against the step,
  with the exact-score curvature ``H_exact`` where known; its zero is the step-level prediction;
* ``fig_factor_agreement``: clone agreement vs split step per direction at g = 0, a bounded sigmoid drawn
  through it and τ_meas with its CI;
* ``fig_gap_vs_rho``: the gap Δ = τ_trail − τ_lead (eq. 65) against ρ(g) (eq. 27): measured with CI and
  its fitted line, and the step-level prediction — the collapse of eq. (66).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np

from . import _style

__all__ = ["render"]

_PRED = (
    ("tau_pred_step", "step-level (H sign change)", "D", "theory"),
    ("tau_pred_biroli", "Biroli ᾱ = 1/Λ", "s", "exact"),
    ("tau_pred_block", "per-block eq. (50), last block", "^", "fit"),
)


def _pred(a: dict[str, np.ndarray], key: str, i: int) -> np.ndarray:
    if key == "tau_pred_biroli":
        return np.asarray(a[key], dtype=np.float64)
    if key == "tau_pred_block":
        return np.asarray(a[key][i, -1], dtype=np.float64)
    return np.asarray(a[key][i], dtype=np.float64)


def _factor_tau(a: dict[str, np.ndarray], model: str, out_dir: Path) -> list[Path]:
    names = [str(n) for n in a["factor_names"]]
    F = len(names)
    x = np.arange(F, dtype=np.float64)
    g = np.asarray(a["g"], dtype=np.float64)
    fig, axes = _style.subplots(g.size, ncols=min(g.size, 2), panel=(4.6, 4.2))
    S = int(a["steps"].size)
    for i, ax in enumerate(axes):
        notes = []
        tau, ci, split = a["tau_meas"][i], a["tau_meas_ci"][i], a["splits"][i]
        ok = split & np.isfinite(tau)
        err = np.abs(np.stack([tau - ci[:, 0], ci[:, 1] - tau]))
        if ok.any():  # a legend entry only for a drawn mark
            ax.errorbar(
                x[ok],
                tau[ok],
                yerr=np.nan_to_num(err[:, ok]),
                fmt="o",
                capsize=3,
                color=_style.COLORS["dit"],
                label="measured (clone splits)",
                zorder=3,
            )
        learned = np.asarray(a["learned"], dtype=bool) if "learned" in a else np.ones(F, bool)
        if (~learned).any():
            notes.append("not learned (gate): " + ", ".join(names[f] for f in np.flatnonzero(~learned)))
        if (~split & learned).any():
            never = np.flatnonzero(~split & learned)
            notes.append("clones never split: " + ", ".join(names[f] for f in never))
        for k, (key, label, marker, color) in enumerate(_PRED):
            y = _pred(a, key, i)
            fin = np.isfinite(y)
            if fin.any():
                xs = x[fin] + 0.08 * (k + 1)  # dodged so predictions beside one direction never overlap
                ax.plot(xs, y[fin], marker, ls="none", color=_style.COLORS[color], label=label)
            short = label.split(" (")[0].split(" eq.")[0]
            for what, sel in (("never crosses", y == np.inf), ("undefined", np.isnan(y))):
                sel = sel & learned  # an unlearned direction has no prediction to list
                if sel.any():
                    notes.append(f"{short} {what}: " + ", ".join(names[f] for f in np.flatnonzero(sel)))
        if "tau_exact_kappa" in a and g[i] == 0.0:
            ax.plot(x - 0.08, a["tau_exact_kappa"], "_", ms=14, mew=2, color="k", label="exact κ_f = 1")
        ax.set_xticks(x, names, rotation=20)
        ax.set_xlim(-0.4, F - 0.6)  # the same for every panel, whatever it draws
        ax.set_ylim(-1, S + 1)
        ax.set_ylabel("speciation step (0 = pure noise)")
        ax.set_title(f"g = {g[i]:g}")
        if notes:  # below the panel, never over a point
            ax.text(0.0, -0.22, "\n".join(notes), transform=ax.transAxes, va="top", fontsize=6)
    seen: dict[str, object] = {}  # one legend for every panel: the marks any panel draws, each once
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if seen:
        axes[0].legend(list(seen.values()), list(seen), loc="lower right", fontsize=6.5)
    fig.suptitle(f"{model}: predicted vs measured speciation step per branch direction")
    return _style.save(fig, out_dir, "fig_factor_tau")


def _curvature(a: dict[str, np.ndarray], model: str, out_dir: Path) -> list[Path]:
    names = [str(n) for n in a["factor_names"]]
    steps = np.asarray(a["steps"], dtype=np.float64)
    g = np.asarray(a["g"], dtype=np.float64)
    fig, axes = _style.subplots(len(names), ncols=min(len(names), 2), panel=(4.4, 3.0))
    cmap = mpl.colormaps["viridis"]
    for f, ax in enumerate(axes):
        for i in range(g.size):
            H = a["H_step"][i, :, f]
            c = cmap(i / max(g.size - 1, 1))
            ax.plot(steps, np.arcsinh(H), "-", color=c, label=f"DiT g = {g[i]:g}")
            if np.isfinite(a["tau_pred_step"][i, f]):
                ax.axvline(a["tau_pred_step"][i, f], color=c, lw=0.7, ls=":")
        if "H_exact" in a:
            ax.plot(steps, np.arcsinh(a["H_exact"][:, f]), "k--", lw=1, label="exact score, g = 0")
        ax.axhline(0.0, color="0.5", lw=0.8)
        ax.set_xlabel("sampling step s")
        ax.set_ylabel(r"asinh $H_f(s; g)$")
        ax.set_title(f"direction {names[f]}")
    axes[0].legend(fontsize=6.5, loc="lower left")
    fig.suptitle(f"{model}: learned curvature at symmetric points; its zero is the predicted step (eq. 51)")
    return _style.save(fig, out_dir, "fig_curvature")


def _agreement(a: dict[str, np.ndarray], model: str, out_dir: Path) -> list[Path]:
    names = [str(n) for n in a["factor_names"]]
    t = np.asarray(a["t_int"], dtype=np.float64)
    t_fine = np.linspace(t.min(), t.max(), 200)
    i0 = int(np.argmin(np.abs(a["g"])))
    fig, axes = _style.subplots(len(names), ncols=min(len(names), 2), panel=(3.8, 2.8))
    for f, ax in enumerate(axes):
        ax.plot(t, a["agree"][i0, f].mean(-1), "o", color=_style.COLORS["dit"], label=f"DiT ({model})")
        if np.all(np.isfinite(a["fit_meas"][i0, f])):
            ax.plot(t_fine, _style.fit_curve(t_fine, a["fit_meas"][i0, f]), "-", color=_style.COLORS["dit"])
        tau, tau_ci = float(a["tau_meas"][i0, f]), np.asarray(a["tau_meas_ci"][i0, f], dtype=np.float64)
        if np.isfinite(tau):  # the estimate itself: the mean commitment step, not the drawn sigmoid's centre
            ax.axvline(tau, color=_style.COLORS["dit"], lw=0.9, ls="--", label="τ_meas, 95% CI")
            if np.isfinite(tau_ci).all():
                ax.axvspan(*tau_ci, color=_style.COLORS["dit"], alpha=0.12, lw=0)
        if "agree_exact" in a:
            ax.plot(
                t,
                a["agree_exact"][f].mean(-1),
                "s",
                ms=3,
                color=_style.COLORS["exact"],
                label="exact sampler",
            )
            ax.plot(
                t, a["agree_theory"][f], "-", lw=1, color=_style.COLORS["theory"], label="exact, closed form"
            )
        shown = [a["agree"][i0, f].mean(-1), *([a["agree_exact"][f].mean(-1)] if "agree_exact" in a else [])]
        low = min((float(np.nanmin(y)) for y in shown if np.isfinite(y).any()), default=0.3)
        ax.set_ylim(min(0.3, low - 0.05), 1.05)  # never a point below the frame
        ax.set_xlabel("split step")
        ax.set_ylabel("clone agreement")
        learned = bool(np.asarray(a["learned"])[f]) if "learned" in a else True
        ax.set_title(f"{names[f]} (g = 0)" + ("" if learned else ": not learned, no τ"))
    axes[0].legend(fontsize=6.5, loc="lower right")
    fig.suptitle(
        f"{model}: clone agreement against the split step at g = 0\n"
        "(a bounded sigmoid drawn through it; τ_meas = the mean commitment step)"
    )
    return _style.save(fig, out_dir, "fig_factor_agreement")


def _gs(g: np.ndarray) -> str:
    return ", ".join(f"{x:g}" for x in g)


def _gap(a: dict[str, np.ndarray], model: str, out_dir: Path) -> list[Path]:
    rho = np.asarray(a["rho"], dtype=np.float64)
    fig, (ax,) = _style.subplots(1, panel=(5.2, 3.6))
    gm, ci = np.asarray(a["gap_meas"]), np.asarray(a["gap_meas_ci"])
    lead, trail = int(a["gap_lead"][0]), int(a["gap_trail"][0])
    split = np.asarray(a["splits"], dtype=bool)
    ok = np.isfinite(gm) & split[:, lead] & split[:, trail]
    learned = np.asarray(a["learned"], dtype=bool) if "learned" in a else np.ones(split.shape[1], bool)
    neither = ~split[:, lead] & ~split[:, trail] & learned[lead] & learned[trail]
    if neither.any():  # Δ = 0 by convention, not a measurement: drawn apart and outside the fit
        ax.plot(
            rho[neither],
            np.zeros(int(neither.sum())),
            "o",
            mfc="none",
            color="0.5",
            label="neither direction splits (Δ = 0 by convention)",
        )
    if ok.any():
        err = np.abs(np.stack([gm - ci[:, 0], ci[:, 1] - gm]))
        ax.errorbar(
            rho[ok],
            gm[ok],
            yerr=np.nan_to_num(err[:, ok]),
            fmt="o",
            capsize=3,
            color=_style.COLORS["dit"],
            label="measured Δ (clone splits)",
        )
        s, c, r2 = a["gap_fit_meas"]
        if np.isfinite(s):
            r = np.linspace(0, 1, 50)
            lo, hi = a["gap_slope_ci"]
            ax.plot(
                r,
                s * r + c,
                "-",
                color=_style.COLORS["fit"],
                label=f"fit through split points {s:.1f}ρ {c:+.1f} (slope CI [{lo:.1f}, {hi:.1f}])",
            )
    else:
        ax.text(
            0.5,
            0.6,
            "no measured gap: fewer than two directions split",
            ha="center",
            transform=ax.transAxes,
            fontsize=8,
        )
    gp = np.asarray(a["gap_pred_step"])
    fin = np.isfinite(gp)
    notes: list[str] = []
    # hollow and dodged right by 0.02 in ρ: a prediction equal to the measurement stays visible beside it
    if fin.any():
        ax.plot(
            rho[fin] + 0.02,
            gp[fin],
            "D",
            mfc="none",
            mew=1.4,
            ms=7,
            zorder=4,
            color=_style.COLORS["theory"],
            label="step-level predicted Δ (drawn 0.02 right of its ρ)",
        )
    gs = np.asarray(a["g"], dtype=np.float64)
    if (~fin).any():
        notes.append("step-level Δ undefined (a direction never crosses) at g = " + _gs(gs[~fin]))
    if ok.any() and (~ok).any():
        notes.append("measured Δ undefined (a direction never splits) at g = " + _gs(gs[~ok]))
    ax.axhline(0, color="0.5", lw=0.8)
    lead, trail = int(a["gap_lead"][0]), int(a["gap_trail"][0])
    names = [str(n) for n in a["factor_names"]]
    ax.set_xlabel(r"$\rho(g) = (1-g)/(1+g)$, eq. (27)")
    ax.set_ylabel(f"Δ = τ({names[trail]}) − τ({names[lead]}), steps")
    title = f"{model}: the gap against the routing gate (eq. 65–66)"
    if notes:  # in the title: text inside the axes would sit on points or on the zero line
        title += "\n" + "\n".join(notes)
    ax.set_title(title, fontsize=8 if notes else None)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6.5, loc="upper left")
    return _style.save(fig, out_dir, "fig_gap_vs_rho")


@_style.styled
def render(result_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Render every predicted-vs-measured figure from a compare result file."""
    meta, a = _style.load(result_path, kind="compare")
    model = _style.model_name(meta)
    out = Path(out_dir)
    return [
        *_factor_tau(a, model, out),
        *_curvature(a, model, out),
        *_agreement(a, model, out),
        *_gap(a, model, out),
    ]


if __name__ == "__main__":
    raise SystemExit(_style.main_for(render, __doc__.splitlines()[0]))

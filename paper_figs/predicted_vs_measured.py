"""Predicted vs measured: theory vs exact-score sampler vs DiT, gap collapse vs ρ(g), mode ordering.

Reads a ``compare`` result file (docs/DESIGN.md, "compare arrays"). Writes up to four figures, each
only when its arrays are present (per-factor speciation exists for mixture testbeds only):

* ``fig_factor_tau``: per-factor speciation step (global → local factor) — exact κ_f = 1 step
  ``tau_kappa``, closed-form clone midpoint ``tau_theory``, exact-score sampler ``tau_exact`` and the
  DiT ``tau_dit`` with 95 % bootstrap CIs;
* ``fig_factor_agreement``: clone agreement vs split step per factor (``agree_theory``,
  ``agree_exact``, ``agree_dit`` and the stored sigmoid fits);
* ``fig_gap_vs_rho``: at the deepest layer against ρ(g) (eq. 27), the predicted gap Δs_v in steps
  (``gap_pred``, eq. 65) and the measured internal gap G_int − 1 (``gap_meas``, eq. 80), each with its
  stored linear fit ``gap_fit_pred``/``gap_fit_meas`` — the collapse of eq. (66);
* ``fig_mode_ordering``: predicted and measured per-mode speciation steps (``s_spec_pred``,
  ``s_spec_meas``) at the last layer against the mode index, coloured by g, "never" (∞) drawn on its
  own row, with the median Spearman ρ_s of ``spearman``;
and ``predictions.md``, the §2.7 checklist (``prediction_names``/``_holds``/``_margin``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np

from . import _style

__all__ = ["render"]


def _factor_tau(a: dict[str, np.ndarray], model: str, out_dir: Path) -> list[Path]:
    factor = np.asarray(a["factor"], dtype=np.float64)
    fig, (ax,) = _style.subplots(1, panel=(5.6, 3.8))
    ax.plot(factor, a["tau_kappa"], "D-", color=_style.COLORS["theory"], label="theory: exact κ_f = 1")
    if "tau_theory" in a:
        ax.plot(
            factor,
            a["tau_theory"],
            "s--",
            color=_style.COLORS["theory"],
            alpha=0.6,
            label="theory: clone midpoint",
        )
    for key, color, label in (("exact", "exact", "exact-score sampler"), ("dit", "dit", f"DiT ({model})")):
        if f"tau_{key}" not in a:
            continue
        tau = np.asarray(a[f"tau_{key}"], dtype=np.float64)
        ci = np.asarray(a.get(f"tau_{key}_ci", np.stack([tau, tau], axis=1)), dtype=np.float64)
        err = np.abs(np.stack([tau - ci[:, 0], ci[:, 1] - tau]))
        ax.errorbar(
            factor, tau, yerr=np.nan_to_num(err), fmt="o", capsize=3, color=_style.COLORS[color], label=label
        )
    ax.set_xlabel("mixture factor f (0 = most global)")
    ax.set_ylabel("speciation step (sampling steps)")
    ax.set_xticks(factor)
    ax.set_title(f"{model}: per-factor speciation step (g = 0)")
    ax.legend(loc="best")
    return _style.save(fig, out_dir, "fig_factor_tau")


def _factor_agreement(a: dict[str, np.ndarray], model: str, out_dir: Path) -> list[Path]:
    t_int = np.asarray(a["t_int"], dtype=np.float64)
    t_fine = np.linspace(float(t_int.min()), float(t_int.max()), 300)
    n_f = int(np.asarray(a["factor"]).size)
    fig, axes = _style.subplots(n_f, ncols=3, panel=(3.6, 2.7))
    for f, ax in enumerate(axes):
        if "agree_theory" in a:
            ax.plot(
                t_int, a["agree_theory"][f], "-", color=_style.COLORS["theory"], label="theory (closed form)"
            )
        for key in ("exact", "dit"):
            if f"agree_{key}" in a:
                ax.plot(
                    t_int,
                    a[f"agree_{key}"][f],
                    "o",
                    ms=3,
                    color=_style.COLORS[key],
                    label="exact score" if key == "exact" else "DiT",
                )
            if f"fit_{key}" in a and np.all(np.isfinite(a[f"fit_{key}"][f])):
                ax.plot(
                    t_fine, _style.fit_curve(t_fine, a[f"fit_{key}"][f]), "--", color=_style.COLORS[key], lw=1
                )
        ax.axvline(float(a["tau_kappa"][f]), color="0.4", ls=":", lw=1, label="exact κ_f = 1")
        ax.set_xlabel("split step (sampling steps shared)")
        ax.set_ylabel("sign agreement of factor")
        ax.set_title(f"factor f = {int(a['factor'][f])}")
        if f == 0:
            ax.legend(loc="best")
    fig.suptitle(f"{model}: clone agreement per factor (g = 0 shared-noise split)")
    return _style.save(fig, out_dir, "fig_factor_agreement")


def _gap_vs_rho(a: dict[str, np.ndarray], model: str, out_dir: Path) -> list[Path]:
    """Left: predicted Δs_v (steps, eq. 65); right: measured G_int − 1 (eq. 80); both vs ρ(g), last layer."""
    rho = np.asarray(a["rho"], dtype=np.float64)
    layers = np.asarray(a["layers"])
    fig, axes = _style.subplots(2, ncols=2, panel=(4.6, 3.5))
    r_line = np.linspace(0.0, 1.0, 50)
    panels = (
        ("pred", "theory", "predicted (κ = 1 crossings)", r"predicted gap $\Delta s_v$ (steps), eq. (65)"),
        ("meas", "dit", "measured (Protocol II energies)", r"measured $\mathcal{G}_{int} - 1$, eq. (80)"),
    )
    for ax, (key, color, name, ylabel) in zip(axes, panels, strict=True):
        if f"gap_{key}" in a:
            gap = np.asarray(a[f"gap_{key}"], dtype=np.float64)[
                :, -1
            ]  # deepest layer, where the paper sees the gap
            ax.plot(rho, gap, "o", color=_style.COLORS[color], label=f"{name}, layer {int(layers[-1])}")
            if f"gap_fit_{key}" in a:
                slope, intercept, r2 = (float(x) for x in a[f"gap_fit_{key}"][-1])
                if np.isfinite(slope):
                    r2_txt = f"{r2:.2f}" if np.isfinite(r2) else "n/a"
                    ax.plot(
                        r_line,
                        slope * r_line + intercept,
                        "--",
                        color=_style.COLORS[color],
                        label=f"fit: {slope:.3g} ρ + {intercept:.3g} (R² = {r2_txt})",
                    )
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_xlabel(r"$\rho(g) = (1-g)/(1+g)$, eq. (27)  (g = 1 at left)")
        ax.set_ylabel(ylabel)
        ax.legend(loc="best")
    fig.suptitle(f"{model}: the gap against the routing gate; eq. (66) predicts it vanishes as ρ(g) → 0")
    return _style.save(fig, out_dir, "fig_gap_vs_rho")


def _mode_ordering(a: dict[str, np.ndarray], model: str, out_dir: Path) -> list[Path]:
    """Predicted and measured per-mode speciation steps at the last layer, modes in eq. (42) order.

    Modes that never speciate (s = ∞) sit on a marked "never" row above the step axis, so a model
    where one side never crosses still shows every value instead of an empty scatter.
    """
    pred = np.asarray(a["s_spec_pred"], dtype=np.float64)[:, -1, :]  # (G, K) at the last layer
    meas = np.asarray(a["s_spec_meas"], dtype=np.float64)[:, -1, :]
    g = np.asarray(a["g"], dtype=np.float64)
    k = np.arange(pred.shape[-1])
    finite = np.concatenate([pred[np.isfinite(pred)], meas[np.isfinite(meas)]])
    top = float(np.max(a["steps"])) if "steps" in a else (float(finite.max()) if finite.size else 1.0)
    never = 1.1 * max(top, 1.0)
    fig, (ax,) = _style.subplots(1, panel=(5.6, 4.0))
    cmap = mpl.colormaps["viridis"]
    for i, gi in enumerate(g):
        color = cmap(gi)
        ax.plot(
            k,
            np.where(np.isfinite(pred[i]), pred[i], never),
            "x--",
            color=color,
            lw=0.8,
            ms=5,
            label="predicted, eq. (51)" if i == 0 else None,
        )
        ax.plot(
            k + 0.08,
            np.where(np.isfinite(meas[i]), meas[i], never),
            "o",
            color=color,
            ms=4,
            mfc="none",
            label="measured, Protocol II energies" if i == 0 else None,
        )
    ax.axhline(never, color="0.5", ls=":", lw=1, label="never speciates (s = ∞)")
    rank = np.asarray(a.get("spearman", np.array([np.nan])), dtype=np.float64)
    rank_txt = f"{np.nanmedian(rank):.2f}" if np.any(np.isfinite(rank)) else "n/a"
    ax.set_xlabel("mode k (0 = largest initial variance, eq. 42)")
    ax.set_ylabel(r"speciation step $s_{spec}^{(k)}$ at the last layer")
    ax.set_xticks(k)
    ax.set_title(f"{model}: mode ordering; median Spearman = {rank_txt}")
    ax.legend(loc="best")
    fig.colorbar(
        mpl.cm.ScalarMappable(cmap=cmap, norm=mpl.colors.Normalize(0.0, 1.0)), ax=ax, label="coupling g"
    )
    return _style.save(fig, out_dir, "fig_mode_ordering")


def _predictions_md(a: dict[str, np.ndarray], model: str, out_dir: Path) -> list[Path]:
    path = out_dir / "predictions.md"
    lines = [f"§2.7 predictions on {model}", "", "| prediction | holds | margin |", "| --- | --- | --- |"]
    for name, holds, margin in zip(
        a["prediction_names"], a["prediction_holds"], a["prediction_margin"], strict=True
    ):
        lines.append(f"| {name} | {'yes' if bool(holds) else 'no'} | {float(margin):.3g} |")
    path.write_text("\n".join(lines) + "\n")
    return [path]


@_style.styled
def render(result_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Render every predicted-vs-measured figure whose arrays the compare file holds."""
    meta, a = _style.load(result_path)
    model = _style.model_name(meta)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    if "tau_kappa" in a and "factor" in a:
        paths += _factor_tau(a, model, out)
        if "t_int" in a:
            paths += _factor_agreement(a, model, out)
    if ("gap_pred" in a or "gap_meas" in a) and "rho" in a:
        paths += _gap_vs_rho(a, model, out)
    if "s_spec_pred" in a and "s_spec_meas" in a:
        paths += _mode_ordering(a, model, out)
    if "prediction_names" in a:
        paths += _predictions_md(a, model, out)
    return paths


if __name__ == "__main__":
    raise SystemExit(_style.main_for(render, __doc__.splitlines()[0]))

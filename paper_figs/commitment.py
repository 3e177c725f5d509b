"""Figs. 6–8: global (d_low) and local (d_high) commitment curves with τ_g and τ_l (Protocol I).

Reads a ``protocol1`` result file: ``commit_low``, ``commit_high`` (G, T) — commitment score
1 − median d / median d at t_int = 0 of eq. (71) and (72) — with sigmoid parameters ``fit_low``,
``fit_high`` (G, 4), 50 % times ``tau_g``, ``tau_l`` (G,) and the output-space gap
Δτ = τ_l − τ_g of eq. (73) (``delta_tau``, recomputed here only if absent).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dit_validation.summary import fmt_step

from . import _style

__all__ = ["render"]


@_style.styled
def render(result_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Render Figs. 6–8 (one panel per g) from a protocol1 result file."""
    meta, a = _style.load(result_path)
    model = _style.model_name(meta)
    t_int = np.asarray(a["t_int"], dtype=np.float64)
    g = np.asarray(a["g"], dtype=np.float64)
    tau_g = np.asarray(a["tau_g"], dtype=np.float64)
    tau_l = np.asarray(a["tau_l"], dtype=np.float64)
    delta = np.asarray(a["delta_tau"], dtype=np.float64) if "delta_tau" in a else tau_l - tau_g  # eq. (73)
    first, last = float(t_int.min()), float(t_int.max())
    t_fine = np.linspace(first, last, 400)
    fig, axes = _style.subplots(g.size, ncols=3, panel=(3.8, 2.9))
    for i, ax in enumerate(axes):
        for key, tau, name, eq in (("low", tau_g[i], "global", 71), ("high", tau_l[i], "local", 72)):
            color = _style.COLORS[key]
            ax.plot(
                t_int,
                a[f"commit_{key}"][i],
                "o",
                ms=3,
                color=color,
                label=f"{name}: $d_{{{key}}}$, eq. ({eq})",
            )
            fit = np.asarray(a[f"fit_{key}"][i], dtype=np.float64)
            if np.all(np.isfinite(fit)):
                ax.plot(t_fine, _style.fit_curve(t_fine, fit), "-", color=color, alpha=0.8)
            sym = "g" if key == "low" else "l"
            if np.isfinite(tau) and first <= tau <= last:
                ax.axvline(tau, color=color, ls="--", lw=1, label=f"τ_{sym} = {tau:.1f}")
            elif np.isfinite(tau):  # outside the sampled steps: named, not drawn (the axis stays on the grid)
                ax.plot([], [], ls="none", label=f"τ_{sym} {fmt_step(tau, first, last)}")
        ax.set_xlim(first - 0.02 * (last - first), last + 0.02 * (last - first))
        ax.set_xlabel(r"intervention step $t_{int}$ (sampling steps coupled)")
        ax.set_ylabel("commitment score")
        gap = f"{delta[i]:.1f}" if np.isfinite(delta[i]) else "n/a"
        ax.set_title(f"g = {g[i]:g}, Δτ = {gap} steps")
        ax.legend(loc="best", fontsize=6.5)  # tau values differ per panel, so every panel keeps its legend
    fig.suptitle(f"{model}: scale-dependent commitment, global before local (Figs. 6–8, eq. 73)")
    return _style.save(fig, out_dir, "fig_commitment")


if __name__ == "__main__":
    raise SystemExit(_style.main_for(render, __doc__.splitlines()[0]))

"""Collapse of the internal gap: G_int − 1 in the deepest layers against ρ(g) (eq. 80 vs eq. 27, 66).

Reads a ``protocol2`` result file: ``G_int`` (G, L) = λ̄_trail/λ̄_lead at s = τ_spec(g) (eq. 80),
``g`` (G,), ``layers`` (L,). The paper finds the gap in the final ≈ 5 blocks (§4.2) and predicts its
routing part to vanish as ρ(g) = (1 − g)/(1 + g) → 0 (eq. 66); the figure draws G_int − 1 averaged
over the deepest ``round(5 L / 28)`` layers (and each of those layers faintly) against ρ(g), with a
least-squares line drawn only as a visual guide (its slope and R² are printed in the legend).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from dit_validation.analysis import deep_layer_count
from theory import rho as rho_gate

from . import _style

__all__ = ["render"]


@_style.styled
def render(result_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Render ``fig_gint_vs_rho`` from a protocol2 result file (needs ``G_int``)."""
    meta, a = _style.load(result_path)
    if "G_int" not in a:
        return []
    model = _style.model_name(meta)
    g = np.asarray(a["g"], dtype=np.float64)
    rho = np.atleast_1d(rho_gate(g))  # eq. (27)
    gint = np.asarray(a["G_int"], dtype=np.float64) - 1.0  # (G, L)
    layers = np.asarray(a["layers"])
    n_deep = deep_layer_count(layers.size)
    deep = gint[:, -n_deep:]
    fig, (ax,) = _style.subplots(1, panel=(5.2, 3.6))
    for j in range(n_deep if n_deep > 1 else 0):  # one deep layer: the mean is that layer
        ax.plot(rho, deep[:, j], ".-", color="0.75", lw=0.8, label="single deep layer" if j == 0 else None)
    with warnings.catch_warnings():  # a g whose τ_spec was not found has an all-NaN row: NaN, no warning
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(deep, axis=1)
    ax.plot(
        rho,
        mean,
        "o",
        color=_style.COLORS["trail"],
        label=f"mean of last {n_deep} layer{'s' if n_deep > 1 else ''}",
    )
    ok = np.isfinite(mean)
    if ok.sum() >= 2:
        slope, intercept = np.polyfit(rho[ok], mean[ok], 1)
        resid = mean[ok] - (slope * rho[ok] + intercept)
        var = float(np.var(mean[ok]))
        r2 = 1.0 - float(np.var(resid)) / var if var > 0 else float("nan")
        r_line = np.linspace(0.0, 1.0, 50)
        ax.plot(
            r_line,
            slope * r_line + intercept,
            "--",
            color=_style.COLORS["fit"],
            label=f"guide: {slope:.2g} ρ + {intercept:.2g} (R² = {r2:.2f})",
        )
    ax.axhline(0.0, color="0.5", lw=0.8)
    for gi, ri, mi in zip(g, rho, mean, strict=True):
        ax.annotate(f"g={gi:g}", (ri, mi), textcoords="offset points", xytext=(3, 3), fontsize=6.5)
    ax.set_xlabel(r"$\rho(g) = (1-g)/(1+g)$, eq. (27)")
    ax.set_ylabel(r"$\mathcal{G}_{int} - 1$ at $s = \tau_{spec}(g)$, eq. (80)")
    ax.set_title(f"{model}: internal gap vs routing gate, eq. (66)")
    ax.legend(loc="best")
    return _style.save(fig, out_dir, "fig_gint_vs_rho")


if __name__ == "__main__":
    raise SystemExit(_style.main_for(render, __doc__.splitlines()[0]))

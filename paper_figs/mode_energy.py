"""Figs. 1, 9, 10: lead/trail normalized mode energies vs layer at s = τ_spec(g) (Protocol II).

Reads a ``protocol2`` result file: ``lead``, ``trail`` (G, L) = band means of eq. (78)–(79) of the
fixed-basis energies λ_k(s, ℓ) of eq. (75) at s = τ_spec(g) (eq. 77), their spread over seeds
``lead_std``, ``trail_std`` (G, L), ``layers`` (L,), ``g`` (G,), ``tau_spec`` (G,), ``seeds`` (M,) and the
internal gap ratio ``G_int`` = trail/lead (G, L) of eq. (80) — all on the paper's basis (built from the M
measured seeds) — and ``gint_excess``, ``gint_excess_ci`` (G, L[, 2]): G_int − 1 on Protocol II's held-out
basis with its 95% seed-bootstrap interval (``dit_validation.gint``), the calibrated internal gap.

One figure per g (Fig. 1 is g = 0; Figs. 9–10 are g = 0.1, 0.3, 0.9 in the paper): the band energies with
their standard error over the M seeds as error bars (the uncertainty of the means being compared), below them
G_int − 1 on its own axis with its zero line: held-out basis with its interval, the paper's basis dashed.
The overview ``fig_mode_energy_all`` has one energy panel per g and a last panel with the held-out
G_int − 1 of every g; a spare grid slot holds the legend.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from . import _style

__all__ = ["render"]

BAND_LABELS = {"lead": "leading band, eq. (78)", "trail": "trailing band, eq. (79)"}


def _energy_panel(ax: Axes, a: dict[str, np.ndarray], i: int, title: str) -> None:
    """Band energies (mean ± standard error over seeds) vs layer for the i-th coupling strength."""
    layers = np.asarray(a["layers"])
    n_seeds = max(1, int(np.asarray(a["seeds"]).size))
    for band, dx in (("lead", -0.06), ("trail", 0.06)):  # side by side: error bars never hide each other
        mean = np.asarray(a[band][i], dtype=np.float64)  # (L,)
        sem = np.asarray(a[f"{band}_std"][i], dtype=np.float64) / np.sqrt(n_seeds)
        ax.errorbar(
            layers + dx,
            mean,
            yerr=sem,
            fmt="o-",
            ms=3,
            lw=1.2,
            capsize=2,
            elinewidth=0.8,
            color=_style.COLORS[band],
            label=BAND_LABELS[band],
        )
    positive = np.concatenate([a["lead"][i], a["trail"][i]])
    positive = positive[np.isfinite(positive) & (positive > 0)]
    if positive.size and positive.max() / positive.min() > 50.0:  # energies spanning decades: log axis
        ax.set_yscale("log")
    ax.set_xlabel(r"transformer layer $\ell$")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are block indices
    ax.set_ylabel(r"energy $\bar\lambda(\ell; g)$, eq. (75)")
    tau = float(a["tau_spec"][i])
    tau_txt = f"{tau:.1f}" if np.isfinite(tau) else "n/a (no τ_spec)"
    ax.set_title(f"{title}g = {float(a['g'][i]):g}, at s = τ_spec = {tau_txt}")


def _gap_panel(ax: Axes, a: dict[str, np.ndarray], rows: list[int], colors: list[str] | None = None) -> None:
    """G_int(ℓ; g) − 1 (eq. 80) vs layer for the given couplings, on an axis that always shows zero: the
    held-out basis' estimate with its 95% interval; for a single g also the paper's basis, dashed."""
    layers = np.asarray(a["layers"])
    excess = np.asarray(a["gint_excess"], dtype=np.float64)[rows]  # (n, L)
    ci = np.asarray(a["gint_excess_ci"], dtype=np.float64)[rows]  # (n, L, 2)
    paper = np.asarray(a["G_int"], dtype=np.float64)[rows] - 1.0
    for k, i in enumerate(rows):
        color = _style.COLORS["data"] if colors is None else colors[k]
        yerr = np.abs(ci[k].T - excess[k])  # (2, L), NaN where undefined
        label = f"g = {float(a['g'][i]):g}" if len(rows) > 1 else "held-out basis, 95% seed interval"
        ax.errorbar(layers, excess[k], yerr=yerr, fmt="o-", ms=3, lw=1, capsize=2, color=color, label=label)
    if len(rows) == 1:
        ax.plot(layers, paper[0], "s--", ms=3, lw=0.8, color="0.6", label="paper's basis (from the M seeds)")
    ax.axhline(0.0, color="0.6", lw=0.8)
    shown = np.concatenate([excess.ravel(), ci.ravel(), paper.ravel() if len(rows) == 1 else []])
    finite = shown[np.isfinite(shown)]
    half = max(0.01, 1.2 * float(np.abs(finite).max())) if finite.size else 0.01
    ax.set_ylim(-half, half)  # symmetric about zero: a sign is read at a glance, noise is not magnified
    ax.set_xlabel(r"transformer layer $\ell$")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(r"$\mathcal{G}_{int} - 1$ (trail/lead − 1), eq. (80)")
    if len(rows) == 1:
        ax.legend(loc="best", fontsize=6.5)


def _one_g(a: dict[str, np.ndarray], i: int, model: str) -> Figure:
    fig = Figure(figsize=(5.2, 5.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    _energy_panel(top, a, i, f"{model}: ")
    top.set_xlabel("")
    top.legend(loc="best")
    _gap_panel(bottom, a, [i])
    return fig


@_style.styled
def render(result_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Render Figs. 1/9/10 and the overview from a protocol2 result file; returns the image paths."""
    meta, a = _style.load(result_path)
    model = _style.model_name(meta)
    n_g = int(np.asarray(a["g"]).size)
    paths: list[Path] = []
    for i in range(n_g):
        paths += _style.save(_one_g(a, i, model), out_dir, f"fig_mode_energy_{_style.g_label(a['g'][i])}")
    fig, axes = _style.subplots(n_g + 1, ncols=3, panel=(4.4, 3.1))
    for i in range(n_g):
        _energy_panel(axes[i], a, i, "")
    cmap = mpl.colormaps["viridis"]
    colors = [cmap(x) for x in np.linspace(0.0, 0.85, n_g)]
    _gap_panel(axes[-1], a, list(range(n_g)), colors)
    axes[-1].set_title("internal gap of every g")
    handles, labels = axes[0].get_legend_handles_labels()
    if not _style.legend_in_spare(fig, handles, labels):
        axes[0].legend(loc="best")
    axes[-1].legend(loc="best", fontsize=6.5, ncols=2)
    fig.suptitle(
        f"{model}: leading vs trailing difference-mode energy at τ_spec(g), ± standard error over "
        f"{int(np.asarray(a['seeds']).size)} seeds (Protocol II)"
    )
    paths += _style.save(fig, out_dir, "fig_mode_energy_all")
    return paths


if __name__ == "__main__":
    raise SystemExit(_style.main_for(render, __doc__.splitlines()[0]))

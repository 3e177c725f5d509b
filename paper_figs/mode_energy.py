"""Figs. 1, 9, 10: lead/trail normalized mode energies vs layer at s = τ_spec(g) (Protocol II).

Reads a ``protocol2`` result file: ``lead``, ``trail`` (G, L) = band means of eq. (78)–(79) of the
fixed-basis energies λ_k(s, ℓ) of eq. (75) at s = τ_spec(g) (eq. 77), their spread over seeds
``lead_std``, ``trail_std`` (G, L), ``layers`` (L,), ``g`` (G,), ``tau_spec`` (G,).
One figure per g (Fig. 1 is g = 0; Figs. 9–10 are g = 0.1, 0.3, 0.9 in the paper) and one
overview with a panel per g. The internal gap ratio G_int = trail/lead (eq. 80) is drawn on a
second axis when ``G_int`` is present.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from . import _style

__all__ = ["render"]


def _panel(ax: Axes, arrays: dict[str, np.ndarray], i: int, title: str, legend: bool = True) -> None:
    """Draw band energies (mean ± spread over seeds) vs layer for the i-th coupling strength."""
    layers = np.asarray(arrays["layers"])
    g = float(arrays["g"][i])
    tau = float(arrays["tau_spec"][i])
    for band in ("lead", "trail"):
        mean = np.asarray(arrays[band][i], dtype=np.float64)  # (L,)
        spread = np.asarray(arrays.get(f"{band}_std", np.zeros_like(arrays[band]))[i], dtype=np.float64)
        label = "leading band, eq. (78)" if band == "lead" else "trailing band, eq. (79)"
        ax.plot(layers, mean, "o-", ms=3, color=_style.COLORS[band], label=label)
        ax.fill_between(layers, mean - spread, mean + spread, color=_style.COLORS[band], alpha=0.2, lw=0)
    positive = np.concatenate([arrays["lead"][i], arrays["trail"][i]])
    positive = positive[np.isfinite(positive) & (positive > 0)]
    if (
        positive.size and positive.max() / positive.min() > 50.0
    ):  # energies spanning decades read on a log axis
        ax.set_yscale("log")
    if "G_int" in arrays:
        twin = ax.twinx()
        twin.plot(
            layers,
            arrays["G_int"][i],
            "--",
            color="0.5",
            lw=1,
            label=r"$\mathcal{G}_{int}$ = trail/lead, eq. (80)",
        )
        twin.axhline(1.0, color="0.7", lw=0.6, ls=":")
        twin.set_ylabel(r"$\mathcal{G}_{int}(\ell; g)$", color="0.4")
        twin.grid(False)
        handles, labels = ax.get_legend_handles_labels()
        h2, l2 = twin.get_legend_handles_labels()
        if legend:
            ax.legend(handles + h2, labels + l2, loc="upper left")
    elif legend:
        ax.legend(loc="upper left")
    ax.set_xlabel(r"transformer layer $\ell$")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are block indices
    ax.set_ylabel(r"normalized energy $\bar\lambda(\ell; g)$, eq. (75)")
    tau_txt = f"{tau:.1f}" if np.isfinite(tau) else "n/a"
    ax.set_title(f"{title}g = {g:g}, at step s = τ_spec = {tau_txt}")


@_style.styled
def render(result_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Render Figs. 1/9/10 from a protocol2 result file; returns the PNG and PDF paths."""
    meta, arrays = _style.load(result_path)
    model = _style.model_name(meta)
    n_g = int(np.asarray(arrays["g"]).size)
    paths: list[Path] = []
    for i in range(n_g):
        fig, (ax,) = _style.subplots(1, panel=(5.2, 3.4))
        _panel(ax, arrays, i, f"{model}: ")
        paths += _style.save(fig, out_dir, f"fig_mode_energy_{_style.g_label(arrays['g'][i])}")
    fig, axes = _style.subplots(n_g, ncols=3, panel=(4.6, 3.2))
    for i, ax in enumerate(axes):
        _panel(ax, arrays, i, "", legend=i == 0)
    fig.suptitle(f"{model}: leading vs trailing difference-mode energy at τ_spec(g) (Protocol II)")
    paths += _style.save(fig, out_dir, "fig_mode_energy_all")
    return paths


if __name__ == "__main__":
    raise SystemExit(_style.main_for(render, __doc__.splitlines()[0]))

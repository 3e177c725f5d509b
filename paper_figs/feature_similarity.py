"""Figs. 2–4: median feature cosine similarity vs t_int with its sigmoid fit and τ_spec; Fig. 5: control.

Reads a ``protocol1`` result file: ``t_int`` (T,), ``g`` (G,), ``a_feat_median`` (G, T) = median over
seeds of eq. (70), per-seed ``a_feat`` (G, T, M) for the interquartile band, ``fit_a_feat`` (G, 4)
sigmoid parameters (lo, hi, center, width), ``tau_spec`` (G,) and ``tau_spec_ci`` (G, 2) (95 %
bootstrap). Fig. 5 uses the g = 0 shared-noise control ``control_*`` arrays of the same file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes

from dit_validation.summary import fmt_interval, fmt_step

from . import _style

__all__ = ["render"]


def _panel(
    ax: Axes,
    t_int: np.ndarray,
    median: np.ndarray,
    per_seed: np.ndarray | None,
    fit: np.ndarray,
    tau: float,
    ci: np.ndarray,
    title: str,
    legend: bool = True,
) -> None:
    """Median a_feat(t_int) (eq. 70), seed IQR, sigmoid fit and τ_spec with its 95 % CI."""
    if per_seed is not None and per_seed.size:
        q25, q75 = np.nanpercentile(per_seed, [25, 75], axis=-1)  # over seeds
        ax.fill_between(t_int, q25, q75, color=_style.COLORS["data"], alpha=0.15, lw=0, label="seed IQR")
    ax.plot(t_int, median, "o", ms=3, color=_style.COLORS["data"], label=r"median $a_{feat}$, eq. (70)")
    first, last = float(t_int.min()), float(t_int.max())
    t_fine = np.linspace(first, last, 400)
    if np.all(np.isfinite(fit)):
        ax.plot(t_fine, _style.fit_curve(t_fine, fit), "-", color=_style.COLORS["fit"], label="sigmoid fit")
    if np.isfinite(tau) and first <= tau <= last:
        ax.axvline(tau, color=_style.COLORS["tau"], lw=1.2, label="τ_spec (sigmoid midpoint)")
    elif np.isfinite(tau):  # the midpoint lies outside the sampled steps: say so, do not stretch the axis
        ax.text(0.02, 0.04, f"τ_spec {fmt_step(tau, first, last)}", transform=ax.transAxes, fontsize=7)
    if np.isfinite(tau) and np.all(np.isfinite(ci)):
        lo, hi = (float(np.clip(c, first, last)) for c in ci)  # the CI clipped to the grid, labelled so
        ax.axvspan(lo, hi, color=_style.COLORS["tau"], alpha=0.12, label="95 % bootstrap CI")
    pad = 0.02 * (last - first)
    ax.set_xlim(first - pad, last + pad)
    ax.set_xlabel(r"intervention step $t_{int}$ (sampling steps coupled)")
    ax.set_ylabel("feature cosine similarity")
    ax.set_title(title)
    if legend:
        ax.legend(loc="best")


def _tau_text(tau: float, ci: np.ndarray, t_int: np.ndarray) -> str:
    """τ_spec and its 95 % CI in steps, clipped to the sampled grid ("before step 0" outside it)."""
    first, last = float(np.min(t_int)), float(np.max(t_int))
    return f"{fmt_step(float(tau), first, last)} {fmt_interval(ci, first, last)}"


@_style.styled
def render(result_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Render Figs. 2–4 (one panel per g > 0) and Fig. 5 (g = 0 control) from a protocol1 file."""
    meta, a = _style.load(result_path)
    model = _style.model_name(meta)
    t_int = np.asarray(a["t_int"], dtype=np.float64)
    g = np.asarray(a["g"], dtype=np.float64)
    paths: list[Path] = []
    fig, axes = _style.subplots(g.size, ncols=3, panel=(3.8, 2.9))
    for i, ax in enumerate(axes):
        _panel(
            ax,
            t_int,
            a["a_feat_median"][i],
            a["a_feat"][i] if "a_feat" in a else None,
            a["fit_a_feat"][i],
            float(a["tau_spec"][i]),
            a["tau_spec_ci"][i],
            f"g = {g[i]:g}: τ_spec = {_tau_text(a['tau_spec'][i], a['tau_spec_ci'][i], t_int)}",
            legend=i == 0,
        )
    fig.suptitle(f"{model}: Protocol I speciation, coupled until t_int then independent (Figs. 2–4)")
    paths += _style.save(fig, out_dir, "fig_feature_similarity")
    if "control_a_feat_median" in a:
        fig, (ax,) = _style.subplots(1, panel=(5.8, 3.6))
        _panel(
            ax,
            t_int,
            a["control_a_feat_median"],
            a["control_a_feat"] if "control_a_feat" in a else None,
            a["control_fit_a_feat"],
            float(a["control_tau_spec"]),
            a["control_tau_spec_ci"],
            f"{model}: g = 0 control, shared noise until t_int (Fig. 5)\n"
            f"τ_spec = {_tau_text(a['control_tau_spec'], a['control_tau_spec_ci'], t_int)}",
        )
        paths += _style.save(fig, out_dir, "fig_control_g0")
    return paths


if __name__ == "__main__":
    raise SystemExit(_style.main_for(render, __doc__.splitlines()[0]))

"""Theory figure: predicted modal speciation parameter κ_{v,k}(s, ℓ; g) over (step, layer), eq. (50).

Reads a ``theory`` result file written with a compare file available (``dit_validation.theory_run``):
``kappa_vk`` (G, S_m, L, K), ``steps`` (S_m,), ``layers`` (L,), ``kappa_g`` (G,) (falls back to
``g``), ``s_spec`` (G, L, K) (first κ = 1 crossing along s, eq. 51) and ``gap_steps`` (G, L) (eq. 65).
One figure per g with a heat map for every branch direction that has a finite κ > 0 somewhere at that g
(when none has, the leading and trailing directions, each panel saying so); the κ = 1 contour is the
speciation front, the stars are s_spec per layer. κ is *undefined* (NaN) where the validity condition (55)
fails or the score gain γ is not positive — the mean-field picture says nothing there — and those cells
are grey; κ = 0 (no detectable branch separation, m = 0) takes the colour map's "under" colour. A legend
entry appears only for what its panel draws.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.ticker import MaxNLocator

from . import _style

__all__ = ["render"]


def _heat(ax: Axes, steps: np.ndarray, layers: np.ndarray, kappa: np.ndarray, s_spec: np.ndarray, title: str):
    """log10 κ over (s, ℓ) with the κ = 1 contour and the per-layer speciation steps.

    κ undefined (NaN: eq. 55 fails or γ ≤ 0) is grey; κ = 0 (m = 0) the "under" colour.
    """
    kappa = np.asarray(kappa, dtype=np.float64).T  # (L, S_m)
    valid = np.isfinite(kappa) & (kappa > 0)
    zero = kappa == 0.0
    logk = np.full(kappa.shape, np.nan)
    logk[valid] = np.log10(kappa[valid])
    span = max(float(np.max(np.abs(logk[valid]))) if valid.any() else 1.0, 1e-3)
    logk[zero] = -2.0 * span  # below vmin: drawn with the "under" colour
    cmap = mpl.colormaps["RdBu_r"].with_extremes(bad="0.8", under="#d9ecff")
    mesh = ax.pcolormesh(
        steps,
        layers,
        np.ma.masked_invalid(logk),
        cmap=cmap,
        norm=TwoSlopeNorm(0.0, -span, span),
        shading="nearest",
    )
    if not valid.any():  # say why the panel has no κ scale instead of a silent grey box
        ax.text(
            0.5,
            0.5,
            "no κ > 0 here:\nundefined (eq. 55 / γ) or m = 0",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=8,
            bbox={"fc": "white", "alpha": 0.8},
        )
    finite_k = np.ma.masked_where(
        ~valid, logk
    )  # the contour runs through finite κ only, never along a mask edge
    if valid.sum() >= 4 and finite_k.min() < 0 < finite_k.max() and steps.size > 1 and layers.size > 1:
        ax.contour(steps, layers, finite_k, levels=[0.0], colors="k", linewidths=1.0)
        ax.plot([], [], "k-", lw=1.0, label="κ = 1 contour")  # a contour has no legend handle of its own
    finite = np.isfinite(s_spec)
    if finite.any():
        ax.plot(s_spec[finite], layers[finite], "k*", ms=6, label=r"$s_{spec}$: κ = 1, eq. (51)")
    if np.isnan(kappa).any():
        ax.fill_between([], [], color="0.8", label="κ undefined: eq. (55) fails or γ ≤ 0")
    if zero.any():
        ax.fill_between([], [], color="#d9ecff", label="κ = 0: no branch separation (m = 0)")
    ax.set_xlabel("sampling step s (0 = pure noise)")
    ax.set_ylabel(r"layer $\ell$")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # layers are block indices
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=6.5)
    return mesh


def shown_modes(kappa: np.ndarray, learned: np.ndarray | None = None) -> list[int]:
    """The directions to draw for one g, from κ (S_m, L, K): every learned one with a finite κ > 0
    somewhere; when none has, the leading and trailing learned ones (their panels say that κ is nowhere
    defined). ``learned`` (K,): the branch-validity gate; without it, or when no direction is learned,
    every direction counts."""
    k = np.asarray(kappa, dtype=np.float64)
    cand = list(range(k.shape[-1]))
    if learned is not None and np.asarray(learned, dtype=bool).any():
        cand = [int(f) for f in np.flatnonzero(np.asarray(learned, dtype=bool))]
    with np.errstate(invalid="ignore"):
        have = [f for f in cand if np.any(np.isfinite(k[..., f]) & (k[..., f] > 0))]
    return have or sorted({cand[0], cand[-1]})


@_style.styled
def render(result_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Render one κ_{v,k}(s, ℓ) figure per g; returns [] when the file has no κ maps (no compare run)."""
    meta, a = _style.load(result_path)
    if "kappa_vk" not in a:
        return []
    model = _style.model_name(meta, default="theory")
    steps = np.asarray(a["steps"], dtype=np.float64)
    layers = np.asarray(a["layers"], dtype=np.float64)
    kappa = np.asarray(a["kappa_vk"], dtype=np.float64)  # (G, S_m, L, K)
    s_spec = np.asarray(a["s_spec"], dtype=np.float64)  # (G, L, K)
    paths: list[Path] = []
    g_axis = a["kappa_g"] if "kappa_g" in a else a["g"]  # the compare grid the maps were measured on
    K = kappa.shape[-1]
    for i, g in enumerate(np.asarray(g_axis, dtype=np.float64)):
        learned = np.asarray(a["mode_learned"], dtype=bool) if "mode_learned" in a else np.ones(K, bool)
        modes = shown_modes(kappa[i], learned)
        fig, axes = _style.subplots(len(modes), ncols=2, panel=(4.4, 3.4))
        mesh = None
        names = [str(n) for n in a["mode_names"]] if "mode_names" in a else [f"f = {k}" for k in range(K)]
        for ax, k in zip(axes, modes, strict=True):
            role = "leading direction" if k == 0 else "trailing direction" if k == K - 1 else "direction"
            title = f"{role} {names[k]}" + ("" if learned[k] else "\n(not learned: no speciation to predict)")
            mesh = _heat(ax, steps, layers, kappa[i, :, :, k], s_spec[i, :, k], title)
        fig.colorbar(
            mesh, ax=list(axes), extend="min", label=r"$\log_{10}\kappa_{v,k}(s, \ell; g)$, eq. (50)"
        )
        gap = np.asarray(a["gap_steps"][i], dtype=np.float64)
        gap_txt = f"{gap[-1]:.1f}" if np.isfinite(gap[-1]) else "n/a"
        fig.suptitle(
            f"{model}, g = {g:g}: κ of eq. (50)\nfrom measured block quantities;\n"
            f"Δs_v = {gap_txt} steps (last layer)"
        )
        paths += _style.save(fig, out_dir, f"fig_kappa_map_{_style.g_label(g)}")
    return paths


if __name__ == "__main__":
    raise SystemExit(_style.main_for(render, __doc__.splitlines()[0]))

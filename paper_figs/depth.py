"""Depth localization per g: where the branch decision is made (causal), and the internal gap, by layer.

Reads a ``depth`` result file (``dit_validation.depth``): per coupling g (panels), against the block,
the causal measurements of §2.7 prediction 2 — the change of each block's term of the learned curvature
across the step-level τ_f (|δ_ℓ|, mean over the learned directions) and the effect on the final clone
agreement of patching block ℓ's residual write with the partner clone's (|e_ℓ|, mean over directions where
some block's effect is resolved, with the mean of their 95% bootstrap half-widths as error bars) — and
|G_int(ℓ) − 1| of Protocol II on its held-out basis (eq. 80; the analogue of the paper's Figs. 1, 9, 10).
Each profile is scaled to its own maximum; the legend gives its last-quarter share with its 95% CI, the
title the verdict of prediction 2 at that g against the uniform share. What a panel cannot draw (a
measurement not made at that g) is said in its title.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from dit_validation.analysis import deep_quarter

from . import _style

__all__ = ["render"]


def _share(x: float, ci: np.ndarray | None = None) -> str:
    if not np.isfinite(x):
        return "n/a"
    if ci is not None and np.all(np.isfinite(ci)):
        return f"{x:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"
    return f"{x:.2f}"


def _scaled(x: np.ndarray) -> np.ndarray:
    m = np.nanmax(np.abs(x)) if np.isfinite(x).any() else np.nan
    return x / m if np.isfinite(m) and m > 0 else np.full_like(x, np.nan)


def _mean_rows(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Mean over the selected rows (directions) of a (F, L) array; NaN where none is selected."""
    rows = np.asarray(rows, bool) & np.isfinite(x).all(axis=1)
    return np.abs(x[rows]).mean(axis=0) if rows.any() else np.full(x.shape[1], np.nan)


_VERDICT = {1: "holds", -1: "FAILS", 0: "undefined"}


@_style.styled
def render(result_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Render ``fig_depth`` from a depth result file."""
    meta, a = _style.load(result_path, kind="depth")
    model = _style.model_name(meta)
    layers = np.asarray(a["layers"], dtype=np.float64)
    g = np.asarray(a["g"], dtype=np.float64)
    fig, axes = _style.subplots(g.size, ncols=min(g.size, 2), panel=(4.6, 3.3))
    n_last = deep_quarter(layers.size)
    for i, ax in enumerate(axes):
        notes = []  # what a panel cannot draw, said in its title (a legend entry needs a mark)
        ax.axvspan(layers[-n_last] - 0.5, layers[-1] + 0.5, color="0.92", lw=0, label="last quarter")
        curv = _mean_rows(np.asarray(a["curv_change"][i])[:, 1:], np.ones(a["curv_change"].shape[1], bool))
        if np.isfinite(curv).any():
            share = _share(a["curvature_share_last_quarter"][i], a["curvature_share_last_quarter_ci"][i])
            ax.plot(
                layers, _scaled(curv), "o-", color=_style.COLORS["dit"], label=f"|Δ curvature|, share {share}"
            )
        else:
            notes.append("curvature: no learned direction has a step-level τ here")
        eff = np.asarray(a["patch_effect"][i])  # (F, L)
        resolved = np.asarray(a["patch_resolved"][i], bool)
        pe = _mean_rows(eff, resolved)
        if np.isfinite(pe).any():
            ci = np.asarray(a["patch_effect_ci"][i])  # (F, L, 2)
            half = np.nanmean(np.abs(ci[resolved, :, 1] - ci[resolved, :, 0]) / 2, axis=0)
            top = np.nanmax(pe)
            share = _share(a["patch_share_last_quarter"][i], a["patch_share_last_quarter_ci"][i])
            ax.errorbar(
                layers + 0.1,
                pe / top,
                yerr=half / top,
                fmt="s--",
                color=_style.COLORS["theory"],
                capsize=2,
                label=f"|patch effect|, share {share}",
            )
        elif np.isfinite(eff).any():
            notes.append("patching: no block's effect resolved from 0")
        else:
            notes.append("patching: not run at this g")
        if np.isfinite(a["gint_profile"][i]).any():
            ax.plot(
                layers - 0.1,
                _scaled(a["gint_profile"][i]),
                "^:",
                color=_style.COLORS["trail"],
                label=f"|G_int − 1| (Protocol II), share {_share(a['gint_depth'][i], a['gint_depth_ci'][i])}",
            )
        ax.set_ylim(-0.05, 1.2)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are block indices
        ax.set_xlabel("block ℓ")
        ax.set_ylabel("scaled profile")
        verdict = _VERDICT[int(a["prediction2_verdict"][i])]
        title = f"g = {g[i]:g}: prediction 2 {verdict} (uniform share {float(a['uniform_share']):.2f})"
        ax.set_title("\n".join([title, *notes]), fontsize=8)
        ax.legend(fontsize=6, loc="upper left")
    fig.suptitle(f"{model}: where in depth the branch decision is made (causal) and the internal gap")
    return _style.save(fig, out_dir, "fig_depth")


if __name__ == "__main__":
    raise SystemExit(_style.main_for(render, __doc__.splitlines()[0]))

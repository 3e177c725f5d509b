"""Depth localization per g: the internal gap and the per-block prediction, layer by layer.

Reads a ``depth`` result file (``dit_validation.depth``): per coupling g (panels), against the layer,
|G_int(ℓ) − 1| of Protocol II (eq. 80; the analogue of the paper's Figs. 1, 9, 10) and the predicted
per-block gap |Δs_v(ℓ)| of eq. (50)–(51), (65) — each profile scaled to its own maximum, with its depth
fraction (share of the last quarter of the blocks, 95% bootstrap CI) in the legend and the uniform share
as a reference.
Where G_int − 1 is within seed noise at every layer (its seed-bootstrap interval contains 0), the panel
title says so: the share of such a profile is a share of noise.
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


@_style.styled
def render(result_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Render ``fig_depth`` from a depth result file."""
    meta, a = _style.load(result_path, kind="depth")
    model = _style.model_name(meta)
    layers = np.asarray(a["layers"], dtype=np.float64)
    g = np.asarray(a["g"], dtype=np.float64)
    fig, axes = _style.subplots(g.size, ncols=min(g.size, 2), panel=(4.4, 3.2))
    n_last = deep_quarter(layers.size)
    for i, ax in enumerate(axes):
        notes = []  # what a panel cannot draw, said in its title (a legend entry needs a mark; text in the
        # axes would sit under the legend)
        ax.axvspan(layers[-n_last] - 0.5, layers[-1] + 0.5, color="0.92", lw=0, label="last quarter")
        if np.isfinite(a["gint_profile"][i]).any():
            ax.plot(
                layers,
                _scaled(a["gint_profile"][i]),
                "o-",
                color=_style.COLORS["trail"],
                label=f"|G_int − 1| (Protocol II), share {_share(a['gint_depth'][i], a['gint_depth_ci'][i])}",
            )
        else:
            notes.append("|G_int − 1|: no τ_spec at this g")
        bp = a["block_profile"][i]
        if np.isfinite(bp).any():
            ax.plot(
                layers,
                _scaled(bp),
                "s--",
                color=_style.COLORS["theory"],
                label=f"|Δs_v| per block, eq. (50), share {_share(a['block_depth'][i])}",
            )
        else:
            notes.append("per-block eq. (50): κ undefined at every layer")
        ax.set_ylim(-0.05, 1.05)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are block indices
        ax.set_xlabel("layer ℓ")
        ax.set_ylabel("scaled profile")
        if not np.any(a["gint_resolved"][i]):
            notes.insert(0, "|G_int − 1| within seed noise at every layer")
        title = f"g = {g[i]:g} (uniform share {float(a['uniform_share']):.2f})"
        ax.set_title("\n".join([title, *notes]), fontsize=8)
        ax.legend(fontsize=6, loc="best")
    fig.suptitle(f"{model}: where in depth the gap lives (share of the last quarter of the blocks)")
    return _style.save(fig, out_dir, "fig_depth")


if __name__ == "__main__":
    raise SystemExit(_style.main_for(render, __doc__.splitlines()[0]))

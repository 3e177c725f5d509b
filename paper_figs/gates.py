"""Theory figure: attention gates ρ(g) = (1 − g)/(1 + g) and ξ(g) = 1/(1 + g), eq. (27).

Reads a ``theory`` result file: ``g_grid`` (N,), ``rho`` (N,), ``xi`` (N,) and the protocol grid
``g`` (G,) marked as points. ρ multiplies the spatial-routing term whose modal difference drives the
gap (eq. 63, 66), so the gap is predicted to collapse as ρ → 0 at g → 1; ξ ≥ 1/2 never vanishes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _style

__all__ = ["render"]


@_style.styled
def render(result_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Render ρ(g) and ξ(g) from a theory result file."""
    meta, a = _style.load(result_path)
    model = _style.model_name(meta, default="theory")
    g_grid = np.asarray(a["g_grid"], dtype=np.float64)
    fig, (ax,) = _style.subplots(1, panel=(5.0, 3.4))
    ax.plot(g_grid, a["rho"], "-", color=_style.COLORS["lead"], label=r"$\rho(g) = (1-g)/(1+g)$: routing")
    ax.plot(
        g_grid, a["xi"], "-", color=_style.COLORS["trail"], label=r"$\xi(g) = 1/(1+g)$: pattern modulation"
    )
    if "g" in a and "rho_at_g" in a:
        ax.plot(a["g"], a["rho_at_g"], "o", ms=4, color=_style.COLORS["lead"], label="protocol g grid")
        ax.plot(a["g"], a["xi_at_g"], "s", ms=4, color=_style.COLORS["trail"])
    ax.set_xlabel("coupling strength g (dimensionless)")
    ax.set_ylabel("gate value, eq. (27)")
    ax.set_ylim(-0.03, 1.05)
    ax.set_title(f"{model}: attention gates vs coupling g")
    ax.legend(loc="lower left")
    return _style.save(fig, out_dir, "fig_gates")


if __name__ == "__main__":
    raise SystemExit(_style.main_for(render, __doc__.splitlines()[0]))

"""Theory figure: pitchfork bifurcation u*(κ) of the modal self-consistency u = κ tanh u, eq. (49).

Reads a ``theory`` result file (``dit_validation.theory_run``): ``kappa`` (K,), ``u_branches``
(B, K) — every solution branch, NaN where a branch does not exist — and ``u_stable`` (B, K) bool.
Stable branches are drawn solid, unstable dashed; the critical point κ = 1 of eq. (51) is marked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _style

__all__ = ["render"]


def _runs(mask: np.ndarray) -> list[slice]:
    """Contiguous runs of True in a 1-D mask, as slices (so line styles never bridge gaps)."""
    idx = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [slice(int(a), int(b)) for a, b in zip(idx[::2], idx[1::2], strict=True)]


@_style.styled
def render(result_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Render the bifurcation diagram from a theory result file."""
    meta, a = _style.load(result_path)
    model = _style.model_name(meta, default="theory")
    kappa = np.asarray(a["kappa"], dtype=np.float64)
    branches = np.asarray(a["u_branches"], dtype=np.float64)  # (B, K)
    stable = np.asarray(a["u_stable"], dtype=bool)  # (B, K)
    fig, (ax,) = _style.subplots(1, panel=(5.0, 3.6))
    labelled = {True: False, False: False}
    for b in range(branches.shape[0]):
        exists = np.isfinite(branches[b])
        for is_stable in (True, False):
            for sl in _runs(exists & (stable[b] == is_stable)):
                label = None
                if not labelled[is_stable]:
                    label = "stable branch" if is_stable else "unstable branch"
                    labelled[is_stable] = True
                ax.plot(
                    kappa[sl],
                    branches[b, sl],
                    "-" if is_stable else "--",
                    lw=1.8,
                    color=_style.COLORS["lead"] if is_stable else _style.COLORS["trail"],
                    label=label,
                )
    ax.axvline(1.0, color="0.5", ls=":", lw=1, label="κ = 1: speciation, eq. (51)")
    ax.set_xlabel(r"modal speciation parameter $\kappa_{v,k}$, eq. (50)")
    ax.set_ylabel(r"order parameter $u_k^*$, eq. (45)")
    ax.set_title(f"{model}: pitchfork of $u = \\kappa\\,\\tanh u$, eq. (49)")
    ax.legend(loc="upper left")
    return _style.save(fig, out_dir, "fig_bifurcation")


if __name__ == "__main__":
    raise SystemExit(_style.main_for(render, __doc__.splitlines()[0]))

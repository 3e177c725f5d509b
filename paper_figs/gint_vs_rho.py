"""Collapse of the internal gap: |G_int − 1| in the deepest layers against ρ(g) (eq. 80 vs eq. 27, 66).

Reads a ``protocol2`` result file: ``G_int`` (G, L) = λ̄_trail/λ̄_lead at s = τ_spec(g) (eq. 80),
``g`` (G,), ``layers`` (L,). The paper finds the gap in the final ≈ 5 blocks (§4.2) and predicts its
routing part to vanish as ρ(g) = (1 − g)/(1 + g) → 0 (eq. 66). The figure draws the size of the gap,
|G_int − 1| averaged over the deepest ``round(5 L / 28)`` layers, against ρ(g) — the same number and the
same correlation the ``reproduce`` summary prints — and the signed G_int − 1 of those layers faintly (its
sign says whether the trailing modes keep more energy than the leading ones). Beside it, where the file has
it, the held-out estimate ``gint_excess`` (dit_validation.gint) of the same layers with its 95 % seed
bootstrap interval from ``gint_excess_boot``: the calibrated quantity the depth stage uses (the paper's
estimator above has no interval).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from dit_validation.analysis import deep_layer_count
from dit_validation.summary import collapse_verdict
from theory import rho as rho_gate

from . import _style

__all__ = ["render"]


@_style.styled
def render(result_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Render ``fig_gint_vs_rho`` from a protocol2 result file."""
    meta, a = _style.load(result_path)
    model = _style.model_name(meta)
    g = np.asarray(a["g"], dtype=np.float64)
    rho = np.atleast_1d(rho_gate(g))  # eq. (27)
    signed = np.asarray(a["G_int"], dtype=np.float64) - 1.0  # (G, L), eq. (80)
    layers = np.asarray(a["layers"])
    n_deep = deep_layer_count(layers.size)
    deep_name = f"last {n_deep} layers" if n_deep > 1 else f"last layer ({int(layers[-1])})"
    with warnings.catch_warnings():  # a g whose τ_spec was not found has an all-NaN row: NaN, no warning
        warnings.simplefilter("ignore", RuntimeWarning)
        size = np.nanmean(np.abs(signed[:, -n_deep:]), axis=1)
        mean_signed = np.nanmean(signed[:, -n_deep:], axis=1)
    fig, (ax,) = _style.subplots(1, panel=(5.4, 3.8))
    if not np.isfinite(size).any():
        _style.no_prediction(ax, "no finite G_int: no τ_spec(g) was found")
    else:
        ax.plot(
            rho,
            mean_signed,
            "o",
            mfc="none",
            color="0.6",
            label=f"signed $\\mathcal{{G}}_{{int}} - 1$, {deep_name}",
        )
        verdict = collapse_verdict(rho, size)
        corr = (
            ""
            if verdict is None
            else f"; corr with ρ = {verdict[0]:+.2f} over {int(np.isfinite(size).sum())} g"
        )
        ax.plot(
            rho,
            size,
            "o",
            color=_style.COLORS["trail"],
            label=f"$|\\mathcal{{G}}_{{int}} - 1|$, {deep_name}{corr}",
        )
        if "gint_excess_boot" in a:
            held = np.asarray(a["gint_excess"], dtype=np.float64)[:, -n_deep:].mean(axis=1)
            boot = np.asarray(a["gint_excess_boot"], dtype=np.float64)[..., -n_deep:].mean(axis=-1)  # (G, B)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                lo, hi = np.nanpercentile(boot, [2.5, 97.5], axis=1)
            ok = np.isfinite(held) & np.isfinite(lo) & np.isfinite(hi)
            if ok.any():
                ax.errorbar(
                    rho[ok] + 0.015,  # dodged: the paper's estimate at the same ρ stays visible
                    held[ok],
                    yerr=np.stack([held[ok] - lo[ok], hi[ok] - held[ok]]),
                    fmt="s",
                    ms=4,
                    capsize=3,
                    color=_style.COLORS["dit"],
                    label=f"held-out basis, signed, 95% CI ({deep_name}; drawn 0.015 right)",
                )
        for gi, ri, mi in zip(g, rho, size, strict=True):
            if np.isfinite(mi):
                ax.annotate(f"g={gi:g}", (ri, mi), textcoords="offset points", xytext=(3, 3), fontsize=6.5)
        ax.axhline(0.0, color="0.5", lw=0.8)
        ax.set_xlim(-0.05, 1.05)
        ax.legend(loc="best")
    ax.set_xlabel(r"routing gate $\rho(g) = (1-g)/(1+g)$, eq. (27)")
    ax.set_ylabel(r"internal gap at $s = \tau_{spec}(g)$, eq. (80)")
    ax.set_title(f"{model}: does the internal gap collapse as ρ(g) → 0? (eq. 66)")
    return _style.save(fig, out_dir, "fig_gint_vs_rho")


if __name__ == "__main__":
    raise SystemExit(_style.main_for(render, __doc__.splitlines()[0]))

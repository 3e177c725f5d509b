"""Table 1: τ_spec(g) with 95 % bootstrap CIs, plus τ_g, τ_l and Δτ = τ_l − τ_g (eq. 73).

Reads a ``protocol1`` result file and writes ``table1.csv`` and ``table1.md``; the g = 0
shared-noise control (Fig. 5) is appended as a last row marked ``0 (control)``. Steps are clipped to the
sampled grid [t_min, t_max]: the Markdown says "before step 0" / "after step S", the CSV holds the clipped
number (the result file keeps the fitted value).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from dit_validation.summary import fmt_interval, fmt_step

from . import _style

__all__ = ["render", "rows"]

COLUMNS = ("g", "tau_spec", "tau_spec_lo", "tau_spec_hi", "tau_g", "tau_l", "delta_tau")


def _clip(x: float, first: float, last: float) -> str:
    return f"{float(np.clip(x, first, last)):.1f}" if np.isfinite(x) else "n/a"


def rows(arrays: dict[str, np.ndarray]) -> list[dict[str, str]]:
    """Table rows (strings, one decimal, steps clipped to the grid) from protocol1 arrays, then control."""
    g = np.asarray(arrays["g"], dtype=np.float64)
    t = np.asarray(arrays["t_int"], dtype=np.float64)
    first, last = float(t.min()), float(t.max())
    delta = arrays["delta_tau"] if "delta_tau" in arrays else arrays["tau_l"] - arrays["tau_g"]  # eq. (73)
    out = []
    for i in range(g.size):
        out.append(
            {
                "g": f"{g[i]:g}",
                "tau_spec": _clip(arrays["tau_spec"][i], first, last),
                "tau_spec_lo": _clip(arrays["tau_spec_ci"][i][0], first, last),
                "tau_spec_hi": _clip(arrays["tau_spec_ci"][i][1], first, last),
                "tau_g": _clip(arrays["tau_g"][i], first, last),
                "tau_l": _clip(arrays["tau_l"][i], first, last),
                "delta_tau": f"{delta[i]:.1f}" if np.isfinite(delta[i]) else "n/a",
            }
        )
    if "control_tau_spec" in arrays:
        ci = np.asarray(arrays["control_tau_spec_ci"], dtype=np.float64)
        out.append(
            {
                "g": "0 (control)",
                "tau_spec": _clip(float(arrays["control_tau_spec"]), first, last),
                "tau_spec_lo": _clip(ci[0], first, last),
                "tau_spec_hi": _clip(ci[1], first, last),
                "tau_g": "n/a",
                "tau_l": "n/a",
                "delta_tau": "n/a",
            }
        )
    return out


@_style.styled
def render(result_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Write ``table1.csv`` and ``table1.md`` from a protocol1 result file."""
    meta, arrays = _style.load(result_path)
    model = _style.model_name(meta)
    table = rows(arrays)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "table1.csv", out / "table1.md"
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(table)
    steps = (meta.get("config") or {}).get("num_steps", "?")
    lines = [
        f"Table 1 ({model}, {steps} sampling steps): speciation step τ_spec(g) from the feature cosine "
        "similarity (eq. 70) with 95 % bootstrap CI; global/local commitment steps τ_g, τ_l and the "
        "output-space gap Δτ = τ_l − τ_g (eq. 73).",
        "",
        "| g | τ_spec [95 % CI] | τ_g | τ_l | Δτ |",
        "| --- | --- | --- | --- | --- |",
    ]
    t = np.asarray(arrays["t_int"], dtype=np.float64)
    first, last = float(t.min()), float(t.max())
    taus = [
        (arrays["tau_spec"][i], arrays["tau_spec_ci"][i], arrays["tau_g"][i], arrays["tau_l"][i])
        for i in range(len(arrays["g"]))
    ]
    if "control_tau_spec" in arrays:
        taus.append((float(arrays["control_tau_spec"]), arrays["control_tau_spec_ci"], np.nan, np.nan))
    for r, (tau, ci, tau_g, tau_l) in zip(table, taus, strict=True):
        lines.append(
            f"| {r['g']} | {fmt_step(tau, first, last)} {fmt_interval(ci, first, last)} "
            f"| {fmt_step(tau_g, first, last)} | {fmt_step(tau_l, first, last)} | {r['delta_tau']} |"
        )
    md_path.write_text("\n".join(lines) + "\n")
    return [csv_path, md_path]


if __name__ == "__main__":
    raise SystemExit(_style.main_for(render, __doc__.splitlines()[0]))

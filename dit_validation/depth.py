"""Depth localization (§2.7 prediction 2, the paper's "last ≈ 5 of 28 blocks") from stored profiles, per g.

1. **Internal gap** — Protocol II's |G_int(ℓ) − 1| per layer at s = τ_spec(g) (eq. 80; Figs. 1, 9, 10)
   on its held-out basis (:mod:`dit_validation.gint`), with Protocol II's seed-bootstrap interval, and per
   layer whether G_int − 1 is resolved from 0 at all (above seed noise).
2. **Predicted commitment** — the per-block eq. (50) of the comparison: the predicted gap
   |Δs_v(ℓ)| = |s_spec(trailing) − s_spec(leading)| per block (eq. 51, 65) where defined.

One statistic for both (:func:`dit_validation.analysis.depth_fraction`): the share of a per-layer profile
carried by the last quarter of the blocks, against the uniform share n_last/L. The profiles go into one
``depth`` result file. The causal measurements (the curvature split by block, activation patching between
clones) are :mod:`dit_validation.causal`. Linear probes of the branch per layer were removed: every block's
output at step s is a function of x_t whose residual stream carries φ_fᵀx_t through linearly, so no layer
can read the final branch better than the input itself, and their profile is flat by construction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from theory.validation import check_positive_int

from .analysis import depth_fraction, uniform_share
from .gint import percentile_ci
from .models import DiTBundle
from .results import ResultFileError, make_meta, save_result
from .rundir import check_input

__all__ = [
    "DepthConfig",
    "run_depth",
    "gint_profile",
    "gint_depth_interval",
    "resolved_layers",
    "block_profile",
]


def gint_profile(p2: dict[str, np.ndarray], i: int) -> np.ndarray:
    """|G_int(ℓ) − 1| at s = τ_spec(g_i) (eq. 80) on Protocol II's held-out basis, (L,)."""
    return np.abs(np.asarray(p2["gint_excess"][i], dtype=np.float64))


def resolved_layers(excess_ci: np.ndarray) -> np.ndarray:
    """Whether a layer's 95% interval of G_int − 1 (L, 2) excludes 0, (L,): only then is its internal gap
    measured above seed noise, and only a profile with such a layer can localize anything. NaN: no."""
    ci = np.asarray(excess_ci, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (ci[:, 0] > 0) | (ci[:, 1] < 0)


def gint_depth_interval(p2: dict[str, np.ndarray], i: int) -> tuple[float, np.ndarray]:
    """The depth fraction of |G_int − 1| (eq. 80) at g_i and its 95% interval (2,), from Protocol II's
    seed-bootstrap replicates of G_int − 1 (one resample of the measured seeds for all layers; the
    held-out basis is independent of them, so the replicates carry all the seed noise).

    The basic (reflected) bootstrap interval [2θ̂ − q_97.5, 2θ̂ − q_2.5], clipped to [0, 1]: |·| lifts
    noise layers in every replicate once more than in θ̂, which pulls the replicates' shares below θ̂;
    reflecting undoes that shift where the percentile interval would repeat it.
    """
    share = depth_fraction(gint_profile(p2, i))
    boot = np.asarray(p2["gint_excess_boot"][i], dtype=np.float64)  # (B, L)
    lo, hi = percentile_ci(np.array([depth_fraction(np.abs(b)) for b in boot]))
    return share, np.clip([2 * share - hi, 2 * share - lo], 0.0, 1.0)


def block_profile(compare: dict[str, np.ndarray], i: int) -> np.ndarray:
    """|Δs_v(ℓ)| of the per-block eq. (50) (eq. 51, 65) between the gap's directions, (L,); NaN undefined."""
    s = np.asarray(compare["tau_pred_block"][i], dtype=np.float64)  # (L, F)
    lead, trail = int(compare["gap_lead"][i]), int(compare["gap_trail"][i])
    with np.errstate(invalid="ignore"):
        return np.abs(s[:, trail] - s[:, lead])


@dataclass(frozen=True)
class DepthConfig:
    """Settings of the depth-localization stage."""

    n_boot: int = 200  # G_int's replicates come from Protocol II
    seed: int = 0

    def validate(self) -> None:
        check_positive_int("n_boot", self.n_boot)


def run_depth(
    bundle: DiTBundle,
    cfg: DepthConfig,
    protocol2_path: str | Path,
    compare_path: str | Path,
    out_path: str | Path,
) -> Path:
    """The depth profiles and their depth fractions per g of the Protocol II file; writes ``depth``."""
    cfg.validate()
    reader = f"the depth stage for {bundle.name}"
    m2, p2 = check_input(protocol2_path, "protocol2", {"model": bundle.name}, reader)
    mc, cmp = check_input(compare_path, "compare", {"model": bundle.name}, reader)
    g = np.asarray(p2["g"], dtype=np.float64)
    L = int(np.asarray(p2["layers"]).size)
    dim = bundle.latent_channels * bundle.sample_size**2
    if np.shape(cmp["phi"])[-1] != dim:
        raise ResultFileError(
            f"{compare_path} holds branch directions of dimension {np.shape(cmp['phi'])[-1]} but model "
            f"{bundle.name} samples have {dim}: the file comes from another model; re-run compare for it"
        )
    if int(np.asarray(cmp["layers"]).size) != L:
        raise ResultFileError(
            f"{compare_path} has {np.asarray(cmp['layers']).size} layers but {protocol2_path} has {L}: "
            "the two files come from different models; re-run compare for this model"
        )
    out = {
        "g": g,
        "layers": np.asarray(p2["layers"]),
        "factor": np.asarray(cmp["factor"]),
        "uniform_share": np.asarray(uniform_share(L)),
        "gint_profile": np.full((g.size, L), np.nan),
        "gint_depth": np.full(g.size, np.nan),
        "gint_depth_ci": np.full((g.size, 2), np.nan),
        "gint_excess_ci": np.full((g.size, L, 2), np.nan),
        "gint_resolved": np.zeros((g.size, L), bool),
        "block_profile": np.full((g.size, L), np.nan),
        "block_depth": np.full(g.size, np.nan),
    }
    for i, gi in enumerate(g):
        out["gint_profile"][i] = gint_profile(p2, i)
        out["gint_depth"][i], out["gint_depth_ci"][i] = gint_depth_interval(p2, i)
        out["gint_excess_ci"][i] = p2["gint_excess_ci"][i]
        out["gint_resolved"][i] = resolved_layers(p2["gint_excess_ci"][i])
        j = np.flatnonzero(np.isclose(cmp["g"], gi))
        if j.size == 0:
            continue
        j = int(j[0])
        out["block_profile"][i] = block_profile(cmp, j)
        out["block_depth"][i] = depth_fraction(out["block_profile"][i])
    meta = make_meta(
        "depth",
        {**asdict(cfg), "model": bundle.name, "protocol2": str(protocol2_path), "compare": str(compare_path)},
        [],
        ["depth"],
        complete=True,
    )
    return save_result(out_path, meta, out)

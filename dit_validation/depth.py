"""Depth localization (§2.7 prediction 2, the paper's "last ≈ 5 of 28 blocks") from stored profiles, per g.

1. **Internal gap** — Protocol II's |G_int(ℓ) − 1| per layer at s = τ_spec(g) (eq. 80; Figs. 1, 9, 10),
   with a seed bootstrap, and per layer whether G_int − 1 is resolved from 0 at all (above seed noise).
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

from .analysis import band_energies, depth_fraction, uniform_share
from .models import DiTBundle
from .results import ResultFileError, load_result, make_meta, save_result

__all__ = [
    "DepthConfig",
    "run_depth",
    "gint_profile",
    "gint_depth_bootstrap",
    "resolved_layers",
    "block_profile",
]


def gint_profile(p2: dict[str, np.ndarray], i: int) -> np.ndarray:
    """|G_int(ℓ) − 1| at s = τ_spec(g_i) (eq. 80) from a Protocol II file's arrays, (L,)."""
    return np.abs(np.asarray(p2["G_int"][i], dtype=np.float64) - 1.0)


def gint_depth_bootstrap(
    p2: dict[str, np.ndarray], i: int, lead_frac: float, trail_frac: float, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap replicates over Protocol II's seeds: the depth fraction of |G_int − 1|, (n_boot,), and
    G_int − 1 per layer (eq. 80), (n_boot, L) — the latter says whether a layer's gap is above seed noise."""
    es = np.asarray(p2["energy_seed"][i], dtype=np.float64)  # (S, L, K, M)
    tau = float(p2["tau_spec"][i])
    rng = np.random.default_rng(seed)
    M, L = es.shape[-1], es.shape[1]
    share, excess = np.full(n_boot, np.nan), np.full((n_boot, L), np.nan)
    if not np.isfinite(tau):
        return share, excess
    for b in range(n_boot):
        idx = rng.integers(0, M, M)
        e = es[..., idx]
        excess[b] = band_energies(e.mean(-1), e, p2["eig0"][i], tau, lead_frac, trail_frac)["G_int"] - 1.0
        share[b] = depth_fraction(np.abs(excess[b]))
    return share, excess


def resolved_layers(excess: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile interval of G_int − 1 per layer from bootstrap replicates (n_boot, L) → (L, 2), and
    whether it excludes 0 (L,): only then is that layer's internal gap measured above seed noise, and only
    a profile with such a layer can localize anything."""
    ok = np.isfinite(excess).all(axis=1)
    if ok.sum() < 10:
        return np.full((excess.shape[1], 2), np.nan), np.zeros(excess.shape[1], bool)
    ci = np.percentile(excess[ok], [2.5, 97.5], axis=0).T
    return ci, (ci[:, 0] > 0) | (ci[:, 1] < 0)


def block_profile(compare: dict[str, np.ndarray], i: int) -> np.ndarray:
    """|Δs_v(ℓ)| of the per-block eq. (50) (eq. 51, 65) between the gap's directions, (L,); NaN undefined."""
    s = np.asarray(compare["tau_pred_block"][i], dtype=np.float64)  # (L, F)
    lead, trail = int(compare["gap_lead"][i]), int(compare["gap_trail"][i])
    with np.errstate(invalid="ignore"):
        return np.abs(s[:, trail] - s[:, lead])


@dataclass(frozen=True)
class DepthConfig:
    """Settings of the depth-localization stage."""

    n_boot: int = 200
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
    m2, p2 = load_result(protocol2_path, kind="protocol2", require_complete=True)
    _, cmp = load_result(compare_path, kind="compare", require_complete=True)
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
    c2 = m2["config"]
    for i, gi in enumerate(g):
        out["gint_profile"][i] = gint_profile(p2, i)
        out["gint_depth"][i] = depth_fraction(out["gint_profile"][i])
        boot, excess = gint_depth_bootstrap(p2, i, c2["lead_frac"], c2["trail_frac"], cfg.n_boot, cfg.seed)
        out["gint_excess_ci"][i], out["gint_resolved"][i] = resolved_layers(excess)
        boot = boot[np.isfinite(boot)]
        if boot.size >= 10:
            out["gint_depth_ci"][i] = np.percentile(boot, [2.5, 97.5])
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

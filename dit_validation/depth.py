"""Depth localization (§2.7 prediction 2, the paper's "last ≈ 5 of 28 blocks"), measured three ways per g.

1. **Internal gap** — Protocol II's |G_int(ℓ) − 1| per layer at s = τ_spec(g) (eq. 80; Figs. 1, 9, 10),
   with a seed bootstrap, and per layer whether G_int − 1 is resolved from 0 at all (above seed noise).
2. **Predicted commitment** — the per-block eq. (50) of the comparison: the predicted gap
   |Δs_v(ℓ)| = |s_spec(trailing) − s_spec(leading)| per block (eq. 51, 65) where defined.
3. **Readability** — where in depth the branch decision along each direction φ_f becomes linearly
   readable from the hidden state: replica pairs coupled at g run to the end; at step s = τ_f(g) (the
   comparison's measured speciation step) a logistic probe per layer predicts the side of φ_f on which the
   replica ends, from that layer's output; its held-out accuracy is the readability of the decision.

One statistic for all three (:func:`dit_validation.analysis.depth_fraction`): the share of a per-layer
profile carried by the last quarter of the blocks (for the readability: of the accuracy gained from layer
to layer), against the uniform share n_last/L. The profiles go into one ``depth`` result file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from theory.validation import check_positive_int

from .analysis import band_energies, depth_fraction, uniform_share
from .branches import BranchDirections
from .models import DiTBundle
from .results import ResultFileError, make_meta, save_result
from .rundir import check_input
from .sampler import sample_pairs, sample_single

__all__ = [
    "DepthConfig",
    "run_depth",
    "gint_profile",
    "gint_depth_bootstrap",
    "resolved_layers",
    "block_profile",
    "probe_readability",
    "readability_depth",
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


@torch.no_grad()
def probe_readability(
    bundle: DiTBundle,
    directions: BranchDirections,
    g: float,
    steps: Sequence[float],
    num_pairs: int,
    num_steps: int,
    class_label: int,
    sigma: float = 0.5,
    seed: int = 0,
    folds: int = 4,
    batch_size: int = 64,
) -> np.ndarray:
    """Cross-validated correctness (L, F, n) of a logistic probe per layer of replica A's final side of φ_f.

    Pairs start from eq. (67) (``sigma``), are coupled at g and sampled with DDIM η = 1; the block outputs
    of replica A at step round(steps[f]) are the features, the label is the sign of φ_fᵀx − midpoint_f of
    replica A's final sample. ``folds``-fold cross-validated logistic regression (L2, standardized features).
    Pairs are sampled ``batch_size`` per forward; at g = 0 replica A never sees B (eq. 19), so only A is
    sampled (:func:`~dit_validation.sampler.sample_single`), ``2·batch_size`` rows per forward.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    check_positive_int("batch_size", batch_size)
    want = sorted({int(np.clip(round(s), 0, num_steps - 1)) for s in steps if np.isfinite(s)})
    L, F = bundle.num_layers, directions.num
    P = num_pairs
    feats: dict[int, list[list[np.ndarray]]] = {s: [[] for _ in range(L)] for s in want}
    state = {"s": 0, "rows": 0}  # the step being run; replica A's rows lead each forward's batch
    blocks = bundle.transformer.transformer_blocks

    def hook(ell: int):
        def grab(_m, _a, out: torch.Tensor) -> None:
            if state["s"] in feats:
                feats[state["s"]][ell].append(out[: state["rows"]].flatten(1).double().cpu().numpy())

        return grab

    def on_step(s: int, _t: int, _z: torch.Tensor) -> None:
        state["s"] = s + 1

    common = dict(
        num_steps=num_steps,
        ddim_eta=1.0,
        sigma=sigma,
        class_label=class_label,
        guidance_scale=1.0,
        callback=on_step,
    )
    # one forward per step and chunk, so each forward's leading rows are the chunk's replicas A in order
    chunk = 2 * batch_size if g == 0 else batch_size
    finals = []
    handles = [blk.register_forward_hook(hook(ell)) for ell, blk in enumerate(blocks)]
    try:
        for lo in range(0, P, chunk):
            seeds = list(range(seed + lo, seed + min(lo + chunk, P)))
            state["s"], state["rows"] = 0, len(seeds)
            if g == 0:
                finals.append(sample_single(bundle, seeds, batch_size=batch_size, **common))
            else:
                finals.append(sample_pairs(bundle, seeds, g=float(g), device=bundle.device, **common)[0])
    finally:
        for h in handles:
            h.remove()
    zA = torch.cat(finals)
    labels = directions.sides(zA.double().cpu().numpy()) > 0  # (P, F)
    correct = np.full((L, F, P), np.nan)
    for f in range(F):
        if not np.isfinite(steps[f]) or labels[:, f].all() or not labels[:, f].any():
            continue
        s = int(np.clip(round(steps[f]), 0, num_steps - 1))
        y = labels[:, f].astype(int)
        k = min(folds, int(np.bincount(y).min()))
        if k < 2:
            continue
        cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        for ell in range(L):
            X = np.concatenate(feats[s][ell])  # (P, N·D)
            for train, test in cv.split(X, y):
                probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
                probe.fit(X[train], y[train])
                correct[ell, f, test] = probe.predict(X[test]) == y[test]
    return correct


def _nanmean_last(x: np.ndarray) -> np.ndarray:
    """Mean over the last axis ignoring NaN; NaN (without a warning) where a direction was not probed."""
    count = np.sum(np.isfinite(x), axis=-1)
    total = np.sum(np.where(np.isfinite(x), x, 0.0), axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def readability_depth(
    correct: np.ndarray, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accuracy (L, F), the depth fraction of accuracy gains (eq.-free; mean over directions) and its CI.

    The gain profile is the positive part of the layer-to-layer increase of accuracy above chance (the
    first layer's gain is its accuracy above ½); samples are resampled for the bootstrap.
    """
    acc = _nanmean_last(correct)  # (L, F)

    def fraction(a: np.ndarray) -> float:
        gain = np.diff(np.concatenate([np.full((1, a.shape[1]), 0.5), a]), axis=0).clip(min=0)  # (L, F)
        fractions = np.array([depth_fraction(gain[:, f]) for f in range(a.shape[1])])
        return float(np.nanmean(fractions)) if np.isfinite(fractions).any() else float("nan")

    ok = np.isfinite(acc).all(axis=0)
    if not ok.any():
        return acc, np.asarray(np.nan), np.full(2, np.nan)
    rng = np.random.default_rng(seed)
    n = correct.shape[-1]
    boot = [fraction(_nanmean_last(correct[:, ok][..., rng.integers(0, n, n)])) for _ in range(n_boot)]
    boot = np.asarray(boot)[np.isfinite(boot)]
    ci = np.percentile(boot, [2.5, 97.5]) if boot.size >= 10 else np.full(2, np.nan)
    return acc, np.asarray(fraction(acc[:, ok])), ci


@dataclass(frozen=True)
class DepthConfig:
    """Settings of the depth-localization stage."""

    probe_pairs: int = 128  # replica pairs per g for the readability probes
    n_boot: int = 200
    seed: int = 0

    def validate(self) -> None:
        check_positive_int("probe_pairs", self.probe_pairs, minimum=8)
        check_positive_int("n_boot", self.n_boot)


def run_depth(
    bundle: DiTBundle,
    cfg: DepthConfig,
    protocol2_path: str | Path,
    compare_path: str | Path,
    out_path: str | Path,
) -> Path:
    """The three depth profiles and their depth fractions per g of the Protocol II file; writes ``depth``."""
    cfg.validate()
    reader = f"the depth stage for {bundle.name}"
    m2, p2 = check_input(protocol2_path, "protocol2", {"model": bundle.name}, reader)
    mc, cmp = check_input(compare_path, "compare", {"model": bundle.name}, reader)
    g = np.asarray(p2["g"], dtype=np.float64)
    L = int(np.asarray(p2["layers"]).size)
    F = int(cmp["factor"].size)
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
    directions = BranchDirections(
        str(cmp["direction_source"]),
        cmp["phi"],
        cmp["midpoint"],
        cmp["Lambda"],
        tuple(map(str, cmp["factor_names"])),
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
        "probe_steps": np.full((g.size, F), np.nan),
        "probe_accuracy": np.full((g.size, L, F), np.nan),
        "probe_depth": np.full(g.size, np.nan),
        "probe_depth_ci": np.full((g.size, 2), np.nan),
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
        steps = np.where(cmp["splits"][j], cmp["tau_meas"][j], np.nan)
        out["probe_steps"][i] = steps
        if not np.isfinite(steps).any():  # no direction splits at this g: nothing to read out
            continue
        correct = probe_readability(
            bundle,
            directions,
            gi,
            steps,
            cfg.probe_pairs,
            int(mc["config"]["num_steps"]),
            int(mc["config"]["class_label_used"]),
            seed=cfg.seed,
        )
        acc, frac, ci = readability_depth(correct, cfg.n_boot, cfg.seed)
        out["probe_accuracy"][i], out["probe_depth"][i], out["probe_depth_ci"][i] = acc, frac, ci
    meta = make_meta(
        "depth",
        {**asdict(cfg), "model": bundle.name, "protocol2": str(protocol2_path), "compare": str(compare_path)},
        [],
        ["depth"],
        complete=True,
    )
    return save_result(out_path, meta, out)

"""Depth localization (§2.7 prediction 2, the paper's "last ≈ 5 of 28 blocks") from stored profiles, per g.

1. **Internal gap** — Protocol II's |G_int(ℓ) − 1| per layer at s = τ_spec(g) (eq. 80; Figs. 1, 9, 10)
   on its held-out basis (:mod:`dit_validation.gint`), with Protocol II's seed-bootstrap interval, and per
   layer whether G_int − 1 is resolved from 0 at all (above seed noise).
2. **Predicted commitment** — the per-block eq. (50) of the comparison: the predicted gap
   |Δs_v(ℓ)| = |s_spec(trailing) − s_spec(leading)| per block (eq. 51, 65) where defined.

3. **Causal** (:mod:`dit_validation.causal`, statistics in :mod:`dit_validation.causal_stats`) — where the
   branch decision along the learned directions φ_f is made, by intervention: the learned curvature at
   the symmetric points split exactly into one term per block, and activation patching between clones
   (block ℓ's residual write in clone A replaced by B's around τ_f). Prediction 2's verdict per g comes
   from these two (:func:`causal_stats.prediction2_verdict`), each a last-quarter share with its CI
   against the uniform share.

One statistic for all (:func:`dit_validation.analysis.depth_fraction`): the share of a per-layer profile
carried by the last quarter of the blocks, against the uniform share n_last/L. Everything goes into one
``depth`` result file. Linear probes of the branch per layer were removed: every block's output at step s
is a function of x_t whose residual stream carries φ_fᵀx_t through linearly, so no layer can read the final
branch better than the input itself, and their profile is flat by construction.

The curvature decomposition runs at every coupling of the Protocol II file that the comparison measured
(its windows are centred on the comparison's step-level τ_f(g)); the patching, which costs (L + 2) clone
continuations per pair and direction, at the couplings of ``DepthConfig.patch_g`` (every such coupling when
None; the quick grid patches at g = 0 only), centred on the measured τ_f(g).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from theory.validation import check_positive_int

from .analysis import depth_fraction, uniform_share
from .branches import directions_of
from .causal import CausalConfig, causal_depth, causal_trajectories
from .causal_stats import causal_arrays
from .gint import percentile_ci
from .models import DiTBundle, float64_copy
from .results import ResultFileError, make_meta, open_for_resume, save_result
from .rundir import check_input
from .shards import UnitShare

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
    causal: CausalConfig = CausalConfig()
    #: couplings at which the activation patching runs; None: every coupling the comparison measured
    patch_g: tuple[float, ...] | None = None

    def validate(self) -> None:
        check_positive_int("n_boot", self.n_boot)
        self.causal.validate()


#: Per-g causal arrays of the depth file and their trailing dimensions ("f": directions, "l": blocks,
#: "u": units = the embedded input and the blocks, numbers: fixed sizes).
_CAUSAL_ARRAYS = {
    "curv_change": ("f", "u"),
    "curv_share": ("f",),
    "curv_embed_share": ("f",),
    "curvature_share_last_quarter": (),
    "curvature_share_last_quarter_ci": (2,),
    "curv_windows": ("f", 2),
    "patch_baseline": ("f",),
    "patch_effect": ("f", "l"),
    "patch_effect_ci": ("f", "l", 2),
    "patch_effect_se": ("f", "l"),
    "patch_total": ("f",),
    "patch_total_ci": ("f", 2),
    "patch_resolved": ("f",),
    "patch_share": ("f",),
    "patch_share_last_quarter": (),
    "patch_share_last_quarter_ci": (2,),
    "patch_windows": ("f", 3),
}
#: causal_stats.causal_arrays' names for the two means and their CIs
_RENAMED = {
    "curv_share_mean": "curvature_share_last_quarter",
    "curv_share_ci": "curvature_share_last_quarter_ci",
    "patch_share_mean": "patch_share_last_quarter",
    "patch_share_ci": "patch_share_last_quarter_ci",
}


def _causal_placeholders(G: int, F: int, L: int) -> dict[str, np.ndarray]:
    size = {"f": F, "l": L, "u": L + 1}
    out = {}
    for name, dims in _CAUSAL_ARRAYS.items():
        shape = (G, *(size.get(d, d) for d in dims))
        if name.endswith("windows"):
            out[name] = np.full(shape, -1, dtype=np.int64)
        elif name == "patch_resolved":
            out[name] = np.zeros(shape, bool)
        else:
            out[name] = np.full(shape, np.nan)
    out["prediction2_verdict"] = np.zeros(G, dtype=np.int64)
    out["prediction2_margin"] = np.full(G, np.nan)
    out["prediction2_reason"] = np.full(
        G, "no causal measurement at this g (the comparison has no such g)", object
    )
    return out


class _Causal:
    """The causal measurements of one depth run: trajectories once, then each coupling the comparison has."""

    def __init__(self, bundle: DiTBundle, cfg: DepthConfig, cmp: dict, num_steps: int, label: int) -> None:
        self.bundle, self.cfg, self.cmp, self.S, self.label = bundle, cfg, cmp, num_steps, label
        self.directions = directions_of(cmp)
        self._bundle64: DiTBundle | None = None
        self._traj: tuple[list[int], np.ndarray] | None = None

    def patches(self, g: float) -> bool:
        want = self.cfg.patch_g
        return want is None or bool(np.any(np.isclose(np.asarray(want, dtype=np.float64), g)))

    def measure(self, out: dict[str, np.ndarray], i: int, j: int, g: float) -> None:
        """Row i of the depth file at the comparison's coupling j (= g): curvature at the step-level τ_f,
        patching at the measured τ_f (learned directions only: the others have NaN τ's)."""
        cmp = self.cmp
        tau_curv = np.asarray(cmp["tau_pred_step"][j], dtype=np.float64)
        inside = np.asarray(cmp["tau_meas_status"][j]) == 0  # TauStatus.INSIDE
        tau_patch = np.where(inside & self.patches(g), cmp["tau_meas"][j], np.nan)
        if not (np.isfinite(tau_curv).any() or np.isfinite(tau_patch).any()):
            out["prediction2_reason"][i] = "no learned direction has a τ at this g"
            return
        if self._traj is None:
            self._traj = causal_trajectories(self.bundle, self.cfg.causal, self.S, self.label)
            self._bundle64 = float64_copy(self.bundle)
        seeds, states = self._traj
        raw = causal_depth(
            self.bundle,
            self._bundle64,
            self.directions,
            seeds,
            states,
            float(g),
            tau_curv,
            tau_patch,
            self.cfg.causal,
            self.label,
        )
        arrays, verdict = causal_arrays(
            raw, self.bundle.num_layers, self.cfg.causal.n_boot, self.cfg.causal.seed
        )
        for name, value in arrays.items():
            out[_RENAMED.get(name, name)][i] = value
        out["curv_windows"][i], out["patch_windows"][i] = raw["curv_windows"], raw["patch_windows"]
        margin = verdict.margin
        out["prediction2_margin"][i] = margin
        out["prediction2_verdict"][i] = 0 if not np.isfinite(margin) else (1 if margin > 0 else -1)
        patched = "" if np.isfinite(tau_patch).any() else f" (patching not run at g = {g:g})"
        out["prediction2_reason"][i] = verdict.reason + patched


def run_depth(
    bundle: DiTBundle,
    cfg: DepthConfig,
    protocol2_path: str | Path,
    compare_path: str | Path,
    out_path: str | Path,
    share: UnitShare | None = None,
) -> Path:
    """The depth profiles and their depth fractions per g of the Protocol II file; writes ``depth``.

    The causal measurements are one unit per g, saved as they finish: a killed run resumes them from an
    incomplete file (a complete one is recomputed: its configuration names its inputs, not what they
    held). ``share``: which couplings this process measures on a rank of a job (default all of them).
    """
    share = UnitShare() if share is None else share
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
        **_causal_placeholders(g.size, int(cmp["factor"].size), L),
    }
    out["gint_excess"] = np.asarray(p2["gint_excess"], dtype=np.float64)
    out["gint_null_ci"] = np.asarray(p2["gint_null_ci"], dtype=np.float64)
    causal = _Causal(bundle, cfg, cmp, int(mc["config"]["num_steps"]), int(mc["config"]["class_label_used"]))
    jobs = []
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
        jobs.append((i, j, gi))
    config = {
        **asdict(cfg),
        "model": bundle.name,
        "protocol2": str(protocol2_path),
        "compare": str(compare_path),
    }
    prev = open_for_resume(out_path, "depth", config)
    done: list[str] = [] if prev is None or prev.complete else list(prev.meta["done"])
    if done:
        out.update({k: prev.arrays[k] for k in _causal_placeholders(1, 1, 1)})
        out["prediction2_reason"] = out["prediction2_reason"].astype(object)  # grows with longer reasons
    share.begin(out_path, make_meta("depth", config, [], done), _stored(out))
    for i, j, gi in jobs:
        key = f"g={gi:g}"
        if key in done or not share.mine(key):
            continue
        causal.measure(out, i, j, gi)
        done.append(key)
        share.saved(out_path, make_meta("depth", config, [], done), _stored(out), [key])
    if not share.finalizes:
        return Path(out_path)
    return save_result(out_path, make_meta("depth", config, [], done, complete=True), _stored(out))


def _stored(out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {**out, "prediction2_reason": out["prediction2_reason"].astype(str)}

"""The result-file contract as code: array names, named dimensions, dtypes and meta, per kind.

Every result file (one ``.npz`` per run, written by :mod:`dit_validation.results`) has a kind
(``protocol1``, ``protocol2``, ``compare``, ``theory``). For each kind :data:`SCHEMAS` lists its arrays:
their named dimensions (a named dimension has one size across the whole file, so ``G_int`` (g, layer)
must agree with ``g`` (g,) and ``layers`` (layer,)), their dtype kind and when they must be present
(``always``: also in an incomplete, resumable file; ``complete``: once ``meta["complete"]``;
``optional``: may be absent, e.g. the g = 0 control of Protocol I). ``save_result`` refuses a file that
breaks its schema and ``load_result`` refuses to read one, each with a message naming the array.
``docs/DESIGN.md`` is checked against this module by the tests.

torch-free: the figures read result files through this layer without loading torch or diffusers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = [
    "ArraySpec",
    "ResultSchema",
    "SchemaError",
    "SCHEMAS",
    "META_KEYS",
    "validate_result",
]

Presence = Literal["always", "complete", "optional"]

#: Keys of ``__meta__`` every result file carries (written by ``results.make_meta``).
META_KEYS: tuple[str, ...] = (
    "kind",
    "config",
    "seeds",
    "versions",
    "git_revision",
    "created",
    "complete",
    "done",
)


class SchemaError(ValueError):
    """A result file (or the arrays about to be written) breaks its kind's schema."""


@dataclass(frozen=True)
class ArraySpec:
    """One array of a result file: named dimensions (``()`` for a scalar), dtype kinds, presence."""

    dims: tuple[str, ...]
    dtype: str = "f"  # numpy dtype kinds accepted: f float, b bool, i/u integer, U str
    presence: Presence = "complete"
    doc: str = ""


@dataclass(frozen=True)
class ResultSchema:
    """The arrays of one result kind; ``coords`` maps a dimension to the 1-D array that labels it."""

    kind: str
    arrays: Mapping[str, ArraySpec]
    coords: Mapping[str, str] = field(default_factory=dict)
    doc: str = ""


def _a(dims: str, dtype: str = "f", presence: Presence = "complete", doc: str = "") -> ArraySpec:
    return ArraySpec(tuple(dims.split()) if dims else (), dtype, presence, doc)


_FIT = "sigmoid (lo, hi, center, width)"
_FIT_RISE = "sigmoid (lo, hi, center, width), 0 ≤ lo ≤ hi ≤ 1, center on the split grid (figures)"
_TAU_MEAS = "mean commitment step of clone agreement (clone_tau), clamped to the split grid; NaN: no split"
_TAU_CI = "95% Student interval over seed resamples, clamped to the split grid"
_TAU_STATUS = "clone_tau.TauStatus: 0 inside, 1 before step 0, 2 after the last step, 3 no split"
_TAU_BOOT = "seed-bootstrap replicates, the same resamples for every direction and g (paired)"

PROTOCOL1 = ResultSchema(
    kind="protocol1",
    doc="Protocol I (§3.1): τ_spec(g), τ_g, τ_l, Δτ (eq. 70–73), Table 1; the g = 0 shared-noise control",
    coords={"g": "g", "t_int": "t_int", "seed": "seeds"},
    arrays={
        "g": _a("g", presence="always", doc="coupling strengths (eq. 19)"),
        "t_int": _a("t_int", "i", "always", "intervention steps; always contains 0"),
        "seeds": _a("seed", "i", "always", "paired seeds"),
        "a_feat": _a(
            "g t_int seed", presence="always", doc="feature cosine similarity, eq. (70); NaN = not done"
        ),
        "d_low": _a("g t_int seed", presence="always", doc="coarse discrepancy, eq. (71)"),
        "d_high": _a("g t_int seed", presence="always", doc="fine discrepancy, eq. (72)"),
        "done_mask": _a("g seed", "b", "always", "finished (g, seed) units"),
        "control_a_feat": _a("t_int seed", presence="optional", doc="g = 0 shared-noise control, eq. (70)"),
        "control_d_low": _a("t_int seed", presence="optional"),
        "control_d_high": _a("t_int seed", presence="optional"),
        "control_done": _a("seed", "b", "optional"),
        "a_feat_median": _a("g t_int", doc="median over seeds"),
        "commit_low": _a("g t_int", doc="1 − median d_low / its t_int = 0 value"),
        "commit_high": _a("g t_int", doc="1 − median d_high / its t_int = 0 value"),
        "fit_a_feat": _a("g param", doc=_FIT),
        "fit_low": _a("g param", doc=_FIT),
        "fit_high": _a("g param", doc=_FIT),
        "tau_spec": _a("g", doc="speciation step τ_spec(g): sigmoid center of a_feat"),
        "tau_g": _a("g", doc="global commitment step τ_g (d_low)"),
        "tau_l": _a("g", doc="local commitment step τ_l (d_high)"),
        "delta_tau": _a("g", doc="Δτ = τ_l − τ_g, eq. (73)"),
        "tau_spec_ci": _a("g ci", doc="95% seed-bootstrap CI"),
        "tau_g_ci": _a("g ci"),
        "tau_l_ci": _a("g ci"),
        "delta_tau_ci": _a("g ci", doc="paired seed-bootstrap CI of Δτ (τ_l, τ_g on the same resamples)"),
        "control_a_feat_median": _a("t_int", presence="optional"),
        "control_fit_a_feat": _a("param", presence="optional", doc=_FIT),
        "control_tau_spec": _a("", presence="optional"),
        "control_tau_spec_ci": _a("ci", presence="optional"),
    },
)

PROTOCOL2 = ResultSchema(
    kind="protocol2",
    doc="Protocol II (§3.2): lead/trail mode energies per layer at s = τ_spec(g), G_int (eq. 74–80) on the "
    "paper's basis (from the measured seeds) and on a held-out basis with a seed-bootstrap interval",
    coords={"g": "g", "step": "steps", "layer": "layers", "seed": "seeds", "basis_seed": "basis_seeds"},
    arrays={
        "g": _a("g", presence="always"),
        "steps": _a("step", "i", "always", "reverse steps (the forward of step s)"),
        "layers": _a("layer", "i", "always", "transformer blocks"),
        "seeds": _a("seed", "i", "always", "measured replica pairs"),
        "basis_seeds": _a("basis_seed", "i", "always", "held-out pairs of the held-out basis (own streams)"),
        "eig0": _a("g layer mode", presence="always", doc="initial eigenvalues λ_k^(0,ℓ), eq. (76)"),
        "energy": _a("g step layer mode", presence="always", doc="λ_k(s, ℓ), eq. (75)"),
        "energy_seed": _a("g step layer mode seed", presence="always", doc="per-seed eq. (75)"),
        "heldout_eig": _a("g layer hmode", presence="always", doc="eigenvalues of the held-out basis"),
        "heldout_proj": _a(
            "g step layer hmode seed", presence="always", doc="(v_{s,m}·r_k)² on the held-out basis"
        ),
        "done_mask": _a("g", "b", "always"),
        "tau_spec": _a("g", doc="s = τ_spec(g) of eq. (77)"),
        "lead": _a("g layer", doc="λ̄_lead, eq. (78)"),
        "trail": _a("g layer", doc="λ̄_trail, eq. (79)"),
        "lead_std": _a("g layer"),
        "trail_std": _a("g layer"),
        "G_int": _a("g layer", doc="G_int = λ̄_trail/λ̄_lead, eq. (80), paper's basis"),
        "lead_band": _a("g layer mode", "b"),
        "trail_band": _a("g layer mode", "b"),
        "heldout_energy": _a("g step layer hmode", doc="eq. (75) over the measured seeds, held-out basis"),
        "gint_excess": _a("g layer", doc="G_int − 1 at τ_spec(g), held-out basis (dit_validation.gint)"),
        "gint_excess_ci": _a("g layer ci", doc="its 95% seed-bootstrap interval"),
        "gint_excess_boot": _a("g boot layer", doc="its bootstrap replicates (one resample for all layers)"),
        "gint_null": _a("g layer", doc="split-half null G − 1 at s = 0 (true value 0)"),
        "gint_null_ci": _a("g layer ci", doc="its 95% bootstrap interval"),
    },
)

THEORY = ResultSchema(
    kind="theory",
    doc="theory: the pitchfork of eq. (49), the gates of eq. (27), and the κ maps from a compare file",
    coords={"kappa": "kappa", "g_grid": "g_grid", "g": "g"},
    arrays={
        "kappa": _a("kappa", doc="κ axis of the bifurcation diagram"),
        "u_branches": _a("branch kappa", doc="(−u*, 0, +u*) of eq. (49); NaN where ±u* do not exist"),
        "u_stable": _a("branch kappa", "b"),
        "g_grid": _a("g_grid"),
        "rho": _a("g_grid", doc="ρ(g), eq. (27)"),
        "xi": _a("g_grid", doc="ξ(g), eq. (27)"),
        "g": _a("g"),
        "rho_at_g": _a("g"),
        "xi_at_g": _a("g"),
        "kappa_g": _a("g_compare", presence="optional"),
        "kappa_vk": _a("g_compare step_m layer mode", presence="optional", doc="κ_{v,k}(s, ℓ; g), eq. (50)"),
        "s_spec": _a("g_compare layer mode", presence="optional", doc="eq. (51)"),
        "gap_steps": _a("g_compare layer", presence="optional", doc="Δs_v, eq. (65)"),
        "steps": _a("step_m", presence="optional"),
        "layers": _a("layer", "fi", "optional"),
        "modes": _a("mode", "fi", "optional"),
        "mode_names": _a("mode", "U", "optional", doc="the branch directions' names (compare)"),
        "mode_learned": _a("mode", "b", "optional", doc="the branch-validity gate (compare's `learned`)"),
    },
)

_B = "step_b layer factor"  # per-block quantities: measured steps × blocks × branch directions
_GB = "g " + _B
COMPARE = ResultSchema(
    kind="compare",
    doc="predicted (step-level, per-block eq. 50, Biroli) vs measured (clone splits) speciation per branch "
    "direction and coupling; routing dominance; the eq. (56) closure; §2.7",
    coords={
        "g": "g",
        "factor": "factor",
        "t_int": "t_int",
        "step": "steps",
        "step_b": "block_steps",
        "layer": "layers",
    },
    arrays={
        # axes and branch directions
        "g": _a("g", presence="always", doc="coupling strengths (eq. 19)"),
        "rho": _a("g", presence="always", doc="ρ(g), eq. (27)"),
        "factor": _a("factor", "i", "always", doc="branch directions, global → local"),
        "factor_names": _a("factor", "U", "always"),
        "direction_source": _a("", "U", "always", doc="factors | bands"),
        "direction_band": _a(
            "factor", "U", "always", doc="factor | low | high (P's row space of eq. 71 or not)"
        ),
        "centroid": _a("factor", presence="always", doc="spectral centroid of φ_f, cycles per pixel"),
        "half_separation": _a("factor", presence="always", doc="m_f: branches at midpoint ± m_f; 0 unimodal"),
        "branch_midpoint_fraction": _a(
            "factor", presence="always", doc="model samples (g = 0) within m_f/2 of the midpoint"
        ),
        "branch_midpoint_fraction_exact": _a(
            "factor", presence="optional", doc="the same for the exact-score sampler (mixture)"
        ),
        "learned": _a("factor", "b", "always", doc="branch-validity gate: fraction ≤ 0.05 and m_f > 0"),
        "phi": _a("factor dim", presence="always", doc="unit branch directions φ_f in sample space"),
        "midpoint": _a("factor", presence="always", doc="φ_fᵀμ: branches lie on either side"),
        "Lambda": _a("factor", presence="always", doc="data variance along φ_f (Biroli's Λ)"),
        "t_int": _a("t_int", "i", "always", doc="clone split steps"),
        "steps": _a("step", "i", "always", doc="reverse steps 0 … S−1"),
        "block_steps": _a("step_b", "i", "always", doc="steps of the per-block measurements"),
        "layers": _a("layer", "i", "always"),
        # measured: clone splits at coupling g
        "agree": _a("g factor t_int seed", presence="always", doc="clone agreement along φ_f, {0, 1}"),
        "fit_meas": _a("g factor param", presence="always", doc=_FIT_RISE),
        "tau_meas": _a("g factor", presence="always", doc=_TAU_MEAS),
        "tau_meas_ci": _a("g factor ci", presence="always", doc=_TAU_CI),
        "tau_meas_status": _a("g factor", "i", "always", doc=_TAU_STATUS),
        "tau_meas_boot": _a("g factor boot", presence="always", doc=_TAU_BOOT),
        "splits": _a("g factor", "b", "always", doc="clones split along φ_f at all"),
        # predicted: step level, Biroli
        "H_step": _a("g step factor", presence="always", doc="learned curvature H_f(s; g), point mean"),
        "H_step_se": _a("g step factor", presence="always"),
        "tau_pred_step": _a("g factor", presence="always", doc="first sign change of H_f (eq. 51)"),
        "tau_pred_biroli": _a("factor", presence="always", doc="ᾱ = 1/Λ_f on the exact schedule"),
        # per-block eq. (50)
        **{k: _a(_B, presence="always") for k in ("chi", "pi", "pi_q", "pi_k", "lambda_mlp", "quad_full")},
        **{k: _a(_B, presence="always") for k in ("cross", "cross_R", "cross_q", "cross_k", "mode_gain")},
        "gamma": _a(_B, presence="always", doc="γ of eq. (36), fitted per block"),
        "gamma_b": _a(_B, presence="always"),
        "gamma_resid": _a(_B, presence="always", doc="relative residual of the γ fit"),
        "gamma_se": _a(_B, presence="always", doc="standard error of γ"),
        "m": _a(_GB, presence="always", doc="EM branch separation (eq. 34, 44)"),
        "c": _a(_GB, presence="always", doc="EM covariance (eq. 34, 44)"),
        "m_se": _a(_GB, presence="always"),
        "c_se": _a(_GB, presence="always"),
        "bimodal": _a(_GB, "b", "always", doc="likelihood-ratio test of m > 0"),
        "eta": _a(_GB, presence="always", doc="η_k(g), eq. (46) + the eq. (32) cross term"),
        "kappa": _a(_GB, presence="always", doc="κ_{v,k}, eq. (50); NaN where undefined"),
        "kappa_status": _a(_GB, "i", "always", doc="theory.KappaStatus code"),
        # routing dominance (Appendix B) inside and outside its premise
        "dominance_ratio": _a(_B, presence="always", doc="‖δA V0‖/‖A0 δV‖ on branch modes"),
        "dominance_bound": _a(_B, presence="always", doc="eq. (105)"),
        "eps_dv": _a(_B, presence="always", doc="ε_δV of branch modes, eq. (102)"),
        **{
            f"{q}_{kind}": _a("step_b layer rmode", presence="always", doc=f"{kind} hidden-space modes")
            for q in ("dominance_ratio", "dominance_bound", "eps_dv")
            for kind in ("random", "coherent")
        },
        # eq. (56) closure inputs
        "m_state": _a("step factor", presence="always", doc="EM branch separation of the states along φ_f"),
        "m_state_se": _a("step factor", presence="always"),
        "state_bimodal": _a("step factor", "b", "always"),
        # the exact-score mixture (known answer)
        "tau_exact_kappa": _a("factor", presence="optional", doc="exact κ_f = 1 step"),
        "H_exact": _a("step factor", presence="optional"),
        "tau_pred_step_exact": _a("factor", presence="optional", doc="step-level estimator on the exact ε"),
        "agree_exact": _a("factor t_int seed", presence="optional"),
        "tau_meas_exact": _a("factor", presence="optional", doc="tau_meas of the exact-score sampler"),
        "tau_meas_exact_ci": _a("factor ci", presence="optional", doc=_TAU_CI),
        "tau_meas_exact_status": _a("factor", "i", "optional", doc=_TAU_STATUS),
        "fit_meas_exact": _a("factor param", presence="optional", doc=_FIT_RISE),
        "agree_theory": _a("factor t_int", presence="optional", doc="closed-form clone agreement"),
        "closure_ratio_exact": _a("step factor", presence="optional"),
        # summaries (complete files)
        "tau_pred_block": _a("g layer factor", doc="first κ = 1 crossing per block (eq. 51); NaN undefined"),
        "kappa_defined": _a(_GB, "b"),
        "gap_meas": _a("g", doc="Δ = τ_trail − τ_lead, eq. (65)"),
        "gap_meas_ci": _a("g ci"),
        "gap_pred_step": _a("g"),
        "gap_pred_block": _a("g layer"),
        "gap_pred_biroli": _a("g"),
        "gap_lead": _a("g", "i"),
        "gap_trail": _a("g", "i"),
        "gap_fit_meas": _a("fit3", doc="(slope, intercept, R²) against ρ(g) where both directions split"),
        "gap_fit_pred_step": _a("fit3"),
        "gap_slope": _a("", doc="slope of Δ against ρ(g) through the collapse points (eq. 66)"),
        "gap_slope_ci": _a("ci", doc="its paired-bootstrap interval (Student form over the clone pairs)"),
        "collapse_points": _a("g", "b", doc="couplings where both directions of the gap split"),
        "hierarchy_pairs": _a("pair two", "i", doc="(global, local) learned directions: adjacent + extremes"),
        "hierarchy_delta": _a("pair", doc="τ(local) − τ(global) at g = 0"),
        "hierarchy_ci": _a("pair ci", doc="paired-bootstrap interval of each difference"),
        "closure_ratio": _a("step factor", doc="eq. (56) propagated / measured m"),
        "prediction_names": _a("prediction", "U"),
        "prediction_verdict": _a("prediction", "i", doc="1 holds, −1 fails, 0 undefined (verdicts.Verdict)"),
        "prediction_estimate": _a("prediction", doc="the statistic that decides it"),
        "prediction_ci": _a("prediction ci", doc="its paired 95% interval: holds above 0, fails below"),
        "prediction_unit": _a("prediction", "U"),
        "prediction_reason": _a("prediction", "U", doc="what decided it, or why it is undefined"),
    },
)

DEPTH = ResultSchema(
    kind="depth",
    doc="depth localization (§2.7 prediction 2) per g: Protocol II's internal gap, the per-block prediction",
    coords={"g": "g", "layer": "layers", "factor": "factor"},
    arrays={
        "g": _a("g", presence="always"),
        "layers": _a("layer", "i", "always"),
        "factor": _a("factor", "i", "always"),
        "uniform_share": _a("", presence="always", doc="depth fraction of a profile spread evenly"),
        "gint_profile": _a(
            "g layer", presence="always", doc="|G_int − 1| per layer at τ_spec(g), eq. (80), held-out basis"
        ),
        "gint_depth": _a("g", presence="always", doc="share of the last quarter of the blocks"),
        "gint_depth_ci": _a("g ci", presence="always", doc="95% seed bootstrap (Protocol II's replicates)"),
        "gint_excess_ci": _a(
            "g layer ci", presence="always", doc="95% seed bootstrap of G_int − 1 per layer (Protocol II)"
        ),
        "gint_resolved": _a("g layer", "b", "always", doc="that interval excludes 0: above seed noise"),
        "block_profile": _a("g layer", presence="always", doc="|Δs_v(ℓ)| of the per-block eq. (50)"),
        "block_depth": _a("g", presence="always"),
        "gint_excess": _a(
            "g layer", presence="always", doc="calibrated G_int − 1 (held-out basis, Protocol II)"
        ),
        "gint_null_ci": _a("g layer ci", presence="always", doc="split-half null at s = 0 (truth 0), its CI"),
        # causal (dit_validation.causal, causal_stats); NaN / −1 where not measured at that g
        "curv_change": _a(
            "g factor unit", presence="always", doc="change of each unit's H_f term over the window"
        ),
        "curv_share": _a(
            "g factor", presence="always", doc="last-quarter share of that change per direction"
        ),
        "curv_embed_share": _a("g factor", presence="always", doc="the embedded input's share"),
        "curvature_share_last_quarter": _a("g", presence="always", doc="mean over directions"),
        "curvature_share_last_quarter_ci": _a(
            "g ci", presence="always", doc="bootstrap over symmetric points"
        ),
        "curv_windows": _a("g factor two", "i", "always", doc="[s_lo, s_hi] around the step-level τ_f"),
        "patch_baseline": _a("g factor", presence="always", doc="clone agreement with nothing patched"),
        "patch_effect": _a("g factor layer", presence="always", doc="agreement change patching block ℓ"),
        "patch_effect_ci": _a("g factor layer ci", presence="always", doc="bootstrap over clone pairs"),
        "patch_effect_se": _a("g factor layer", presence="always"),
        "patch_total": _a("g factor", presence="always", doc="every unit patched (decides nothing)"),
        "patch_total_ci": _a("g factor ci", presence="always"),
        "patch_resolved": _a("g factor", "b", "always", doc="some block's effect resolved (Bonferroni)"),
        "patch_share": _a("g factor", presence="always", doc="last-quarter share of |effects|"),
        "patch_share_last_quarter": _a("g", presence="always", doc="mean over resolved directions"),
        "patch_share_last_quarter_ci": _a("g ci", presence="always"),
        "patch_windows": _a(
            "g factor three", "i", "always", doc="(split, first, last) patched step; −1 none"
        ),
        "prediction2_verdict": _a("g", "i", "always", doc="1 holds, −1 fails, 0 undefined"),
        "prediction2_margin": _a("g", presence="always", doc="share CI end minus uniform share"),
        "prediction2_reason": _a("g", "U", "always", doc="what decided it, or why undefined"),
    },
)

SCHEMAS: dict[str, ResultSchema] = {s.kind: s for s in (PROTOCOL1, PROTOCOL2, THEORY, COMPARE, DEPTH)}


def _where(path: Any) -> str:
    return f"{str(path)!r}: " if path is not None else ""


def validate_meta(meta: Any, path: Any = None) -> str:
    """Check ``__meta__``'s keys and types; return the kind."""
    if not isinstance(meta, Mapping):
        raise SchemaError(f"{_where(path)}__meta__ must be a JSON object, got {type(meta).__name__}")
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise SchemaError(f"{_where(path)}__meta__ lacks {', '.join(missing)}")
    kind = meta["kind"]
    if kind not in SCHEMAS:
        raise SchemaError(f"{_where(path)}unknown result kind {kind!r}; known kinds: {sorted(SCHEMAS)}")
    for key, typ in (("config", Mapping), ("seeds", list), ("versions", Mapping), ("done", list)):
        if not isinstance(meta[key], typ):
            raise SchemaError(f"{_where(path)}__meta__[{key!r}] must be a {typ.__name__}")
    if not isinstance(meta["complete"], bool):
        raise SchemaError(f"{_where(path)}__meta__['complete'] must be true or false")
    return str(kind)


def validate_result(meta: Mapping[str, Any], arrays: Mapping[str, Any], path: Any = None) -> None:
    """Raise :class:`SchemaError` naming the first array that breaks the schema of ``meta['kind']``.

    Checks presence (by ``meta['complete']``), unknown arrays, number of dimensions, dtype kind, and that
    every named dimension has one size across the file.
    """
    kind = validate_meta(meta, path)
    schema = SCHEMAS[kind]
    complete = bool(meta["complete"])
    where = _where(path)
    for name, spec in schema.arrays.items():
        needed = spec.presence == "always" or (spec.presence == "complete" and complete)
        if needed and name not in arrays:
            state = "complete" if complete else "incomplete"
            raise SchemaError(f"{where}array {name!r} is missing from this {state} {kind} file")
    unknown = sorted(set(arrays) - set(schema.arrays))
    if unknown:
        raise SchemaError(f"{where}array {unknown[0]!r} is not part of the {kind} schema")
    sizes: dict[str, tuple[int, str]] = {}
    for name, value in arrays.items():
        spec = schema.arrays[name]
        a = np.asarray(value)
        if a.ndim != len(spec.dims):
            raise SchemaError(
                f"{where}array {name!r} must have {len(spec.dims)} dimension(s) {spec.dims}, "
                f"got shape {a.shape}"
            )
        if a.dtype.kind not in spec.dtype and not (a.size == 0 and "f" in spec.dtype):
            raise SchemaError(
                f"{where}array {name!r} must have dtype kind {spec.dtype!r}, "
                f"got {a.dtype} (kind {a.dtype.kind!r})"
            )
        for dim, n in zip(spec.dims, a.shape, strict=True):
            if dim in sizes and sizes[dim][0] != n:
                other = sizes[dim][1]
                raise SchemaError(
                    f"{where}array {name!r} has {n} entries along dimension {dim!r}, "
                    f"but {other!r} has {sizes[dim][0]}"
                )
            sizes.setdefault(dim, (n, name))


def schema_markdown() -> str:
    """The result-file contract as Markdown (docs/DESIGN.md embeds it verbatim; a test keeps them equal)."""
    lines: list[str] = []
    for schema in SCHEMAS.values():
        lines += [
            f"### {schema.kind}",
            "",
            schema.doc + ".",
            "",
            "| array | dimensions | dtype | present | meaning |",
        ]
        lines.append("| --- | --- | --- | --- | --- |")
        for name, spec in schema.arrays.items():
            dims = "(" + ", ".join(spec.dims) + ")" if spec.dims else "()"
            doc = spec.doc.replace("|", "\\|")  # a literal | would end the table cell
            lines.append(f"| `{name}` | {dims} | {spec.dtype} | {spec.presence} | {doc} |")
        if schema.coords:
            coords = ", ".join(f"{dim} → `{arr}`" for dim, arr in schema.coords.items())
            lines += ["", f"Coordinates (for `Result.to_xarray()`): {coords}."]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(schema_markdown(), end="")

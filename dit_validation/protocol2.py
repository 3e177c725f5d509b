"""Protocol II (§3.2): internal mode energies and the layerwise gap, eq. (74)–(80).

Replicas stay coupled at constant g for the whole trajectory (DDIM η = 0). Forward hooks on
every transformer block see the block output H_{s,ℓ}; the replica difference
V_{s,ℓ} = (H^A − H^B)/√2 (eq. 74, conditional rows only under guidance) is never stored whole:
a fixed basis r_k^(ℓ) is built once from s = 0 through the dual Gram matrix (eq. 42–43,
Nyström: r_k = V_0ᵀ a_k / √(M λ_k)) and every later (s, ℓ) is projected on the fly, keeping
O(M·K) numbers per (s, ℓ). Projections and Gram matrices are accumulated in float64.

Two bases per layer and g, projected in the same pass:

* the paper's: from the M measured seeds themselves, K = ``num_modes`` (default M), energies normalized
  by its eigenvalues λ_k^(0) (eq. 76) — ``energy``, ``lead``, ``trail``, ``G_int`` (Figs. 1, 9, 10);
* the held-out one of :mod:`dit_validation.gint`: from ``basis_pairs`` pairs on their own random
  streams (one forward at s = 0 each), K = ``gint_modes``, energies normalized by eq. (75) over the
  measured seeds — ``gint_excess`` = G_int − 1 with a seed-bootstrap interval, and the split-half null.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from theory.validation import check_g, check_positive_int, check_range

from ._logging import progress as progress_bar
from .analysis import at_step, band_energies
from .boundary import units
from .capture import DifferenceCapture, ModeProjector, RowCollector, gram_basis
from .coupling import install_coupling
from .gint import BASIS_PAIRS, GINT_BOOT, HELDOUT_MODES, gint_interval
from .grids import FIGURE_G, PAPER_NUM_SEEDS, PAPER_NUM_STEPS, PROTOCOL2_DDIM_ETA
from .models import DiTBundle
from .results import ConfigMismatchError, load_result, make_meta, open_for_resume, save_result
from .rundir import check_input
from .sampler import (
    BASIS_STREAMS,
    MEASURED_STREAMS,
    initial_pairs,
    make_scheduler,
    predict_eps,
    resolve_guidance,
    sample_pairs,
)
from .shards import UnitShare

logger = logging.getLogger(__name__)

KIND = "protocol2"
#: What a unit writes (also into an incomplete, resumable file); the rest is computed from these.
RAW_KEYS = (
    "g",
    "steps",
    "layers",
    "seeds",
    "basis_seeds",
    "eig0",
    "energy",
    "energy_seed",
    "heldout_eig",
    "heldout_proj",
    "done_mask",
)


@dataclass(frozen=True)
class Protocol2Config:
    """Protocol II settings; defaults are the paper's (§4.2) where it states them."""

    g: tuple[float, ...] = FIGURE_G  # Fig. 1 (g = 0), Fig. 9 (0.1), Fig. 10 (0.3, 0.9)
    num_seeds: int = PAPER_NUM_SEEDS  # M paired seeds (§4.1–4.2)
    num_steps: int = PAPER_NUM_STEPS  # 100 reverse steps (§4.2)
    ddim_eta: float = PROTOCOL2_DDIM_ETA  # deterministic DDIM (§4.2)
    sigma: float = 0.5  # eq. (67); same default as Protocol I
    class_label: int = 0  # ImageNet class 0 (§4.1)
    guidance_scale: float | None = None  # None → model default (4.0 for DiT-XL/2)
    num_modes: int | None = None  # K retained modes; None → M (all of the Gram spectrum)
    lead_frac: float = 0.25  # K_lead = first quarter of the retained modes (paper does not state its bands)
    trail_frac: float = 0.25  # K_trail = last quarter
    tau_spec: tuple[float, ...] | None = (
        None  # s = τ_spec(g) of eq. (77), one per g; or from protocol1_result
    )
    protocol1_result: str | None = None  # Protocol I result file to read τ_spec(g) from (g = 0 → control)
    layers: tuple[int, ...] | None = None  # captured blocks; None → all (28 for DiT-XL/2)
    batch_size: int = 64  # replica pairs per forward
    seed_base: int = 0
    blocks: tuple[int, ...] | None = None  # coupled blocks; None → all
    gint_modes: int = HELDOUT_MODES  # K of the held-out basis (dit_validation.gint; not a function of M)
    basis_pairs: int = BASIS_PAIRS  # M_B held-out pairs that build it (their own random streams)
    basis_seed_base: int = 0  # basis pairs are keyed basis_seed_base … + M_B − 1 on the basis streams
    n_boot: int = GINT_BOOT  # seed-bootstrap replicates of the G_int interval
    boot_seed: int = 0

    def resolved(self, bundle: DiTBundle) -> Protocol2Config:
        cfg = replace(
            self,
            g=tuple(float(x) for x in self.g),
            guidance_scale=resolve_guidance(bundle, self.guidance_scale),
            num_modes=self.num_seeds if self.num_modes is None else int(self.num_modes),
            layers=tuple(range(bundle.num_layers))
            if self.layers is None
            else tuple(int(x) for x in self.layers),
            tau_spec=None if self.tau_spec is None else tuple(float(x) for x in self.tau_spec),
        )
        cfg.validate()
        check_range("layers", np.asarray(cfg.layers), 0, bundle.num_layers - 1)
        return cfg

    def validate(self) -> None:
        if not self.g:
            raise ValueError("g must contain at least one coupling strength")
        check_g(np.asarray(self.g))
        check_positive_int("num_steps", self.num_steps)
        check_positive_int("num_seeds", self.num_seeds, minimum=2)
        check_positive_int("batch_size", self.batch_size)
        check_range("ddim_eta", self.ddim_eta, 0.0, 1.0)
        check_range("sigma", self.sigma, 0.0, lo_open=True)
        check_range("lead_frac", self.lead_frac, 0.0, 1.0, lo_open=True)
        check_range("trail_frac", self.trail_frac, 0.0, 1.0, lo_open=True)
        if self.num_modes is not None:
            check_positive_int("num_modes", self.num_modes)
            if self.num_modes > self.num_seeds:
                raise ValueError(
                    f"num_modes must lie in [1, {self.num_seeds}] (Gram rank), got {self.num_modes}"
                )
        check_positive_int("basis_pairs", self.basis_pairs, minimum=2)
        check_positive_int("gint_modes", self.gint_modes)
        if self.gint_modes > self.basis_pairs:
            raise ValueError(
                f"gint_modes must lie in [1, {self.basis_pairs}] (basis_pairs, the Gram rank), "
                f"got {self.gint_modes}"
            )
        check_positive_int("n_boot", self.n_boot, minimum=10)
        check_positive_int("basis_seed_base", self.basis_seed_base, minimum=0)
        check_positive_int("boot_seed", self.boot_seed, minimum=0)
        if self.tau_spec is not None:
            if len(self.tau_spec) != len(self.g):
                raise ValueError(f"tau_spec needs one value per g ({len(self.g)}), got {len(self.tau_spec)}")
            tau = np.asarray(self.tau_spec, dtype=np.float64)
            check_range("tau_spec", tau[np.isfinite(tau)], 0, self.num_steps - 1)  # NaN: no τ for that g


def seeds_of(cfg: Protocol2Config) -> list[int]:
    return [cfg.seed_base + i for i in range(cfg.num_seeds)]


def basis_seeds_of(cfg: Protocol2Config) -> list[int]:
    """Keys of the held-out basis pairs (on :data:`~dit_validation.sampler.BASIS_STREAMS`)."""
    return [cfg.basis_seed_base + i for i in range(cfg.basis_pairs)]


def tau_from_protocol1(
    path: str | Path, g: Sequence[float], model: str | None = None, num_steps: int | None = None
) -> tuple[float, ...]:
    """τ_spec(g) read from a complete Protocol I file; g = 0 uses the shared-noise control (Fig. 5).

    The file must have been made for ``model`` with ``num_steps`` steps (when given: a τ in another model's
    or another step count's steps means nothing here) and its g grid must span every requested g; else a
    :class:`ConfigMismatchError` naming the file and the field.
    """
    want = {k: v for k, v in (("model", model), ("num_steps", num_steps)) if v is not None}
    _, a = check_input(path, "protocol1", want, f"Protocol II (eq. 77) for {model or 'this model'}")
    gs, taus = list(a["g"]), list(a["tau_spec"])
    if "control_tau_spec" in a:
        gs, taus = [0.0, *gs], [float(a["control_tau_spec"]), *taus]
    order = np.argsort(gs)
    gs, taus = np.asarray(gs)[order], np.asarray(taus)[order]
    out = []
    for x in g:
        if not gs[0] <= x <= gs[-1]:
            raise ConfigMismatchError(
                f"{str(path)!r} covers g in [{gs[0]:g}, {gs[-1]:g}] (its Protocol I grid"
                f"{' and g = 0 control' if 'control_tau_spec' in a else ', no g = 0 control'}), "
                f"but g = {x:g} was asked for; give a Protocol I file whose grid spans it"
            )
        out.append(float(np.interp(x, gs, taus)))
    return tuple(out)


def summarize(arrays: dict[str, np.ndarray], tau: np.ndarray, cfg: Protocol2Config) -> dict:
    """Per g at s = τ_spec (eq. 77): the paper's lead/trail band energies, their spread over seeds and
    G_int (eq. 78–80); the held-out basis' energy curves (eq. 75), G_int − 1 with its seed-bootstrap
    interval and replicates, and the split-half null at s = 0 (:mod:`dit_validation.gint`)."""
    per_g = [
        band_energies(
            arrays["energy"][i],
            arrays["energy_seed"][i],
            arrays["eig0"][i],
            tau[i],
            cfg.lead_frac,
            cfg.trail_frac,
        )
        for i in range(len(tau))
    ]
    out = {k: np.stack([row[k] for row in per_g]) for k in per_g[0]}
    proj = np.asarray(arrays["heldout_proj"], dtype=np.float64)  # (G, S, L, K, M)
    G, L = proj.shape[0], proj.shape[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["heldout_energy"] = proj.sum(-1) / proj[:, :1].sum(-1)  # eq. (75), (G, S, L, K)
    for key in ("gint_excess", "gint_null"):
        out[key] = np.full((G, L), np.nan)
    for key in ("gint_excess_ci", "gint_null_ci"):
        out[key] = np.full((G, L, 2), np.nan)
    out["gint_excess_boot"] = np.full((G, cfg.n_boot, L), np.nan)
    for i in range(G):
        p0 = proj[i, 0]  # (L, K, M)
        ps = at_step(proj[i], tau[i]) if np.isfinite(tau[i]) else np.full_like(p0, np.nan)
        est = gint_interval(p0, ps, cfg.n_boot, cfg.boot_seed)
        out["gint_excess"][i], out["gint_excess_ci"][i] = est.excess, est.excess_ci
        out["gint_excess_boot"][i] = est.excess_boot
        out["gint_null"][i], out["gint_null_ci"][i] = est.null, est.null_ci
    return {**out, "tau_spec": tau}


@dataclass(frozen=True)
class ModeEnergies:
    """What one coupling g of Protocol II measures, from both bases (module docstring).

    eig0 (L, K) λ_k^(0) of the paper's basis; energy_seed (S, L, K, M) per-seed eq. (75) on it;
    heldout_eig (L, K_h) eigenvalues of the held-out basis; heldout_proj (S, L, K_h, M) squared
    projections (v_{s,m}·r_k)² of the measured seeds on it.
    """

    eig0: np.ndarray
    energy_seed: np.ndarray
    heldout_eig: np.ndarray
    heldout_proj: np.ndarray


def _rows_at_start(
    bundle: DiTBundle,
    cfg: Protocol2Config,
    g: float,
    seeds: Sequence[int],
    streams: tuple[int, int],
    dtype: torch.dtype,
) -> RowCollector:
    """V_{0,ℓ} (eq. 74) of the given pairs at s = 0 under coupling g, one forward per batch."""
    guided = cfg.guidance_scale > 1.0
    shape = (bundle.latent_channels, bundle.sample_size, bundle.sample_size)
    collector = RowCollector(len(cfg.layers), len(seeds), dtype)
    t0 = int(make_scheduler(bundle, cfg.num_steps).timesteps[0])
    with install_coupling(bundle.transformer, cfg.blocks) as handle:
        for lo in range(0, len(seeds), cfg.batch_size):
            idx = list(range(lo, min(lo + cfg.batch_size, len(seeds))))
            zA, zB = initial_pairs([seeds[m] for m in idx], shape, cfg.sigma, streams)
            with DifferenceCapture(bundle.transformer, cfg.layers, guided, collector.into(idx)):
                predict_eps(
                    bundle,
                    handle,
                    torch.cat([zA, zB]).to(bundle.device),
                    t0,
                    np.full(len(idx), g),
                    cfg.class_label,
                    cfg.guidance_scale,
                )
    return collector


def _bases(collector: RowCollector, K: int, what: str) -> tuple[list[torch.Tensor], np.ndarray]:
    """Per layer, the leading K modes of eq. (42)–(43) (K, D) and their eigenvalues (L, K)."""
    bases, lam0 = [], np.full((len(collector.V), K), np.nan)
    for j, V in enumerate(collector.V):
        r, lam = gram_basis(V.to(torch.float64), K)
        collector.V[j] = None  # one layer's rows in float64 at a time
        bases.append(r)
        lam0[j] = lam.cpu().numpy()
    rank = np.isfinite(lam0).sum(axis=1)
    if np.any(rank < K):
        logger.warning(
            "%s basis has fewer than %d modes at layers %s (rank %s): those layers' modes beyond the rank "
            "are NaN; lower the mode count",
            what,
            K,
            np.flatnonzero(rank < K).tolist(),
            rank[rank < K].tolist(),
        )
    return bases, lam0


def heldout_basis(bundle: DiTBundle, cfg: Protocol2Config, g: float) -> tuple[list[torch.Tensor], np.ndarray]:
    """The held-out basis at coupling g: per layer the leading ``gint_modes`` modes (K, D) of eq. (42)–(43)
    from the ``basis_pairs`` held-out pairs' V_0, and their eigenvalues (L, K). A large held-out set is
    stored in float32 (M_B·D per layer) unless the model itself runs in float64."""
    low = torch.float64 if bundle.dtype == torch.float64 else torch.float32
    rows = _rows_at_start(bundle, cfg, g, basis_seeds_of(cfg), BASIS_STREAMS, low)
    return _bases(rows, cfg.gint_modes, "held-out")


def energies_for_g(
    bundle: DiTBundle,
    cfg: Protocol2Config,
    g: float,
    progress: bool = False,
    heldout: tuple[list[torch.Tensor], np.ndarray] | None = None,
) -> ModeEnergies:
    """Both bases at s = 0 and the constant-g trajectory of the measured seeds projected on them.

    ``heldout``: a basis from :func:`heldout_basis` for this (cfg, g) to reuse; it does not depend on the
    measured seeds, so runs that differ only in those may share it.
    """
    seeds = seeds_of(cfg)
    M, S, K = len(seeds), cfg.num_steps, cfg.num_modes
    guided = cfg.guidance_scale > 1.0
    # pass 1: V_0 at s = 0 of the measured seeds (the paper's basis, eq. 42–43) and of the held-out pairs
    paper, lam0 = _bases(_rows_at_start(bundle, cfg, g, seeds, MEASURED_STREAMS, torch.float64), K, "paper")
    held, lam_h = heldout_basis(bundle, cfg, g) if heldout is None else heldout
    # pass 2: the full constant-g trajectory, projecting every (s, ℓ) on both bases at once
    projector = ModeProjector([torch.cat([p, h]) for p, h in zip(paper, held, strict=True)], S, M)
    for lo in range(0, M, cfg.batch_size):
        idx = list(range(lo, min(lo + cfg.batch_size, M)))
        with DifferenceCapture(bundle.transformer, cfg.layers, guided, projector.into(idx)):
            sample_pairs(
                bundle,
                [seeds[m] for m in idx],
                g=g,
                num_steps=S,
                ddim_eta=cfg.ddim_eta,
                sigma=cfg.sigma,
                class_label=cfg.class_label,
                guidance_scale=cfg.guidance_scale,
                blocks=cfg.blocks,
                device=bundle.device,
                callback=projector.on_step,
                progress=progress,
            )
    sq = projector.numpy()  # (S, L, K + Kh, M)
    # eq. (75): ||V_s r_k||² / ||V_0 r_k||² with ||V_0 r_k||² = M λ_k^(0); per seed: (v_m·r_k)²/λ_k^(0)
    return ModeEnergies(lam0, sq[:, :, :K] / lam0[None, :, :, None], lam_h, sq[:, :, K:])


def run_protocol2(
    bundle: DiTBundle,
    cfg: Protocol2Config,
    out_path: str | Path,
    progress: bool = True,
    overwrite: bool = False,
    unit_callback: Callable[[list[str]], None] | None = None,
    share: UnitShare | None = None,
) -> Path:
    """Run (or resume) Protocol II; one unit per g (the basis couples all seeds); returns the file path.

    ``share``: which couplings this process runs on a rank of a job (default all of them)."""
    share = UnitShare() if share is None else share
    cfg = cfg.resolved(bundle)
    if cfg.tau_spec is None and cfg.protocol1_result is not None:
        tau = tau_from_protocol1(cfg.protocol1_result, cfg.g, model=bundle.name, num_steps=cfg.num_steps)
        cfg = replace(cfg, tau_spec=tau)
    config = {**asdict(cfg), "model": bundle.name}
    seeds = seeds_of(cfg)
    G, S, L, K, M = len(cfg.g), cfg.num_steps, len(cfg.layers), cfg.num_modes, cfg.num_seeds
    Kh = cfg.gint_modes
    prev = open_for_resume(out_path, KIND, config, overwrite)
    if prev is None:
        arrays = {
            "g": np.asarray(cfg.g),
            "steps": np.arange(S),
            "layers": np.asarray(cfg.layers),
            "seeds": np.asarray(seeds),
            "basis_seeds": np.asarray(basis_seeds_of(cfg)),
            "eig0": np.full((G, L, K), np.nan),
            "energy": np.full((G, S, L, K), np.nan),
            "energy_seed": np.full((G, S, L, K, M), np.nan),
            "heldout_eig": np.full((G, L, Kh), np.nan),
            "heldout_proj": np.full((G, S, L, Kh, M), np.nan),
            "done_mask": np.zeros(G, bool),
        }
        done: list[str] = []
    else:
        arrays, done = dict(prev[1]), list(prev[0]["done"])
    raw_keys = RAW_KEYS
    units.plan(G)
    units.advance(len(done))
    if done:
        logger.info("resuming %s: %d of %d units already done", out_path, len(done), G)
    share.begin(out_path, make_meta(KIND, config, seeds, done), {k: arrays[k] for k in raw_keys})
    for i, g in enumerate(progress_bar(cfg.g, desc="protocol2", enabled=progress)):
        key = f"g={g:g}"
        if key in done or not share.mine(key):
            continue
        got = energies_for_g(bundle, cfg, g, progress=progress)
        arrays["eig0"][i], arrays["energy_seed"][i] = got.eig0, got.energy_seed
        arrays["energy"][i] = got.energy_seed.mean(axis=-1)  # eq. (75)
        arrays["heldout_eig"][i], arrays["heldout_proj"][i] = got.heldout_eig, got.heldout_proj
        arrays["done_mask"][i] = True
        done.append(key)
        meta = make_meta(KIND, config, seeds, done, complete=False)
        share.saved(out_path, meta, {k: arrays[k] for k in raw_keys}, [key])
        units.advance(1)
        if unit_callback is not None:
            unit_callback([key])
    if not share.finalizes:
        return Path(out_path)
    tau = np.full(G, np.nan) if cfg.tau_spec is None else np.asarray(cfg.tau_spec)
    if cfg.tau_spec is None:
        logger.warning("no tau_spec or protocol1_result given: lead/trail/G_int left NaN (energies stored)")
    raw = {k: arrays[k] for k in raw_keys}
    final = {**raw, **summarize(raw, tau, cfg)}
    save_result(out_path, make_meta(KIND, config, seeds, done, complete=True), final)
    return Path(out_path)


def layer_table(path: str | Path) -> str:
    """G_int(ℓ; g) per layer (eq. 80) from a Protocol II result file: the paper's estimate, then G_int − 1
    on the held-out basis with its 95% seed-bootstrap interval (``*``: the interval excludes 0)."""
    meta, a = load_result(path, kind="protocol2", require_complete=True)
    g = a["g"]
    head = "layer " + " ".join(f"g={x:<7g}" for x in g)
    rows = [
        f"{int(ell):5d} " + " ".join(f"{a['G_int'][i, j]:9.3f}" for i in range(len(g)))
        for j, ell in enumerate(a["layers"])
    ]

    def cell(i: int, j: int) -> str:
        x, (lo, hi) = a["gint_excess"][i, j], a["gint_excess_ci"][i, j]
        mark = "*" if lo > 0 or hi < 0 else " "
        return f"{x:+.3f} [{lo:+.3f}, {hi:+.3f}]{mark}"

    held = [
        f"{int(ell):5d} " + "  ".join(cell(i, j) for i in range(len(g))) for j, ell in enumerate(a["layers"])
    ]
    c = meta["config"]
    return "\n".join(
        [
            "G_int (eq. 80) at s = tau_spec = " + ", ".join(f"{t:.1f}" for t in a["tau_spec"]),
            head,
            *rows,
            f"G_int - 1 on a held-out basis (K = {c['gint_modes']} modes from {c['basis_pairs']} held-out "
            f"pairs, M = {len(a['seeds'])} measured seeds), 95% seed bootstrap; * excludes 0",
            "layer " + "  ".join(f"g={x:<26g}" for x in g),
            *held,
        ]
    )

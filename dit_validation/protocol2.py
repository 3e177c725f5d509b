"""Protocol II (§3.2): internal mode energies and the layerwise gap, eq. (74)–(80).

Replicas stay coupled at constant g for the whole trajectory (DDIM η = 0). Forward hooks on
every transformer block see the block output H_{s,ℓ}; the replica difference
V_{s,ℓ} = (H^A − H^B)/√2 (eq. 74, conditional rows only under guidance) is never stored whole:
the fixed basis r_k^(ℓ) is built once from s = 0 through the M × M dual Gram matrix (eq. 42–43,
Nyström: r_k = V_0ᵀ a_k / √(M λ_k)) and every later (s, ℓ) is projected on the fly, keeping
O(M·K) numbers per (s, ℓ). Projections and Gram matrices are accumulated in float64.
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
from .analysis import band_energies
from .boundary import units
from .capture import DifferenceCapture, ModeProjector, RowCollector, gram_basis
from .coupling import install_coupling
from .grids import FIGURE_G, PAPER_NUM_SEEDS, PAPER_NUM_STEPS, PROTOCOL2_DDIM_ETA
from .models import DiTBundle
from .results import ConfigMismatchError, load_result, make_meta, open_for_resume, save_result
from .rundir import check_input
from .sampler import initial_pairs, make_scheduler, predict_eps, resolve_guidance, sample_pairs

logger = logging.getLogger(__name__)

KIND = "protocol2"


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
        if self.tau_spec is not None:
            if len(self.tau_spec) != len(self.g):
                raise ValueError(f"tau_spec needs one value per g ({len(self.g)}), got {len(self.tau_spec)}")
            tau = np.asarray(self.tau_spec, dtype=np.float64)
            check_range("tau_spec", tau[np.isfinite(tau)], 0, self.num_steps - 1)  # NaN: no τ for that g


def seeds_of(cfg: Protocol2Config) -> list[int]:
    return [cfg.seed_base + i for i in range(cfg.num_seeds)]


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


def summarize(arrays: dict[str, np.ndarray], tau: np.ndarray, lead_frac: float, trail_frac: float) -> dict:
    """lead/trail band energies at s = τ_spec (eq. 77–79), their spread over seeds, and G_int (eq. 80)."""
    per_g = [
        band_energies(
            arrays["energy"][i], arrays["energy_seed"][i], arrays["eig0"][i], tau[i], lead_frac, trail_frac
        )
        for i in range(len(tau))
    ]
    out = {k: np.stack([row[k] for row in per_g]) for k in per_g[0]}
    return {**out, "tau_spec": tau}


def energies_for_g(
    bundle: DiTBundle, cfg: Protocol2Config, g: float, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(λ_k^(0,ℓ) (L, K), per-seed normalized energies (S, L, K, M)) for one coupling g (eq. 75–76)."""
    seeds = seeds_of(cfg)
    M, S, K = len(seeds), cfg.num_steps, cfg.num_modes
    guided = cfg.guidance_scale > 1.0
    device = bundle.device
    shape = (bundle.latent_channels, bundle.sample_size, bundle.sample_size)
    batches = [list(range(lo, min(lo + cfg.batch_size, M))) for lo in range(0, M, cfg.batch_size)]
    # pass 1: V_0 at s = 0 for all seeds (one forward per batch), then the fixed basis (eq. 42–43)
    collector = RowCollector(len(cfg.layers), M)
    t0 = int(make_scheduler(bundle, S).timesteps[0])
    with install_coupling(bundle.transformer, cfg.blocks) as handle:
        for idx in batches:
            zA, zB = initial_pairs([seeds[m] for m in idx], shape, cfg.sigma)
            with DifferenceCapture(bundle.transformer, cfg.layers, guided, collector.into(idx)):
                predict_eps(
                    bundle,
                    handle,
                    torch.cat([zA, zB]).to(device),
                    t0,
                    np.full(len(idx), g),
                    cfg.class_label,
                    cfg.guidance_scale,
                )
    lam0 = np.full((len(cfg.layers), K), np.nan)
    bases = []
    for j in range(len(cfg.layers)):
        r, lam = gram_basis(collector.V[j], K)
        bases.append(r)
        lam0[j] = lam.cpu().numpy()
    # pass 2: the full constant-g trajectory, projecting every (s, ℓ) on the fly
    projector = ModeProjector(bases, S, M)
    for idx in batches:
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
                device=device,
                callback=projector.on_step,
                progress=progress,
            )
    # eq. (75): ||V_s r_k||² / ||V_0 r_k||² with ||V_0 r_k||² = M λ_k^(0); per seed: (v_m·r_k)²/λ_k^(0)
    return lam0, projector.numpy() / lam0[None, :, :, None]


def run_protocol2(
    bundle: DiTBundle,
    cfg: Protocol2Config,
    out_path: str | Path,
    progress: bool = True,
    overwrite: bool = False,
    unit_callback: Callable[[list[str]], None] | None = None,
) -> Path:
    """Run (or resume) Protocol II; one unit per g (the basis couples all seeds); returns the file path."""
    cfg = cfg.resolved(bundle)
    if cfg.tau_spec is None and cfg.protocol1_result is not None:
        tau = tau_from_protocol1(cfg.protocol1_result, cfg.g, model=bundle.name, num_steps=cfg.num_steps)
        cfg = replace(cfg, tau_spec=tau)
    config = {**asdict(cfg), "model": bundle.name}
    seeds = seeds_of(cfg)
    G, S, L, K, M = len(cfg.g), cfg.num_steps, len(cfg.layers), cfg.num_modes, cfg.num_seeds
    prev = open_for_resume(out_path, KIND, config, overwrite)
    if prev is None:
        arrays = {
            "g": np.asarray(cfg.g),
            "steps": np.arange(S),
            "layers": np.asarray(cfg.layers),
            "seeds": np.asarray(seeds),
            "eig0": np.full((G, L, K), np.nan),
            "energy": np.full((G, S, L, K), np.nan),
            "energy_seed": np.full((G, S, L, K, M), np.nan),
            "done_mask": np.zeros(G, bool),
        }
        done: list[str] = []
    else:
        arrays, done = dict(prev[1]), list(prev[0]["done"])
    raw_keys = ("g", "steps", "layers", "seeds", "eig0", "energy", "energy_seed", "done_mask")
    units.plan(G)
    units.advance(len(done))
    if done:
        logger.info("resuming %s: %d of %d units already done", out_path, len(done), G)
    for i, g in enumerate(progress_bar(cfg.g, desc="protocol2", enabled=progress)):
        key = f"g={g:g}"
        if key in done:
            continue
        lam0, e_seed = energies_for_g(bundle, cfg, g, progress=progress)
        arrays["eig0"][i], arrays["energy_seed"][i] = lam0, e_seed
        arrays["energy"][i] = e_seed.mean(axis=-1)  # eq. (75)
        arrays["done_mask"][i] = True
        done.append(key)
        save_result(
            out_path, make_meta(KIND, config, seeds, done, complete=False), {k: arrays[k] for k in raw_keys}
        )
        units.advance(1)
        if unit_callback is not None:
            unit_callback([key])
    tau = np.full(G, np.nan) if cfg.tau_spec is None else np.asarray(cfg.tau_spec)
    if cfg.tau_spec is None:
        logger.warning("no tau_spec or protocol1_result given: lead/trail/G_int left NaN (energies stored)")
    raw = {k: arrays[k] for k in raw_keys}
    final = {**raw, **summarize(raw, tau, cfg.lead_frac, cfg.trail_frac)}
    save_result(out_path, make_meta(KIND, config, seeds, done, complete=True), final)
    return Path(out_path)


def layer_table(path: str | Path) -> str:
    """G_int(ℓ; g) per layer (eq. 80) from a Protocol II result file."""
    _, a = load_result(path, kind="protocol2", require_complete=True)
    head = "layer " + " ".join(f"g={g:<7g}" for g in a["g"])
    rows = [
        f"{int(ell):5d} " + " ".join(f"{a['G_int'][i, j]:9.3f}" for i in range(len(a["g"])))
        for j, ell in enumerate(a["layers"])
    ]
    return (
        "G_int (eq. 80) at s = tau_spec = "
        + ", ".join(f"{t:.1f}" for t in a["tau_spec"])
        + "\n"
        + "\n".join([head, *rows])
    )

"""Protocol II (§3.2): internal mode energies and the layerwise gap, eq. (74)–(80).

Replicas stay coupled at constant g for the whole trajectory (DDIM η = 0). Forward hooks on
every transformer block see the block output H_{s,ℓ}; the replica difference
V_{s,ℓ} = (H^A − H^B)/√2 (eq. 74, conditional rows only under guidance) is never stored whole:
the fixed basis r_k^(ℓ) is built once from s = 0 through the M × M dual Gram matrix (eq. 42–43,
Nyström: r_k = V_0ᵀ a_k / √(M λ_k)) and every later (s, ℓ) is projected on the fly, keeping
O(M·K) numbers per (s, ℓ). Projections and Gram matrices are accumulated in float64.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from theory.validation import check_g, check_positive_int, check_range

from .coupling import install_coupling
from .models import DiTBundle, move_bundle
from .results import load_result, make_meta, open_for_resume, save_result
from .sampler import initial_pairs, make_scheduler, predict_eps, resolve_guidance, sample_pairs

logger = logging.getLogger(__name__)

KIND = "protocol2"


@dataclass(frozen=True)
class Protocol2Config:
    """Protocol II settings; defaults are the paper's (§4.2) where it states them."""

    g: tuple[float, ...] = (0.0, 0.1, 0.3, 0.9)  # Fig. 1 (g = 0), Fig. 9 (0.1), Fig. 10 (0.3, 0.9)
    num_seeds: int = 32  # M paired seeds (§4.1–4.2)
    num_steps: int = 100  # 100 reverse steps (§4.2)
    eta: float = 0.0  # deterministic DDIM (§4.2)
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
        check_range("eta", self.eta, 0.0, 1.0)
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
            check_range("tau_spec", np.asarray(self.tau_spec), 0, self.num_steps - 1)


def seeds_of(cfg: Protocol2Config) -> list[int]:
    return [cfg.seed_base + i for i in range(cfg.num_seeds)]


def gram_basis(V0: torch.Tensor, K: int, rtol: float = 1e-10) -> tuple[torch.Tensor, torch.Tensor]:
    """Leading eigenpairs of C_0 = V_0ᵀV_0/M (eq. 42) via the dual Gram G_0 = V_0V_0ᵀ/M (eq. 43).

    V0 (M, D) float64 → (r (K, D) orthonormal rows, λ (K,)) in descending order; modes whose
    eigenvalue is below ``rtol``·λ_max (rank deficiency) are returned as NaN.
    """
    M = V0.shape[0]
    G0 = V0 @ V0.T / M  # (M, M), eq. (43)
    lam, a = torch.linalg.eigh(G0)
    lam, a = lam.flip(0)[:K], a.flip(1)[:, :K]  # descending
    ok = lam > rtol * lam[0].clamp_min(1e-300)
    r = (V0.T @ a / torch.sqrt(M * lam.clamp_min(1e-300))).T  # (K, D): Nyström r_k = V0ᵀ a_k/√(M λ_k)
    r[~ok] = float("nan")
    lam = torch.where(ok, lam, torch.full_like(lam, float("nan")))
    return r, lam


class DifferenceCapture:
    """Forward hooks on transformer blocks: V_{s,ℓ} rows (eq. 74) collected at s = 0 or projected.

    mode "collect": stores V_0 rows into ``V0[ℓ]`` (M, D) float64; mode "project": adds
    (V_{s,ℓ} r_k)² into ``sq`` (S, L, K, M). ``rows`` are the seed indices of the current batch.
    """

    def __init__(
        self, transformer: torch.nn.Module, layers: Sequence[int], guided: bool, M: int, S: int, K: int
    ):
        self.layers = list(layers)
        self.guided = guided
        self.mode = "collect"
        self.rows: list[int] = []
        self.step = 0
        self.V0: dict[int, torch.Tensor] = {}
        self.R: dict[int, torch.Tensor] = {}
        self.M = M
        self._shape = (S, len(self.layers), K, M)
        # (V_{s,ℓ} r_k)² per seed, kept on the model's device so hooks never synchronize with it
        self.sq: torch.Tensor | None = None
        blocks = transformer.transformer_blocks
        self._handles = [
            blocks[ell].register_forward_hook(self._hook(j, ell)) for j, ell in enumerate(self.layers)
        ]

    def _hook(self, j: int, ell: int) -> Callable:
        def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
            B = output.shape[0]
            P = B // 4 if self.guided else B // 2
            hA = output[:P]
            hB = output[2 * P : 3 * P] if self.guided else output[P : 2 * P]  # conditional rows only
            v = (hA.double() - hB.double()).flatten(1) / math.sqrt(2.0)  # (P, D), eq. (74)
            if self.mode == "collect":
                if ell not in self.V0:
                    self.V0[ell] = torch.zeros(self.M, v.shape[1], dtype=torch.float64, device=v.device)
                self.V0[ell][self.rows] = v
            else:
                proj = v @ self.R[ell].T  # (P, K)
                if self.sq is None:
                    self.sq = torch.full(self._shape, float("nan"), dtype=torch.float64, device=v.device)
                self.sq[self.step, j][:, self.rows] = proj.pow(2).T

        return hook

    def on_step(self, step: int, timestep: int, latents: torch.Tensor) -> None:
        self.step = step + 1

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


DEEP_FRACTION = 5 / 28  # §4.2: the internal gap lives in the final ~5 of DiT-XL/2's 28 blocks


def deep_layer_count(num_layers: int) -> int:
    """How many final layers count as "deep": the paper's 5 of 28, scaled to the model's depth (≥ 1)."""
    return max(1, min(num_layers, round(DEEP_FRACTION * num_layers)))


def band_masks(lam0: np.ndarray, lead_frac: float, trail_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """K_lead, K_trail of eq. (78)–(79): first/last fractions of the valid (finite) modes, per layer."""
    lead = np.zeros(lam0.shape, bool)
    trail = np.zeros(lam0.shape, bool)
    for j in range(lam0.shape[0]):
        valid = np.flatnonzero(np.isfinite(lam0[j]))
        if valid.size == 0:
            continue
        n_lead = max(1, int(round(lead_frac * valid.size)))
        n_trail = max(1, int(round(trail_frac * valid.size)))
        lead[j, valid[:n_lead]] = True
        trail[j, valid[-n_trail:]] = True
    return lead, trail


def at_step(x: np.ndarray, s: float) -> np.ndarray:
    """x[s] along axis 0 with linear interpolation between integer steps (s may be fractional)."""
    s = float(np.clip(s, 0, x.shape[0] - 1))
    lo = int(np.floor(s))
    hi = min(lo + 1, x.shape[0] - 1)
    w = s - lo
    return (1 - w) * x[lo] + w * x[hi]


def tau_from_protocol1(path: str | Path, g: Sequence[float]) -> tuple[float, ...]:
    """τ_spec(g) read from a Protocol I file; g = 0 uses the shared-noise control (Fig. 5)."""
    _, a = load_result(path)
    gs, taus = list(a["g"]), list(a["tau_spec"])
    if "control_tau_spec" in a:
        gs, taus = [0.0, *gs], [float(a["control_tau_spec"]), *taus]
    order = np.argsort(gs)
    gs, taus = np.asarray(gs)[order], np.asarray(taus)[order]
    out = []
    for x in g:
        if not gs[0] <= x <= gs[-1]:
            raise ValueError(
                f"g = {x} lies outside the Protocol I grid [{gs[0]:g}, {gs[-1]:g}] of {str(path)!r}"
            )
        out.append(float(np.interp(x, gs, taus)))
    return tuple(out)


def summarize(arrays: dict[str, np.ndarray], tau: np.ndarray, lead_frac: float, trail_frac: float) -> dict:
    """lead/trail band energies at s = τ_spec (eq. 77–79), their spread over seeds, and G_int (eq. 80)."""
    G, _, L, _ = arrays["energy"].shape
    out = {k: np.full((G, L), np.nan) for k in ("lead", "trail", "lead_std", "trail_std", "G_int")}
    lead_band = np.zeros(arrays["eig0"].shape, bool)
    trail_band = np.zeros(arrays["eig0"].shape, bool)
    for i in range(G):
        lead_band[i], trail_band[i] = band_masks(arrays["eig0"][i], lead_frac, trail_frac)
        if not np.isfinite(tau[i]):
            continue
        e = at_step(arrays["energy"][i], tau[i])  # (L, K)
        es = at_step(arrays["energy_seed"][i], tau[i])  # (L, K, M)
        for j in range(L):
            lb, tb = lead_band[i, j], trail_band[i, j]
            if not lb.any():
                continue
            out["lead"][i, j], out["trail"][i, j] = e[j, lb].mean(), e[j, tb].mean()  # eq. (78), (79)
            out["lead_std"][i, j] = es[j, lb].mean(0).std()
            out["trail_std"][i, j] = es[j, tb].mean(0).std()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["G_int"] = out["trail"] / out["lead"]  # eq. (80)
    return {**out, "tau_spec": tau, "lead_band": lead_band, "trail_band": trail_band}


def energies_for_g(
    bundle: DiTBundle, cfg: Protocol2Config, g: float, device: str | torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """(λ_k^(0,ℓ) (L, K), per-seed normalized energies (S, L, K, M)) for one coupling g (eq. 75–76)."""
    seeds = seeds_of(cfg)
    M, S, K = len(seeds), cfg.num_steps, cfg.num_modes
    guided = cfg.guidance_scale > 1.0
    cap = DifferenceCapture(bundle.transformer, cfg.layers, guided, M, S, K)
    try:
        # pass 1: V_0 at s = 0 for all seeds (one forward per seed chunk), then the fixed basis
        sched = make_scheduler(bundle, S)
        shape = (bundle.latent_channels, bundle.sample_size, bundle.sample_size)
        with install_coupling(bundle.transformer, cfg.blocks) as handle:
            for lo in range(0, M, cfg.batch_size):
                idx = list(range(lo, min(lo + cfg.batch_size, M)))
                zA, zB = initial_pairs([seeds[m] for m in idx], shape, cfg.sigma)
                cap.rows = idx
                z = torch.cat([zA, zB]).to(device)
                predict_eps(
                    bundle,
                    handle,
                    z,
                    int(sched.timesteps[0]),
                    np.full(len(idx), g),
                    cfg.class_label,
                    cfg.guidance_scale,
                )
        lam0 = np.full((len(cfg.layers), K), np.nan)
        for j, ell in enumerate(cfg.layers):
            cap.R[ell], lam = gram_basis(cap.V0.pop(ell), K)
            lam0[j] = lam.cpu().numpy()
        # pass 2: the full constant-g trajectory, projecting every (s, ℓ) on the fly
        cap.mode = "project"
        for lo in range(0, M, cfg.batch_size):
            idx = list(range(lo, min(lo + cfg.batch_size, M)))
            cap.rows, cap.step = idx, 0
            sample_pairs(
                bundle,
                [seeds[m] for m in idx],
                g=g,
                num_steps=S,
                eta=cfg.eta,
                sigma=cfg.sigma,
                class_label=cfg.class_label,
                guidance_scale=cfg.guidance_scale,
                blocks=cfg.blocks,
                device=device,
                callback=cap.on_step,
            )
    finally:
        cap.remove()
    # eq. (75): ||V_s r_k||² / ||V_0 r_k||² with ||V_0 r_k||² = M λ_k^(0); per seed: (v_m·r_k)²/λ_k^(0)
    sq = cap.sq.cpu().numpy() if cap.sq is not None else np.full(cap._shape, np.nan)
    return lam0, sq / lam0[None, :, :, None]


def run_protocol2(
    bundle: DiTBundle,
    cfg: Protocol2Config,
    out_path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    overwrite: bool = False,
    unit_callback: Callable[[list[str]], None] | None = None,
) -> Path:
    """Run (or resume) Protocol II; one unit per g (the basis couples all seeds); returns the file path."""
    cfg = cfg.resolved(bundle)
    if cfg.tau_spec is None and cfg.protocol1_result is not None:
        cfg = replace(cfg, tau_spec=tau_from_protocol1(cfg.protocol1_result, cfg.g))
    move_bundle(bundle, device, dtype)
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
    for i, g in enumerate(tqdm(cfg.g, disable=not progress, desc="protocol2")):
        key = f"g={g:g}"
        if key in done:
            continue
        lam0, e_seed = energies_for_g(bundle, cfg, g, device)
        arrays["eig0"][i], arrays["energy_seed"][i] = lam0, e_seed
        arrays["energy"][i] = e_seed.mean(axis=-1)  # eq. (75)
        arrays["done_mask"][i] = True
        done.append(key)
        save_result(
            out_path, make_meta(KIND, config, seeds, done, complete=False), {k: arrays[k] for k in raw_keys}
        )
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
    _, a = load_result(path)
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


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``synchrogap protocol2``."""
    from .cli import add_common_args, run_command

    p = subparsers.add_parser("protocol2", help="Protocol II: internal mode energies across layers (§3.2)")
    add_common_args(p, default_g=Protocol2Config.g, default_eta=Protocol2Config.eta)
    p.add_argument(
        "--tau-spec", type=float, nargs="+", default=None, help="s = τ_spec(g) of eq. (77), one per g"
    )
    p.add_argument("--protocol1", default=None, help="Protocol I result file to read τ_spec(g) from")
    p.add_argument("--modes", type=int, default=None, help="retained modes K (default M)")

    def make_config(args: argparse.Namespace, t_int: tuple[int, ...] | None) -> Protocol2Config:
        return Protocol2Config(
            g=tuple(args.g),
            num_seeds=args.seeds,
            num_steps=args.steps,
            eta=args.eta,
            sigma=args.sigma,
            class_label=args.class_label,
            guidance_scale=args.guidance,
            num_modes=args.modes,
            tau_spec=None if args.tau_spec is None else tuple(args.tau_spec),
            protocol1_result=args.protocol1,
            batch_size=args.batch_size,
            seed_base=args.seed_base,
        )

    p.set_defaults(
        func=lambda args, parser: run_command(args, parser, make_config, run_protocol2, layer_table)
    )

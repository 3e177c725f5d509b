"""Protocol I (§3.1): speciation time and scale-dependent commitment, eq. (70)–(73), Table 1.

For each coupling g, two replicas start from the variance-preserving pair of eq. (67), are
coupled with strength g for steps s < t_int and evolve independently afterwards (DDIM, η = 1).
The final images give a_feat (eq. 70), d_low, d_high (eq. 71–72); medians over M paired seeds are
fitted with sigmoids whose midpoints are τ_spec(g), τ_g(g), τ_l(g), and Δτ = τ_l − τ_g (eq. 73),
each with a 95% seed-bootstrap CI. The g = 0 control (Fig. 5) shares the DDIM noise until t_int.
Prefix sharing: the coupled trunk is advanced once per seed and branched at every t_int.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from theory.validation import check_g, check_positive_int, check_range

from . import fits, metrics
from ._logging import progress as progress_bar
from .boundary import units
from .encoders import get_encoder
from .grids import PAPER_NUM_SEEDS, PAPER_NUM_STEPS, PROTOCOL1_DDIM_ETA, PROTOCOL1_G
from .models import DiTBundle
from .results import load_result, make_meta, open_for_resume, save_result
from .sampler import resolve_guidance, sample_branched
from .shards import UnitShare

logger = logging.getLogger(__name__)

KIND = "protocol1"


@dataclass(frozen=True)
class Protocol1Config:
    """Protocol I settings; defaults are the paper's (§4.1) where it states them."""

    g: tuple[float, ...] = PROTOCOL1_G  # §4.1, Table 1
    t_int: tuple[int, ...] | None = None  # None → every step 0..num_steps (§4.1 "we sweep 100 reverse steps")
    num_seeds: int = PAPER_NUM_SEEDS  # M = 32 paired seeds (§4.1)
    num_steps: int = PAPER_NUM_STEPS  # 100 DDIM steps (§4.1)
    ddim_eta: float = PROTOCOL1_DDIM_ETA  # DDIM η = 1 ≈ DDPM (§3.1, §4.1)
    sigma: float = 0.5  # eq. (67); the paper gives no value: ϱ(0.5) = 0.6 (eq. 69), a clearly shared start
    class_label: int = 0  # ImageNet class 0 (§4.1)
    guidance_scale: float | None = (
        None  # None → the model's default (4.0 for DiT-XL/2, diffusers DiTPipeline)
    )
    pool: int | None = None  # side of P's grid (eq. 71); None → metrics.default_pool (8 × 8 at 256 px)
    encoder: str | None = None  # φ of eq. (70); None → the model's default ("resnet50" for DiT-XL/2)
    batch_size: int = 64  # replica pairs per forward
    seed_chunk: int = 4  # seeds per resumable unit group (file rewritten after each group)
    n_boot: int = 1000  # bootstrap resamples for the 95% CIs
    control: bool = True  # the g = 0 shared-noise control of Fig. 5
    seed_base: int = 0  # seeds are seed_base .. seed_base + M − 1
    blocks: tuple[int, ...] | None = None  # coupled blocks; None → all (§4.1)

    def resolved(self, bundle: DiTBundle) -> Protocol1Config:
        """Fill the model-dependent defaults and validate every field."""
        cfg = replace(
            self,
            g=tuple(float(x) for x in self.g),
            t_int=tuple(range(self.num_steps + 1))
            if self.t_int is None
            else tuple(sorted({int(t) for t in self.t_int})),
            guidance_scale=resolve_guidance(bundle, self.guidance_scale),
            pool=metrics.default_pool(bundle.image_size) if self.pool is None else int(self.pool),
            encoder=bundle.encoder if self.encoder is None else self.encoder,
            blocks=None if self.blocks is None else tuple(int(b) for b in self.blocks),
        )
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if not self.g:
            raise ValueError("g must contain at least one coupling strength")
        check_g(np.asarray(self.g))
        check_positive_int("num_steps", self.num_steps)
        check_positive_int("num_seeds", self.num_seeds)
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("seed_chunk", self.seed_chunk)
        check_positive_int("n_boot", self.n_boot)
        check_range("ddim_eta", self.ddim_eta, 0.0, 1.0)
        check_range("sigma", self.sigma, 0.0)
        if self.t_int is not None:
            check_range("t_int", np.asarray(self.t_int), 0, self.num_steps)
            if 0 not in self.t_int:
                raise ValueError("t_int must contain 0 (the never-coupled baseline of the commitment score)")
            if len(self.t_int) < 2:
                raise ValueError(f"t_int needs at least 2 grid points, got {list(self.t_int)}")


def seeds_of(cfg: Protocol1Config) -> list[int]:
    return [cfg.seed_base + i for i in range(cfg.num_seeds)]


@torch.no_grad()
def decode_images(bundle: DiTBundle, z: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Final latents → images in [0, 1] (as diffusers' DiTPipeline: x/2 + 0.5, clamped).

    Latent models decode with the VAE after dividing by ``vae.config.scaling_factor`` (read from
    the config, never re-typed); pixel-space and random bundles use the samples as images.
    """
    vae = bundle.vae
    if vae is None:
        x = z
    else:
        p = next(vae.parameters())
        parts = [
            vae.decode(z[i : i + batch_size].to(p.device, p.dtype) / vae.config.scaling_factor).sample.float()
            for i in range(0, z.shape[0], batch_size)
        ]
        x = torch.cat(parts).to(z.device)
    return (x.double() / 2 + 0.5).clamp(0, 1)


def pair_metrics(
    bundle: DiTBundle, encode: Callable, zA: torch.Tensor, zB: torch.Tensor, pool: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a_feat, d_low, d_high) per pair, eq. (70)–(72), from final latents of both replicas."""
    xA, xB = decode_images(bundle, zA), decode_images(bundle, zB)
    a = metrics.feature_cosine(encode(xA), encode(xB))
    return (
        a.cpu().numpy(),
        metrics.d_low(xA, xB, pool).cpu().numpy(),
        metrics.d_high(xA, xB, pool).cpu().numpy(),
    )


def _empty_arrays(cfg: Protocol1Config) -> dict[str, np.ndarray]:
    G, T, M = len(cfg.g), len(cfg.t_int), cfg.num_seeds
    nan = np.full((G, T, M), np.nan)
    out = {
        "g": np.asarray(cfg.g),
        "t_int": np.asarray(cfg.t_int),
        "seeds": np.asarray(seeds_of(cfg)),
        "a_feat": nan.copy(),
        "d_low": nan.copy(),
        "d_high": nan.copy(),
        "done_mask": np.zeros((G, M), bool),
    }
    if cfg.control:
        out.update(
            control_a_feat=np.full((T, M), np.nan),
            control_d_low=np.full((T, M), np.nan),
            control_d_high=np.full((T, M), np.nan),
            control_done=np.zeros(M, bool),
        )
    return out


def _commit(Y: np.ndarray) -> np.ndarray:
    return metrics.commitment_score(np.median(Y, axis=1))


def summarize(arrays: dict[str, np.ndarray], n_boot: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Medians, commitment scores, sigmoid fits, τ's, Δτ and bootstrap CIs (Table 1 rows)."""
    t = arrays["t_int"].astype(np.float64)
    G = len(arrays["g"])
    out: dict[str, np.ndarray] = {
        "a_feat_median": np.median(arrays["a_feat"], axis=2),
        "commit_low": np.stack([_commit(arrays["d_low"][i]) for i in range(G)]),
        "commit_high": np.stack([_commit(arrays["d_high"][i]) for i in range(G)]),
    }
    boot = {}
    for name, key, curve, tau in (
        ("fit_a_feat", "a_feat", fits.median_curve, "tau_spec"),
        ("fit_low", "d_low", _commit, "tau_g"),
        ("fit_high", "d_high", _commit, "tau_l"),
    ):
        res = [fits.bootstrap_centers(t, arrays[key][i], curve, n_boot, seed) for i in range(G)]
        out[name] = np.stack([f.params for f, _ in res])
        out[tau] = out[name][:, 2].copy()
        boot[tau] = np.stack([c for _, c in res])  # (G, n_boot), the same resamples for every curve
        out[f"{tau}_ci"] = np.stack([fits.percentile_interval(c) for c in boot[tau]])
    out["delta_tau"] = out["tau_l"] - out["tau_g"]  # eq. (73)
    # paired: τ_l and τ_g refitted on the same seed resamples (Table 1's Δτ, §2.7 prediction 1 in pixels)
    out["delta_tau_ci"] = np.stack([fits.percentile_interval(d) for d in boot["tau_l"] - boot["tau_g"]])
    if "control_a_feat" in arrays:
        f, ci = fits.bootstrap_center(t, arrays["control_a_feat"], fits.median_curve, n_boot, seed)
        out.update(
            control_a_feat_median=np.median(arrays["control_a_feat"], axis=1),
            control_fit_a_feat=f.params,
            control_tau_spec=np.asarray(f.center),
            control_tau_spec_ci=ci,
        )
    return out


def run_protocol1(
    bundle: DiTBundle,
    cfg: Protocol1Config,
    out_path: str | Path,
    progress: bool = True,
    overwrite: bool = False,
    unit_callback: Callable[[list[str]], None] | None = None,
    share: UnitShare | None = None,
) -> Path:
    """Run (or resume) Protocol I on the bundle's device and dtype; write one result file, return its path.

    Units are (g, seed) and ("control", seed); the file is rewritten after every group of
    ``seed_chunk`` seeds, and a rerun skips the units listed in its ``done``. ``unit_callback``
    receives the unit keys just saved (tests use it to simulate a kill). ``share``: which groups this
    process runs on a rank of a job (:mod:`dit_validation.shards`; default all of them).
    """
    share = UnitShare() if share is None else share
    cfg = cfg.resolved(bundle)
    device = bundle.device
    config = {**asdict(cfg), "model": bundle.name}
    seeds = seeds_of(cfg)
    prev = open_for_resume(out_path, KIND, config, overwrite)
    arrays = _empty_arrays(cfg) if prev is None else dict(prev[1])
    done: list[str] = [] if prev is None else list(prev[0]["done"])
    encode = get_encoder(cfg.encoder, bundle, device)
    jobs = [(i, g, False) for i, g in enumerate(cfg.g)] + ([(-1, 0.0, True)] if cfg.control else [])
    units.plan(len(jobs) * len(seeds))
    units.advance(len(done))
    if done:
        logger.info("resuming %s: %d of %d units already done", out_path, len(done), len(jobs) * len(seeds))
    share.begin(out_path, make_meta(KIND, config, seeds, done, complete=False), arrays)
    for gi, g, control in progress_bar(jobs, desc="protocol1", enabled=progress):
        tag = "control" if control else f"g={g:g}"
        todo = [m for m, s in enumerate(seeds) if f"{tag}/seed={s}" not in done]
        for lo in range(0, len(todo), cfg.seed_chunk):
            idx = todo[lo : lo + cfg.seed_chunk]
            keys = [f"{tag}/seed={seeds[m]}" for m in idx]
            if not share.mine(keys[0]):
                continue
            finals = sample_branched(
                bundle,
                [seeds[m] for m in idx],
                cfg.t_int,
                g=g,
                shared_trunk_noise=control,
                num_steps=cfg.num_steps,
                ddim_eta=cfg.ddim_eta,
                sigma=cfg.sigma,
                class_label=cfg.class_label,
                guidance_scale=cfg.guidance_scale,
                blocks=cfg.blocks,
                device=device,
                batch_size=cfg.batch_size,
                progress=progress,
            )
            for ti, t in enumerate(cfg.t_int):
                a, dl, dh = pair_metrics(bundle, encode, *finals[t], cfg.pool)
                if control:
                    arrays["control_a_feat"][ti, idx], arrays["control_d_low"][ti, idx] = a, dl
                    arrays["control_d_high"][ti, idx] = dh
                else:
                    (
                        arrays["a_feat"][gi, ti, idx],
                        arrays["d_low"][gi, ti, idx],
                        arrays["d_high"][gi, ti, idx],
                    ) = a, dl, dh
            done += keys
            if control:
                arrays["control_done"][idx] = True
            else:
                arrays["done_mask"][gi, idx] = True
            share.saved(out_path, make_meta(KIND, config, seeds, done, complete=False), arrays, keys)
            logger.info(
                "protocol1: saved %d unit(s): %s",
                len(keys),
                keys[0] if len(keys) == 1 else f"{keys[0]} … {keys[-1]}",
            )
            units.advance(len(keys))
            if unit_callback is not None:
                unit_callback(keys)
    if not share.finalizes:
        return Path(out_path)
    raw = {k: v for k, v in arrays.items() if k in _empty_arrays(cfg)}
    final = {**raw, **summarize(raw, cfg.n_boot)}
    save_result(out_path, make_meta(KIND, config, seeds, done, complete=True), final)
    return Path(out_path)


def _fmt(x: float) -> str:
    return f"{x:6.1f}" if np.isfinite(x) else "   n/a"  # a flat curve has no sigmoid midpoint


def table1(path: str | Path) -> str:
    """Table 1 of the paper (τ_spec with 95% CI, plus τ_g, τ_l, Δτ) from a result file, as text."""
    _, a = load_result(path)
    lines = ["   g    tau_spec [95% CI]        tau_g   tau_l   delta_tau"]
    for i, g in enumerate(a["g"]):
        lo, hi = a["tau_spec_ci"][i]
        lines.append(
            f"  {g:4.2f}  {_fmt(a['tau_spec'][i])} [{_fmt(lo)}, {_fmt(hi)}]   "
            f"{_fmt(a['tau_g'][i])}  {_fmt(a['tau_l'][i])}  {_fmt(a['delta_tau'][i])}"
        )
    if "control_tau_spec" in a:
        lo, hi = a["control_tau_spec_ci"]
        lines.append(
            f"  ctrl  {_fmt(float(a['control_tau_spec']))} [{_fmt(lo)}, {_fmt(hi)}]   "
            "(g = 0, shared noise until t_int, Fig. 5)"
        )
    return "\n".join(lines)

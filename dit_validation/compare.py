"""Predicted vs measured: `synchrogap compare --model M [--quick|--full]`.

For a testbed DiT (or any DiT bundle) this writes one `compare` result file (arrays documented in
docs/DESIGN.md, "compare arrays") and a Markdown table `compare.md`:

1. per-factor speciation (mixture): exact κ_f = 1 step (theory) vs the exact-score sampler vs the DiT, all
   from the same g = 0 shared-noise clone experiment (`theory.multiscale.clone_experiment`), τ = fitted
   sigmoid center of the mean agreement with bootstrap CIs over seeds (`fits.bootstrap_center`). On digits
   the single "factor" is the CNN class of the output.
2. block quantities inside the DiT along a fixed Protocol II basis (`measure`, `gamma`): χ, π, λ^MLP, cross,
   m, c, γ → η_k(g) (eq. 46), κ_{v,k} (eq. 50), predicted per-mode speciation steps (eq. 51); measured
   per-mode steps from the Protocol II energies; Spearman rank correlation per (g, ℓ).
3. gap vs ρ(g): measured internal gap G_int − 1 (eq. 80) at s = τ (the DiT's g = 0 clone τ), predicted gap
   Δs_v (eq. 65) from κ; slope, intercept, R² of the linear fit in ρ(g).
4. the four predictions of §2.7 (hierarchy, depth localization, natural gap, collapse), each with a signed
   margin (positive = holds).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

import theory
from theory.multiscale import (
    DEFAULT_MIXTURE,
    clone_agreement,
    clone_experiment,
    exact_clone_agreement,
    mixture_eps,
    patterns,
    speciation_alpha_bar,
)
from theory.schedules import DDPMSchedule, ddim_score_gain, sampling_timesteps, step_at_alpha_bar

from .compare_report import gap_fit, markdown_table, predictions, spearman_per
from .fits import bootstrap_center
from .gamma import block_odd_response, estimate_gamma, step_odd_response
from .grids import PAPER_G
from .measure import (
    block_quantities,
    common_mode_states,
    cross_of_g,
    dominance,
    linearized_copy,
    mixture_moments,
    pi_of_g,
    replica_projections,
)
from .models import DiTBundle
from .results import make_meta, save_result

log = logging.getLogger(__name__)

KIND = "compare"


@dataclass(frozen=True)
class CompareConfig:
    """Grid of the comparison; `QUICK` fits the 10-minute CPU budget, `FULL` is the paper-size GPU grid."""

    grid: str = "quick"
    g: tuple[float, ...] = PAPER_G
    num_steps: int = 50  # reverse steps S (the paper uses 100 for DiT-XL/2)
    clone_seeds: int = 48  # M of the clone experiment
    t_int_stride: int = 5
    pair_seeds: int = 16  # M of Protocol II
    num_modes: int = 8  # K fixed-basis modes
    measure_points: int = 10  # S_m steps where block quantities are measured
    sigma: float = 0.5  # eq. (67), as Protocol I/II
    # None → the null class (unconditional generation) for class-conditional models, so that which class
    # is generated is itself decided by the reverse dynamics (the speciation under study); 0 for the
    # one-class mixture model
    class_label: int | None = None
    energy_threshold: float = 2.0  # measured per-mode step: energy first reaches 2× its step-0 value
    decay_threshold: float = 0.5  # retention: first step where the energy has fallen to half
    n_boot: int = 200
    seed: int = 0


QUICK = CompareConfig()
FULL = CompareConfig(
    grid="full",
    num_steps=100,
    clone_seeds=256,
    t_int_stride=4,
    pair_seeds=32,
    num_modes=16,
    measure_points=25,
    n_boot=1000,
)


def dit_eps_fn(bundle: DiTBundle, label: int):
    """numpy float64 (B, C, H, W), timestep → ε̂ float64 from the DiT (guidance 1, first C channels)."""
    dit = bundle.transformer
    param = next(dit.parameters())
    C = bundle.latent_channels
    device = bundle.device

    @torch.no_grad()
    def eps(x: np.ndarray, t: int) -> np.ndarray:
        xt = torch.as_tensor(x, dtype=param.dtype, device=device)
        ts = torch.full((x.shape[0],), int(t), dtype=torch.long, device=device)
        ys = torch.full((x.shape[0],), int(label), dtype=torch.long, device=device)
        return dit(xt, timestep=ts, class_labels=ys).sample[:, :C].double().cpu().numpy()

    return eps


def _fit_curves(t: np.ndarray, agree: np.ndarray, cfg: CompareConfig) -> tuple[np.ndarray, ...]:
    """(mean curves (F, T), fits (F, 4), τ (F,), CI (F, 2)) from per-seed agreement (F, T, M)."""
    F = agree.shape[0]
    fits, tau, ci = np.full((F, 4), np.nan), np.full(F, np.nan), np.full((F, 2), np.nan)
    for f in range(F):
        # mean, not median: per-seed agreement is binary, its median is a step function
        fit, c = bootstrap_center(
            t, agree[f], curve=lambda Y: Y.mean(axis=1), n_boot=cfg.n_boot, seed=cfg.seed
        )
        fits[f], tau[f], ci[f] = fit.params, fit.center, c
    return agree.mean(axis=2), fits, tau, ci


def clone_section(bundle: DiTBundle, dataset: str, cfg: CompareConfig) -> dict[str, np.ndarray]:
    """Per-factor speciation (section 1): theory, exact-score sampler and DiT on one step axis."""
    S = cfg.num_steps
    t_int = np.arange(0, S + 1, cfg.t_int_stride)
    shape = (bundle.latent_channels, bundle.sample_size, bundle.sample_size)
    ab = DDPMSchedule().alphas_cumprod
    pairs = clone_experiment(
        dit_eps_fn(bundle, cfg.class_label),
        shape,
        S,
        t_int,
        cfg.clone_seeds,
        seed=cfg.seed,
        eta=1.0,
        alphas_cumprod=ab,
    )
    out: dict[str, np.ndarray] = {"t_int": t_int.astype(np.float64)}
    if dataset == "mixture":
        mix = DEFAULT_MIXTURE
        agree_dit = clone_agreement(mix, pairs)
        exact = clone_experiment(
            lambda x, t: mixture_eps(mix, x, ab[t]),
            shape,
            S,
            t_int,
            cfg.clone_seeds,
            seed=cfg.seed,
            eta=1.0,
            alphas_cumprod=ab,
        )
        agree_ex = clone_agreement(mix, exact)
        ts = sampling_timesteps(DDPMSchedule(), S)
        ab_split = np.array([ab[ts[s]] if s < S else 1.0 - 1e-12 for s in t_int])
        out["agree_theory"] = exact_clone_agreement(mix, ab_split)
        out["tau_kappa"] = step_at_alpha_bar(DDPMSchedule(), speciation_alpha_bar(mix), S)
        th = [
            bootstrap_center(t_int, np.repeat(a[:, None], 2, 1), curve=lambda Y: Y[:, 0], n_boot=1)[0]
            for a in out["agree_theory"]
        ]
        out["tau_theory"] = np.array([f.center for f in th])
        out["agree_exact"], out["fit_exact"], out["tau_exact"], out["tau_exact_ci"] = _fit_curves(
            t_int, agree_ex, cfg
        )
        out["factor"] = np.arange(mix.num_factors, dtype=np.float64)
        out.update(step_gamma(bundle, cfg))
    else:
        from .testbed.factor_encoder import digits_cnn_labels

        T, _, M = pairs.shape[:3]
        lab = digits_cnn_labels(pairs.reshape(-1, *shape)).reshape(T, 2, M)
        agree_dit = (lab[:, 0] == lab[:, 1]).astype(np.float64)[None]  # (1, T, M)
        out["factor"] = np.zeros(1)
    out["agree_dit"], out["fit_dit"], out["tau_dit"], out["tau_dit_ci"] = _fit_curves(t_int, agree_dit, cfg)
    return out


def step_gamma(bundle: DiTBundle, cfg: CompareConfig, n_steps: int = 5) -> dict[str, np.ndarray]:
    """γ of one whole reverse step along each φ_f: the DiT's vs the exact γ_s (mixture only, eq. 36).

    The odd response is probed at a typical point of the decision boundary (ξ ⊥ all φ_f, scaled to the
    marginal variance v_t) with the exact (m_f, c) = (α_t A_f, v_t); the exact-score step gives γ_s exactly
    (tests/test_gamma.py), the DiT's deviation measures how much of the score nonlinearity it has learned.
    """
    mix, S = DEFAULT_MIXTURE, cfg.num_steps
    ab, ts = DDPMSchedule().alphas_cumprod, sampling_timesteps(DDPMSchedule(), S)
    eps = dit_eps_fn(bundle, cfg.class_label)
    phi = patterns(mix)
    noise = np.random.default_rng(cfg.seed).standard_normal(mix.dim)
    noise -= phi.T @ (phi @ noise)  # on every factor's decision boundary
    steps = np.unique(np.linspace(S * 0.2, S * 0.8, n_steps).round().astype(int))
    gamma_dit = np.full((steps.size, mix.num_factors), np.nan)
    gamma_exact = np.full(steps.size, np.nan)
    for i, s in enumerate(steps):
        abt, abp = float(ab[ts[s]]), float(ab[ts[s + 1]])
        v = abt * mix.s**2 + 1 - abt
        x0 = (np.sqrt(v) * noise).reshape(mix.channels, mix.size, mix.size)
        gamma_exact[i] = ddim_score_gain(abt, abp)
        for f in range(mix.num_factors):
            D = step_odd_response(lambda x, _ab, t=int(ts[s]): eps(x, t), mix, f, x0, abt, abp)
            gamma_dit[i, f] = estimate_gamma(D, np.sqrt(abt) * mix.amplitudes[f], v)[0]
    return {
        "gamma_steps": steps.astype(np.float64),
        "gamma_step_exact": gamma_exact,
        "gamma_step_dit": gamma_dit,
    }


def internal_section(bundle: DiTBundle, cfg: CompareConfig) -> dict[str, np.ndarray]:
    """Block quantities (section 2): JVP-measured χ, π, λ^MLP, cross; m, c; γ; energies."""
    L = bundle.num_layers
    layers = list(range(L))
    S, K = cfg.num_steps, cfg.num_modes
    basis, lam0, sq = replica_projections(
        bundle,
        cfg.g,
        S,
        range(cfg.seed, cfg.seed + cfg.pair_seeds),
        cfg.sigma,
        layers,
        K,
        cfg.class_label,
    )
    steps = np.unique(np.linspace(0, S - 1, cfg.measure_points).round().astype(int))
    states = common_mode_states(bundle, S, cfg.seed, layers, steps, cfg.class_label)
    timesteps = sampling_timesteps(DDPMSchedule(), S)
    lin = linearized_copy(bundle.transformer)
    names = ("chi", "pi", "pi_q", "pi_k", "lambda_mlp", "cross", "cross_R", "cross_q", "cross_k", "quad_full")
    q = {n: np.full((len(steps), L, K), np.nan) for n in names}
    for n in ("gamma_k", "dominance_ratio", "dominance_bound", "dominance_holds"):
        q[n] = np.full((len(steps), L, K), np.nan)
    # m_k, c_k (eq. 44) per g from the per-seed projections at the measured steps (the forward of step s)
    sq_m = sq[:, steps]  # (G, S_m, L, K, M)
    p = np.sqrt(sq_m)
    m_g, c_g = mixture_moments(p, axis=-1)
    for i, s in enumerate(steps):
        for ell in layers:
            H0 = states[(int(s), ell)]
            r = torch.from_numpy(basis[ell]).view(K, *H0.shape)
            ok = torch.isfinite(r).flatten(1).all(1)
            if not bool(ok.any()):
                continue
            vals = block_quantities(lin, ell, int(timesteps[s]), cfg.class_label, H0, r[ok])
            for n in names:
                q[n][i, ell, ok.numpy()] = vals[n]
            dom = dominance(lin, ell, int(timesteps[s]), cfg.class_label, H0, r[ok])  # Appendix B, eq. (105)
            for n in ("ratio", "bound", "holds"):
                q[f"dominance_{n}"][i, ell, ok.numpy()] = dom[n]
            for k in np.flatnonzero(ok.numpy()):
                D = block_odd_response(lin, ell, int(timesteps[s]), cfg.class_label, H0, r[k])
                q["gamma_k"][i, ell, k] = estimate_gamma(D, m_g[0, i, ell, k], c_g[0, i, ell, k])[0]
    with np.errstate(all="ignore"):
        energy_seed = sq / lam0[None, None, :, :, None]  # eq. (75) per seed
    gamma = np.nanmedian(np.where(np.isfinite(q["gamma_k"]), q["gamma_k"], np.nan), axis=-1)
    return {
        **q,
        "gamma": gamma,
        "m_g": m_g,
        "c_g": c_g,
        "m": m_g[0],
        "c": c_g[0],
        "steps": steps.astype(np.float64),
        "layers": np.arange(L, dtype=np.float64),
        "modes": np.arange(K, dtype=np.float64),
        "eig0": lam0,
        "energy": np.nanmean(energy_seed, axis=-1),
    }


def predicted_section(internal: dict[str, np.ndarray], cfg: CompareConfig) -> dict[str, np.ndarray]:
    """η_k(g) (eq. 46 with π(g) of eq. 26), κ_{v,k} (eq. 50), s_spec (eq. 51); measured per-mode steps."""
    g = np.asarray(cfg.g, dtype=np.float64)
    eta, kappa = [], []
    gamma = internal["gamma"][..., None]  # (S_m, L, 1)
    for i, gi in enumerate(g):
        e = theory.eta(gi, internal["lambda_mlp"], internal["chi"], pi_of_g(internal, gi))  # eq. (46)
        e = np.asarray(e) + cross_of_g(internal, gi)  # eq. (32): the cross term, measured too
        c = np.maximum(internal["c_g"][i], 1e-300)
        ok = np.isfinite(e) & np.isfinite(gamma) & (gamma > 0)
        kap = np.zeros_like(e)  # no measurable score gain → no branch signal (κ = 0)
        kap[ok] = np.asarray(
            theory.speciation_parameter(
                np.broadcast_to(gamma, e.shape)[ok], internal["m_g"][i][ok], c[ok], e[ok]
            )
        )  # eq. (50)
        eta.append(e)
        kappa.append(kap)
    kappa = np.stack(kappa)
    s_pred = np.asarray(theory.speciation_step(kappa, internal["steps"], axis=1))  # eq. (51), (G, L, K)
    # measured: first step at which a mode's normalized difference energy (eq. 75) reaches
    # `energy_threshold` — the symmetric state has become unstable along r_k and the replicas separate
    # (the growth κ > 1 predicts, eq. 49); inf = never
    above = internal["energy"] >= cfg.energy_threshold  # (G, S, L, K)
    first = np.where(above.any(axis=1), above.argmax(axis=1), -1).astype(np.float64)
    s_meas = np.where(first >= 0, first, np.inf)
    # retention: first step at which the energy has decayed to `decay_threshold` (inf = never); a mode
    # whose replicas committed to different branches keeps its difference longer (eq. 49: u_k ≠ 0)
    below = internal["energy"] <= cfg.decay_threshold
    s_decay = np.where(below.any(axis=1), below.argmax(axis=1), np.inf).astype(np.float64)
    return {
        "g": g,
        "rho": np.atleast_1d(theory.rho(g)),
        "eta": np.stack(eta),
        "kappa": kappa,
        "s_spec_pred": s_pred,
        "s_spec_meas": s_meas,
        "s_decay_meas": s_decay,
        # the measured total one-block gain η̃_k = 1 + r_kᵀ(J_block − I) r_k at g = 0 (eq. 39's
        # repartition-invariant Jacobian); η̃ > 1 means the block expands the mode
        "eta_total": 1.0 + internal["quad_full"],
        "kappa_valid_frac": np.mean(np.isfinite(kappa) & (kappa > 0), axis=(1, 3)),
    }


def run_compare(bundle: DiTBundle, cfg: CompareConfig, out_dir: str | Path, model_name: str = "") -> Path:
    """Run all four sections, write `compare.npz` and `compare.md` into out_dir; return the npz path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset = "mixture" if bundle.encoder == "mixture-factors" else "digits"
    if cfg.class_label is None:
        cfg = replace(cfg, class_label=bundle.null_class if bundle.num_classes > 1 else 0)
    start = time.time()
    arrays = clone_section(bundle, dataset, cfg)
    log.info("clone section %.1fs", time.time() - start)
    internal = internal_section(bundle, cfg)
    log.info("internal section %.1fs", time.time() - start)
    arrays.update(internal)
    arrays.update(predicted_section(internal, cfg))
    taus = arrays["tau_dit"][np.isfinite(arrays["tau_dit"])]
    tau = float(taus.mean()) if taus.size else float("nan")  # gap_fit falls back to S/2
    arrays.update(spearman_per(arrays))
    arrays.update(gap_fit(arrays, tau))
    arrays.update(predictions(arrays, dataset))
    wall = time.time() - start
    config = {
        **asdict(cfg),
        "model": model_name or bundle.name,
        "dataset": dataset,
        "layers": bundle.num_layers,
        "modes": cfg.num_modes,
        "tau_for_gap": tau,
        "device": str(bundle.device),
        "wall_time_s": wall,
    }
    meta = make_meta(KIND, config, range(cfg.seed, cfg.seed + cfg.pair_seeds), ["all"], complete=True)
    path = out_dir / "compare.npz"
    save_result(path, meta, {k: np.asarray(v) for k, v in arrays.items()})
    (out_dir / "compare.md").write_text(markdown_table(arrays, meta))
    return path

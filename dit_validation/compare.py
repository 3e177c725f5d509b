"""Predicted vs measured speciation: ``synchrogap compare --model M [--quick|--full]``.

Everything is measured along the model's branch directions φ_f (:mod:`dit_validation.branches`), at every
coupling g of the grid, and written to one ``compare`` result file (schema in :mod:`dit_validation.schema`)
plus ``compare.md``:

* **measured** ``tau_meas`` (G, F) with ``tau_meas_ci``, ``tau_meas_status`` and the paired seed-bootstrap
  replicates ``tau_meas_boot``: the mean commitment step of clone splits at coupling g (:mod:`.clones`,
  :mod:`.clone_tau`);
* **step-level predictor** ``tau_pred_step`` (G, F): first sign change of the learned curvature H_f(s; g)
  at symmetric points (:mod:`.step_predictor`) — the paper's κ = 1 (eq. 49–51) where the score lives;
* **per-block eq. (50)** ``tau_pred_block`` (G, L, F) with ``kappa_status``/``kappa_defined``: at each
  measured step and block, the branch directions pushed to the block's input by a JVP are the modes
  (§2.5's alignment premise), the block Jacobian is split into χ, π, λ^MLP and the eq. (32) cross term at
  the same symmetric state, m and c come from an EM fit of eq. (34) to Protocol II's pair differences at the
  same block input (:func:`theory.fit_symmetric_mixture`), γ from a fit of eq. (36) whose residual and
  standard error are kept; κ undefined where eq. (55) fails (never counted as speciated);
* **Biroli et al. (2024)** ``tau_pred_biroli`` (F,): ᾱ = 1/Λ_f on the exact discrete schedule;
* for the exact-score mixture (the testbed's known answer): the same step-level estimator on the exact ε,
  the exact κ_f = 1 steps, and clone splits of the exact sampler;
* routing dominance ‖δA V0‖/‖A0 δV‖ (Appendix B, eq. 105) on the coherent branch modes and on random modes,
  with their token incoherence ε_δV; and the closure of eq. (56) against the full-step Jacobian.

The run is split into units saved as they finish, so a killed compare resumes; the file records the
model and the grid and refuses another's without ``overwrite``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

import theory
from theory import DDPMSchedule, sampling_timesteps
from theory.multiscale import DEFAULT_MIXTURE, mixture_eps
from theory.streams import numpy_generator
from theory.validation import check_g, check_positive_int, check_range

from . import compare_report, verdicts
from ._logging import progress as progress_bar
from .boundary import units
from .branches import (
    BranchDirections,
    branch_directions,
    clone_endpoints,
    dataset_of,
    directions_of,
    midpoint_fraction,
    to_tensor,
)
from .clone_sampler import CloneTrunk, clone_trunk
from .clone_tau import TauStatus, fit_speciation, mask_unlearned, paired_differences
from .clones import dit_clone_agreement, exact_clone_agreements, exact_endpoints
from .gamma import block_odd_response, estimate_gamma
from .grids import PAPER_G, QUICK_COMPARE_G
from .measure import (
    block_input_projections,
    block_quantities,
    cross_of_g,
    dominance,
    linearized_copy,
    pi_of_g,
    pushed_modes,
)
from .models import DiTBundle, float64_copy
from .results import load_result, make_meta, open_for_resume, save_result, write_text_atomic
from .shards import UnitShare
from .step_predictor import predicted_steps, step_curvatures, symmetric_states, trajectory_states
from .verdicts import learned

log = logging.getLogger(__name__)

KIND = "compare"


@dataclass(frozen=True)
class CompareConfig:
    """Grid of the comparison: ``QUICK`` runs in minutes on 2 CPU cores, ``FULL`` is the paper-size grid."""

    grid: Literal["smoke", "quick", "full"] = "quick"  # smoke: reproduce's demo grid (reproduce_plan)
    g: tuple[float, ...] = QUICK_COMPARE_G  # dense at small g, where clones split (grids.QUICK_COMPARE_G)
    num_steps: int = 50  # reverse steps S (the paper uses 100 for DiT-XL/2)
    num_directions: int = 4  # F branch directions
    clone_seeds: int = 48  # M clone pairs per split step
    t_int_stride: int = 5  # split steps 0, k, 2k, ..., S
    sym_points: int = 8  # symmetric points per step for the curvature H_f(s; g)
    em_pairs: int = 128  # Protocol II pairs for the EM fit of (m, c) (eq. 34)
    block_steps: int = 10  # steps at which the per-block quantities are measured
    random_modes: int = 4  # random hidden-space modes for routing dominance outside its premise
    # clone pairs split at step 0 (g = 0): their 512 endpoints are the model's samples behind the branch
    # validity gate, and their differences give the band directions of models without known factors
    clone_pairs: int = 256
    sigma: float = 0.5  # eq. (67), as Protocol I/II
    # None → the null class (unconditional generation) for class-conditional models, so which class is
    # generated is itself decided by the reverse dynamics; 0 for the one-class mixture model
    class_label: int | None = None
    n_boot: int = 200
    fd_step: float = 1e-3  # h of the float64 central difference along φ_f
    batch_size: int = 64
    seed: int = 0

    def validate(self) -> None:
        if self.grid not in ("smoke", "quick", "full"):
            raise ValueError(f"grid must be 'smoke', 'quick' or 'full', got {self.grid!r}")
        if not self.g:
            raise ValueError("g must contain at least one coupling strength")
        check_g(np.asarray(self.g))
        for name in ("num_steps", "num_directions", "sym_points", "block_steps", "random_modes", "n_boot"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("clone_seeds", self.clone_seeds, minimum=4)
        check_positive_int("em_pairs", self.em_pairs, minimum=8)
        check_positive_int("clone_pairs", self.clone_pairs, minimum=8)
        check_positive_int("t_int_stride", self.t_int_stride)
        check_positive_int("batch_size", self.batch_size)
        check_range("sigma", self.sigma, 0.0, lo_open=True)
        check_range("fd_step", self.fd_step, 0.0, 1.0, lo_open=True)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")

    def t_ints(self) -> np.ndarray:
        return np.asarray(sorted(set(range(0, self.num_steps + 1, self.t_int_stride)) | {self.num_steps}))

    def measured_steps(self) -> np.ndarray:
        return np.unique(np.linspace(0, self.num_steps - 1, self.block_steps).round().astype(int))


QUICK = CompareConfig()
FULL = CompareConfig(
    grid="full",
    g=PAPER_G,
    num_steps=100,
    clone_seeds=256,
    t_int_stride=2,
    sym_points=32,
    em_pairs=256,
    block_steps=25,
    n_boot=1000,
)

_BLOCK_PARTS = (
    "chi",
    "pi",
    "pi_q",
    "pi_k",
    "lambda_mlp",
    "cross",
    "cross_R",
    "cross_q",
    "cross_k",
    "quad_full",
)


def _gkey(unit: str, g: float) -> str:
    return f"{unit}/g={g:g}"


class _Run:
    """One comparison: the arrays of the result file, filled unit by unit and saved after each."""

    def __init__(
        self,
        bundle: DiTBundle,
        cfg: CompareConfig,
        path: Path,
        model: str,
        overwrite: bool,
        share: UnitShare | None = None,
    ) -> None:
        self.bundle, self.cfg, self.path = bundle, cfg, path
        self.share = UnitShare() if share is None else share
        self.dataset = dataset_of(bundle)
        self.label = (
            cfg.class_label
            if cfg.class_label is not None
            else (bundle.null_class if bundle.num_classes > 1 else 0)
        )
        self.config = {
            **asdict(cfg),
            "model": model or bundle.name,
            "dataset": self.dataset,
            "class_label_used": self.label,
            "num_layers": bundle.num_layers,
        }
        prev = open_for_resume(path, KIND, self.config, overwrite)
        self.arrays: dict[str, np.ndarray] = {} if prev is None else dict(prev.arrays)
        self.done: list[str] = [] if prev is None else list(prev.meta["done"])
        self.wall = 0.0 if prev is None else float(prev.meta.get("wall_time_s", 0.0))
        self._bundle64: DiTBundle | None = None
        self._lin = None
        self._sym: np.ndarray | None = None
        self._trunk: CloneTrunk | None = None
        self._modes: dict[int, tuple[torch.Tensor, torch.Tensor, np.ndarray]] = {}

    # ----------------------------------------------------------------------------- bookkeeping
    def meta(self, complete: bool = False) -> dict:
        seeds = range(self.cfg.seed, self.cfg.seed + self.cfg.clone_seeds)
        return make_meta(KIND, self.config, seeds, self.done, complete=complete, wall_time_s=self.wall)

    def save(self, unit: str | None, complete: bool = False) -> None:
        if unit is None:
            save_result(self.path, self.meta(complete), self.arrays)
            return
        self.done.append(unit)
        self.share.saved(self.path, self.meta(), self.arrays, [unit])
        units.advance(1)  # a unit is done once it is on disk

    @property
    def bundle64(self) -> DiTBundle:
        if self._bundle64 is None:
            self._bundle64 = float64_copy(self.bundle)
        return self._bundle64

    @property
    def lin(self):
        if self._lin is None:
            self._lin = linearized_copy(self.bundle.transformer)
        return self._lin

    def directions(self) -> BranchDirections:
        return directions_of(self.arrays)

    def symmetric(self) -> np.ndarray:
        """Symmetric points (S, n, C, H, W), recomputed (deterministic, cheap) rather than stored.

        Their few trajectories keep the pair run (``dedupe`` False): deduplicated, the quick grid's 8 seeds
        would make forwards of 8 rows, below the size where BLAS changes kernels, and change every quantity
        taken at the symmetric points in its last bits to save 400 of the job's forwards.
        """
        if self._sym is None:
            cfg = self.cfg
            seeds = range(cfg.seed + 10_000, cfg.seed + 10_000 + cfg.sym_points)  # not the clone seeds
            states = trajectory_states(self.bundle, list(seeds), cfg.num_steps, self.label, dedupe=False)
            self._sym = symmetric_states(states, self.directions(), cfg.num_steps)
        return self._sym

    def clone_trunk(self) -> CloneTrunk:
        """The clone experiment's trunk, sampled once for every g (it does not depend on g) and recomputed
        (deterministic) rather than stored."""
        if self._trunk is None:
            cfg = self.cfg
            seeds = range(cfg.seed, cfg.seed + cfg.clone_seeds)
            self._trunk = clone_trunk(
                self.bundle,
                list(seeds),
                cfg.t_ints(),
                num_steps=cfg.num_steps,
                class_label=self.label,
                batch_size=cfg.batch_size,
            )
        return self._trunk

    # ----------------------------------------------------------------------------- units
    def unit_directions(self) -> None:
        """Branch directions and the validity gate: the model's own samples (g = 0) along every φ_f."""
        cfg = self.cfg
        ends = clone_endpoints(
            self.bundle,
            cfg.clone_pairs,
            num_steps=cfg.num_steps,
            class_label=self.label,
            seed=cfg.seed + 20_000,
        )
        d = branch_directions(self.bundle, cfg.num_directions, endpoints=ends)
        samples = np.concatenate(ends)  # (2·clone_pairs, d): every endpoint is one draw of the sampler
        fraction = midpoint_fraction(samples, d)
        G, F, T, M = len(cfg.g), d.num, len(cfg.t_ints()), cfg.clone_seeds
        S, Sb, L, R = cfg.num_steps, len(cfg.measured_steps()), self.bundle.num_layers, cfg.random_modes
        nan = np.nan
        sched = DDPMSchedule()
        with np.errstate(invalid="ignore"):
            biroli = np.array(
                [theory.biroli_speciation_step(sched, lam, S) if lam > 1.0 else np.inf for lam in d.Lambda]
            )
        a = {
            "g": np.asarray(cfg.g, dtype=np.float64),
            "rho": np.atleast_1d(theory.rho(np.asarray(cfg.g))),
            "factor": np.arange(F),
            "factor_names": np.asarray(d.names),
            "direction_source": np.asarray(d.source),
            "direction_band": np.asarray(d.band),
            "centroid": d.centroid,
            "half_separation": d.half_separation,
            "branch_midpoint_fraction": fraction,
            "learned": learned(fraction),
            "phi": d.phi,
            "midpoint": d.midpoint,
            "Lambda": d.Lambda,
            "tau_pred_biroli": np.where(learned(fraction), biroli, np.nan),  # no prediction unlearned
            "t_int": cfg.t_ints(),
            "steps": np.arange(S),
            "block_steps": cfg.measured_steps(),
            "layers": np.arange(L),
            "agree": np.full((G, F, T, M), nan),
            "fit_meas": np.full((G, F, 4), nan),
            "tau_meas": np.full((G, F), nan),
            "tau_meas_ci": np.full((G, F, 2), nan),
            "tau_meas_status": np.full((G, F), int(TauStatus.NO_SPLIT), dtype=np.int64),
            "tau_meas_boot": np.full((G, F, cfg.n_boot), nan),
            "splits": np.zeros((G, F), bool),
            "H_step": np.full((G, S, F), nan),
            "H_step_se": np.full((G, S, F), nan),
            "tau_pred_step": np.full((G, F), nan),
            **{k: np.full((Sb, L, F), nan) for k in _BLOCK_PARTS},
            **{
                k: np.full((Sb, L, F), nan)
                for k in ("mode_gain", "gamma", "gamma_b", "gamma_resid", "gamma_se")
            },
            **{k: np.full((Sb, L, F), nan) for k in ("dominance_ratio", "dominance_bound", "eps_dv")},
            **{
                f"{q}_{kind}": np.full((Sb, L, R), nan)
                for q in ("dominance_ratio", "dominance_bound", "eps_dv")
                for kind in ("random", "coherent")
            },
            **{k: np.full((G, Sb, L, F), nan) for k in ("m", "c", "m_se", "c_se", "eta", "kappa")},
            "bimodal": np.zeros((G, Sb, L, F), bool),
            "kappa_status": np.full((G, Sb, L, F), int(theory.KappaStatus.NOT_FINITE), dtype=np.int64),
            "m_state": np.full((S, F), nan),
            "m_state_se": np.full((S, F), nan),
            "state_bimodal": np.zeros((S, F), bool),
        }
        if self.dataset == "mixture":
            a.update(
                {
                    "tau_exact_kappa": np.full(F, nan),
                    "H_exact": np.full((S, F), nan),
                    "tau_pred_step_exact": np.full(F, nan),
                    "agree_exact": np.full((F, T, M), nan),
                    "tau_meas_exact": np.full(F, nan),
                    "tau_meas_exact_ci": np.full((F, 2), nan),
                    "tau_meas_exact_status": np.full(F, int(TauStatus.NO_SPLIT), dtype=np.int64),
                    "fit_meas_exact": np.full((F, 4), nan),
                    "agree_theory": np.full((F, T), nan),
                    "closure_ratio_exact": np.full((S, F), nan),
                    "branch_midpoint_fraction_exact": midpoint_fraction(
                        exact_endpoints(cfg.clone_pairs, S, cfg.seed + 20_000), d
                    ),
                }
            )
        self.arrays = a
        self.save("directions")

    def unit_exact(self) -> None:
        """The known answer: the step-level estimator on the exact ε, exact κ_f = 1 steps, exact clones."""
        cfg, a = self.cfg, self.arrays
        mix, sched, S = DEFAULT_MIXTURE, DDPMSchedule(), cfg.num_steps
        ts = sampling_timesteps(sched, S)
        ab = sched.alphas_cumprod[ts]
        rng = numpy_generator(cfg.seed, 30_000)
        phi = a["phi"].reshape(-1, mix.channels, mix.size, mix.size)
        for s in range(S):
            x = theory.symmetric_points(mix, float(ab[s]), cfg.sym_points, rng)
            H = theory.directional_curvature(
                lambda z, s=s: mixture_eps(mix, z, float(ab[s])), x, phi, math.sqrt(1 - ab[s]), cfg.fd_step
            )
            a["H_exact"][s] = H.mean(axis=0)
        a["tau_pred_step_exact"] = np.asarray(theory.curvature_sign_change(a["H_exact"], axis=0))
        F = phi.shape[0]  # the first F factors, as the directions (num_directions may be < 4)
        a["tau_exact_kappa"] = theory.exact_speciation_step(mix, sched, S)[:F]
        agree, closed = exact_clone_agreements(cfg.t_ints(), S, cfg.clone_seeds, cfg.seed)
        agree, closed = agree[:F], closed[:F]
        fit = fit_speciation(cfg.t_ints(), agree, cfg.n_boot, cfg.seed)
        a["agree_exact"], a["agree_theory"] = agree, closed
        a["fit_meas_exact"], a["tau_meas_exact"], a["tau_meas_exact_ci"] = (
            fit["fit"],
            fit["tau"],
            fit["tau_ci"],
        )
        a["tau_meas_exact_status"] = fit["status"]
        # the states entering each step
        a["closure_ratio_exact"] = theory.eq56_closure_ratio(mix, sched, S, ddim_eta=0.0)[:S, :F]
        self.save("exact")

    def unit_clones(self, i: int, g: float) -> None:
        cfg, a = self.cfg, self.arrays
        seeds = range(cfg.seed, cfg.seed + cfg.clone_seeds)
        agree = dit_clone_agreement(
            self.bundle,
            self.directions(),
            g,
            seeds,
            cfg.t_ints(),
            cfg.num_steps,
            self.label,
            cfg.batch_size,
            trunk=self.clone_trunk(),
        )
        fit = mask_unlearned(fit_speciation(cfg.t_ints(), agree, cfg.n_boot, cfg.seed), a["learned"])
        a["agree"][i] = agree
        a["fit_meas"][i], a["tau_meas"][i], a["tau_meas_ci"][i], a["splits"][i] = (
            fit["fit"],
            fit["tau"],
            fit["tau_ci"],
            fit["splits"],
        )
        a["tau_meas_status"][i], a["tau_meas_boot"][i] = fit["status"], fit["tau_boot"]
        self.save(_gkey("clones", g))

    def unit_step(self, i: int, g: float) -> None:
        cfg, a = self.cfg, self.arrays
        H = step_curvatures(self.bundle64, self.symmetric(), self.directions(), [g], self.label, cfg.fd_step)[
            0
        ]
        a["H_step"][i] = H.mean(axis=1)  # (S, F)
        a["H_step_se"][i] = H.std(axis=1, ddof=1) / math.sqrt(H.shape[1])
        a["tau_pred_step"][i] = np.where(a["learned"], predicted_steps(H[None])[0], np.nan)
        self.save(_gkey("step", g))

    def _modes_at(self, s: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """H0 (L, N, D), pushed unit modes (L, F, N, D) and gains at step s, at the first symmetric point."""
        if s not in self._modes:
            b = self.bundle
            shape = (b.latent_channels, b.sample_size, b.sample_size)
            x = torch.as_tensor(self.symmetric()[s, 0], dtype=torch.float64)
            phi = to_tensor(self.directions(), shape, torch.device("cpu"))
            t = int(sampling_timesteps(DDPMSchedule(), self.cfg.num_steps)[s])
            self._modes[s] = pushed_modes(self.lin, x, phi, t, self.label, range(b.num_layers))
        return self._modes[s]

    def unit_block_parts(self) -> None:
        """Block Jacobian parts, γ fit inputs and routing dominance along the pushed modes (g-independent)."""
        cfg, a = self.cfg, self.arrays
        ts = sampling_timesteps(DDPMSchedule(), cfg.num_steps)
        gen = torch.Generator().manual_seed(cfg.seed + 40_000)
        for i, s in enumerate(a["block_steps"]):
            H0, r, gain = self._modes_at(int(s))
            a["mode_gain"][i] = gain
            for ell in range(self.bundle.num_layers):
                t = int(ts[s])
                q = block_quantities(self.lin, ell, t, self.label, H0[ell], r[ell])
                for name in _BLOCK_PARTS:
                    a[name][i, ell] = q[name]
                dom = dominance(self.lin, ell, t, self.label, H0[ell], r[ell])  # Appendix B, eq. (105)
                a["dominance_ratio"][i, ell], a["dominance_bound"][i, ell] = dom["ratio"], dom["bound"]
                a["eps_dv"][i, ell] = dom["eps_dv"]
                N, D = H0.shape[1:]
                coherent = torch.randn((cfg.random_modes, 1, D), generator=gen, dtype=torch.float64)
                for kind, modes in (
                    ("random", torch.randn((cfg.random_modes, N, D), generator=gen, dtype=torch.float64)),
                    # token-constant: one channel vector on every token, Appendix B's coherent premise
                    ("coherent", coherent.expand(-1, N, -1).contiguous()),
                ):
                    modes = modes / modes.flatten(1).norm(dim=1)[:, None, None]
                    dom = dominance(self.lin, ell, t, self.label, H0[ell], modes)
                    a[f"dominance_ratio_{kind}"][i, ell] = dom["ratio"]
                    a[f"dominance_bound_{kind}"][i, ell] = dom["bound"]
                    a[f"eps_dv_{kind}"][i, ell] = dom["eps_dv"]
        self.save("block/parts")

    def _bases(self) -> dict[int, torch.Tensor]:
        bases = {}
        for s in self.arrays["block_steps"]:
            _, r, _ = self._modes_at(int(s))
            bases[int(s)] = r.flatten(2).to(self.bundle.device, torch.float64)  # (L, F, D)
        return bases

    def unit_block_g(self, i: int, g: float, bases: dict[int, torch.Tensor]) -> None:
        """EM fit of (m, c) (eq. 34) at every block input at coupling g, then η_k(g) (eq. 46), κ (eq. 50)."""
        cfg, a = self.cfg, self.arrays
        seeds = range(cfg.seed + 50_000, cfg.seed + 50_000 + cfg.em_pairs)
        p = block_input_projections(
            self.bundle,
            g,
            seeds,
            cfg.sigma,
            cfg.num_steps,
            self.label,
            range(self.bundle.num_layers),
            bases,
            cfg.batch_size,
        )  # (Sb, L, F, M)
        fit = theory.fit_symmetric_mixture(p)
        a["m"][i], a["c"][i], a["m_se"][i], a["c_se"][i] = fit.m, fit.c, fit.m_se, fit.c_se
        a["bimodal"][i] = fit.bimodal
        if i == 0:  # γ once, with the (m, c) of the first coupling (g = 0 first); unit_phases runs it first
            self._gamma_fit(i)
        a["eta"][i], a["kappa"][i], a["kappa_status"][i] = block_kappa(
            {k: a[k] for k in _BLOCK_PARTS}, a["gamma"], a["m"][i], a["c"][i], a["bimodal"][i], g
        )
        self.save(_gkey("block", g))

    def _gamma_fit(self, i: int) -> None:
        """γ of eq. (36) per (step, block, mode) from the block's odd response, with (m, c) of coupling i."""
        a = self.arrays
        ts = sampling_timesteps(DDPMSchedule(), self.cfg.num_steps)
        for j, s in enumerate(a["block_steps"]):
            H0, r, _ = self._modes_at(int(s))
            for ell in range(self.bundle.num_layers):
                for f in range(r.shape[1]):
                    m, c = a["m"][i, j, ell, f], a["c"][i, j, ell, f]
                    D = block_odd_response(self.lin, ell, int(ts[s]), self.label, H0[ell], r[ell, f])
                    fit = estimate_gamma(D, m, c)
                    a["gamma"][j, ell, f], a["gamma_b"][j, ell, f] = fit.gamma, fit.b
                    a["gamma_resid"][j, ell, f], a["gamma_se"][j, ell, f] = fit.resid, fit.gamma_se

    def unit_closure(self) -> None:
        """Eq. (56) against the full-step Jacobian J_s = c₁ + b_s σ_t H_f(s; 0) along each φ_f."""
        cfg, a = self.cfg, self.arrays
        seeds = list(range(cfg.seed + 60_000, cfg.seed + 60_000 + cfg.em_pairs))
        # (S, n, C, H, W)
        states = trajectory_states(self.bundle, seeds, cfg.num_steps, self.label, cfg.batch_size)
        y = states.reshape(*states.shape[:2], -1) @ a["phi"].T  # (S, n, F)
        sched = DDPMSchedule()
        ab = sched.alphas_cumprod[sampling_timesteps(sched, cfg.num_steps)]
        y = y - np.sqrt(ab)[:, None, None] * a["midpoint"]  # centred on the branch midpoint at step s
        fit = theory.fit_symmetric_mixture(np.moveaxis(y, 1, -1))  # over samples: (S, F)
        a["m_state"], a["m_state_se"], a["state_bimodal"] = fit.m, fit.m_se, fit.bimodal
        self.save("closure")

    # ----------------------------------------------------------------------------- the whole run
    def run(self, progress: bool) -> Path:
        cfg = self.cfg
        plan = unit_names(cfg, self.dataset)
        units.plan(len(plan))
        units.advance(len([u for u in plan if u in self.done]))
        done = len([u for u in plan if u in self.done])
        if done:
            log.info("compare: resuming %s, %d of %d units already done", self.path, done, len(plan))
        bar = progress_bar(total=len(plan), initial=done, desc="compare", enabled=progress)
        bases = None
        if self.arrays:  # directions are on file: the arrays every later unit fills in
            self.share.begin(self.path, self.meta(), self.arrays)
        for unit in plan:
            if unit in self.done or not self.share.mine(unit, kind=unit.partition("/")[0]):
                continue
            start = time.perf_counter()
            kind, _, gs = unit.partition("/g=")
            if unit == "directions":
                self.unit_directions()
            elif unit == "exact":
                self.unit_exact()
            elif unit == "block/parts":
                self.unit_block_parts()
            elif unit == "closure":
                self.unit_closure()
            else:
                i = [f"{g:g}" for g in cfg.g].index(gs)
                g = cfg.g[i]
                if kind == "clones":
                    self.unit_clones(i, g)
                elif kind == "step":
                    self.unit_step(i, g)
                else:
                    bases = self._bases() if bases is None else bases
                    self.unit_block_g(i, g, bases)
            self.wall += time.perf_counter() - start
            log.info("compare: %s done in %.1f s", unit, time.perf_counter() - start)
            bar.update(1)
        bar.close()
        if not self.share.finalizes:
            return self.path
        self.arrays.update(summarize(self.arrays, cfg))
        self.save(None, complete=True)
        return self.path


def unit_names(cfg: CompareConfig, dataset: str) -> list[str]:
    """The units of one comparison, in run order (each saved as it finishes)."""
    names = ["directions", *(["exact"] if dataset == "mixture" else [])]
    for g in cfg.g:
        names += [_gkey("clones", g), _gkey("step", g)]
    return [*names, "block/parts", *(_gkey("block", g) for g in cfg.g), "closure"]


def unit_phases(cfg: CompareConfig, dataset: str) -> list[frozenset[str]]:
    """The units in dependency order, for running them on several ranks (:mod:`.distributed`): every unit
    of a phase needs only units of earlier phases — all of them the branch directions, the block units
    the block parts, and the other couplings' block units the γ fitted in the first coupling's."""
    names = unit_names(cfg, dataset)
    first = _gkey("block", cfg.g[0])
    later = frozenset(n for n in names if n.startswith("block/g=")) - {first}
    rest = frozenset(names) - {"directions", first} - later
    return [p for p in (frozenset({"directions"}), rest, frozenset({first}), later) if p]


def num_units(cfg: CompareConfig, dataset: str) -> int:
    """How many units a comparison of this grid has (``reproduce`` counts them for its Ctrl-C message)."""
    return len(unit_names(cfg, dataset))


def block_kappa(
    parts: dict[str, np.ndarray],
    gamma: np.ndarray,
    m: np.ndarray,
    c: np.ndarray,
    bimodal: np.ndarray,
    g: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """η_k(g) (eq. 46 with π(g) of eq. 26 and the eq. 32 cross term), κ (eq. 50) and its status, per block.

    This η is the block's measured Jacobian along r_k at the symmetric state, the residual stream's identity
    included: the effective Jacobian J of eq. (39), which already holds the score's linear part
    γ(κ_f − 1)/c. κ is therefore eq. (50) in J, γκ_f/(c(1 − J) + γκ_f) (:func:`theory.
    speciation_parameter_from_jacobian`); J in η's place would count that part twice. Input and output of
    a block share the residual stream's coordinates (score-free part ≈ I), where κ = 1 ⇔ J = 1 is the
    bifurcation (docs/FINDINGS.md §4). m counts only where the EM fit finds the difference bimodal;
    elsewhere m = 0 and κ = 0 (eq. 48 has no non-zero root). κ is NaN (undefined) where eq. (55),
    c(1 − J) + γκ_f > 0, fails or γ ≤ 0 (:func:`theory.kappa_status_from_jacobian`).
    """
    eta = np.asarray(theory.eta(g, parts["lambda_mlp"], parts["chi"], pi_of_g(parts, g))) + cross_of_g(
        parts, g
    )
    m_used = np.where(bimodal, m, 0.0)
    kappa = np.asarray(theory.speciation_parameter_from_jacobian(gamma, m_used, c, eta))  # eq. (50) in J
    return eta, kappa, np.asarray(theory.kappa_status_from_jacobian(gamma, m_used, c, eta))


def summarize(a: dict[str, np.ndarray], cfg: CompareConfig) -> dict[str, np.ndarray]:
    """Per-block speciation steps (eq. 51), gaps (eq. 65) and fits in ρ(g), the eq. (56) closure, §2.7.

    Every verdict is decided by a paired interval (:mod:`dit_validation.verdicts`); a direction the gate
    refused has no per-block prediction either."""
    out: dict[str, np.ndarray] = {}
    steps = a["block_steps"].astype(np.float64)
    block = np.asarray(theory.speciation_step(a["kappa"], steps, axis=1))  # (G, L, F)
    out["tau_pred_block"] = np.where(a["learned"], block, np.nan)
    out["kappa_defined"] = a["kappa_status"] <= int(theory.KappaStatus.ZERO_SEPARATION)
    pair = verdicts.gap_directions(a)
    lead, trail = pair if pair is not None else (0, a["factor"].size - 1)
    # the same seed resamples at every g (fit_speciation), so the replicates pair across g as well
    boot = [
        paired_differences(a["tau_meas_boot"][i], a["tau_meas_status"][i], lead, trail)
        for i in range(a["g"].size)
    ]
    out.update(compare_report.gaps(a, out, np.stack(boot), cfg.clone_seeds, (lead, trail)))
    out["closure_ratio"] = compare_report.closure_ratio(a, cfg.num_steps)
    out.update(verdicts.compare_verdicts(a))
    return out


def run_compare(
    bundle: DiTBundle,
    cfg: CompareConfig,
    out_dir: str | Path,
    model_name: str = "",
    overwrite: bool = False,
    progress: bool = True,
    share: UnitShare | None = None,
) -> Path:
    """Run (or resume) the comparison; write ``compare.npz`` and ``compare.md`` into ``out_dir``.

    ``share``: which units this process runs on a rank of a job, in the phases of :func:`unit_phases`
    (default all of them)."""
    cfg.validate()
    out_dir = Path(out_dir)
    if cfg.class_label is not None and not 0 <= cfg.class_label <= bundle.null_class:
        raise ValueError(f"class_label must lie in [0, {bundle.null_class}], got {cfg.class_label}")
    share = UnitShare() if share is None else share
    path = _Run(bundle, cfg, out_dir / "compare.npz", model_name, overwrite, share).run(progress)
    if not share.finalizes:
        return path
    meta, arrays = load_result(path, kind=KIND, require_complete=True)
    write_text_atomic(out_dir / "compare.md", compare_report.markdown_table(arrays, meta))
    return path

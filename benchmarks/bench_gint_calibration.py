"""Calibration of Protocol II's held-out G_int (dit_validation.gint) on the shipped default model.

    python benchmarks/bench_gint_calibration.py            # the acceptance run (~15 min on 1 CPU thread)
    python benchmarks/bench_gint_calibration.py --quick    # smoke run: a few seeds, no verdicts

Independent seed sets (64 by default) are disjoint ranges of measured seeds; every set shares the one
held-out basis of the configuration (its pairs live on their own streams, so the basis is part of the
estimand, like K). Prints

  (a) the null at s = 0: the estimator itself is identically 1 there (numerator and normalizer of eq. 75
      are the same sums) — checked, and its interval is the point 0; the non-degenerate check is the
      split-half null (one half of a set's seeds normalized by the other half at s = 0, true value 0):
      per layer whether the first set's interval contains 0, the share of all sets' intervals that do, and
      the bootstrap SD (95% width / 3.92) against the SD of the null across the sets (accept: ratio in
      [0.5, 2]);
  (b) coverage of the G_int − 1 interval at s = τ_spec over the sets for g = 0, against the estimate from
      M = 512 seeds disjoint from every set (the truth; accept 0.90–0.98 over all layers), and the same
      against the pooled estimate of the sets themselves (the grand mean; it contains each set);
  (c) the estimates at M = 64 and M = 256 (disjoint seeds; the 256 are the first half of the truth run)
      and their difference in combined SE (accept < 2).

Exit status 1 when an acceptance fails (never with --quick).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import machine_line, table  # noqa: E402

from dit_validation.analysis import at_step  # noqa: E402
from dit_validation.gint import gint_interval, gint_null, percentile_ci  # noqa: E402
from dit_validation.models import resolve_model  # noqa: E402
from dit_validation.protocol2 import Protocol2Config, energies_for_g, heldout_basis  # noqa: E402

#: τ_spec of g = 0 on the shipped default at the quick grid's 50 steps: the shared-noise control of its
#: quick Protocol I run (README, Table 1 analogue); pass --tau for another model or grid.
DEFAULT_TAU = 18.8


def measure(bundle, cfg: Protocol2Config, seed_base: int, M: int, basis) -> np.ndarray:
    """Squared projections (S, L, K, M) of M measured seeds from ``seed_base`` on the shared basis."""
    run = replace(cfg, seed_base=seed_base, num_seeds=M, num_modes=2)
    return energies_for_g(bundle, run, 0.0, heldout=basis).heldout_proj


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="shipped-default")
    ap.add_argument("--quick", action="store_true", help="smoke run: 4 sets of 4 seeds, 8 steps, no verdicts")
    # 64 sets: the share of intervals that cover is then known to ±0.03; with 16 it is 15/16 or 16/16 of
    # each layer (per-layer coverages move together: the layers share their seeds)
    ap.add_argument("--sets", type=int, default=64, help="independent seed sets (>= 16 for the acceptance)")
    ap.add_argument("--seeds", type=int, default=32, help="measured seeds per set")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--tau", type=float, default=DEFAULT_TAU, help="s = τ_spec(g = 0)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    bundle = resolve_model(args.model)
    cfg = Protocol2Config(g=(0.0,), num_steps=args.steps, num_seeds=2)
    sets, M, huge, big, mid = args.sets, args.seeds, 512, 256, 64
    if args.quick:
        sets, M, huge, big, mid = 4, 4, 32, 16, 8
        cfg = replace(cfg, num_steps=8, basis_pairs=64, gint_modes=8, n_boot=200)
        args.tau = min(args.tau, 3.5)
    cfg = cfg.resolved(bundle)
    print(machine_line(args.threads))
    print(
        f"model {bundle.name}, g = 0, {cfg.num_steps} DDIM steps, s = τ_spec = {args.tau:g}; held-out basis: "
        f"K = {cfg.gint_modes} modes from {cfg.basis_pairs} pairs; {sets} sets of M = {M} seeds; "
        f"{cfg.n_boot} bootstrap replicates"
    )
    basis = heldout_basis(bundle, cfg, 0.0)
    # disjoint measured seeds: the sets, then the truth run (its first half is the M = 256 run), then M = 64
    per_set = [measure(bundle, cfg, k * M, M, basis) for k in range(sets)]
    p_huge = measure(bundle, cfg, sets * M, huge, basis)
    p_big = p_huge[..., :big]
    p_mid = measure(bundle, cfg, sets * M + huge, mid, basis)
    L = per_set[0].shape[1]
    est = [gint_interval(p[0], at_step(p, args.tau), cfg.n_boot, cfg.boot_seed) for p in per_set]
    failures = []

    # (a) the null at s = 0
    at0 = np.array([gint_interval(p[0], p[0], cfg.n_boot, cfg.boot_seed).excess for p in per_set])
    null = np.array([e.null for e in est])  # (sets, L)
    null_ci = np.array([e.null_ci for e in est])  # (sets, L, 2)
    contains = (null_ci[..., 0] <= 0) & (null_ci[..., 1] >= 0)
    null_sd = null.std(axis=0, ddof=1)
    boot_sd = (null_ci[..., 1] - null_ci[..., 0]).mean(axis=0) / 3.92
    print(
        f"\n(a) null at s = 0. The estimator on the measured seeds: max |G_int - 1| over {sets} sets and "
        f"{L} layers = {np.abs(at0).max():.1e} — identically 0 by construction (eq. 75 divides a sum by "
        "itself), interval the point 0. Split-half null (first half normalized by the second, true value 0):"
    )
    rows = []
    for j in range(L):
        ratio = boot_sd[j] / null_sd[j]
        rows.append(
            [
                str(j),
                f"[{null_ci[0, j, 0]:+.3f}, {null_ci[0, j, 1]:+.3f}]",
                "yes" if contains[0, j] else "NO",
                f"{contains[:, j].mean():.2f}",
                f"{boot_sd[j]:.4f}",
                f"{null_sd[j]:.4f}",
                f"{ratio:.2f}",
            ]
        )
        if not contains[0, j] or not 0.5 <= ratio <= 2.0:
            failures.append(f"(a) layer {j}")
    table(
        "  per layer",
        [
            "layer",
            "set 0 interval",
            "contains 0",
            "share of sets containing 0",
            "boot SD",
            "SD over sets",
            "ratio",
        ],
        rows,
    )

    # (b) coverage at s = τ_spec against a large-M estimate from disjoint seeds
    truth = gint_interval(p_huge[0], at_step(p_huge, args.tau), cfg.n_boot, cfg.boot_seed)
    e_big = gint_interval(p_big[0], at_step(p_big, args.tau), cfg.n_boot, cfg.boot_seed)
    pooled_proj = np.concatenate(per_set, axis=-1)
    pooled = gint_interval(pooled_proj[0], at_step(pooled_proj, args.tau), 10, 0).excess
    ci = np.array([e.excess_ci for e in est])  # (sets, L, 2)
    x = np.array([e.excess for e in est])
    cover = (ci[..., 0] <= truth.excess) & (ci[..., 1] >= truth.excess)
    cover_pooled = (ci[..., 0] <= pooled) & (ci[..., 1] >= pooled)
    print(
        f"\n(b) coverage of the 95% interval of G_int - 1 at s = {args.tau:g}, g = 0, over {sets} sets of "
        f"M = {M}; truth: the estimate from M = {huge} seeds disjoint from every set"
    )
    rows = [
        [
            str(j),
            f"{truth.excess[j]:+.4f} [{truth.excess_ci[j, 0]:+.4f}, {truth.excess_ci[j, 1]:+.4f}]",
            f"{pooled[j]:+.4f}",
            f"{x[:, j].mean():+.4f}",
            f"{x[:, j].std(ddof=1):.4f}",
            f"{(ci[:, j, 1] - ci[:, j, 0]).mean() / 3.92:.4f}",
            f"{cover[:, j].mean():.2f}",
            f"{cover_pooled[:, j].mean():.2f}",
        ]
        for j in range(L)
    ]
    table(
        "  per layer",
        [
            "layer",
            f"truth (M = {huge})",
            "pooled sets",
            "mean of sets",
            "SD over sets",
            "boot SD",
            "coverage",
            "coverage (pooled truth)",
        ],
        rows,
    )
    overall = float(cover.mean())
    print(
        f"  coverage over all {cover.size} intervals: {overall:.3f} (accept 0.90-0.98); "
        f"against the pooled estimate: {cover_pooled.mean():.3f}"
    )
    if not 0.90 <= overall <= 0.98:
        failures.append("(b) coverage")

    # (c) M = 64 against M = 256
    e_mid = gint_interval(p_mid[0], at_step(p_mid, args.tau), cfg.n_boot, cfg.boot_seed)
    se = lambda e: (e.excess_ci[:, 1] - e.excess_ci[:, 0]) / 3.92  # noqa: E731
    z = (e_mid.excess - e_big.excess) / np.hypot(se(e_mid), se(e_big))
    print(
        f"\n(c) G_int - 1 at M = {mid} and M = {big} (disjoint seeds, one basis); accept |difference| < 2 SE"
    )
    table(
        "  per layer",
        ["layer", f"M = {mid}", f"M = {big}", "difference / combined SE"],
        [
            [
                str(j),
                f"{e_mid.excess[j]:+.4f} ± {se(e_mid)[j]:.4f}",
                f"{e_big.excess[j]:+.4f} ± {se(e_big)[j]:.4f}",
                f"{z[j]:+.2f}",
            ]
            for j in range(L)
        ],
    )
    failures += [f"(c) layer {j}" for j in range(L) if not abs(z[j]) < 2.0]
    _, null_boot = gint_null(p_huge[0], cfg.n_boot, cfg.boot_seed)
    print(
        f"\nsplit-half null of the M = {huge} run at s = 0: "
        + ", ".join(
            f"layer {j} {truth.null[j]:+.3f} [{c[0]:+.3f}, {c[1]:+.3f}]"
            for j, c in enumerate(percentile_ci(null_boot - 1.0))
        )
    )
    elapsed = time.perf_counter() - t_start
    print(f"\nruntime {elapsed:.0f} s on {args.threads} torch thread(s)")
    if args.quick:
        print("quick run: settings too small for the acceptance; no verdict")
        return 0
    print("acceptance: " + ("all met" if not failures else "FAILED " + ", ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmarks of the theory core (not a test): prints measured ratios as tables.

(a) ``solve_self_consistency`` on 1e7 κ values vs a ``scipy.optimize.brentq`` loop
    (brentq timed on a subsample; per-element ratio). Target ≥ 100×.
(b) replica-pair steps/s of ``simulate_replicas`` (Euler–Maruyama, ≥ 1e5 pairs) vs
    ``torchsde.sdeint(method="euler")`` on the same coupled OU problem and step count, on CPU
    and on CUDA when available. Target ≥ 10×. torchsde is the optional ``bench`` extra and is
    imported only here.
(c) the exact-transition stepper vs Euler–Maruyama at equal cost: wall time per run, pathwise
    (strong) RMS error against a fine-grid reference on one Brownian path, and the relative
    error of Var(v) (eq. 10) against the closed form (EM's covariance recursion
    ``P ← (1 + h a)² P + β h`` is exact for its own law, so that error has no sampling noise).

Usage: ``OMP_NUM_THREADS=1 python benchmarks/bench_theory.py [--quick]``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from theory import (
    GaussianData,
    VPSchedule,
    init_replicas,
    mode_variance,
    simulate_replicas,
    solve_self_consistency,
)
from theory.ou import linear_transition
from theory.schedules import alpha, beta, sigma2


def _best_of(fn: Callable[[], Any], repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


# ------------------------------------------------------------------------------------- (a)
def bench_solver(n: int, n_brentq: int, repeats: int) -> None:
    from scipy.optimize import brentq

    rng = np.random.default_rng(0)
    dists = {
        "log-uniform kappa-1 in [1e-12, 1e6]": 1.0 + 10.0 ** rng.uniform(-12, 6, n),
        "uniform kappa in (1, 50)": rng.uniform(1.0, 50.0, n),
    }
    rows = []
    for name, kappa in dists.items():
        t_ours = _best_of(lambda k=kappa: solve_self_consistency(k), repeats)
        sub = kappa[:n_brentq]

        def loop(sub: np.ndarray = sub) -> None:
            for k in sub:
                # bracket [tiny, κ+1]: f < 0 just above 0 for κ > 1, f(κ+1) > 0
                brentq(
                    lambda u, k=k: u - k * math.tanh(u),
                    1e-300,
                    k + 1.0,
                    xtol=1e-300,
                    rtol=4 * np.finfo(float).eps,
                )

        t_brent = _best_of(loop, 1)
        per_ours, per_brent = t_ours / n, t_brent / n_brentq
        rows.append(
            [
                name,
                f"{n:.0e}",
                f"{t_ours:.3f}",
                f"{per_ours * 1e9:.1f}",
                f"{per_brent * 1e9:.0f}",
                f"{per_brent / per_ours:.0f}x",
            ]
        )
    _table(
        "(a) self-consistency solver u = kappa tanh u (target >= 100x)",
        ["kappa distribution", "n", "ours [s]", "ours [ns/elem]", "brentq [ns/elem]", "speed-up"],
        rows,
    )


# ------------------------------------------------------------------------------------- (b)
def _torchsde_run(
    data: GaussianData, sched: VPSchedule, t_grid: np.ndarray, z0: np.ndarray, g: float, device: str
) -> None:
    """The same coupled OU problem (eq. 4–6, linear score eq. 8) through torchsde, in reverse time τ."""
    import torch
    import torchsde

    lam = torch.tensor(data.eigenvalues, device=device)  # copy: the data model's array is read-only
    n, _, d = z0.shape
    t_start, t_end = float(t_grid[0]), float(t_grid[-1])
    h = (t_start - t_end) / (t_grid.size - 1)
    bmin, bmax = sched.beta_min, sched.beta_max

    class CoupledOU(torch.nn.Module):
        noise_type = "diagonal"
        sde_type = "ito"

        def f(self, tau: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            t = t_start - tau
            b = bmin + t * (bmax - bmin)
            a2 = torch.exp(-(bmin * t + 0.5 * (bmax - bmin) * t * t))
            S = a2 * lam + (1.0 - a2)
            z = y.view(n, 2, d)
            drift = 0.5 * b * z - b * z / S - g * (z - z.flip(1))
            return drift.reshape(n, 2 * d)

        def g(self, tau: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            t = t_start - tau
            return torch.sqrt(bmin + t * (bmax - bmin)).expand_as(y)

    y0 = torch.as_tensor(z0.reshape(n, 2 * d), device=device)
    ts = torch.tensor([0.0, t_start - t_end], device=device, dtype=y0.dtype)
    with torch.no_grad():
        torchsde.sdeint(CoupledOU(), y0, ts, method="euler", dt=h)
    if device == "cuda":
        torch.cuda.synchronize()


def bench_replicas(n_pairs: int, n_steps: int, d: int, repeats: int) -> None:
    import torch

    sched, g = VPSchedule(), 0.5
    data = GaussianData(np.geomspace(0.05, 20.0, d))
    t_grid = np.linspace(1.0, 1e-3, n_steps + 1)
    z0 = init_replicas(n_pairs, d, seed=0)
    work = n_pairs * n_steps
    rows = []

    def add(label: str, fn: Callable[[], Any], ref: float | None) -> float:
        t = _best_of(fn, repeats)
        rows.append([label, f"{t:.2f}", f"{work / t:.3g}", "" if ref is None else f"{ref / t:.1f}x"])
        return t

    t_sde = add(
        "torchsde.sdeint euler (cpu, float64)", lambda: _torchsde_run(data, sched, t_grid, z0, g, "cpu"), None
    )
    add("ours numpy EM (float64)", lambda: simulate_replicas(data, sched, t_grid, z0, g), t_sde)
    add(
        "ours numpy exact transition (float64)",
        lambda: simulate_replicas(data, sched, t_grid, z0, g, method="exact"),
        t_sde,
    )
    add(
        "ours torch EM (cpu, float64)",
        lambda: simulate_replicas(data, sched, t_grid, z0, g, backend="torch"),
        t_sde,
    )
    add(
        "ours torch EM (cpu, float32)",
        lambda: simulate_replicas(data, sched, t_grid, z0, g, backend="torch", dtype=torch.float32),
        t_sde,
    )
    if torch.cuda.is_available():
        zc = torch.as_tensor(z0, device="cuda")

        def cuda_ours(dtype: Any) -> None:
            simulate_replicas(data, sched, t_grid, zc, g, backend="torch", device="cuda", dtype=dtype)
            torch.cuda.synchronize()

        t_sde_cuda = add(
            "torchsde.sdeint euler (cuda, float64)",
            lambda: _torchsde_run(data, sched, t_grid, z0, g, "cuda"),
            None,
        )
        add("ours torch EM (cuda, float64)", lambda: cuda_ours(torch.float64), t_sde_cuda)
        add("ours torch EM (cuda, float32)", lambda: cuda_ours(torch.float32), t_sde_cuda)
    else:
        rows.append(["(no CUDA device: GPU rows skipped)", "", "", ""])
    _table(
        f"(b) coupled replica pairs, {n_pairs:.0e} pairs x {n_steps} steps, d = {d}, g = {g} (target >= 10x)",
        ["implementation", "wall [s]", "pair-steps/s", "vs torchsde"],
        rows,
    )


# ------------------------------------------------------------------------------------- (c)
def _em_variance(data: GaussianData, sched: VPSchedule, t_grid: np.ndarray, g: float) -> np.ndarray:
    """Var(v) under EM's own recursion P ← (1 + h a)² P + β h (a = ½β − β/Σ_t − 2g at the left point)."""
    P = np.ones(data.dim)
    for t1, t2 in zip(t_grid[:-1], t_grid[1:], strict=True):
        h = t1 - t2
        b = float(beta(sched, t1))
        S = float(alpha(sched, t1)) ** 2 * data.eigenvalues + float(sigma2(sched, t1))
        P = (1.0 + h * (0.5 * b - b / S - 2.0 * g)) ** 2 * P + b * h
    return P


def bench_exact_vs_em(n_pairs: int, repeats: int) -> None:
    sched, g, t0, t1 = VPSchedule(), 0.5, 1.0, 1e-3
    data = GaussianData(np.array([0.05, 1.0, 8.0]))
    d, n_fine = data.dim, 4096
    rng = np.random.default_rng(1)
    xi = rng.standard_normal((n_fine, n_pairs, 2, d))
    z0 = init_replicas(n_pairs, d, seed=2)
    ref = simulate_replicas(data, sched, np.linspace(t0, t1, n_fine + 1), z0, g, method="exact", noise=xi)
    P_true = mode_variance(data, sched, t1, g)
    # quadrature accuracy of the exact stepper's Var(v): compose per-step transitions on a 4-step grid
    rows, curves = [], {"euler_maruyama": [], "exact": []}
    for n_steps in (4, 16, 64, 256):
        r = n_fine // n_steps
        xi_c = xi.reshape(n_steps, r, n_pairs, 2, d).sum(axis=1) / np.sqrt(r)
        grid = np.linspace(t0, t1, n_steps + 1)
        for method in ("euler_maruyama", "exact"):
            t = _best_of(
                lambda m=method, grid=grid, xi_c=xi_c: simulate_replicas(
                    data, sched, grid, z0, g, method=m, noise=xi_c
                ),
                repeats,
            )
            z = simulate_replicas(data, sched, grid, z0, g, method=method, noise=xi_c)
            strong = float(np.sqrt(np.mean((z - ref) ** 2)))
            if method == "exact":
                P = np.ones(d)
                for a, b in zip(grid[:-1], grid[1:], strict=True):
                    Phi, Q = linear_transition(data, sched, float(a), float(b), 2 * g)
                    P = Phi**2 * P + Q
            else:
                P = _em_variance(data, sched, grid, g)
            var_err = float(np.max(np.abs(P / P_true - 1.0)))
            curves[method].append((t, strong, var_err))
            rows.append([method, str(n_steps), f"{t * 1e3:.1f}", f"{strong:.3g}", f"{var_err:.2e}"])
    _table(
        f"(c) exact transition vs Euler-Maruyama, {n_pairs} pairs, t: 1 -> 1e-3, g = {g}, "
        f"spectrum {data.eigenvalues.tolist()}",
        ["method", "steps", "wall [ms]", "strong RMS err", "max rel err Var(v)"],
        rows,
    )
    # equal cost: interpolate each method's log error at EM's wall times
    em = np.array(curves["euler_maruyama"])
    ex = np.array(curves["exact"])
    print("  at equal wall time (log-log interpolation of the exact stepper's curve at EM's costs):")
    for t_em, s_em, v_em in em:
        if ex[0, 0] <= t_em <= ex[-1, 0]:
            s_ex = math.exp(np.interp(math.log(t_em), np.log(ex[:, 0]), np.log(ex[:, 1])))
            print(
                f"    cost {t_em * 1e3:7.1f} ms: strong err EM {s_em:.3g} vs exact {s_ex:.3g} "
                f"({s_em / s_ex:.1f}x); Var(v) err EM {v_em:.2e} vs exact <= {ex[:, 2].max():.1e}"
            )
        else:
            print(
                f"    cost {t_em * 1e3:7.1f} ms: below the exact stepper's cheapest run "
                f"({ex[0, 0] * 1e3:.1f} ms, strong err {ex[0, 1]:.3g}, Var(v) err {ex[0, 2]:.1e}); "
                f"EM strong err {s_em:.3g}, Var(v) err {v_em:.2e}"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    p.add_argument("--repeats", type=int, default=2, help="best-of repeats per timing")
    p.add_argument("--only", choices=["a", "b", "c"], default=None, help="run one part")
    args = p.parse_args()
    n_kappa, n_brent = (10**6, 2000) if args.quick else (10**7, 20_000)
    n_pairs, n_steps = (10**4, 20) if args.quick else (10**5, 100)
    if args.only in (None, "a"):
        bench_solver(n_kappa, n_brent, args.repeats)
    if args.only in (None, "b"):
        bench_replicas(n_pairs, n_steps, d=4, repeats=args.repeats)
    if args.only in (None, "c"):
        bench_exact_vs_em(500 if args.quick else 1000, args.repeats)  # 4096 fine steps of noise: ~200 MB


if __name__ == "__main__":
    main()

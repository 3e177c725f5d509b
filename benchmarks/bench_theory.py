"""Benchmarks of the theory core (not a test): time to accuracy, equal-step throughput, solver.

(a) **Time to accuracy** — the wall time each method needs to bring an answer within 10 %, 3 %, 1 %
    and 0.3 % relative error (bias + 95 % Monte-Carlo half-width; for the max over modes a
    simultaneous 95 % interval, Šidák), for
    * Var(v) per mode of coupled OU replicas (eq. 10; error = max over modes): closed form
      (``mode_variance``), the exact transition (one step, ``simulate_replicas(method="exact")``),
      our Euler–Maruyama and ``torchsde.sdeint`` Euler (driven by plain N(0, h) increments,
      ``_baselines.ForwardIncrements``: its default ``BrownianInterval`` is machinery a fixed-step
      forward sweep does not need, and would slow the baseline by ~1.8×);
    * the split probability of clones in a symmetric Gaussian mixture: closed form
      (``split_probability_exact``), our EM (``split_probability_simulated``) and torchsde EM.
    EM step and pair counts are *chosen from measurements*: the bias from a step-count sweep
    (Var(v): the exact second-moment recursion of the EM scheme, checked against simulation of
    both codes; split: simulated bias against the closed form, fitted by C₁/n + C₂/n²), the
    Monte-Carlo variance from a pilot (kurtosis of v; Bernoulli variance of the split). For each
    target the cheapest (steps × pairs) meeting bias + z·SE ≤ target is timed; runs larger than a
    budget are timed at fewer steps/pairs and scaled linearly (marked *).
(b) **Equal steps** — pair-steps/s at 1e5 pairs × 100 steps (d = 4, float64 unless stated): numpy,
    numba, torch float64/float32 (u/v form) and torchsde (plain increments, and its default
    ``BrownianInterval`` for the record); beside them the **RNG floor** of each — the time to draw
    the same standard normals alone, from the same generators — so that a kernel's time per
    pair-step reads as a multiple of the physical floor.
(c) **Solver** — ``solve_self_consistency`` on 2e6 κ vs vectorized ``scipy.optimize.newton`` and
    ``scipy.optimize.elementwise.find_root`` on the same array, at equal accuracy (each run to the
    loosest tolerance that meets a target, errors measured against a 60-digit mpmath reference;
    ``_bench_solver.py``), and a per-element ``brentq`` loop for scale; peak memory (tracemalloc) as
    a multiple of the input.

Every table alternates its variants round by round (≥ 3 rounds) and reports min and median.
Usage: ``python benchmarks/bench_theory.py [--quick] [--rounds 3] [--threads 1] [--only a|b|c]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from _baselines import coupled_ou, mixture_pairs
from _bench_solver import solver
from _timing import alternate, fmt_s, fmt_x, machine_line, table, tmed, tmin
from scipy import stats
from threadpoolctl import threadpool_limits

from theory import (
    GaussianData,
    VPSchedule,
    init_replicas,
    mode_variance,
    sample_marginal,
    simulate_replicas,
    split_probability_exact,
    split_probability_simulated,
    symmetric_mixture,
)
from theory.ou_streams import _STREAM_STEPS, _NormalStream
from theory.schedules import alpha, beta, sigma2

SCHED = VPSchedule()  # Song et al. (2021) VP-SDE: β from 0.1 to 20
OU_DATA = GaussianData(np.geomspace(0.05, 20.0, 4))  # d = 4 spectrum spanning λ < 1 < λ
G, T0, T_END = 0.5, 1.0, 1e-3  # coupling (per unit VP time), reverse run t: 1 → 1e-3
MU, S2, T_CLONE = np.array([2.0, 0.0]), 0.25, 0.5  # mixture ½N(±μ, S2·I); P_split(0.5) ≈ 0.37
MIX = symmetric_mixture(MU, S2)
TARGETS = (0.10, 0.03, 0.01, 0.003)
Z95 = 1.959963984540054
SQRT_HALF = math.sqrt(0.5)
OURS = "numba" if importlib.util.find_spec("numba") else "numpy"  # what backend="auto" runs


# ---------------------------------------------------------------------------------------------
# measured bias and variance → (steps, pairs)
def em_law_variance(n_steps: int) -> np.ndarray:
    """Var(v) (d,) at T_END of the EM scheme's own law on n uniform steps: P ← (1 + h a)² P + β h."""
    t = np.linspace(T0, T_END, n_steps + 1)[:-1]
    h = (T0 - T_END) / n_steps
    b = np.asarray(beta(SCHED, t))
    S = (
        np.asarray(alpha(SCHED, t))[:, None] ** 2 * OU_DATA.eigenvalues
        + np.asarray(sigma2(SCHED, t))[:, None]
    )
    A = (1.0 + h * (0.5 * b[:, None] - b[:, None] / S - 2.0 * G)) ** 2  # (n, d), drift at the left point
    suffix = np.ones((n_steps + 1, OU_DATA.dim))
    suffix[:-1] = np.cumprod(A[::-1], axis=0)[::-1]  # suffix[k] = ∏_{j ≥ k} A_j
    return suffix[0] * 1.0 + np.sum((b * h)[:, None] * suffix[1:], axis=0)  # P₀ = 1 (independent starts)


def plan(
    bias: Callable[[np.ndarray], np.ndarray], rel_var: float, eps: float, z: float = Z95
) -> tuple[int, int, float]:
    """Cheapest (steps n, pairs N) with bias(n) + z √(rel_var/N) ≤ eps; returns (n, N, bias(n))."""
    ns = np.unique(np.round(np.geomspace(1, 3e5, 160)).astype(int))
    b = bias(ns)
    ok = b < eps
    N = np.full(ns.shape, np.inf)
    N[ok] = np.ceil(z**2 * rel_var / (eps - b[ok]) ** 2) + 1
    k = int(np.argmin(ns * N))
    return int(ns[k]), int(N[k]), float(b[k])


def run_size(n: int, N: int, budget: float, min_pairs: int) -> tuple[int, int]:
    """(steps, pairs) actually timed: all of it within ``budget`` pair-steps, else fewer (scaled)."""
    if n * N <= budget:
        return n, N
    N_run = int(min(N, max(min_pairs, budget // n)))
    return int(min(n, max(1, budget // N_run))), N_run


# ---------------------------------------------------------------------------------------------
# the pipelines being timed (each from nothing to the estimate)
def ours_var_v(method: str, n: int, N: int, seed: int) -> np.ndarray:
    z0 = init_replicas(N, OU_DATA.dim, seed=seed)
    grid = np.linspace(T0, T_END, n + 1)
    z = simulate_replicas(OU_DATA, SCHED, grid, z0, G, method=method, seed=seed + 1, backend="auto")
    return ((z[:, 0] - z[:, 1]) * SQRT_HALF).var(axis=0, ddof=1)  # eq. (7)


def torchsde_var_v(n: int, N: int, seed: int) -> np.ndarray:
    y0 = torch.randn((N, 2, OU_DATA.dim), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    z = coupled_ou(OU_DATA, SCHED, T0, T_END, G, n, y0, seed=seed + 1)
    return ((z[:, 0] - z[:, 1]) * SQRT_HALF).var(dim=0).numpy()


def torchsde_split(n: int, N: int, seed: int) -> float:
    x = torch.as_tensor(sample_marginal(MIX, SCHED, T_CLONE, N, seed))
    z = mixture_pairs(MU, S2, SCHED, T_CLONE, T_END, n, torch.stack([x, x], dim=1), seed=seed + 1)
    side = (z @ torch.as_tensor(MU)) > 0  # (N, 2): the component each replica ends in
    return float((side[:, 0] != side[:, 1]).double().mean())


# ---------------------------------------------------------------------------------------------
# (a) time to accuracy
def _tta_rows(
    jobs: dict[str, Callable[[], Any]],
    entries: list[tuple[float, str, str, str, str, float, Callable[[Any], float] | None]],
    rounds: int,
) -> list[list[str]]:
    """Time ``jobs`` alternated; ``entries``: (target, method, steps, pairs, job, scale, error_of)."""
    times, results = alternate(jobs, rounds)
    rows, ref = [], {}
    for eps, method, _, _, job, scale, _ in entries:
        if method.startswith("torchsde"):
            ref[eps] = tmin(times[job]) * scale
    for eps, method, steps, pairs, job, scale, err in entries:
        t_min, t_med = tmin(times[job]) * scale, tmed(times[job]) * scale
        star = "*" if scale > 1.0 else ""
        achieved = "-" if err is None or scale > 1.0 else f"{err(results[job]):.2%}"
        rows.append(
            [
                f"{eps:.1%}",
                method,
                steps,
                pairs,
                fmt_s(t_min) + star,
                fmt_s(t_med) + star,
                fmt_x(ref[eps] / t_min),
                achieved,
            ]
        )
    return rows


HEADER = ["target", "method", "steps", "pairs", "wall min [s]", "median [s]", "vs torchsde", "achieved"]


def tta_variance(quick: bool, rounds: int) -> None:
    P_true = mode_variance(OU_DATA, SCHED, T_END, G)  # closed form / quadrature, ≤ 1e-10
    err = lambda var: float(np.max(np.abs(var / P_true - 1.0)))  # noqa: E731

    # measured Monte-Carlo variance: kurtosis of v from an exact-transition pilot
    N_pilot = 20_000 if quick else 100_000
    z = simulate_replicas(
        OU_DATA, SCHED, [T0, T_END], init_replicas(N_pilot, 4, seed=7), G, method="exact", seed=8
    )
    v = (z[:, 0] - z[:, 1]) * SQRT_HALF
    kurt = np.mean(v**4, axis=0) / np.mean(v**2, axis=0) ** 2
    rel_var = float(np.max(kurt)) - 1.0  # N · Var(s²)/σ⁴ = κ₄ − 1
    # the error is a max over d modes: a simultaneous 95 % interval (Šidák) for all of them
    z_d = float(stats.norm.ppf(0.5 * (1.0 + 0.95 ** (1.0 / OU_DATA.dim))))
    # measured bias: the EM law's exact variance over a step sweep, checked by simulating both codes
    bias = lambda ns: np.array([np.max(np.abs(em_law_variance(int(n)) / P_true - 1.0)) for n in ns])  # noqa: E731
    sweep = [25, 50, 100, 200, 400, 800, 1600, 3200]
    print(
        f"\n(a1) time to accuracy: Var(v) per mode at t = {T_END} (eq. 10), d = 4, lambda = "
        f"{np.round(OU_DATA.eigenvalues, 3).tolist()}, g = {G}; error = max over modes |rel err|"
    )
    print(
        "  EM bias (exact second-moment recursion of the scheme, max over modes): "
        + ", ".join(f"n={n}: {b:.2%}" for n, b in zip(sweep, bias(np.array(sweep)), strict=True))
    )
    n_chk, N_chk, N_chk_sde = 25, 20_000 if quick else 200_000, 10_000 if quick else 100_000
    law = em_law_variance(n_chk)
    sim_ours = ours_var_v("euler_maruyama", n_chk, N_chk, seed=300)
    sim_sde = torchsde_var_v(n_chk, N_chk_sde, seed=301)
    ci = lambda N: z_d * math.sqrt(rel_var / N)  # noqa: E731
    print(
        f"  check at n = {n_chk}: simulated / recursion - 1 (max over modes): ours "
        f"{np.max(np.abs(sim_ours / law - 1)):.2%} (95% CI {ci(N_chk):.2%}), torchsde "
        f"{np.max(np.abs(sim_sde / law - 1)):.2%} (95% CI {ci(N_chk_sde):.2%}) -> both follow the EM law"
    )
    print(
        f"  Monte-Carlo: kurtosis of v per mode {np.round(kurt, 3).tolist()} "
        f"-> 95% CI simultaneous over the {OU_DATA.dim} modes = {z_d:.3f} sqrt({rel_var:.3f}/N)"
    )

    scale_b = 0.05 if quick else 1.0
    budget = {"ours": 2e7 * scale_b, "sde": 3e6 * scale_b}
    min_pairs = 4096 if quick else 5 * 4096  # whole blocks (block_size 4096)
    jobs: dict[str, Callable[[], Any]] = {"closed": lambda: mode_variance(OU_DATA, SCHED, T_END, G)}
    entries = []
    for eps in TARGETS:
        entries.append((eps, "closed form (mode_variance)", "-", "-", "closed", 1.0, err))
        N_ex = int(math.ceil(z_d**2 * rel_var / eps**2)) + 1  # exact in law: bias ≤ 1e-10
        key = f"exact{N_ex}"
        jobs[key] = lambda N=N_ex: ours_var_v("exact", 1, N, seed=11)
        entries.append((eps, f"exact transition ({OURS})", "1", f"{N_ex:,}", key, 1.0, err))
        n, N, _ = plan(bias, rel_var, eps, z_d)
        for label, who, fn in (
            (f"our EM ({OURS}, f64)", "ours", lambda n, N: ours_var_v("euler_maruyama", n, N, 12)),
            ("torchsde EM (f64, plain dW)", "sde", lambda n, N: torchsde_var_v(n, N, 13)),
        ):
            n_run, N_run = run_size(n, N, budget[who], min_pairs)
            key = f"{who}{n_run}x{N_run}"
            jobs[key] = lambda fn=fn, n_run=n_run, N_run=N_run: fn(n_run, N_run)
            entries.append((eps, label, f"{n:,}", f"{N:,}", key, n * N / (n_run * N_run), err))
    table("", HEADER, _tta_rows(jobs, entries, rounds))


def tta_split(quick: bool, rounds: int) -> None:
    p_true = split_probability_exact(float(np.linalg.norm(MU)), S2, SCHED, T_CLONE, T_END)
    err = lambda p: abs(p / p_true - 1.0)  # noqa: E731
    sweep = (4, 8, 16) if quick else (4, 8, 16, 32, 64)
    N_sw = 20_000 if quick else 200_000
    p_hat = np.array(
        [split_probability_simulated(MIX, SCHED, T_CLONE, T_END, N_sw, n, seed=200 + n) for n in sweep]
    )
    rel, se = p_hat / p_true - 1.0, np.sqrt(p_hat * (1 - p_hat) / N_sw) / p_true
    ns = np.array(sweep, dtype=float)
    X = np.stack([1 / ns, 1 / ns**2], axis=1) / se[:, None]
    coef, *_ = np.linalg.lstsq(X, rel / se, rcond=None)
    coef_se = np.sqrt(np.diag(np.linalg.inv(X.T @ X)))
    rel_var = float((1 - p_hat[-1]) / p_hat[-1])  # Var(p̂)/p² · N, measured
    bias = lambda n: abs(coef[0]) / n + abs(coef[1]) / n**2  # noqa: E731
    n_chk, N_chk = 8, 10_000 if quick else 100_000
    p_sde = torchsde_split(n_chk, N_chk, seed=400)
    print(
        f"\n(a2) time to accuracy: split probability of clones from t = {T_CLONE} to {T_END}, mixture "
        f"1/2 N(+-mu, {S2} I), |mu| = {np.linalg.norm(MU)}, d = 2: P_split = {p_true:.6f} (closed form)"
    )
    print(
        "  EM bias, simulated vs closed form (+-95% CI): "
        + ", ".join(f"n={n}: {r:+.2%} (+-{Z95 * s:.2%})" for n, r, s in zip(sweep, rel, se, strict=True))
    )
    print(
        f"  fit bias = C1/n + C2/n^2: C1 = {coef[0]:.3f} +- {coef_se[0]:.3f}, "
        f"C2 = {coef[1]:.3f} +- {coef_se[1]:.3f}; torchsde at n = {n_chk}: {p_sde / p_true - 1:+.2%} "
        f"(+-{Z95 * math.sqrt((1 - p_sde) / (p_sde * N_chk)):.2%})"
    )
    print(f"  Monte-Carlo: Bernoulli, relative variance (1 - p)/p = {rel_var:.3f} per pair")

    scale_b = 0.05 if quick else 1.0
    budget = {"ours": 1e6 * scale_b, "sde": 1.5e6 * scale_b}
    min_pairs = 4096 if quick else 5 * 4096  # whole blocks (block_size 4096)
    jobs: dict[str, Callable[[], Any]] = {
        "closed": lambda: split_probability_exact(float(np.linalg.norm(MU)), S2, SCHED, T_CLONE, T_END)
    }
    entries = []
    for eps in TARGETS:
        entries.append((eps, "closed form (split_probability_exact)", "-", "-", "closed", 1.0, err))
        entries.append((eps, "exact transition", "n/a (nonlinear score)", "-", "closed", math.nan, None))
        n, N, _ = plan(bias, rel_var, eps)
        for label, who, fn in (
            (
                "our EM (numpy, f64)",
                "ours",
                lambda n, N: split_probability_simulated(MIX, SCHED, T_CLONE, T_END, N, n, seed=21),
            ),
            ("torchsde EM (f64, plain dW)", "sde", lambda n, N: torchsde_split(n, N, seed=22)),
        ):
            n_run, N_run = run_size(n, N, budget[who], min_pairs)
            key = f"{who}{n_run}x{N_run}"
            jobs[key] = lambda fn=fn, n_run=n_run, N_run=N_run: fn(n_run, N_run)
            entries.append((eps, label, f"{n:,}", f"{N:,}", key, n * N / (n_run * N_run), err))
    rows = _tta_rows(jobs, [e for e in entries if not math.isnan(e[5])], rounds)
    for i, e in enumerate(entries):
        if math.isnan(e[5]):
            rows.insert(i, [f"{e[0]:.1%}", e[1], e[2], "-", "-", "-", "-", "-"])
    table("", HEADER, rows)


# ---------------------------------------------------------------------------------------------
# (b) equal steps, and the RNG floor under each
SDE_PLAIN, SDE_INTERVAL = "torchsde euler, plain dW (float64)", "torchsde euler, BrownianInterval (float64)"
FLOOR_NUMBA, FLOOR_NUMPY = "numba Generator.standard_normal", "numpy Generator.standard_normal"
FLOOR_TORCH64, FLOOR_TORCH32 = "torch.randn float64", "torch.randn float32"
FLOOR_OF = {  # the normals each implementation draws, from the same kind of generator
    SDE_PLAIN: FLOOR_TORCH64,
    SDE_INTERVAL: FLOOR_TORCH64,
    "ours numpy EM (float64)": FLOOR_NUMPY,
    "ours numpy exact (float64)": FLOOR_NUMPY,
    "ours numba EM (float64)": FLOOR_NUMBA,
    "ours numba exact (float64)": FLOOR_NUMBA,
    "ours torch EM u/v (float64)": FLOOR_TORCH64,
    "ours torch EM u/v (float32)": FLOOR_TORCH32,
}


def _numba_floor() -> Callable[[Any, np.ndarray, int], None] | None:
    """The numba kernels' own draw loop (``_ou_numba._draw``) over K steps, without the update."""
    if importlib.util.find_spec("numba") is None:
        return None
    import numba

    from theory._ou_numba import _draw

    @numba.njit(nogil=True)
    def draw_steps(gen: Any, buf: np.ndarray, n_steps: int) -> None:  # pragma: no cover - compiled
        for _ in range(n_steps):
            _draw(gen, buf)

    return draw_steps


def rng_floors(n_pairs: int, n_steps: int, seed: int) -> dict[str, Callable[[], Any]]:
    """Jobs drawing the (n_steps, n_pairs, 2, d) standard normals of one run and nothing else: per-block
    PCG64 streams as the simulator uses them (numba block-major, numpy step-major), and one torch
    generator per run (torch u/v and torchsde's increments)."""
    d = OU_DATA.dim

    def stream() -> _NormalStream:
        return _NormalStream(n_pairs, d, seed, _STREAM_STEPS, 4096, "numpy", None, np.float64)

    def numpy_floor() -> None:
        st, out = stream(), np.empty((n_pairs, 2, d))
        for _ in range(n_steps):
            st.draw(out)

    def torch_floor(dtype: torch.dtype) -> None:
        gen, out = torch.Generator().manual_seed(seed), torch.empty((n_pairs, 2 * d), dtype=dtype)
        for _ in range(n_steps):
            torch.randn((n_pairs, 2 * d), generator=gen, dtype=dtype, out=out)

    jobs: dict[str, Callable[[], Any]] = {
        FLOOR_NUMPY: numpy_floor,
        FLOOR_TORCH64: lambda: torch_floor(torch.float64),
        FLOOR_TORCH32: lambda: torch_floor(torch.float32),
    }
    draw_steps = _numba_floor()
    if draw_steps is not None:

        def numba_floor() -> None:
            st = stream()
            buf = np.empty((st.B, 2, d))
            for gen in st.gens:
                draw_steps(gen, buf, n_steps)

        draw_steps(np.random.default_rng(0), np.empty((1, 2, d)), 1)  # compile outside the timing
        jobs[FLOOR_NUMBA] = numba_floor
    return jobs


def equal_steps(n_pairs: int, n_steps: int, rounds: int) -> None:
    grid = np.linspace(T0, T_END, n_steps + 1)
    z0 = init_replicas(n_pairs, OU_DATA.dim, seed=0)
    zt = torch.as_tensor(z0)
    y0 = torch.as_tensor(z0)
    sim = simulate_replicas
    jobs: dict[str, Callable[[], Any]] = {
        SDE_PLAIN: lambda: coupled_ou(OU_DATA, SCHED, T0, T_END, G, n_steps, y0, seed=1),
        SDE_INTERVAL: lambda: coupled_ou(
            OU_DATA, SCHED, T0, T_END, G, n_steps, y0, brownian="interval", seed=1
        ),
        "ours numpy EM (float64)": lambda: sim(OU_DATA, SCHED, grid, z0, G, backend="numpy"),
        "ours numba EM (float64)": lambda: sim(OU_DATA, SCHED, grid, z0, G, backend="numba"),
        "ours numba exact (float64)": lambda: sim(
            OU_DATA, SCHED, grid, z0, G, method="exact", backend="numba"
        ),
        "ours numpy exact (float64)": lambda: sim(
            OU_DATA, SCHED, grid, z0, G, method="exact", backend="numpy"
        ),
        "ours torch EM u/v (float64)": lambda: sim(OU_DATA, SCHED, grid, zt, G, backend="torch"),
        "ours torch EM u/v (float32)": lambda: sim(
            OU_DATA, SCHED, grid, zt, G, backend="torch", dtype=torch.float32
        ),
    }
    if importlib.util.find_spec("numba") is None:  # without the fast extra "numba" would run numpy
        jobs = {k: v for k, v in jobs.items() if "numba" not in k}
    if torch.cuda.is_available():
        zc = torch.as_tensor(z0, device="cuda")

        def cuda(dtype: Any) -> None:
            sim(OU_DATA, SCHED, grid, zc, G, backend="torch", device="cuda", dtype=dtype)
            torch.cuda.synchronize()

        jobs["ours torch EM u/v (cuda, float64)"] = lambda: cuda(torch.float64)
        jobs["ours torch EM u/v (cuda, float32)"] = lambda: cuda(torch.float32)
    floors = rng_floors(n_pairs, n_steps, seed=1)
    times, _ = alternate({**jobs, **{f"normals alone: {k}": v for k, v in floors.items()}}, rounds)
    ref_min, ref_med = tmin(times[SDE_PLAIN]), tmed(times[SDE_PLAIN])
    work = n_pairs * n_steps
    ns = {k: 1e9 * tmin(ts) / work for k, ts in times.items()}
    ns_med = {k: 1e9 * tmed(ts) / work for k, ts in times.items()}

    def over_floor(name: str) -> str:
        floor = f"normals alone: {FLOOR_OF[name]}" if name in FLOOR_OF else None
        if floor not in ns:
            return "-"
        return f"{ns[name] / ns[floor]:.2f} / {ns_med[name] / ns_med[floor]:.2f}"

    rows = [
        [
            name,
            fmt_s(tmin(ts)),
            fmt_s(tmed(ts)),
            f"{ns[name]:.1f}",
            f"{ns_med[name]:.1f}",
            fmt_x(ref_min / tmin(ts)) if name in jobs else "-",
            fmt_x(ref_med / tmed(ts)) if name in jobs else "-",
            over_floor(name),
        ]
        for name, ts in times.items()
    ]
    table(
        f"(b) equal steps: {n_pairs:.0e} pairs x {n_steps} steps, d = 4, g = {G}, {rounds} rounds "
        f"alternated; the reference is {SDE_PLAIN}; 'normals alone' = the RNG floor: the same "
        f"{2 * OU_DATA.dim} standard normals per pair-step drawn from the same generators, nothing else",
        [
            "implementation",
            "wall min [s]",
            "median [s]",
            "ns/pair-step (min)",
            "(median)",
            "vs torchsde (min)",
            "(median)",
            "x its RNG floor (min / median)",
        ],
        rows,
    )
    em, floor = "ours numba EM (float64)", f"normals alone: {FLOOR_NUMBA}"
    if em in ns and floor in ns:
        print(
            f"  numba EM: {ns[em]:.1f} ns per pair-step = {ns[em] / ns[floor]:.2f}x the RNG floor "
            f"({ns[floor]:.1f} ns: its own normals drawn alone) (min; median "
            f"{ns_med[em] / ns_med[floor]:.2f}x; target <= 1.5x)"
        )
    print(
        f"  torchsde: plain dW is {tmin(times[SDE_INTERVAL]) / ref_min:.2f}x faster than its default "
        f"BrownianInterval (min; median {tmed(times[SDE_INTERVAL]) / ref_med:.2f}x); the RNG floor under it "
        f"(torch.randn float64) is {ns[f'normals alone: {FLOOR_TORCH64}'] / ns[SDE_PLAIN]:.0%} of its time"
    )


def _warm_up() -> None:
    """Compile the numba kernels and initialise torch/torchsde outside the timed rounds."""
    z0 = init_replicas(64, OU_DATA.dim, seed=0)
    for method in ("euler_maruyama", "exact"):
        simulate_replicas(OU_DATA, SCHED, [T0, 0.5, T_END], z0, G, method=method, backend="auto")
    simulate_replicas(OU_DATA, SCHED, [T0, 0.5, T_END], torch.as_tensor(z0), G, backend="torch")
    for brownian in ("plain", "interval"):
        coupled_ou(OU_DATA, SCHED, T0, T_END, G, 2, torch.as_tensor(z0), brownian=brownian)
    torchsde_split(2, 64, seed=0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes and budgets (smoke run)")
    p.add_argument("--rounds", type=int, default=3, help="alternated rounds per table (>= 3 for the record)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (set explicitly)")
    p.add_argument("--only", choices=["a", "b", "c"], default=None, help="run one part")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    blas = threadpool_limits(args.threads)  # OpenBLAS under numpy/scipy: the same count, for the record
    print(machine_line(torch.get_num_threads()))
    _warm_up()
    if args.only in (None, "a"):
        tta_variance(args.quick, args.rounds)
        tta_split(args.quick, args.rounds)
        print(
            "  * timed at fewer steps/pairs within a budget and scaled by (steps x pairs); "
            "achieved = realised error of the last round (runs timed in full only)"
        )
    if args.only in (None, "b"):
        equal_steps(*((10_000, 20) if args.quick else (100_000, 100)), args.rounds)
    if args.only in (None, "c"):
        if args.quick:
            solver(10**5, 1000, args.rounds, n_ref=200, n_peak=10**6)
        else:
            solver(2 * 10**6, 20_000, args.rounds)
    print("\n" + machine_line(torch.get_num_threads()).replace("machine:", "machine at the end:"))
    blas.restore_original_limits()


if __name__ == "__main__":
    main()

"""(c) of bench_theory.py: ``solve_self_consistency`` (eq. 49) against a Python ``brentq`` loop and a
vectorized ``scipy.optimize.newton`` on the same array, with peak memory from tracemalloc."""

from __future__ import annotations

import math
import tracemalloc
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from _timing import alternate, fmt_s, fmt_x, table, tmed, tmin

from theory import solve_self_consistency


def _peak_ratio(fn: Callable[[], Any], nbytes: int) -> float:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1] / nbytes
    finally:
        tracemalloc.stop()


def _newton_vectorized(kappa: np.ndarray) -> np.ndarray:
    """scipy.optimize.newton on the whole array: w − tanh(κ w) = 0 for w = u/κ, from w = tanh κ."""
    from scipy.optimize import newton

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some elements stall at tol (reported below as accuracy)
        w = newton(
            lambda w: w - np.tanh(kappa * w),
            np.tanh(kappa),
            fprime=lambda w: 1.0 - kappa / np.cosh(kappa * w) ** 2,
            tol=1e-15,
            maxiter=50,
            disp=False,
        )
    return w * kappa


def _brentq_loop(kappa: np.ndarray) -> np.ndarray:
    from scipy.optimize import brentq

    out = np.empty_like(kappa)
    for i, k in enumerate(kappa):  # bracket [tiny, κ+1]: f < 0 just above 0 for κ > 1, f(κ+1) > 0
        out[i] = brentq(
            lambda u, k=k: u - k * math.tanh(u), 1e-300, k + 1.0, xtol=1e-300, rtol=4 * np.finfo(float).eps
        )
    return out


def solver(n: int, n_brent: int, rounds: int) -> None:
    rng = np.random.default_rng(0)
    dists = {
        "kappa-1 log-uniform in [1e-12, 1e6]": 1.0 + 10.0 ** rng.uniform(-12, 6, n),
        "kappa uniform in (1, 50)": rng.uniform(1.0, 50.0, n),
    }
    rows = []
    for name, kappa in dists.items():
        sub = kappa[:n_brent]
        jobs = {
            "ours (chunks of 65,536)": lambda k=kappa: solve_self_consistency(k),
            "ours unchunked": lambda k=kappa: solve_self_consistency(k, chunk=k.size),
            "scipy newton, vectorized": lambda k=kappa: _newton_vectorized(k),
            f"brentq loop ({n_brent:.0e} subsample)": lambda s=sub: _brentq_loop(s),
        }
        times, results = alternate(jobs, rounds)
        ours = results["ours (chunks of 65,536)"]
        assert np.array_equal(ours, results["ours unchunked"])
        per = {k: tmin(ts) / (n_brent if k.startswith("brentq") else n) for k, ts in times.items()}
        per_med = {k: tmed(ts) / (n_brent if k.startswith("brentq") else n) for k, ts in times.items()}
        base, base_med = per["ours (chunks of 65,536)"], per_med["ours (chunks of 65,536)"]
        for k, ts in times.items():
            ref = ours[:n_brent] if k.startswith("brentq") else ours
            with np.errstate(invalid="ignore"):
                rel = float(np.nanmax(np.abs(results[k] / ref - 1.0)))
            peak = f"{_peak_ratio(jobs[k], kappa.nbytes):.2f}x" if not k.startswith("brentq") else "-"
            rows.append(
                [
                    name if k.startswith("ours (") else "",
                    k,
                    fmt_s(tmin(ts)),
                    fmt_s(tmed(ts)),
                    f"{per[k] * 1e9:.1f}",
                    fmt_x(per[k] / base) + " / " + fmt_x(per_med[k] / base_med),
                    peak,
                    f"{rel:.1e}",
                ]
            )
    table(
        f"(c) self-consistency u = kappa tanh u (eq. 49), {n:.0e} values, {rounds} rounds alternated; "
        "slower-than-ours factor per element (min / median); peak mem = tracemalloc peak / input size "
        "(the output alone is 1x)",
        [
            "kappa distribution",
            "method",
            "wall min [s]",
            "median [s]",
            "ns/value",
            "ours faster by",
            "peak mem",
            "max rel diff vs ours",
        ],
        rows,
    )

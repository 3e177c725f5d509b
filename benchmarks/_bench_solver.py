"""(c) of bench_theory.py: ``solve_self_consistency`` (eq. 49) against vectorized root finders that
converge, compared at equal accuracy.

Accuracy is measured, never assumed: a reference subsample of each κ array (random values plus the
values nearest κ = 1, where ``u − κ tanh u`` loses its digits to cancellation, and the largest) is
solved by Newton's method in 60-digit arithmetic (mpmath, started at u = κ, right of the root, where
the convex residual makes the iterates decrease monotonically to u*). Every method's error is the
maximum relative error over that subsample, taken from its run on the whole array.

The baselines, each given the loosest tolerance that meets a target on the reference subsample
(chosen from a ladder; the timed run on the whole array then reports the error it achieved):

* ``scipy.optimize.newton`` on the whole array, ``w − tanh(κ w) = 0`` for ``w = u/κ`` from
  ``w = tanh κ ≥ w*``: the vectorized Newton stops when every element's step is below ``tol``
  (absolute), so its cost is set by the slowest element;
* ``scipy.optimize.elementwise.find_root`` (Chandrupatla's bracketing method, vectorized), on the
  bracket ``[½√(3(1 − 1/κ))/κ, tanh κ]`` of w (``tanh u ≥ u − u³/3`` gives ``u*² ≥ 3(1 − 1/κ)``),
  with tolerance ``xrtol``; elements stop one by one.

A per-element Python ``brentq`` loop, run to full precision and timed on a subsample, is kept as a
row for scale. All three evaluate ``u − κ tanh u`` (or its w form) in float64, so near κ → 1 they
stop at a floor of order 1e-16/(κ − 1) relative error (about 1e-4 at κ − 1 = 1e-12): below that
floor no tolerance helps, and the table says "none reaches it" instead of timing them.
"""

from __future__ import annotations

import math
import tracemalloc
import warnings
from collections.abc import Callable
from typing import Any

import mpmath
import numpy as np
from _timing import alternate, fmt_s, fmt_x, table, tmed, tmin

from theory import solve_self_consistency

TARGETS = (1e-4, 1e-8, 1e-12)  # max relative error vs the 60-digit reference
NEWTON_TOLS = tuple(10.0**-k for k in range(2, 23))  # absolute, on w = u/κ ∈ (0, 1]
FIND_ROOT_XRTOLS = tuple(10.0**-k for k in range(2, 16))


def _peak_ratio(fn: Callable[[], Any], nbytes: int) -> float:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1] / nbytes
    finally:
        tracemalloc.stop()


def reference_root(kappa: float, digits: int = 60) -> float:
    """u* of u = κ tanh u (κ > 1) by Newton in ``digits``-digit arithmetic from u = κ, to a relative
    step of 1e-35 (near κ = 1 the residual itself cancels ~log10(1/(κ − 1)) of the digits)."""
    with mpmath.workdps(digits):
        k = mpmath.mpf(kappa)
        u = k
        for _ in range(1000):  # ≈ 35 steps at κ − 1 = 1e-12 (ratio 2/3 until the quadratic phase)
            th = mpmath.tanh(u)
            step = (u - k * th) / (1 - k * (1 - th * th))
            u -= step
            if abs(step) < mpmath.mpf(10) ** -35 * u:
                return float(u)
    raise RuntimeError(f"{digits}-digit Newton did not converge for kappa = {kappa!r}")


def newton_vectorized(kappa: np.ndarray, tol: float) -> np.ndarray:
    """scipy.optimize.newton on the whole array (module docstring), stopping at step < ``tol``."""
    from scipy.optimize import newton

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "some failed to converge": the accuracy column says how far
        w = newton(
            lambda w: w - np.tanh(kappa * w),
            np.tanh(kappa),
            fprime=lambda w: 1.0 - kappa / np.cosh(kappa * w) ** 2,
            tol=tol,
            maxiter=200,
            disp=False,
        )
    return w * kappa


def find_root_vectorized(kappa: np.ndarray, xrtol: float) -> np.ndarray:
    """scipy.optimize.elementwise.find_root (Chandrupatla) on the bracket of the module docstring."""
    from scipy.optimize.elementwise import find_root

    lo = 0.5 * np.sqrt(3.0 * (1.0 - 1.0 / kappa)) / kappa
    res = find_root(
        lambda w, k: w - np.tanh(k * w), (lo, np.tanh(kappa)), args=(kappa,), tolerances={"xrtol": xrtol}
    )
    return res.x * kappa


def brentq_loop(kappa: np.ndarray) -> np.ndarray:
    """One ``scipy.optimize.brentq`` call per element, to full float64 precision."""
    from scipy.optimize import brentq

    out = np.empty_like(kappa)
    for i, k in enumerate(kappa):  # bracket [tiny, κ+1]: f < 0 just above 0 for κ > 1, f(κ+1) > 0
        out[i] = brentq(
            lambda u, k=k: u - k * math.tanh(u), 1e-300, k + 1.0, xtol=1e-300, rtol=4 * np.finfo(float).eps
        )
    return out


def _rel_err(u: np.ndarray, ref: np.ndarray) -> float:
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.abs(u / ref - 1.0)
    return float(np.max(np.where(np.isfinite(e), e, np.inf)))


def _calibrate(
    solve: Callable[[np.ndarray, float], np.ndarray],
    ladder: tuple[float, ...],
    k_ref: np.ndarray,
    ref: np.ndarray,
) -> tuple[dict[float, float | None], float]:
    """Loosest tolerance of ``ladder`` meeting each target on the reference subsample (None: none
    does), and the best error any tolerance reached."""
    errs = [_rel_err(solve(k_ref, tol), ref) for tol in ladder]
    chosen = {
        eps: next((tol for tol, e in zip(ladder, errs, strict=True) if e <= eps), None) for eps in TARGETS
    }
    return chosen, min(errs)


def _reference_indices(kappa: np.ndarray, rng: np.random.Generator, n_random: int) -> np.ndarray:
    order = np.argsort(kappa)
    return np.unique(
        np.concatenate([rng.choice(kappa.size, n_random, replace=False), order[:100], order[-50:]])
    )


def _distribution_rows(
    name: str, kappa: np.ndarray, n_brent: int, n_ref: int, rounds: int, rng: np.random.Generator
) -> list[list[str]]:
    """Calibrate the baselines on the reference subsample, time every method alternated, one row each."""
    n = kappa.size
    idx = _reference_indices(kappa, rng, n_ref)
    ref = np.array([reference_root(float(k)) for k in kappa[idx]])
    brent_key = f"brentq loop ({n_brent:.0e} subsample)"
    jobs: dict[str, Callable[[], Any]] = {
        "ours": lambda: solve_self_consistency(kappa),
        "ours unchunked": lambda: solve_self_consistency(kappa, chunk=kappa.size),
        brent_key: lambda: brentq_loop(kappa[:n_brent]),
    }
    entries = [
        ("all", "ours (chunks of 65,536)", "-", "ours"),
        ("all", "ours unchunked", "chunk = n", "ours unchunked"),
    ]
    for label, solve, ladder, knob in (
        ("scipy newton, vectorized", newton_vectorized, NEWTON_TOLS, "tol"),
        ("scipy find_root (Chandrupatla), vectorized", find_root_vectorized, FIND_ROOT_XRTOLS, "xrtol"),
    ):
        chosen, best = _calibrate(solve, ladder, kappa[idx], ref)
        for eps in TARGETS:
            tol = chosen[eps]
            if tol is None:
                entries.append((f"{eps:.0e}", label, f"none reaches it (best {best:.1e})", None))
                continue
            key = f"{label} {knob}={tol:.0e}"
            jobs[key] = lambda solve=solve, tol=tol: solve(kappa, tol)
            entries.append((f"{eps:.0e}", label, f"{knob} = {tol:.0e}", key))
    entries.append(("(full)", "brentq, per-element Python loop", "rtol = 4 eps", brent_key))
    times, results = alternate(jobs, rounds)
    assert np.array_equal(results["ours"], results["ours unchunked"])  # chunking never changes a bit
    size = {k: n_brent if k == brent_key else n for k in jobs}
    per = {k: tmin(ts) / size[k] for k, ts in times.items()}
    per_med = {k: tmed(ts) / size[k] for k, ts in times.items()}
    rows = []
    for target, method, setting, key in entries:
        first = name if not rows else ""
        if key is None:
            rows.append([first, target, method, setting, "-", "-", "-", "-", "-", "-"])
            continue
        if key == brent_key:  # timed on the first n_brent values; its error from one untimed run
            err = _rel_err(brentq_loop(kappa[idx]), ref)
            peak = "-"
        else:
            err = _rel_err(results[key][idx], ref)
            peak = f"{_peak_ratio(jobs[key], kappa.nbytes):.2f}x"
        faster = fmt_x(per[key] / per["ours"]) + " / " + fmt_x(per_med[key] / per_med["ours"])
        rows.append(
            [
                first,
                target,
                method,
                setting,
                fmt_s(tmin(times[key])),
                fmt_s(tmed(times[key])),
                f"{per[key] * 1e9:.1f}",
                "1" if key == "ours" else faster,
                peak,
                f"{err:.1e}",
            ]
        )
    return rows


def solver(n: int, n_brent: int, rounds: int, n_ref: int = 500, n_peak: int = 10**7) -> None:
    rng = np.random.default_rng(0)
    dists = {
        "kappa-1 log-uniform in [1e-12, 1e6]": 1.0 + 10.0 ** rng.uniform(-12, 6, n),
        "kappa uniform in (1, 50)": rng.uniform(1.0, 50.0, n),
    }
    print(
        f"\n(c) self-consistency u = kappa tanh u (eq. 49), {n:.0e} values per distribution; error = max "
        f"relative error vs a 60-digit Newton reference (mpmath) on {n_ref} random values + the 100 "
        "nearest kappa = 1 + the 50 largest; baselines at the loosest tolerance meeting each target"
    )
    rows = [
        r
        for name, kappa in dists.items()
        for r in _distribution_rows(name, kappa, n_brent, n_ref, rounds, rng)
    ]
    table(
        f"  {rounds} rounds alternated; 'ours faster by' = time per value relative to ours (min / median); "
        "peak mem = tracemalloc peak / input size (the output alone is 1x)",
        [
            "kappa distribution",
            "target",
            "method",
            "setting",
            "wall min [s]",
            "median [s]",
            "ns/value",
            "ours faster by",
            "peak mem",
            "max rel err",
        ],
        rows,
    )
    big = 1.0 + 10.0 ** np.random.default_rng(1).uniform(-12, 6, n_peak)
    print(
        f"  peak memory of ours at {n_peak:.0e} values (tracemalloc / input size): chunks of 65,536 "
        f"{_peak_ratio(lambda: solve_self_consistency(big), big.nbytes):.2f}x, unchunked "
        f"{_peak_ratio(lambda: solve_self_consistency(big, chunk=big.size), big.nbytes):.2f}x"
    )

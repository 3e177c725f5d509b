"""Timing on a noisy shared machine: variants alternated round by round, min and median, machine state.

Every variant of one table runs once per round, in alternating order (forward on even rounds,
backward on odd ones, so slow drifts of the machine's load hit every variant alike); a table reports
the minimum (the least-disturbed run) and the median of its ≥ 3 rounds.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any


def alternate(
    jobs: dict[str, Callable[[], Any]],
    rounds: int,
    setup: dict[str, Callable[[], None]] | None = None,
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Run every job once per round, order alternating; return (wall times per job, last results).

    ``setup[k]``, when given, runs untimed right before each run of job ``k`` (a job that needs a
    state another job may have changed sets it there, so the order of jobs never matters)."""
    times: dict[str, list[float]] = {k: [] for k in jobs}
    results: dict[str, Any] = {}
    names = list(jobs)
    for r in range(rounds):
        for k in names if r % 2 == 0 else names[::-1]:
            if setup is not None and k in setup:
                setup[k]()
            t0 = time.perf_counter()
            results[k] = jobs[k]()
            times[k].append(time.perf_counter() - t0)
    return times, results


def tmin(ts: list[float]) -> float:
    return min(ts)


def tmed(ts: list[float]) -> float:
    return statistics.median(ts)


def fmt_s(t: float) -> str:
    """Seconds with 3 significant digits, scientific below 1 ms."""
    return f"{t:.3g}" if t >= 1e-3 else f"{t:.2e}"


def fmt_x(r: float) -> str:
    return f"{r:,.0f}x" if r >= 100 else f"{r:.1f}x"


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def machine_line(torch_threads: int) -> str:
    """Load average, CPU count, thread settings and library versions, for the record."""
    import numpy as np
    import scipy
    import torch

    try:
        import numba

        nb = numba.__version__
    except ImportError:
        nb = "absent"
    from threadpoolctl import threadpool_info

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    blas = sorted({str(p["num_threads"]) for p in threadpool_info() if p.get("user_api") == "blas"})
    return (
        f"machine: {platform.machine()} {os.cpu_count()} CPUs, load average (1/5/15 min) {load}; "
        f"threads: torch {torch_threads} (torch.set_num_threads), "
        f"BLAS {'/'.join(blas) or '-'} (threadpoolctl), "
        "numba and numpy elementwise kernels single-threaded; "
        f"numpy {np.__version__}, scipy {scipy.__version__}, torch {torch.__version__}, numba {nb}"
    )

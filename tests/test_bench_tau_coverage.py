"""benchmarks/bench_tau_coverage.py --quick runs end to end (a smoke test: 3 clone experiments)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_tau_coverage_quick_prints_its_tables(run_benchmark) -> None:
    run = run_benchmark("bench_tau_coverage.py", "--quick")
    out = run.stdout
    assert "coverage of the closed-form truth" in out and "reference: bounded sigmoid center" in out, out
    for name in ("half", "quadrant", "block4", "checker"):
        assert sum(line.startswith(name) for line in out.splitlines()) == 2, out  # one row per table
    assert "3 replicates" in out and "load average" in out and "threads: torch 1" in out

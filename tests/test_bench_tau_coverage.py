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
        rows = [ln for ln in out.splitlines() if ln.split()[:1] == [name] and ln.split()[1] != "→"]
        assert len(rows) == 2, out  # one row per table of single factors
    assert "paired 95% interval of Δτ" in out
    for pair in (
        "half → quadrant",
        "quadrant → block4",
        "block4 → checker",
        "half → block4",
        "half → checker",
    ):
        assert sum(line.startswith(pair) for line in out.splitlines()) == 1, out
    assert "3 replicates" in out and "load average" in out and "threads: torch 1" in out

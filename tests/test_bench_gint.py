"""benchmarks/bench_gint_calibration.py --quick runs end to end on the shipped default (a smoke test)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_gint_calibration_quick_prints_the_three_checks(run_benchmark) -> None:
    run = run_benchmark("bench_gint_calibration.py", "--quick")
    out = run.stdout
    titles = ("(a) null at s = 0", "(b) coverage of the 95% interval", "(c) G_int - 1 at M = 8 and M = 16")
    for title in titles:
        assert title in out, out[-2000:]
    assert "identically 0 by construction" in out
    assert "max |G_int - 1| over 4 sets and 4 layers = 0.0e+00" in out  # eq. (75) at s = 0
    assert "threads: torch 1" in out and "runtime" in out and "no verdict" in out

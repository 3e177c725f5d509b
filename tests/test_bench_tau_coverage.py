"""benchmarks/bench_tau_coverage.py --quick runs end to end (a smoke test: 3 clone experiments)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_tau_coverage_quick_prints_its_tables() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_tau_coverage.py"), "--quick"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    )
    out = run.stdout
    assert "coverage of the closed-form truth" in out and "reference: bounded sigmoid center" in out, out
    for name in ("half", "quadrant", "block4", "checker"):
        assert sum(line.startswith(name) for line in out.splitlines()) == 2, out  # one row per table
    assert "3 replicates" in out and "load average" in out and "threads: torch 1" in out

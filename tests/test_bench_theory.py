"""benchmarks/bench_theory.py --quick runs end to end (a smoke test: ~12 s on 2 loaded CPU cores)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_theory_quick_prints_every_table() -> None:
    pytest.importorskip("torchsde")  # the optional `bench` extra
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_theory.py"), "--quick"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    )
    for title in (
        "(a1) time to accuracy",
        "(a2) time to accuracy",
        "(b) equal steps",
        "(c) self-consistency",
    ):
        assert title in run.stdout, run.stdout[-2000:]
    assert "load average" in run.stdout and "threads: torch 1" in run.stdout

"""benchmarks/bench_dit.py: its noise-ahead helpers against the sampler's keyed streams, the paired
overhead estimator, and a CPU smoke run (stock processors for "plain", no recompilation while timing)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_dit import keyed_noise, noise_feed, paired_overhead  # noqa: E402

from dit_validation.sampler import STREAM_NOISE_A, STREAM_NOISE_B, stream_normal  # noqa: E402


def test_noise_drawn_ahead_is_the_samplers_keyed_noise_step_by_step() -> None:
    seeds, shape = [3, 7, 11], (2, 4, 4)
    noise = keyed_noise(seeds, 4, shape, torch.device("cpu"))  # (steps, 2P, C, H, W)
    assert noise.shape == (4, 6, *shape) and noise.dtype == torch.float32
    for step in range(4):
        for i, seed in enumerate(seeds):  # rows: replica A of every seed, then replica B
            a = stream_normal(seed, STREAM_NOISE_A, step, shape).float()
            b = stream_normal(seed, STREAM_NOISE_B, step, shape).float()
            assert torch.equal(noise[step, i], a) and torch.equal(noise[step, len(seeds) + i], b)


def test_noise_feed_hands_out_the_steps_in_order_and_cycles() -> None:
    noise = torch.arange(3.0)[:, None].expand(3, 2)
    feed = noise_feed(noise)
    assert [float(feed()[0]) for _ in range(7)] == [0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0]


def test_paired_overhead_is_the_median_of_per_round_ratios() -> None:
    base = [1.0, 2.0, 4.0, 1.0]  # a drifting load: the minima alone would compare different rounds
    extra = [1.1, 2.1, 4.8, 1.05]
    med, lo, hi = paired_overhead(base, extra)
    ratios = np.array(extra) / np.array(base) - 1
    assert med == pytest.approx(np.median(ratios)) and lo == pytest.approx(0.05) and hi == pytest.approx(0.2)


@pytest.mark.slow
def test_bench_dit_cpu_smoke_run() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    argv = ["--device", "cpu", "--preset", "tiny", "--batch", "8", "--rounds", "3", "--iters", "1"]
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_dit.py"),
            *argv,
            "--compile",
            "--compile-backend",
            "eager",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    )
    for line in (
        "plain (stock processors)",
        "coupled processors, g = 0",
        "coupled compiled (g = 0.5)",
        "host work of the production sampler per step",
        "graphs compiled inside the timed rounds: 0 ",  # every job sets its own g: no recompilation
        "Protocol II capture overhead",
        "paper Protocol I grid",
    ):
        assert line in run.stdout, run.stdout[-2000:]


def test_bench_dit_rejects_bad_arguments_in_one_line() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_dit.py"), "--device", "cpu", "--rounds", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 2 and "--rounds must be an integer >= 3, got 2" in run.stderr

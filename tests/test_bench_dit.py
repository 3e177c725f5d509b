"""benchmarks/bench_dit.py: its noise-ahead helpers against the sampler's keyed streams, the paired
overhead estimator, and a CPU smoke run (stock processors for "plain", no recompilation while timing)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_dit import (  # noqa: E402
    full_grid_units,
    grid_on_ranks,
    keyed_noise,
    noise_feed,
    paired_overhead,
    protocol1_forwards,
    protocol2_forwards,
)

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
def test_bench_dit_cpu_smoke_run(run_benchmark) -> None:
    argv = ["--device", "cpu", "--preset", "tiny", "--batch", "8", "--rounds", "3", "--iters", "1"]
    run = run_benchmark("bench_dit.py", *argv, "--compile", "--compile-backend", "eager")
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


def test_bench_dit_rejects_bad_arguments_in_one_line(run_benchmark) -> None:
    run = run_benchmark("bench_dit.py", "--device", "cpu", "--rounds", "2", check=False)
    assert run.returncode == 2 and "--rounds must be an integer >= 3, got 2" in run.stderr


def test_the_grids_forward_counts_are_the_tally_of_real_runs(tiny64, tmp_path) -> None:
    """The counts behind the full grid's wall clock on N GPUs (README): Protocol I and II on a small grid
    against the package's own tally of rows through the transformer (tiny64: no guidance)."""
    from dit_validation.forwards import forwards
    from dit_validation.protocol1 import Protocol1Config, run_protocol1
    from dit_validation.protocol2 import Protocol2Config, run_protocol2

    p1 = Protocol1Config(g=(0.5,), t_int=(0, 1, 3), num_seeds=4, num_steps=3, n_boot=10, control=False)
    p2 = Protocol2Config(g=(0.0, 0.5), num_seeds=3, num_steps=3, basis_pairs=8, gint_modes=2, n_boot=10)
    before = forwards.snapshot()
    run_protocol1(tiny64, p1, tmp_path / "p1.npz", progress=False)
    middle = forwards.snapshot()
    run_protocol2(tiny64, p2, tmp_path / "p2.npz", progress=False)
    after = forwards.snapshot()
    assert sum((middle - before).values()) == protocol1_forwards(p1, 4)
    assert sum((after - middle).values()) == 2 * protocol2_forwards(p2)


def test_more_gpus_than_units_never_beat_the_largest_unit(capsys) -> None:
    p1, p2, compare = full_grid_units()
    assert len(p1) == 7 * 32 // 4 and len(p2) == 7  # (6 g + control) x seed groups of 4; one unit per g
    clones = [n for key, _, n in compare if key.startswith("clones/")]
    assert len(clones) == 7 and clones[1] == 2 * clones[0]  # at g = 0 only clone B runs
    grid_on_ranks(1000.0, (1, 2, 64))
    hours = [float(h) for h in re.findall(r"(\d+\.\d+) h at", capsys.readouterr().out)]
    total = sum(n for stage in (p1, p2, compare) for _, _, n in stage) + 256 * 100 * 2  # + one trunk
    assert hours[0] == pytest.approx(total / 1000 / 3600, abs=0.006)
    assert hours[0] / 2 <= hours[1] + 0.006 and hours[2] >= max(clones) / 1000 / 3600 - 0.006

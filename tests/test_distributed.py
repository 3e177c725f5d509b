"""Issue 24: the stages' units shared out among the ranks of a ``torchrun`` job.

Fast tests run the share and merge machinery in one process: the ranks of a job are emulated one after
another (their barriers are the order), and every array must be the single process's bytes. The slow
tests launch ``python -m torch.distributed.run --standalone --nproc_per_node 2 -m dit_validation.cli`` on
the gloo backend with the tiny plans of ``test_reliability``: a 2-rank run against a 1-process run array by
array, and SIGKILLs of rank 1 (the test hook ``$SYNCHROGAP_TEST_KILL_AT=<stage>:<k>@1``) resumed with 1 and
with 2 ranks.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_COMPARE
from hypothesis import given
from hypothesis import strategies as st
from test_reliability import ROOT, arrays_of, assert_bit_identical, tiny_plan, write_plan

from dit_validation import boundary, cli, distributed, reproduce
from dit_validation.boundary import EXIT_INTERRUPTED, EXIT_USAGE, KILL_ENV, UnitCounter, UsageError
from dit_validation.compare import run_compare, unit_names, unit_phases
from dit_validation.protocol1 import Protocol1Config, _empty_arrays, run_protocol1
from dit_validation.protocol2 import Protocol2Config, run_protocol2
from dit_validation.results import load_result, make_meta, save_result
from dit_validation.rundir import LOCK_NAME
from dit_validation.shards import UnitShare, _apply, _changes, merge_parts, parts_dir

P1 = Protocol1Config(
    g=(0.4, 1.0), t_int=(0, 1, 2, 4), num_seeds=4, num_steps=4, seed_chunk=1, n_boot=20, batch_size=8
)
P2 = Protocol2Config(
    g=(0.0, 0.3, 0.6), num_seeds=4, num_steps=4, tau_spec=(1.5, 2.0, 2.0), basis_pairs=16, gint_modes=4
)
MICRO = replace(TINY_COMPARE, g=(0.0, 0.5), num_steps=6, n_boot=10)


def emulate_job(path: Path, compute, size: int, phases=(None,), stop_after: int | None = None) -> None:
    """What :func:`distributed.run_stage` does on ``size`` ranks, the ranks run one after another (each
    reads the stage file as every rank would after the barrier). ``stop_after``: stop before the merge of
    that phase (a job killed with its parts on disk)."""
    for n, phase in enumerate(phases):
        if phase is not None and len(phase) == 1:
            compute(UnitShare(only=phase, finalizes=False))
        else:
            for r in range(size):
                compute(UnitShare(only=phase, rank=r, size=size, parts=parts_dir(path), finalizes=False))
        if n == stop_after:
            return
        merge_parts(path)
    compute(UnitShare())


def assert_same_bytes(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype or a[name].dtype.kind == "U", name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# ---------------------------------------------------------------- the assignment


@given(
    kinds=st.lists(st.sampled_from(["clones", "step", "block", ""]), min_size=0, max_size=40),
    size=st.integers(1, 6),
    drop=st.sets(st.integers(0, 39)),
)
def test_every_unit_goes_to_exactly_one_rank_and_each_kind_is_spread_evenly(kinds, size, drop) -> None:
    keys = [f"{k}/u{i}" for i, k in enumerate(kinds)]
    only = {k for i, k in enumerate(keys) if i not in drop}
    taken: dict[str, list[int]] = {k: [] for k in keys}
    for rank in range(size):
        share = UnitShare(only=only, rank=rank, size=size)
        for key, kind in zip(keys, kinds, strict=True):
            if share.mine(key, kind):
                taken[key].append(rank)
    for key in keys:
        assert len(taken[key]) == (1 if key in only else 0), key
    for kind in set(kinds):
        per_rank = [
            sum(taken[k] == [r] for k, c in zip(keys, kinds, strict=True) if c == kind) for r in range(size)
        ]
        assert max(per_rank) - min(per_rank) <= 1, (kind, per_rank)


def test_the_single_process_share_takes_every_unit_in_order() -> None:
    share = UnitShare()
    assert all(share.mine(f"u{i}", kind=str(i % 3)) for i in range(10)) and share.finalizes
    with pytest.raises(ValueError, match=r"rank must lie in \[0, 1\], got 2"):
        UnitShare(rank=2, size=2)


def test_compare_phases_put_every_unit_after_what_it_needs() -> None:
    for dataset in ("mixture", "digits"):
        phases = unit_phases(MICRO, dataset)
        names = unit_names(MICRO, dataset)
        assert sorted(n for p in phases for n in p) == sorted(names)  # each unit in exactly one phase
        where = {n: i for i, p in enumerate(phases) for n in p}
        assert where["directions"] == 0 and all(where[n] > 0 for n in names if n != "directions")
        assert where["block/g=0"] > where["block/parts"]
        assert all(where[f"block/g={g:g}"] > where["block/g=0"] for g in MICRO.g[1:])


# ---------------------------------------------------------------- parts and their merge


def test_protocol1_on_three_ranks_writes_the_single_process_bytes(tiny64, tmp_path: Path) -> None:
    single = load_result(run_protocol1(tiny64, P1, tmp_path / "one.npz", progress=False))
    path = tmp_path / "job.npz"
    emulate_job(path, lambda share: run_protocol1(tiny64, P1, path, progress=False, share=share), size=3)
    job = load_result(path)
    assert_same_bytes(job.arrays, single.arrays)
    assert sorted(job.meta["done"]) == sorted(single.meta["done"]) and job.meta["complete"]
    assert not parts_dir(path).exists()


def test_protocol2_on_two_ranks_writes_the_single_process_bytes(tiny64, tmp_path: Path) -> None:
    single = load_result(run_protocol2(tiny64, P2, tmp_path / "one.npz", progress=False))
    path = tmp_path / "job.npz"
    emulate_job(path, lambda share: run_protocol2(tiny64, P2, path, progress=False, share=share), size=2)
    assert_same_bytes(load_result(path).arrays, single.arrays)


def test_compare_in_phases_on_two_ranks_writes_the_single_process_bytes(tiny32, tmp_path: Path) -> None:
    def run(out: Path, share: UnitShare | None = None) -> Path:
        return run_compare(tiny32, MICRO, out, model_name="random:tiny", progress=False, share=share)

    single = load_result(run(tmp_path / "one"))
    path = tmp_path / "job" / "compare.npz"
    emulate_job(path, lambda share: run(path.parent, share), size=2, phases=unit_phases(MICRO, "mixture"))
    job = load_result(path)
    assert_same_bytes(job.arrays, single.arrays)
    md = [
        re.sub(r"; [\d.]+ s\.", "", (d / "compare.md").read_text()) for d in (path.parent, tmp_path / "one")
    ]
    assert md[0] == md[1]  # the same report, but for the wall time


def test_leftover_parts_resume_in_one_process_and_a_repeated_merge_changes_nothing(
    tiny64, tmp_path: Path
) -> None:
    """A job killed before its merge leaves parts; one process (world size 1) merges and finishes them.
    Merging the same parts again (a merge killed before deleting them) adds nothing."""
    single = load_result(run_protocol1(tiny64, P1, tmp_path / "one.npz", progress=False))
    path = tmp_path / "job.npz"
    compute = lambda share: run_protocol1(tiny64, P1, path, progress=False, share=share)  # noqa: E731
    emulate_job(path, compute, size=2, stop_after=0)
    parts = sorted(parts_dir(path).glob("*.npz"))
    assert len(parts) == 2 * 4 + 4  # (2 g + control) × 4 seeds, one unit per part (seed_chunk 1)
    keep = tmp_path / "parts-copy"
    shutil.copytree(parts_dir(path), keep)
    assert merge_parts(path) == 12
    merged = load_result(path)
    shutil.copytree(keep, parts_dir(path))
    assert merge_parts(path) == 0 and not parts_dir(path).exists()
    again = load_result(path)
    assert again.meta["done"] == merged.meta["done"]
    assert_same_bytes(again.arrays, merged.arrays)
    distributed.run_stage(path, compute)  # no job: merges (nothing left) and finishes as one process
    assert_same_bytes(load_result(path).arrays, single.arrays)


def _p1_file(tiny64, path: Path) -> dict:
    cfg = P1.resolved(tiny64)
    meta = make_meta("protocol1", {**asdict(cfg), "model": "random:tiny"}, [0, 1, 2, 3])
    arrays = _empty_arrays(cfg)
    save_result(path, meta, arrays)
    return meta


def test_two_parts_writing_one_element_differently_are_refused(tiny64, tmp_path: Path) -> None:
    path = tmp_path / "p1.npz"
    meta = _p1_file(tiny64, path)
    base = load_result(path).arrays
    for rank, value in ((0, 0.25), (1, 0.5)):
        share = UnitShare(rank=rank, size=2, parts=parts_dir(path), finalizes=False)
        share.begin(path, meta, base)
        arrays = {k: v.copy() for k, v in base.items()}
        arrays["a_feat"][0, 0, 0] = value
        share.saved(path, meta, arrays, [f"unit-{rank}"])
    with pytest.raises(
        RuntimeError, match="two units of one stage wrote different values into array 'a_feat'"
    ):
        merge_parts(path)


def test_parts_of_another_configuration_or_without_a_stage_file_are_discarded(
    tiny64, tmp_path: Path, caplog
) -> None:
    path = tmp_path / "p1.npz"
    meta = _p1_file(tiny64, path)
    base = load_result(path).arrays
    other = {**meta, "config": {**meta["config"], "sigma": 0.25}}
    share = UnitShare(rank=1, size=2, parts=parts_dir(path), finalizes=False)
    share.begin(path, other, base)
    arrays = {k: v.copy() for k, v in base.items()}
    arrays["a_feat"][0, 0, 0] = 0.5
    share.saved(path, other, arrays, ["g=0.4/seed=0"])
    with caplog.at_level(logging.WARNING):
        assert merge_parts(path) == 0
    assert "differs in sigma" in caplog.text and not parts_dir(path).exists()
    assert np.isnan(load_result(path).arrays["a_feat"][0, 0, 0])
    share.saved(path, meta, arrays, ["g=0.4/seed=1"])
    path.unlink()
    with caplog.at_level(logging.WARNING):
        assert merge_parts(path) == 0
    assert "no such result file" in caplog.text and not parts_dir(path).exists()


def test_changes_are_exact_bytes_and_strings_may_grow() -> None:
    old = np.array([np.nan, 0.0, 1.0])
    new = np.array([-np.nan, -0.0, 1.0])  # another NaN payload and a sign: other bytes, so both change
    idx, val = _changes(old, new)
    assert idx.tolist() == [0, 1] and np.signbit(val).tolist() == [True, True]
    assert _changes(old, old.copy()) is None
    reasons = np.array(["short", "x"])
    idx, val = _changes(reasons, np.array(["a much longer reason", "x"]))
    arrays, written = {"r": reasons.copy()}, {}
    _apply(arrays, written, "r", (idx, val))
    assert arrays["r"].tolist() == ["a much longer reason", "x"]
    whole = _changes(None, np.arange(3))
    assert isinstance(whole, np.ndarray) and whole.tolist() == [0, 1, 2]


# ---------------------------------------------------------------- one job: errors, kills, the boundary


def test_the_kill_hook_fires_only_in_its_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    kills: list[int] = []
    monkeypatch.setattr(boundary.os, "kill", lambda pid, sig: kills.append(sig))
    monkeypatch.setenv(KILL_ENV, "protocol1:2@1")
    for rank, fires in (("0", False), ("1", True)):
        kills.clear()
        monkeypatch.setenv("RANK", rank)
        u = UnitCounter()
        with u.fixed(5), u.stage(5, name="protocol1"):
            u.advance(1)
            assert kills == []
            u.advance(1)
            assert kills == ([signal.SIGKILL] if fires else []), rank


def test_muted_calls_count_nothing() -> None:
    u = UnitCounter()
    u.plan(4)
    u.advance(1)
    with u.muted():
        u.plan(4)
        u.advance(3)
    assert (u.done, u.total) == (1, 4)


def test_rank0_speaks_for_the_job_and_the_others_name_their_rank(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def fails(exc: BaseException):
        def main(argv):
            raise exc

        return boundary.guarded(main, "synchrogap")

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(boundary, "_JOB", {"rank": 0, "size": 1, "joined": False})
    assert fails(UsageError("--seeds must be >= 1"))([]) == EXIT_USAGE  # an option error: rank 0 says it
    assert fails(KeyboardInterrupt())([]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == ""
    boundary.join_job(1, 2)
    assert fails(UsageError("cannot write 'x.npz': the disk is full"))([]) == EXIT_USAGE
    assert (
        capsys.readouterr().err == "synchrogap [rank 1 of 2]: error: cannot write 'x.npz': the disk is full\n"
    )


def test_a_failing_unit_is_logged_with_its_rank_and_unit(
    tiny64, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    monkeypatch.setattr(distributed, "_WORLD", distributed.World(rank=1, size=2))
    monkeypatch.setattr(distributed, "barrier", lambda what: None)

    def compute(share: UnitShare) -> None:
        for key in ("g=0.4/seed=0", "g=0.4/seed=1", "g=0.4/seed=2"):
            if share.mine(key):
                raise OSError(28, "No space left on device")

    with caplog.at_level(logging.ERROR), pytest.raises(OSError):
        distributed.run_stage(tmp_path / "p1.npz", compute)
    assert "rank 1 of 2 failed in p1.npz, unit g=0.4/seed=1" in caplog.text


def test_a_lost_rank_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(distributed.PeerLost, match="lost contact with another rank at the test"):
        with distributed._collective("at the test"):
            raise RuntimeError("[gloo/transport/tcp/pair.cc:537] Read error: Connection reset by peer")
    assert issubclass(distributed.PeerLost, boundary.ReportedError)


def test_without_torchrun_nothing_joins(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.setup("cpu") == "cpu" and distributed.world() == distributed.World()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.setup(None) is None and not distributed.world().distributed


def test_under_torchrun_a_device_index_is_refused_before_joining(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(boundary, "_JOB", {"rank": 0, "size": 1, "joined": False})
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(UsageError, match=r"--device cuda:1: under torchrun each rank uses cuda:\$LOCAL_RANK"):
        distributed.setup("cuda:1")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(UsageError, match=r"\$RANK must lie in \[0, 1\] \(\$WORLD_SIZE 2\), got 2"):
        distributed.setup("cpu")
    assert not boundary._JOB["joined"] and not distributed.world().distributed


def test_train_refuses_to_run_under_torchrun(monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert cli.main(["train", "--out", str(tmp_path / "ck"), "--quiet"]) == EXIT_USAGE
    assert "train runs in one process: start it without torchrun" in capsys.readouterr().err


# ---------------------------------------------------------------- torchrun, gloo, two ranks


def _env(plan: Path | None = None, kill: str | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SYNCHROGAP_THREADS": "1"}
    for name in (
        KILL_ENV,
        reproduce.PLAN_ENV,
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
    ):
        env.pop(name, None)
    if plan is not None:
        env[reproduce.PLAN_ENV] = str(plan)
    if kill is not None:
        env[KILL_ENV] = kill
    return env


def _cli(ranks: int, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    launch = [sys.executable, "-m", "dit_validation.cli"]
    if ranks > 1:
        launch = [
            sys.executable,
            *("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)),
            *("-m", "dit_validation.cli"),
        ]
    return subprocess.run([*launch, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


REPRODUCE = ["reproduce", "--model", "digits", "--quiet"]


@pytest.fixture(scope="module")
def digits_plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny plan on the trained digits model (its clones split), one seed per Protocol I unit."""
    return write_plan(tmp_path_factory.mktemp("plan") / "plan.json", tiny_plan("digits", seed_chunk=1))


@pytest.fixture(scope="module")
def one_process(digits_plan: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``reproduce`` on the tiny digits plan in one process: the reference."""
    out = tmp_path_factory.mktemp("one") / "run"
    res = _cli(1, [*REPRODUCE, "--out", str(out)], _env(digits_plan))
    assert res.returncode == 0, res.stderr
    return out


def _clean(run: Path) -> None:
    assert not list(run.glob("*.parts")) and not (run / LOCK_NAME).exists()
    assert not list(run.rglob(".*.tmp"))


@pytest.mark.slow
def test_two_ranks_give_every_array_of_one_process_bit_for_bit(
    digits_plan: Path, one_process: Path, tmp_path: Path
) -> None:
    """``torchrun --standalone --nproc_per_node 2 -m dit_validation.cli reproduce`` (gloo) against the
    1-process run, every array of every stage file; the summary printed once, by rank 0. Then the single
    protocol commands on 2 ranks against 1 process."""
    res = _cli(2, [*REPRODUCE, "--out", str(tmp_path / "two")], _env(digits_plan))
    assert res.returncode == 0, res.stderr[-3000:]
    assert_bit_identical(arrays_of(tmp_path / "two"), arrays_of(one_process))
    assert res.stdout.count("synchrogap reproduce: digits") == 1
    _clean(tmp_path / "two")
    timings = json.loads((tmp_path / "two" / "timings.json").read_text())
    ref = json.loads((one_process / "timings.json").read_text())
    for stage in ("protocol1", "protocol2"):  # forwards summed over the ranks: the same work, shared
        assert timings[stage]["image_forwards"] == ref[stage]["image_forwards"], stage
    protocol1 = ["protocol1", "--model", "random:tiny", "--g", "0.3", "0.9", "--seeds", "3", "--steps", "4"]
    protocol1 += ["--t-int", "0", "2", "4", "--n-boot", "20", "--quiet"]
    protocol2 = ["protocol2", "--model", "random:tiny", "--g", "0", "0.5", "--seeds", "4", "--steps", "4"]
    protocol2 += ["--tau-spec", "1.5", "2", "--basis-pairs", "16", "--gint-modes", "4", "--quiet"]
    for args in (protocol1, protocol2):
        for ranks in (1, 2):
            res = _cli(ranks, [*args, "--out", str(tmp_path / f"{args[0]}-{ranks}.npz")], _env())
            assert res.returncode == 0, res.stderr[-3000:]
            assert res.stdout.count("wrote ") == 1
        one, two = (load_result(tmp_path / f"{args[0]}-{r}.npz") for r in (1, 2))
        assert_same_bytes(two.arrays, one.arrays)
        assert not parts_dir(tmp_path / f"{args[0]}-2.npz").exists()


@pytest.mark.slow
def test_sigkill_of_one_rank_then_resume_with_one_and_with_two_ranks_is_bit_identical(
    digits_plan: Path, one_process: Path, tmp_path: Path
) -> None:
    """Rank 1 SIGKILLs itself after its first Protocol I unit; torchrun stops rank 0 (which says how much a
    re-run resumes, once); the finished units stay as parts. The same command then finishes the run in
    one process, and — from a copy — on 2 ranks, killed once more in compare's sharded phase and resumed
    again: every array bit-identical to the uninterrupted run."""
    killed = tmp_path / "killed"
    res = _cli(2, [*REPRODUCE, "--out", str(killed)], _env(digits_plan, "protocol1:1@1"))
    assert res.returncode != 0
    assert f"{KILL_ENV}=protocol1:1@1: SIGKILL after 1 unit(s) of stage protocol1" in res.stderr
    # rank 0 alone answers, once: stopped by torchrun (interrupted) or first at a barrier (lost contact)
    assert res.stderr.count("re-run the same command to resume") == 1, res.stderr[-3000:]
    assert re.search(r"synchrogap( \[rank 0 of 2\])?: (interrupted after|error: lost contact)", res.stderr)
    parts = sorted(p.name for p in parts_dir(killed / "protocol1.npz").glob("*.npz"))
    assert parts and not load_result(killed / "protocol1.npz").meta["complete"], parts
    shutil.copytree(killed, tmp_path / "copy")

    res = _cli(1, [*REPRODUCE, "--out", str(killed)], _env(digits_plan))
    assert res.returncode == 0, res.stderr[-3000:]
    assert_bit_identical(arrays_of(killed), arrays_of(one_process))
    _clean(killed)

    again = tmp_path / "copy"
    # compare:2 on rank 1: the branch directions (rank 0's, resumed) and rank 1's first unit of the next phase
    res = _cli(2, [*REPRODUCE, "--out", str(again)], _env(digits_plan, "compare:2@1"))
    assert res.returncode != 0 and "SIGKILL after 2 unit(s) of stage compare" in res.stderr
    assert list(parts_dir(again / "compare.npz").glob("*.npz"))  # rank 1's unit of the sharded phase
    res = _cli(2, [*REPRODUCE, "--out", str(again)], _env(digits_plan))
    assert res.returncode == 0, res.stderr[-3000:]
    assert_bit_identical(arrays_of(again), arrays_of(one_process))
    _clean(again)


def test_stage_files_and_parts_are_what_reproduce_writes() -> None:
    """``--overwrite`` deletes a killed job's parts with the rest of the old run."""
    for stage in reproduce.STAGES:
        assert f"{stage}.npz.parts/*" in reproduce.RUN_FILES

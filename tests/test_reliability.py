"""Issue 12: one error boundary, nothing overwritten or mixed silently, every stage resumable, one run per
directory, permissions that follow the umask, and a summary that tells the truth.

Each row of issue 12's table has a test here (named after the row), asserting the exit status, a message
naming the parameter or file, and that nothing was lost or mixed. End-to-end runs use tiny plans (passed
to the command line through ``$SYNCHROGAP_TEST_PLAN``) so that each takes seconds; the fault-injection,
every-model and subprocess tests are marked slow.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_COMPARE, TINY_DEPTH
from test_reproduce import _fake_run_compare  # the contract-shaped compare stand-in of the reproduce tests

from dit_validation import cli, reproduce
from dit_validation.boundary import EXIT_INTERRUPTED, EXIT_USAGE, UnitCounter
from dit_validation.compare import CompareConfig
from dit_validation.models import SHIPPED_DIR
from dit_validation.protocol1 import Protocol1Config
from dit_validation.protocol2 import Protocol2Config
from dit_validation.results import load_result, save_result
from dit_validation.rundir import LOCK_NAME, RunLockedError, quarantine, read_stage, run_lock
from dit_validation.summary import fmt_interval, fmt_step
from dit_validation.theory_run import TheoryRunConfig

ROOT = Path(__file__).resolve().parent.parent


def tiny_plan(model: str = "random:tiny", compare: CompareConfig = TINY_COMPARE, seed_chunk: int = 3):
    steps = 5  # divides DiT's 1000 training steps, so DDIM's timestep rule is exact
    return reproduce.ReproducePlan(
        model=model,
        grid="quick",
        protocol1=Protocol1Config(
            g=(0.3, 0.9), t_int=(0, 1, 3, 5), num_seeds=3, num_steps=steps, n_boot=20, seed_chunk=seed_chunk
        ),
        protocol2=Protocol2Config(
            g=(0.0, 0.3, 0.9), num_seeds=3, num_steps=steps, basis_pairs=16, gint_modes=4, n_boot=20
        ),
        theory=TheoryRunConfig(n_kappa=21, n_g_grid=11),
        compare=compare,
        depth=TINY_DEPTH,
    )


def write_plan(path: Path, plan: reproduce.ReproducePlan) -> Path:
    path.write_text(json.dumps(reproduce.plan_to_json(plan)))
    return path


@pytest.fixture
def plan_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$SYNCHROGAP_TEST_PLAN`` → a tiny plan, for in-process ``cli.main`` runs of ``reproduce``."""
    path = write_plan(tmp_path / "plan.json", tiny_plan())
    monkeypatch.setenv(reproduce.PLAN_ENV, str(path))
    return path


def run_cli(capsys: pytest.CaptureFixture, argv: list[str]) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = int(exc.code)
    out = capsys.readouterr()
    return code, out.out, out.err


def user_error(capsys: pytest.CaptureFixture, argv: list[str], main=cli.main) -> str:
    """Run expecting a user error: exit 2, no traceback; returns the one error line."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code)
    err = capsys.readouterr().err
    assert code == EXIT_USAGE, err
    assert "Traceback" not in err, err
    return [line for line in err.strip().splitlines() if "error:" in line][-1]


def tree_digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def arrays_of(directory: Path) -> dict[str, dict[str, np.ndarray]]:
    return {k: dict(load_result(directory / f"{k}.npz")[1]) for k in reproduce.STAGES}


def assert_bit_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for kind in a:
        assert a[kind].keys() == b[kind].keys(), kind
        for name in a[kind]:
            np.testing.assert_array_equal(a[kind][name], b[kind][name], err_msg=f"{kind}:{name}")


# ---------------------------------------------------------------- train


def test_train_over_a_checkpoint_is_refused(capsys: pytest.CaptureFixture) -> None:
    """Row "train over a checkpoint": the shipped default is not overwritten without --overwrite."""
    shipped = SHIPPED_DIR / "mixture"
    before = tree_digest(shipped)
    msg = user_error(capsys, ["train", "--steps", "1", "--out", str(shipped), "--quiet"])
    assert str(shipped) in msg and "--overwrite" in msg and "already exists" in msg
    assert tree_digest(shipped) == before


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("--steps", "0", "--steps must be an integer >= 1, got 0"),
        ("--batch-size", "0", "--batch-size must be an integer >= 1, got 0"),
        ("--seed", "-1", "--seed must be an integer >= 0, got -1"),
        ("--device", "foo", "--device must be cpu, cuda or cuda:<index>, got 'foo'"),
        (
            "--threads",
            "0",
            f"--threads must be an integer in [1, {os.cpu_count()}]",
        ),
    ],
)
def test_train_with_nonsense_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture, option: str, value: str, needle: str
) -> None:
    """Rows "train with nonsense" and "train with bad options": exit 2, the option named, nothing saved."""
    out = tmp_path / "ckpt"
    msg = user_error(capsys, ["train", "--out", str(out), "--quiet", option, value])
    assert needle in msg
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_train_on_cuda_without_cuda_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    msg = user_error(capsys, ["train", "--device", "cuda", "--out", str(tmp_path / "c"), "--quiet"])
    assert "--device cuda" in msg and "CUDA is not available" in msg


def test_interrupted_training_leaves_nothing_and_says_it_starts_over(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dit_validation.testbed import train as train_mod

    calls = {"n": 0}
    real = train_mod.TrainStream.next

    def interrupt_on_third(self):  # noqa: ANN001, ANN202 - Ctrl-C during the third optimizer step
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(train_mod.TrainStream, "next", interrupt_on_third)
    out = tmp_path / "ckpt"
    code, _, err = run_cli(
        capsys, ["train", "--steps", "5", "--batch-size", "4", "--out", str(out), "--quiet"]
    )
    assert code == EXIT_INTERRUPTED
    assert err.strip().splitlines()[-1] == (
        "synchrogap: interrupted after 2 of 5 units; "
        "nothing was saved, re-run the same command to start again"
    )
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no half checkpoint, no temp directory


# ---------------------------------------------------------------- wrong, incomplete or missing inputs


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, make_arrays) -> Path:
    """A finished tiny reproduce run (random:tiny; compare replaced by a contract-shaped stand-in)."""
    out = tmp_path_factory.mktemp("finished")
    mp = pytest.MonkeyPatch()
    mp.setattr(reproduce.compare_mod, "run_compare", _fake_run_compare(make_arrays))
    try:
        reproduce.run_reproduce(out_dir=out, progress=False, plan=tiny_plan(compare=CompareConfig()))
    finally:
        mp.undo()
    return out


def incomplete_copy(src: Path, dst: Path) -> Path:
    """``src`` (a complete protocol1 file) rewritten as a killed run's file (raw arrays, complete False)."""
    meta, a = load_result(src)
    raw = ("g", "t_int", "seeds", "a_feat", "d_low", "d_high", "done_mask")
    raw += tuple(k for k in ("control_a_feat", "control_d_low", "control_d_high", "control_done") if k in a)
    save_result(dst, {**meta, "complete": False}, {k: a[k] for k in raw})
    return dst


def test_protocol2_refuses_a_protocol2_file_as_its_protocol1(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Row "wrong kind of result": ``protocol2 --protocol1 <a protocol2.npz>``."""
    out = tmp_path / "p2.npz"
    wrong = finished / "protocol2.npz"
    argv = ["protocol2", "--model", "random:tiny", "--device", "cpu", "--seeds", "3", "--steps", "5"]
    msg = user_error(capsys, [*argv, "--quiet", "--protocol1", str(wrong), "--out", str(out)])
    assert str(wrong) in msg and "holds a protocol2 result, expected a protocol1 result" in msg
    assert not out.exists()


def test_incomplete_protocol1_is_refused_by_protocol2_and_the_figures(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Row "incomplete (killed) protocol1.npz fed to protocol2 or the figures"."""
    from paper_figs import _style, commitment, feature_similarity, table1

    partial = incomplete_copy(finished / "protocol1.npz", tmp_path / "partial.npz")
    argv = ["protocol2", "--model", "random:tiny", "--device", "cpu", "--seeds", "3", "--steps", "5"]
    msg = user_error(
        capsys, [*argv, "--quiet", "--protocol1", str(partial), "--out", str(tmp_path / "p2.npz")]
    )
    assert str(partial) in msg and "incomplete protocol1 run" in msg
    for module in (feature_similarity, commitment, table1):
        figs = tmp_path / module.__name__
        msg = user_error(
            capsys,
            [str(partial), "--out", str(figs)],
            main=lambda a, m=module: _style.main_for(m.render, "", a),
        )
        assert str(partial) in msg and "incomplete" in msg
        assert not figs.exists()


@pytest.mark.parametrize("figure", ["mode_energy", "predicted_vs_measured", "feature_similarity", "gates"])
def test_figures_refuse_another_kind_of_result(
    figure: str, finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Rows "python -m paper_figs.mode_energy theory.npz" (was KeyError) and "predicted_vs_measured
    theory.npz" (was exit 0 with nothing written), and every other figure."""
    import importlib

    from paper_figs import FIGURES, _style

    module = importlib.import_module(f"paper_figs.{figure}")
    wrong = finished / ("protocol2.npz" if FIGURES[figure] == "theory" else "theory.npz")
    msg = user_error(
        capsys,
        [str(wrong), "--out", str(tmp_path / "f")],
        main=lambda a: _style.main_for(module.render, "", a),
    )
    assert str(wrong) in msg and f"expected a {FIGURES[figure]} result" in msg
    assert not (tmp_path / "f").exists()


@pytest.mark.slow
def test_figure_command_line_refuses_another_kind_in_one_line(finished: Path, tmp_path: Path) -> None:
    """The real entry point, ``python -m paper_figs.mode_energy theory.npz``, in a subprocess."""
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "paper_figs.mode_energy",
            str(finished / "theory.npz"),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert res.returncode == EXIT_USAGE and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        f"python -m paper_figs.mode_energy: error: {str(finished / 'theory.npz')!r} holds a theory result, "
        "expected a protocol2 result"
    )


def test_theory_run_refuses_a_missing_compare_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Row "missing input": ``theory_run --out t.npz --compare nosuch.npz`` (was exit 0, κ maps dropped)."""
    from dit_validation.theory_run import main

    nosuch = tmp_path / "nosuch.npz"
    msg = user_error(capsys, ["--out", str(tmp_path / "t.npz"), "--compare", str(nosuch)], main=main)
    assert str(nosuch) in msg and "no such result file" in msg
    assert not (tmp_path / "t.npz").exists()


# ---------------------------------------------------------------- models, classes, devices, paths


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--class-label", "99"], "--class-label must lie in [0, 3] for random:tiny"),
        (["--device", "foo"], "--device must be cpu, cuda or cuda:<index>, got 'foo'"),
        (["--seeds", "0"], "--seeds must be an integer >= 1, got 0"),
        (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
    ],
)
def test_bad_class_device_or_count_is_one_line(
    argv: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Row "bad class or device" (was IndexError / RuntimeError tracebacks)."""
    out = tmp_path / "p1.npz"
    base = ["protocol1", "--model", "random:tiny", "--steps", "4", "--quiet", "--out", str(out)]
    msg = user_error(capsys, [*base, *argv])
    assert needle in msg
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["compare", "reproduce"])
def test_a_nonexistent_model_path_is_named(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Row "nonexistent model path": one line saying there is no such directory (both commands)."""
    msg = user_error(capsys, [command, "--model", "/nonexistent", "--out", str(tmp_path / "o"), "--quiet"])
    assert "'/nonexistent'" in msg and "no such directory" in msg
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["reproduce", "compare", "train"])
def test_out_is_a_file(command: str, tmp_path: Path, capsys: pytest.CaptureFixture, plan_env: Path) -> None:
    """Row "--out is a file"."""
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    argv = [command, "--out", str(blocker), "--quiet"]
    if command != "train":
        argv += ["--model", "random:tiny"]
    msg = user_error(capsys, argv)
    assert str(blocker) in msg
    assert blocker.read_text() == "keep me"


def test_a_full_disk_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch) -> None:
    """Row "disk full": ENOSPC while writing a result is one line naming the file, exit 2."""
    import errno

    import dit_validation.results as results

    def full(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results.np, "savez", full)
    out = tmp_path / "p1.npz"
    base = ["protocol1", "--model", "random:tiny", "--seeds", "2", "--steps", "2", "--quiet"]
    msg = user_error(capsys, [*base, "--n-boot", "10", "--out", str(out)])
    assert msg == f"synchrogap: error: cannot write {str(out)!r}: the disk is full"
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))  # no temporary left behind


def test_a_finished_run_is_summarised_from_a_read_only_directory(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch, plan_env: Path, make_arrays
) -> None:
    """Row "read-only --out": a finished run is re-summarised without writing; an unfinished one is refused
    in one line. (Tests run as root, for whom chmod does not bite: the writability probe is patched.)"""
    run = tmp_path / "ro"
    shutil.copytree(finished, run)
    write_plan(plan_env, tiny_plan(compare=CompareConfig()))
    monkeypatch.setattr(reproduce.compare_mod, "run_compare", _fake_run_compare(make_arrays))
    monkeypatch.setattr(reproduce, "_writable", lambda out: False)
    before = tree_digest(run)
    code, out, err = run_cli(capsys, ["reproduce", "--model", "random:tiny", "--out", str(run), "--quiet"])
    assert code == 0, err
    assert "Protocol I" in out and tree_digest(run) == before
    (run / "protocol2.npz").unlink()
    msg = user_error(capsys, ["reproduce", "--model", "random:tiny", "--out", str(run), "--quiet"])
    assert str(run) in msg and "not writable" in msg


def test_debug_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_cli(
        capsys, ["train", "--steps", "0", "--out", str(tmp_path / "c"), "--quiet", "--debug"]
    )
    assert code == EXIT_USAGE and "Traceback" in err
    assert err.strip().splitlines()[-1] == "synchrogap: error: --steps must be an integer >= 1, got 0"


def test_permission_errors_are_one_line() -> None:
    import errno

    from dit_validation.boundary import user_error_message

    msg = user_error_message(PermissionError(errno.EACCES, "Permission denied", "/ro/protocol1.npz"))
    assert (
        msg == "cannot write '/ro/protocol1.npz': permission denied (read-only or not yours); "
        "choose another --out"
    )


# ---------------------------------------------------------------- reproduce: plan identity and mixing


def test_a_rejected_option_leaves_nothing_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture, plan_env: Path
) -> None:
    """Row "rejected option": ``reproduce --batch-size 0 --out P`` must not leave a plan that refuses the
    next, correct, call."""
    out = tmp_path / "P"
    msg = user_error(capsys, ["reproduce", "--model", "random:tiny", "--batch-size", "0", "--out", str(out)])
    assert "--batch-size must be an integer >= 1, got 0" in msg
    assert not out.exists()
    for bad in (["--encoder", "nosuch"], ["--threads", "0"], ["--device", "cuda:7"]):
        msg = user_error(capsys, ["reproduce", "--model", "random:tiny", "--out", str(out), "--quiet", *bad])
        assert bad[0] in msg
        assert not out.exists()


def test_batch_size_is_not_part_of_the_plan(finished: Path, monkeypatch) -> None:
    """Row "batch size as plan identity": ``--batch-size 8`` on an existing run is accepted, none redone."""

    def boom(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a finished stage was re-run")

    for name in ("run_protocol1", "run_protocol2"):
        monkeypatch.setattr(reproduce, name, boom)
    monkeypatch.setattr(reproduce.compare_mod, "run_compare", boom)
    reproduce.run_reproduce(
        out_dir=finished, progress=False, plan=tiny_plan(compare=CompareConfig()), batch_size=8
    )
    assert "batch_size" not in json.loads((finished / "reproduce.json").read_text())["protocol1"]


def test_another_grid_is_refused_before_printing_anything(
    finished: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    """Row "refusing a different grid": one line, and no old summary printed before it."""
    monkeypatch.delenv(reproduce.PLAN_ENV, raising=False)
    code, out, err = run_cli(
        capsys, ["reproduce", "--model", "random:tiny", "--full", "--out", str(finished)]
    )
    assert code == EXIT_USAGE and out == ""
    line = err.strip().splitlines()[-1]
    assert "holds a reproduce run with another plan" in line and "--overwrite" in line
    assert "Traceback" not in err


def test_another_models_compare_file_is_refused(finished: Path, tmp_path: Path) -> None:
    """Row "compare into a reproduce directory" (reproduce's side): a compare.npz made for another model
    is refused by name instead of being summarised under this model's header."""
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    meta, a = load_result(run / "compare.npz")
    save_result(run / "compare.npz", {**meta, "config": {**meta["config"], "model": "digits"}}, a)
    with pytest.raises(reproduce.ConfigMismatchError, match=r"compare\.npz' was made for model 'digits'"):
        reproduce.run_reproduce(out_dir=run, progress=False, plan=tiny_plan(compare=CompareConfig()))


def test_files_of_another_command_are_refused(finished: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(finished / "protocol1.npz", run / "protocol1.npz")  # e.g. `synchrogap protocol1 --out run/…`
    with pytest.raises(reproduce.ConfigMismatchError, match="not made by `synchrogap reproduce`"):
        reproduce.run_reproduce(out_dir=run, progress=False, plan=tiny_plan(compare=CompareConfig()))


def test_a_stage_file_of_another_version_is_refused(finished: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    meta, a = load_result(run / "protocol1.npz")
    save_result(run / "protocol1.npz", {**meta, "versions": {**meta["versions"], "synchrogap": "0.0.1"}}, a)
    with pytest.raises(reproduce.ConfigMismatchError, match="made by synchrogap 0.0.1"):
        reproduce.run_reproduce(out_dir=run, progress=False, plan=tiny_plan(compare=CompareConfig()))


def test_damaged_stage_files_are_moved_aside_named_and_recomputed(
    finished: Path, tmp_path: Path, monkeypatch, caplog: pytest.LogCaptureFixture, make_arrays
) -> None:
    """A truncated, a wrong-kind and an empty stage file in a run directory: each is moved aside to
    ``*.corrupt`` with a warning naming it, its stage re-runs, and the results equal the originals."""
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    want = arrays_of(run)
    data = (run / "protocol2.npz").read_bytes()
    (run / "protocol2.npz").write_bytes(data[: len(data) // 2])  # truncated
    shutil.copy(run / "theory.npz", run / "compare.npz")  # wrong kind
    (run / "protocol1.npz").write_bytes(b"")  # empty
    monkeypatch.setattr(reproduce.compare_mod, "run_compare", _fake_run_compare(make_arrays))
    with caplog.at_level("WARNING", logger="dit_validation"):
        reproduce.run_reproduce(out_dir=run, progress=False, plan=tiny_plan(compare=CompareConfig()))
    for name, why in (
        ("protocol2.npz", "truncated or corrupt"),
        ("compare.npz", "holds a theory result, expected a compare result"),
        ("protocol1.npz", "truncated or corrupt"),
    ):
        assert (run / f"{name}.corrupt").is_file(), name
        assert any(str(run / name) in r.getMessage() and why in r.getMessage() for r in caplog.records), name
    assert_bit_identical(arrays_of(run), want)


def test_quarantine_never_overwrites_an_earlier_one(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / "x.npz").write_bytes(b"bad %d" % i)
        assert (
            quarantine(tmp_path / "x.npz", "bad").name
            == ["x.npz.corrupt", "x.npz.corrupt.1", "x.npz.corrupt.2"][i]
        )
    assert read_stage(tmp_path / "x.npz", "protocol1") is None  # absent
    (tmp_path / "x.npz").write_bytes(b"")
    assert read_stage(tmp_path / "x.npz", "protocol1") is None and (tmp_path / "x.npz.corrupt.3").exists()


# ---------------------------------------------------------------- one run per directory


HOLD = (
    "import sys; from dit_validation.rundir import run_lock\n"
    "with run_lock(sys.argv[1]):\n"
    "    print('held', flush=True); sys.stdin.readline()\n"
    "    open(sys.argv[1] + '.releasing', 'w').close()\n"
)


def _holder(lock: Path) -> subprocess.Popen:
    """A process that holds ``lock`` until a line arrives on its stdin (or it is killed): keyed to what
    the test does next, never to the clock."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_into_the_same_directory_is_refused_naming_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture, plan_env: Path
) -> None:
    """Row "two runs, one directory": refused with the first run's pid (nothing written by the second)."""
    out = tmp_path / "run"
    out.mkdir()
    holder = _holder(out / LOCK_NAME)
    try:
        msg = user_error(capsys, ["reproduce", "--model", "random:tiny", "--out", str(out), "--quiet"])
        assert f"pid {holder.pid}" in msg and "--wait" in msg and str(out) in msg
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
    finally:
        holder.kill()
        holder.wait()


def test_wait_queues_behind_the_first_run_and_stale_locks_are_taken_over(tmp_path: Path) -> None:
    lock = tmp_path / LOCK_NAME
    holder = _holder(lock)
    with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
        with run_lock(lock):
            pass
    acquired = threading.Event()
    seen: dict[str, object] = {}

    def waiter() -> None:  # what it sees is asserted below, in the test's own thread
        with run_lock(lock, wait=True, poll_s=0.01):
            acquired.set()
            seen["after the holder let go"] = Path(f"{lock}.releasing").exists()
            seen["pid"] = json.loads(lock.read_text())["pid"]
            with run_lock(lock):  # re-entrant within one process (reproduce → compare)
                pass
            seen["held after re-entry"] = lock.exists()

    thread = threading.Thread(target=waiter)
    thread.start()
    assert not acquired.is_set()  # queued: the holder has not let go
    assert holder.stdin is not None
    holder.stdin.write("release\n")
    holder.stdin.flush()
    assert holder.wait() == 0
    thread.join()
    assert acquired.is_set()
    assert seen == {"after the holder let go": True, "pid": os.getpid(), "held after re-entry": True}
    assert not lock.exists()  # released
    # a lock whose holder died (SIGKILL: no cleanup) is stale and taken over
    dead = _holder(lock)
    dead.kill()
    dead.wait()
    assert lock.exists()
    with run_lock(lock):
        assert json.loads(lock.read_text())["pid"] == os.getpid()


# ---------------------------------------------------------------- interrupts, progress, permissions


def test_unit_counter_for_a_command_with_stages() -> None:
    u = UnitCounter()
    with u.fixed(10):
        with u.stage(4):
            u.plan(4)  # a stage's own announcement does not count twice
            u.advance(2)
            assert (u.done, u.total) == (2, 10)
            u.advance(5)  # never beyond the stage's share
            assert u.done == 4
        with u.stage(3):
            pass  # a skipped stage counts as done
    assert (u.done, u.total) == (7, 10)
    assert u.message() == "interrupted after 7 of 10 units; re-run the same command to resume"


def _subprocess_env(plan_file: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        reproduce.PLAN_ENV: str(plan_file),
    }


def _start(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dit_validation.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )


def _wait_for(proc: subprocess.Popen, needle: str, log: list[str], timeout: float = 300) -> bool:
    """Read the child's stderr until a line containing ``needle`` (True) or its end (False)."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    for line in proc.stderr:
        log.append(line)
        if needle in line:
            return True
        assert time.monotonic() < deadline, f"timed out waiting for {needle!r}"
    return False


@pytest.mark.slow
def test_ctrl_c_is_one_line_and_the_rerun_resumes(tmp_path: Path) -> None:
    """Row "SIGINT": one line "interrupted after N of M units; re-run the same command to resume", exit 130,
    no traceback; the re-run says how many units it resumes."""
    plan = write_plan(tmp_path / "plan.json", tiny_plan("digits", seed_chunk=1))
    env = _subprocess_env(plan)
    out = tmp_path / "run"
    argv = ["reproduce", "--model", "digits", "--out", str(out)]
    proc = _start(argv, env)
    log: list[str] = []
    assert _wait_for(proc, "protocol1: saved", log)
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=300)[1]
    err = "".join(log) + rest
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert re.fullmatch(
        r"synchrogap: interrupted after (\d+) of (\d+) units; re-run the same command to resume", line
    ), line
    done, total = map(int, re.findall(r"\d+", line)[:2])
    assert 1 <= done < total
    # stderr is a pipe here: no progress bars, and every log line whole (never "[AINFO …")
    assert "\r" not in err and "it/s" not in err
    assert all(
        ln.split(" ", 1)[0] in {"INFO", "WARNING", "synchrogap:"} for ln in err.strip().splitlines()
    ), err
    assert not (out / LOCK_NAME).exists()  # released on Ctrl-C
    res = subprocess.run(
        [sys.executable, "-m", "dit_validation.cli", *argv, "--quiet"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    proc = _start(argv, env)  # a third run finds everything done and says so
    err = proc.communicate(timeout=300)[1]
    assert re.search(rf"resuming {re.escape(str(out))}: (\d+) of \1 units already done", err), err


# The fault injection (SIGKILL inside every stage, then a bit-identical re-run) lands its kills by progress
# events: tests/test_reliability_round2.py::test_sigkill_at_progress_events_in_every_stage_then_rerun_...


@pytest.mark.slow
def test_outputs_follow_the_umask(tmp_path: Path) -> None:
    """Row "permissions": every file (results, figures, tables, json, summary) and directory of a run gets
    the mode the umask gives — 0640/0750 under umask 027 — never mkstemp's 0600."""
    plan = write_plan(tmp_path / "plan.json", tiny_plan("digits"))
    out = tmp_path / "run"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "dit_validation.cli",
            "reproduce",
            "--model",
            "digits",
            "--out",
            str(out),
            "--quiet",
        ],
        env=_subprocess_env(plan),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=lambda: os.umask(0o027),
    )
    assert res.returncode == 0, res.stderr
    paths = [out, *out.rglob("*")]
    assert len(paths) > 15
    for p in paths:
        mode = p.stat().st_mode & 0o777
        assert mode == (0o750 if p.is_dir() else 0o640), (p, oct(mode))


def test_progress_bars_only_on_a_terminal_and_logs_through_tqdm(monkeypatch) -> None:
    import logging

    from dit_validation import _logging

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert not _logging.progress_enabled(True)
    assert _logging.progress(range(3), desc="x").disable
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert _logging.progress_enabled(True) and not _logging.progress_enabled(False)
    _logging.configure_logging()
    _logging.configure_logging()  # idempotent: one handler
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, _logging.TqdmHandler)]
    assert len(handlers) == 1


# ---------------------------------------------------------------- the summary tells the truth


def test_summary_states_run_time_paths_and_clips_intervals(finished: Path) -> None:
    text = (finished / "summary.txt").read_text()
    assert "run time:" in text and str(finished / "protocol1.npz") in text and "figures and tables:" in text
    results = next(ln for ln in text.splitlines() if ln.startswith("results: "))
    written = {str(p) for p in finished.iterdir() if p.is_file() and p.name != LOCK_NAME}
    assert set(results.removeprefix("results: ").split(", ")) == written  # every file written, depth.npz too
    assert "not Protocol II's G_int above" in text  # compare's gap is a different quantity, named so
    assert fmt_interval(np.array([-9.3, 29.5]), 0, 50) == "[before step 0, 29.5]"
    assert fmt_step(51.0, 0, 50) == "after step 50" and fmt_step(float("nan"), 0, 50) == "n/a"
    # no negative step printed; Table 1's delta_tau is a signed difference of steps, printed with its sign
    steps_only = re.sub(r"[+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\]", "", text)
    assert not re.search(r"\[\s*-\d", steps_only)


def test_summary_reports_disagreement_and_degenerate_predictions(finished: Path, tmp_path: Path) -> None:
    from dit_validation.summary import summary_text

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    meta, a = load_result(run / "compare.npz")
    a = dict(a)
    names = ["hierarchy", "natural_gap", "collapse"]
    a["prediction_names"] = np.array(names)
    a["prediction_verdict"] = np.array([1, 1, -1])
    a["prediction_estimate"] = np.array([6.0, 6.0, -3.0])
    a["prediction_ci"] = np.array([[1.0, 11.0], [1.0, 11.0], [-5.0, -0.1]])
    a["prediction_unit"] = np.array(["steps", "steps", "steps per unit rho"])
    a["prediction_reason"] = np.array(["r1", "r2", "slope CI below 0"])
    a["tau_pred_block"] = np.full_like(a["tau_pred_block"], np.nan)  # κ never defined
    step = np.asarray(a["tau_pred_step"], dtype=np.float64).copy()
    step[int(np.argmin(np.abs(a["g"])))] = np.inf  # H_f never changes sign at g = 0
    a["tau_pred_step"] = step
    a["gap_meas"] = np.full_like(a["gap_meas"], np.nan)  # one direction of the pair splits, the other not
    a["learned"] = np.ones_like(a["learned"])
    save_result(run / "compare.npz", meta, a)
    # Protocol II: a gap that grows with ρ(g) (consistent with eq. 66) at every layer
    meta2, b = load_result(run / "protocol2.npz")
    b = dict(b)
    rho = (1 - b["g"]) / (1 + b["g"])
    b["G_int"] = 1.0 + np.outer(0.1 * rho + 0.01, np.ones(b["layers"].size))
    save_result(run / "protocol2.npz", meta2, b)
    text = summary_text({k: run / f"{k}.npz" for k in reproduce.STAGES} | {"figures": run / "figures"})
    # one verdict per prediction, with its margin in units; Protocol II's correlation is a measurement
    # beside the collapse verdict, never a second verdict ("consistent") that the verdict contradicts
    assert "consistent" not in text
    verdict_lines = [ln.strip() for ln in text.splitlines()]
    for name in ("hierarchy", "depth_localization", "natural_gap", "collapse"):
        assert sum(ln.startswith(f"{name} ") for ln in verdict_lines) == 1, name
    collapse = next(ln for ln in verdict_lines if ln.startswith("collapse "))
    assert "FAILS" in collapse and "-3.00 [-5.00, -0.10] steps per unit rho" in collapse
    assert "+6.00 [1.00, 11.00] steps" in next(ln for ln in verdict_lines if ln.startswith("hierarchy "))
    assert "slope CI below 0" in text  # the reason beside every verdict
    assert "beside collapse: Protocol II's internal gap, corr(rho, |G_int - 1| deep) = +" in text
    assert "no finite speciation step at any g" in text
    assert "never changes sign at g = 0 along" in text
    assert "the measured gap is undefined (only one of its directions splits) at g = " in text
    a["learned"][1:] = False  # one learned direction: no gap at any g, and the summary says why
    save_result(run / "compare.npz", meta, a)
    text = summary_text({k: run / f"{k}.npz" for k in reproduce.STAGES} | {"figures": run / "figures"})
    assert "the measured gap is undefined at every g: fewer than two learned directions" in text
    assert "only one of its directions splits" not in text


# ---------------------------------------------------------------- every model the README and --help list


def _models() -> list:
    local = "local-path"  # a copy of a shipped checkpoint directory (the "PATH" of the README)
    # random:XL_2 (28 blocks at 32×32×4) and facebook/DiT-XL-2-256 (weights not shipped) are GPU-sized:
    # they go through the same code path and are not run here
    return [
        "shipped-default",
        "mixture",
        "digits",
        "random:tiny",
        "random:small",
        local,
    ]


@pytest.mark.slow
@pytest.mark.parametrize("model", _models())
def test_every_listed_model_runs_reproduce_quick_end_to_end(
    model: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    if model == "local-path":
        model = str(shutil.copytree(SHIPPED_DIR / "digits", tmp_path / "my-digits"))
    monkeypatch.setenv(reproduce.PLAN_ENV, str(write_plan(tmp_path / "plan.json", tiny_plan(model))))
    out = tmp_path / "run"
    code, text, err = run_cli(
        capsys, ["reproduce", "--model", model, "--quick", "--out", str(out), "--quiet"]
    )
    assert code == 0, err
    for kind in reproduce.STAGES:
        meta, _ = load_result(out / f"{kind}.npz", kind=kind, require_complete=True)
    assert "Protocol I" in text and "Comparison" in text and "run time:" in text
    assert (out / "figures" / "fig_feature_similarity.png").is_file()
    assert not list((out / "figures").glob("*.pdf"))  # --quick: PNG only

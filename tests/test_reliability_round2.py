"""Issue 21, "Reliability, round two": one test per row of its table (named after the row), asserting the
exit status, a message naming the parameter or file, and that nothing was lost or mixed; the fault
injection that lands its kills by progress events; option parsing before torch; the smoke grid.

End-to-end runs use the tiny plans of ``test_reliability`` through ``$SYNCHROGAP_TEST_PLAN``; the runs
that compare two models use the real comparison on ``conftest.TINY_COMPARE`` (the row's bug lived in how
``reproduce`` called it), the others its contract-shaped stand-in.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_COMPARE, TINY_DEPTH
from test_reliability import (
    ROOT,
    arrays_of,
    assert_bit_identical,
    run_cli,
    tiny_plan,
    tree_digest,
    user_error,
    write_plan,
)
from test_reproduce import _fake_run_compare

from dit_validation import reproduce
from dit_validation.boundary import KILL_ENV
from dit_validation.compare import CompareConfig
from dit_validation.results import load_result, make_meta, save_result
from dit_validation.rundir import LOCK_NAME


@pytest.fixture
def tiny_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$SYNCHROGAP_TEST_PLAN`` → the tiny plan with the real tiny comparison (``--model`` replaces its
    model); returns the plan file."""
    path = write_plan(tmp_path / "plan.json", tiny_plan(compare=TINY_COMPARE))
    monkeypatch.setenv(reproduce.PLAN_ENV, str(path))
    return path


@pytest.fixture
def fake_compare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_arrays) -> Path:
    """The tiny plan with compare's contract-shaped stand-in (seconds instead of a real comparison)."""
    path = write_plan(tmp_path / "plan.json", tiny_plan(compare=CompareConfig()))
    monkeypatch.setenv(reproduce.PLAN_ENV, str(path))
    monkeypatch.setattr(reproduce.compare_mod, "run_compare", _fake_run_compare(make_arrays))
    return path


def _reproduce(model: str, out: Path, *extra: str) -> list[str]:
    return ["reproduce", "--model", model, "--out", str(out), "--quiet", *extra]


def _models_in(run: Path) -> set[str]:
    return {load_result(run / f"{k}.npz").meta["config"]["model"] for k in reproduce.STAGES}


# ---------------------------------------------------------------- --overwrite means start over


def test_overwrite_with_another_model_recomputes_every_stage_and_leaves_nothing_of_the_old_run(
    tmp_path: Path, capsys: pytest.CaptureFixture, tiny_env: Path
) -> None:
    """Row "reproduce --overwrite --model <another model> --out <existing run>": every stage (compare and
    depth included) is recomputed for the new model, exit 0; no array, figure or table of the old run
    survives (every file is newer than the new run's start, a stale figure and a quarantined file of the
    old run are gone) and the summary speaks of the new model only."""
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, _reproduce("random:tiny", run))
    assert code == 0, err
    assert _models_in(run) == {"random:tiny"}
    stale = run / "figures" / "fig_kappa_map_g0.70.png"  # e.g. a coupling an older grid had
    stale.write_bytes((run / "figures" / "fig_gates.png").read_bytes())
    (run / "protocol1.npz.corrupt").write_bytes(b"an old quarantined file")
    user_file = run / "my-notes.txt"  # the user's own file in a run directory is not the run's
    user_file.write_text("keep me")
    old = tree_digest(run)
    time.sleep(0.05)
    start = time.time()
    code, out, err = run_cli(capsys, _reproduce("random:small", run, "--overwrite"))
    assert code == 0, err
    assert _models_in(run) == {"random:small"}
    assert load_result(run / "compare.npz").meta["config"]["num_layers"] == 4  # random:small's blocks
    assert not stale.exists() and not (run / "protocol1.npz.corrupt").exists()
    assert user_file.read_text() == "keep me"
    for p in run.rglob("*"):
        if p.is_file() and p != user_file:
            assert p.stat().st_mtime >= start - 1e-3, f"{p} survived from the old run"
    new = tree_digest(run)
    kept = {k for k in old.keys() & new.keys() if old[k] == new[k]} - {"my-notes.txt"}
    assert not {k for k in kept if k.endswith((".npz", ".md", ".csv", ".txt", ".json"))}, kept
    summary = (run / "summary.txt").read_text()
    assert "random:small" in summary and "random:tiny" not in summary
    assert "random:tiny" not in (run / "compare.md").read_text()
    assert "random:tiny" not in (run / "figures" / "predictions.md").read_text()


def test_overwrite_with_the_same_plan_recomputes_compare_too(
    tmp_path: Path, capsys: pytest.CaptureFixture, tiny_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row "reproduce --overwrite, same plan": compare (and every other stage) runs again from its first
    unit instead of "9 of 9 units already done"."""
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, _reproduce("random:tiny", run))
    assert code == 0, err
    created = {k: load_result(run / f"{k}.npz").meta["created"] for k in reproduce.STAGES}
    resumed: list[list[str]] = []
    real_run = reproduce.compare_mod._Run.run

    def spy(self, progress):  # noqa: ANN001, ANN202 - the units compare found done when it started
        resumed.append(list(self.done))
        return real_run(self, progress)

    monkeypatch.setattr(reproduce.compare_mod._Run, "run", spy)
    code, _, err = run_cli(capsys, _reproduce("random:tiny", run, "--overwrite"))
    assert code == 0, err
    assert resumed == [[]]  # compare started from nothing
    for kind in reproduce.STAGES:
        assert load_result(run / f"{kind}.npz").meta["created"] != created[kind], kind
    assert "already done" not in err


def test_compare_overwrite_replaces_another_configurations_file(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row "synchrogap compare --overwrite over another configuration's compare.npz": without the flag one
    line naming the file and --overwrite, exit 2, the file untouched; with it the comparison starts over."""
    monkeypatch.setattr(reproduce.compare_mod, "QUICK", TINY_COMPARE)  # the command reads it when it runs
    out = tmp_path / "cmp"
    base = ["compare", "--model", "random:tiny", "--out", str(out), "--quiet"]
    code, _, err = run_cli(capsys, base)
    assert code == 0, err
    before = tree_digest(out)
    msg = user_error(capsys, [*base, "--seed", "1"])
    assert str(out / "compare.npz") in msg and "seed" in msg and "--overwrite" in msg
    assert tree_digest(out) == before
    code, _, err = run_cli(capsys, [*base, "--seed", "1", "--overwrite"])
    assert code == 0, err
    meta = load_result(out / "compare.npz", require_complete=True).meta
    assert meta["config"]["seed"] == 1 and meta["complete"]
    assert "seed" in (out / "compare.md").read_text() or (out / "compare.md").stat().st_size > 0


# ---------------------------------------------------------------- provenance of input files


@pytest.fixture(scope="module")
def p1_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete Protocol I file of random:tiny, 5 steps, g = 0.3, 0.9 and the g = 0 control."""
    from dit_validation import cli

    path = tmp_path_factory.mktemp("p1") / "p1.npz"
    argv = ["protocol1", "--model", "random:tiny", "--seeds", "3", "--steps", "5", "--g", "0.3", "0.9"]
    assert cli.main([*argv, "--t-int-stride", "1", "--n-boot", "20", "--quiet", "--out", str(path)]) == 0
    return path


P2 = ["protocol2", "--seeds", "3", "--quiet"]


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--model", "random:small", "--steps", "5"], "model = 'random:tiny', but"),
        (["--model", "random:tiny", "--steps", "4"], "num_steps = 5, but"),
    ],
)
def test_protocol2_refuses_a_protocol1_file_of_another_model_or_step_count(
    argv: list[str], field: str, p1_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Row "protocol2 --protocol1 <file of another model or step count>": one line naming the file and the
    differing field, exit 2, nothing written (was exit 0 with that model's τ used silently)."""
    out = tmp_path / "p2.npz"
    msg = user_error(capsys, [*P2, *argv, "--protocol1", str(p1_file), "--out", str(out)])
    assert str(p1_file) in msg and field in msg
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_protocol2_refuses_a_protocol1_file_without_any_tau(
    p1_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Same row, "a τ of n/a gives an all-NaN table": refused in one line naming the file and the g."""
    meta, a = load_result(p1_file)
    flat = tmp_path / "flat.npz"
    a = dict(a) | {"tau_spec": np.full_like(a["tau_spec"], np.nan), "control_tau_spec": np.asarray(np.nan)}
    save_result(flat, meta, a)
    out = tmp_path / "p2.npz"
    argv = [*P2, "--model", "random:tiny", "--steps", "5", "--g", "0", "0.3"]
    msg = user_error(capsys, [*argv, "--protocol1", str(flat), "--out", str(out)])
    assert str(flat) in msg and "no tau_spec at any requested g (0, 0.3" in msg
    assert not out.exists()


def test_protocol2_refuses_a_protocol1_grid_that_lacks_a_requested_g(
    p1_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Row "protocol2 --protocol1 <file whose g grid lacks a requested g>" (was a ValueError traceback)."""
    out = tmp_path / "p2.npz"
    argv = [*P2, "--model", "random:tiny", "--steps", "5", "--g", "0.3", "1.0"]
    msg = user_error(capsys, [*argv, "--protocol1", str(p1_file), "--out", str(out)])
    assert str(p1_file) in msg and "covers g in [0, 0.9]" in msg and "g = 1 was asked for" in msg
    assert not out.exists()


def test_depth_and_theory_refuse_another_models_inputs(tmp_path: Path, make_arrays) -> None:
    """Provenance on the other stage inputs: the depth stage and the theory file refuse a compare (or
    Protocol II) file of another model, naming the file and the field."""
    from test_reproduce import _write_compare

    from dit_validation.depth import run_depth
    from dit_validation.models import resolve_model
    from dit_validation.theory_run import TheoryRunConfig, run_theory

    cmp_path = _write_compare(tmp_path / "compare.npz", make_arrays, model="digits")
    with pytest.raises(ValueError, match=r"compare.npz' was made with model = 'digits', .*random:tiny"):
        run_theory(TheoryRunConfig(n_kappa=11, model="random:tiny"), tmp_path / "t.npz", cmp_path)
    p2 = tmp_path / "protocol2.npz"
    sizes = {"g": 1, "step": 2, "layer": 2, "mode": 2, "seed": 2}
    save_result(
        p2, make_meta("protocol2", {"model": "digits"}, [], complete=True), make_arrays("protocol2", sizes)
    )
    with pytest.raises(ValueError, match=r"protocol2.npz' was made with model = 'digits'"):
        run_depth(resolve_model("random:tiny"), TINY_DEPTH, p2, cmp_path, tmp_path / "d.npz")
    assert not (tmp_path / "t.npz").exists() and not (tmp_path / "d.npz").exists()


# ---------------------------------------------------------------- the remaining tracebacks


@pytest.mark.parametrize("model", ["nosuch", "README.md"])
def test_reproduce_with_an_unknown_model_is_one_line(
    model: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row "synchrogap reproduce --model nosuch (or a plain file)": exit 2, --model and the value named."""
    monkeypatch.chdir(ROOT)  # README.md: a plain file that exists
    out = tmp_path / "o"
    msg = user_error(capsys, _reproduce(model, out))
    assert "--model" in msg and repr(model) in msg
    assert not out.exists()


def _enospc(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - what a full disk raises inside a write
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["compare", "figure", "summary"])
def test_a_full_disk_during_reproduce_is_one_line_naming_the_file(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture, fake_compare: Path, monkeypatch, caplog
) -> None:
    """Row "disk full": one line naming the file being written, exit 2, no traceback logged (was ~45 lines
    of chained tracebacks ending in a line without the file)."""
    import matplotlib.figure

    from dit_validation import results

    run = tmp_path / "run"
    if where == "compare":
        real = reproduce.compare_mod.run_compare

        def full_compare(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            monkeypatch.setattr(results.np, "savez", _enospc)
            return real(*args, **kwargs)

        monkeypatch.setattr(reproduce.compare_mod, "run_compare", full_compare)
        want = run / "compare.npz"
    elif where == "figure":
        monkeypatch.setattr(matplotlib.figure.Figure, "savefig", _enospc)
        want = None  # the first figure drawn
    else:
        real_write = results.write_text_atomic

        def full_summary(path, text):  # noqa: ANN001, ANN202
            if Path(path).name == "summary.txt":
                with results.naming(path):
                    _enospc()
            return real_write(path, text)

        monkeypatch.setattr(reproduce, "write_text_atomic", full_summary)
        want = run / "summary.txt"
    with caplog.at_level("ERROR"):
        msg = user_error(capsys, _reproduce("random:tiny", run))
    named = re.fullmatch(r"synchrogap: error: cannot write '(.+)': the disk is full", msg)
    assert named, msg
    if want is not None:
        assert named.group(1) == str(want)
    else:
        assert named.group(1).startswith(str(run / "figures" / "fig_")) and named.group(1).endswith(".png")
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert not list(run.rglob(".*.tmp"))


def test_write_text_names_the_file_when_the_disk_fills(tmp_path: Path, monkeypatch) -> None:
    from dit_validation import results
    from dit_validation.boundary import user_error_message

    class Full:
        def __init__(self, fd, mode):  # noqa: ANN001
            os.close(fd)

        def __enter__(self):  # noqa: ANN204
            return self

        def __exit__(self, *exc):  # noqa: ANN002, ANN204
            return False

        def write(self, text):  # noqa: ANN001, ANN202
            _enospc()

    monkeypatch.setattr(results.os, "fdopen", Full)
    with pytest.raises(OSError) as info:
        results.write_text_atomic(tmp_path / "summary.txt", "x")
    assert (
        user_error_message(info.value) == f"cannot write {str(tmp_path / 'summary.txt')!r}: the disk is full"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["reproduce", "compare", "protocol1", "train"])
def test_an_empty_out_is_refused(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row "--out \\"\\"": refused in one line (was: the whole run written into the current directory)."""
    monkeypatch.chdir(tmp_path)
    argv = [command, "--out", "", "--quiet"]
    if command != "train":
        argv += ["--model", "random:tiny"]
    msg = user_error(capsys, argv)
    assert "--out must not be empty" in msg
    assert list(tmp_path.iterdir()) == []


def test_a_figure_command_refuses_an_empty_out(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, p1_file: Path
) -> None:
    from paper_figs import _style, table1

    monkeypatch.chdir(tmp_path)
    main = lambda a: _style.main_for(table1.render, "", a)  # noqa: E731 - python -m paper_figs.table1
    msg = user_error(capsys, [str(p1_file), "--out", ""], main=main)
    assert "--out must not be empty" in msg and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["reproduce", "compare"])
def test_an_existing_directory_that_is_not_a_run_is_refused_and_never_written_over(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture, fake_compare: Path
) -> None:
    """Row "--out <existing non-run directory holding a user's summary.txt>": refused without --overwrite;
    with it, still refused while a file the run writes lies there (the user's file intact); a directory
    whose files the run does not write gets the run beside them with --overwrite."""
    mine = tmp_path / "mine"
    mine.mkdir()
    name = "summary.txt" if command == "reproduce" else "compare.md"
    (mine / name).write_text("the user's own")
    argv = [command, "--model", "random:tiny", "--out", str(mine), "--quiet"]
    msg = user_error(capsys, argv)
    assert str(mine) in msg and "is not empty" in msg and "--overwrite" in msg and name in msg
    msg = user_error(capsys, [*argv, "--overwrite"])
    assert str(mine) in msg and name in msg and "synchrogap did not write" in msg
    assert sorted(p.name for p in mine.iterdir()) == [name] and (mine / name).read_text() == "the user's own"
    if command == "reproduce":
        (mine / name).rename(mine / "notes.txt")
        code, _, err = run_cli(capsys, [*argv, "--overwrite"])
        assert code == 0, err
        assert (mine / "notes.txt").read_text() == "the user's own" and (mine / "summary.txt").is_file()


def test_a_result_file_out_that_is_not_a_result_is_never_written_over(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "p1.npz"
    out.write_text("not a result")
    argv = [
        "protocol1",
        "--model",
        "random:tiny",
        "--steps",
        "2",
        "--seeds",
        "2",
        "--quiet",
        "--out",
        str(out),
    ]
    msg = user_error(capsys, [*argv, "--overwrite"])
    assert str(out) in msg and "not a synchrogap result file" in msg
    assert out.read_text() == "not a result"


@pytest.mark.parametrize("how", ["option", "environment"])
def test_more_threads_than_cpus_is_refused(
    how: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row "--threads 1000 on 2 cores": one line with the allowed range [1, CPUs], exit 2."""
    cpus = os.cpu_count()
    argv = ["reproduce", "--model", "random:tiny", "--out", str(tmp_path / "o"), "--quiet"]
    if how == "option":
        argv += ["--threads", "1000"]
        name = "--threads"
    else:
        monkeypatch.setenv("SYNCHROGAP_THREADS", "1000")
        name = "$SYNCHROGAP_THREADS"
    msg = user_error(capsys, argv)
    assert f"{name} must be an integer in [1, {cpus}] (this machine's CPUs), got 1000" in msg
    assert not (tmp_path / "o").exists()


def test_usage_errors_and_help_come_before_torch_is_imported(tmp_path: Path) -> None:
    """A newcomer's usage error appears at once: parsing and the model-free checks run before torch loads
    (was 20-30 s per error on a loaded machine)."""
    code = (
        "import sys\n"
        "from dit_validation import cli\n"
        "for argv in (['reproduce', '--threads', '1000'], ['reproduce', '--out', ''],\n"
        "             ['compare', '--seed', '-1'], ['protocol1', '--out', ''], ['train', '--out', '']):\n"
        "    assert cli.main(argv) == 2, argv\n"
        "cli.build_parser().parse_args(['reproduce', '--grid', 'smoke'])\n"
        "print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]"


def test_help_says_what_each_command_writes_and_how_long_it_takes(capsys: pytest.CaptureFixture) -> None:
    from dit_validation import cli
    from dit_validation.models import model_choices

    for command, needles in (
        ("reproduce", ("summary.txt", "depth.npz", "figures/", "smoke", "10 min idle", "start over")),
        ("compare", ("compare.npz", "compare.md", "6 min", "random draw", "start over")),
    ):
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for needle in needles:
            assert needle in text, (command, needle)
    for choice in model_choices():  # the static --model help lists what resolve_model accepts
        if choice != "<path>":
            assert choice.removeprefix("random:") in cli.MODEL_HELP, choice


# ---------------------------------------------------------------- fault injection by progress events


def _child_env(plan_file: Path, kill: str | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", reproduce.PLAN_ENV: str(plan_file)}
    env.pop(KILL_ENV, None)
    if kill is not None:
        env[KILL_ENV] = kill
    return env


def _kill_targets(rng: np.random.Generator) -> list[tuple[str, int]]:
    """Seeded kill points, in run order, one or two per stage: (stage, units of it finished). The unit
    counts are the tiny digits plan's: Protocol I 3 couplings × 3 seeds, Protocol II 3 couplings, compare
    1 + 2 × 2 + 1 + 2 + 1 units (TINY_COMPARE on a model without the exact-score unit), 10 figures."""
    p1 = sorted(rng.choice(np.arange(1, 9), 2, replace=False).tolist())
    c = sorted(rng.choice(np.arange(1, 9), 2, replace=False).tolist())
    return [
        ("protocol1", p1[0]),
        ("protocol1", p1[1]),
        ("protocol2", int(rng.integers(1, 3))),
        ("compare", c[0]),
        ("compare", c[1]),
        ("theory_compare", 0),
        ("depth", 0),
        ("figures", int(rng.integers(1, 10))),
    ]


@pytest.mark.slow
def test_sigkill_at_progress_events_in_every_stage_then_rerun_gives_bit_identical_arrays(
    tmp_path: Path,
) -> None:
    """Fault injection that cannot miss its target: ``reproduce`` SIGKILLs itself (test hook
    ``$SYNCHROGAP_TEST_KILL_AT``, :mod:`dit_validation.boundary`) right after the k-th finished unit of a
    chosen stage — Protocol I, Protocol II, compare, theory, depth, figures — read from the run's own unit
    counter, at any load. After each kill the parent checks from the run's own files and log that it
    landed there; the same command, re-run, then resumes, and every array of every stage file must be
    bit-identical to an uninterrupted run's. (``digits``: a trained model, so compare's clones split.)"""
    plan = write_plan(tmp_path / "plan.json", tiny_plan("digits", seed_chunk=1))
    ref, run = tmp_path / "reference", tmp_path / "killed"
    argv = [sys.executable, "-m", "dit_validation.cli", "reproduce", "--model", "digits"]
    res = subprocess.run(
        [*argv, "--quiet", "--out", str(ref)],
        env=_child_env(plan, None),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    landed: list[str] = []
    for stage, k in _kill_targets(np.random.default_rng(21)):
        target = f"{stage}:{k}"
        res = subprocess.run(
            [*argv, "--out", str(run)],
            env=_child_env(plan, target),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert res.returncode == -9, (target, res.returncode, res.stderr[-2000:])  # SIGKILL
        running = re.findall(r"stage (\w+): running", res.stderr)
        assert running and running[-1] == stage, (target, running)  # the run's own log: inside that stage
        assert f"{KILL_ENV}={target}: SIGKILL after {k} unit(s) of stage {stage}" in res.stderr
        if stage in ("protocol1", "protocol2", "compare"):  # the stage file holds exactly k finished units
            meta = load_result(run / f"{stage}.npz").meta
            assert len(meta["done"]) == k and not meta["complete"], (target, meta["done"])
        landed.append(target)
    print(f"SIGKILL landed inside: {landed}")  # shown with -s
    assert (run / LOCK_NAME).exists()  # the last kill left its lock: the re-run must take it over
    res = subprocess.run(
        [*argv, "--quiet", "--out", str(run)],
        env=_child_env(plan, None),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    assert_bit_identical(arrays_of(run), arrays_of(ref))
    assert not list(run.rglob(".*.tmp")) and not (run / LOCK_NAME).exists()
    figures = json.loads((run / "figures" / "manifest.json").read_text())["files"]
    assert figures == json.loads((ref / "figures" / "manifest.json").read_text())["files"]


def test_the_kill_hook_fires_only_in_the_named_stage_after_k_units(monkeypatch: pytest.MonkeyPatch) -> None:
    from dit_validation import boundary

    kills: list[int] = []
    monkeypatch.setattr(boundary.os, "kill", lambda pid, sig: kills.append(sig))
    monkeypatch.setenv(KILL_ENV, "compare:2")
    u = boundary.UnitCounter()
    with u.fixed(10):
        with u.stage(3, name="protocol1"):
            u.advance(3)
        with u.stage(4, name=None):  # a skipped stage never fires
            pass
        assert kills == []
        with u.stage(4, name="compare"):
            u.advance(1)
            assert kills == []
            u.advance(1)
            assert len(kills) == 1


# ---------------------------------------------------------------- a first run in a minute


def test_the_smoke_plan_runs_every_stage_small() -> None:
    smoke, quick = reproduce.make_plan("m", "smoke"), reproduce.make_plan("m", "quick")
    assert smoke.grid == "smoke" and smoke.compare.grid == "smoke"
    assert smoke.protocol1.control and len(smoke.protocol2.g) >= 2 and 0.0 in smoke.protocol2.g
    assert set(smoke.compare.g) == set(smoke.protocol2.g)  # depth measures each g with both files
    for part in ("protocol1", "protocol2"):
        assert getattr(smoke, part).num_seeds < getattr(quick, part).num_seeds
        assert getattr(smoke, part).num_steps < getattr(quick, part).num_steps
    assert smoke.compare.clone_seeds < quick.compare.clone_seeds
    assert smoke.depth.causal.pairs < quick.depth.causal.pairs


@pytest.mark.slow
def test_smoke_grid_writes_every_figure_and_says_its_numbers_decide_nothing(tmp_path: Path) -> None:
    """``synchrogap reproduce --grid smoke`` on the shipped default, as a newcomer runs it: every stage file
    complete, every figure module's files, and the closing lines saying what the quick grid adds."""
    from paper_figs import FIGURES

    out = tmp_path / "smoke"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop(reproduce.PLAN_ENV, None)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "dit_validation.cli",
            "reproduce",
            "--grid",
            "smoke",
            "--out",
            str(out),
            "--quiet",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr
    for kind in reproduce.STAGES:
        load_result(out / f"{kind}.npz", kind=kind, require_complete=True)
    names = {p.name for p in (out / "figures").iterdir()}
    stems = {
        "mode_energy": "fig_mode_energy_all.png",
        "gint_vs_rho": "fig_gint_vs_rho.png",
        "feature_similarity": "fig_feature_similarity.png",
        "commitment": "fig_commitment.png",
        "table1": "table1.md",
        "bifurcation": "fig_bifurcation.png",
        "gates": "fig_gates.png",
        "kappa_map": "fig_kappa_map_g0.00.png",
        "predicted_vs_measured": "fig_gap_vs_rho.png",
        "depth": "fig_depth.png",
    }
    assert set(stems) == set(FIGURES)
    assert set(stems.values()) <= names, set(stems.values()) - names
    assert "predictions.md" in names
    text = " ".join(res.stdout.split())
    assert "smoke grid: a demo" in text and "too few samples" in text
    assert "decide anything" in text and "about 10 min" in text and "M = 16 seeds" in text
    shutil.rmtree(out)

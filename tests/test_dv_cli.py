"""``synchrogap protocol1/protocol2`` end to end on a tiny random DiT, and one-line errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from dit_validation import cli
from dit_validation.results import load_result

BASE = ["--model", "random:tiny", "--device", "cpu", "--seeds", "3", "--steps", "4", "--quiet"]


def _error(capsys, argv):
    """Run the command expecting a user error: exit status 2 and one line on stderr, no traceback."""
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own refusals (unknown option, bad choice)
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_has_help_and_a_runner(name, capsys):
    parser = cli.build_parser()
    with pytest.raises(SystemExit) as info:
        parser.parse_args([name, "--help"])
    assert info.value.code == 0 and f"usage: synchrogap {name}" in capsys.readouterr().out


def test_protocol1_and_protocol2_end_to_end(tmp_path, capsys):
    p1 = tmp_path / "p1.npz"
    argv = ["protocol1", *BASE, *"--g 0.5 1.0 --t-int-stride 1 --n-boot 20 --out".split(), str(p1)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "tau_spec [95% CI]" in out and f"wrote {p1}" in out
    meta, a = load_result(p1)
    assert meta["complete"] and a["t_int"].tolist() == [0, 1, 2, 3, 4] and a["a_feat"].shape == (2, 5, 3)
    p2 = tmp_path / "p2.npz"
    assert cli.main(["protocol2", *BASE, "--g", "0", "0.5", "--protocol1", str(p1), "--out", str(p2)]) == 0
    assert "G_int (eq. 80)" in capsys.readouterr().out
    meta, b = load_result(p2)
    assert meta["complete"] and b["G_int"].shape == (2, 2) and np.isfinite(b["tau_spec"]).all()
    assert b["tau_spec"][1] == pytest.approx(a["tau_spec"][0])  # g = 0.5 read from Protocol I
    # rerunning with another configuration is refused unless --overwrite
    msg = _error(capsys, ["protocol1", *BASE, "--sigma", "0.9", "--t-int-stride", "2", "--out", str(p1)])
    assert "refusing to resume" in msg and "--overwrite" in msg


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--g", "1.5"], "--g must lie in [0, 1], got 1.5"),
        (["--sigma", "-1"], "--sigma must lie in [0, inf], got -1"),
        (["--t-int", "0", "9"], "--t-int must lie in [0, 4], got 9"),
        (["--model", "no-such-model"], "unknown model 'no-such-model'; choose one of"),
        (["--t-int-stride", "0"], "--t-int-stride must be an integer >= 1, got 0"),
        (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
        (["--class-label", "99"], "--class-label must lie in [0, 3]"),
        (["--device", "foo"], "--device must be cpu, cuda or cuda:<index>, got 'foo'"),
        (
            ["--threads", "0"],
            f"--threads must be an integer in [1, {os.cpu_count()}]",
        ),
        (["--model", "/nonexistent/model"], "--model '/nonexistent/model': no such directory"),
    ],
)
def test_bad_values_give_one_line_errors(tmp_path, capsys, extra, needle):
    assert needle in _error(capsys, ["protocol1", *BASE, *extra, "--out", str(tmp_path / "x.npz")])


def test_out_of_memory_hint(tmp_path, capsys, monkeypatch):
    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    from dit_validation import protocol1

    monkeypatch.setattr(protocol1, "run_protocol1", oom)  # the command imports it when it runs
    msg = _error(capsys, ["protocol1", *BASE, "--batch-size", "512", "--out", str(tmp_path / "x.npz")])
    assert "ran out of memory; lower --batch-size" in msg

"""Result files: round trip, atomic replace, provenance, refusal to resume another config."""

from __future__ import annotations

import numpy as np
import pytest

from dit_validation import results
from dit_validation.results import ConfigMismatchError, load_result, make_meta, open_for_resume, save_result


def test_roundtrip_and_meta(tmp_path):
    path = tmp_path / "sub" / "run.npz"
    cfg = {"g": (0.1, 0.5), "num_steps": 10, "nested": {"a": np.float64(1.5)}}
    meta = make_meta("protocol1", cfg, [0, 1, 2], done=["g=0.1/seed=0"])
    arrays = {"x": np.arange(6.0).reshape(2, 3), "mask": np.array([True, False])}
    save_result(path, meta, arrays)
    m, a = load_result(path)
    assert m["kind"] == "protocol1" and m["config"] == {
        "g": [0.1, 0.5],
        "nested": {"a": 1.5},
        "num_steps": 10,
    }
    assert m["seeds"] == [0, 1, 2] and m["done"] == ["g=0.1/seed=0"] and m["complete"] is False
    assert (
        set(m["versions"]) == {"synchrogap", "torch", "diffusers", "numpy"}
        and m["versions"]["numpy"] == np.__version__
    )
    assert "git_revision" in m and "T" in m["created"]
    np.testing.assert_array_equal(a["x"], arrays["x"])
    np.testing.assert_array_equal(a["mask"], arrays["mask"])
    assert sorted(p.name for p in path.parent.iterdir()) == ["run.npz"]  # no temp files left


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "run.npz"
    save_result(path, make_meta("theory", {}, []), {"x": np.ones(3)})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(results.np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        save_result(path, make_meta("theory", {}, []), {"x": np.zeros(3)})
    monkeypatch.undo()
    np.testing.assert_array_equal(load_result(path)[1]["x"], np.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["run.npz"]


def test_resume_refuses_other_config(tmp_path):
    path = tmp_path / "run.npz"
    assert open_for_resume(path, "protocol1", {"a": 1}) is None
    save_result(path, make_meta("protocol1", {"a": 1, "b": 2}, [0], done=["u1"]), {"x": np.ones(1)})
    meta, arrays = open_for_resume(path, "protocol1", {"a": 1, "b": 2})
    assert meta["done"] == ["u1"]
    with pytest.raises(ConfigMismatchError, match=r"different configuration \(differs in: b\).*--overwrite"):
        open_for_resume(path, "protocol1", {"a": 1, "b": 3})
    with pytest.raises(ConfigMismatchError, match="protocol1 run"):
        open_for_resume(path, "protocol2", {"a": 1, "b": 2})
    assert open_for_resume(path, "protocol1", {"a": 1, "b": 3}, overwrite=True) is None
    with pytest.raises(ValueError, match="reserved key"):
        save_result(path, {}, {"__meta__": np.ones(1)})

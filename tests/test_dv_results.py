"""Result files: round trip, atomic replace, provenance, refusal to resume another config."""

from __future__ import annotations

import os

import numpy as np
import pytest

from dit_validation import results
from dit_validation.results import (
    ConfigMismatchError,
    ResultFileError,
    load_result,
    make_meta,
    open_for_resume,
    save_result,
)
from dit_validation.schema import SCHEMAS, SchemaError

SIZES = {"g": 2, "t_int": 3, "seed": 2, "param": 4, "ci": 2}


def _partial_p1(make_arrays):
    """The arrays of an incomplete (resumable) protocol1 file: only the raw, always-present ones."""
    full = make_arrays("protocol1", SIZES, optional=False, a_feat=np.arange(12.0).reshape(2, 3, 2))
    return {k: v for k, v in full.items() if SCHEMAS["protocol1"].arrays[k].presence == "always"}


def test_roundtrip_and_meta(tmp_path, make_arrays):
    path = tmp_path / "sub" / "run.npz"
    cfg = {"g": (0.1, 0.5), "num_steps": 10, "nested": {"a": np.float64(1.5)}}
    meta = make_meta("protocol1", cfg, [0, 1, 2], done=["g=0.1/seed=0"])
    arrays = _partial_p1(make_arrays)
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
    for k in arrays:
        np.testing.assert_array_equal(a[k], arrays[k], err_msg=k)
    assert sorted(p.name for p in path.parent.iterdir()) == ["run.npz"]  # no temp files left
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # readable by collaborators


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch, make_arrays):
    path = tmp_path / "run.npz"
    first = _partial_p1(make_arrays)
    save_result(path, make_meta("protocol1", {}, []), first)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(results.np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        save_result(path, make_meta("protocol1", {}, []), {**first, "a_feat": np.zeros((2, 3, 2))})
    monkeypatch.undo()
    np.testing.assert_array_equal(load_result(path)[1]["a_feat"], first["a_feat"])
    assert [p.name for p in tmp_path.iterdir()] == ["run.npz"]


def test_resume_refuses_other_config(tmp_path, make_arrays):
    path = tmp_path / "run.npz"
    assert open_for_resume(path, "protocol1", {"a": 1}) is None
    save_result(path, make_meta("protocol1", {"a": 1, "b": 2}, [0], done=["u1"]), _partial_p1(make_arrays))
    meta, arrays = open_for_resume(path, "protocol1", {"a": 1, "b": 2})
    assert meta["done"] == ["u1"]
    with pytest.raises(ConfigMismatchError, match=r"different configuration \(differs in: b\).*--overwrite"):
        open_for_resume(path, "protocol1", {"a": 1, "b": 3})
    with pytest.raises(ConfigMismatchError, match="protocol1 run"):
        open_for_resume(path, "protocol2", {"a": 1, "b": 2})
    assert open_for_resume(path, "protocol1", {"a": 1, "b": 3}, overwrite=True) is None
    with pytest.raises(ValueError, match="reserved key"):
        save_result(path, {}, {"__meta__": np.ones(1)})


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"drop": "a_feat"}, "array 'a_feat' is missing from this incomplete protocol1 file"),
        ({"a_feat": np.zeros((2, 3))}, "array 'a_feat' must have 3 dimension(s)"),
        ({"d_low": np.zeros((2, 3, 5))}, "array 'd_low' has 5 entries along dimension 'seed'"),
        ({"done_mask": np.zeros((2, 2))}, "array 'done_mask' must have dtype kind 'b'"),
        ({"bogus": np.zeros(3)}, "array 'bogus' is not part of the protocol1 schema"),
    ],
)
def test_schema_refuses_a_broken_file_naming_the_array(tmp_path, make_arrays, change, needle):
    arrays = _partial_p1(make_arrays)
    if "drop" in change:
        del arrays[change.pop("drop")]
    arrays.update(change)
    with pytest.raises(SchemaError) as info:
        save_result(tmp_path / "x.npz", make_meta("protocol1", {}, []), arrays)
    assert needle in str(info.value) and "x.npz" in str(info.value)
    assert not (tmp_path / "x.npz").exists()  # nothing written


def test_complete_files_need_every_summary_array(tmp_path, make_arrays):
    with pytest.raises(
        SchemaError, match="array 'a_feat_median' is missing from this complete protocol1 file"
    ):
        save_result(
            tmp_path / "x.npz", make_meta("protocol1", {}, [], complete=True), _partial_p1(make_arrays)
        )
    full = make_arrays("protocol1", SIZES)
    save_result(tmp_path / "x.npz", make_meta("protocol1", {}, [], complete=True), full)
    assert load_result(tmp_path / "x.npz", kind="protocol1", require_complete=True).complete


def test_load_names_the_file_for_every_kind_of_bad_file(tmp_path, make_arrays):
    good = tmp_path / "p1.npz"
    save_result(good, make_meta("protocol1", {}, []), _partial_p1(make_arrays))
    truncated = tmp_path / "cut.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ResultFileError, match="cut.npz.*truncated or corrupt"):
        load_result(truncated)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(ResultFileError, match="empty.npz"):
        load_result(empty)
    with pytest.raises(ResultFileError, match="p1.npz.*holds a protocol1 result, expected a protocol2"):
        load_result(good, kind="protocol2")
    with pytest.raises(ResultFileError, match="p1.npz.*incomplete protocol1 run"):
        load_result(good, require_complete=True)
    with pytest.raises(ResultFileError, match="nope.npz.*no such result file"):
        load_result(tmp_path / "nope.npz")
    plain = tmp_path / "plain.npz"
    np.savez(plain, x=np.ones(2))
    with pytest.raises(ResultFileError, match="not a synchrogap result file"):
        load_result(plain)


def test_to_xarray_labels_dimensions_with_the_schema(tmp_path, make_arrays):
    import xarray as xr  # the optional extra; the test extra installs it

    sizes = {
        "g": 3,
        "step": 4,
        "layer": 2,
        "mode": 3,
        "seed": 2,
        "hmode": 2,
        "basis_seed": 4,
        "boot": 5,
        "ci": 2,
    }
    arrays = make_arrays(
        "protocol2", sizes, g=[0.0, 0.3, 0.9], G_int=np.arange(6.0).reshape(3, 2), layers=[0, 1]
    )
    save_result(tmp_path / "p2.npz", make_meta("protocol2", {}, [], complete=True), arrays)
    ds = load_result(tmp_path / "p2.npz").to_xarray()
    assert isinstance(ds, xr.Dataset)
    assert ds.G_int.dims == ("g", "layer")
    np.testing.assert_array_equal(ds.G_int.sel(g=0.3).values, [2.0, 3.0])


def test_design_doc_carries_the_schema_verbatim():
    """docs/DESIGN.md's result-file section is the code's schema (python -m dit_validation.schema)."""
    from pathlib import Path

    from dit_validation.schema import schema_markdown

    text = (Path(__file__).resolve().parents[1] / "docs" / "DESIGN.md").read_text()
    begin, end = "<!-- schema:begin -->\n", "<!-- schema:end -->"
    assert text[text.index(begin) + len(begin) : text.index(end)] == schema_markdown()

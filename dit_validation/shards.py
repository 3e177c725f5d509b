"""A stage's units shared out among the ranks of a job, and the per-unit files that carry them home.

Every resumable stage (Protocol I, Protocol II, compare, depth) runs a loop over keyed units and saves the
result file after each. :class:`UnitShare` is the loop's one seam: the stage asks it whether a unit is
its own (:meth:`~UnitShare.mine`), hands it every finished unit (:meth:`~UnitShare.saved`) and asks
whether to write the final summaries (:attr:`~UnitShare.finalizes`). The default, ``UnitShare()``, is the
single process: every unit, the whole file rewritten after each, summaries at the end — exactly the
behaviour without a job.

On a rank of a job (:mod:`dit_validation.distributed`) a share takes every ``size``-th unit, round robin
within each kind of unit (kinds staggered, so that each kind is spread over the ranks), and writes each
finished unit as a *part*: the array elements the unit changed, written atomically into
``<stage file>.parts/`` by the rank that computed it — one writer per file. Rank 0 then merges the parts
into the stage file (:func:`merge_parts`) and deletes them. A part stores the changed elements' new bytes
and is applied by position, so merging is idempotent (a merge killed between writing the stage file and
deleting the parts is simply repeated) and the merged arrays are the bytes the single process would have
written: the units compute the same numbers wherever they run (every draw is keyed per seed, and
results do not depend on batching). Two parts writing one element with different bytes is a bug and
refused by name.

torch-free (layer 1).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .results import (
    EXECUTION_KEYS,
    ResultFileError,
    load_result,
    normalize_config,
    package_versions,
    save_result,
    write_npz_atomic,
)

__all__ = ["UnitShare", "parts_dir", "merge_parts", "remove_parts", "PART_KEY"]

log = logging.getLogger(__name__)

#: Key of a part file's own JSON record (kind, config, unit keys, rank, meta increments).
PART_KEY = "__part__"
#: Meta fields every result carries; any other numeric field (compare's ``wall_time_s``) is a running total
#: that parts carry as increments and a merge adds up.
_STANDARD_META = {"kind", "config", "seeds", "versions", "git_revision", "created", "complete", "done"}


def parts_dir(path: str | os.PathLike) -> Path:
    """Where the ranks of a job put the finished units of the stage file ``path``: ``<path>.parts/``."""
    path = Path(path)
    return path.with_name(path.name + ".parts")


def _totals(meta: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in meta.items()
        if k not in _STANDARD_META and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def _rows(a: np.ndarray) -> np.ndarray:
    """The array as (elements, bytes): equal rows are equal bits (NaN payloads and -0.0 included)."""
    a = np.ascontiguousarray(a)
    return a.view(np.uint8).reshape(a.size, a.dtype.itemsize)


def _changes(old: np.ndarray | None, new: np.ndarray) -> tuple[np.ndarray, np.ndarray] | np.ndarray | None:
    """What turns ``old`` into ``new``: (flat indices, values), the whole array, or None (no change)."""
    new = np.asarray(new)
    if old is None or old.shape != new.shape or old.dtype.kind != new.dtype.kind or new.dtype.kind == "O":
        return new.copy()
    if new.size == 0:
        return None
    if new.dtype.kind in "US" and old.dtype != new.dtype:  # a string array widened by a longer entry
        changed = (old.astype(new.dtype) != new).reshape(-1)
    elif old.dtype != new.dtype:
        return new.copy()
    else:
        changed = np.any(_rows(old) != _rows(new), axis=1)
    idx = np.flatnonzero(changed)
    return None if idx.size == 0 else (idx, new.reshape(-1)[idx].copy())


class UnitShare:
    """Which units of a stage this process computes and where each finished unit goes (module docstring).

    ``only``: the units this call may run (a phase of a stage whose later units need earlier ones), None
    for all. ``rank``/``size``: this process's place in the job. ``parts``: where finished units go as
    part files (None: the stage file itself, rewritten whole). ``finalizes``: whether the stage writes its
    summaries and marks its file complete after the loop (only the single process, or rank 0 once every
    unit is merged).
    """

    def __init__(
        self,
        *,
        only: Iterable[str] | None = None,
        rank: int = 0,
        size: int = 1,
        parts: Path | None = None,
        finalizes: bool = True,
    ) -> None:
        if not 0 <= rank < size:
            raise ValueError(f"rank must lie in [0, {size - 1}], got {rank}")
        self.only = None if only is None else frozenset(only)
        self.rank, self.size, self.parts, self.finalizes = rank, size, parts, finalizes
        self.current: str | None = None  # the unit being computed (named when it fails)
        self.finished = 0  # unit keys this share saved
        self._seen = 0  # units offered so far (within ``only``), over all kinds
        self._kinds: dict[str, list[int]] = {}  # kind → [offset, units offered of this kind]
        self._base: dict[str, np.ndarray] = {}
        self._totals: dict[str, float] = {}

    def mine(self, key: str, kind: str = "") -> bool:
        """Whether this process computes unit ``key``. Every rank must offer the same units in the same
        order (they read the same stage file): unit j of a kind goes to rank (offset + j) mod size, the
        offset being how many units were offered before the kind's first one."""
        if self.only is not None and key not in self.only:
            return False
        offset, n = self._kinds.setdefault(kind, [self._seen, 0])
        self._kinds[kind][1] += 1
        self._seen += 1
        take = (offset + n) % self.size == self.rank
        if take:
            self.current = key
        return take

    def begin(self, path: str | os.PathLike, meta: Mapping[str, Any], arrays: Mapping[str, Any]) -> None:
        """The stage's arrays before its first unit (what parts are the changes from). Rank 0 writes them as
        the stage file, so that the parts are merged into exactly what they changed: a new file, the same
        arrays again when resuming, or a fresh start over a complete file the stage recomputes."""
        if self.parts is None:
            return
        self._base = {k: np.array(v, copy=True) for k, v in arrays.items()}
        self._totals = _totals(meta)
        if self.rank == 0:
            save_result(path, meta, arrays)

    def saved(
        self, path: str | os.PathLike, meta: Mapping[str, Any], arrays: Mapping[str, Any], keys: list[str]
    ) -> None:
        """Units ``keys`` are finished: rewrite the stage file (single process) or write their part."""
        self.current = None
        self.finished += len(keys)
        if self.parts is None:
            save_result(path, meta, arrays)
            return
        payload: dict[str, np.ndarray] = {}
        for name, value in arrays.items():
            change = _changes(self._base.get(name), np.asarray(value))
            if change is None:
                continue
            if isinstance(change, tuple):
                payload[f"{name}::idx"], payload[f"{name}::val"] = change
            else:
                payload[f"{name}::all"] = change
            self._base[name] = np.array(value, copy=True)
        totals = _totals(meta)
        record = {
            "kind": meta["kind"],
            "config": normalize_config(meta["config"]),
            "version": package_versions().get("synchrogap"),
            "keys": list(keys),
            "rank": self.rank,
            "increments": {k: v - self._totals.get(k, 0.0) for k, v in totals.items()},
        }
        self._totals = totals
        payload[PART_KEY] = np.asarray(json.dumps(record, sort_keys=True))
        write_npz_atomic(parts_dir(path) / f"{_slug(keys[0])}.npz", payload)


def _slug(key: str) -> str:
    return "".join(c if c.isalnum() or c in "=.-_" else "__" for c in key)


def _read_part(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            record = json.loads(str(data[PART_KEY]))
            arrays = {k: data[k] for k in data.files if k != PART_KEY}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("ignoring unreadable part %s (%s); its unit runs again", path, type(exc).__name__)
        return None
    return record, arrays


def remove_parts(path: str | os.PathLike) -> None:
    """Delete the parts directory of stage file ``path`` (``--overwrite``, or once merged)."""
    d = parts_dir(path)
    if not d.is_dir():
        return
    for p in d.iterdir():
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    with contextlib.suppress(OSError):
        d.rmdir()


def _apply(arrays: dict[str, np.ndarray], written: dict[str, np.ndarray], name: str, change: Any) -> None:
    """Write one part's change of array ``name``; an element two parts set to different bytes is a bug."""
    if isinstance(change, np.ndarray):  # the whole array
        old = arrays.get(name)
        if name in written and (old is None or old.shape != change.shape or not np.array_equal(old, change)):
            raise RuntimeError(f"two units of one stage wrote the whole array {name!r} differently")
        arrays[name], written[name] = change, np.ones(change.shape, bool)
        return
    idx, val = change
    target = arrays[name]
    if target.dtype.kind in "US" and val.dtype.itemsize > target.dtype.itemsize:
        target = arrays[name] = target.astype(val.dtype)
    flat, seen = target.reshape(-1), written.setdefault(name, np.zeros(target.shape, bool)).reshape(-1)
    again = idx[seen[idx]]
    if again.size and np.any(_rows(flat[again]) != _rows(val[seen[idx]].astype(target.dtype))):
        raise RuntimeError(f"two units of one stage wrote different values into array {name!r}")
    flat[idx] = val
    seen[idx] = True


def merge_parts(path: str | os.PathLike) -> int:
    """Merge the parts of stage file ``path`` into it (incomplete, with their units added to ``done``),
    then delete them; returns how many units were added. Call on one rank, with no rank writing parts.

    Parts of another kind, configuration (batching aside) or package version than the stage file, parts
    without a stage file and parts of a complete file are removed unmerged (their units run again)."""
    path, d = Path(path), parts_dir(path)
    if not d.is_dir():
        return 0
    parts = sorted(d.glob("*.npz"))
    if not parts:  # only temporaries of a writer killed mid-write
        remove_parts(path)
        return 0
    try:
        meta, arrays = load_result(path)
    except ResultFileError as exc:
        log.warning("%s: %s; its %d finished part(s) are discarded and run again", d, exc, len(parts))
        remove_parts(path)
        return 0
    if parts and meta["complete"]:
        log.info("%s is complete: removing %d leftover part(s)", path, len(parts))
        parts = []
    arrays, done, totals = dict(arrays), list(meta.get("done", [])), _totals(meta)
    written: dict[str, np.ndarray] = {}
    version, config = package_versions().get("synchrogap"), normalize_config(meta.get("config", {}))
    added = 0
    for p in parts:
        part = _read_part(p)
        if part is None:
            continue
        record, payload = part
        differs = sorted(
            k
            for k in set(record["config"]) | set(config)
            if k not in EXECUTION_KEYS and record["config"].get(k) != config.get(k)
        )
        if record["kind"] != meta["kind"] or differs or record["version"] != version:
            why = ", ".join(differs) or "package version"
            log.warning("%s was made for another %s run (differs in %s); discarded", p, meta["kind"], why)
            continue
        new = [k for k in record["keys"] if k not in done]
        if not new:  # merged before a kill stopped the clean-up
            continue
        for key, value in payload.items():
            name, _, part_kind = key.rpartition("::")
            if part_kind == "all":
                _apply(arrays, written, name, value)
            elif part_kind == "idx":
                _apply(arrays, written, name, (value, payload[f"{name}::val"]))
        done += new
        added += len(new)
        for k, v in record["increments"].items():
            totals[k] = totals.get(k, 0.0) + v
    if added:
        save_result(path, {**meta, **totals, "done": done, "complete": False}, arrays)
        log.info("%s: merged %d unit(s) from %d part(s)", path, added, len(parts))
    remove_parts(path)
    return added

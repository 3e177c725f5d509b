"""Self-describing, atomic, resumable result files (one ``.npz`` per run).

Contract (docs/DESIGN.md, "Result files"): key ``__meta__`` holds a JSON string with
``kind, config, seeds, versions, git_revision, created, complete, done``; every other key is a
numpy array. Files are written to a temp file in the same directory and ``os.replace``-d, so a
run killed mid-write leaves the previous complete file. A sweep re-opens its own file, skips the
units in ``meta["done"]`` and rewrites the file after each unit.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

META_KEY = "__meta__"


class ConfigMismatchError(ValueError):
    """The result file on disk was made with a different configuration."""


def _jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def normalize_config(config: Any) -> dict[str, Any]:
    """A config (dataclass or mapping) as the plain JSON object stored in the file."""
    return json.loads(json.dumps(_jsonable(config), sort_keys=True))


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("synchrogap", "torch", "diffusers", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_revision() -> str | None:
    """HEAD of the repository this package lives in, or None (not a checkout, no git)."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return rev.stdout.strip() or None


def make_meta(
    kind: str,
    config: Any,
    seeds: list[int],
    done: list[str] | None = None,
    complete: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """The ``__meta__`` object of the contract."""
    meta = {
        "kind": kind,
        "config": normalize_config(config),
        "seeds": [int(s) for s in seeds],
        "versions": package_versions(),
        "git_revision": git_revision(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "complete": bool(complete),
        "done": list(done or []),
    }
    meta.update(_jsonable(extra))
    return meta


def save_result(path: str | os.PathLike, meta: Mapping[str, Any], arrays: Mapping[str, Any]) -> Path:
    """Atomically write ``arrays`` and ``meta`` (as JSON under ``__meta__``) to ``path`` (.npz)."""
    path = Path(path)
    if META_KEY in arrays:
        raise ValueError(f"arrays must not contain the reserved key {META_KEY!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    payload[META_KEY] = np.asarray(json.dumps(_jsonable(dict(meta)), sort_keys=True))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_result(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(meta, arrays) of a result file written by :func:`save_result`."""
    with np.load(Path(path), allow_pickle=False) as data:
        if META_KEY not in data.files:
            raise ValueError(f"{str(path)!r} is not a synchrogap result file (no {META_KEY!r} key)")
        meta = json.loads(str(data[META_KEY]))
        arrays = {k: data[k] for k in data.files if k != META_KEY}
    return meta, arrays


def open_for_resume(
    path: str | os.PathLike, kind: str, config: Any, overwrite: bool = False
) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """The existing (meta, arrays) to resume from, None when starting fresh.

    Refuses (``ConfigMismatchError``) when the file holds another kind or configuration, unless
    ``overwrite`` (then the old file is ignored and later replaced).
    """
    path = Path(path)
    if overwrite or not path.exists():
        return None
    meta, arrays = load_result(path)
    want = normalize_config(config)
    if meta.get("kind") != kind or meta.get("config") != want:
        diff = sorted(
            k for k in set(want) | set(meta.get("config", {})) if meta.get("config", {}).get(k) != want.get(k)
        )
        raise ConfigMismatchError(
            f"{str(path)!r} holds a {meta.get('kind')} run with a different configuration (differs in: "
            f"{', '.join(diff) or 'kind'}); refusing to resume. Use another --out or pass --overwrite."
        )
    return meta, arrays

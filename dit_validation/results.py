"""Self-describing, atomic, resumable result files (one ``.npz`` per run).

Key ``__meta__`` holds a JSON object with ``kind, config, seeds, versions, git_revision, created, complete,
done`` (:func:`make_meta`); every other key is a numpy array whose name, named dimensions and dtype are
fixed by the kind's schema (:mod:`dit_validation.schema`). :func:`save_result` validates before writing and
writes a temp file in the same directory that is ``os.replace``-d into place, so a run killed mid-write
leaves the previous complete file; files get the permissions the umask gives (0644 by default).
:func:`load_result` validates what it reads and names the file in every error. A sweep re-opens its own
file (:func:`open_for_resume`), skips the units in ``meta["done"]`` and rewrites the file after each unit.

torch-free: figures and notebooks read results through this module without loading torch.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .schema import SCHEMAS, SchemaError, validate_result

__all__ = [
    "META_KEY",
    "EXECUTION_KEYS",
    "ConfigMismatchError",
    "ResultFileError",
    "Result",
    "make_meta",
    "save_result",
    "load_result",
    "open_for_resume",
    "normalize_config",
    "write_text_atomic",
    "write_npz_atomic",
    "naming",
]

META_KEY = "__meta__"
#: Configuration keys that change how a result is computed, never what: batching (results do not depend on
#: it, every random draw is keyed per seed). A resumed or skipped stage may differ in them.
EXECUTION_KEYS: tuple[str, ...] = ("batch_size", "seed_chunk")


class ConfigMismatchError(ValueError):
    """The result file on disk was made with a different configuration."""


class ResultFileError(ValueError):
    """A result file cannot be used: unreadable, truncated, of another kind, or breaking its schema."""


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
    if isinstance(obj, Path):
        return str(obj)
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
    seeds: list[int] | tuple[int, ...] = (),
    done: list[str] | None = None,
    complete: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """The ``__meta__`` object of the contract; every writer builds its meta here."""
    if kind not in SCHEMAS:
        raise ValueError(f"kind must be one of {sorted(SCHEMAS)}, got {kind!r}")
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


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def save_result(path: str | os.PathLike, meta: Mapping[str, Any], arrays: Mapping[str, Any]) -> Path:
    """Validate against the kind's schema, then atomically write ``arrays`` and ``meta`` to ``path``."""
    path = Path(path)
    if META_KEY in arrays:
        raise ValueError(f"arrays must not contain the reserved key {META_KEY!r}")
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    meta_obj = _jsonable(dict(meta))
    validate_result(meta_obj, payload, path)  # a writer bug is caught here, never in a later reader
    payload[META_KEY] = np.asarray(json.dumps(meta_obj, sort_keys=True))
    return write_npz_atomic(path, payload)


def write_npz_atomic(path: str | os.PathLike, payload: Mapping[str, np.ndarray]) -> Path:
    """Write ``payload`` as an .npz atomically (temp file, fsync, rename), with the umask's permissions;
    an OSError names ``path``. Result files and the part files of a sharded stage both go through it."""
    path = Path(path)
    with naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, _umask_mode())  # mkstemp makes 0600; collaborators must be able to read results
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    return path


@contextlib.contextmanager
def naming(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise an OSError that names no file (a full disk fails on write or flush, not on open) as one
    naming ``path``, so that the error boundary's one line says which file could not be written."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path)) from exc
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write a text file (a report beside a result) atomically, with the umask's permissions."""
    path = Path(path)
    with naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.chmod(tmp, _umask_mode())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    return path


class Result(NamedTuple):
    """A loaded result file; unpacks as ``meta, arrays = load_result(path)``."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def kind(self) -> str:
        return str(self.meta["kind"])

    @property
    def complete(self) -> bool:
        return bool(self.meta["complete"])

    def to_xarray(self) -> Any:
        """The arrays as an ``xarray.Dataset`` with the schema's named dimensions and coordinates.

        ``load_result("protocol2.npz").to_xarray().G_int.sel(g=0.3)``. Needs the optional dependency
        xarray (``pip install "synchrogap[xarray]"``).
        """
        try:
            import xarray as xr
        except ImportError as exc:
            raise ImportError(
                "Result.to_xarray needs xarray: pip install 'synchrogap[xarray]' (or pip install xarray)"
            ) from exc
        schema = SCHEMAS[self.kind]
        coord_arrays = {dim: name for dim, name in schema.coords.items() if name in self.arrays}
        coords = {dim: np.asarray(self.arrays[name]) for dim, name in coord_arrays.items()}
        data = {
            name: (schema.arrays[name].dims, np.asarray(value))
            for name, value in self.arrays.items()
            if name not in coord_arrays.values()
        }
        attrs = {"kind": self.kind, "config": json.dumps(self.meta.get("config", {}), sort_keys=True)}
        return xr.Dataset(data, coords=coords, attrs=attrs)


def load_result(path: str | os.PathLike, kind: str | None = None, require_complete: bool = False) -> Result:
    """Read and validate a result file; ``kind``/``require_complete`` refuse another kind or a partial file.

    Every failure is a :class:`ResultFileError` whose message starts with the file's path.
    """
    path = Path(path)
    if not path.is_file():
        raise ResultFileError(f"{str(path)!r}: no such result file")
    try:
        with np.load(path, allow_pickle=False) as data:
            if META_KEY not in data.files:
                raise ResultFileError(f"{str(path)!r} is not a synchrogap result file (no {META_KEY!r} key)")
            meta = json.loads(str(data[META_KEY]))
            arrays = {k: data[k] for k in data.files if k != META_KEY}
    except ResultFileError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, json.JSONDecodeError, KeyError) as exc:
        raise ResultFileError(
            f"{str(path)!r} is not a readable result file (truncated or corrupt: {type(exc).__name__})"
        ) from exc
    try:
        validate_result(meta, arrays, path)
    except SchemaError as exc:
        raise ResultFileError(str(exc)) from exc
    if kind is not None and meta["kind"] != kind:
        raise ResultFileError(f"{str(path)!r} holds a {meta['kind']} result, expected a {kind} result")
    if require_complete and not meta["complete"]:
        raise ResultFileError(
            f"{str(path)!r} is an incomplete {meta['kind']} run (killed before it finished); "
            "re-run its command to resume it"
        )
    return Result(meta, arrays)


def open_for_resume(
    path: str | os.PathLike, kind: str, config: Any, overwrite: bool = False
) -> Result | None:
    """The existing result to resume from, None when starting fresh.

    Refuses (``ConfigMismatchError``) when the file holds another kind, another configuration (keys in
    :data:`EXECUTION_KEYS` aside) or was made by another version of synchrogap, unless ``overwrite`` (then
    the old file is ignored and later replaced).
    """
    path = Path(path)
    if overwrite or not path.exists():
        return None
    meta, arrays = load_result(path)
    want = normalize_config(config)
    have = meta.get("config", {})
    diff = sorted(k for k in (set(want) | set(have)) - set(EXECUTION_KEYS) if have.get(k) != want.get(k))
    if meta.get("kind") != kind or diff:
        raise ConfigMismatchError(
            f"{str(path)!r} holds a {meta.get('kind')} run with a different configuration (differs in: "
            f"{', '.join(diff) or 'kind'}); refusing to resume. Use another --out or pass --overwrite."
        )
    version, running = (meta.get("versions") or {}).get("synchrogap"), package_versions().get("synchrogap")
    if version != running:
        raise ConfigMismatchError(
            f"{str(path)!r} was made by synchrogap {version}, this is {running}; refusing to mix versions "
            "in one result. Use another --out or pass --overwrite."
        )
    return Result(meta, arrays)

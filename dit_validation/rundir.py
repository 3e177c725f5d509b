"""Run directories: one run at a time (a lock), damaged stage files moved aside, stage meta checked.

Every command that writes into a directory (``reproduce``, ``compare``) or a result file (the protocols)
holds a lock while it writes, so two runs never do the same work or interleave their files:

    with run_lock(out_dir / LOCK_NAME, wait=args.wait):
        ...

A stage file inside a run directory is read with :func:`read_stage`: a file that cannot be read, breaks
its schema or holds another kind of result is moved aside to ``<name>.corrupt`` (logged) and the stage
runs again; :func:`config_differences` names the configuration keys in which a file differs from what
the run would write (keys in :data:`EXECUTION_KEYS` never count: they change how, not what, is computed).

What may serve as ``--out`` (:func:`check_out_dir`): a new or empty directory, or a run of the same
command; any other directory only with ``--overwrite``, and even then no file that synchrogap did not
write is written over. ``--overwrite`` on a run starts over (:func:`start_over`): every file of the old
run is deleted before the first stage, so that no array, figure or table of it survives. A stage that
reads another stage's file checks where it came from (:func:`check_input`): model, step count, grid.

torch-free (layer 1), so that ``compare`` and the figure commands can use it too.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .boundary import UsageError
from .results import (
    EXECUTION_KEYS,
    ConfigMismatchError,
    Result,
    ResultFileError,
    load_result,
    naming,
    package_versions,
)

__all__ = [
    "LOCK_NAME",
    "EXECUTION_KEYS",
    "RunLockedError",
    "run_lock",
    "lock_path_for",
    "quarantine",
    "read_stage",
    "config_differences",
    "version_difference",
    "remove_stale_temporaries",
    "check_input",
    "check_out_dir",
    "check_out_file",
    "start_over",
]

log = logging.getLogger(__name__)

#: Lock file of a run directory (a result file ``X.npz`` is locked through ``X.npz.lock``).
LOCK_NAME = ".synchrogap.lock"
#: Seconds after which a lock file without a readable holder (killed while writing it) counts as stale.
EMPTY_LOCK_GRACE_S = 10.0


class RunLockedError(UsageError):
    """Another live process holds the lock; the message names its pid and command."""


def lock_path_for(out: str | os.PathLike, is_dir: bool) -> Path:
    """The lock file of an output: ``<dir>/.synchrogap.lock`` for a directory, ``<file>.lock`` for a file."""
    out = Path(out)
    return out / LOCK_NAME if is_dir else out.with_name(out.name + ".lock")


def _process_start(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (Linux ``/proc``), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5), counted after the command name


def _alive(holder: Mapping[str, Any]) -> bool:
    """Whether the lock's holder still runs (a holder on another host is assumed alive)."""
    if holder.get("host") != socket.gethostname():
        return True
    pid = int(holder.get("pid", -1))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    started = holder.get("process_start")
    return started is None or _process_start(pid) in (None, started)  # a reused pid is not the holder


def _read_holder(path: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _describe(holder: Mapping[str, Any]) -> str:
    cmd = holder.get("command") or "?"
    return f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started', '?')}: {cmd}"


#: Locks this process holds, with their nesting depth (a command calling another one re-enters its lock).
_HELD: dict[Path, int] = {}


def _try_acquire(path: Path, me: Mapping[str, Any]) -> dict[str, Any] | None:
    """Create the lock file; None on success, else the live holder's record."""
    for _ in range(3):  # a stale lock removed by us (or a racing taker) is retried
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            holder = _read_holder(path)
            if holder == {}:  # vanished between open and read: try again
                continue
            if holder is None:  # half-written by a process killed mid-write, or garbage
                age = time.time() - path.stat().st_mtime if path.exists() else 0.0
                if age < EMPTY_LOCK_GRACE_S:
                    return {"pid": "?", "host": "?", "command": f"(unreadable lock file {str(path)!r})"}
            elif _alive(holder):
                return holder
            log.warning("taking over the stale lock %s (%s is gone)", path, _describe(holder or {}))
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        with naming(path), os.fdopen(fd, "w") as fh:  # a full disk names the lock file
            fh.write(json.dumps(me))
        return None
    holder = _read_holder(path) or {}
    return holder or {"pid": "?", "host": "?", "command": "(lock contended)"}


@contextlib.contextmanager
def run_lock(path: str | os.PathLike, *, wait: bool = False, poll_s: float = 1.0) -> Iterator[Path]:
    """Hold the lock file ``path`` for the duration of the block: one run per output at a time.

    The file records the holder's pid, host, process start time and command line. A lock whose holder is
    gone (killed, crashed) is taken over with a warning. A live holder makes this raise
    :class:`RunLockedError` naming its pid, or, with ``wait``, poll every ``poll_s`` seconds until it is
    released. The lock is removed on exit, also after an exception or Ctrl-C (not after SIGKILL: the next
    run then finds it stale). Re-entrant within one process. The lock file's directory must exist.
    """
    path = Path(path)
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "process_start": _process_start(os.getpid()),
        "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
    }
    key = path.resolve()
    if _HELD.get(key):  # re-entered by the process that holds it (e.g. reproduce → compare)
        _HELD[key] += 1
        try:
            yield path
        finally:
            _HELD[key] -= 1
        return
    announced = False
    while (holder := _try_acquire(path, me)) is not None:
        where = str(path.parent) if path.name == LOCK_NAME else str(path.with_suffix(""))
        if not wait:
            raise RunLockedError(
                f"{where!r} is in use by another run ({_describe(holder)}); wait for it to finish, "
                "pass --wait to queue behind it, or choose another --out"
            )
        if not announced:
            log.info("waiting for %s to finish (%s)", where, _describe(holder))
            announced = True
        time.sleep(poll_s)
    _HELD[key] = 1
    try:
        yield path
    finally:
        del _HELD[key]
        if (_read_holder(path) or {}).get("pid") == me["pid"]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def quarantine(path: str | os.PathLike, reason: str) -> Path:
    """Move a damaged file aside to ``<name>.corrupt`` (``.corrupt.1``, … if taken), logged; the new path."""
    path = Path(path)
    target = path.with_name(path.name + ".corrupt")
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt.{n}")
    os.replace(path, target)
    log.warning("%s: %s; moved aside to %s, its stage runs again", path, reason, target.name)
    return target


def read_stage(path: str | os.PathLike, kind: str) -> Result | None:
    """The result file of one stage of a run directory, or None when the stage has to run (again).

    Absent → None. Unreadable, truncated, empty, breaking its schema or holding another kind →
    :func:`quarantine` and None. An incomplete (resumable) file is returned as it is.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        return load_result(path, kind=kind)
    except ResultFileError as exc:
        reason = str(exc).removeprefix(f"{str(path)!r}").lstrip(" :")
        quarantine(path, reason or "unreadable")
        return None


def config_differences(
    have: Mapping[str, Any], want: Mapping[str, Any], ignore: tuple[str, ...] = EXECUTION_KEYS
) -> list[str]:
    """Keys whose values differ between a stored configuration and the wanted one (``ignore`` skipped)."""
    keys = (set(have) | set(want)) - set(ignore)
    return sorted(k for k in keys if have.get(k) != want.get(k))


def version_difference(meta: Mapping[str, Any]) -> str | None:
    """``"made by synchrogap X, this is Y"`` when the file's package version is not the running one."""
    have = (meta.get("versions") or {}).get("synchrogap")
    want = package_versions().get("synchrogap")
    if have == want:
        return None
    return f"made by synchrogap {have}, this is {want}"


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` files a killed writer left behind (call it while holding the lock)."""
    removed = []
    for p in Path(directory).glob(".*.tmp"):
        if not p.is_file():  # e.g. a training run's temporary checkpoint directory: not ours
            continue
        with contextlib.suppress(OSError):
            p.unlink()
            removed.append(p)
    if removed:
        log.info("removed %d temporary file(s) left by a killed run in %s", len(removed), directory)
    return removed


def check_input(path: str | os.PathLike, kind: str, want: Mapping[str, Any], reader: str) -> Result:
    """A complete ``kind`` file whose stored configuration equals ``want`` in every field given; else a
    :class:`ConfigMismatchError` naming the file, the field and both values (``reader`` says who asks)."""
    result = load_result(path, kind=kind, require_complete=True)
    have = result.meta.get("config", {})
    for field, value in want.items():
        if have.get(field) != value:
            raise ConfigMismatchError(
                f"{str(path)!r} was made with {field} = {have.get(field)!r}, but {reader} needs "
                f"{field} = {value!r}; give a {kind} file made with it"
            )
    return result


def _entries(directory: Path) -> list[str]:
    """What a directory holds besides this package's lock and killed writers' temporaries."""
    return sorted(
        p.name
        for p in directory.iterdir()
        if p.name != LOCK_NAME and not (p.name.startswith(".") and p.name.endswith(".tmp"))
    )


def _listing(names: list[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _ours(path: Path) -> bool:
    """Whether a file provably came from synchrogap: a result file, or a report beside its result file."""
    if path.suffix == ".npz":
        try:
            load_result(path)
        except ResultFileError:
            return False
        return True
    if path.name == "compare.md":
        return _ours(path.with_suffix(".npz"))
    return False


def _matches(out: Path, patterns: tuple[str, ...]) -> list[Path]:
    return sorted({p for pat in patterns for p in out.glob(pat) if p.is_file() or p.is_symlink()})


def check_out_dir(out: Path, *, is_run: bool, writes: tuple[str, ...], overwrite: bool, command: str) -> None:
    """Refuse ``--out`` unless it is new, empty or a run of ``command`` (``is_run``); another directory
    only with ``overwrite``, and never when a file the run writes (``writes``: globs relative to ``out``)
    already lies there without having come from synchrogap. Call before anything is written."""
    if not str(out).strip():
        raise UsageError("--out must not be empty; give a directory")
    if not out.exists():
        return
    if not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file; give a directory")
    names = _entries(out)
    if is_run or not names:
        return
    if not overwrite:
        raise UsageError(
            f"--out {str(out)!r} is not empty and is not a `synchrogap {command}` run (it holds "
            f"{_listing(names)}); choose a new or empty directory, or pass --overwrite to write the run "
            "beside those files (none of them is written over)"
        )
    clash = [str(p.relative_to(out)) for p in _matches(out, writes) if not _ours(p)]
    if clash:
        raise UsageError(
            f"--out {str(out)!r} holds {_listing(clash)}, which the run would write over and which "
            "synchrogap did not write; move them away or choose another --out"
        )


def check_out_file(out: Path, overwrite: bool) -> None:
    """``--out`` of a command writing one result file: not empty, not a directory, and with ``overwrite``
    never a file that is not a synchrogap result (without it, resuming refuses such a file by name)."""
    if not str(out).strip():
        raise UsageError("--out must not be empty; give a result file path (.npz)")
    if out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a directory; give a result file path (.npz)")
    if overwrite and out.exists() and not _ours(out):
        raise UsageError(
            f"--out {str(out)!r} exists and is not a synchrogap result file; refusing to write over it "
            "even with --overwrite (move it away or choose another --out)"
        )


def start_over(out: Path, writes: tuple[str, ...]) -> list[Path]:
    """``--overwrite``: delete every file of an old run (``writes``, globs relative to ``out``) before the
    first stage, so that none of its arrays, figures or tables survives beside the new run's. Call under
    the run's lock, after :func:`check_out_dir`."""
    removed = []
    for p in _matches(out, writes):
        p.unlink()
        removed.append(p)
    if removed:
        log.info("--overwrite: removed %d file(s) of the previous run in %s", len(removed), out)
    return removed

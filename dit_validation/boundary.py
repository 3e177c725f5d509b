"""One error boundary for every entry point: ``synchrogap <cmd>``, ``python -m paper_figs.*``,
``python -m dit_validation.theory_run``.

* A user error — a bad option, a missing or wrong file, a path, a device, a full disk — is one line
  ``<prog>: error: <message>`` naming the parameter or file, the value and what is allowed, exit status 2.
  ``--debug`` shows the traceback as well.
* Ctrl-C (SIGINT) prints one line, ``interrupted after N of M units; re-run the same command to resume``,
  and exits with 130. Long loops report their units through :data:`units`.
* Anything else is a bug and keeps its traceback.

Test hook (fault injection, never set outside tests): ``$SYNCHROGAP_TEST_KILL_AT=<stage>:<k>`` makes the
process SIGKILL itself once ``k`` units of the named stage of ``synchrogap reproduce`` have finished —
``k`` counts the units the stage resumed as well, ``k = 0`` kills as the stage starts — after printing one
line saying so on stderr; ``<stage>:<k>@<rank>`` fires only in that rank of a ``torchrun`` job (``$RANK``).
It is read in one place, :meth:`UnitCounter._kill_point`, so a test can land a kill inside a chosen stage
on any machine at any load instead of guessing a wall-clock delay.

In a job of several ranks (:mod:`dit_validation.distributed`) rank 0 speaks for the job: a user error that
every rank meets alike (an option, before the ranks have joined) and the Ctrl-C line are printed by rank 0
only; once :func:`join_job` has been called, every rank's own errors name their rank.

torch-free, so that figure commands stay light.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence

__all__ = [
    "UsageError",
    "ReportedError",
    "UnitCounter",
    "units",
    "guarded",
    "user_error_message",
    "EXIT_USAGE",
    "EXIT_INTERRUPTED",
    "KILL_ENV",
    "join_job",
]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

log = logging.getLogger(__name__)

#: The fault-injection test hook (module docstring): ``<stage>:<k>``.
KILL_ENV = "SYNCHROGAP_TEST_KILL_AT"


class UsageError(Exception):
    """A user error; its message names the parameter or file, the value and what is allowed."""


class ReportedError(Exception):
    """A failure whose details (traceback included) were already logged; reported in one line, exit 1."""


class UnitCounter:
    """Units of work done so far in this process, for the one-line interrupt message.

    A unit is the smallest piece of work a re-run does not repeat (a Protocol I (g, seed), a Protocol II g,
    a finished stage, a figure). Loops announce their units with :meth:`plan` and count them with
    :meth:`advance`. A command that knows all its stages' units up front (``reproduce``) announces them once
    with :meth:`fixed`, and brackets each stage with :meth:`stage` so that the stage's own ``plan`` calls
    do not count twice and its ``advance`` calls stay within its share. ``resumable`` False (``train``)
    makes the interrupt message say that a re-run starts over.
    """

    def __init__(self) -> None:
        self.reset()

    def plan(self, total: int) -> None:
        """Announce ``total`` more units of work (ignored inside :meth:`fixed`)."""
        if not self._fixed and not self._muted:
            self.total += int(total)

    def advance(self, n: int = 1) -> None:
        if self._muted:
            return
        self.done += int(n)
        if self._ceiling is not None:
            self.done = min(self.done, self._ceiling)
        self._stage_units += int(n)
        self._kill_point()

    def reset(self) -> None:
        self.done = self.total = 0
        self.resumable = True
        self._fixed = False
        self._ceiling: int | None = None
        self._stage_name: str | None = None
        self._stage_units = 0
        self._muted = 0

    def _kill_point(self) -> None:
        """The test hook of the module docstring: SIGKILL once ``k`` units of the named stage are done."""
        target = os.environ.get(KILL_ENV)
        if not target or self._stage_name is None:
            return
        spec, _, rank = target.partition("@")
        stage, _, k = spec.partition(":")
        if rank and rank != os.environ.get("RANK", "0"):
            return
        if stage == self._stage_name and self._stage_units >= int(k or 0):
            print(
                f"test hook {KILL_ENV}={target}: SIGKILL after {self._stage_units} unit(s) of stage {stage}",
                file=sys.stderr,
                flush=True,
            )
            os.kill(os.getpid(), signal.SIGKILL)

    @contextlib.contextmanager
    def fixed(self, total: int) -> Iterator[None]:
        """Announce every unit of a command at once; nested ``plan`` calls are ignored inside."""
        self.total += int(total)
        self._fixed = True
        try:
            yield
        finally:
            self._fixed = False

    @contextlib.contextmanager
    def muted(self) -> Iterator[None]:
        """Nothing inside counts: a stage function entered again by one process (the next phase of a stage
        on a rank of a job) would announce and count its resumed units a second time; the caller counts
        what the call newly finished."""
        self._muted += 1
        try:
            yield
        finally:
            self._muted -= 1

    @contextlib.contextmanager
    def stage(self, n: int, name: str | None = None) -> Iterator[None]:
        """One stage worth ``n`` units: counted done when the block finishes, however its loops count.

        ``name`` (given when the stage really runs, not when it is skipped) is what the test hook matches.
        """
        start, outer = self.done, self._ceiling
        self._ceiling = start + int(n)
        self._stage_name, self._stage_units = name, 0
        self._kill_point()
        try:
            yield
            self.done = start + int(n)
        finally:
            self._ceiling = outer
            self._stage_name = None

    def message(self) -> str:
        """``interrupted after N of M units; …`` (the boundary's Ctrl-C line)."""
        done = f"after {self.done} of {self.total} units" if self.total else "before any unit finished"
        if not self.resumable:
            return f"interrupted {done}; nothing was saved, re-run the same command to start again"
        return f"interrupted {done}; re-run the same command to resume"


#: The process-wide counter the stages report to.
units = UnitCounter()

#: This process's place in a job of several ranks: (rank, size, joined), from ``$RANK``/``$WORLD_SIZE``
#: until :func:`join_job` confirms them.
_JOB = {"rank": 0, "size": 1, "joined": False}


def join_job(rank: int, size: int) -> None:
    """Called once this process has joined a job of ``size`` ranks: its errors now name its rank."""
    _JOB.update(rank=int(rank), size=int(size), joined=True)


def _job() -> tuple[int, int, bool]:
    if _JOB["joined"]:
        return _JOB["rank"], _JOB["size"], True
    try:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")), False
    except ValueError:
        return 0, 1, False


_DISK_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded"}


def user_error_message(exc: BaseException) -> str | None:
    """The one-line message of a user error, or None when ``exc`` is a bug."""
    from .results import ConfigMismatchError, ResultFileError  # torch-free

    if isinstance(exc, (UsageError, ResultFileError, ConfigMismatchError)):
        return str(exc)
    name = type(exc).__name__
    if name == "ModelNotFoundError":  # dit_validation.models (not imported here: it loads torch)
        return str(exc).splitlines()[0]
    if name == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
        return "the device ran out of memory; lower --batch-size (or use --dtype bfloat16)"
    if isinstance(exc, OSError):
        where = f" {exc.filename!r}" if getattr(exc, "filename", None) else ""
        if exc.errno in _DISK_ERRNOS:
            return f"cannot write{where}: {_DISK_ERRNOS[exc.errno]}"
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"cannot write{where}: permission denied (read-only or not yours); choose another --out"
        if exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
            return f"{where.strip() or 'a path'} is in the way: {exc.strerror}; choose another --out"
        if exc.errno == errno.ENOENT:
            return f"no such file or directory:{where}"
    return None


def guarded(main: Callable[[Sequence[str] | None], int], prog: str) -> Callable[[Sequence[str] | None], int]:
    """Wrap an entry point ``main(argv) -> exit code`` in the boundary (see the module docstring)."""

    def run(argv: Sequence[str] | None = None) -> int:
        args = list(sys.argv[1:] if argv is None else argv)
        debug = "--debug" in args
        if debug:
            args.remove("--debug")
        units.reset()
        try:
            return _answer(main, args, prog, debug)
        finally:
            if _JOB["joined"]:  # the job's command has answered: a stop signal now just ends the process
                signal.signal(signal.SIGTERM, signal.SIG_DFL)

    run.__doc__ = main.__doc__
    return run


def _answer(main: Callable[[Sequence[str] | None], int], args: list[str], prog: str, debug: bool) -> int:
    """Run ``main`` and turn what it raises into the boundary's one line and exit status."""
    try:
        return int(main(args) or 0)
    except KeyboardInterrupt as exc:
        rank, _, _ = _job()
        if debug:
            log.error("traceback of the interrupt", exc_info=exc)
        if rank == 0:  # one line for the job (torchrun stops every rank when one fails)
            print(f"{_name(prog)}: {units.message()}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit:
        raise
    except ReportedError as exc:
        print(f"{_name(prog)}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BaseException as exc:
        msg = user_error_message(exc)
        if msg is None:
            raise
        rank, size, joined = _job()
        if size > 1 and rank != 0 and not joined:  # an option error: rank 0 says it for the job
            return EXIT_USAGE
        if debug:
            log.error("traceback of the error below", exc_info=exc)
        print(f"{_name(prog)}: error: {msg}", file=sys.stderr)
        return EXIT_USAGE


def _name(prog: str) -> str:
    """``synchrogap``, or ``synchrogap [rank 1 of 4]`` inside a job of several ranks."""
    rank, size, joined = _job()
    return f"{prog} [rank {rank} of {size}]" if joined and size > 1 else prog

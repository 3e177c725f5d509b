"""One command on every rank of a ``torchrun`` job: ``torchrun --nproc_per_node N -m dit_validation.cli …``.

``torchrun`` (or SLURM through it) starts one process per GPU and describes the job in the environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``); :func:`setup` joins it with
``torch.distributed``: gloo on the CPU, ``cpu:gloo,cuda:nccl`` on GPUs with rank r on ``cuda:LOCAL_RANK``.
Without those variables (or with ``WORLD_SIZE`` 1) nothing is initialised and every command runs as it
always has: :func:`world` is rank 0 of 1 and :func:`run_stage` calls the stage once, for every unit.

How a job runs a stage (:func:`run_stage`): rank 0 merges what a killed job left (``<stage>.npz.parts/``),
every rank reads the same stage file after a barrier, each computes its share of the units that are not
done (a deterministic round robin, :class:`~dit_validation.shards.UnitShare`) and writes each finished unit
as a part; after a barrier rank 0 merges the parts into the stage file, and once every unit is in it, runs
the stage once more to write the summaries (a resume with nothing left to do). Units that later units
need (compare's branch directions, the γ fit of its first block unit) run as earlier phases, each closed
by a barrier; a phase of one unit runs on rank 0, which writes the stage file itself. The data move
through files, never through the process group, which carries only barriers and small status objects on
gloo (a separate gloo group on GPUs), so a stage's arrays are the single process's bytes.

The rules of one job:

* one run lock for the whole job, held by rank 0 (:func:`job_lock`); the other ranks start writing only
  once rank 0 holds it, and stop quietly when rank 0 was refused it (rank 0 says why);
* progress, logs and the summary from rank 0 only; the other ranks log warnings, prefixed by their rank;
* a rank whose unit fails logs the rank, stage and unit and exits; ``torchrun`` then stops the other
  ranks (SIGTERM, which they treat as Ctrl-C: locks released, rank 0 says how much a re-run resumes);
  launched otherwise, they fail at their next barrier with one line (:class:`PeerLost`). Every finished
  unit is on disk: the same command resumes it, on the same or another number of ranks.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from ._logging import OUR_PACKAGES
from .boundary import EXIT_USAGE, ReportedError, UsageError, join_job, units
from .rundir import run_lock
from .shards import UnitShare, merge_parts, parts_dir, remove_parts

__all__ = [
    "World",
    "PeerLost",
    "SYNC_TIMEOUT",
    "world",
    "setup",
    "barrier",
    "gather",
    "broadcast",
    "sum_counts",
    "job_lock",
    "on_rank0",
    "first_on_rank0",
    "run_stage",
]

log = logging.getLogger(__name__)

#: How long a rank waits at a barrier for the others. Rank 0 alone writes a stage's summaries (Protocol I's
#: bootstrap fits) and runs its shared units (compare's branch directions) while the others wait, and
#: ``--wait`` queues the whole job behind another run; a rank that dies is noticed at once (its sockets
#: close), so the limit only bounds a rank that hangs.
SYNC_TIMEOUT = timedelta(hours=12)


@dataclass(frozen=True)
class World:
    """This process's place in the job: rank ``rank`` of ``size``, on the node's GPU ``local_rank``."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


_WORLD = World()
_GROUP: Any = None  # the gloo group of the barriers (None: the default group, gloo on the CPU)


class PeerLost(ReportedError):
    """Another rank of the job died or stopped while this one waited for it (one line, exit 1)."""


def world() -> World:
    """The job this process belongs to (rank 0 of 1 without ``torchrun``)."""
    return _WORLD


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"${name} must be an integer (set by torchrun), got {value!r}") from None


def setup(device: str | None) -> str | None:
    """Join the ``torchrun`` job of the environment, if there is one of several ranks; returns the device
    this rank uses (``--device cuda`` or the CUDA default → ``cuda:$LOCAL_RANK``; else ``device``)."""
    global _WORLD, _GROUP
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1 or _WORLD.distributed:
        return device
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < size:
        raise UsageError(f"$RANK must lie in [0, {size - 1}] ($WORLD_SIZE {size}), got {rank}")
    import torch
    import torch.distributed as dist

    name = device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = name.startswith("cuda")
    if cuda and name != "cuda":  # the same on every rank: refused before the ranks join (rank 0 says it)
        raise UsageError(
            f"--device {name}: under torchrun each rank uses cuda:$LOCAL_RANK; give --device cuda"
        )
    if cuda and not torch.cuda.is_available():
        raise UsageError(f"--device {name} requested but CUDA is not available here; use --device cpu")
    join_job(rank, size)
    if cuda:
        if local >= torch.cuda.device_count():
            raise UsageError(
                f"$LOCAL_RANK {local} but this node has {torch.cuda.device_count()} GPU(s): give torchrun "
                "--nproc_per_node at most the node's GPU count"
            )
        torch.cuda.set_device(local)
        name = f"cuda:{local}"
    try:
        dist.init_process_group(
            "cpu:gloo,cuda:nccl" if cuda else "gloo", rank=rank, world_size=size, timeout=SYNC_TIMEOUT
        )
        _GROUP = dist.new_group(backend="gloo", timeout=SYNC_TIMEOUT) if cuda else None
    except (RuntimeError, ValueError) as exc:
        raise UsageError(
            f"rank {rank} of {size} could not join the torchrun job: {str(exc).splitlines()[0]}"
        ) from None
    _WORLD = World(rank, size, local)
    signal.signal(signal.SIGTERM, _stopped)
    atexit.register(_leave)
    if rank != 0:  # rank 0 speaks for the job; the others only warn, and say who they are
        for pkg in OUR_PACKAGES:
            logging.getLogger(pkg).setLevel(logging.WARNING)
        for handler in logging.getLogger().handlers:
            fmt = getattr(handler.formatter, "_fmt", None) or "%(message)s"
            handler.setFormatter(logging.Formatter(f"[rank {rank}] {fmt}"))
    log.info("joined a job of %d ranks (%s backend) on %s", size, "nccl + gloo" if cuda else "gloo", name)
    return name


def _stopped(signum: int, frame: Any) -> None:
    """SIGTERM (torchrun stopping the job because a rank failed, or a cancelled SLURM job): handled like
    Ctrl-C, so that locks are released and rank 0 says how much a re-run resumes; a second one kills."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise KeyboardInterrupt


def _leave() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    import torch.distributed as dist

    with contextlib.suppress(Exception):
        if dist.is_initialized():
            dist.destroy_process_group()


@contextlib.contextmanager
def _collective(what: str) -> Iterator[None]:
    try:
        yield
    except RuntimeError as exc:  # gloo: "Connection reset by peer" and the like, as soon as a rank dies
        raise PeerLost(
            f"lost contact with another rank {what} (it failed or was stopped; torchrun's report names "
            "it); every finished unit is kept: re-run the same command to resume"
        ) from exc


def barrier(what: str) -> None:
    """Wait until every rank gets here (nothing without a job)."""
    if not _WORLD.distributed:
        return
    import torch.distributed as dist

    with _collective(what):
        dist.barrier(group=_GROUP)


def gather(obj: Any, what: str) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not _WORLD.distributed:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * _WORLD.size
    with _collective(what):
        dist.all_gather_object(out, obj, group=_GROUP)
    return out


def broadcast(obj: Any, what: str) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not _WORLD.distributed:
        return obj
    import torch.distributed as dist

    box = [obj]
    with _collective(what):
        dist.broadcast_object_list(box, src=0, group=_GROUP)
    return box[0]


def sum_counts(counts: Counter, what: str) -> Counter:
    """A tally (image-forwards by dtype) summed over the ranks."""
    return sum((Counter(c) for c in gather(dict(counts), what)), Counter())


@contextlib.contextmanager
def job_lock(path: str | os.PathLike, wait: bool = False) -> Iterator[None]:
    """:func:`~dit_validation.rundir.run_lock` held once for the whole job, by rank 0; the other ranks go
    on only once it is held, and stop quietly (exit 2) when rank 0 was refused it."""
    if not _WORLD.distributed:
        with run_lock(path, wait=wait):
            yield
        return
    with contextlib.ExitStack() as stack:
        if _WORLD.rank == 0:
            try:
                stack.enter_context(run_lock(path, wait=wait))
            except BaseException:
                broadcast(False, "while rank 0 took the run lock")
                raise
            broadcast(True, "while rank 0 took the run lock")
        elif not broadcast(None, "while rank 0 took the run lock"):
            raise SystemExit(EXIT_USAGE)  # rank 0 prints why
        yield


def on_rank0(fn: Callable[[], Any]) -> Any:
    """``fn()`` on rank 0 only (writes the others must see), then a barrier; its result on rank 0."""
    out = fn() if _WORLD.rank == 0 else None
    barrier(f"after rank 0's {getattr(fn, '__name__', 'step')}")
    return out


def first_on_rank0(fn: Callable[[], Any]) -> Any:
    """``fn()`` on rank 0, then on the others (e.g. reading stage files, which moves damaged ones aside
    once); nobody goes on before every rank has run it."""
    out = fn() if _WORLD.rank == 0 else None
    barrier("while rank 0 reads the run's files")
    if _WORLD.rank != 0:
        out = fn()
    barrier("while the other ranks read the run's files")
    return out


def run_stage(
    path: str | os.PathLike,
    compute: Callable[[UnitShare], Any],
    *,
    phases: Sequence[frozenset[str] | None] = (None,),
    overwrite: bool = False,
) -> Path:
    """Run (or resume) one resumable stage writing ``path`` on every rank of the job (module docstring).

    ``compute(share)`` calls the stage function with that share (and ``overwrite=False``: ``overwrite``
    here deletes the old file and parts first, on rank 0). ``phases``: the units in dependency order
    (None: every unit). Returns ``path`` on every rank once its final file is written.
    """
    path = Path(path)
    w = _WORLD
    if w.rank == 0:
        if overwrite:
            path.unlink(missing_ok=True)
            remove_parts(path)
        merge_parts(path)  # what a killed job finished, also when resumed without torchrun
    if not w.distributed:
        compute(UnitShare())
        return path
    barrier(f"before {path.name}")
    calls = 0

    def call(share: UnitShare) -> None:
        nonlocal calls
        try:
            if calls == 0:
                compute(share)
            else:  # a later phase: its resumed units were counted by the first call
                with units.muted():
                    compute(share)
                units.advance(share.finished)
        except Exception:
            log.error(
                "rank %d of %d failed in %s, unit %s", w.rank, w.size, path.name, share.current or "(none)"
            )
            raise
        calls += 1

    for phase in phases:
        if phase is not None and len(phase) == 1:  # a shared unit the others need: rank 0 writes it
            if w.rank == 0:
                call(UnitShare(only=phase, finalizes=False))
        else:
            call(UnitShare(only=phase, rank=w.rank, size=w.size, parts=parts_dir(path), finalizes=False))
        barrier(f"in {path.name} (every rank's units of this phase on disk)")
        if w.rank == 0:
            merge_parts(path)
        barrier(f"in {path.name} (parts merged)")
    if w.rank == 0:
        call(UnitShare())  # every unit is done: the summaries, once
    barrier(f"after {path.name}")
    return path

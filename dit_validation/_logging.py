"""One logging set-up for every command, and the progress bars of every long loop.

Our packages talk at INFO, third-party libraries only warn. Log records go through ``tqdm.write`` so that
a line never lands inside a progress bar (``[AINFO …``). Progress bars (:func:`progress`) are drawn only
when stderr is a terminal: a log file or a pipe gets the log lines alone.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

__all__ = ["OUR_PACKAGES", "configure_logging", "progress", "progress_enabled", "TqdmHandler"]

OUR_PACKAGES = ("theory", "dit_validation", "paper_figs")
FORMAT = "%(levelname)s %(name)s: %(message)s"

T = TypeVar("T")


class TqdmHandler(logging.Handler):
    """Writes records to the current ``sys.stderr`` through ``tqdm.write``, so open bars are redrawn below."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def configure_logging(quiet: bool = False) -> None:
    """Root handler at WARNING through :class:`TqdmHandler`; our packages at INFO unless ``quiet``.

    Matplotlib's PDF backend (fontTools) and diffusers log at INFO/WARNING by default; at the root level
    they would bury the run's own messages, so only their warnings (and diffusers' errors) get through.
    Calling it again (a second command in one process) changes the levels and adds no second handler.
    """
    root = logging.getLogger()
    if not any(isinstance(h, TqdmHandler) for h in root.handlers):
        handler = TqdmHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        # replace a plain stderr handler (logging.basicConfig's); keep others (files, pytest's capture)
        for h in list(root.handlers):
            if type(h) is logging.StreamHandler and h.stream in (sys.stderr, sys.__stderr__):
                root.removeHandler(h)
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in OUR_PACKAGES:
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.INFO)
    # diffusers warns on every from_pretrained without `accelerate` and on dtype casts we do on purpose;
    # it reads DIFFUSERS_VERBOSITY when first imported, so figure commands never have to import it here
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    if "diffusers" in sys.modules:
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.set_verbosity_error()


def progress_enabled(requested: bool = True) -> bool:
    """Progress bars only when asked for and stderr is a terminal (never in log files or pipes)."""
    return bool(requested) and sys.stderr.isatty()


def progress(iterable: Iterable[T] | None = None, *, desc: str, enabled: bool = True, **kw: Any) -> tqdm:
    """A tqdm bar on stderr for a long loop, drawn only when :func:`progress_enabled`.

    ``for x in progress(items, desc="compare: clones", enabled=show):`` or, for manual updates,
    ``with progress(total=n, desc=...) as bar: bar.update()``. Extra keywords go to tqdm.
    """
    kw.setdefault("dynamic_ncols", True)
    return tqdm(iterable, desc=desc, disable=not progress_enabled(enabled), file=sys.stderr, **kw)

"""One shared figure style for every paper figure, plus the small I/O helpers they share.

Figures are PNG (for the README); PDF (for papers) is added inside :func:`formats` — ``reproduce --full``
and ``--pdf`` on any command (a PDF costs most of a figure's time). They are built as bare
``matplotlib.figure.Figure`` objects, never through pyplot, so rendering works headless and never
touches the caller's backend or global rcParams (importing this from a notebook keeps inline plots);
the shared style is applied by :func:`styled` around each ``render``, which also makes :func:`load` refuse
a result file of another kind than the one the figure reads (``paper_figs.FIGURES``) or an unfinished one.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

from dit_validation._logging import configure_logging
from dit_validation.boundary import UsageError, guarded, units
from dit_validation.fits import sigmoid as _sigmoid
from dit_validation.results import Result, load_result, naming

from . import FIGURES

log = logging.getLogger(__name__)

# Colours fixed per role so lead/trail, global/local, theory/measured read the same in every figure.
COLORS: dict[str, str] = {
    "lead": "#1f77b4",  # leading (global, coarse) band
    "trail": "#d62728",  # trailing (local, fine) band
    "low": "#1f77b4",  # d_low, eq. (71)
    "high": "#d62728",  # d_high, eq. (72)
    "data": "#333333",
    "fit": "#ff7f0e",
    "tau": "#2ca02c",
    "theory": "#9467bd",
    "exact": "#8c564b",
    "dit": "#17becf",
}

RC: dict[str, Any] = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 7.5,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,  # editable text in the PDF
    "axes.formatter.useoffset": False,  # ratios near 1 read as 0.998, not "1e-3 + 9.98e-1"
}


#: File formats :func:`save` writes; PNG unless inside :func:`formats`.
_FORMATS: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("figure_formats", default=("png",))
#: The result kind the running renderer reads (set by :func:`styled` from ``paper_figs.FIGURES``).
_KIND: contextvars.ContextVar[str | None] = contextvars.ContextVar("figure_kind", default=None)


@contextlib.contextmanager
def formats(*names: str) -> Iterator[None]:
    """Write every figure saved inside the block in these formats, e.g. ``formats("png", "pdf")``."""
    bad = [n for n in names if n not in ("png", "pdf", "svg")]
    if bad or not names:
        raise ValueError(f"figure formats must be among png, pdf, svg, got {list(names)}")
    token = _FORMATS.set(tuple(names))
    try:
        yield
    finally:
        _FORMATS.reset(token)


def load(path: str | Path, kind: str | None = None) -> Result:
    """Read and validate a finished result file (``meta, arrays``) through the package's one reader.

    ``kind`` defaults to the kind the running renderer reads, so a figure never draws another kind's file;
    an unfinished (killed) run is refused with its path named.
    """
    return load_result(path, kind=kind or _KIND.get(), require_complete=True)


def model_name(meta: Mapping[str, Any], default: str = "model") -> str:
    """Model name for titles, from ``meta["config"]["model"]`` (a path or hub id is shortened)."""
    config = meta.get("config") or {}
    name = str(config.get("model") or config.get("model_name") or default)
    return Path(name).name if ("/" in name or "\\" in name) else name


def g_label(g: float) -> str:
    """File-name-safe label of a coupling strength, e.g. ``g0.30``."""
    return f"g{float(g):.2f}"


def _module_of(render: Callable[..., Any]) -> str:
    """``render``'s module name, also when it runs as ``python -m paper_figs.<name>`` (``__main__``)."""
    module = render.__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec is not None else module
    return module


def figure_kind(render: Callable[..., Any]) -> str | None:
    """The result kind ``paper_figs.FIGURES`` lists for ``render``'s module."""
    return FIGURES.get(_module_of(render).rsplit(".", 1)[-1])


def styled(render: Callable[..., list[Path]]) -> Callable[..., list[Path]]:
    """Run ``render`` inside the shared style (rcParams are read when artists are created), reading the
    result kind ``paper_figs.FIGURES`` lists for its module."""
    kind = figure_kind(render)

    @functools.wraps(render)
    def wrapper(*args: Any, **kwargs: Any) -> list[Path]:
        token = _KIND.set(kind)
        try:
            with mpl.rc_context(RC):
                return render(*args, **kwargs)
        finally:
            _KIND.reset(token)

    return wrapper


def grid_shape(n: int, max_cols: int = 3) -> tuple[int, int]:
    """(rows, cols) for ``n`` panels: between ⌈√n⌉ and ``max_cols + 1`` columns, fewest empty slots first,
    then fewer columns (an empty slot, if any, takes the shared legend: :func:`legend_in_spare`)."""
    lo = min(n, max(1, int(np.ceil(np.sqrt(n)))))
    cols = range(lo, max(lo, min(n, max_cols + 1)) + 1)
    c = min(cols, key=lambda c: (-(-n // c) * c - n, c))
    return -(-n // c), c


def subplots(n: int, *, ncols: int = 3, panel: tuple[float, float] = (3.4, 2.6)) -> tuple[Figure, np.ndarray]:
    """A grid of ``n`` panels (:func:`grid_shape`), returned as a flat array of the ``n`` axes.

    Slots left over are hidden; :func:`legend_in_spare` puts a shared legend into the first of them, so a
    figure has no empty slot.
    """
    nrows, ncols = grid_shape(n, ncols)
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")  # no pyplot state
    axes = fig.subplots(nrows, ncols, squeeze=False)
    flat = axes.ravel()
    for ax in flat[n:]:
        ax.set_visible(False)
    fig._synchrogap_spare = list(flat[n:])  # type: ignore[attr-defined]
    return fig, flat[:n]


def legend_in_spare(fig: Figure, handles: Sequence[Any], labels: Sequence[str], **kw: Any) -> bool:
    """Draw a legend in the figure's first spare grid slot (if any); True when it did."""
    spare = getattr(fig, "_synchrogap_spare", [])
    if not spare or not handles:
        return False
    ax = spare[0]
    ax.set_visible(True)
    ax.axis("off")
    ax.legend(handles, labels, loc="center", frameon=False, **kw)
    return True


def save(fig: Figure, out_dir: str | Path, stem: str) -> list[Path]:
    """Write ``stem.png`` (and ``stem.pdf`` inside :func:`formats`) into ``out_dir``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.{ext}" for ext in _FORMATS.get()]
    for p in paths:
        with naming(p):  # a full disk fails inside savefig's writes, naming no file
            fig.savefig(p)  # a pyplot-free Figure is freed with its last reference: nothing to close
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    return paths


def fit_curve(t: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Draw a stored fit (``fit_*`` arrays: lo, hi, center, width) with the package's one sigmoid."""
    return _sigmoid(t, *(float(x) for x in np.asarray(params, dtype=np.float64)))


def no_prediction(ax: Any, text: str = "no finite prediction") -> None:
    """Mark a panel whose quantity is undefined everywhere, instead of drawing overplotted placeholders."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def main_for(render: Any, description: str, argv: list[str] | None = None) -> int:
    """Shared ``__main__``: ``python -m paper_figs.<name> RESULT [RESULT ...] --out DIR``, in the boundary."""
    prog = f"python -m {_module_of(render)}"
    return guarded(lambda args: _main(render, description, prog, args), prog)(argv)


def _main(render: Any, description: str, prog: str, argv: list[str] | None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("results", nargs="+", type=Path, help="result file(s) (.npz) to read")
    parser.add_argument("--out", type=str, default="figures", help="output directory (default: figures)")
    parser.add_argument("--pdf", action="store_true", help="also write a PDF of every figure (slower)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    args = parser.parse_args(argv)
    if not args.out.strip():  # Path("") would be the current directory
        raise UsageError("--out must not be empty; give a directory")
    args.out = Path(args.out)
    configure_logging()
    kind = figure_kind(render)
    for path in args.results:  # every input checked before anything is written
        load_result(path, kind=kind, require_complete=True)
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {str(args.out)!r} is a file; give a directory")
    units.plan(len(args.results))
    with formats(*(("png", "pdf") if args.pdf else ("png",))):
        for path in args.results:
            for p in render(path, args.out):
                print(p)
            units.advance()
    return 0

"""One shared figure style for every paper figure, plus the small I/O helpers they share.

Figures are PNG (for the README) and PDF (for papers). They are built as bare
``matplotlib.figure.Figure`` objects, never through pyplot, so rendering works headless and never
touches the caller's backend or global rcParams (importing this from a notebook keeps inline plots);
the shared style is applied by :func:`styled` around each ``render``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

from dit_validation._logging import configure_logging
from dit_validation.boundary import guarded
from dit_validation.fits import sigmoid as _sigmoid
from dit_validation.results import Result, load_result

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


def load(path: str | Path, kind: str | None = None) -> Result:
    """Read and validate a result file (``meta, arrays``) through the package's one reader."""
    return load_result(path, kind=kind)


def model_name(meta: Mapping[str, Any], default: str = "model") -> str:
    """Model name for titles, from ``meta["config"]["model"]`` (a path or hub id is shortened)."""
    config = meta.get("config") or {}
    name = str(config.get("model") or config.get("model_name") or default)
    return Path(name).name if ("/" in name or "\\" in name) else name


def g_label(g: float) -> str:
    """File-name-safe label of a coupling strength, e.g. ``g0.30``."""
    return f"g{float(g):.2f}"


def styled(render: Callable[..., list[Path]]) -> Callable[..., list[Path]]:
    """Run ``render`` inside the shared style (rcParams are read when artists are created)."""

    @functools.wraps(render)
    def wrapper(*args: Any, **kwargs: Any) -> list[Path]:
        with mpl.rc_context(RC):
            return render(*args, **kwargs)

    return wrapper


def subplots(n: int, *, ncols: int = 3, panel: tuple[float, float] = (3.4, 2.6)) -> tuple[Figure, np.ndarray]:
    """A grid of ``n`` panels (extra axes hidden), returned as a flat array of axes."""
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")  # no pyplot state
    axes = fig.subplots(nrows, ncols, squeeze=False)
    flat = axes.ravel()
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def save(fig: Figure, out_dir: str | Path, stem: str) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` into ``out_dir``; return both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    for p in paths:
        fig.savefig(p)  # a pyplot-free Figure is freed with its last reference: nothing to close
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    return paths


def fit_curve(t: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Draw a stored fit (``fit_*`` arrays: lo, hi, center, width) with the package's one sigmoid."""
    return _sigmoid(t, *(float(x) for x in np.asarray(params, dtype=np.float64)))


def main_for(render: Any, description: str, argv: list[str] | None = None) -> int:
    """Shared ``__main__``: ``python -m paper_figs.<name> RESULT [RESULT ...] --out DIR``, in the boundary."""
    prog = f"python -m {render.__module__}"
    return guarded(lambda args: _main(render, description, prog, args), prog)(argv)


def _main(render: Any, description: str, prog: str, argv: list[str] | None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("results", nargs="+", type=Path, help="result file(s) (.npz) to read")
    parser.add_argument(
        "--out", type=Path, default=Path("figures"), help="output directory (default: figures)"
    )
    args = parser.parse_args(argv)
    configure_logging()
    paths = render(*args.results, args.out)
    for p in paths:
        print(p)
    return 0

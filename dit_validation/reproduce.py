"""``synchrogap reproduce``: the paper's figures and tables from one command (the main job).

Stages, each writing one result file into ``--out`` (docs/DESIGN.md contract), then figures:

1. ``theory.npz``    — pitchfork u*(κ) (eq. 49), ρ(g), ξ(g) (eq. 27)         (:mod:`.theory_run`)
2. ``protocol1.npz`` — τ_spec(g), τ_g, τ_l, Δτ (§3.1, eq. 70–73), Figs. 2–8, Table 1
3. ``protocol2.npz`` — lead/trail energies at s = τ_spec(g) (§3.2, eq. 75–80), Figs. 1, 9, 10
4. ``compare.npz``   — predicted vs measured speciation along branch directions, at every g
5. ``theory.npz``    — rewritten with the predicted κ_{v,k}(s, ℓ; g) maps from ``compare.npz``
6. ``figures/``      — every ``paper_figs`` renderer on the files above (PNG + PDF, CSV + Markdown)

It is thin: every number comes from the protocols', compare's and theory_run's Python APIs; this
module only chooses the grids (``quick`` or the paper's ``full``), skips finished stages and prints
a one-screen summary. Re-running after a kill resumes: a stage whose file is complete is skipped and
the protocols resume an incomplete file per unit. ``reproduce.json`` in ``--out`` records the plan;
a rerun with a different plan refuses (use another ``--out`` or ``--overwrite``).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from paper_figs import FIGURES
from theory import rho as theory_rho

from . import compare as compare_mod
from .analysis import deep_layer_count
from .boundary import ReportedError
from .compare_report import summary_lines
from .grids import (
    FIGURE_G,
    PAPER_G,
    PROTOCOL1_G,
    QUICK_BOOT,
    QUICK_G,
    QUICK_SEEDS,
    QUICK_STEPS,
    QUICK_T_INT_STRIDE,
)
from .models import resolve_model
from .protocol1 import Protocol1Config, run_protocol1, table1
from .protocol2 import Protocol2Config, run_protocol2
from .results import load_result, normalize_config
from .theory_run import TheoryRunConfig, run_theory

logger = logging.getLogger(__name__)

__all__ = ["Grid", "ReproducePlan", "make_plan", "run_reproduce", "summary_text", "default_out"]

Grid = Literal["quick", "full"]


@dataclass(frozen=True)
class ReproducePlan:
    """Every configuration ``reproduce`` runs; stored as ``reproduce.json`` to refuse mixed reruns."""

    model: str
    grid: Grid
    protocol1: Protocol1Config
    protocol2: Protocol2Config
    theory: TheoryRunConfig
    compare: compare_mod.CompareConfig


def make_plan(model: str, grid: Grid, encoder: str | None = None) -> ReproducePlan:
    """The grids of one reproduce run: ``full`` is the paper's, ``quick`` a CPU-minutes subset."""
    if grid == "full":
        p1 = Protocol1Config(g=PROTOCOL1_G, encoder=encoder)  # defaults are the paper's (§4.1)
        p2 = Protocol2Config(g=PAPER_G)  # all layers, 100 steps, M = 32 (§4.2)
    elif grid == "quick":
        t_int = tuple(sorted(set(range(0, QUICK_STEPS + 1, QUICK_T_INT_STRIDE)) | {QUICK_STEPS}))
        p1 = Protocol1Config(
            g=QUICK_G,
            t_int=t_int,
            num_seeds=QUICK_SEEDS,
            num_steps=QUICK_STEPS,
            n_boot=QUICK_BOOT,
            seed_chunk=QUICK_SEEDS,
            encoder=encoder,
        )
        p2 = Protocol2Config(g=FIGURE_G, num_seeds=QUICK_SEEDS, num_steps=QUICK_STEPS)
    else:
        raise ValueError(f"grid must be 'quick' or 'full', got {grid!r}")
    cmp_cfg = compare_mod.FULL if grid == "full" else compare_mod.QUICK
    return ReproducePlan(
        model=model, grid=grid, protocol1=p1, protocol2=p2, theory=TheoryRunConfig(g=PAPER_G), compare=cmp_cfg
    )


def _plan_json(plan: ReproducePlan) -> dict[str, Any]:
    return normalize_config({f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)})


def _check_plan(out: Path, plan: ReproducePlan, overwrite: bool) -> None:
    """Refuse to resume an output directory made with another plan (mixing grids would be silent)."""
    path = out / "reproduce.json"
    want = _plan_json(plan)
    if path.exists() and not overwrite:
        have = json.loads(path.read_text())
        if have != want:
            diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
            raise ValueError(
                f"{str(out)!r} holds a reproduce run with another plan (differs in: {', '.join(diff)}); "
                "use another --out or pass --overwrite"
            )
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(want, indent=1, sort_keys=True))


def _complete(path: Path) -> bool:
    """True when ``path`` is a finished result file (``meta["complete"]``)."""
    if not path.is_file():
        return False
    meta, _ = load_result(path)
    return bool(meta.get("complete"))


def _stage(name: str, path: Path, run: Callable[[], Any], overwrite: bool) -> Path:
    """Run one stage unless its result file is already complete; log its wall time."""
    if _complete(path) and not overwrite:
        logger.info("stage %s: %s is complete, skipped", name, path)
        return path
    start = time.perf_counter()
    logger.info("stage %s: running -> %s", name, path)
    run()
    logger.info("stage %s: done in %.1f s", name, time.perf_counter() - start)
    return path


def render_figures(files: dict[str, Path], fig_dir: Path) -> list[Path]:
    """Every ``paper_figs`` renderer whose result kind is among ``files`` (kind → path)."""
    written: list[Path] = []
    for name, kind in FIGURES.items():
        if kind not in files or not files[kind].is_file():
            logger.warning("figure %s skipped: no %s result file", name, kind)
            continue
        module = importlib.import_module(f"paper_figs.{name}")
        written += module.render(files[kind], fig_dir)
    return written


def run_reproduce(
    model: str = "shipped-default",
    grid: Grid = "quick",
    out_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    overwrite: bool = False,
    encoder: str | None = None,
    batch_size: int | None = None,
    plan: ReproducePlan | None = None,
) -> dict[str, Path]:
    """Run every stage (skipping finished ones) and render all figures; returns kind → result path.

    ``plan`` overrides the grids of :func:`make_plan` (tests use a tiny one). Raises ``RuntimeError``
    naming the stage when a stage is unavailable or fails — after rendering the figures of the stages
    that did run, and never with a faked result file.
    """
    plan = make_plan(model, grid, encoder) if plan is None else plan
    model = plan.model
    if batch_size is not None:
        plan = replace(
            plan,
            protocol1=replace(plan.protocol1, batch_size=batch_size),
            protocol2=replace(plan.protocol2, batch_size=batch_size),
        )
    out = Path(out_dir) if out_dir is not None else default_out(model, grid)
    # first: a missing model leaves no half-made run directory; the bundle is placed on device/dtype here
    bundle = resolve_model(model, dtype=dtype, device=device)
    _check_plan(out, plan, overwrite)
    files = {k: out / f"{k}.npz" for k in ("theory", "protocol1", "protocol2", "compare")}
    kw = {"progress": progress, "overwrite": overwrite}

    _stage(
        "theory",
        files["theory"],
        lambda: run_theory(replace(plan.theory, model=bundle.name), files["theory"]),
        overwrite=True,
    )  # cheap (< 1 s): always rewritten
    _stage(
        "protocol1",
        files["protocol1"],
        lambda: run_protocol1(bundle, plan.protocol1, files["protocol1"], **kw),
        overwrite,
    )
    p2 = replace(plan.protocol2, protocol1_result=str(files["protocol1"]))  # s = τ_spec(g), eq. (77)
    _stage(
        "protocol2",
        files["protocol2"],
        lambda: run_protocol2(bundle, p2, files["protocol2"], **kw),
        overwrite,
    )
    failed: list[str] = []
    try:
        _stage(
            "compare",
            files["compare"],
            lambda: compare_mod.run_compare(bundle, plan.compare, out, model_name=bundle.name),
            overwrite,
        )
    except Exception as exc:  # noqa: BLE001 - logged with its traceback, reported after the figures
        logger.exception("stage compare failed")
        failed.append(f"compare ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
    else:
        _stage(
            "theory_compare",
            files["theory"],
            lambda: run_theory(replace(plan.theory, model=bundle.name), files["theory"], files["compare"]),
            overwrite=True,
        )
    fig_dir = out / "figures"
    written = render_figures({load_result(p)[0]["kind"]: p for p in files.values() if p.is_file()}, fig_dir)
    logger.info("stage figures: %d files in %s", len(written), fig_dir)
    paths = {**files, "figures": fig_dir, "summary": out / "summary.txt"}
    (out / "summary.txt").write_text(summary_text(paths) + "\n")
    if failed:
        # loud, after writing what did run: never a faked result file for a missing stage
        raise ReportedError(
            f"stage(s) failed: {'; '.join(failed)}; the other results and figures are in {out}"
        )
    return paths


def default_out(model: str, grid: Grid) -> Path:
    """``runs/reproduce-<model>-<grid>`` with the model name made path-safe."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(model).name or model)
    return Path("runs") / f"reproduce-{safe}-{grid}"


def _fmt(x: float, nd: int = 1) -> str:
    return f"{x:.{nd}f}" if np.isfinite(x) else "n/a"


def summary_text(files: dict[str, Path]) -> str:
    """One screen: τ_spec(g) with CI and Δτ, where the internal gap lives in depth, collapse vs ρ(g)."""
    lines: list[str] = []
    if files.get("protocol1") and files["protocol1"].is_file():
        meta, a = load_result(files["protocol1"])
        model = meta["config"].get("model", "?")
        lines += [
            f"synchrogap reproduce — {model}, {meta['config'].get('num_steps')} DDIM steps, "
            f"M = {len(meta.get('seeds', []))} seeds",
            "",
            "Protocol I (eq. 70-73): speciation and output-space gap",
            table1(files["protocol1"]),
        ]
    if files.get("protocol2") and files["protocol2"].is_file():
        _, b = load_result(files["protocol2"])
        g, layers, gint = (
            np.asarray(b["g"]),
            np.asarray(b["layers"]),
            np.asarray(b["G_int"], dtype=np.float64),
        )
        lines += ["", "Protocol II (eq. 75-80): internal gap G_int = trail/lead at s = tau_spec(g)"]
        n_deep = deep_layer_count(layers.size)  # §4.2: the gap sits in the final ~5 of 28 blocks
        plural = "s" if n_deep > 1 else ""
        rho = np.atleast_1d(theory_rho(g))  # eq. (27)
        with warnings.catch_warnings():  # all-NaN rows (τ_spec not found) stay NaN without a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            deep = np.nanmean(np.abs(gint[:, -n_deep:] - 1.0), axis=1)
            early = (
                np.nanmean(np.abs(gint[:, :-n_deep] - 1.0), axis=1)
                if layers.size > n_deep
                else np.full(g.size, np.nan)
            )
        for i in range(g.size):
            row = gint[i]
            j = int(np.nanargmax(np.abs(row - 1.0))) if np.any(np.isfinite(row)) else -1
            where = f"largest |G_int-1| at layer {int(layers[j])} ({_fmt(row[j], 2)})" if j >= 0 else "n/a"
            lines.append(
                f"  g={g[i]:4.2f} rho={rho[i]:4.2f}: mean|G_int-1| last {n_deep} layer{plural} "
                f"{_fmt(deep[i], 3)} vs earlier {_fmt(early[i], 3)}; {where}"
            )
        ok = np.isfinite(deep)
        if ok.sum() >= 3 and np.ptp(deep[ok]) > 0:
            r = float(np.corrcoef(rho[ok], deep[ok])[0, 1])
            lines.append(f"  collapse: corr(rho(g), deep |G_int-1|) = {r:+.2f} (eq. 66 predicts > 0)")
    if files.get("compare") and files["compare"].is_file():
        lines += ["", *summary_lines(*load_result(files["compare"], kind="compare"))]
    if files.get("figures"):
        lines += ["", f"figures and tables: {files['figures']}"]
    return "\n".join(lines)

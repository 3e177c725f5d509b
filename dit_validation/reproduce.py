"""``synchrogap reproduce``: the paper's figures and tables from one command (the main job).

Stages, each writing one result file into ``--out`` (docs/DESIGN.md contract), then figures:

1. ``theory.npz``    — pitchfork u*(κ) (eq. 49), ρ(g), ξ(g) (eq. 27)         (:mod:`.theory_run`)
2. ``protocol1.npz`` — τ_spec(g), τ_g, τ_l, Δτ (§3.1, eq. 70–73), Figs. 2–8, Table 1
3. ``protocol2.npz`` — lead/trail energies at s = τ_spec(g) (§3.2, eq. 75–80), Figs. 1, 9, 10
4. ``compare.npz``   — predicted vs measured speciation along branch directions, at every g
5. ``theory.npz``    — rewritten with the predicted κ_{v,k}(s, ℓ; g) maps from ``compare.npz``
6. ``figures/``      — every ``paper_figs`` renderer on the files above (PNG; PDF too under ``--full`` or
   ``--pdf``), CSV + Markdown tables

It is thin: every number comes from the protocols', compare's and theory_run's Python APIs; the grids and
the checks of a directory against them live in :mod:`.reproduce_plan`, the one-screen summary in
:mod:`.summary`; this module decides which stages still have to run and runs them. The rules that keep a
directory honest:

* everything is validated (options, model, every stage's configuration, an existing run's plan and stage
  files, ``--out`` itself) before anything is created, so a refused command leaves nothing behind;
* ``--out`` is a new or empty directory or a reproduce run; another directory only with ``--overwrite``,
  and no file synchrogap did not write is ever written over (:func:`dit_validation.rundir.check_out_dir`);
* ``--overwrite`` starts over: every file of the old run (:data:`RUN_FILES`: stage files, reports,
  figures, tables, summary) is deleted before the first stage, so nothing of it survives or mixes in;
* ``reproduce.json`` records the plan's identity (batch sizes aside: results do not depend on them); another
  plan, or stage files made by another command or model, are refused unless ``--overwrite``;
* one run per directory at a time (:func:`dit_validation.rundir.run_lock`; ``--wait`` queues);
* a stage file is skipped only when complete and made with this plan, this model and this package
  version; an unreadable, truncated, empty or wrong-kind stage file is moved aside (``*.corrupt``) and its
  stage re-runs; a killed stage resumes unit by unit;
* a finished run in a read-only directory is summarised without writing;
* under ``torchrun`` every rank runs this same function: rank 0 holds the lock and writes the run's own
  files, the resumable stages' units are shared out among the ranks (:func:`.distributed.run_stage`), the
  stages without units (theory, figures) run on rank 0, and a barrier closes every stage.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from paper_figs import FIGURES
from paper_figs._style import formats

from . import compare as compare_mod
from . import distributed
from ._logging import progress as progress_bar
from .boundary import ReportedError, UsageError, units, user_error_message
from .branches import dataset_of
from .compare_report import markdown_table, predictions_markdown
from .depth import run_depth
from .forwards import forwards
from .models import DiTBundle, resolve_model
from .protocol1 import run_protocol1
from .protocol2 import run_protocol2
from .reproduce_plan import (
    GRIDS,
    PLAN_ENV,
    STAGES,
    Expected,
    Grid,
    ReproducePlan,
    check_directory,
    expected_configs,
    make_plan,
    mismatch,
    plan_from_json,
    plan_identity,
    plan_to_json,
    protocol2_config,
    stage_done,
)
from .results import ConfigMismatchError, Result, load_result, write_text_atomic
from .rundir import (
    LOCK_NAME,
    check_out_dir,
    read_stage,
    remove_stale_temporaries,
    start_over,
)
from .summary import read_timings, summary_text
from .theory_run import run_theory

logger = logging.getLogger(__name__)

__all__ = [
    "Grid",
    "ReproducePlan",
    "make_plan",
    "plan_to_json",
    "plan_from_json",
    "plan_identity",
    "run_reproduce",
    "render_figures",
    "summary_text",
    "default_out",
    "PLAN_ENV",
    "STAGES",
    "ConfigMismatchError",
    "GRIDS",
    "RUN_FILES",
    "FIGURE_FILES",
]

#: What ``render_figures`` writes into ``figures/`` (globs).
FIGURE_FILES = ("fig_*.png", "fig_*.pdf", "table1.csv", "table1.md", "predictions.md", "manifest.json")
#: Every file a reproduce run writes into ``--out`` (globs): ``--overwrite`` deletes them before starting
#: over, and a directory that is not a run may not hold one that synchrogap did not write.
RUN_FILES = (
    *(f"{k}.npz" for k in STAGES),
    *(f"{k}.npz.corrupt*" for k in STAGES),
    *(f"{k}.npz.parts/*" for k in STAGES),  # units finished by the ranks of a killed job
    "compare.md",
    "reproduce.json",
    "timings.json",
    "summary.txt",
    *(f"figures/{f}" for f in FIGURE_FILES),
)


class _Stages:
    """Runs the stages of one directory: skip, quarantine, time, count units and image-forwards.

    ``timings.json`` holds per stage ``{"wall_s": …, "image_forwards": …, "image_forwards_by_dtype": {…}}``
    (:func:`dit_validation.summary.read_timings`), summed over the runs that worked on the stage (a resumed
    stage adds the work of its resumption). In a job the wall time is the job's and the image-forwards are
    summed over its ranks; rank 0 writes the file.
    """

    def __init__(self, out: Path, overwrite: bool) -> None:
        self.out, self.overwrite = out, overwrite
        self.timing_file = out / "timings.json"
        self.timings: dict[str, dict[str, Any]] = {}
        if not overwrite:
            self.timings = read_timings(self.timing_file)
        self.ran: list[str] = []

    def run(self, name: str, units_worth: int, done: bool, work: Callable[[], Any]) -> None:
        # rank 0 decides for the job: another rank may read a file rank 0 has just rewritten
        done = distributed.broadcast(done, f"before stage {name}")
        if done and not self.overwrite:
            with units.stage(units_worth):
                logger.info("stage %s: complete, skipped", name)
            return
        logger.info("stage %s: running", name)
        with units.stage(units_worth, name=name):  # named: the test hook may kill inside it
            start, before = time.perf_counter(), forwards.snapshot()
            work()
            took = time.perf_counter() - start
            ran = distributed.sum_counts(forwards.snapshot() - before, f"after stage {name}")
            entry = self.timings.get(
                name, {"wall_s": 0.0, "image_forwards": 0, "image_forwards_by_dtype": {}}
            )
            by_dtype = Counter(entry["image_forwards_by_dtype"]) + ran
            self.timings[name] = {
                "wall_s": entry["wall_s"] + took,
                "image_forwards": sum(by_dtype.values()),
                "image_forwards_by_dtype": dict(sorted(by_dtype.items())),
            }
            if distributed.world().rank == 0:
                write_text_atomic(self.timing_file, json.dumps(self.timings, indent=1))
            self.ran.append(name)
            logger.info("stage %s: done in %.1f s, %d image-forwards", name, took, sum(ran.values()))


def _figure_inputs(files: Mapping[str, Path]) -> dict[str, list[int]]:
    return {k: [p.stat().st_size, p.stat().st_mtime_ns] for k, p in sorted(files.items()) if p.is_file()}


def _figures_current(files: Mapping[str, Path], fig_dir: Path, formats_: tuple[str, ...]) -> bool:
    """Whether ``figures/manifest.json`` says these inputs were drawn in these formats, all files present."""
    try:
        old = json.loads((fig_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(old, dict)
        and old.get("inputs") == _figure_inputs(files)
        and old.get("formats") == list(formats_)
        and all((fig_dir / f).is_file() for f in old.get("files", []))
    )


def render_figures(
    files: Mapping[str, Path], fig_dir: Path, formats_: tuple[str, ...] = ("png",), show: bool = False
) -> list[Path]:
    """Every ``paper_figs`` renderer whose result kind is among ``files`` (kind → complete result path);
    ``figures/manifest.json`` records what was drawn from which inputs, and a file the previous drawing
    listed that this one does not write (a coupling no longer on the grid) is removed: never a stale
    figure beside current ones."""
    manifest = fig_dir / "manifest.json"
    inputs = _figure_inputs(files)
    try:
        previous = json.loads(manifest.read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        previous = []
    written: list[Path] = []
    with formats(*formats_):
        for name in progress_bar(list(FIGURES), desc="figures", enabled=show):
            kind = FIGURES[name]
            if kind not in files:
                logger.warning("figure %s skipped: no complete %s result file", name, kind)
                continue
            module = importlib.import_module(f"paper_figs.{name}")
            written += module.render(files[kind], fig_dir)
            units.advance()
    fig_dir.mkdir(parents=True, exist_ok=True)
    if "compare" in files:  # the §2.7 checklist from the comparison and the depth statistic
        depth = load_result(files["depth"], kind="depth") if "depth" in files else None
        text = predictions_markdown(load_result(files["compare"], kind="compare"), depth)
        written.append(write_text_atomic(fig_dir / "predictions.md", text))
    names = sorted({p.relative_to(fig_dir).as_posix() for p in written})
    for stale in sorted(set(map(str, previous)) - set(names)):
        if "/" not in stale and (fig_dir / stale).is_file():
            (fig_dir / stale).unlink()
            logger.info("removed %s: the previous drawing's, not drawn from these results", fig_dir / stale)
    write_text_atomic(
        manifest, json.dumps({"inputs": inputs, "formats": list(formats_), "files": names}, indent=1)
    )
    logger.info("stage figures: %d files in %s", len(written), fig_dir)
    return written


def _complete_files(files: Mapping[str, Path]) -> dict[str, Path]:
    """kind → path of every complete, readable stage file (the figures' inputs)."""
    out = {}
    for kind, path in files.items():
        try:
            if load_result(path, kind=kind).complete:
                out[kind] = path
        except Exception:  # noqa: BLE001 - a missing or failed stage has no figures
            continue
    return out


def _ensure_compare_md(path: Path) -> None:
    """Re-write ``compare.md`` from ``compare.npz`` when a kill left it missing or empty (compare writes the
    Markdown after the result file)."""
    md = path.with_suffix(".md")
    if md.is_file() and md.stat().st_size > 0:
        return
    meta, arrays = load_result(path, kind="compare", require_complete=True)
    try:
        text = markdown_table(dict(arrays), dict(meta))
    except (KeyError, ValueError, IndexError) as exc:  # a compare file without the report's fields
        logger.warning("could not rewrite %s from %s: %s", md, path.name, exc)
        return
    write_text_atomic(md, text)
    logger.info("rewrote %s from %s", md, path.name)


def _units_done(found: Mapping[str, Result | None], want: Expected, counts: Mapping[str, int]) -> int:
    """Units a re-run will not repeat: complete stages of this run, and the saved units of killed ones."""
    n = 0
    for kind in ("protocol1", "compare", "theory", "depth"):
        r = found[kind]
        if stage_done(r, kind, getattr(want, kind)):
            n += counts[kind]
        elif r is not None and not r.complete and kind in ("protocol1", "compare"):
            n += len(r.meta["done"])
    p2 = found["protocol2"]
    if p2 is not None:
        n += counts["protocol2"] if p2.complete else len(p2.meta["done"])
    theory = found["theory"]
    if (
        theory is not None
        and "kappa_vk" in theory.arrays
        and stage_done(found["compare"], "compare", want.compare)
    ):
        n += counts["theory_compare"]
    return n


def _unit_counts(plan: ReproducePlan, bundle_dataset: str) -> dict[str, int]:
    p1 = (len(plan.protocol1.g) + bool(plan.protocol1.control)) * plan.protocol1.num_seeds  # (g, seed) units
    return {
        "theory": 1,
        "protocol1": p1,
        "protocol2": len(plan.protocol2.g),  # one unit per g
        "compare": compare_mod.num_units(plan.compare, bundle_dataset),
        "theory_compare": 1,
        "depth": 1,
        "figures": len(FIGURES),
    }


def _writable(out: Path) -> bool:
    probe = out if out.exists() else next((p for p in out.parents if p.exists()), Path("."))
    return os.access(probe, os.W_OK | os.X_OK)


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
    wait: bool = False,
    pdf: bool | None = None,
) -> dict[str, Path]:
    """Run every stage (skipping finished ones) and render all figures; returns kind → result path.

    ``plan`` overrides the grids of :func:`make_plan` (tests use a tiny one). ``pdf`` adds PDF figures
    (default: under the full grid). Raises :class:`ReportedError` naming the stage when a stage fails —
    after rendering the figures of the stages that did run, and never with a faked result file.
    """
    plan = make_plan(model, grid, encoder) if plan is None else plan
    if encoder is not None and plan.protocol1.encoder != encoder:
        plan = replace(plan, protocol1=replace(plan.protocol1, encoder=encoder))
    if batch_size is not None:
        if batch_size < 1:
            raise UsageError(f"--batch-size must be an integer >= 1, got {batch_size}")
        plan = replace(
            plan,
            protocol1=replace(plan.protocol1, batch_size=batch_size),
            protocol2=replace(plan.protocol2, batch_size=batch_size),
        )
    out = Path(out_dir) if out_dir is not None else default_out(plan.model, plan.grid)
    if not str(out_dir if out_dir is not None else out).strip():
        raise UsageError("--out must not be empty; give a directory")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file; give a directory")
    # validate everything before the disk is touched: model, every stage's configuration, the directory
    try:
        bundle = resolve_model(plan.model, dtype=dtype, device=device)
    except ValueError as exc:  # an unknown name; a missing path is a ModelNotFoundError, one line already
        raise UsageError(f"--model: {exc}") from None
    want = expected_configs(plan, bundle)
    check_directory(out, plan, want, overwrite)
    check_out_dir(
        out,
        is_run=(out / "reproduce.json").is_file(),
        writes=RUN_FILES,
        overwrite=overwrite,
        command="reproduce",
    )
    files = {k: out / f"{k}.npz" for k in STAGES}
    paths = {**files, "figures": out / "figures", "summary": out / "summary.txt"}
    if not _writable(out):
        if out.is_dir() and _finished(files, want, bundle):
            logger.info("%s is read-only and its run is complete: summarising without writing", out)
            return paths
        raise UsageError(f"--out {str(out)!r} is not writable (read-only or not yours); choose another --out")
    rank0 = distributed.world().rank == 0
    distributed.barrier("while checking --out")  # every rank validated before rank 0 deletes anything
    if rank0:
        out.mkdir(parents=True, exist_ok=True)
    with distributed.job_lock(out / LOCK_NAME, wait=wait):
        if rank0:
            remove_stale_temporaries(out)
            if overwrite:
                start_over(out, RUN_FILES)
            plan_text = json.dumps(plan_identity(plan), indent=1, sort_keys=True)
            write_text_atomic(out / "reproduce.json", plan_text)
        distributed.barrier("while starting the run")
        _run_stages(plan, bundle, want, files, paths, overwrite, progress, pdf)
    return paths


def _finished(files: Mapping[str, Path], want: Expected, bundle: DiTBundle) -> bool:
    """Whether every stage file is complete and belongs to this run (a read-only re-summary)."""
    try:
        results = {k: load_result(p, kind=k) for k, p in files.items()}
        p2_want = protocol2_config(want, files["protocol1"], bundle)
    except Exception:  # noqa: BLE001 - anything missing or unreadable: not finished
        return False
    wants = {
        "protocol1": want.protocol1,
        "protocol2": p2_want,
        "theory": want.theory,
        "compare": want.compare,
        "depth": want.depth,
    }
    return all(stage_done(results[k], k, wants[k]) for k in STAGES)


def _run_stages(
    plan: ReproducePlan,
    bundle: DiTBundle,
    want: Expected,
    files: dict[str, Path],
    paths: dict[str, Path],
    overwrite: bool,
    progress: bool,
    pdf: bool | None,
) -> None:
    out = files["theory"].parent
    stages = _Stages(out, overwrite)
    counts = _unit_counts(plan, dataset_of(bundle))
    run_stage = distributed.run_stage
    rank0 = distributed.world().rank == 0
    # read every stage file once: damaged ones are moved aside now (by rank 0), so their stages run again
    found = distributed.first_on_rank0(lambda: {k: read_stage(p, k) for k, p in files.items()})
    if not overwrite:
        before = _units_done(found, want, counts)
        fig_formats = ("png", "pdf") if (plan.grid == "full" if pdf is None else pdf) else ("png",)
        before += counts["figures"] * _figures_current(_complete_files(files), paths["figures"], fig_formats)
        if before:
            logger.info("resuming %s: %d of %d units already done", out, before, sum(counts.values()))
    failed: list[str] = []
    with units.fixed(sum(counts.values())):
        theory_ok = stage_done(found["theory"], "theory", want.theory)
        theory_cfg = replace(plan.theory, model=bundle.name)
        stages.run(
            "theory",
            counts["theory"],
            theory_ok,
            lambda: distributed.on_rank0(lambda: run_theory(theory_cfg, files["theory"])),
        )
        stages.run(
            "protocol1",
            counts["protocol1"],
            stage_done(found["protocol1"], "protocol1", want.protocol1),
            lambda: run_stage(
                files["protocol1"],
                lambda share: run_protocol1(
                    bundle, plan.protocol1, files["protocol1"], progress=progress, share=share
                ),
                overwrite=overwrite,
            ),
        )
        p2_want = protocol2_config(want, files["protocol1"], bundle)
        p2_found = found["protocol2"]
        p2_overwrite = overwrite
        if p2_found is not None and mismatch("protocol2", p2_found.meta, p2_want) is not None:
            # made at another τ_spec (protocol1 was recomputed) or by an older run: recompute, never mix
            logger.warning("protocol2.npz: %s; recomputing it", mismatch("protocol2", p2_found.meta, p2_want))
            p2_overwrite = True
        p2 = replace(plan.protocol2, protocol1_result=str(files["protocol1"]))  # s = τ_spec(g), eq. (77)
        stages.run(
            "protocol2",
            counts["protocol2"],
            stage_done(p2_found, "protocol2", p2_want) and not p2_overwrite,
            lambda: run_stage(
                files["protocol2"],
                lambda share: run_protocol2(bundle, p2, files["protocol2"], progress=progress, share=share),
                overwrite=p2_overwrite,
            ),
        )
        try:
            stages.run(
                "compare",
                counts["compare"],
                stage_done(found["compare"], "compare", want.compare),
                lambda: run_stage(
                    files["compare"],
                    lambda share: compare_mod.run_compare(
                        bundle, plan.compare, out, model_name=bundle.name, progress=progress, share=share
                    ),
                    phases=compare_mod.unit_phases(plan.compare, dataset_of(bundle)),
                    overwrite=overwrite,
                ),
            )
        except Exception as exc:  # noqa: BLE001 - a bug: logged with its traceback, reported after the figures
            if user_error_message(exc) is not None or distributed.world().distributed:
                # a user's error (a full disk, a foreign file): the boundary's one line, no traceback; in a
                # job every rank stops (the others could not follow this one to the figures in step)
                raise
            logger.exception("stage compare failed")
            failed.append(f"compare ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
        else:
            distributed.on_rank0(lambda: _ensure_compare_md(files["compare"]))
            theory = load_result(files["theory"], kind="theory")
            with_compare = theory.meta["config"].get("compare") is not None and "kappa_vk" in theory.arrays
            stages.run(
                "theory_compare",
                counts["theory_compare"],
                with_compare and "compare" not in stages.ran,
                lambda: distributed.on_rank0(
                    lambda: run_theory(
                        replace(plan.theory, model=bundle.name), files["theory"], files["compare"]
                    )
                ),
            )
            inputs_ran = bool({"protocol2", "compare"} & set(stages.ran))
            stages.run(
                "depth",
                counts["depth"],
                stage_done(found["depth"], "depth", want.depth) and not inputs_ran,
                lambda: run_stage(
                    files["depth"],
                    lambda share: run_depth(
                        bundle, plan.depth, files["protocol2"], files["compare"], files["depth"], share=share
                    ),
                    overwrite=overwrite or inputs_ran,  # never resume a profile of other inputs
                ),
            )
        fig_formats = ("png", "pdf") if (plan.grid == "full" if pdf is None else pdf) else ("png",)
        stages.run(
            "figures",
            counts["figures"],
            _figures_current(_complete_files(files), paths["figures"], fig_formats),
            lambda: distributed.on_rank0(
                lambda: render_figures(_complete_files(files), paths["figures"], fig_formats, show=progress)
            ),
        )
    if rank0:
        write_text_atomic(paths["summary"], summary_text(paths) + "\n")
    if failed:
        # loud, after writing what did run: never a faked result file for a missing stage
        raise ReportedError(
            f"stage(s) failed: {'; '.join(failed)}; the other results and figures are in {out}"
        )


def default_out(model: str, grid: Grid) -> Path:
    """``runs/reproduce-<model>-<grid>`` with the model name made path-safe."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(model).name or model)
    return Path("runs") / f"reproduce-{safe}-{grid}"

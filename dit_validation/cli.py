"""``synchrogap`` command line: every subcommand's options, validated before anything touches the disk.

The commands layer: it imports the protocols, the comparison, the training and ``reproduce`` and never the
reverse. ``COMMANDS`` maps a subcommand to the function that registers its parser; each parser's
``run(args)`` builds and validates the configuration (a bad option is a :class:`UsageError` naming the
option, the value and what is allowed), resolves the model (placing it on ``--device``/``--dtype`` once)
and calls the library. :func:`main` runs inside :func:`dit_validation.boundary.guarded`: user errors are
one line with exit status 2, Ctrl-C says how much finished work a re-run will resume, ``--debug`` shows
tracebacks.

Nothing here imports torch at module level: options are parsed, and the checks that need no model
(``--threads``, ``--out``, counts) run, before the protocols and the models are imported inside each
command's ``run``, so a usage error appears at once even on a loaded machine.

``--overwrite`` means start over, in every command: the old run's files are deleted (under the run's
lock, after every check) before the first unit, so that nothing of it survives or mixes in.

``torchrun --nproc_per_node N -m dit_validation.cli <command> …`` runs ``reproduce``, ``protocol1``,
``protocol2`` and ``compare`` on N ranks (:mod:`dit_validation.distributed`): each rank joins the job once
its options are checked, the units are shared out, and rank 0 alone prints.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._logging import configure_logging
from .boundary import UsageError, guarded, units
from .gint import BASIS_PAIRS, GINT_BOOT, HELDOUT_MODES
from .grids import FIGURE_G, GRIDS, PROTOCOL1_DDIM_ETA, PROTOCOL1_G, PROTOCOL2_DDIM_ETA
from .rundir import LOCK_NAME, check_out_dir, check_out_file, lock_path_for, start_over

if TYPE_CHECKING:
    import torch

    from .models import DiTBundle

__all__ = ["COMMANDS", "DTYPES", "build_parser", "main", "set_threads", "check_threads"]

logger = logging.getLogger(__name__)

#: ``--dtype`` choices: names of torch dtypes, resolved by :func:`dtype_of` once torch is loaded.
DTYPES: tuple[str, ...] = ("bfloat16", "float16", "float32", "float64")
#: ``--model`` help (static, so that ``--help`` needs no torch; tests/test_dv_cli.py keeps it equal to
#: :func:`dit_validation.models.model_choices`).
MODEL_HELP = (
    "shipped-default (the default), a shipped checkpoint (mixture, mixture-deep, digits), a checkpoint "
    "directory, facebook/DiT-XL-2-256, or random:<preset> (tiny, small, XL_2)"
)
#: Wall time of ``reproduce --quick`` on the shipped default, idle 2-core machine, 1 thread (README, "Run
#: times"): what a smoke run says the quick grid costs.
QUICK_IDLE_MINUTES = 10


def dtype_of(name: str) -> torch.dtype:
    import torch

    return getattr(torch, name)


#: Environment variable that sets the default of ``--threads``.
THREADS_ENV = "SYNCHROGAP_THREADS"
#: Default torch CPU threads. Measured on the 2-core CI machine (README, "Threads"): with another busy
#: process, torch's default of 2 threads made ``reproduce --quick`` ~5× slower than 1 thread (idle
#: threads spin against the main one), and on an idle machine 2 threads gained little on these small
#: models; 1 is the safe default. GPU runs are unaffected.
DEFAULT_THREADS = 1


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_threads(n: int | None) -> int:
    """``n``, else ``$SYNCHROGAP_THREADS``, else :data:`DEFAULT_THREADS`, refused outside [1, CPUs] (more
    threads than cores only make torch's threads fight each other)."""
    cpus = os.cpu_count() or 1
    source = "--threads"
    if n is None:
        env = os.environ.get(THREADS_ENV)
        if env is None:
            return DEFAULT_THREADS
        source = f"${THREADS_ENV}"
        try:
            n = int(env)
        except ValueError:
            raise UsageError(f"{source} must be an integer in [1, {cpus}], got {env!r}") from None
    if not 1 <= n <= cpus:
        raise UsageError(f"{source} must be an integer in [1, {cpus}] (this machine's CPUs), got {n}")
    return n


def set_threads(n: int | None) -> int:
    """Set torch's intra-op CPU threads to :func:`check_threads`'s value; returns it."""
    n = check_threads(n)
    import torch

    torch.set_num_threads(n)
    return n


def check_device(name: str | None) -> torch.device:
    """A usable device (default: CUDA where available), or a UsageError naming ``--device``."""
    import torch

    name = _default_device() if name is None else name
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device must be cpu, cuda or cuda:<index>, got {name!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name} requested but CUDA is not available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(
                f"--device {name}: CUDA device index must lie in [0, {torch.cuda.device_count() - 1}]"
            )
    elif device.type != "cpu":
        raise UsageError(f"--device must be cpu, cuda or cuda:<index>, got {name!r}")
    return device


#: Configuration fields → the option that sets them, so a refused value names what the user typed.
OPTION_OF = {
    "num_seeds": "--seeds",
    "num_steps": "--steps",
    "steps": "--steps",
    "batch_size": "--batch-size",
    "n_boot": "--n-boot",
    "sigma": "--sigma",
    "ddim_eta": "--ddim-eta",
    "g": "--g",
    "t_int": "--t-int",
    "num_modes": "--modes",
    "gint_modes": "--gint-modes",
    "basis_pairs": "--basis-pairs",
    "basis_seed_base": "--basis-seed-base",
    "tau_spec": "--tau-spec",
    "guidance_scale": "--guidance",
    "seed": "--seed",
    "seed_base": "--seed-base",
    "num_layers": "--layers",
    "lr": "--lr",
    "pool": "--pool",
}


def _option_message(msg: str) -> str:
    """``batch_size must be …`` → ``--batch-size must be …`` (the option the user typed)."""
    field, _, rest = msg.partition(" ")
    return f"{OPTION_OF[field]} {rest}" if field in OPTION_OF and rest else msg


def _validated(make: Callable[[], Any]) -> Any:
    """Build and validate a configuration; a ValueError/TypeError becomes a UsageError naming the option."""
    try:
        cfg = make()
        validate = getattr(cfg, "validate", None)
        if validate is not None:
            validate()
    except (TypeError, ValueError) as exc:
        raise UsageError(_option_message(str(exc))) from None
    return cfg


def _join(device: str | None) -> torch.device:
    """Join the ``torchrun`` job of the environment, if any (rank r takes ``cuda:$LOCAL_RANK``), and check
    the device this process runs on."""
    from . import distributed

    return check_device(distributed.setup(device))


def _rank0() -> bool:
    """Whether this process speaks for the job (always, without torchrun)."""
    from . import distributed

    return distributed.world().rank == 0


def _bundle(args: argparse.Namespace) -> DiTBundle:
    from .models import resolve_model

    device = _join(args.device)
    try:
        return resolve_model(args.model, dtype=dtype_of(args.dtype), device=device)
    except ValueError as exc:
        raise UsageError(f"--model: {exc}") from None


def _out_arg(out: str) -> Path:
    """``--out``'s type: a path, never the empty string (which would mean the current directory)."""
    if not out.strip():
        raise UsageError("--out must not be empty; give a path")
    return Path(out)


def check_class_label(label: int | None, bundle: DiTBundle) -> None:
    if label is not None and not 0 <= label <= bundle.null_class:
        raise UsageError(
            f"--class-label must lie in [0, {bundle.null_class}] for {bundle.name} "
            f"({bundle.num_classes} classes, null class {bundle.null_class}), got {label}"
        )


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="shipped-default", help=MODEL_HELP)
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:<index> (default: cuda where available)")
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"torch CPU threads, at most the machine's CPUs (default ${THREADS_ENV} or 1)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    p.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    p.add_argument(
        "--wait", action="store_true", help="if another run writes to --out, wait for it instead of refusing"
    )


def _protocol_args(p: argparse.ArgumentParser, default_g: Sequence[float], default_ddim_eta: float) -> None:
    _model_args(p)
    p.add_argument("--g", type=float, nargs="+", default=list(default_g), help="coupling strengths in [0, 1]")
    p.add_argument("--seeds", type=int, default=32, help="number M of paired seeds")
    p.add_argument("--seed-base", type=int, default=0)
    p.add_argument("--steps", type=int, default=100, help="DDIM steps")
    p.add_argument(
        "--t-int", type=int, nargs="+", default=None, help="intervention steps (default: every step)"
    )
    p.add_argument("--t-int-stride", type=int, default=None, help="intervention grid 0, k, 2k, ..., steps")
    p.add_argument("--sigma", type=float, default=0.5, help="replica perturbation σ of eq. (67)")
    p.add_argument(
        "--ddim-eta", type=float, default=default_ddim_eta, help="DDIM η (0 deterministic, 1 ≈ DDPM)"
    )
    p.add_argument(
        "--guidance", type=float, default=None, help="classifier-free guidance scale (default: model's)"
    )
    p.add_argument("--class-label", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64, help="replica pairs per forward")
    p.add_argument("--out", type=str, required=True, help="result file (.npz)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start over: delete an existing result file of this command first, also one made with other "
        "options (a file that is not a synchrogap result is never written over)",
    )


def _t_int(args: argparse.Namespace) -> tuple[int, ...] | None:
    if args.t_int is not None and args.t_int_stride is not None:
        raise UsageError("give either --t-int or --t-int-stride, not both")
    if args.t_int_stride is not None:
        if args.t_int_stride < 1:
            raise UsageError(f"--t-int-stride must be an integer >= 1, got {args.t_int_stride}")
        return tuple(sorted(set(range(0, args.steps + 1, args.t_int_stride)) | {args.steps}))
    return None if args.t_int is None else tuple(args.t_int)


def _early_checks(args: argparse.Namespace) -> None:
    """A protocol's checks that need neither torch nor the model: ``--out``, ``--threads``."""
    check_out_file(_out_arg(args.out), args.overwrite)
    check_threads(args.threads)


def _run_protocol(
    args: argparse.Namespace,
    make: Callable[[], Any],
    runner: Callable[..., Path],
    summary: Callable,
    check: Callable[[DiTBundle, Any], None] | None = None,
) -> int:
    """Validate (options, ``--out``, the model, ``check``'s input files), then run one protocol."""
    configure_logging(args.quiet)
    out = _out_arg(args.out)
    check_out_file(out, args.overwrite)
    set_threads(args.threads)
    cfg = _validated(make)
    bundle = _bundle(args)
    check_class_label(args.class_label, bundle)
    try:
        cfg = cfg.resolved(bundle)
    except (TypeError, ValueError) as exc:
        raise UsageError(_option_message(str(exc))) from None
    if check is not None:
        check(bundle, cfg)
    from . import distributed

    rank0 = _rank0()
    out.parent.mkdir(parents=True, exist_ok=True)
    distributed.barrier("while checking the options")  # every rank checked before rank 0 deletes anything
    with distributed.job_lock(lock_path_for(out, is_dir=False), wait=args.wait):
        # --overwrite starts over (on rank 0): not one array of the old file survives a kill of the new run
        path = distributed.run_stage(
            out,
            lambda share: runner(bundle, cfg, out, progress=not args.quiet and rank0, share=share),
            overwrite=args.overwrite,
        )
    if rank0:
        print(f"wrote {path}")
        print(summary(path))
    return 0


def add_protocol1(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("protocol1", help="Protocol I: speciation time and scale-dependent commitment (§3.1)")
    _protocol_args(p, PROTOCOL1_G, PROTOCOL1_DDIM_ETA)
    p.add_argument("--pool", type=int, default=None, help="side of the pooling grid P of eq. (71)")
    p.add_argument("--encoder", default=None, help="feature encoder for eq. (70) (default: the model's)")
    p.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples (default 1000)")
    p.add_argument("--no-control", action="store_true", help="skip the g = 0 shared-noise control (Fig. 5)")

    def run(args: argparse.Namespace) -> int:
        _early_checks(args)
        from .protocol1 import Protocol1Config, run_protocol1, table1

        def make() -> Protocol1Config:
            n_boot = {} if args.n_boot is None else {"n_boot": args.n_boot}
            return Protocol1Config(
                g=tuple(args.g),
                t_int=_t_int(args),
                num_seeds=args.seeds,
                num_steps=args.steps,
                ddim_eta=args.ddim_eta,
                sigma=args.sigma,
                class_label=args.class_label,
                guidance_scale=args.guidance,
                pool=args.pool,
                encoder=args.encoder,
                batch_size=args.batch_size,
                control=not args.no_control,
                seed_base=args.seed_base,
                **n_boot,
            )

        return _run_protocol(args, make, run_protocol1, table1)

    p.set_defaults(run=run)


def add_protocol2(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("protocol2", help="Protocol II: internal mode energies across layers (§3.2)")
    _protocol_args(p, FIGURE_G, PROTOCOL2_DDIM_ETA)
    p.add_argument(
        "--tau-spec", type=float, nargs="+", default=None, help="s = τ_spec(g) of eq. (77), one per g"
    )
    p.add_argument(
        "--protocol1",
        type=Path,
        default=None,
        help="Protocol I result file to read τ_spec(g) from: same model and --steps, its g grid (with "
        "the g = 0 control) spanning every --g",
    )
    p.add_argument("--modes", type=int, default=None, help="modes K of the paper's basis (default M)")
    p.add_argument(
        "--gint-modes",
        type=int,
        default=HELDOUT_MODES,
        help="modes K of the held-out basis of the calibrated G_int (fixed, not a function of --seeds)",
    )
    p.add_argument(
        "--basis-pairs", type=int, default=BASIS_PAIRS, help="held-out pairs that build that basis"
    )
    p.add_argument("--basis-seed-base", type=int, default=0, help="first key of the held-out pairs")
    p.add_argument("--n-boot", type=int, default=GINT_BOOT, help="bootstrap replicates of G_int's interval")

    def run(args: argparse.Namespace) -> int:
        _early_checks(args)
        if args.protocol1 is not None:
            from .results import load_result

            if args.tau_spec is not None:
                raise UsageError("give either --tau-spec or --protocol1, not both")
            load_result(args.protocol1, kind="protocol1", require_complete=True)  # refuse a wrong input early
        from .protocol2 import Protocol2Config, layer_table, run_protocol2

        def check(bundle: DiTBundle, cfg: Protocol2Config) -> None:
            if args.protocol1 is not None:
                _check_protocol1_input(args.protocol1, bundle, cfg)

        return _run_protocol(
            args,
            lambda: Protocol2Config(
                g=tuple(args.g),
                num_seeds=args.seeds,
                num_steps=args.steps,
                ddim_eta=args.ddim_eta,
                sigma=args.sigma,
                class_label=args.class_label,
                guidance_scale=args.guidance,
                num_modes=args.modes,
                gint_modes=args.gint_modes,
                basis_pairs=args.basis_pairs,
                basis_seed_base=args.basis_seed_base,
                n_boot=args.n_boot,
                tau_spec=None if args.tau_spec is None else tuple(args.tau_spec),
                protocol1_result=None if args.protocol1 is None else str(args.protocol1),
                batch_size=args.batch_size,
                seed_base=args.seed_base,
            ),
            run_protocol2,
            layer_table,
            check,
        )

    p.set_defaults(run=run)


def _check_protocol1_input(path: Path, bundle: DiTBundle, cfg: Any) -> None:
    """``protocol2 --protocol1``: the file's model, step count and g grid (eq. 77 reads s = τ_spec(g) from
    it), and at least one finite τ_spec among the requested g; a mismatch is one line naming the file."""
    import numpy as np

    from .protocol2 import tau_from_protocol1

    tau = np.asarray(tau_from_protocol1(path, cfg.g, model=bundle.name, num_steps=cfg.num_steps))
    flat = [f"{g:g}" for g, t in zip(cfg.g, tau, strict=True) if not np.isfinite(t)]
    if len(flat) == len(cfg.g):
        raise UsageError(
            f"--protocol1 {str(path)!r} has no tau_spec at any requested g ({', '.join(flat)}: flat feature-"
            "similarity curves), so G_int (eq. 80) would be n/a everywhere; give --tau-spec or other --g"
        )
    if flat:
        logger.warning(
            "--protocol1 %r has no tau_spec at g = %s (flat curve): G_int is n/a there",
            str(path),
            ", ".join(flat),
        )


#: What ``compare`` writes into its directory (``--overwrite`` deletes them first).
COMPARE_FILES = ("compare.npz", "compare.md", "compare.npz.parts/*")


def add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="predicted vs measured speciation and gaps on a DiT (minutes on a CPU)",
        description="Measures the speciation step along each branch direction from clone splits at every "
        "coupling g, beside the step-level, per-block eq. (50) and Biroli predictions, and the gap against "
        "rho(g). Writes compare.npz and compare.md into --out. Takes about 6 min on 2 CPU cores with 1 "
        "thread (--quick, shipped default, idle machine); --full is the paper-size grid, for a GPU. A "
        "killed run resumes unit by unit.",
    )
    _model_args(p)
    grid = p.add_mutually_exclusive_group()
    grid.add_argument("--quick", dest="grid", action="store_const", const="quick", help="CPU grid (default)")
    grid.add_argument("--full", dest="grid", action="store_const", const="full", help="paper-size grid (GPU)")
    p.add_argument("--out", type=str, default="runs/compare", help="output directory (default runs/compare)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="base of every random draw of the comparison (clone pairs, symmetric points, EM pairs)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start over: delete compare.npz and compare.md of an earlier comparison in --out, also one "
        "made with other options (files synchrogap did not write are never written over)",
    )

    def run(args: argparse.Namespace) -> int:
        configure_logging(args.quiet)
        out = _out_arg(args.out)
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {str(out)!r} is a file; give a directory")
        if args.seed < 0:
            raise UsageError(f"--seed must be an integer >= 0, got {args.seed}")
        set_threads(args.threads)
        from . import compare as compare_mod

        base = compare_mod.FULL if args.grid == "full" else compare_mod.QUICK
        cfg = _validated(lambda: replace(base, seed=args.seed))
        is_run = (out / "compare.npz").exists() or (out / "reproduce.json").is_file()
        check_out_dir(out, is_run=is_run, writes=COMPARE_FILES, overwrite=args.overwrite, command="compare")
        bundle = _bundle(args)
        from . import distributed
        from .branches import dataset_of

        rank0 = _rank0()
        start = time.time()
        distributed.barrier("while checking the options")
        if rank0:
            out.mkdir(parents=True, exist_ok=True)
        units.plan(1)
        logger.info("compare: %s on the %s grid into %s (minutes on a CPU)", bundle.name, cfg.grid, out)
        with distributed.job_lock(out / LOCK_NAME, wait=args.wait):
            if args.overwrite and rank0:
                start_over(out, COMPARE_FILES)
            path = distributed.run_stage(
                out / "compare.npz",
                lambda share: compare_mod.run_compare(
                    bundle, cfg, out, model_name=bundle.name, progress=not args.quiet and rank0, share=share
                ),
                phases=compare_mod.unit_phases(cfg, dataset_of(bundle)),
                overwrite=args.overwrite,
            )
        units.advance()
        if rank0:
            print((out / "compare.md").read_text())
            print(f"wrote {path} in {time.time() - start:.1f} s on {bundle.device}")
        return 0

    p.set_defaults(run=run)


def add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="the main job: theory, Protocol I/II, compare, depth, then every figure",
        description="Runs every stage — theory, Protocol I, Protocol II, compare, depth — and draws every "
        "figure. Writes into --out: theory.npz, protocol1.npz, protocol2.npz, compare.npz and compare.md, "
        "depth.npz, figures/ (PNG figures, table1.csv/.md, predictions.md), summary.txt (also printed), "
        "reproduce.json and timings.json. Time on 2 CPU cores, 1 thread, shipped default: --grid smoke "
        "about 40 s (a demo whose numbers decide nothing: try it first), --quick (the CPU default) about "
        "10 min idle (6.5 min on 2 ranks under torchrun) and longer on a busy machine; --full is the "
        "paper's grid, for a GPU. A killed run resumes where it stopped.",
    )
    _model_args(p)
    grid = p.add_mutually_exclusive_group()
    grid.add_argument(
        "--grid",
        choices=GRIDS,
        default=None,
        help="smoke: every stage and figure in about a minute, numbers meaningless; quick: CPU minutes "
        "(CPU default); full: the paper's grid (GPU default)",
    )
    grid.add_argument("--smoke", dest="grid", action="store_const", const="smoke", help="= --grid smoke")
    grid.add_argument("--quick", dest="grid", action="store_const", const="quick", help="= --grid quick")
    grid.add_argument("--full", dest="grid", action="store_const", const="full", help="= --grid full")
    p.add_argument("--encoder", default=None, help="feature encoder of eq. (70) (default: the model's)")
    p.add_argument("--batch-size", type=int, default=None, help="replica pairs per forward")
    p.add_argument(
        "--out", type=str, default=None, help="output directory (default runs/reproduce-<model>-<grid>)"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start over: delete every file of an earlier run in --out (stage files, figures, tables, "
        "summary), also one with another model or grid, and recompute every stage; in a directory that is "
        "not a run, write beside its files (never over them)",
    )
    p.add_argument("--pdf", action="store_true", help="also write PDF figures (default under --full only)")

    def run(args: argparse.Namespace) -> int:
        configure_logging(args.quiet)
        out_arg = None if args.out is None else _out_arg(args.out)
        if out_arg is not None and out_arg.exists() and not out_arg.is_dir():
            raise UsageError(f"--out {str(out_arg)!r} is a file; give a directory")
        if args.batch_size is not None and args.batch_size < 1:
            raise UsageError(f"--batch-size must be an integer >= 1, got {args.batch_size}")
        set_threads(args.threads)
        from . import reproduce

        device = _join(args.device)
        rank0 = _rank0()
        grid_name = args.grid or ("full" if device.type == "cuda" else "quick")
        out = out_arg if out_arg is not None else reproduce.default_out(args.model, grid_name)
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {str(out)!r} is a file; give a directory")
        plan = _test_plan(args.model)
        start = time.time()
        paths = reproduce.run_reproduce(
            args.model,
            grid_name,
            out,
            device=device,
            dtype=dtype_of(args.dtype),
            progress=not args.quiet and rank0,
            overwrite=args.overwrite,
            encoder=args.encoder,
            batch_size=args.batch_size,
            plan=plan,
            wait=args.wait,
            pdf=True if args.pdf else None,
        )
        if not rank0:
            return 0
        print(reproduce.summary_text(paths))
        print(f"this invocation: {time.time() - start:.1f} s")
        if grid_name == "smoke":
            print(_after_smoke(args.model))
        return 0

    p.set_defaults(run=run)


def _after_smoke(model: str) -> str:
    """What a smoke run prints last: that its numbers decide nothing, and what the quick grid adds."""
    from .reproduce import make_plan

    q = make_plan(model, "quick")
    return (
        "smoke grid done: every stage ran and every figure was drawn, on far too few samples for any number "
        "above to decide anything (a demo, not a result). The quick grid, `synchrogap reproduce` (the CPU "
        f"default), runs Protocol I/II with M = {q.protocol1.num_seeds} seeds and {q.protocol1.num_steps} "
        f"steps, compare with {q.compare.clone_seeds} clone pairs at {len(q.compare.t_ints())} split "
        f"steps at {len(q.compare.g)} couplings, and the causal depth stage with {q.depth.causal.pairs} "
        "clone pairs; it "
        f"takes about {QUICK_IDLE_MINUTES:g} min on an idle 2-core machine (1 thread), longer when the "
        "machine is busy."
    )


def _test_plan(model: str) -> Any:
    """The plan in ``$SYNCHROGAP_TEST_PLAN`` (a JSON file; for tests), with ``--model`` as its model."""
    from . import reproduce

    name = os.environ.get(reproduce.PLAN_ENV)
    if not name:
        return None
    try:
        plan = reproduce.plan_from_json(json.loads(Path(name).read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"${reproduce.PLAN_ENV} {name!r} is not a reproduce plan file: {exc}") from None
    return replace(plan, model=model)


def _t_focus(text: str | None) -> dict[str, float | int]:
    """``--t-focus FRAC:TMAX`` → TrainConfig fields; a malformed value is one line naming the option."""
    if text is None:
        return {}
    frac, sep, tmax = text.partition(":")
    try:
        return {"t_focus": float(frac), "t_focus_max": int(tmax) if sep else 400}
    except ValueError:
        raise UsageError(f"--t-focus must be FRAC:TMAX (e.g. 0.6:400), got {text!r}") from None


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a testbed DiT (mixture or digits)")
    p.add_argument("--dataset", choices=("mixture", "digits"), default="mixture")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default 4000)")
    p.add_argument("--batch-size", type=int, default=None, help="images per step (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<index> (bf16 autocast on CUDA)")
    p.add_argument("--layers", type=int, default=None, help="transformer blocks (default 4)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-3)")
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default=None, help="default constant")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"torch CPU threads, at most the machine's CPUs (default ${THREADS_ENV} or 1)",
    )
    p.add_argument(
        "--t-focus",
        default=None,
        metavar="FRAC:TMAX",
        help="draw a fraction FRAC of the timesteps uniformly below TMAX (the local factors' range); "
        "default: all uniform",
    )
    p.add_argument("--init", default="", help="checkpoint directory to start from (fine-tuning)")
    p.add_argument(
        "--gate-pairs",
        type=int,
        default=256,
        help="clone pairs (x2 samples) behind the branch-validity gate in the training record (default 256)",
    )
    p.add_argument("--out", type=str, required=True, help="checkpoint directory")
    p.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint directory")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--debug", action="store_true", help="show tracebacks of user errors")

    def run(args: argparse.Namespace) -> int:
        configure_logging(args.quiet)
        if os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1"):
            raise UsageError("train runs in one process: start it without torchrun (WORLD_SIZE > 1 here)")
        out = _out_arg(args.out)
        threads = set_threads(args.threads)
        device = check_device(args.device)
        from .testbed import train as testbed_train

        given = {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "num_layers": args.layers,
            "lr": args.lr,
            "lr_schedule": args.lr_schedule,
            **_t_focus(args.t_focus),
            "init": args.init or None,
        }
        cfg = _validated(
            lambda: testbed_train.TrainConfig(
                dataset=args.dataset,
                seed=args.seed,
                device=str(device),
                threads=threads,
                **{k: v for k, v in given.items() if v is not None},
            )
        )
        if out.exists() and not args.overwrite:
            raise UsageError(
                f"--out {str(out)!r} already exists; refusing to overwrite a checkpoint "
                "(pass --overwrite, or choose another --out)"
            )
        from .branches import checkpoint_gate

        if args.gate_pairs < 8:
            raise UsageError(f"--gate-pairs must be at least 8, got {args.gate_pairs}")
        rec = testbed_train.train(
            cfg,
            out,
            command=testbed_train.command_line(cfg, out),
            overwrite=args.overwrite,
            progress=not args.quiet,
            extras=lambda path: {"branch_validity": checkpoint_gate(path, args.gate_pairs)},
        )
        print(f"held-out eps-MSE {rec['held_out_loss_mean']:.4f}; references {rec['reference_losses_mean']}")
        gate = rec["branch_validity"]["directions"]
        print(
            "branch validity (share of samples near the midpoint; learned <= 0.05): "
            + ", ".join(f"{n} {v['branch_midpoint_fraction']}" for n, v in gate.items())
        )
        return 0

    p.set_defaults(run=run)


COMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "protocol1": add_protocol1,
    "protocol2": add_protocol2,
    "compare": add_compare,
    "reproduce": add_reproduce,
    "train": add_train,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synchrogap", description="Synchronization gap in Diffusion Transformers"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS.values():
        add(sub)
    return parser


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)


main = guarded(_main, "synchrogap")


if __name__ == "__main__":
    sys.exit(main())

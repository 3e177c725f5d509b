"""``synchrogap`` command line: every subcommand's options, validated before anything touches the disk.

The commands layer: it imports the protocols, the comparison, the training and ``reproduce`` and never the
reverse. ``COMMANDS`` maps a subcommand to the function that registers its parser; each parser's
``run(args)`` builds and validates the configuration (a bad option is a :class:`UsageError` naming the
option, the value and what is allowed), resolves the model (placing it on ``--device``/``--dtype`` once)
and calls the library. :func:`main` runs inside :func:`dit_validation.boundary.guarded`: user errors are
one line with exit status 2, Ctrl-C says how much finished work a re-run will resume, ``--debug`` shows
tracebacks.
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
from typing import Any

import torch

from . import compare as compare_mod
from . import reproduce
from ._logging import configure_logging
from .boundary import UsageError, guarded, units
from .gint import BASIS_PAIRS, GINT_BOOT, HELDOUT_MODES
from .grids import FIGURE_G, PROTOCOL1_DDIM_ETA, PROTOCOL1_G, PROTOCOL2_DDIM_ETA
from .models import DiTBundle, model_choices, resolve_model
from .protocol1 import Protocol1Config, run_protocol1, table1
from .protocol2 import Protocol2Config, layer_table, run_protocol2
from .rundir import LOCK_NAME, lock_path_for, run_lock
from .testbed import train as testbed_train

__all__ = ["COMMANDS", "DTYPES", "build_parser", "main", "set_threads"]

logger = logging.getLogger(__name__)

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}

#: Environment variable that sets the default of ``--threads``.
THREADS_ENV = "SYNCHROGAP_THREADS"
#: Default torch CPU threads. Measured on the 2-core CI machine (README, "Threads"): with another busy
#: process, torch's default of 2 threads made ``reproduce --quick`` ~5× slower than 1 thread (idle
#: threads spin against the main one), and on an idle machine 2 threads gained little on these small
#: models; 1 is the safe default. GPU runs are unaffected.
DEFAULT_THREADS = 1


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def set_threads(n: int | None) -> int:
    """Set torch's intra-op CPU threads: ``n``, else ``$SYNCHROGAP_THREADS``, else :data:`DEFAULT_THREADS`."""
    if n is None:
        env = os.environ.get(THREADS_ENV)
        if env is not None:
            try:
                n = int(env)
            except ValueError:
                raise UsageError(f"{THREADS_ENV} must be an integer >= 1, got {env!r}") from None
        else:
            n = DEFAULT_THREADS
    if n < 1:
        raise UsageError(f"--threads must be an integer >= 1, got {n}")
    torch.set_num_threads(n)
    return n


def check_device(name: str) -> torch.device:
    """A usable device, or a UsageError naming ``--device`` and the choices."""
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


def _bundle(args: argparse.Namespace) -> DiTBundle:
    device = check_device(args.device)
    try:
        return resolve_model(args.model, dtype=DTYPES[args.dtype], device=device)
    except ValueError as exc:
        raise UsageError(f"--model: {exc}") from None


def check_class_label(label: int | None, bundle: DiTBundle) -> None:
    if label is not None and not 0 <= label <= bundle.null_class:
        raise UsageError(
            f"--class-label must lie in [0, {bundle.null_class}] for {bundle.name} "
            f"({bundle.num_classes} classes, null class {bundle.null_class}), got {label}"
        )


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="shipped-default", help=f"one of {model_choices()}")
    p.add_argument("--device", default=_default_device(), help="cpu, cuda or cuda:<index>")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    p.add_argument(
        "--threads", type=int, default=None, help=f"torch CPU threads (default ${THREADS_ENV} or 1)"
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
    p.add_argument("--out", type=Path, required=True, help="result file (.npz)")
    p.add_argument("--overwrite", action="store_true", help="discard an existing result file")


def _t_int(args: argparse.Namespace) -> tuple[int, ...] | None:
    if args.t_int is not None and args.t_int_stride is not None:
        raise UsageError("give either --t-int or --t-int-stride, not both")
    if args.t_int_stride is not None:
        if args.t_int_stride < 1:
            raise UsageError(f"--t-int-stride must be an integer >= 1, got {args.t_int_stride}")
        return tuple(sorted(set(range(0, args.steps + 1, args.t_int_stride)) | {args.steps}))
    return None if args.t_int is None else tuple(args.t_int)


def _check_out_file(out: Path) -> None:
    if out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a directory; give a result file path (.npz)")


def _run_protocol(args: argparse.Namespace, cfg: Any, runner: Callable[..., Path], summary: Callable) -> int:
    configure_logging(args.quiet)
    set_threads(args.threads)
    _check_out_file(args.out)
    bundle = _bundle(args)
    check_class_label(args.class_label, bundle)
    try:
        cfg = cfg.resolved(bundle)
    except (TypeError, ValueError) as exc:
        raise UsageError(_option_message(str(exc))) from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with run_lock(lock_path_for(args.out, is_dir=False), wait=args.wait):
        path = runner(bundle, cfg, args.out, progress=not args.quiet, overwrite=args.overwrite)
    print(f"wrote {path}")
    print(summary(path))
    return 0


def add_protocol1(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("protocol1", help="Protocol I: speciation time and scale-dependent commitment (§3.1)")
    _protocol_args(p, PROTOCOL1_G, PROTOCOL1_DDIM_ETA)
    p.add_argument("--pool", type=int, default=None, help="side of the pooling grid P of eq. (71)")
    p.add_argument("--encoder", default=None, help="feature encoder for eq. (70) (default: the model's)")
    p.add_argument("--n-boot", type=int, default=Protocol1Config.n_boot, help="bootstrap resamples")
    p.add_argument("--no-control", action="store_true", help="skip the g = 0 shared-noise control (Fig. 5)")

    def run(args: argparse.Namespace) -> int:
        cfg = _validated(
            lambda: Protocol1Config(
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
                n_boot=args.n_boot,
                control=not args.no_control,
                seed_base=args.seed_base,
            )
        )
        return _run_protocol(args, cfg, run_protocol1, table1)

    p.set_defaults(run=run)


def add_protocol2(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("protocol2", help="Protocol II: internal mode energies across layers (§3.2)")
    _protocol_args(p, FIGURE_G, PROTOCOL2_DDIM_ETA)
    p.add_argument(
        "--tau-spec", type=float, nargs="+", default=None, help="s = τ_spec(g) of eq. (77), one per g"
    )
    p.add_argument(
        "--protocol1", type=Path, default=None, help="Protocol I result file to read τ_spec(g) from"
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
        if args.protocol1 is not None:
            from .results import load_result

            load_result(args.protocol1, kind="protocol1", require_complete=True)  # refuse a wrong input early
        cfg = _validated(
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
            )
        )
        return _run_protocol(args, cfg, run_protocol2, layer_table)

    p.set_defaults(run=run)


def add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="predicted vs measured speciation and gaps on a DiT")
    _model_args(p)
    grid = p.add_mutually_exclusive_group()
    grid.add_argument("--quick", dest="grid", action="store_const", const="quick", help="CPU grid (default)")
    grid.add_argument("--full", dest="grid", action="store_const", const="full", help="paper-size grid (GPU)")
    p.add_argument("--out", type=Path, default=Path("runs/compare"), help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")

    def run(args: argparse.Namespace) -> int:
        configure_logging(args.quiet)
        set_threads(args.threads)
        base = compare_mod.FULL if args.grid == "full" else compare_mod.QUICK
        if args.seed < 0:
            raise UsageError(f"--seed must be an integer >= 0, got {args.seed}")
        cfg = _validated(lambda: replace(base, seed=args.seed))
        if args.out.exists() and not args.out.is_dir():
            raise UsageError(f"--out {str(args.out)!r} is a file; give a directory")
        bundle = _bundle(args)
        start = time.time()
        args.out.mkdir(parents=True, exist_ok=True)
        units.plan(1)
        logger.info("compare: %s on the %s grid into %s (minutes on a CPU)", bundle.name, cfg.grid, args.out)
        with run_lock(args.out / LOCK_NAME, wait=args.wait):
            path = compare_mod.run_compare(bundle, cfg, args.out, model_name=bundle.name)
        units.advance()
        print((args.out / "compare.md").read_text())
        print(f"wrote {path} in {time.time() - start:.1f} s on {bundle.device}")
        return 0

    p.set_defaults(run=run)


def add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="the main job: theory, Protocol I/II, compare, then every figure")
    _model_args(p)
    grid = p.add_mutually_exclusive_group()
    grid.add_argument(
        "--quick", dest="grid", action="store_const", const="quick", help="CPU minutes (CPU default)"
    )
    grid.add_argument(
        "--full", dest="grid", action="store_const", const="full", help="the paper's grid (GPU default)"
    )
    p.add_argument("--encoder", default=None, help="feature encoder of eq. (70) (default: the model's)")
    p.add_argument("--batch-size", type=int, default=None, help="replica pairs per forward")
    p.add_argument(
        "--out", type=Path, default=None, help="output directory (default runs/reproduce-<model>-<grid>)"
    )
    p.add_argument("--overwrite", action="store_true", help="recompute every stage")
    p.add_argument("--pdf", action="store_true", help="also write PDF figures (default under --full only)")

    def run(args: argparse.Namespace) -> int:
        configure_logging(args.quiet)
        set_threads(args.threads)
        device = check_device(args.device)
        grid_name = args.grid or ("full" if device.type == "cuda" else "quick")
        if args.batch_size is not None and args.batch_size < 1:
            raise UsageError(f"--batch-size must be an integer >= 1, got {args.batch_size}")
        out = args.out if args.out is not None else reproduce.default_out(args.model, grid_name)
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {str(out)!r} is a file; give a directory")
        plan = _test_plan(args.model)
        start = time.time()
        paths = reproduce.run_reproduce(
            args.model,
            grid_name,
            out,
            device=device,
            dtype=DTYPES[args.dtype],
            progress=not args.quiet,
            overwrite=args.overwrite,
            encoder=args.encoder,
            batch_size=args.batch_size,
            plan=plan,
            wait=args.wait,
            pdf=True if args.pdf else None,
        )
        print(reproduce.summary_text(paths))
        print(f"this invocation: {time.time() - start:.1f} s")
        return 0

    p.set_defaults(run=run)


def _test_plan(model: str) -> reproduce.ReproducePlan | None:
    """The plan in ``$SYNCHROGAP_TEST_PLAN`` (a JSON file; for tests), with ``--model`` as its model."""
    name = os.environ.get(reproduce.PLAN_ENV)
    if not name:
        return None
    try:
        plan = reproduce.plan_from_json(json.loads(Path(name).read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"${reproduce.PLAN_ENV} {name!r} is not a reproduce plan file: {exc}") from None
    return replace(plan, model=model)


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a testbed DiT (mixture or digits)")
    p.add_argument("--dataset", choices=("mixture", "digits"), default="mixture")
    p.add_argument("--steps", type=int, default=testbed_train.TrainConfig.steps)
    p.add_argument("--batch-size", type=int, default=testbed_train.TrainConfig.batch_size)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<index> (bf16 autocast on CUDA)")
    p.add_argument(
        "--layers", type=int, default=testbed_train.TrainConfig.num_layers, help="transformer blocks"
    )
    p.add_argument("--lr", type=float, default=testbed_train.TrainConfig.lr)
    p.add_argument(
        "--lr-schedule", choices=("constant", "cosine"), default=testbed_train.TrainConfig.lr_schedule
    )
    p.add_argument(
        "--threads", type=int, default=None, help=f"torch CPU threads (default ${THREADS_ENV} or 1)"
    )
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory")
    p.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint directory")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--debug", action="store_true", help="show tracebacks of user errors")

    def run(args: argparse.Namespace) -> int:
        configure_logging(args.quiet)
        threads = set_threads(args.threads)
        device = check_device(args.device)
        cfg = _validated(
            lambda: testbed_train.TrainConfig(
                dataset=args.dataset,
                steps=args.steps,
                batch_size=args.batch_size,
                seed=args.seed,
                device=str(device),
                num_layers=args.layers,
                lr=args.lr,
                lr_schedule=args.lr_schedule,
                threads=threads,
            )
        )
        if args.out.exists() and not args.overwrite:
            raise UsageError(
                f"--out {str(args.out)!r} already exists; refusing to overwrite a checkpoint "
                "(pass --overwrite, or choose another --out)"
            )
        rec = testbed_train.train(
            cfg,
            args.out,
            command=testbed_train.command_line(cfg, args.out),
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
        print(f"held-out eps-MSE {rec['held_out_loss_mean']:.4f}; references {rec['reference_losses_mean']}")
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

"""``synchrogap`` command line: a plain registry of subcommands.

``COMMANDS`` maps a subcommand name to ``add_cli(subparsers)``; other modules add one line each.
Each ``add_cli`` registers a parser whose ``func(args, parser)`` runs it. Bad values end in
``parser.error`` (one line, exit status 2), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from . import compare, protocol1, protocol2, reproduce
from ._logging import configure_logging
from .models import ModelNotFoundError, resolve_model
from .results import ConfigMismatchError
from .testbed import train as testbed_train

logger = logging.getLogger(__name__)

COMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "protocol1": protocol1.add_cli,
    "protocol2": protocol2.add_cli,
    "reproduce": reproduce.add_cli,
    "train": testbed_train.add_cli,
    "compare": compare.add_cli,
}

DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def add_common_args(p: argparse.ArgumentParser, default_g: Sequence[float], default_eta: float) -> None:
    """Arguments shared by the protocol subcommands."""
    p.add_argument(
        "--model",
        default="shipped-default",
        help="shipped name, path, facebook/DiT-XL-2-256, random:<preset>",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    p.add_argument("--g", type=float, nargs="+", default=list(default_g), help="coupling strengths in [0, 1]")
    p.add_argument("--seeds", type=int, default=32, help="number M of paired seeds")
    p.add_argument("--seed-base", type=int, default=0)
    p.add_argument("--steps", type=int, default=100, help="DDIM steps")
    p.add_argument(
        "--t-int", type=int, nargs="+", default=None, help="intervention steps (default: every step)"
    )
    p.add_argument("--t-int-stride", type=int, default=None, help="intervention grid 0, k, 2k, ..., steps")
    p.add_argument("--sigma", type=float, default=0.5, help="replica perturbation σ of eq. (67)")
    p.add_argument("--eta", type=float, default=default_eta, help="DDIM η (0 = deterministic, 1 ≈ DDPM)")
    p.add_argument(
        "--guidance", type=float, default=None, help="classifier-free guidance scale (default: model's)"
    )
    p.add_argument("--class-label", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64, help="replica pairs per forward")
    p.add_argument("--out", type=Path, required=True, help="result file (.npz)")
    p.add_argument("--overwrite", action="store_true", help="discard an existing result file")
    p.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")


def _t_int(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[int, ...] | None:
    if args.t_int is not None and args.t_int_stride is not None:
        parser.error("give either --t-int or --t-int-stride, not both")
    if args.t_int_stride is not None:
        if args.t_int_stride < 1:
            parser.error(f"--t-int-stride must be an integer >= 1, got {args.t_int_stride}")
        return tuple(sorted(set(range(0, args.steps + 1, args.t_int_stride)) | {args.steps}))
    return None if args.t_int is None else tuple(args.t_int)


def run_command(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    make_config: Callable[[argparse.Namespace, tuple[int, ...] | None], Any],
    runner: Callable[..., Path],
    summary: Callable[[Path], str],
) -> int:
    """Validate, resolve the model, run, print a summary; every expected failure → ``parser.error``."""
    configure_logging(args.quiet)
    try:
        cfg = make_config(args, _t_int(args, parser))
        cfg.validate()
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device} requested but CUDA is not available; use --device cpu")
    dtype = DTYPES[args.dtype]
    try:
        bundle = resolve_model(args.model, dtype=dtype)
        path = runner(
            bundle,
            cfg,
            args.out,
            device=device,
            dtype=dtype,
            progress=not args.quiet,
            overwrite=args.overwrite,
        )
    except torch.cuda.OutOfMemoryError:
        parser.error(
            f"out of memory at --batch-size {args.batch_size}; lower --batch-size (or use --dtype bfloat16)"
        )
    except (ModelNotFoundError, ConfigMismatchError, ValueError, TypeError, RuntimeError) as exc:
        parser.error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    print(f"wrote {path}")
    print(summary(path))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synchrogap", description="Synchronization gap in Diffusion Transformers"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    sub = parser._subparsers._group_actions[0].choices[args.command]  # the subcommand's own parser
    return int(args.func(args, sub) or 0)


if __name__ == "__main__":
    sys.exit(main())

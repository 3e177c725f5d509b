"""The plan of ``synchrogap reproduce`` and what each of its stage files must hold (commands layer).

:class:`ReproducePlan` is every configuration one run uses (``quick`` or the paper's ``full`` grid,
:func:`make_plan`); its identity — the plan without batch sizes, which never change a result — is stored as
``reproduce.json``. :func:`expected_configs` resolves and validates every stage's configuration against the
model without touching the disk, :func:`mismatch` says why a stage file does not belong to this run (another
model, configuration or package version) and :func:`check_directory` refuses, before anything is written, a
directory that holds another plan or another command's or model's files.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from . import compare as compare_mod
from .boundary import UsageError
from .causal import CausalConfig
from .depth import DepthConfig
from .encoders import ENCODERS
from .grids import (
    FIGURE_G,
    GRIDS,
    PAPER_G,
    PROTOCOL1_G,
    QUICK_BOOT,
    QUICK_G,
    QUICK_PROTOCOL2_SEEDS,
    QUICK_SEEDS,
    QUICK_STEPS,
    QUICK_T_INT_STRIDE,
    SMOKE_BOOT,
    SMOKE_G,
    SMOKE_SEEDS,
    SMOKE_STEPS,
    SMOKE_T_INT_STRIDE,
)
from .models import DiTBundle
from .protocol1 import Protocol1Config
from .protocol2 import Protocol2Config, tau_from_protocol1
from .results import ConfigMismatchError, Result, load_result, normalize_config
from .rundir import config_differences, version_difference
from .theory_run import TheoryRunConfig

__all__ = [
    "Grid",
    "GRIDS",
    "SMOKE_COMPARE",
    "STAGES",
    "PLAN_ENV",
    "ReproducePlan",
    "make_plan",
    "plan_to_json",
    "plan_from_json",
    "plan_identity",
    "Expected",
    "expected_configs",
    "protocol2_config",
    "mismatch",
    "check_directory",
    "stage_done",
]

Grid = Literal["smoke", "quick", "full"]
STAGES = ("theory", "protocol1", "protocol2", "compare", "depth")
#: For tests: a JSON file with a plan (``plan_to_json``) that replaces the grids of ``--quick``/``--full``
#: (the fault-injection test runs the command line at tiny settings through it).
PLAN_ENV = "SYNCHROGAP_TEST_PLAN"


@dataclass(frozen=True)
class ReproducePlan:
    """Every configuration ``reproduce`` runs; its identity is stored as ``reproduce.json``."""

    model: str
    grid: Grid
    protocol1: Protocol1Config
    protocol2: Protocol2Config
    theory: TheoryRunConfig
    compare: compare_mod.CompareConfig
    depth: DepthConfig = DepthConfig()


#: The comparison of the smoke grid: every unit runs, on samples far too few to decide anything.
SMOKE_COMPARE = replace(
    compare_mod.QUICK,
    grid="smoke",
    g=SMOKE_G,
    num_steps=SMOKE_STEPS,
    clone_seeds=8,
    t_int_stride=SMOKE_T_INT_STRIDE,
    sym_points=2,
    em_pairs=16,
    block_steps=3,
    random_modes=2,
    clone_pairs=16,
    n_boot=SMOKE_BOOT,
)


#: The causal depth measurements per grid: the quick grid patches at g = 0 only (patching costs (L + 2) clone
#: continuations per pair and direction); the full grid patches at every coupling the comparison measured.
SMOKE_CAUSAL = CausalConfig(pairs=8, sym_points=4, batch_pairs=8, n_boot=SMOKE_BOOT)
QUICK_CAUSAL = CausalConfig(pairs=64, sym_points=32, batch_pairs=16, n_boot=400)
FULL_CAUSAL = CausalConfig(pairs=256, sym_points=64, batch_pairs=32, n_boot=1000)


def _strided(steps: int, stride: int) -> tuple[int, ...]:
    return tuple(sorted(set(range(0, steps + 1, stride)) | {steps}))


def make_plan(model: str, grid: Grid, encoder: str | None = None) -> ReproducePlan:
    """The grids of one reproduce run: ``full`` is the paper's, ``quick`` a CPU-minutes subset, ``smoke`` a
    one-minute demo of every stage and figure whose numbers decide nothing."""
    if grid == "smoke":
        p1 = Protocol1Config(
            g=tuple(g for g in SMOKE_G if g > 0),  # g = 0 is Protocol I's shared-noise control
            t_int=_strided(SMOKE_STEPS, SMOKE_T_INT_STRIDE),
            num_seeds=SMOKE_SEEDS,
            num_steps=SMOKE_STEPS,
            n_boot=SMOKE_BOOT,
            seed_chunk=SMOKE_SEEDS,
            encoder=encoder,
        )
        p2 = Protocol2Config(g=SMOKE_G, num_seeds=SMOKE_SEEDS, num_steps=SMOKE_STEPS)
        return ReproducePlan(
            model=model,
            grid=grid,
            protocol1=p1,
            protocol2=p2,
            theory=TheoryRunConfig(g=PAPER_G),
            compare=SMOKE_COMPARE,
            depth=DepthConfig(n_boot=SMOKE_BOOT, causal=SMOKE_CAUSAL, patch_g=(0.0,)),
        )
    if grid == "full":
        p1 = Protocol1Config(g=PROTOCOL1_G, encoder=encoder)  # defaults are the paper's (§4.1)
        p2 = Protocol2Config(g=PAPER_G)  # all layers, 100 steps, M = 32 (§4.2)
    elif grid == "quick":
        p1 = Protocol1Config(
            g=QUICK_G,
            t_int=_strided(QUICK_STEPS, QUICK_T_INT_STRIDE),
            num_seeds=QUICK_SEEDS,
            num_steps=QUICK_STEPS,
            n_boot=QUICK_BOOT,
            seed_chunk=QUICK_SEEDS,
            encoder=encoder,
        )
        p2 = Protocol2Config(g=FIGURE_G, num_seeds=QUICK_PROTOCOL2_SEEDS, num_steps=QUICK_STEPS)
    else:
        raise ValueError(f"grid must be one of {', '.join(GRIDS)}, got {grid!r}")
    cmp_cfg = compare_mod.FULL if grid == "full" else compare_mod.QUICK
    return ReproducePlan(
        model=model,
        grid=grid,
        protocol1=p1,
        protocol2=p2,
        theory=TheoryRunConfig(g=PAPER_G),
        compare=cmp_cfg,
        depth=DepthConfig(n_boot=1000, causal=FULL_CAUSAL)
        if grid == "full"
        else DepthConfig(n_boot=200, causal=QUICK_CAUSAL, patch_g=(0.0,)),
    )


def plan_to_json(plan: ReproducePlan) -> dict[str, Any]:
    """The plan as plain JSON (its tuples as lists)."""
    return normalize_config({f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)})


def plan_from_json(data: Mapping[str, Any]) -> ReproducePlan:
    """Inverse of :func:`plan_to_json` (list-valued fields become tuples again)."""

    def build(cls: type, fields: Mapping[str, Any]) -> Any:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - set(known))
        if unknown:  # e.g. a plan written by an older version (the depth probes' probe_pairs)
            raise ValueError(f"plan field(s) {unknown} of {cls.__name__} are unknown to this version")
        out = {}
        for k, v in fields.items():
            if dataclasses.is_dataclass(known[k].default) and isinstance(v, Mapping):
                out[k] = build(type(known[k].default), v)  # a nested configuration (DepthConfig.causal)
            else:
                out[k] = tuple(v) if isinstance(v, list) else v
        return cls(**out)

    return ReproducePlan(
        model=str(data["model"]),
        grid=data["grid"],
        protocol1=build(Protocol1Config, data["protocol1"]),
        protocol2=build(Protocol2Config, data["protocol2"]),
        theory=build(TheoryRunConfig, data["theory"]),
        compare=build(compare_mod.CompareConfig, data["compare"]),
        depth=build(DepthConfig, data.get("depth", {})),
    )


def plan_identity(plan: ReproducePlan) -> dict[str, Any]:
    """What ``reproduce.json`` stores and compares: the plan without its batch sizes (results do not
    depend on batching; every random draw is keyed per seed)."""
    out = plan_to_json(plan)
    for stage in ("protocol1", "protocol2"):
        for key in ("batch_size", "seed_chunk"):
            out[stage].pop(key, None)
    return out


@dataclass(frozen=True)
class Expected:
    """The configurations this run writes into its stage files (the meta they are checked against)."""

    protocol1: dict[str, Any]
    protocol2: Protocol2Config  # resolved, τ_spec still open (it is read from protocol1.npz)
    theory: dict[str, Any]
    compare: dict[str, Any]
    depth: dict[str, Any]


def expected_configs(plan: ReproducePlan, bundle: DiTBundle) -> Expected:
    """Resolve and validate every stage's configuration against the model, without touching the disk.

    A bad value is a :class:`UsageError` naming the stage and the field.
    """
    encoder = plan.protocol1.encoder or bundle.encoder
    if encoder not in ENCODERS:
        raise UsageError(f"--encoder must be one of {sorted(ENCODERS)}, got {encoder!r}")
    try:
        p1 = plan.protocol1.resolved(bundle)
        p2 = plan.protocol2.resolved(bundle)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"plan for {bundle.name}: {exc}") from None
    cmp_want = {k: v for k, v in asdict(plan.compare).items() if not (k == "class_label" and v is None)}
    return Expected(
        protocol1=normalize_config({**asdict(p1), "model": bundle.name}),
        protocol2=p2,
        theory=normalize_config(replace(plan.theory, model=bundle.name)),
        compare=normalize_config({**cmp_want, "model": bundle.name}),
        depth=normalize_config({**asdict(plan.depth), "model": bundle.name}),
    )


def protocol2_config(want: Expected, p1_file: Path, bundle: DiTBundle) -> dict[str, Any]:
    """Protocol II's stored configuration once protocol1.npz is complete (s = τ_spec(g), eq. 77)."""
    p2 = replace(want.protocol2, tau_spec=tau_from_protocol1(p1_file, want.protocol2.g))
    return normalize_config({**asdict(p2), "protocol1_result": None, "model": bundle.name})


#: Keys a stage file may differ in from what this run would write (results do not depend on them).
IGNORED = {
    "protocol1": ("batch_size", "seed_chunk"),
    "protocol2": ("batch_size", "protocol1_result"),  # protocol1_result: where the file lay, not what it held
    "theory": ("compare",),
    "compare": (),
    "depth": ("protocol2", "compare"),  # where its inputs lay, not what they held
}


def mismatch(kind: str, meta: Mapping[str, Any], want: Mapping[str, Any]) -> str | None:
    """Why a stage file's meta does not belong to this run (model, configuration, version), or None."""
    have = meta.get("config", {})
    if kind in ("compare", "depth"):  # they add what they measured or read: check what they were asked
        have = {k: have.get(k) for k in want}
    if have.get("model") != want.get("model"):
        return f"made for model {have.get('model')!r}, this run is for {want.get('model')!r}"
    diff = config_differences(have, want, IGNORED[kind])
    if diff:
        return f"made with another configuration (differs in: {', '.join(diff)})"
    return version_difference(meta)


def check_directory(out: Path, plan: ReproducePlan, want: Expected, overwrite: bool) -> None:
    """Refuse (before any write) a directory holding another plan or another command's/model's files."""
    if overwrite or not out.exists():
        return
    plan_file = out / "reproduce.json"
    stage_files = [p for p in (out / f"{k}.npz" for k in STAGES) if p.exists()]
    if plan_file.exists():
        try:
            have = json.loads(plan_file.read_text())
        except (OSError, ValueError):
            have = None
        if have is not None and have != plan_identity(plan):
            ident = plan_identity(plan)
            diff = sorted(k for k in set(have) | set(ident) if have.get(k) != ident.get(k))
            raise ConfigMismatchError(
                f"{str(out)!r} holds a reproduce run with another plan (differs in: {', '.join(diff)}); "
                "use another --out or pass --overwrite"
            )
    elif stage_files:
        raise ConfigMismatchError(
            f"{str(out)!r} holds result files not made by `synchrogap reproduce` "
            f"({', '.join(p.name for p in stage_files)}); use another --out or pass --overwrite"
        )
    p2_want = normalize_config({**asdict(want.protocol2), "model": want.protocol1["model"]})
    for kind in ("protocol1", "protocol2", "compare", "theory", "depth"):
        path = out / f"{kind}.npz"
        try:
            meta = load_result(path, kind=kind).meta
        except Exception:  # noqa: BLE001 - absent or damaged: quarantined and re-run later, under the lock
            continue
        if kind == "protocol2":  # τ_spec comes from protocol1.npz: checked once that is complete
            meta = {**meta, "config": {k: v for k, v in meta["config"].items() if k != "tau_spec"}}
            why = mismatch(kind, meta, {k: v for k, v in p2_want.items() if k != "tau_spec"})
        else:
            why = mismatch(kind, meta, getattr(want, kind))
        if why is not None and not (kind == "theory" and why.startswith("made by synchrogap")):
            raise ConfigMismatchError(
                f"{str(path)!r} was {why}; refusing to mix it into this run. Use another --out or pass "
                "--overwrite to recompute it"
            )


def stage_done(result: Result | None, kind: str, want: Mapping[str, Any]) -> bool:
    """A complete stage file that belongs to this run."""
    return result is not None and result.complete and mismatch(kind, result.meta, want) is None

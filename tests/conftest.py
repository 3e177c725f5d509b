"""Shared pytest configuration.

Hypothesis: the "ci" profile (no deadline — the machine is shared and timings jitter;
derandomized — the same examples on every run, so a failure always reproduces) is loaded by
default; choose another with ``HYPOTHESIS_PROFILE=dev``.
GPU: tests marked ``@pytest.mark.gpu`` are skipped when no CUDA device is visible.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import settings

from dit_validation.causal import CausalConfig
from dit_validation.compare import QUICK
from dit_validation.depth import DepthConfig

settings.register_profile("ci", deadline=None, derandomize=True, max_examples=100)
settings.register_profile("dev", deadline=None, max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

#: The smallest comparison grid that still exercises every unit of ``run_compare`` (tests import it).
TINY_COMPARE = replace(
    QUICK,
    g=(0.0, 1.0),
    num_steps=10,
    num_directions=2,
    clone_seeds=4,
    t_int_stride=2,
    sym_points=2,
    em_pairs=8,
    block_steps=2,
    random_modes=2,
    clone_pairs=8,
    n_boot=5,
)


#: The smallest depth stage that still runs the causal measurements (patching at g = 0 only).
TINY_DEPTH = DepthConfig(
    n_boot=5,
    causal=CausalConfig(
        pairs=4, sym_points=2, window=1, patch_steps=2, split_lead=1, batch_pairs=4, n_boot=20
    ),
    patch_g=(0.0,),
)


ROOT = Path(__file__).resolve().parent.parent


#: Caches that tools write into the checkout by design (bytecode, numba's compiled kernels, test caches).
CACHES = (
    "__pycache__/",
    ".pytest_cache/",
    ".hypothesis/",
    ".egg-info/",
    ".ruff_cache/",
    ".ipynb_checkpoints/",
)


def _untracked() -> set[str] | None:
    """Untracked files in the checkout, ignored ones included, except tool caches (None outside git)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--others"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {p for p in out.stdout.splitlines() if not any(c in p for c in CACHES)}


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config._untracked_before = _untracked()  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No test may write into the checkout: new untracked files fail the session, naming them."""
    before = getattr(session.config, "_untracked_before", None)
    after = _untracked()
    if before is None or after is None:
        return
    new = sorted(after - before)
    if new:
        print(f"\nERROR: the test session wrote into the checkout: {new}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _cuda_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


# ---------------------------------------------------------------------------------------------------------
# Shared DiT fixtures: tiny random-weight DiTs (session-scoped: tests must not mutate them) and a counter
# of transformer forwards, so tests can prove that work was skipped.


@pytest.fixture(scope="session")
def tiny64():
    """The `tiny` preset with seeded random weights, float64 on the CPU."""
    from dit_validation.models import build_random_dit

    return build_random_dit("tiny", seed=0, dtype=_torch().float64)


@pytest.fixture(scope="session")
def tiny32():
    """The `tiny` preset with seeded random weights, float32 on the CPU."""
    from dit_validation.models import build_random_dit

    return build_random_dit("tiny", seed=0, dtype=_torch().float32)


def _torch():
    import torch

    return torch


class ForwardCounter:
    """Counts forwards of a module (a forward pre-hook); a context manager that removes its hook."""

    def __init__(self, module) -> None:
        self.calls = 0
        self.rows = 0
        self._h = module.register_forward_pre_hook(self._hook)

    def _hook(self, module, args, kwargs=None):
        self.calls += 1
        self.rows += int(args[0].shape[0]) if args else 0

    def remove(self) -> None:
        self._h.remove()

    def __enter__(self) -> ForwardCounter:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


@pytest.fixture
def forward_counter():
    """The :class:`ForwardCounter` class: ``with forward_counter(model) as c: ...; c.calls``."""
    return ForwardCounter


#: Dimensions whose size the schema's meaning fixes; any other dimension missing from ``sizes`` gets 2.
_FIXED_SIZES = {"ci": 2, "fit3": 3, "param": 4}


def synthetic_arrays(kind: str, sizes: dict[str, int], optional: bool = True, **given):
    """Every array of ``kind``'s schema filled with placeholders (NaN, False, 0, "") for dimension ``sizes``
    (a dimension not given there gets its fixed size or 2);
    arrays in ``given`` replace the placeholders. For tests that need a schema-valid file around a few
    arrays they control."""
    import numpy as np

    from dit_validation.schema import SCHEMAS

    out = {}
    for name, spec in SCHEMAS[kind].arrays.items():
        if name in given:
            out[name] = np.asarray(given[name])
            continue
        if spec.presence == "optional" and not optional:
            continue
        shape = tuple(sizes.get(d, _FIXED_SIZES.get(d, 2)) for d in spec.dims)
        kind_ = spec.dtype[0]
        fill = {"f": np.nan, "b": False, "i": 0, "u": 0, "U": ""}[kind_]
        dtype = {"f": float, "b": bool, "i": np.int64, "u": np.uint64, "U": "<U1"}[kind_]
        out[name] = np.full(shape, fill, dtype=dtype)
    return out


@pytest.fixture(scope="session")
def make_arrays():
    """:func:`synthetic_arrays` as a fixture."""
    return synthetic_arrays


@pytest.fixture
def run_benchmark():
    """Run ``benchmarks/<script>`` with ``args`` in a subprocess (the checkout on its path); returns the
    completed process. ``check``: raise on a non-zero exit (default), or return it for the caller to read."""

    def run(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        return subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / script), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=check,
        )

    return run

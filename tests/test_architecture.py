"""The package's layers, checked from the source: no import cycle, no import from a lower layer to a higher
one, ``import theory`` without torch, figure commands without torch or diffusers, one definition of each
shared idea.

Layers (docs/DESIGN.md), lowest first:

0. ``theory`` — numpy/scipy/sympy; torch only inside the functions that use autodiff;
1. torch-free results and summaries in ``dit_validation`` (schema, result I/O, analysis, fits, grids, the
   error boundary, logging, the comparison report, the theory result file, run directories (lock,
   quarantine), the run summary);
2. ``paper_figs`` — reads result files through layer 1 only;
3. the engine: models, batch layout, attention heads, coupling, sampler, capture, encoders, testbed;
4. protocols and measurements;
5. commands: ``reproduce`` and ``cli``.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("theory", "dit_validation", "paper_figs")

LAYER_1 = {
    "schema",
    "results",
    "analysis",
    "gint",
    "fits",
    "clone_tau",
    "verdicts",
    "grids",
    "boundary",
    "_logging",
    "compare_report",
    "causal_stats",
    "theory_run",
    "rundir",
    "summary",
    "forwards",
    "shards",
}
LAYER_3 = {
    "models",
    "layout",
    "heads",
    "coupling",
    "sampler",
    "clone_sampler",
    "capture",
    "encoders",
    "testbed",
    "distributed",
}
LAYER_4 = {
    "metrics",
    "protocol1",
    "protocol2",
    "measure",
    "gamma",
    "branches",
    "step_predictor",
    "clones",
    "depth",
    "causal",
    "patching",
    "compare",
}
LAYER_5 = {
    "reproduce",
    "reproduce_plan",
    "cli",
    "__init__",
}  # the package's lazy __init__ re-exports from every layer


def layer(module: str) -> int:
    parts = module.split(".")
    if parts[0] == "theory":
        return 0
    if parts[0] == "paper_figs":
        return 2
    assert parts[0] == "dit_validation", module
    name = parts[1] if len(parts) > 1 else "__init__"
    for rank, names in ((1, LAYER_1), (3, LAYER_3), (4, LAYER_4), (5, LAYER_5)):
        if name in names:
            return rank
    raise AssertionError(f"module {module} has no layer: add it to tests/test_architecture.py and DESIGN.md")


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """Our modules that ``module`` imports anywhere in its source (top level or inside functions)."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    found: set[str] = set()

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = resolve(alias.name)
                if target:
                    found.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                prefix = ".".join(anchor + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:
                target = resolve(f"{prefix}.{alias.name}") or resolve(prefix)
                if target:
                    found.add(target)
    found.discard(module)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports_of(m, p, known) for m, p in mods.items()}


def test_every_module_has_a_layer() -> None:
    for m in modules():
        layer(m)


def test_no_import_runs_from_a_lower_layer_to_a_higher_one() -> None:
    bad = [
        f"{src} (layer {layer(src)}) imports {dst} (layer {layer(dst)})"
        for src, dsts in graph().items()
        for dst in dsts
        if layer(dst) > layer(src)
    ]
    assert not bad, "\n".join(bad)


def test_the_module_import_graph_has_no_cycle() -> None:
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(g[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n) :] + [n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)


def test_the_checker_sees_a_planted_upward_import(tmp_path: Path) -> None:
    """The AST walk must find relative, absolute and function-level imports (else the tests above pass
    vacuously)."""
    src = tmp_path / "fake.py"
    src.write_text(
        "from .cli import main\nimport theory.gating\n\ndef f():\n    from dit_validation import sampler\n"
    )
    known = {"dit_validation.cli", "theory.gating", "dit_validation.sampler", "dit_validation"}
    assert imports_of("dit_validation.fake", src, known) == {
        "dit_validation.cli",
        "theory.gating",
        "dit_validation.sampler",
    }


def _run(code: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(code, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300, **kw)


def test_import_theory_does_not_import_torch() -> None:
    res = _run(
        [
            sys.executable,
            "-c",
            "import sys, theory; print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))",
        ]
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def _imported(stderr: str) -> set[str]:
    """Top-level packages in a ``python -X importtime`` report."""
    out = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            out.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return out


@pytest.mark.slow
def test_figure_commands_do_not_import_torch_or_diffusers(tmp_path: Path) -> None:
    theory_file = tmp_path / "theory.npz"
    res = _run([sys.executable, "-m", "dit_validation.theory_run", "--out", str(theory_file)])
    assert res.returncode == 0, res.stderr
    res = _run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "paper_figs.gates",
            str(theory_file),
            "--out",
            str(tmp_path),
        ]
    )
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "fig_gates.png").is_file()
    loaded = _imported(res.stderr)
    assert "matplotlib" in loaded  # the report is read correctly
    assert not loaded & {"torch", "diffusers"}, loaded & {"torch", "diffusers"}
    res = _run(
        [sys.executable, "-X", "importtime", "-m", "dit_validation.theory_run", "--out", str(theory_file)]
    )
    assert res.returncode == 0 and not _imported(res.stderr) & {"torch", "diffusers"}


def _definitions(name: str) -> list[str]:
    """Modules with a ``def``/``class`` of ``name`` anywhere, or a module-level assignment to it."""
    hits = []
    for mod, path in modules().items():
        tree = ast.parse(path.read_text())
        defs = any(isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name for n in ast.walk(tree))
        assigned = any(
            (isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in n.targets))
            or (isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and n.target.id == name)
            for n in tree.body
        )
        if defs or assigned:
            hits.append(mod)
    return hits


@pytest.mark.parametrize(
    ("name", "home"),
    [
        ("DDPMSchedule", "theory.schedules"),  # the DDPM schedule
        ("sampling_timesteps", "theory.schedules"),  # the DDIM timesteps
        ("ddim_step", "theory.schedules"),
        ("stream_seed", "theory.streams"),  # the noise-stream key
        ("sigmoid", "dit_validation.fits"),
        ("SPLIT_AGREEMENT", "dit_validation.clone_tau"),  # what "the clones split" means
        ("fit_speciation", "dit_validation.clone_tau"),
        ("rho", "theory.gating"),
        ("gram_basis", "dit_validation.capture"),
        ("PAPER_G", "dit_validation.grids"),
        ("band_masks", "dit_validation.analysis"),
        ("at_step", "dit_validation.analysis"),
        ("deep_layer_count", "dit_validation.analysis"),
        ("project_qkv", "dit_validation.heads"),
    ],
)
def test_one_definition_of_each_shared_idea(name: str, home: str) -> None:
    assert _definitions(name) == [home]

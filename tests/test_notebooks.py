"""Every notebook executes top to bottom at tiny settings, and is stored without outputs.

``SYNCHROGAP_NOTEBOOK_TINY=1`` is read by each notebook to shrink its grids so the whole set runs in
CI on a CPU; a notebook cell that raises (including the notebooks' own ``assert`` checks) fails here.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
TIMEOUT_S = 300  # per cell; each notebook is meant to finish in well under a minute


def test_notebooks_exist() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert {
        "01_theory_tour.ipynb",
        "02_appendix_b_explorer.ipynb",
        "03_predicted_vs_measured.ipynb",
        "04_paper_findings.ipynb",
    } <= names, names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.get("outputs", []) == [], f"{path.name} cell {i} has stored outputs"
        assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_at_tiny_settings(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNCHROGAP_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    # notebooks that write files get a scratch directory, never the repository
    monkeypatch.setenv("SYNCHROGAP_NOTEBOOK_OUT", str(tmp_path))
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK_DIR)}}
    )
    client.execute()  # raises CellExecutionError naming the failing cell (the notebooks assert their claims)
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert printed.strip(), f"{path.name} printed nothing: its cells did not run"

"""The notebooks run end to end on a small budget and write their figures."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
FIGURES = {
    "quickstart.ipynb": ["quickstart_curves.png", "quickstart_policy.gif",
                         "quickstart_policy.png"],
    "reweighting.ipynb": ["reweighting.png"],
    "pareto.ipynb": ["pareto_TinyHazardNav.png", "pareto_TinyHazardNav.pdf",
                     "curves_TinyHazardNav.png"],
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_notebook_runs_and_draws(name, tmp_path, monkeypatch):
    monkeypatch.setenv("SHAPO_NOTEBOOK_STEPS", "3200")  # one update of 64 envs x 50 steps
    monkeypatch.setenv("SHAPO_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.delenv("SHAPO_SWEEP", raising=False)
    notebook = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    NotebookClient(notebook, timeout=240, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    for figure in FIGURES[name]:
        path = tmp_path / figure
        assert path.exists() and path.stat().st_size > 1000, f"{name} did not write {figure}"
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors

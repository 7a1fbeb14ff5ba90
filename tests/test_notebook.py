"""notebooks/quickstart.ipynb runs top to bottom, as a student would run it (from the notebooks/ folder)."""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CELL_TIMEOUT_S = 300  # generous: a shared 2-core CI machine; the whole notebook takes ~20 s on an idle one


def run_notebook(name: str) -> nbformat.NotebookNode:
    """Execute every cell in a fresh python3 kernel; nbclient raises CellExecutionError on the first error."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=CELL_TIMEOUT_S, resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    return client.execute()


def test_quickstart_runs_top_to_bottom() -> None:
    notebook = run_notebook("quickstart.ipynb")
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.execution_count for cell in code), "every code cell ran"
    errors = [out for cell in code for out in cell.outputs if out.output_type == "error"]
    assert not errors, errors
    figures = [out for cell in code for out in cell.outputs if "application/vnd.plotly.v1+json" in out.get("data", {})]
    assert len(figures) >= 12, f"the notebook shows the dashboard's figures; found {len(figures)}"


def test_quickstart_is_committed_without_outputs() -> None:
    """Cleared outputs keep diffs readable and the file small; the test above produces them."""
    notebook = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]

"""Every tutorial notebook runs top to bottom in quick mode (NHL_QUICK=1), from a fresh kernel,
and in the same kernel every exercise stub of its student copy (``make student``) stops with
the stub's NotImplementedError: the cells before an exercise never need its solution, and a
student meets the stub, not a crash. One kernel per notebook: quick mode is what the suite's
time goes to."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tools.notebooks import notebook_paths
from tools.student import is_solution, student_copy

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = notebook_paths(ROOT / "notebooks")


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_in_quick_mode_and_its_student_stubs_stop_cleanly(path, monkeypatch):
    monkeypatch.setenv("NHL_QUICK", "1")  # the kernel inherits it
    nb = nbformat.read(path, as_version=4)
    stubs = [c for c in student_copy(nb).cells if is_solution(c) and c.cell_type == "code"]
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        for stub in stubs:
            with pytest.raises(CellExecutionError) as info:
                client.execute_cell(stub, len(nb.cells))
            assert info.value.ename == "NotImplementedError", (
                f"{path.name}: a student stub failed otherwise:\n{str(info.value)[-2000:]}")
            assert "YOUR CODE HERE" in str(info.value)

"""Every tutorial notebook runs top to bottom in quick mode (NHL_QUICK=1), from a fresh kernel."""

from pathlib import Path

import pytest

from tools.notebooks import execute_notebook, notebook_paths

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = notebook_paths(ROOT / "notebooks")


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(path):
    execute_notebook(path, quick=True, timeout=600)

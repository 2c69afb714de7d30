"""The tutorial site's build (:mod:`tools.site`) without a browser: what the index says, how
notebooks are staged, and a real Sphinx build of a small project that shows the committed outputs
without executing anything and references no CDN. The browser checks of the real site are in
test_browser_site.py."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from tools import site as website

ROOT = Path(__file__).resolve().parents[1]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _notebook(title: str, time_line: str = "**Time**: about 12 minutes to read. Quick mode: TBD.",
              exercises: int = 2):
    cells = [new_markdown_cell(f"# {title}\n\n**What you will learn**\n\n- things\n\n{time_line}"),
             new_markdown_cell("Some math: $d_H(b_i, b_j) = \\frac{1}{2}(L - b_i^\\top b_j)$."),
             new_code_cell('raise SystemExit("this notebook was executed")', execution_count=1,
                           outputs=[new_output("stream", name="stdout",
                                               text="stored output 4711\n")])]
    cells.append(new_markdown_cell("## Exercises"))
    for k in range(exercises):
        cells.append(new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", metadata={
            "nbgrader": {"solution": True, "grade": False, "grade_id": f"ex{k}"}}))
    return new_notebook(cells=cells)


def test_notebook_info_reads_title_reading_time_and_exercises(tmp_path):
    path = tmp_path / "03_thing.ipynb"
    nbformat.write(_notebook("03 · Dynamic weighting: the rule"), path)
    info = website.notebook_info(path)
    assert (info.name, info.number, info.title) == ("03_thing", "03", "Dynamic weighting: the rule")
    assert info.reading_time == "about 12 minutes" and info.exercises == 2

    path = tmp_path / "04_other.ipynb"
    nbformat.write(_notebook("04 - Ablation", time_line="**Time**: full setting TBD.", exercises=0),
                   path)
    info = website.notebook_info(path)
    assert info.title == "Ablation" and info.reading_time == "" and info.exercises == 0


def test_index_has_the_table_and_the_reading_order():
    infos = [website.NotebookInfo("00_a", "00", "First", "about 5 minutes", 3),
             website.NotebookInfo("01_b", "01", "Second", "", 0)]
    text = website.index_markdown(infos, ["docs/teaching"])
    assert "[First](notebooks/00_a.ipynb)" in text and "[Second](notebooks/01_b.ipynb)" in text
    assert "about 5 minutes" in text and website.NONE in text
    toc = re.search(r"```\{toctree\}\n:caption: Tutorial\n(?::\w+:[^\n]*\n)*\n(.*?)```", text, re.S)
    assert toc and toc.group(1).split() == ["notebooks/00_a", "notebooks/01_b"]
    assert "docs/teaching" in text


def test_site_notebook_replaces_widget_views_and_leaves_the_source_alone():
    nb = _notebook("00 · X")
    nb.cells[2].outputs.append(new_output("display_data", data={
        WIDGET_VIEW: {"model_id": "abc", "version_major": 2, "version_minor": 0},
        "text/plain": "VBox(children=(...))"}))
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"abc": {}}}}
    before = json.dumps(nb, sort_keys=True)
    staged = website.site_notebook(nb)
    assert json.dumps(nb, sort_keys=True) == before
    assert "widgets" not in staged["metadata"]
    shown = staged["cells"][2]["outputs"]
    assert shown[0] == nb.cells[2].outputs[0]  # other outputs untouched
    assert shown[1]["data"] == {"text/html": website.WIDGET_NOTE}


def _fake_project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "nhl").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    (root / "notebooks").mkdir()
    (root / "docs").mkdir()
    shutil.copytree(ROOT / "docs" / "site", root / "docs" / "site")
    (root / "docs" / "teaching.md").write_text(
        "# Teaching\n\nStart with [the first](../notebooks/00_first.ipynb).\n")
    nbformat.write(_notebook("00 · First notebook"), root / "notebooks" / "00_first.ipynb")
    second = _notebook("01 · Second notebook", exercises=1)
    second.cells.append(new_markdown_cell("Back to [00](00_first.ipynb)."))
    nbformat.write(second, root / "notebooks" / "01_second.ipynb")
    return root


@pytest.mark.slow
def test_build_shows_committed_outputs_without_executing(tmp_path):
    root = _fake_project(tmp_path)
    assert not website.is_current(root=root)
    out = website.build(root=root, mathjax=False)
    assert out == root / "build" / "site"
    assert website.is_current(root=root)
    page = (out / "notebooks" / "00_first.html").read_text(encoding="utf-8")
    assert "stored output 4711" in page  # the committed output, as it is
    assert "this notebook was executed" not in page.replace(
        'raise SystemExit("this notebook was executed")', "")
    assert 'class="math' in page  # $...$ became a math node for MathJax
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="notebooks/00_first.html"' in index and 'href="notebooks/01_second.html"' in index
    assert (out / "docs" / "teaching.html").is_file()
    assert (out / "search.html").is_file() and (out / "searchindex.js").is_file()
    # nothing from a CDN: every script and stylesheet of every page is the site's own
    for html_file in out.rglob("*.html"):
        text = html_file.read_text(encoding="utf-8")
        for ref in re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', text):
            assert not re.match(r"(https?:)?//", ref), f"{html_file.name} loads {ref}"
    assert 'src="../_static/mathjax/tex-chtml.js' in page
    time.sleep(0.05)
    (root / "notebooks" / "00_first.ipynb").touch()
    assert not website.is_current(root=root)


def test_missing_notebooks_is_an_error(tmp_path):
    root = _fake_project(tmp_path)
    for path in (root / "notebooks").glob("*.ipynb"):
        path.unlink()
    with pytest.raises(website.SiteError, match="no notebooks"):
        website.build(root=root, mathjax=False)

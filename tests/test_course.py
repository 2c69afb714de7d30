"""Student copies of the notebooks (``make student``, :mod:`tools.student`): nbgrader's solution
regions removed, solution outputs cleared, everything else intact; each copy still runs in quick
mode up to its first exercise, where the stub stops it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from tools.notebooks import notebook_paths
from tools.student import (
    CODE_STUB,
    TEXT_STUB,
    ClearSolutions,
    SolutionRegionError,
    is_solution,
    main,
    replace_solution_regions,
    student_copy,
    write_student_copies,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = notebook_paths(ROOT / "notebooks")
SOLUTION_META = {"nbgrader": {"solution": True, "grade": False, "grade_id": "ex1",
                              "locked": False, "schema_version": 3}}


def _solution_cell(source: str, **kw):
    return new_code_cell(source, metadata=json.loads(json.dumps(SOLUTION_META)), **kw)


# --------------------------------------------------------------------------------------------
# the preprocessor on small notebooks
def test_region_becomes_the_stub_indented_like_its_begin_line():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\nprint(f(1))"
    out, found = replace_solution_regions(src, CODE_STUB)
    assert found
    assert out == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\nprint(f(1))"


def test_several_regions_and_code_around_them_are_kept():
    src = "a = 1\n### BEGIN SOLUTION\nb = 2\n### END SOLUTION\nc = 3\n### BEGIN SOLUTION\nd = 4\n### END SOLUTION"
    out, found = replace_solution_regions(src, "STUB")
    assert found and out == "a = 1\nSTUB\nc = 3\nSTUB"
    assert replace_solution_regions("x = 1", "STUB") == ("x = 1", False)


@pytest.mark.parametrize("src", [
    "### BEGIN SOLUTION\nx = 1",  # unclosed
    "x = 1\n### END SOLUTION",  # no begin
    "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n### END SOLUTION",  # nested
])
def test_malformed_regions_are_errors(src):
    with pytest.raises(SolutionRegionError):
        replace_solution_regions(src, "STUB")


def test_clear_solutions_on_a_notebook():
    out = new_output("stream", name="stdout", text="the answer is 42\n")
    nb = new_notebook(cells=[
        new_markdown_cell("## Exercises\n\n**Exercise 1.** Compute it."),
        new_code_cell("setup = 1", outputs=[new_output("stream", name="stdout", text="kept\n")],
                      execution_count=1),
        _solution_cell("### BEGIN SOLUTION\nprint(42)\n### END SOLUTION", outputs=[out],
                       execution_count=2),
        new_markdown_cell("=== answer ===\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION",
                          metadata=json.loads(json.dumps(SOLUTION_META))),
        _solution_cell("whole_cell_is_the_answer = 1"),  # solution cell without a region
    ])
    original = json.loads(json.dumps(nb))
    student = student_copy(nb)
    assert json.loads(json.dumps(nb)) == original, "student_copy must not change its argument"
    cells = student.cells
    assert cells[0] == nb.cells[0] and cells[1] == nb.cells[1]  # untouched, outputs kept
    assert cells[2].source == CODE_STUB and cells[2].outputs == [] and cells[2].execution_count is None
    assert cells[3].source == f"=== answer ===\n{TEXT_STUB}"
    assert cells[4].source == CODE_STUB
    assert all(is_solution(c) for c in cells[2:])  # nbgrader metadata stays (for autograding)
    text = json.dumps(student)
    for secret in ("print(42)", "the answer is 42", "Because", "whole_cell_is_the_answer"):
        assert secret not in text  # (not bare "42": random cell ids may contain it)
    nbformat.validate(student)


def test_region_in_an_unmarked_cell_is_an_error():
    nb = new_notebook(cells=[new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")])
    with pytest.raises(SolutionRegionError, match="nbgrader metadata"):
        student_copy(nb)
    relaxed = ClearSolutions(enforce_metadata=False)
    cleared, _ = relaxed.preprocess(nb, {})
    assert cleared.cells[0].source == CODE_STUB


def test_widget_state_of_a_cleared_output_is_dropped():
    def view(model_id):
        return new_output("display_data", data={
            "application/vnd.jupyter.widget-view+json": {"model_id": model_id, "version_major": 2,
                                                         "version_minor": 0},
            "text/plain": "VBox()"})

    state = {"sol": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_child"]}},
             "child": {"model_name": "HTMLModel", "state": {"value": "the solution"}},
             "kept": {"model_name": "HTMLModel", "state": {"value": "a lesson"}}}
    nb = new_notebook(cells=[new_code_cell("w", outputs=[view("kept")]),
                             _solution_cell("### BEGIN SOLUTION\nw2\n### END SOLUTION",
                                            outputs=[view("sol")])])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state}}
    student = student_copy(nb)
    left = student.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert set(left) == {"kept"}


# --------------------------------------------------------------------------------------------
# the real notebooks
@pytest.fixture(scope="module")
def student_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("student")
    assert main(["--out", str(out)]) == 0
    return out


def _lines(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines() if len(line.strip()) >= 8}


def _outputs_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append("".join(out.get("text", "")))
        for mime in ("text/plain", "text/html", "text/markdown"):
            value = out.get("data", {}).get(mime, "")
            parts.append("".join(value) if isinstance(value, list) else str(value))
    return "\n".join(parts)


def _solution_only_text(nb) -> set[str]:
    """Lines of the solutions (their regions and outputs) that appear nowhere else in the
    notebook: none of them may be in the student copy."""
    solution, other = set(), set()
    for cell in nb.cells:
        if is_solution(cell):
            body, found = replace_solution_regions(cell.source, "")
            region = _lines(cell.source) - _lines(body) if found else _lines(cell.source)
            solution |= region | _lines(_outputs_text(cell))
        else:
            other |= _lines(cell.source) | _lines(_outputs_text(cell))
    return {line for line in solution - other if "SOLUTION" not in line}


def test_make_student_writes_every_notebook(student_dir):
    assert sorted(p.name for p in student_dir.glob("*.ipynb")) == [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_student_copy_has_no_solution_and_keeps_the_rest(path, student_dir):
    original = nbformat.read(path, as_version=4)
    copy_path = student_dir / path.name
    student = nbformat.read(copy_path, as_version=4)
    nbformat.validate(student)
    text = copy_path.read_text(encoding="utf-8")
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    shown = set().union(*(_lines(c.source) | _lines(_outputs_text(c)) for c in student.cells))
    leaked = sorted(_solution_only_text(original) & shown)
    assert not leaked, f"{path.name}: solution text in the student copy: {leaked[:5]}"

    assert len(student.cells) == len(original.cells)
    assert {k: v for k, v in student.metadata.items() if k != "widgets"} == \
        {k: v for k, v in original.metadata.items() if k != "widgets"}
    n_solutions = 0
    for i, (ours, theirs) in enumerate(zip(student.cells, original.cells)):
        assert ours.get("id") == theirs.get("id"), f"{path.name} cell {i}: cell id changed"
        if is_solution(theirs):
            n_solutions += 1
            assert ours.metadata.get("nbgrader") == theirs.metadata.get("nbgrader")
            if ours.cell_type == "code":
                assert ours.outputs == [] and ours.execution_count is None
                assert "YOUR CODE HERE" in ours.source
        else:
            assert ours == theirs, f"{path.name} cell {i} changed in the student copy"
    with_regions = sum(1 for c in original.cells if "BEGIN SOLUTION" in c.source)
    assert n_solutions >= with_regions


def test_default_output_is_build_student(tmp_path, monkeypatch):
    # write_student_copies' default: <project>/build/student, found from the working directory
    project = tmp_path / "proj"
    (project / "nhl").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    (project / "notebooks").mkdir()
    shutil.copy2(NOTEBOOKS[0], project / "notebooks" / NOTEBOOKS[0].name)
    monkeypatch.chdir(project / "notebooks")
    written = write_student_copies()
    assert written == [project / "build" / "student" / NOTEBOOKS[0].name]


# --------------------------------------------------------------------------------------------
# docs/teaching.md stays in step with the notebooks
TEACHING = ROOT / "docs" / "teaching.md"


def test_teaching_guide_lists_every_notebook_and_exercise():
    text = TEACHING.read_text(encoding="utf-8")
    rows = re.findall(r"^\|\s*(\d\d)\s*\|\s*(\d+)\s*\|\s*(\w+)\s*\|", text, flags=re.M)
    assert rows, "docs/teaching.md has no exercise table (| notebook | exercise | length | ...)"
    for path in NOTEBOOKS:
        number = path.name[:2]
        assert f"../notebooks/{path.name}" in text, f"docs/teaching.md does not link {path.name}"
        n = sum(1 for c in nbformat.read(path, as_version=4).cells if is_solution(c))
        listed = [int(ex) for nb, ex, _ in rows if nb == number]
        assert listed == list(range(1, n + 1)), (
            f"docs/teaching.md lists exercises {listed} for {path.name}, which has {n}")
    assert {length for _, _, length in rows} <= {"short", "long"}
    for placeholder in re.findall(r"\{TIME[^}]*\}", text):
        assert re.fullmatch(r"\{TIME \d\d (quick|full|reading)\}", placeholder), placeholder

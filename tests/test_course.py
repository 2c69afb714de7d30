"""Student copies of the notebooks (``make student``, :mod:`tools.student`), made with nbgrader's
own preprocessors: solution regions stubbed, hidden tests removed, visible tests kept, the
exercise cells' outputs cleared, everything else intact; and grading a filled-in copy
(``python -m tools.student --check``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from nbgrader.nbgraderformat import ValidationError
from nbgrader.utils import compute_checksum

from tools.notebooks import notebook_paths
from tools.student import (
    BEGIN,
    BEGIN_HIDDEN,
    CODE_STUB,
    END,
    END_HIDDEN,
    TEXT_STUB,
    SolutionRegionError,
    exercises,
    grade_notebook,
    is_autograder,
    is_solution,
    main,
    normalise_metadata,
    restore_tests,
    student_copy,
    write_student_copies,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = notebook_paths(ROOT / "notebooks")


def solution_meta(gid: str) -> dict:
    """The brief's metadata of a solution cell."""
    return {"nbgrader": {"grade": False, "grade_id": gid, "locked": False, "schema_version": 3,
                         "solution": True, "task": False}}


def autograder_meta(gid: str) -> dict:
    """The brief's metadata of an autograder cell (``gid``: its solution's id)."""
    return {"nbgrader": {"grade": True, "grade_id": f"{gid}-tests", "locked": True, "points": 1,
                         "schema_version": 3, "solution": False, "task": False}}


def answer_meta(gid: str) -> dict:
    """A written answer (markdown): nbgrader's manually graded answer cell."""
    return {"nbgrader": {"grade": True, "grade_id": gid, "locked": False, "points": 1,
                         "schema_version": 3, "solution": True, "task": False}}


def _solution_cell(source: str, gid: str = "ex1", **kw):
    return new_code_cell(source, metadata=solution_meta(gid), **kw)


def _tests_cell(source: str, gid: str = "ex1", **kw):
    return new_code_cell(source, metadata=autograder_meta(gid), **kw)


def _region(body: str, begin: str = BEGIN, end: str = END) -> str:
    return f"{begin}\n{body}\n{end}"


# --------------------------------------------------------------------------------------------
# the preprocessors on small notebooks
def test_region_becomes_the_stub_indented_like_its_begin_line():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\nprint(f(1))"
    cell = student_copy(new_notebook(cells=[_solution_cell(src)])).cells[0]
    assert cell.source == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\nprint(f(1))"


def test_several_regions_and_code_around_them_are_kept():
    src = f"a = 1\n{_region('b = 2')}\nc = 3\n{_region('d = 4')}"
    cell = student_copy(new_notebook(cells=[_solution_cell(src)])).cells[0]
    assert cell.source == f"a = 1\n{CODE_STUB}\nc = 3\n{CODE_STUB}"


def _course_notebook():
    out = new_output("stream", name="stdout", text="the answer is 42\n")
    return new_notebook(cells=[
        new_code_cell("data = [1, 2, 3]", outputs=[new_output("stream", name="stdout", text="kept\n")],
                      execution_count=1),
        new_markdown_cell("## Exercises\n\n**Exercise 1.** Define `total`, the sum of `data`."),
        _solution_cell(_region("total = sum(data)\nprint('the answer is 42')"), outputs=[out],
                       execution_count=2),
        _tests_cell("# Exercise 1: the sum of the data.\n"
                    'assert "total" in globals(), "Exercise 1: define `total` (a number)"\n'
                    'assert total > 0, "Exercise 1: `total` is positive"\n'
                    + _region('assert total == 6, "Exercise 1: hidden secret check"',
                              BEGIN_HIDDEN, END_HIDDEN),
                    outputs=[new_output("stream", name="stdout", text="hidden output\n")],
                    execution_count=3),
        new_markdown_cell("**Exercise 2.** Why? Say it in words."),
        new_code_cell("# look at the data\n" + _region("print(sorted(data))"),
                      metadata=solution_meta("ex2")),
        new_markdown_cell("=== answer ===\n" + _region("Because the sum is secretly six."),
                          metadata=answer_meta("ex2-answer")),
        new_markdown_cell("**Exercise 3.**"),
        _solution_cell("whole_cell_is_the_answer = 1", gid="ex3"),  # a solution without region
    ])


def test_student_copy_of_a_small_course():
    nb = _course_notebook()
    original = json.loads(json.dumps(nb))
    student = student_copy(nb)
    assert json.loads(json.dumps(nb)) == original, "student_copy must not change its argument"
    cells = student.cells
    assert cells[0] == nb.cells[0] and cells[1] == nb.cells[1]  # the lesson: untouched, outputs kept
    assert cells[2].source == CODE_STUB and cells[2].outputs == [] and cells[2].execution_count is None
    # the autograder cell: visible tests kept, hidden ones gone, outputs cleared, locked
    assert cells[3].source == nb.cells[3].source.split("\n" + BEGIN_HIDDEN)[0]
    assert 'assert "total" in globals()' in cells[3].source and "total > 0" in cells[3].source
    assert "HIDDEN" not in cells[3].source and "secret" not in cells[3].source
    assert cells[3].outputs == [] and cells[3].execution_count is None
    assert cells[3].metadata["editable"] is False and cells[3].metadata["deletable"] is False
    assert cells[5].source == f"# look at the data\n{CODE_STUB}"
    assert cells[6].source == f"=== answer ===\n{TEXT_STUB}"
    assert cells[8].source == CODE_STUB
    for i in (2, 3, 5, 6, 8):  # nbgrader metadata stays, with nbgrader's checksums
        meta = cells[i].metadata["nbgrader"]
        assert {k: v for k, v in meta.items() if k not in ("checksum", "cell_type")} == \
            nb.cells[i].metadata["nbgrader"]
        assert meta["checksum"] == compute_checksum(cells[i]) and meta["cell_type"] == cells[i].cell_type
    assert [is_solution(c) for c in cells] == [False, False, True, False, False, True, True, False, True]
    assert [is_autograder(c) for c in cells] == [False, False, False, True] + [False] * 5
    text = json.dumps(student)
    for secret in ("sum(data)", "the answer is 42", "secret", "hidden output", "sorted(data)",
                   "whole_cell_is_the_answer"):
        assert secret not in text  # (not bare "42": random cell ids may contain it)
    nbformat.validate(student)


def test_old_metadata_is_normalised_in_memory():
    old = new_code_cell(_region("x = 1"), metadata={"nbgrader": {"solution": True, "grade_id": "old"}})
    nb = new_notebook(cells=[old])
    student = student_copy(nb)
    assert nb.cells[0].metadata == {"nbgrader": {"solution": True, "grade_id": "old"}}  # unchanged
    meta = student.cells[0].metadata["nbgrader"]
    assert {k: meta[k] for k in ("schema_version", "grade", "solution", "locked", "task")} == \
        {"schema_version": 3, "grade": False, "solution": True, "locked": False, "task": False}
    assert student.cells[0].source == CODE_STUB
    normalise_metadata(nb)  # in place
    assert nb.cells[0].metadata["nbgrader"] == solution_meta("old")["nbgrader"]


@pytest.mark.parametrize("cell, match", [
    (_solution_cell(f"{BEGIN}\nx = 1"), "no end solution"),
    (_solution_cell(f"{BEGIN}\n{BEGIN}\n{END}\n{END}"), "nested begin solution"),
    (_tests_cell(f"{BEGIN_HIDDEN}\nassert 1"), "No end hidden tests"),
    (_tests_cell(f"{BEGIN_HIDDEN}\n{BEGIN_HIDDEN}\n{END_HIDDEN}\n{END_HIDDEN}"), "nested begin hidden"),
    (new_code_cell(_region("x = 1")), "non-solution cell"),
    (new_code_cell(_region("assert 1", BEGIN_HIDDEN, END_HIDDEN)), "non-grade cell"),
    (_solution_cell(_region("x = 1") + "\n" + _region("assert 1", BEGIN_HIDDEN, END_HIDDEN)),
     "non-grade cell"),
], ids=["unclosed", "nested", "unclosed-hidden", "nested-hidden", "unmarked", "hidden-unmarked",
        "hidden-in-solution"])
def test_malformed_regions_are_nbgraders_errors(cell, match):
    nb = new_notebook(cells=[new_markdown_cell("lesson"), cell])
    with pytest.raises(RuntimeError, match=match) as info:  # nbgrader raises RuntimeError
        student_copy(nb)
    assert isinstance(info.value, SolutionRegionError) and "cell 1" in str(info.value)


@pytest.mark.parametrize("cells, match", [
    ([new_markdown_cell(_region("words"), metadata=solution_meta("ex1"))], "not marked as a grade"),
    ([new_code_cell("assert 1", metadata={"nbgrader": {**autograder_meta("ex1")["nbgrader"],
                                                       "points": None}})], "cell 0"),
    ([_solution_cell(_region("x = 1")), _solution_cell(_region("y = 1"))], "Duplicate grade id"),
], ids=["ungraded-markdown-answer", "bad-points", "duplicate-id"])
def test_bad_metadata_is_nbgraders_validation_error(cells, match):
    with pytest.raises(ValidationError, match=match):
        student_copy(new_notebook(cells=cells))


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
                             _solution_cell(_region("w2"), outputs=[view("sol")])])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state}}
    student = student_copy(nb)
    left = student.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert set(left) == {"kept"}


def test_exercises_group_solutions_answers_and_tests():
    nb = _course_notebook()
    found = exercises(nb)
    assert [(e.solutions, e.tests) for e in found] == [([2], [3]), ([5, 6], []), ([8], [])]
    assert [e.is_prose(nb) for e in found] == [False, True, False]


def _nbgrader_release(tmp_path: Path, nb) -> object:
    """What ``nbgrader generate_assignment`` makes of ``nb`` in a throwaway course."""
    course = tmp_path / "course"
    (course / "source" / "ps1").mkdir(parents=True)
    nbformat.write(nb, course / "source" / "ps1" / "toy.ipynb")
    (course / "nbgrader_config.py").write_text('c = get_config()\nc.CourseDirectory.course_id = "toy"\n')
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", "ps1"],
                          cwd=course, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return nbformat.read(course / "release" / "ps1" / "toy.ipynb", as_version=4)


@pytest.mark.slow
def test_student_copy_is_what_nbgrader_generate_assignment_releases(tmp_path):
    nb = _course_notebook()
    release, ours = _nbgrader_release(tmp_path, nb), student_copy(nb)
    assert len(release.cells) == len(ours.cells)
    for theirs, mine in zip(release.cells, ours.cells):
        assert mine.source == theirs.source
        drop = ("execution",)  # timings: nbgrader keeps them, we drop them with the outputs
        assert {k: v for k, v in mine.metadata.items() if k not in drop} == \
            {k: v for k, v in theirs.metadata.items() if k not in drop}
        if is_solution(mine) or is_autograder(mine) or mine.cell_type != "code":
            assert mine.get("outputs") == theirs.get("outputs")  # nbgrader clears every output


# --------------------------------------------------------------------------------------------
# grading a filled-in copy
def test_restore_tests_puts_back_hidden_and_deleted_tests():
    nb = _course_notebook()
    nb.cells.insert(6, _tests_cell('assert "why" in globals()', gid="ex2"))
    submitted = student_copy(nb)
    submitted.cells[3].source = "pass  # the student emptied the test"
    del submitted.cells[6]  # and deleted ex2's test
    restored, missing = restore_tests(submitted, nb)
    assert missing == []
    assert restored.cells[3].source == nb.cells[3].source and BEGIN_HIDDEN in restored.cells[3].source
    assert restored.cells[3].id == submitted.cells[3].id
    assert [c.source for c in restored.cells] == \
        [c.source for c in submitted.cells[:3]] + [nb.cells[3].source] + \
        [c.source for c in submitted.cells[4:6]] + [nb.cells[6].source] + \
        [c.source for c in submitted.cells[6:]]


def _three_exercises():
    def exercise(n, name, solution, visible, hidden):
        return [new_markdown_cell(f"**Exercise {n}.** Define `{name}`."),
                _solution_cell(_region(solution), gid=f"ex{n}"),
                _tests_cell(f"# Exercise {n}.\n"
                            f'assert "{name}" in globals(), "Exercise {n}: define `{name}`"\n'
                            f"{visible}\n" + _region(hidden, BEGIN_HIDDEN, END_HIDDEN), gid=f"ex{n}")]

    return new_notebook(cells=[
        new_code_cell("data = [1, 2, 3]"), new_markdown_cell("## Exercises"),
        *exercise(1, "total", "total = sum(data)", 'assert total > 0, "Exercise 1: positive"',
                  'assert total == sum(data), "Exercise 1: total is the sum of data"'),
        *exercise(2, "biggest", "biggest = max(data)", "assert biggest in data",
                  "assert biggest == max(data)"),
        *exercise(3, "smallest", "smallest = min(data)", "assert smallest in data",
                  "assert smallest == min(data)"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


@pytest.mark.slow
def test_check_scores_a_filled_in_copy_with_the_hidden_tests(tmp_path, capsys):
    original = _three_exercises()
    submitted = student_copy(original)
    cells = submitted.cells
    cells[3].source = "total = 5  # wrong: passes the visible test only"
    cells[4].source = "pass  # and the test emptied"
    cells[6].source = "biggest = max(data)"
    del cells[7]  # ex2's test deleted: put back after its solution
    # ex3 left as the stub
    orig_path, sub_path = tmp_path / "orig.ipynb", tmp_path / "alice.ipynb"
    nbformat.write(original, orig_path)
    nbformat.write(submitted, sub_path)
    assert main(["--check", str(sub_path), "--original", str(orig_path),
                 "--executed", str(tmp_path / "executed.ipynb")]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "0/1" in lines["ex1"] and "AssertionError: Exercise 1: total is the sum of data" in lines["ex1"]
    assert "1/1" in lines["ex2"] and "passed" in lines["ex2"]
    assert "0/1" in lines["ex3"] and "AssertionError: Exercise 3: define `smallest`" in lines["ex3"]
    assert "1/3" in lines["total"]
    executed = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    assert sum(is_autograder(c) for c in executed.cells) == 3

    scores, missing = grade_notebook(orig_path, orig_path)  # the worked solutions get every point
    assert missing == [] and [(s.exercise, s.points, s.max_points) for s in scores] == \
        [("ex1", 1, 1), ("ex2", 1, 1), ("ex3", 1, 1)]


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


def _split(source: str, begin: str, end: str) -> tuple[str, str]:
    """The lines of ``source`` inside begin/end regions, and those outside (marker lines
    dropped), each joined by newlines."""
    inside, outside, depth = [], [], 0
    for line in source.split("\n"):
        if begin in line:
            depth += 1
        elif end in line:
            depth -= 1
        else:
            (inside if depth else outside).append(line)
    return "\n".join(inside), "\n".join(outside)


def _secret_text(nb) -> set[str]:
    """Lines of the solutions, the hidden tests and the exercise cells' outputs that appear
    nowhere else in the notebook: none of them may be in the student copy."""
    secret, other = set(), set()
    for cell in nb.cells:
        if is_solution(cell):
            inside, outside = _split(cell.source, BEGIN, END)
            if BEGIN not in cell.source:  # nbgrader replaces such a cell whole
                inside, outside = cell.source, ""
            secret |= _lines(inside) | _lines(_outputs_text(cell))
            other |= _lines(outside)
        elif is_autograder(cell):
            inside, outside = _split(cell.source, BEGIN_HIDDEN, END_HIDDEN)
            secret |= _lines(inside) | _lines(_outputs_text(cell))
            other |= _lines(outside)
        else:
            other |= _lines(cell.source) | _lines(_outputs_text(cell))
    return {line for line in secret - other if "SOLUTION" not in line and "HIDDEN" not in line}


def test_make_student_writes_every_notebook(student_dir):
    assert sorted(p.name for p in student_dir.glob("*.ipynb")) == [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_student_copy_has_no_solution_and_keeps_the_rest(path, tmp_path):
    original = nbformat.read(path, as_version=4)
    copy_path = tmp_path / path.name  # one notebook at a time: a broken one fails only its test
    nbformat.write(student_copy(original), copy_path)
    student = nbformat.read(copy_path, as_version=4)
    nbformat.validate(student)
    text = copy_path.read_text(encoding="utf-8")
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text
    shown = set().union(*(_lines(c.source) | _lines(_outputs_text(c)) for c in student.cells))
    leaked = sorted(_secret_text(original) & shown)
    assert not leaked, f"{path.name}: solution or hidden-test text in the student copy: {leaked[:5]}"

    assert len(student.cells) == len(original.cells)
    assert {k: v for k, v in student.metadata.items() if k != "widgets"} == \
        {k: v for k, v in original.metadata.items() if k != "widgets"}
    normalised = nbformat.from_dict(json.loads(json.dumps(original)))
    normalise_metadata(normalised)
    n_solutions = 0
    for i, (ours, theirs) in enumerate(zip(student.cells, normalised.cells)):
        assert ours.get("id") == theirs.get("id"), f"{path.name} cell {i}: cell id changed"
        if is_solution(theirs) or is_autograder(theirs):
            n_solutions += is_solution(theirs)
            meta = dict(ours.metadata["nbgrader"])
            assert meta.pop("checksum") == compute_checksum(ours)
            assert meta.pop("cell_type") == ours.cell_type
            assert meta == theirs.metadata["nbgrader"], f"{path.name} cell {i}: nbgrader metadata"
            if ours.cell_type == "code":
                assert ours.outputs == [] and ours.execution_count is None
            if is_solution(theirs):
                assert ("YOUR CODE HERE" if ours.cell_type == "code" else TEXT_STUB) in ours.source
            else:  # an autograder cell: its visible tests
                assert ours.source == _split(theirs.source, BEGIN_HIDDEN, END_HIDDEN)[1]
                assert ours.metadata["editable"] is False and ours.metadata["deletable"] is False
        else:
            assert ours == theirs, f"{path.name} cell {i} changed in the student copy"
    with_regions = sum(1 for c in original.cells if BEGIN in c.source)
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
        n = len(exercises(nbformat.read(path, as_version=4)))
        listed = [int(ex) for nb, ex, _ in rows if nb == number]
        assert listed == list(range(1, n + 1)), (
            f"docs/teaching.md lists exercises {listed} for {path.name}, which has {n}")
    assert {length for _, _, length in rows} <= {"short", "long"}
    for placeholder in re.findall(r"\{TIME[^}]*\}", text):
        assert re.fullmatch(r"\{TIME \d\d (quick|full|reading)\}", placeholder), placeholder

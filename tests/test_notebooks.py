"""The tutorial notebooks run, and their exercises grade themselves.

Marked ``notebook``: every notebook runs top to bottom in quick mode (NHL_QUICK=1) from a fresh
kernel, its autograder cells (nbgrader ``grade: true`` test cells) included: each must give full
points on the worked solution, as nbgrader's autograder scores it (no error, nothing on stderr).
Then, in the same kernel, every global created from the ``## Exercises`` heading on is deleted and
each exercise of the student copy (``make student``) is run as a student who has written nothing
meets it: its stub stops with the stub's NotImplementedError, and its autograder cells (visible
tests only) fail with an AssertionError, never with another exception. One kernel per notebook:
quick mode is what the suite's time goes to.

Not marked: the committed notebooks' autograder cells follow the course's convention
(docs/teaching.md); the harness itself is checked on small notebooks built here.
"""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from nbgrader.utils import determine_grade

from tools.notebooks import notebook_paths
from tools.student import (
    BEGIN,
    BEGIN_HIDDEN,
    END,
    END_HIDDEN,
    TESTS_SUFFIX,
    exercises,
    exercises_start,
    grade_id,
    is_autograder,
    is_solution,
    student_copy,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = notebook_paths(ROOT / "notebooks")

_BEFORE = "_nhl_globals_before_exercises"
_RECORD = f"{_BEFORE} = set(globals())"
_FORGET = (f"for _nhl_name in set(globals()) - {_BEFORE}:\n"
           "    if not _nhl_name.startswith('_'):\n"
           "        del globals()[_nhl_name]")


def _failure(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}")
        elif out.get("output_type") == "stream" and out.get("name") == "stderr":
            parts.append("stderr: " + "".join(out.get("text", ""))[-500:])
    return "; ".join(parts) or "an output nbgrader reads as partial credit"


def run_course(nb, folder: Path, name: str, timeout: int = 600) -> None:
    """Run ``nb`` top to bottom (its autograder cells must pass), then its student copy's stubs
    and autograder cells (they must stop with NotImplementedError / AssertionError). Raises
    AssertionError with what went wrong."""
    student = student_copy(nb)
    start = exercises_start(nb)
    groups = exercises(nb)
    tests = [i for i, c in enumerate(nb.cells) if is_autograder(c)]
    if tests:
        assert start is not None and start < min(tests), f"{name}: autograder cells before '## Exercises'"
    extra = len(nb.cells)  # a scratch slot for the cells that are not the notebook's
    nb = copy.deepcopy(nb)
    nb.cells.append(new_code_cell(""))
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(folder)}})

    def run(source: str) -> None:
        client.execute_cell(new_code_cell(source), extra)

    with client.setup_kernel():
        for index, cell in enumerate(nb.cells[:extra]):
            if index == start:
                run(_RECORD)
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as err:
                what = f"autograder cell {grade_id(cell)}" if is_autograder(cell) else f"cell {index}"
                raise AssertionError(f"{name}: {what} fails on the worked solution:\n"
                                     f"{str(err)[-2000:]}") from None
        for index in tests:  # (a) every autograder cell ran, and nbgrader gives it full points
            cell = nb.cells[index]
            points, max_points = determine_grade(cell)
            assert cell.get("execution_count") is not None, f"{name}: {grade_id(cell)} did not run"
            assert points == max_points, (
                f"{name}: nbgrader gives autograder cell {grade_id(cell)} {points:g}/{max_points:g} on "
                f"the worked solution: {_failure(cell)}")
        if tests:  # (b) a student who has written nothing: none of the exercises' names exist
            run(_FORGET)
        for group in groups:
            for index in group.code_solutions(nb):
                stub = student.cells[index]
                try:
                    client.execute_cell(stub, extra)
                except CellExecutionError as err:
                    assert err.ename == "NotImplementedError" and "YOUR CODE HERE" in str(err), (
                        f"{name}: the student stub of {grade_id(stub)} failed otherwise:\n"
                        f"{str(err)[-2000:]}")
                else:
                    raise AssertionError(f"{name}: the student stub of {grade_id(stub)} ran through")
            for index in group.tests:
                check = student.cells[index]
                try:
                    client.execute_cell(check, extra)
                except CellExecutionError as err:
                    assert err.ename == "AssertionError", (
                        f"{name}: on the stub, autograder cell {grade_id(check)} crashed with "
                        f"{err.ename} instead of failing an assert:\n{str(err)[-2000:]}")
                else:
                    raise AssertionError(
                        f"{name}: autograder cell {grade_id(check)} passes on the student stub "
                        "(does it check a name defined before the exercise?)")


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_in_quick_mode_and_grades_itself(path, monkeypatch):
    monkeypatch.setenv("NHL_QUICK", "1")  # the kernel inherits it
    run_course(nbformat.read(path, as_version=4), path.parent, path.name)


# --------------------------------------------------------------------------------------------
# the harness on small notebooks
def _solution(gid: str, body: str):
    return new_code_cell(f"{BEGIN}\n{body}\n{END}", metadata={"nbgrader": {
        "grade": False, "grade_id": gid, "locked": False, "schema_version": 3, "solution": True,
        "task": False}})


def _autograder(gid: str, visible: str, hidden: str = "assert True"):
    return new_code_cell(f"# Checks of {gid}.\n{visible}\n{BEGIN_HIDDEN}\n{hidden}\n{END_HIDDEN}",
                         metadata={"nbgrader": {
                             "grade": True, "grade_id": gid + TESTS_SUFFIX, "locked": True,
                             "points": 1, "schema_version": 3, "solution": False, "task": False}})


def _toy(checks: str = 'assert "total" in globals(), "Exercise 1: define `total`"\n'
                       'assert total == sum(data), "Exercise 1: the sum"',
         hidden: str = "assert isinstance(total, int)") -> object:
    return new_notebook(cells=[
        new_code_cell("data = [1, 2, 3]"),
        new_markdown_cell("## Exercises\n\n**Exercise 1.** Define `total`, the sum of `data`."),
        _solution("ex1", "total = sum(data)"),
        _autograder("ex1", checks, hidden),
        new_markdown_cell("**Exercise 2.** Why is it 6? Say it in words."),
        _solution("ex2", "print(data)"),
        new_markdown_cell(f"{BEGIN}\nThree numbers.\n{END}", metadata={"nbgrader": {
            "grade": True, "grade_id": "ex2-answer", "locked": False, "points": 1,
            "schema_version": 3, "solution": True, "task": False}}),
        new_markdown_cell("**Exercise 3.** Define `top`, the largest number."),
        _solution("ex3", "top = max(data)"),
        _autograder("ex3", 'assert "top" in globals(), "Exercise 3: define `top`"\nassert top in data',
                    "assert top == max(data)"),
    ])


@pytest.mark.slow
def test_harness_passes_a_course_that_grades_itself(tmp_path):
    run_course(_toy(), tmp_path, "toy")


@pytest.mark.slow
@pytest.mark.parametrize("checks, hidden, message", [
    ('assert "data" in globals()', "", "passes on the student stub"),  # data: from the lesson
    ("assert total == sum(data)", "", "crashed with NameError"),  # no `in globals()` guard
    ('assert "total" in globals()', "assert total == 7", "fails on the worked solution"),
    ('assert "total" in globals()', 'import sys\nprint("careful", file=sys.stderr)', "0/1"),
    ('assert "total" in globals()', "len(data) / 10", "0.3/1"),  # nbgrader: partial credit
], ids=["lesson-name", "crash", "solution-fails", "stderr", "partial-credit"])
def test_harness_catches_a_bad_autograder_cell(tmp_path, checks, hidden, message):
    with pytest.raises(AssertionError, match=re.escape(message)):
        run_course(_toy(checks, hidden), tmp_path, "toy")


# --------------------------------------------------------------------------------------------
# the committed notebooks follow the convention (no kernel)
def _autograder_meta(gid: str) -> dict:
    return {"grade": True, "grade_id": gid, "locked": True, "points": 1, "schema_version": 3,
            "solution": False, "task": False}


def _regions(source: str, begin: str, end: str) -> list[str]:
    """The bodies of ``begin``/``end`` regions; ValueError when one is unclosed, nested,
    unopened, or its marker line carries anything else."""
    bodies, body = [], None
    for number, line in enumerate(source.split("\n"), 1):
        if (begin in line or end in line) and line.strip() not in (begin, end):
            raise ValueError(f"line {number}: a marker line holds only the marker")
        if begin in line:
            if body is not None:
                raise ValueError(f"line {number}: {begin} inside a region")
            body = []
        elif end in line:
            if body is None:
                raise ValueError(f"line {number}: {end} without {begin}")
            bodies.append("\n".join(body))
            body = None
        elif body is not None:
            body.append(line)
    if body is not None:
        raise ValueError(f"{begin} without {end}")
    return bodies


class _GlobalNames(ast.NodeVisitor):
    """Names a cell binds at module level (assignments, imports, def, class, for, with)."""

    def __init__(self):
        self.names: set[str] = set()

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Store):
            self.names.add(node.id)

    def visit_FunctionDef(self, node):
        self.names.add(node.name)  # its body binds locals

    visit_AsyncFunctionDef = visit_ClassDef = visit_FunctionDef

    def visit_Lambda(self, node):
        pass

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = visit_Lambda

    def visit_alias(self, node):
        self.names.add(node.asname or node.name.split(".")[0])


def _bound(source: str) -> set[str]:
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in source.split("\n"))
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    visitor = _GlobalNames()
    visitor.visit(tree)
    return visitor.names


def _required_names(source: str) -> list[str]:
    """The names an autograder cell's ``assert "name" in globals()`` lines ask for (also in the
    loop form ``for n in ("a", "b"): assert n in globals()``), in order."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    loops = {}  # loop variable -> the string constants it runs over
    for node in ast.walk(tree):
        if isinstance(node, ast.For) and isinstance(node.target, ast.Name) \
                and isinstance(node.iter, (ast.Tuple, ast.List)):
            loops[node.target.id] = [e.value for e in node.iter.elts
                                     if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            for compare in ast.walk(node.test):
                if not (isinstance(compare, ast.Compare) and len(compare.ops) == 1
                        and isinstance(compare.ops[0], ast.In)
                        and isinstance(compare.comparators[0], ast.Call)
                        and isinstance(compare.comparators[0].func, ast.Name)
                        and compare.comparators[0].func.id == "globals"):
                    continue
                left = compare.left
                if isinstance(left, ast.Constant) and isinstance(left.value, str):
                    names.append(left.value)
                elif isinstance(left, ast.Name):
                    names.extend(loops.get(left.id, []))
    return list(dict.fromkeys(names))


def convention_problems(nb) -> list[str]:
    """Where ``nb``'s exercises break the course's autograding convention (docs/teaching.md)."""
    problems = []
    cells = nb.cells
    solutions = {grade_id(c): i for i, c in enumerate(cells) if is_solution(c)}
    start = exercises_start(nb)
    for index, cell in enumerate(cells):
        for begin, end in ((BEGIN, END), (BEGIN_HIDDEN, END_HIDDEN)):
            try:
                _regions(cell.source, begin, end)
            except ValueError as err:
                problems.append(f"cell {index}: {err}")
    for group in exercises(nb):
        for index in group.code_solutions(nb):
            if not group.tests and not group.is_prose(nb):
                problems.append(f"{grade_id(cells[index])}: a code exercise without an autograder "
                                "cell (or a markdown answer cell, if its answer is prose)")
        first = min(group.solutions + group.tests)
        statement = []  # the markdown cells that pose the exercise
        for cell in reversed(cells[(start or 0):first]):
            if "nbgrader" in cell.get("metadata", {}) or cell.cell_type != "markdown":
                break
            statement.append(cell.source)
        statement = "\n".join(statement)
        for index in group.tests:
            cell, gid = cells[index], grade_id(cells[index])
            where = f"autograder cell {gid or index}"
            meta = cell.metadata.get("nbgrader", {})
            if meta != _autograder_meta(gid):
                problems.append(f"{where}: nbgrader metadata {meta} (want {_autograder_meta(gid)})")
            owner = gid[: -len(TESTS_SUFFIX)] if gid.endswith(TESTS_SUFFIX) else None
            if owner not in solutions:
                problems.append(f"{where}: its grade_id is not a solution cell's id + '{TESTS_SUFFIX}'")
                continue
            if not (grade_id(cells[index - 1]) == owner or index - 1 in group.tests):
                problems.append(f"{where}: not right after its solution cell")
            lines = cell.source.split("\n")
            if not lines[0].startswith("#"):
                problems.append(f"{where}: starts with a one-line comment")
            try:
                hidden = _regions(cell.source, BEGIN_HIDDEN, END_HIDDEN)
            except ValueError:
                continue  # reported above
            if not hidden or not any("assert" in body for body in hidden):
                problems.append(f"{where}: no asserts between {BEGIN_HIDDEN} and {END_HIDDEN}")
            visible = cell.source.split(BEGIN_HIDDEN)[0]
            names = _required_names(visible)
            if not names:
                problems.append(f'{where}: no visible `assert "name" in globals(), ...` for the '
                                "names the exercise asks for")
            earlier = set().union(*(_bound(c.source) for c in cells[:solutions[owner]]
                                    if c.cell_type == "code"))
            for name in names:
                if name in earlier:
                    problems.append(f"{where}: checks `{name}`, which a cell before the exercise "
                                    "already defines")
                if not re.search(rf"\b{re.escape(name)}\b", statement):
                    problems.append(f"{where}: the exercise's statement does not name `{name}`")
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_exercises_follow_the_autograding_convention(path):
    problems = convention_problems(nbformat.read(path, as_version=4))
    assert not problems, f"{path.name}:\n  " + "\n  ".join(problems)


def test_convention_check_on_small_notebooks():
    assert convention_problems(_toy()) == []
    bad = _toy('assert "data" in globals() and "unnamed" in globals()\nassert total > 0')
    # a code exercise with neither tests nor a written answer
    bad.cells[7:7] = [new_markdown_cell("**Exercise 2b.**"), _solution("ex2b", "x = 1")]
    assert grade_id(bad.cells[11]) == "ex3-tests"
    bad.cells[11].metadata["nbgrader"]["points"] = 2
    bad.cells[11].source = bad.cells[11].source.replace(END_HIDDEN, "")
    found = "\n".join(convention_problems(bad))
    assert "checks `data`, which a cell before the exercise already defines" in found
    assert "statement does not name `unnamed`" in found
    assert "statement does not name `data`" not in found
    assert "ex2b: a code exercise without an autograder cell" in found
    assert "autograder cell ex3-tests: nbgrader metadata" in found
    assert f"{BEGIN_HIDDEN} without {END_HIDDEN}" in found
    assert "ex2:" not in found  # the prose exercise: its markdown answer needs no tests
    loop = 'for _n in ("a", "b"):\n    assert _n in globals(), "x"\nassert "c" in globals() and "d" in globals()'
    assert set(_required_names(loop)) == {"a", "b", "c", "d"}

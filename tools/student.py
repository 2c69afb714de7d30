"""Course kit: student copies of the tutorial notebooks (``make student``) and grading them.

The exercises follow nbgrader's conventions (docs/teaching.md). A worked solution is a *solution
cell* (nbgrader metadata ``solution: true``) whose answer sits between ``### BEGIN SOLUTION`` and
``### END SOLUTION``; an exercise with a checkable answer has an *autograder cell* right after it
(``grade: true, solution: false``, ``grade_id`` = the solution's id + ``-tests``): visible
asserts, then stronger checks between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``.

:func:`student_copy` makes the copy with nbgrader's own preprocessors, in the order of nbgrader's
``generate_assignment`` but without its database and course layout: ``LockCells``,
``ClearSolutions`` (each region becomes ``# YOUR CODE HERE`` / ``raise NotImplementedError()`` in
code, ``YOUR ANSWER HERE`` in markdown), ``ClearOutput`` (of the exercise cells only: the lesson
keeps its committed outputs), ``CheckCellMetadata``, ``ClearHiddenTests``, ``ClearMarkScheme``,
``ComputeChecksums`` and ``CheckCellMetadata`` again. Older cells whose nbgrader metadata lacks
fields (only ``solution`` and ``grade_id``, say) are brought to nbgrader's schema 3 in memory
first. The stored state of widgets that only the cleared outputs showed is dropped. Every other
cell is kept as it was, outputs included.

``python -m tools.student`` writes ``build/student/NN_*.ipynb`` (the tutorial's code finds the
project's ``data/`` and ``runs/`` from there, so the copies run as they are).
``python -m tools.student --check FILE.ipynb`` grades a student's filled-in copy without nbgrader's
course layout: it restores every autograder cell from the original notebook (hidden tests
included), executes the notebook with nbgrader's ``Execute`` preprocessor and scores each
autograder cell as nbgrader's autograder does (an error or anything written to stderr: no points).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader.nbgraderformat import MetadataValidator, ValidationError
from nbgrader.preprocessors import (
    CheckCellMetadata,
    ClearHiddenTests,
    ClearMarkScheme,
    ClearOutput,
    ClearSolutions,
    ComputeChecksums,
    Execute,
    LockCells,
)
from nbgrader.utils import determine_grade

from nhl.utils import project_root

from . import command
from .notebooks import _WIDGET_STATE, _WIDGET_VIEW, _widget_refs, notebook_paths

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
TEXT_STUB = "YOUR ANSWER HERE"
EXERCISES_HEADING = "## Exercises"
TESTS_SUFFIX = "-tests"


class SolutionRegionError(RuntimeError):
    """A malformed solution, hidden-test or mark-scheme region: nbgrader's RuntimeError, with the
    cell it is in."""


# --------------------------------------------------------------------------------------------
# cells
def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def is_solution(cell) -> bool:
    """Whether a cell is an nbgrader solution cell (``metadata.nbgrader.solution``)."""
    return bool(_nbgrader(cell).get("solution", False))


def is_autograder(cell) -> bool:
    """Whether a cell is an autograder (test) cell: a code cell with ``grade: true`` and
    ``solution: false``."""
    meta = _nbgrader(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def grade_id(cell) -> str:
    return str(_nbgrader(cell).get("grade_id", ""))


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def exercises_start(nb) -> int | None:
    """Index of the ``## Exercises`` heading cell, or None."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and _source(cell).lstrip().startswith(EXERCISES_HEADING):
            return index
    return None


@dataclass
class Exercise:
    """The nbgrader cells of one exercise (indices into the notebook's cells)."""

    solutions: list[int] = field(default_factory=list)  # code, then any written answers
    tests: list[int] = field(default_factory=list)  # autograder cells

    def code_solutions(self, nb) -> list[int]:
        return [i for i in self.solutions if nb.cells[i].cell_type == "code"]

    def is_prose(self, nb) -> bool:
        """Whether its answer is written (a markdown solution cell, nbgrader's manually graded
        answer) rather than checked by autograder cells."""
        return any(nb.cells[i].cell_type == "markdown" for i in self.solutions)


def exercises(nb) -> list[Exercise]:
    """The exercises of ``nb`` in order. A code solution cell starts an exercise; a markdown
    solution cell (a written answer) right after the cells of an exercise belongs to it; an
    autograder cell belongs to the exercise whose solution id it extends with ``-tests`` (or, if
    none, to the exercise it follows directly)."""
    found: list[Exercise] = []
    by_id: dict[str, Exercise] = {}
    current: Exercise | None = None  # open while the cells run on without a lesson cell
    for index, cell in enumerate(nb.cells):
        if is_solution(cell):
            if cell.cell_type == "code" or current is None:
                current = Exercise()
                found.append(current)
            current.solutions.append(index)
            by_id[grade_id(cell)] = current
        elif is_autograder(cell):
            gid = grade_id(cell)
            owner = by_id.get(gid[: -len(TESTS_SUFFIX)]) if gid.endswith(TESTS_SUFFIX) else None
            owner = owner or current
            if owner is None:
                owner = current = Exercise()
                found.append(owner)
            owner.tests.append(index)
        else:
            current = None
    return found


# --------------------------------------------------------------------------------------------
# nbgrader's preprocessors
class _CellInErrors:
    """Mixin: nbgrader's RuntimeError for a malformed region, raised as a SolutionRegionError
    that says which cell."""

    def preprocess_cell(self, cell, resources, index):
        try:
            return super().preprocess_cell(cell, resources, index)
        except RuntimeError as exc:
            where = f" ({grade_id(cell)})" if grade_id(cell) else ""
            raise SolutionRegionError(f"cell {index}{where}: {exc}") from exc


class _ClearSolutions(_CellInErrors, ClearSolutions):
    pass


class _ClearHiddenTests(_CellInErrors, ClearHiddenTests):
    pass


class _ClearMarkScheme(_CellInErrors, ClearMarkScheme):
    pass


class ClearExerciseOutput(ClearOutput):
    """nbgrader's ``ClearOutput``, on the exercise cells only (solution and autograder cells:
    their outputs came from the worked solution and the hidden tests); also drops their recorded
    execution timings. The lesson's outputs stay."""

    def preprocess_cell(self, cell, resources, index):
        if is_solution(cell) or is_autograder(cell):
            cell, resources = super().preprocess_cell(cell, resources, index)
            cell.get("metadata", {}).pop("execution", None)
        return cell, resources


def normalise_metadata(nb) -> None:
    """Bring every cell's nbgrader metadata to schema 3, in place: nbgrader's own upgrade for
    cells without a (current) ``schema_version``, then the fields a schema-3 cell may lack
    (``grade``, ``solution``, ``locked``, ``task``: false)."""
    validator = MetadataValidator()
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        if meta is None:
            continue
        if meta.get("schema_version", 0) < validator.schema_version:
            validator.upgrade_cell_metadata(cell)  # may drop metadata that marks nothing
        meta = cell.get("metadata", {}).get("nbgrader")
        if meta is not None:
            for key in ("grade", "solution", "locked", "task"):
                meta.setdefault(key, False)


def check_metadata(nb) -> None:
    """nbgrader's metadata validation (what ``CheckCellMetadata`` runs), raising a
    ``ValidationError`` that says which cell: schema 3, a grade_id on every graded, solution or
    locked cell, points on every graded cell, a markdown solution cell (a written answer) graded
    by hand (``grade: true``), no grade_id twice."""
    validator = MetadataValidator()
    for index, cell in enumerate(nb.cells):
        try:
            validator.validate_cell(cell)
        except ValidationError as exc:
            where = f" ({grade_id(cell)})" if grade_id(cell) else ""
            raise ValidationError(f"cell {index}{where}: {exc.message}") from None
    validator.validate_nb(nb)


def _exercise_widget_ids(nb) -> set[str]:
    return {out.get("data", {}).get(_WIDGET_VIEW, {}).get("model_id", "")
            for cell in nb.cells if cell.cell_type == "code"
            and (is_solution(cell) or is_autograder(cell))
            for out in cell.get("outputs", [])} - {""}


def _drop_widget_state(nb, model_ids: set[str]) -> None:
    """Remove the stored state of widgets whose only views were in cleared outputs (and the
    models they refer to, unless a remaining output still shows them)."""
    state = nb.get("metadata", {}).get("widgets", {}).get(_WIDGET_STATE, {}).get("state")
    if not state or not model_ids:
        return

    def refs(roots: set[str]) -> set[str]:
        return set().union(*(_widget_refs(state, mid) for mid in roots))

    kept_views = {out.get("data", {}).get(_WIDGET_VIEW, {}).get("model_id", "")
                  for cell in nb.cells if cell.cell_type == "code"
                  for out in cell.get("outputs", [])}
    for mid in refs(model_ids) - refs(kept_views - {""}):
        state.pop(mid, None)


def student_preprocessors() -> list:
    """nbgrader's preprocessors in ``generate_assignment``'s order, less those that need its
    database or course layout (``SaveCells``, ``IncludeHeaderFooter``, ``InstantiateTests``),
    with ``ClearOutput`` limited to the exercise cells."""
    return [LockCells(), _ClearSolutions(), ClearExerciseOutput(), CheckCellMetadata(),
            _ClearHiddenTests(), _ClearMarkScheme(), ComputeChecksums(), CheckCellMetadata()]


def student_copy(nb):
    """A student copy of ``nb`` (a notebook node; not changed): solutions replaced by stubs,
    hidden tests removed, the exercise cells' outputs cleared."""
    nb = copy.deepcopy(nb)
    normalise_metadata(nb)
    check_metadata(nb)  # CheckCellMetadata would say the same, without saying where
    widgets = _exercise_widget_ids(nb)
    resources: dict = {}
    for preprocessor in student_preprocessors():
        nb, resources = preprocessor.preprocess(nb, resources)
    _drop_widget_state(nb, widgets)
    return nb


def write_student_copies(out: str | Path | None = None,
                         notebooks: str | Path | None = None) -> list[Path]:
    """Write a student copy of every tutorial notebook to ``out`` (default ``build/student``)."""
    root = project_root()
    out = Path(out) if out else root / "build" / "student"
    paths = notebook_paths(Path(notebooks) if notebooks else root / "notebooks")
    if not paths:
        raise FileNotFoundError("no tutorial notebooks NN_*.ipynb found")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        try:
            copy_nb = student_copy(nb)
        except SolutionRegionError as exc:
            raise SolutionRegionError(f"{path.name}: {exc}") from None
        except ValidationError as exc:
            raise ValidationError(f"{path.name}: {exc}") from None
        target = out / path.name
        nbformat.write(copy_nb, target)
        written.append(target)
    return written


# --------------------------------------------------------------------------------------------
# grading without nbgrader's course layout
@dataclass
class Score:
    """The result of one autograder cell."""

    grade_id: str
    points: float
    max_points: float
    message: str = ""  # why it failed ("" when it passed)

    @property
    def exercise(self) -> str:
        gid = self.grade_id
        return gid[: -len(TESTS_SUFFIX)] if gid.endswith(TESTS_SUFFIX) else gid


def restore_tests(submitted, original):
    """A copy of the ``submitted`` notebook whose autograder cells are those of ``original``
    (source with the hidden tests, nbgrader metadata), matched by grade_id; an autograder cell
    the student deleted is put back after its solution cell (if that is there too). Also returns
    the grade_ids that could not be placed."""
    nb = copy.deepcopy(submitted)
    normalise_metadata(nb)
    ids = {grade_id(c): i for i, c in enumerate(nb.cells) if grade_id(c)}
    missing = []
    for cell in original.cells:
        if not is_autograder(cell):
            continue
        gid = grade_id(cell)
        restored = nbformat.v4.new_code_cell(_source(cell),
                                             metadata=copy.deepcopy(dict(cell.metadata)))
        restored.metadata.pop("execution", None)
        if gid in ids:
            restored["id"] = nb.cells[ids[gid]].get("id", restored["id"])
            nb.cells[ids[gid]] = restored
            continue
        solution = gid[: -len(TESTS_SUFFIX)] if gid.endswith(TESTS_SUFFIX) else None
        if solution in ids:
            nb.cells.insert(ids[solution] + 1, restored)
            ids = {grade_id(c): i for i, c in enumerate(nb.cells) if grade_id(c)}
        else:
            missing.append(gid)
    return nb, missing


@contextmanager
def _environment(**values: str | None):
    old = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is not None:
                os.environ[key] = value
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _failure(cell) -> str:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return f"{out.get('ename', '')}: {out.get('evalue', '')}".strip()
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream" and out.get("name") == "stderr":
            text = "".join(out.get("text", "")).strip().splitlines()
            return "wrote to stderr: " + (text[-1] if text else "")
    return "partial credit"


def original_of(path: str | Path, notebooks: str | Path | None = None) -> Path:
    """The tutorial notebook a student copy was made from: the same file name in ``notebooks``
    (default: the project's ``notebooks/``)."""
    folder = Path(notebooks) if notebooks else project_root() / "notebooks"
    original = folder / Path(path).name
    if not original.is_file():
        raise FileNotFoundError(f"no original for {Path(path).name} in {folder} (use --original)")
    return original


def grade_notebook(path: str | Path, original: str | Path | None = None, *,
                   timeout: int = 600, quick: bool | None = None,
                   executed: str | Path | None = None) -> tuple[list[Score], list[str]]:
    """Grade a student's filled-in notebook: restore the autograder cells from ``original``
    (default :func:`original_of`), execute it top to bottom in a fresh kernel (cwd: the
    original's folder; ``quick`` sets ``NHL_QUICK``; ``timeout`` seconds per cell) with
    nbgrader's ``Execute`` preprocessor, errors allowed, and score every autograder cell with
    nbgrader's ``determine_grade``. Returns the scores and the grade_ids of autograder cells that
    were missing and could not be put back (no points). ``executed``: also write the executed
    notebook there (for feedback)."""
    path = Path(path)
    original = Path(original) if original else original_of(path)
    nb, missing = restore_tests(nbformat.read(path, as_version=4),
                                nbformat.read(original, as_version=4))
    kernel = nb.metadata.get("kernelspec", {}).get("name") or "python3"
    executor = Execute(timeout=timeout, kernel_name=kernel)
    quick_env = None if quick is None else ("1" if quick else "0")
    with _environment(NHL_QUICK=quick_env):
        nb, _ = executor.preprocess(nb, {"metadata": {"path": str(original.parent.resolve())}})
    if executed:
        nbformat.write(nb, executed)
    scores = []
    for cell in nb.cells:
        if is_autograder(cell):
            points, max_points = determine_grade(cell)
            points = float(points or 0)
            scores.append(Score(grade_id(cell), points, float(max_points),
                                "" if points >= max_points else _failure(cell)))
    return scores, missing


def _check(paths: Sequence[str], original: str | None, quick: bool | None, timeout: int,
           executed: str | None) -> None:
    if original and len(paths) > 1:
        raise ValueError("--original goes with one notebook to check")
    for path in paths:
        scores, missing = grade_notebook(path, original, timeout=timeout, quick=quick,
                                         executed=executed if len(paths) == 1 else None)
        print(f"{path}:")
        per_exercise: dict[str, list[Score]] = {}
        for score in scores:
            per_exercise.setdefault(score.exercise, []).append(score)
        width = max([len("total"), *(len(k) for k in per_exercise), *(len(g) for g in missing)])
        for exercise, cells in per_exercise.items():
            got = sum(s.points for s in cells)
            out_of = sum(s.max_points for s in cells)
            why = "; ".join(s.message for s in cells if s.message)
            print(f"  {exercise:<{width}}  {got:g}/{out_of:g}  {'passed' if not why else why}")
        for gid in missing:
            print(f"  {gid:<{width}}  missing: its autograder cell and solution cell were deleted")
        total = sum(s.points for s in scores)
        out_of = sum(s.max_points for s in scores)
        print(f"  {'total':<{width}}  {total:g}/{out_of:g}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tools.student [--out DIR] [--notebooks DIR]`` (write the student copies) or
    ``python -m tools.student --check FILE.ipynb ...`` (grade filled-in copies)."""
    def action(args):
        if args.check:
            quick = True if args.quick else None
            _check(args.check, args.original, quick, args.timeout, args.executed)
            return
        for path in write_student_copies(args.out, args.notebooks):
            nb = nbformat.read(path, as_version=4)
            n = len(exercises(nb))
            tests = sum(1 for c in nb.cells if is_autograder(c))
            print(f"{path}: {n} exercise{'s' if n != 1 else ''} to solve, "
                  f"{tests} autograder cell{'s' if tests != 1 else ''}")

    return command(
        argv, "python -m tools.student",
        "Write student copies of the tutorial notebooks (solutions and hidden tests removed), "
        "or grade filled-in copies (--check).",
        [(("--out",), dict(default=None, help="output folder (default build/student)")),
         (("--notebooks",), dict(default=None, help="source folder (default notebooks/)")),
         (("--check",), dict(nargs="+", metavar="NOTEBOOK", default=None,
                             help="grade these filled-in student notebooks: restore the hidden "
                                  "tests from the originals, execute, print a score per exercise")),
         (("--original",), dict(default=None, help="with --check: the original notebook "
                                                    "(default: notebooks/ + the same file name)")),
         (("--quick",), dict(action="store_true", help="with --check: execute in quick mode "
                                                       "(NHL_QUICK=1)")),
         (("--timeout",), dict(type=int, default=600, help="with --check: seconds per cell")),
         (("--executed",), dict(default=None, help="with --check of one notebook: write the "
                                                   "executed notebook here (for feedback)"))],
        action,
        failures=(FileNotFoundError, SolutionRegionError, ValidationError, ValueError),
    )


if __name__ == "__main__":
    raise SystemExit(main())

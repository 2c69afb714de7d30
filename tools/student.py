"""Course kit: student copies of the tutorial notebooks (``make student``).

The notebooks' exercises follow nbgrader's conventions: a worked solution is a cell with nbgrader
metadata ``{"solution": true, "grade_id": ...}`` whose solution sits between ``### BEGIN
SOLUTION`` and ``### END SOLUTION`` lines. :class:`ClearSolutions` is an nbconvert preprocessor
that does what nbgrader's own ``ClearSolutions`` does to such cells (each region becomes the stub
``# YOUR CODE HERE`` / ``raise NotImplementedError()`` in code, ``YOUR ANSWER HERE`` in
markdown, indented like the ``BEGIN`` line; a solution cell without a region is replaced whole by
the stub; a region in a cell that is not marked as a solution is an error), without needing
nbgrader's database and course layout. It also clears the outputs and execution counts of the
solution cells, and the stored state of any widget that only those outputs showed. Every other
cell is left exactly as it was, outputs included.

``python -m tools.student`` writes ``build/student/NN_*.ipynb`` (the tutorial's code finds the
project's ``data/`` and ``runs/`` from there, so the copies run as they are).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import nbformat
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool, Unicode

from nhl.utils import project_root

from . import command
from .notebooks import _WIDGET_STATE, _WIDGET_VIEW, _widget_refs, notebook_paths

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
TEXT_STUB = "YOUR ANSWER HERE"
EXERCISES_HEADING = "## Exercises"


class SolutionRegionError(ValueError):
    """A solution region that is unclosed, nested, or in a cell not marked as a solution."""


def is_solution(cell) -> bool:
    """Whether a cell is an nbgrader solution cell (``metadata.nbgrader.solution``)."""
    return bool(cell.get("metadata", {}).get("nbgrader", {}).get("solution", False))


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def replace_solution_regions(source: str, stub: str) -> tuple[str, bool]:
    """``source`` with every BEGIN/END SOLUTION region replaced by ``stub`` (indented like the
    BEGIN line, the marker lines dropped); also whether there was a region."""
    lines = source.split("\n")
    out: list[str] = []
    inside = found = False
    for number, line in enumerate(lines, 1):
        if BEGIN in line:
            if inside:
                raise SolutionRegionError(f"line {number}: {BEGIN} inside a solution region")
            inside = found = True
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + stub_line for stub_line in stub.split("\n"))
        elif END in line:
            if not inside:
                raise SolutionRegionError(f"line {number}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise SolutionRegionError(f"unclosed solution region (no {END})")
    return "\n".join(out), found


class ClearSolutions(Preprocessor):
    """nbconvert preprocessor: remove solutions following nbgrader's solution-region convention.

    Use it as any nbconvert preprocessor (``ClearSolutions().preprocess(nb, {})``) or in an
    exporter's ``preprocessors`` list.
    """

    code_stub = Unicode(CODE_STUB, help="what replaces a solution region in a code cell").tag(config=True)
    text_stub = Unicode(TEXT_STUB, help="what replaces a solution region in a markdown cell").tag(config=True)
    clear_solution_outputs = Bool(True, help="clear the outputs of solution cells").tag(config=True)
    enforce_metadata = Bool(True, help="a region in a cell not marked as a solution is an error"
                            ).tag(config=True)

    def preprocess(self, nb, resources):
        self._removed_widgets: set[str] = set()
        nb, resources = super().preprocess(nb, resources)
        _drop_widget_state(nb, self._removed_widgets)
        return nb, resources

    def preprocess_cell(self, cell, resources, index):
        stub = self.code_stub if cell.cell_type == "code" else self.text_stub
        try:
            source, replaced = replace_solution_regions(_source(cell), stub)
        except SolutionRegionError as exc:
            raise SolutionRegionError(f"cell {index}: {exc}") from None
        solution = is_solution(cell)
        if replaced and not solution and self.enforce_metadata:
            raise SolutionRegionError(
                f"cell {index} has a solution region but no nbgrader metadata (solution: true)")
        if solution and not replaced:
            source = stub  # nbgrader: a solution cell without a region is replaced whole
        if solution or replaced:
            cell.source = source
            if cell.cell_type == "code" and self.clear_solution_outputs:
                for out in cell.get("outputs", []):
                    view = out.get("data", {}).get(_WIDGET_VIEW)
                    if view:
                        self._removed_widgets.add(view.get("model_id", ""))
                cell.outputs = []
                cell.execution_count = None
                cell.metadata.pop("execution", None)  # timings of the solution's run
        return cell, resources


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


def student_copy(nb):
    """A student copy of ``nb`` (a notebook node; not changed): solutions removed."""
    nb = copy.deepcopy(nb)
    ClearSolutions().preprocess(nb, {})
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
        target = out / path.name
        nbformat.write(copy_nb, target)
        written.append(target)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tools.student [--out DIR] [--notebooks DIR]``."""
    def action(args):
        for path in write_student_copies(args.out, args.notebooks):
            n = sum(1 for c in nbformat.read(path, as_version=4).cells if is_solution(c))
            print(f"{path}: {n} exercise{'s' if n != 1 else ''} to solve")

    return command(
        argv, "python -m tools.student",
        "Write student copies of the tutorial notebooks (solutions removed).",
        [(("--out",), dict(default=None, help="output folder (default build/student)")),
         (("--notebooks",), dict(default=None, help="source folder (default notebooks/)"))],
        action,
    )


if __name__ == "__main__":
    raise SystemExit(main())

"""Committed notebooks: executed top to bottom in order, in the full setting, without errors,
and free of absolute paths or machine-specific names."""

import json
import re
import socket
from pathlib import Path

import pytest

from tools.notebooks import notebook_paths

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = notebook_paths(ROOT / "notebooks")
ABSOLUTE = re.compile(r"(?<![\w.])(/work/|/root/|/home/\w|/tmp/|/Users/|/private/var/|[A-Z]:\\\\Users)")


def _text_of(output: dict) -> str:
    if output.get("output_type") == "stream":
        return "".join(output.get("text", ""))
    data = output.get("data", {})
    return "".join("".join(data[k]) if isinstance(data[k], list) else str(data[k])
                   for k in ("text/plain", "text/html", "text/markdown") if k in data)


def test_there_are_tutorial_notebooks():
    assert len(NOTEBOOKS) >= 6, "the tutorial notebooks 00-05 must be committed"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_executed_in_order_without_errors(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    counts = [c.get("execution_count") for c in code]
    assert None not in counts, f"{path.name}: some code cells were never executed"
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: not executed top to bottom once: {counts}"
    for cell in code:
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"{path.name}: error output {out.get('ename')}"
            assert "Traceback (most recent call last)" not in _text_of(out)
    first = "".join(_text_of(o) for o in code[0].get("outputs", []))
    assert "full setting" in first, f"{path.name}: committed outputs must come from the full setting"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_no_absolute_paths_or_machine_names(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    host = socket.gethostname()
    for i, cell in enumerate(nb["cells"]):
        texts = ["".join(cell["source"])] + [_text_of(o) for o in cell.get("outputs", [])]
        for text in texts:
            match = ABSOLUTE.search(text)
            assert match is None, f"{path.name} cell {i}: absolute path {match.group(0)!r}"
            if len(host) > 3:
                assert host not in text, f"{path.name} cell {i}: machine name {host!r}"


# --------------------------------------------------------------------------------------------
# course structure: what you will learn, a summary that quotes the outputs, exercises, next link

NUMBER = re.compile(r"(?<![\w.^_{])[-+\u2212]?(\d[\d,]*(?:\.\d+)?)")


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _outputs_text(cells: list[dict]) -> str:
    return "\n".join(_text_of(o) for c in cells if c["cell_type"] == "code" for o in c.get("outputs", []))


def summary_numbers(text: str) -> list[str]:
    """The numbers a summary quotes: links, notebook references, LaTeX and inline code are not."""
    text = re.sub(r"\[[^\]]*\]\([^)]*\)", " ", text)  # [text](target)
    text = re.sub(r"(?i)\bnotebooks?\s+\d\d(?:\s*(?:,|and|-|\u2013)\s*\d\d)*", " ", text)
    text = re.sub(r"\$\$.*?\$\$|\$[^$]*\$", " ", text, flags=re.S)  # math
    text = re.sub(r"`[^`]*`", " ", text)  # code
    text = re.sub(r"^#+ .*$", " ", text, flags=re.M)  # headings (notebook numbers)
    return [m.group(1).rstrip(",") for m in NUMBER.finditer(text)]


def test_summary_numbers_helper():
    text = ("## Summary\nmAP 0.734 at 16 bits (+0.012, 69,000 items); see [05](05_x.ipynb), $2^{8}$, "
            "`lr=3e-3`, notebooks 02 and 03.")
    assert summary_numbers(text) == ["0.734", "16", "0.012", "69,000"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_opens_with_goals_prerequisites_and_time(path):
    first = _source(_cells(path)[0])
    for needed in ("What you will learn", "Prerequisites", "Time"):
        assert needed in first, f"{path.name}: the first cell must say '{needed}'"
    assert "quick" in first.lower(), f"{path.name}: give the time in quick mode too"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_summary_quotes_only_numbers_the_notebook_printed(path):
    cells = _cells(path)
    summaries = [c for c in cells if c["cell_type"] == "markdown" and _source(c).lstrip().startswith("## Summary")]
    assert len(summaries) == 1, f"{path.name}: needs exactly one markdown cell starting with '## Summary'"
    outputs = _outputs_text(cells)
    missing = [n for n in summary_numbers(_source(summaries[0]))
               if n not in outputs and n.replace(",", "") not in outputs]
    assert not missing, f"{path.name}: the summary quotes numbers that no output shows: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_exercises_have_nbgrader_solutions_and_a_next_link(path):
    cells = _cells(path)
    starts = [i for i, c in enumerate(cells) if _source(c).lstrip().startswith("## Exercises")]
    assert starts, f"{path.name}: needs a '## Exercises' section"
    after = cells[starts[0]:]
    solutions = [c for c in after if "BEGIN SOLUTION" in _source(c)]
    assert solutions, f"{path.name}: exercises need worked solutions (### BEGIN SOLUTION ... ### END SOLUTION)"
    for c in solutions:
        src = _source(c)
        assert src.count("BEGIN SOLUTION") == src.count("END SOLUTION"), f"{path.name}: unclosed solution region"
        meta = c.get("metadata", {}).get("nbgrader", {})
        assert meta.get("solution") is True and meta.get("grade_id"), (
            f"{path.name}: solution cells carry nbgrader metadata (solution: true, a grade_id)")
    ids = [c["metadata"]["nbgrader"]["grade_id"] for c in cells if "nbgrader" in c.get("metadata", {})]
    assert len(ids) == len(set(ids)), f"{path.name}: nbgrader grade_ids must be unique"
    index = NOTEBOOKS.index(path)
    last = _source(cells[-1])
    if index + 1 < len(NOTEBOOKS):
        assert NOTEBOOKS[index + 1].name in last, f"{path.name}: the last cell must link the next notebook"


def _committed_text_files() -> list[Path]:
    import subprocess

    try:
        listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: the usual folders
        listed = [str(p.relative_to(ROOT)) for d in ("benchmarks", "results", "docs")
                  for p in (ROOT / d).rglob("*") if p.is_file()] + ["README.md"]
    keep = (".md", ".json", ".csv", ".toml", ".yml", ".txt")
    return [ROOT / f for f in listed if f.endswith(keep) and (ROOT / f).is_file()]


def test_no_machine_paths_in_committed_files():
    """Tables, stamps, benchmark reports and docs name files relative to the project."""
    found = []
    for path in _committed_text_files():
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if ABSOLUTE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:120]}")
    assert not found, "machine paths in committed files:\n" + "\n".join(found[:10])

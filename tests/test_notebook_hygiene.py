"""Committed notebooks: executed top to bottom in order, in the full setting, without errors,
and free of absolute paths or machine-specific names."""

import json
import re
import socket
from pathlib import Path

import pytest

from nhl.tutorial import notebook_paths

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

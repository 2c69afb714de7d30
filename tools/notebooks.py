"""Execute the tutorial notebooks: ``python -m tools.notebooks`` (what ``make run`` runs).

In order, each in a fresh kernel (cwd = ``notebooks/``), with a bar over the notebooks (elapsed
time and an estimate from the recorded run times in ``notebooks/timings.json``) and one over the
cells of the current notebook; ends with a table of what each notebook did (trained or loaded
its runs from the cache). ``--in-place`` writes the executed notebooks over ``notebooks/`` (how
the committed outputs are made, ``make notebooks``); ``--quick`` is the quick setting
(``NHL_QUICK=1``). Progress bars in the stored outputs are reduced to their final line.
"""

from __future__ import annotations

import html
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from nhl.utils import atomic_write_text, project_root, runs_dir

from . import command


def notebook_paths(folder: str | Path | None = None) -> list[Path]:
    """The tutorial notebooks in reading order (``NN_name.ipynb``)."""
    folder = Path(folder) if folder else project_root() / "notebooks"
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


# --------------------------------------------------------------------------------------------
# Progress bars in stored outputs. nhl.train.fit shows a tqdm.auto bar per run; executed by
# nbclient that is a widget whose stored text is its first state ("0%| 0/15") and whose live
# state sits in the notebook's metadata, or (text tqdm) one stderr output per update.
# tidy_progress keeps one final line per bar and drops bars that were cleared (leave=False).
_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


_WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


_TQDM_TEXT = re.compile(r"(?:\d+/\d+|\d+(?:\.\d+)?\w*) \[\d+:\d\d")


_MODEL_REF = re.compile(r"IPY_MODEL_(\w+)")


def _widget_refs(state: dict, model_id: str) -> set[str]:
    """``model_id`` and every model it refers to (children, layout, style), recursively."""
    seen, todo = set(), [model_id]
    while todo:
        mid = todo.pop()
        if mid in seen or mid not in state:
            continue
        seen.add(mid)
        todo += _MODEL_REF.findall(json.dumps(state[mid].get("state", {})))
    return seen


def _tqdm_widget_line(state: dict, model_id: str) -> str | None:
    """The final text of a tqdm.notebook bar from the stored widget state; ``""`` for a bar that
    was cleared (``leave=False``); None when ``model_id`` is not a tqdm bar."""
    box = state.get(model_id, {})
    children = [m for m in _MODEL_REF.findall(json.dumps(box.get("state", {}).get("children", [])))]
    names = [state.get(c, {}).get("model_name") for c in children]
    if box.get("model_name") != "HBoxModel" or len(children) != 3 or names[0] != "HTMLModel" \
            or names[2] != "HTMLModel" or not str(names[1]).endswith("ProgressModel"):
        return None
    layout = _MODEL_REF.findall(str(box["state"].get("layout", "")))
    layout_state = state.get(layout[0], {}).get("state", {}) if layout else {}
    if layout_state.get("visibility") == "hidden" or layout_state.get("display") == "none":
        return ""
    left, bar, right = (state[c]["state"] for c in children)

    def text(widget: dict) -> str:
        return html.unescape(str(widget.get("value", ""))).replace("\u2007", " ").replace("\xa0", " ")

    total = float(bar.get("max") or 0)
    filled = int(10 * min(max(float(bar.get("value") or 0) / total, 0.0), 1.0)) if total > 0 else 0
    return f"{text(left)}|{'█' * filled}{' ' * (10 - filled)}|{text(right)}".strip()


def _collapse_carriage_returns(text: str) -> str:
    """What a terminal would show: on each line only what follows its last ``\r``."""
    lines = text.split("\n")
    return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in lines)


def tidy_progress(nb) -> int:
    """Collapse the progress bars in an executed notebook's outputs, in place.

    A tqdm widget becomes one stdout line with its final state (``dhn nested: 100%|##########|
    15/15 [...]``) and its widget state is removed; a bar that was cleared (``leave=False``)
    disappears. Consecutive stream outputs of one name are merged and carriage-return updates
    (text tqdm) reduced to their last state. Other widgets (the explorers) are untouched.
    Returns the number of widget bars collapsed.
    """
    widgets = nb.get("metadata", {}).get("widgets", {})
    state = widgets.get(_WIDGET_STATE, {}).get("state", {})
    removed: set[str] = set()
    collapsed = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            view = data.get(_WIDGET_VIEW)
            plain = data.get("text/plain", "")
            plain = "".join(plain) if isinstance(plain, list) else str(plain)
            if view is not None and _TQDM_TEXT.search(plain):
                model_id = view.get("model_id", "")
                line = _tqdm_widget_line(state, model_id)
                if line is None and model_id in state:
                    outputs.append(out)  # some other widget that happens to print like tqdm
                    continue
                collapsed += 1
                removed |= _widget_refs(state, model_id)
                line = plain.strip() if line is None else line  # no state stored: its text
                if line:
                    out = {"output_type": "stream", "name": "stdout", "text": line + "\n"}
                else:
                    continue
            if out.get("output_type") == "stream" and outputs \
                    and outputs[-1].get("output_type") == "stream" \
                    and outputs[-1].get("name") == out.get("name"):
                outputs[-1]["text"] = "".join(outputs[-1]["text"]) + "".join(out["text"])
                continue
            outputs.append(out)
        for out in outputs:
            if out.get("output_type") == "stream":
                text = "".join(out["text"])
                if "\r" in text:
                    out["text"] = _collapse_carriage_returns(text)
        cell["outputs"] = _as_nodes(outputs)
    for mid in removed:
        state.pop(mid, None)
    if removed and not state:
        nb["metadata"].pop("widgets", None)
    return collapsed


def _as_nodes(outputs: list) -> list:
    from nbformat import from_dict

    return [from_dict(o) for o in outputs]


def _code_cells(nb) -> int:
    return sum(1 for c in nb.cells if c.cell_type == "code" and c.source.strip())


def execute_notebook(path: str | Path, out: str | Path | None = None, quick: bool = False,
                     timeout: int = 1200, on_cell: Callable[[int], object] | None = None,
                     kernel_log: str | Path | None = None):
    """Execute a notebook top to bottom in a fresh kernel (cwd = its folder) and return it.

    ``out``: where to write the executed copy (``.ipynb``); an ``.html`` beside it when the
    suffix is ``.html``. ``on_cell(index)`` is called after each code cell. ``kernel_log``: a
    file for the kernel process's own stderr (its start-up warnings), which otherwise goes to
    this process's stderr. Progress bars in the outputs are reduced to their final line
    (:func:`tidy_progress`). Raises ``nbclient`` 's CellExecutionError on the first failing cell.
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    env_quick = os.environ.get("NHL_QUICK")
    os.environ["NHL_QUICK"] = "1" if quick else "0"
    hooks = {}
    if on_cell is not None:
        hooks["on_cell_executed"] = lambda cell, cell_index, execute_reply: on_cell(cell_index)
    log = None
    if kernel_log is not None:
        Path(kernel_log).parent.mkdir(parents=True, exist_ok=True)
        log = open(kernel_log, "w", encoding="utf-8")  # closed in the finally below
    try:
        NotebookClient(
            nb, timeout=timeout, kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}}, **hooks,
        ).execute(**({"stderr": log} if log is not None else {}))
    finally:
        if log is not None:
            log.close()
        if env_quick is None:
            os.environ.pop("NHL_QUICK", None)
        else:
            os.environ["NHL_QUICK"] = env_quick
    tidy_progress(nb)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".html":
            from nbconvert import HTMLExporter

            body, _ = HTMLExporter().from_notebook_node(nb)
            out.write_text(body, encoding="utf-8")
        else:
            nbformat.write(nb, out)
    return nb


# --------------------------------------------------------------------------------------------
# Recorded run times (the estimate of make run) and what a notebook trained.
def timings_path(folder: str | Path | None = None) -> Path:
    """``notebooks/timings.json``: seconds per notebook, mode (full/quick) and cache state."""
    return (Path(folder) if folder else project_root() / "notebooks") / "timings.json"


def load_timings(path: str | Path | None = None) -> dict:
    """``{mode: {notebook: {"trained": s, "cached": s}}}``; empty when there is no record."""
    path = Path(path) if path is not None else timings_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def record_timing(path: str | Path | None, mode: str, notebook: str, kind: str,
                  seconds: float) -> None:
    """Store the measured ``seconds`` of ``notebook`` (``kind``: "trained" or "cached")."""
    path = Path(path) if path is not None else timings_path()
    data = load_timings(path)
    data.setdefault(mode, {}).setdefault(notebook, {})[kind] = round(float(seconds), 1)
    data[mode] = dict(sorted(data[mode].items()))
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def estimate_seconds(timings: dict, mode: str, notebook: str, warm: bool) -> float | None:
    """The recorded time of ``notebook``: of a run that loaded its training from the cache when
    ``warm`` (the run cache is not empty), else of one that trained; the other if only it is known."""
    entry = timings.get(mode, {}).get(notebook, {})
    first, second = ("cached", "trained") if warm else ("trained", "cached")
    value = entry.get(first, entry.get(second))
    return float(value) if value is not None else None


def stored_seconds(nb) -> float | None:
    """How long a notebook's stored outputs took to make: from its first cell's start to its
    last cell's reply (the cell timings nbclient records), or None without them."""
    from datetime import datetime

    stamps = []
    for cell in nb.get("cells", []):
        execution = cell.get("metadata", {}).get("execution", {})
        for key in ("iopub.execute_input", "shell.execute_reply"):
            if key in execution:
                try:
                    stamps.append(datetime.fromisoformat(str(execution[key]).replace("Z", "+00:00")))
                except ValueError:
                    pass
    if len(stamps) < 2:
        return None
    return (max(stamps) - min(stamps)).total_seconds()


def cache_files(root: str | Path | None = None) -> set[str]:
    """Relative paths of the files in the run cache (``runs/``), locks and checkpoints aside."""
    root = Path(root) if root is not None else runs_dir()
    if not root.is_dir():
        return set()
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and p.name != ".lock" and not p.name.startswith(("checkpoint", "."))}


def describe_training(new_files: set[str]) -> tuple[str, str]:
    """``(kind, text)`` from the run-cache files a notebook added: ``("cached", "loaded from
    cache")`` when none, else ``("trained", "trained 3 runs, 1 recording")``."""
    run_dirs = {str(Path(f).parent) for f in new_files if Path(f).name == "metrics.json"}
    others = {f for f in new_files if str(Path(f).parent) not in run_dirs}
    if not run_dirs and not others:
        return "cached", "loaded from cache"
    parts = []
    if run_dirs:
        parts.append(f"{len(run_dirs)} run{'s' * (len(run_dirs) != 1)}")
    if others:
        parts.append(f"{len(others)} recording file{'s' * (len(others) != 1)}")
    return "trained", "trained " + ", ".join(parts)


def _clock(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


@dataclass
class NotebookRun:
    """One line of :func:`run_all`'s final table."""

    notebook: str
    seconds: float
    training: str
    outputs: list[str] = field(default_factory=list)


class _Ticker:
    """Refresh the bars every ``every`` seconds while a long cell runs (elapsed, estimate)."""

    def __init__(self, update: Callable[[], None], every: float):
        self.update, self.every = update, every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self.stop.wait(self.every):
            self.update()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def time_left(guesses: Sequence[float | None], spent: float) -> float | None:
    """Seconds left by the recorded times: ``guesses`` of the current notebook and those after
    it, ``spent`` seconds into the current one (never below the later notebooks' sum). None when
    a notebook has no record."""
    if any(g is None for g in guesses):
        return None
    if not guesses:
        return 0.0
    return float(sum(guesses)) - min(max(spent, 0.0), float(guesses[0]))


def run_all(out: str | Path = "build", quick: bool = False, in_place: bool = False,
            only: Sequence[str] = (), progress: bool = True,
            timings: str | Path | None = None, record: bool = True,
            execute: Callable | None = None, folder: str | Path | None = None) -> list[NotebookRun]:
    """Execute every notebook in order; write executed copies (and HTML) to ``out``.

    With ``in_place`` the executed notebooks replace the sources (how the committed outputs are
    made). Shows a bar over the notebooks (elapsed time and an estimate from the recorded run
    times in ``timings``, default ``notebooks/timings.json``, else from the cell timings stored
    in a notebook's committed outputs) with one over the cells of the current notebook, then prints a table: notebook, seconds, whether it trained or loaded its
    runs from the cache (files it added to ``runs/``), output paths. With ``record`` the measured
    times are written back to ``timings``. ``folder``: where the notebooks are (default
    ``notebooks/``); ``execute``: replaces :func:`execute_notebook` (tests). Returns the rows.
    """
    import nbformat
    from nbconvert import HTMLExporter
    from tqdm.auto import tqdm

    execute = execute or execute_notebook
    out = Path(out)
    paths = [p for p in notebook_paths(folder)
             if not only or any(p.name.startswith(o) for o in only)]
    mode = "quick" if quick else "full"
    recorded = load_timings(timings)
    before = cache_files()
    warm = any(Path(f).name == "metrics.json" for f in before)
    guesses = {p.name: estimate_seconds(recorded, mode, p.name, warm) for p in paths}
    for p in paths:  # never run here: the committed outputs' own cell timings (full setting)
        if guesses[p.name] is None and not quick:
            guesses[p.name] = stored_seconds(nbformat.read(p, as_version=4))
    rows: list[NotebookRun] = []
    outer = tqdm(total=len(paths), desc="notebooks", unit="nb", disable=not progress,
                 bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
    state = {"index": 0, "t0": time.perf_counter()}

    def remaining() -> str:
        if state.get("done"):
            return "all done"
        rest = paths[state["index"]:]
        left = time_left([guesses[p.name] for p in rest], time.perf_counter() - state["t0"])
        if left is None:
            return "no recorded time for " + ", ".join(
                p.name[:2] for p in rest if guesses[p.name] is None)
        return f"about {_clock(left)} left by the recorded times"

    def refresh():
        outer.set_postfix_str(remaining(), refresh=False)
        outer.refresh()
        if inner is not None:
            inner.refresh()

    inner = None
    every = 1.0 if sys.stderr.isatty() else 30.0
    try:
        with _Ticker(refresh, every) if progress else nullcontext():
            for index, path in enumerate(paths):
                state.update(index=index, t0=time.perf_counter())
                n_cells = _code_cells(nbformat.read(path, as_version=4))
                inner = tqdm(total=n_cells, desc=path.stem, unit="cell", leave=False,
                             disable=not progress, position=1,
                             bar_format="  {desc}: {percentage:3.0f}%|{bar:20}| "
                                        "{n_fmt}/{total_fmt} cells [{elapsed}]")
                refresh()
                cache_before = cache_files()
                target = path if in_place else out / path.name
                nb = execute(path, target, quick=quick, on_cell=lambda _i, bar=inner: bar.update(1),
                             kernel_log=out / "logs" / f"{path.stem}.kernel.log")
                body, _ = HTMLExporter().from_notebook_node(nb)
                html_path = out / path.with_suffix(".html").name
                html_path.parent.mkdir(parents=True, exist_ok=True)
                html_path.write_text(body, encoding="utf-8")
                seconds = time.perf_counter() - state["t0"]
                kind, training = describe_training(cache_files() - cache_before)
                inner.close()
                inner = None
                rows.append(NotebookRun(path.name, seconds, training,
                                        [_display(target), _display(html_path)]))
                if record:
                    record_timing(timings, mode, path.name, kind, seconds)
                state["done"] = index == len(paths) - 1
                outer.set_postfix_str(remaining(), refresh=False)
                outer.update(1)
                tqdm.write(f"{path.name}: {seconds:.1f} s, {training}")
    finally:
        if inner is not None:
            inner.close()
        outer.close()
        if rows:
            print(summary_table(rows))
    return rows


def summary_table(rows: Sequence[NotebookRun]) -> str:
    """The table :func:`run_all` ends with (and a total line)."""
    table = [("notebook", "seconds", "training", "outputs")]
    table += [(r.notebook, f"{r.seconds:.1f}", r.training, ", ".join(r.outputs)) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    lines = ["  ".join(cell.rjust(w) if i == 1 else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    total = sum(r.seconds for r in rows)
    return "\n".join(lines) + f"\nall {len(rows)} notebooks: {total:.1f} s ({_clock(total)})"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tools.notebooks [--quick] [--in-place] [--no-progress] [prefixes...]``."""
    from nbclient.exceptions import CellExecutionError

    return command(
        argv, "python -m tools.notebooks",
        "Execute the tutorial notebooks in order (full setting unless --quick), with progress over "
        "notebooks and cells, and end with a table of what each did.",
        [(("prefixes",), dict(nargs="*", help="only the notebooks whose names start with these (e.g. 00 07)")),
         (("--quick",), dict(action="store_true", help="the quick setting (NHL_QUICK=1): small data, few epochs")),
         (("--in-place",), dict(action="store_true", help="write the executed notebooks over notebooks/ "
                                "(how the committed outputs are made)")),
         (("--no-progress",), dict(action="store_true", help="no progress bars"))],
        lambda a: run_all(quick=a.quick, in_place=a.in_place, progress=not a.no_progress, only=a.prefixes),
        failures=(CellExecutionError,), failure_message="error: a notebook cell failed:\n{}",
    )


if __name__ == "__main__":
    raise SystemExit(main())

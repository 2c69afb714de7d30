"""``make run`` (tools.notebooks.run_all): bars, recorded times and the final table; stored
notebook outputs without progress-bar spam (tidy_progress). No kernel except in the last test."""

import json
from pathlib import Path

import nbformat
import pytest

from tools import notebooks as tutorial

VIEW = "application/vnd.jupyter.widget-view+json"
STATE = "application/vnd.jupyter.widget-state+json"


# ------------------------------------------------------------------ tidy_progress
def tqdm_widget(state: dict, mid: str, left: str, value: float, total: float, right: str,
                hidden: bool = False) -> dict:
    """What tqdm.notebook leaves in a notebook: an HBox (HTML, FloatProgress, HTML) in the
    widget state and a display output whose text is the bar's *first* state."""
    ids = [f"{mid}{k}" for k in ("l", "p", "r", "lay", "sty")]
    state[mid] = {"model_name": "HBoxModel", "state": {
        "children": [f"IPY_MODEL_{i}" for i in ids[:3]], "layout": f"IPY_MODEL_{ids[3]}"}}
    state[ids[0]] = {"model_name": "HTMLModel", "state": {"value": left, "style": f"IPY_MODEL_{ids[4]}"}}
    state[ids[1]] = {"model_name": "FloatProgressModel", "state": {"value": value, "max": total}}
    state[ids[2]] = {"model_name": "HTMLModel", "state": {"value": right}}
    state[ids[3]] = {"model_name": "LayoutModel", "state": {"visibility": "hidden" if hidden else None}}
    state[ids[4]] = {"model_name": "HTMLStyleModel", "state": {}}
    first = left.split(":")[0] + ":   0%|          | 0/15 [00:00<?, ?it/s]"
    return {"output_type": "display_data", "metadata": {},
            "data": {"text/plain": first, VIEW: {"version_major": 2, "version_minor": 0, "model_id": mid}}}


def notebook(cells_outputs, state) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    for outputs in cells_outputs:
        cell = nbformat.v4.new_code_cell("pass")
        cell.outputs = [nbformat.from_dict(o) for o in outputs]
        nb.cells.append(cell)
    nb.metadata["widgets"] = {STATE: {"version_major": 2, "version_minor": 0, "state": state}}
    return nb


def stream(text, name="stdout"):
    return {"output_type": "stream", "name": name, "text": text}


def test_tqdm_widgets_become_their_final_line(tmp_path):
    state = {}
    explorer = {"output_type": "display_data", "metadata": {},
                "data": {"text/plain": "VBox(children=(Dropdown(...),))",
                         VIEW: {"version_major": 2, "version_minor": 0, "model_id": "ex"}}}
    state["ex"] = {"model_name": "VBoxModel", "state": {"children": []}}
    nb = notebook([
        [tqdm_widget(state, "a", "dhn\u2007nested:\u2007100%", 15.0, 15.0,
                     "\u200715/15\u2007[01:02&lt;00:00,\u20074.1s/it,\u2007best=14]"),
         stream("done\n")],
        [tqdm_widget(state, "b", "encode:\u200750%", 1.0, 2.0, "\u20071/2", hidden=True),
         stream("after\n")],
        [explorer],
    ], state)
    assert tutorial.tidy_progress(nb) == 2
    first, second, third = (c.outputs for c in nb.cells)
    assert first == [nbformat.from_dict(stream(
        "dhn nested: 100%|██████████| 15/15 [01:02<00:00, 4.1s/it, best=14]\ndone\n"))]
    assert second == [nbformat.from_dict(stream("after\n"))]  # a cleared bar leaves nothing
    assert third[0]["data"][VIEW]["model_id"] == "ex"  # other widgets stay, with their state
    assert set(nb.metadata["widgets"][STATE]["state"]) == {"ex"}
    nbformat.validate(nb)
    nbformat.write(nb, tmp_path / "x.ipynb")  # still a valid notebook file


def test_partial_bar_and_state_removed_entirely():
    state = {}
    nb = notebook([[tqdm_widget(state, "a", "csq\u2007single-8:\u2007\u200740%", 6.0, 15.0, "\u20076/15")]], state)
    tutorial.tidy_progress(nb)
    assert nb.cells[0].outputs[0]["text"] == "csq single-8:  40%|████      | 6/15\n"
    assert "widgets" not in nb.metadata  # nothing left in the widget state


def test_bar_without_stored_state_keeps_its_text():
    nb = notebook([[{"output_type": "display_data", "metadata": {}, "data": {
        "text/plain": "x: 100%|##########| 3/3 [00:01<00:00, 2.9it/s]",
        VIEW: {"version_major": 2, "version_minor": 0, "model_id": "gone"}}}]], {})
    tutorial.tidy_progress(nb)
    assert nb.cells[0].outputs == [nbformat.from_dict(stream("x: 100%|##########| 3/3 [00:01<00:00, 2.9it/s]\n"))]


def test_text_bars_collapse_to_their_last_state():
    updates = [stream(f"\rtext: {i}/3 [00:0{i}<00:00]", "stderr") for i in range(4)]
    nb = notebook([[stream("start\n"), *updates, stream("\n", "stderr"), stream("end\n")]], {})
    tutorial.tidy_progress(nb)
    assert [(o["name"], o["text"]) for o in nb.cells[0].outputs] == [
        ("stdout", "start\n"), ("stderr", "text: 3/3 [00:03<00:00]\n"), ("stdout", "end\n")]


# ------------------------------------------------------------------ recorded times
def test_timings_record_and_estimate(tmp_path):
    path = tmp_path / "timings.json"
    assert tutorial.load_timings(path) == {}
    tutorial.record_timing(path, "full", "01_b.ipynb", "trained", 126.04)
    tutorial.record_timing(path, "full", "00_a.ipynb", "cached", 5.0)
    tutorial.record_timing(path, "full", "01_b.ipynb", "cached", 9.96)
    data = json.loads(path.read_text())
    assert data == {"full": {"00_a.ipynb": {"cached": 5.0}, "01_b.ipynb": {"cached": 10.0, "trained": 126.0}}}
    assert list(data["full"]) == ["00_a.ipynb", "01_b.ipynb"]
    assert tutorial.estimate_seconds(data, "full", "01_b.ipynb", warm=False) == 126.0
    assert tutorial.estimate_seconds(data, "full", "01_b.ipynb", warm=True) == 10.0
    assert tutorial.estimate_seconds(data, "full", "00_a.ipynb", warm=False) == 5.0  # the one known
    assert tutorial.estimate_seconds(data, "quick", "00_a.ipynb", warm=False) is None


def test_stored_seconds_from_cell_timings():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("1"), nbformat.v4.new_code_cell("2")]
    assert tutorial.stored_seconds(nb) is None
    nb.cells[0].metadata["execution"] = {"iopub.execute_input": "2026-11-27T23:05:33.980038Z",
                                         "shell.execute_reply": "2026-11-27T23:05:35.000000Z"}
    nb.cells[1].metadata["execution"] = {"iopub.execute_input": "2026-11-27T23:05:35.100000Z",
                                         "shell.execute_reply": "2026-11-27T23:06:39.065000Z"}
    assert tutorial.stored_seconds(nb) == pytest.approx(65.085, abs=1e-3)


def test_time_left():
    assert tutorial.time_left([100.0, 20.0], spent=30.0) == 90.0
    assert tutorial.time_left([100.0, 20.0], spent=500.0) == 20.0  # overrun: the rest remains
    assert tutorial.time_left([10.0, None], spent=0.0) is None
    assert tutorial.time_left([], spent=3.0) == 0.0


def test_describe_training():
    assert tutorial.describe_training(set()) == ("cached", "loaded from cache")
    new = {"ds/m/nested-a/metrics.json", "ds/m/nested-a/model.pt", "ds/m/single-8-b/metrics.json",
           "ds/m/old-run/recording-every10.csv"}
    assert tutorial.describe_training(new) == ("trained", "trained 2 runs, 1 recording file")


# ------------------------------------------------------------------ run_all without a kernel
@pytest.fixture
def project(tmp_path, monkeypatch):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name, n_code in (("00_first", 2), ("01_second", 3)):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_markdown_cell("# hi")] + [
            nbformat.v4.new_code_cell(f"x = {i}") for i in range(n_code)] + [nbformat.v4.new_code_cell("  ")]
        nbformat.write(nb, folder / f"{name}.ipynb")
    runs = tmp_path / "runs"
    monkeypatch.setenv("NHL_RUNS", str(runs))
    return folder, runs


def test_run_all_table_timings_and_cache_detection(project, tmp_path, capsys):
    folder, runs = project
    cells = {}

    def fake_execute(path, target, quick, on_cell, kernel_log=None):
        nb = nbformat.read(path, as_version=4)
        code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]
        for i in code:
            on_cell(i)
        cells[path.name] = len(code)
        if path.name.startswith("01"):  # this one trains a run
            run = runs / "fashion-mnist" / "dhn" / "nested-nhl-seed0-abc"
            run.mkdir(parents=True)
            (run / "metrics.json").write_text("{}")
            (run / ".lock").write_text("")
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        return nb

    timings = tmp_path / "timings.json"
    rows = tutorial.run_all(out=tmp_path / "build", folder=folder, timings=timings,
                            execute=fake_execute, progress=False)
    assert cells == {"00_first.ipynb": 2, "01_second.ipynb": 3}
    assert [(r.notebook, r.training) for r in rows] == [
        ("00_first.ipynb", "loaded from cache"), ("01_second.ipynb", "trained 1 run")]
    for r in rows:
        assert all(Path(o).exists() for o in r.outputs)
        assert r.outputs[1].endswith(".html")
    recorded = json.loads(timings.read_text())["full"]
    assert set(recorded["00_first.ipynb"]) == {"cached"} and set(recorded["01_second.ipynb"]) == {"trained"}
    out = capsys.readouterr().out
    header, rule, first, second, total = out.strip().splitlines()[-5:]
    assert header.split() == ["notebook", "seconds", "training", "outputs"]
    assert "00_first.ipynb" in first and "loaded from cache" in first
    assert "01_second.ipynb" in second and "trained 1 run" in second and "01_second.html" in second
    assert total.startswith("all 2 notebooks:")


def test_run_all_stops_at_a_failing_notebook_after_its_table(project, tmp_path, capsys):
    folder, _ = project

    def failing(path, target, quick, on_cell, kernel_log=None):
        if path.name.startswith("01"):
            raise RuntimeError("cell 2 failed")
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nbformat.read(path, as_version=4), target)
        return nbformat.read(path, as_version=4)

    timings = tmp_path / "t.json"
    with pytest.raises(RuntimeError, match="cell 2 failed"):
        tutorial.run_all(out=tmp_path / "build", folder=folder, timings=timings, quick=True,
                         execute=failing, progress=False)
    assert list(json.loads(timings.read_text())["quick"]) == ["00_first.ipynb"]
    assert "00_first.ipynb" in capsys.readouterr().out


def test_run_all_progress_bars_show_the_estimate(project, tmp_path, capsys):
    folder, _ = project
    timings = tmp_path / "timings.json"
    tutorial.record_timing(timings, "full", "00_first.ipynb", "trained", 70.0)
    tutorial.record_timing(timings, "full", "01_second.ipynb", "trained", 65.0)

    def quiet(path, target, quick, on_cell, kernel_log=None):
        nb = nbformat.read(path, as_version=4)
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        return nb

    tutorial.run_all(out=tmp_path / "build", folder=folder, timings=timings, execute=quiet,
                     record=False)
    err = capsys.readouterr().err
    assert "notebooks:" in err and "2:15 left by the recorded times" in err  # 70 s + 65 s


# ------------------------------------------------------------------ one real kernel
@pytest.mark.notebook
def test_executed_notebook_keeps_one_line_per_bar(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(
        "from tqdm.auto import tqdm\n"
        "for _ in tqdm(range(4), desc='dhn nested'):\n    pass\n"
        "for _ in tqdm(range(4), desc='cleared', leave=False):\n    pass\n"
        "from tqdm import tqdm as text_tqdm\n"
        "for _ in text_tqdm(range(30), desc='text', mininterval=0):\n    pass\n"
        "print('done')")]
    path = tmp_path / "bars.ipynb"
    nbformat.write(nb, path)
    out = tmp_path / "out.ipynb"
    tutorial.execute_notebook(path, out, quick=True, kernel_log=tmp_path / "kernel.log")
    stored = json.loads(out.read_text())
    outputs = stored["cells"][0]["outputs"]
    assert {o["output_type"] for o in outputs} == {"stream"}  # no widget displays left
    assert "widgets" not in stored["metadata"]

    def joined(name):  # stdout and stderr arrive in any order; each in its own order
        return "".join("".join(o["text"]) for o in outputs if o["name"] == name)

    stdout, stderr = joined("stdout"), joined("stderr")
    assert stdout.startswith("dhn nested: 100%|██████████| 4/4") and stdout.endswith("done\n")
    assert "cleared" not in stdout + stderr
    assert "\r" not in stderr and stderr.strip().startswith("text: 100%")
    assert stderr.count("text:") == 1  # the last state only, not 30 updates

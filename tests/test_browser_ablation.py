"""The ablation explorer in a real browser: JupyterLab + headless Chromium (Playwright).

Starts JupyterLab on a free localhost port (quick mode, news and update checks off, autosave
off; the helpers of ``test_browser.py``), opens ``notebooks/04_distillation_ablation.ipynb``,
runs all cells from the Run menu, waits for the ablation explorer
(``.nhl-ablation .nhl-ablation-values``) over the converged ablation table and its note on the
regime and seeds (``.nhl-ablation-note``), moves the code-length slider one step with the
keyboard and picks another base method in the method dropdown (its options read from the table),
and checks after each that the widget redrew (its ``data-bits`` / ``data-method`` and
``data-values`` attributes changed) and still names the regime. A
screenshot goes to ``build/ablation-explorer.png``. Skipped when Chromium or Playwright is
missing, except under CI (``CI=true``), where that is a failure.

What the notebook must do: display ``AblationExplorer(...).widget`` (:mod:`nhl.tutorial.ablation_explorer`)
in some cell, over a table with more than one code length (and, for the dropdown step, more than
one method for the initial dataset), and run top to bottom without errors in quick mode.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # under any pytest import mode
from test_browser import (  # noqa: E402
    _ALL_CELLS_RAN,
    CHROMIUM,
    CHROMIUM_ARGS,
    START_TIMEOUT_S,
    _free_port,
    _requirements_or_skip,
    _stop,
    _wait_for_server,
    _write_settings,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "04_distillation_ablation.ipynb"
SCREENSHOT = "ablation-explorer.png"
RUN_TIMEOUT_S = 480  # all cells of notebook 04 run (it trains its quick-mode probe runs)
CHANGE_TIMEOUT_S = 60  # the widget redrawn after a control changed
WIDGET = ".nhl-ablation"
VALUES = ".nhl-ablation .nhl-ablation-values"  # the live widget's values (not a snapshot)
NOTE = ".nhl-ablation .nhl-ablation-values .nhl-ablation-note"  # regime, epochs and seeds

pytestmark = pytest.mark.browser

_CHANGED = """([selector, name, old]) => {
    const e = document.querySelector(selector);
    return e !== null && e.getAttribute(name) !== old;
}"""


def _run_all_cells(page, timeout_s: float = RUN_TIMEOUT_S) -> None:
    """Wait for the kernel, then Run > Run All Cells, and wait until every code cell ran."""
    status = page.locator("#jp-main-statusbar .jp-StatusBar-TextItem", has_text="Idle").first
    status.wait_for(timeout=START_TIMEOUT_S * 1000)
    page.locator(".jp-Notebook .jp-Cell").first.click()  # the notebook has focus: Run All applies
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
    page.wait_for_function(_ALL_CELLS_RAN, timeout=timeout_s * 1000, polling=500)


def _attrs(page) -> dict[str, str | None]:
    values = page.locator(VALUES).first
    return {name: values.get_attribute(f"data-{name}")
            for name in ("dataset", "method", "bits", "metric", "lengths", "values")}


def _wait_changed(page, name: str, old: str | None) -> None:
    page.wait_for_function(_CHANGED, arg=[VALUES, f"data-{name}", old],
                           timeout=CHANGE_TIMEOUT_S * 1000, polling=250)


def _change_length_and_method(page, build: Path, screenshot: str = SCREENSHOT) -> None:
    """Move the length slider one step with the keyboard, then choose another method."""
    values = page.locator(VALUES).first
    values.wait_for(state="visible", timeout=CHANGE_TIMEOUT_S * 1000)
    page.locator(WIDGET).first.scroll_into_view_if_needed()
    before = _attrs(page)
    lengths = (before["lengths"] or "").split()
    assert before["values"] and len(lengths) > 1, f"the explorer shows too little: {before}"
    assert before["bits"] in lengths
    note = page.locator(NOTE).first.inner_text()
    assert "regime" in note and "seeds" in note, f"the explorer does not name its regime: {note!r}"

    # 1. the code length, one step along the slider (down from the longest length)
    i = lengths.index(before["bits"])
    key, expected = ("ArrowLeft", lengths[i - 1]) if i == len(lengths) - 1 else \
        ("ArrowRight", lengths[i + 1])
    handle = page.locator(f"{WIDGET} .nhl-ablation-bits .noUi-handle").first
    handle.focus()
    handle.press(key)
    _wait_changed(page, "bits", before["bits"])
    _wait_changed(page, "values", before["values"])  # set together; both must be redrawn
    moved = _attrs(page)
    assert moved["bits"] == expected, f"{key} moved {before['bits']} to {moved['bits']} bits"
    assert moved["values"] != before["values"]
    assert (moved["dataset"], moved["method"]) == (before["dataset"], before["method"])

    # 2. the base method, from the dropdown (options follow the dataset)
    select = page.locator(f"{WIDGET} .nhl-ablation-method select").first
    options = [o.strip() for o in select.locator("option").all_inner_texts()]
    assert moved["method"] in options, f"method dropdown {options} lacks {moved['method']}"
    others = [o for o in options if o != moved["method"]]
    if others:
        select.select_option(label=others[0])
        _wait_changed(page, "method", moved["method"])
        _wait_changed(page, "values", moved["values"])
        switched = _attrs(page)
        assert switched["method"] == others[0]
        assert switched["values"] != moved["values"]
        assert switched["dataset"] == moved["dataset"]
        assert "regime" in page.locator(NOTE).first.inner_text()
    page.wait_for_timeout(500)  # let the new plots paint
    page.locator(WIDGET).first.screenshot(path=str(build / screenshot))


def drive_ablation_explorer(notebook_dir: Path, notebook: str, tmp_path: Path, build: Path,
                            screenshot: str = SCREENSHOT,
                            run_timeout_s: float = RUN_TIMEOUT_S) -> None:
    """Open ``notebook_dir / notebook`` in JupyterLab (quick mode), run it, drive the explorer.

    The notebook file is restored byte for byte afterwards (JupyterLab never autosaves here,
    but a failed run must not leave outputs in the source either)."""
    jupyter = _requirements_or_skip()
    from playwright.sync_api import sync_playwright

    nb_path = notebook_dir / notebook
    assert nb_path.exists(), f"{nb_path} is missing"
    original = nb_path.read_bytes()
    code = "".join("".join(c["source"]) for c in json.loads(original)["cells"]
                   if c["cell_type"] == "code")
    assert "AblationExplorer" in code, (
        f"{notebook} never builds the ablation explorer; it needs a cell such as "
        "`explorer = AblationExplorer(); explorer.widget` (nhl.tutorial.ablation_explorer)")
    build.mkdir(exist_ok=True)

    dirs = _write_settings(tmp_path)
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "NHL_QUICK": "1", "PYTHONUNBUFFERED": "1"}
    env.update({k: v for k, v in dirs.items() if k != "APP_SETTINGS_DIR"})
    log = tmp_path / "jupyter.log"
    cmd = [
        str(jupyter), "lab", "--no-browser", "--allow-root", "--ip", "127.0.0.1",
        "--port", str(port), f"--ServerApp.token={token}", "--ServerApp.port_retries=0",
        f"--LabApp.app_settings_dir={dirs['APP_SETTINGS_DIR']}",
        "--notebook-dir", str(notebook_dir),
    ]
    with open(log, "w") as log_file:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log_file,
                                stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for_server(f"{base}/api/status?token={token}", proc, log)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                         args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                try:
                    t0 = time.monotonic()
                    page.goto(f"{base}/lab/tree/{notebook}?token={token}",
                              timeout=START_TIMEOUT_S * 1000)
                    page.wait_for_selector(".jp-Notebook .jp-Cell",
                                           timeout=START_TIMEOUT_S * 1000)
                    _run_all_cells(page, run_timeout_s)
                    print(f"{notebook}: all cells ran {time.monotonic() - t0:.0f} s after opening")
                    _change_length_and_method(page, build, screenshot)
                except Exception:
                    failure = Path(screenshot).stem + "-failure.png"
                    page.screenshot(path=str(build / failure))
                    print(f"JupyterLab log (tail):\n{log.read_text()[-3000:]}")
                    raise
            finally:
                browser.close()
    finally:
        _stop(proc)
        if nb_path.read_bytes() != original:  # never leave browser-run outputs in the source
            nb_path.write_bytes(original)


def test_ablation_explorer_redraws_on_length_and_method(tmp_path):
    drive_ablation_explorer(ROOT / "notebooks", NOTEBOOK, tmp_path, ROOT / "build")

"""The explorer notebook in a real browser: JupyterLab + headless Chromium (Playwright).

Starts JupyterLab on a free localhost port (quick mode, news and update checks off, autosave
off), opens ``notebooks/09_interactive_explorer.ipynb``, runs all cells from the Run menu, waits
for the explorer widget, moves the code-length slider with the keyboard and checks that the
retrieved images change (the ``data-ids`` attribute of the top-k grid). A screenshot goes to
``build/explorer.png``. Skipped when Chromium or Playwright is missing, except under CI
(``CI=true``), where that is a failure.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "09_interactive_explorer.ipynb"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
START_TIMEOUT_S = 90  # JupyterLab answering on its port
RUN_TIMEOUT_S = 240  # all cells run and the explorer drawn
CHANGE_TIMEOUT_S = 60  # the grid redrawn after the slider moved
GRID = ".nhl-explorer .nhl-topk"  # the live widget's top-k grid (not the static snapshot)

pytestmark = pytest.mark.browser


def _requirements_or_skip():
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright Python package (pip install playwright)")
    jupyter = Path(sys.executable).with_name("jupyter")
    if not jupyter.exists():
        missing.append(f"{jupyter} (pip install jupyterlab)")
    if missing:
        reason = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI must install it (.ci/run)")
        pytest.skip(reason)
    return jupyter


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(tmp: Path) -> dict[str, str]:
    """Private Jupyter config, settings and workspace folders; overrides that keep the browser
    offline (no news, no update check) and never write the notebook back (no autosave)."""
    app_settings = tmp / "app-settings"
    app_settings.mkdir()
    overrides = {
        "@jupyterlab/apputils-extension:notification": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
        "@jupyterlab/docmanager-extension:plugin": {"autosave": False},
        # every cell stays in the page, so the test can read all execution prompts
        "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
    }
    (app_settings / "overrides.json").write_text(json.dumps(overrides, indent=2))
    dirs = {}
    for key, name in [("JUPYTER_CONFIG_DIR", "config"),
                      ("JUPYTERLAB_SETTINGS_DIR", "user-settings"),
                      ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
                      ("JUPYTER_RUNTIME_DIR", "runtime")]:
        (tmp / name).mkdir()
        dirs[key] = str(tmp / name)
    dirs["APP_SETTINGS_DIR"] = str(app_settings)
    return dirs


def _wait_for_server(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


_ALL_CELLS_RAN = """() => {
    const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')];
    return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
}"""


def _run_all_cells(page) -> None:
    """Wait for the kernel, then Run > Run All Cells, and wait until every code cell ran."""
    status = page.locator("#jp-main-statusbar .jp-StatusBar-TextItem", has_text="Idle").first
    status.wait_for(timeout=START_TIMEOUT_S * 1000)
    page.locator(".jp-Notebook .jp-Cell").first.click()  # the notebook has focus: Run All applies
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
    page.wait_for_function(_ALL_CELLS_RAN, timeout=RUN_TIMEOUT_S * 1000, polling=500)


def _move_slider_and_check(page, build: Path) -> None:
    grid = page.locator(GRID).first
    grid.wait_for(state="visible", timeout=CHANGE_TIMEOUT_S * 1000)
    grid.scroll_into_view_if_needed()
    before, bits_before = grid.get_attribute("data-ids"), grid.get_attribute("data-bits")
    assert before and before.split(), "the explorer shows no retrieved images"
    assert grid.locator("img").count() > 1

    handle = page.locator(".nhl-explorer .nhl-bits .noUi-handle").first
    handle.focus()
    handle.press("ArrowRight")  # one step up the bit list
    deadline = time.monotonic() + CHANGE_TIMEOUT_S
    after = before
    while time.monotonic() < deadline and after == before:
        page.wait_for_timeout(250)
        after = grid.get_attribute("data-ids")
    bits_after = grid.get_attribute("data-bits")
    page.wait_for_timeout(500)  # let the new images and plots paint
    page.locator(".nhl-explorer").first.screenshot(path=str(build / "explorer.png"))
    assert bits_after != bits_before, (
        f"moving the length slider did not redraw ({bits_before} bits before and after)")
    assert after != before, (
        f"retrieved ids did not change from {bits_before} to {bits_after} bits: {before}")


def test_explorer_slider_changes_retrieved_images(tmp_path):
    jupyter = _requirements_or_skip()
    from playwright.sync_api import sync_playwright

    nb_path = ROOT / "notebooks" / NOTEBOOK
    assert nb_path.exists(), f"{nb_path} is missing"
    original = nb_path.read_bytes()
    build = ROOT / "build"
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
        "--notebook-dir", str(ROOT / "notebooks"),
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
                    page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}",
                              timeout=START_TIMEOUT_S * 1000)
                    page.wait_for_selector(".jp-Notebook .jp-Cell",
                                           timeout=START_TIMEOUT_S * 1000)
                    _run_all_cells(page)
                    _move_slider_and_check(page, build)
                except Exception:
                    page.screenshot(path=str(build / "explorer-failure.png"))
                    print(f"JupyterLab log (tail):\n{log.read_text()[-3000:]}")
                    raise
            finally:
                browser.close()
    finally:
        _stop(proc)
        if nb_path.read_bytes() != original:  # never leave browser-run outputs in the source
            nb_path.write_bytes(original)

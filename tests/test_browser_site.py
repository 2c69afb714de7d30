"""The tutorial site (``make site``) in headless Chromium, offline.

Builds ``build/site`` when it is older than its inputs (:func:`tools.site.is_current`), serves it
from a local HTTP server and opens every page once. Checks: no console error, page error, failed
or non-local request (MathJax and everything else must come from the site itself); every image
decoded (non-zero natural width) and at least as many in a notebook's outputs as the notebook has
image outputs; every ``.math`` element typeset by MathJax 3 without TeX errors and no raw
``$...$`` left in the prose; internal links (and their ``#anchors``) resolve to files of the
site; previous/next links follow the reading order; the search page finds a term. Screenshots:
``build/site-index.png`` (the index) and ``build/site-notebook.png`` (a notebook at its first
figure). Skipped when Chromium, Playwright or the site tools are missing, except under CI
(``CI=true``), where that is a failure.
"""

from __future__ import annotations

import functools
import html
import json
import os
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "build" / "site"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
PAGE_TIMEOUT_S = 60
SEARCH_TERM = "Hamming"

pytestmark = pytest.mark.browser


def _requirements_or_skip() -> None:
    import importlib.util
    import shutil

    missing = [] if CHROMIUM.exists() else [f"{CHROMIUM} (apt-get install chromium)"]
    for module, package in [("playwright", "playwright"), ("sphinx", "sphinx"),
                            ("myst_nb", "myst-nb"), ("sphinx_book_theme", "sphinx-book-theme")]:
        if importlib.util.find_spec(module) is None:
            missing.append(f"the {package} Python package (pip install -e '.[dev]')")
    if shutil.which("npm") is None and not (ROOT / "build" / "site-deps").is_dir():
        missing.append("npm (to vendor MathJax once)")
    if missing:
        reason = "the site test needs " + " and ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI must install it (.ci/run)")
        pytest.skip(reason)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no line per request in the test output
        pass


@pytest.fixture(scope="module")
def site() -> Path:
    _requirements_or_skip()
    from tools import site as website

    if not website.is_current(SITE, ROOT):
        website.build(SITE, ROOT)
    return SITE


@pytest.fixture(scope="module")
def base_url(site):
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler,
                                                                     directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser(base_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                      args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def site_pages(site: Path) -> list[str]:
    """Every HTML page of the site, relative to its root (Sphinx's own folders excluded)."""
    skip = {"_static", "_sources", "_images", "_downloads"}
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html")
                  if not skip & set(p.relative_to(site).parts))


def notebook_pages(site: Path) -> list[str]:
    """The notebook pages in reading order (as tools.notebooks orders the notebooks)."""
    return sorted(p for p in site_pages(site) if re.fullmatch(r"notebooks/\d\d_[^/]+\.html", p))


# What the page says about itself once loaded, MathJax done and every image decoded.
_MEASURE = """async () => {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
        await MathJax.startup.promise;
    }
    const imgs = [...document.querySelectorAll('img')];
    imgs.forEach(i => { i.loading = 'eager'; });
    const decoded = await Promise.all(imgs.map(i => i.decode().then(() => true, () => false)));
    const article = document.querySelector('main article, article, main') || document.body;
    const prose = article.cloneNode(true);
    prose.querySelectorAll('.cell, pre, code, mjx-container, .math, script, style')
         .forEach(e => e.remove());
    const math = [...document.querySelectorAll('.math')];
    const link = sel => { const a = document.querySelector(sel); return a ? a.href : null; };
    return {
        title: document.title,
        images: imgs.map((i, k) => ({src: i.currentSrc || i.src, width: i.naturalWidth,
                                     decoded: decoded[k], output: !!i.closest('.cell_output')})),
        math: math.length,
        mathTypeset: math.filter(e => e.querySelector('mjx-container')).length,
        mathErrors: document.querySelectorAll('mjx-merror').length,
        mathjax: window.MathJax && window.MathJax.version ? window.MathJax.version : null,
        mathjaxScript: [...document.scripts].map(s => s.src).filter(s => /mathjax/i.test(s)),
        rawTex: (prose.innerText.match(/\\$\\$[^$]+\\$\\$|\\$[^$\\s][^$\\n]*\\$/g) || []).slice(0, 5),
        links: [...document.querySelectorAll('a[href]')].map(a => a.href),
        prev: link('a.left-prev'),
        next: link('a.right-next'),
        table: [...document.querySelectorAll('table.nhl-notebooks td a')].map(a => a.href),
    };
}"""


@pytest.fixture(scope="module")
def visits(browser, base_url, site) -> dict[str, dict]:
    """Open every page once (a fresh page each), record its problems and measurements."""
    results = {}
    for rel in site_pages(site):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        problems: list[str] = []
        page.on("console", lambda m, p=problems: p.append(f"console {m.type}: {m.text}")
                if m.type == "error" else None)
        page.on("pageerror", lambda e, p=problems: p.append(f"page error: {e}"))
        page.on("requestfailed",
                lambda r, p=problems: p.append(f"request failed: {r.url} ({r.failure})"))
        page.on("response", lambda r, p=problems: p.append(f"HTTP {r.status}: {r.url}")
                if r.status >= 400 else None)
        page.on("request", lambda r, p=problems: None if r.url.startswith(base_url)
                or r.url.startswith(("data:", "blob:", "about:")) else p.append(f"external: {r.url}"))
        try:
            page.goto(base_url + rel, wait_until="load", timeout=PAGE_TIMEOUT_S * 1000)
            measured = page.evaluate(_MEASURE)
            page.wait_for_timeout(200)  # late console messages
        finally:
            page.close()
        measured["problems"] = problems
        results[rel] = measured
    return results


def _expected_output_images(nb_path: Path) -> int:
    """Images that a notebook's outputs show: one per image output, or the ``<img>`` tags of an
    HTML output (myst-nb prefers text/html over image/png when an output has both)."""
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    count = 0
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "text/html" in data:
                text = data["text/html"]
                count += len(re.findall(r"<img\b", "".join(text) if isinstance(text, list) else text))
            elif any(k.startswith("image/") for k in data):
                count += 1
    return count


def _markdown_has_math(nb_path: Path) -> bool:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    text = re.sub(r"`[^`]*`", "", text)
    return re.search(r"\$[^$\s][^$]*\$", text) is not None


def test_site_has_every_notebook(site):
    from tools.notebooks import notebook_paths

    names = [p.stem for p in notebook_paths(ROOT / "notebooks")]
    assert notebook_pages(site) == [f"notebooks/{n}.html" for n in names]
    assert {"index.html", "search.html", "docs/teaching.html"} <= set(site_pages(site))


def test_pages_load_without_errors_or_network(visits):
    bad = {page: v["problems"] for page, v in visits.items() if v["problems"]}
    assert not bad, "pages with console errors, failed or non-local requests:\n" + "\n".join(
        f"  {page}: {problems}" for page, problems in bad.items())


def test_every_image_is_decoded(visits, site):
    broken = [(page, i["src"][:120]) for page, v in visits.items() for i in v["images"]
              if not (i["decoded"] and i["width"] > 0)]
    assert not broken, f"images that did not load or decode: {broken}"
    staged = site.parent / "site-src" / "notebooks"
    for page in notebook_pages(site):
        expected = _expected_output_images(staged / Path(page).with_suffix(".ipynb").name)
        shown = sum(1 for i in visits[page]["images"] if i["output"])
        assert shown >= expected, f"{page}: {shown} images in the outputs, the notebook has {expected}"


def test_math_is_rendered_offline(visits, base_url, site):
    staged = site.parent / "site-src" / "notebooks"
    with_math = 0
    for page, v in visits.items():
        assert not v["rawTex"], f"{page}: TeX left untypeset in the text: {v['rawTex']}"
        if page in notebook_pages(site) and _markdown_has_math(staged / Path(page).with_suffix(".ipynb").name):
            assert v["math"] > 0, f"{page}: the notebook's $...$ math became no math element"
        if v["math"] == 0:
            continue
        with_math += 1
        assert v["mathjax"] and v["mathjax"].startswith("3."), f"{page}: MathJax 3 did not load"
        assert v["mathjaxScript"] and all(s.startswith(base_url + "_static/mathjax/")
                                          for s in v["mathjaxScript"]), (
            f"{page}: MathJax must come from the site's _static: {v['mathjaxScript']}")
        assert v["mathTypeset"] == v["math"], (
            f"{page}: {v['math'] - v['mathTypeset']} of {v['math']} math elements not typeset")
        assert v["mathErrors"] == 0, f"{page}: {v['mathErrors']} TeX errors"
    assert with_math > 0, "no page of the site has math (the notebooks and docs/method.md do)"


_IDS = re.compile(r"""\bid=["']([^"']+)["']""")


@functools.cache
def _ids(path: Path) -> frozenset[str]:
    return frozenset(html.unescape(i) for i in _IDS.findall(path.read_text(encoding="utf-8")))


def test_internal_links_resolve(visits, base_url, site):
    broken = []
    checked = 0
    for page, v in visits.items():
        for href in v["links"]:
            if not href.startswith(base_url):
                assert href.startswith(("http://", "https://", "mailto:")), f"{page}: odd link {href}"
                continue
            parts = urlsplit(href)
            rel = unquote(parts.path)[1:]
            target = site / rel
            if target.is_dir() or rel == "":
                target = target / "index.html"
            checked += 1
            if not target.is_file():
                broken.append(f"{page} -> {href} (no file)")
            elif parts.fragment and target.suffix == ".html" \
                    and unquote(parts.fragment) not in _ids(target):
                broken.append(f"{page} -> {href} (no #{parts.fragment} there)")
    assert checked > 50, f"only {checked} internal links found"
    assert not broken, "broken internal links:\n  " + "\n  ".join(broken)


def test_previous_next_follow_reading_order(visits, base_url, site):
    order = ["index.html", *notebook_pages(site)]
    for before, page, after in zip(order, order[1:], order[2:] + [None]):
        v = visits[page]
        assert v["prev"] == base_url + before, f"{page}: previous is {v['prev']}, not {before}"
        if after is not None:
            assert v["next"] == base_url + after, f"{page}: next is {v['next']}, not {after}"
        else:
            assert v["next"] and v["next"].startswith(base_url), f"{page}: no next link"
    assert visits["index.html"]["next"] == base_url + order[1]
    table = visits["index.html"]["table"]
    assert table == [base_url + p for p in notebook_pages(site)], (
        f"the index's notebook table links {table}")


def test_search_finds_a_term(browser, base_url):
    page = browser.new_page()
    try:
        page.goto(f"{base_url}search.html?q={SEARCH_TERM}", wait_until="load")
        hits = page.locator("#search-results ul.search li a")
        hits.first.wait_for(timeout=PAGE_TIMEOUT_S * 1000)
        targets = hits.evaluate_all("as => as.map(a => a.href)")
    finally:
        page.close()
    assert any("/notebooks/" in t for t in targets), f"search for {SEARCH_TERM!r} found {targets}"


def test_screenshots(browser, base_url, site, visits):
    build = ROOT / "build"
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(base_url + "index.html", wait_until="load")
        page.screenshot(path=str(build / "site-index.png"), full_page=True)
        # the first notebook with both math and an output image, at its first figure
        candidates = [p for p in notebook_pages(site)
                      if visits[p]["math"] and any(i["output"] for i in visits[p]["images"])]
        chosen = (candidates or notebook_pages(site))[0]
        page.goto(base_url + chosen, wait_until="load")
        page.evaluate(_MEASURE)
        figure = page.locator(".cell_output img").first
        if figure.count():
            figure.evaluate("e => e.scrollIntoView({block: 'center'})")
            page.wait_for_timeout(300)
        page.screenshot(path=str(build / "site-notebook.png"))
    finally:
        page.close()
    for name in ("site-index.png", "site-notebook.png"):
        assert (build / name).stat().st_size > 10_000, f"{name} looks empty"

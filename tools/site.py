"""A static HTML site of the executed tutorial notebooks (``make site``).

Sphinx with myst-nb and sphinx-book-theme, all from PyPI: the committed outputs are shown as they
are (``nb_execution_mode = "off"``, nothing is re-executed), every page has previous/next links
in reading order, and Sphinx's own search works offline. Math is typeset by MathJax 3 from the npm
package ``mathjax`` (pinned in ``docs/site/package-lock.json``), installed once into
``build/site-deps`` and served from the site's ``_static/mathjax``: a page loads nothing from
the network.

The build stages a source folder (``build/site-src``)::

    conf.py, _static/          from docs/site/ (plus the vendored MathJax)
    index.md                   generated: the notebook table and the table of contents
    notebooks/NN_*.ipynb       copies of notebooks/, widget views replaced by a note
    docs/teaching.md, docs/method.md, README.md, benchmarks/README.md

and runs ``sphinx-build -b html`` into ``build/site``. Run it with ``python -m tools.site``.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nhl.utils import project_root

from . import command
from .notebooks import notebook_paths

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
MATHJAX_VERSION = "3.2.2"
#: What the site needs from the mathjax package's es5/ folder (tex-chtml.js loads the rest
#: on demand from beside itself: TeX extensions, CommonHTML fonts, the menu, the a11y parts).
MATHJAX_PARTS = ("tex-chtml.js", "input/tex/extensions", "output/chtml", "ui", "a11y",
                 "adaptors")
#: Markdown pages of the repository shown after the notebooks (where they exist).
PAGES = ("docs/teaching.md", "docs/method.md", "README.md", "benchmarks/README.md")
WIDGET_NOTE = (
    '<div class="nhl-widget-note"><strong>Interactive widget.</strong> It is live only in a '
    "running notebook (open this notebook in JupyterLab and run it); the static figure of its "
    "default state is among this notebook's outputs.</div>"
)
NONE = "\u2013"  # an en dash in an empty table cell (a "-" would start a list)
_TITLE = re.compile(r"^#\s+(.+?)\s*$", re.M)
_TIME = re.compile(r"\*\*Time\*\*\s*:\s*(.+?)(?:\.\s|\.$|$)", re.S)


class SiteError(RuntimeError):
    """The site could not be built (missing tool, failed install, Sphinx error)."""


# --------------------------------------------------------------------------------------------
# What the index says about each notebook
@dataclass(frozen=True)
class NotebookInfo:
    name: str  # 00_quickstart
    number: str  # 00
    title: str  # Quickstart: one model, five code lengths
    reading_time: str  # about 15 minutes to read ("" when the notebook says none)
    exercises: int  # cells with a worked solution (nbgrader solution cells)


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def notebook_info(path: str | Path) -> NotebookInfo:
    """Title, reading time and number of exercises from a notebook's first cell and solutions."""
    path = Path(path)
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = nb.get("cells", [])
    first = _source(cells[0]) if cells else ""
    number = path.stem.split("_", 1)[0]
    match = _TITLE.search(first)
    title = match.group(1) if match else path.stem
    title = re.sub(rf"^{re.escape(number)}\s*[·:.\-\u2013\u2014]\s*", "", title)
    time_match = _TIME.search(first)
    reading = ""
    if time_match:  # "about 15 minutes to read" -> "about 15 minutes"; run times are not shown
        sentence = " ".join(time_match.group(1).split())
        if re.search(r"\bto read\b", sentence):
            reading = re.sub(r"\s+to read\b", "", sentence)
    exercises = sum(1 for c in cells if c.get("metadata", {}).get("nbgrader", {}).get("solution"))
    return NotebookInfo(path.stem, number, title, reading, exercises)


def index_markdown(infos: Sequence[NotebookInfo], extra_pages: Sequence[str]) -> str:
    """The site's front page: what the tutorial is, the notebook table, the tables of contents."""
    rows = []
    for info in infos:
        rows.append(f"* - {info.number}\n"
                    f"  - [{info.title}](notebooks/{info.name}.ipynb)\n"
                    f"  - {info.reading_time or NONE}\n"
                    f"  - {info.exercises or NONE}")
    toc = "\n".join(f"notebooks/{info.name}" for info in infos)
    extra = "\n".join(extra_pages)
    return f"""# Nested Hash Layer: the tutorial

One model, binary hash codes of several lengths (8 to 128 bits) for image retrieval: the
Nested Hash Layer (NHL), its dominance-aware weighting and its long-short distillation, in
{len(infos)} notebooks to read in order. This site shows the committed, executed notebooks as they
are; to run them yourself, clone the project and open `notebooks/` in JupyterLab (`make lab`).
Each page has a download button for its `.ipynb`.

```{{list-table}} The notebooks
:header-rows: 1
:class: nhl-notebooks
:widths: 6 64 20 10

* - \\#
  - Notebook
  - Reading time
  - Exercises
{chr(10).join(rows)}
```

Teachers: [how to run a course with these notebooks](docs/teaching.md). The method itself, with its
equations: [method](docs/method.md).

```{{toctree}}
:caption: Tutorial
:maxdepth: 1
:hidden:

{toc}
```

```{{toctree}}
:caption: Reference
:maxdepth: 1
:hidden:

{extra}
```
"""


# --------------------------------------------------------------------------------------------
# Staging
def site_notebook(nb: dict) -> dict:
    """A copy of ``nb`` for the site: each widget view becomes a short HTML note (widgets are
    live only in a kernel, and their JavaScript would come from a CDN), widget state dropped."""
    nb = copy.deepcopy(nb)
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW in data:
                out["data"] = {"text/html": WIDGET_NOTE}
    nb.get("metadata", {}).pop("widgets", None)
    return nb


def ensure_mathjax(deps: Path, conf_dir: Path) -> Path:
    """The ``es5`` folder of the pinned mathjax npm package, installed with ``npm ci`` into
    ``deps`` if missing (the registry is needed once; later builds are offline)."""
    es5 = deps / "node_modules" / "mathjax" / "es5"
    meta = deps / "node_modules" / "mathjax" / "package.json"
    if (es5 / "tex-chtml.js").is_file() and meta.is_file() \
            and json.loads(meta.read_text()).get("version") == MATHJAX_VERSION:
        return es5
    npm = shutil.which("npm")
    if npm is None:
        raise SiteError("make site needs npm to vendor MathJax once (apt-get install npm, or "
                        "Node.js from nodejs.org)")
    deps.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(conf_dir / name, deps / name)
    print(f"Installing MathJax {MATHJAX_VERSION} from the npm registry into {deps} ...", flush=True)
    proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                          cwd=deps, capture_output=True, text=True)
    if proc.returncode != 0 or not (es5 / "tex-chtml.js").is_file():
        raise SiteError(f"npm ci failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                        f"{proc.stderr[-2000:]}")
    return es5


def _copy_mathjax(es5: Path, target: Path) -> None:
    for part in MATHJAX_PARTS:
        src, dst = es5 / part, target / part
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dst)


def stage(src: Path, root: Path, es5: Path | None) -> list[NotebookInfo]:
    """Write the Sphinx source folder ``src`` (emptied first). Returns the notebooks' info."""
    conf_dir = root / "docs" / "site"
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    shutil.copy2(conf_dir / "conf.py", src / "conf.py")
    shutil.copytree(conf_dir / "_static", src / "_static")
    if es5 is not None:
        _copy_mathjax(es5, src / "_static" / "mathjax")

    paths = notebook_paths(root / "notebooks")
    if not paths:
        raise SiteError(f"no notebooks NN_*.ipynb in {root / 'notebooks'}")
    for path in paths:
        nb = json.loads(path.read_text(encoding="utf-8"))
        (src / "notebooks" / path.name).write_text(json.dumps(site_notebook(nb), indent=1),
                                                   encoding="utf-8")
    extra = []
    for page in PAGES:  # the repository's layout, so their links to each other resolve
        if (root / page).is_file():
            (src / page).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / page, src / page)
            extra.append(page.removesuffix(".md"))
    infos = [notebook_info(p) for p in paths]
    (src / "index.md").write_text(index_markdown(infos, extra), encoding="utf-8")
    return infos


# --------------------------------------------------------------------------------------------
# Build
def inputs(root: str | Path | None = None) -> list[Path]:
    """Every file the site is built from (notebooks, pages, the Sphinx config, this module)."""
    root = Path(root) if root else project_root()
    conf = [p for p in (root / "docs" / "site").rglob("*") if p.is_file()]
    pages = [root / page for page in PAGES if (root / page).is_file()]
    return [*notebook_paths(root / "notebooks"), *pages, *conf, Path(__file__)]


def is_current(out: str | Path | None = None, root: str | Path | None = None) -> bool:
    """Whether ``out/index.html`` exists and is newer than every input of the site."""
    root = Path(root) if root else project_root()
    index = (Path(out) if out else root / "build" / "site") / "index.html"
    if not index.is_file():
        return False
    built = index.stat().st_mtime
    return all(p.stat().st_mtime <= built for p in inputs(root))


def build(out: str | Path | None = None, root: str | Path | None = None,
          mathjax: bool = True, quiet: bool = True) -> Path:
    """Stage and build the site; returns the folder with ``index.html`` (default ``build/site``).

    Sphinx's warnings go to ``build/logs/site-warnings.txt`` (and are printed); an error
    raises :class:`SiteError`. ``mathjax=False`` skips vendoring MathJax (math then stays raw
    TeX: for tests of the staging without npm).
    """
    root = Path(root) if root else project_root()
    out = Path(out) if out else root / "build" / "site"
    build_dir = root / "build"
    src = build_dir / "site-src"
    es5 = ensure_mathjax(build_dir / "site-deps", root / "docs" / "site") if mathjax else None
    stage(src, root, es5)
    log = build_dir / "logs" / "site-warnings.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-E", "-w", str(log), str(src), str(out)]
    if quiet:
        cmd.insert(3, "-q")
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=root)
    if proc.returncode != 0 or not (out / "index.html").is_file():
        raise SiteError(f"sphinx-build failed ({proc.returncode}); warnings in {log}")
    warnings = log.read_text(encoding="utf-8").strip() if log.exists() else ""
    n_warn = sum(1 for line in warnings.splitlines() if "WARNING" in line)
    print(f"Site built in {time.monotonic() - started:.0f} s: {out / 'index.html'}"
          + (f" ({n_warn} Sphinx warnings, see {log})" if n_warn else ""))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tools.site [--out DIR] [--verbose]``."""
    return command(
        argv, "python -m tools.site", __doc__.split("\n")[0],
        [(("--out",), dict(default=None, help="output folder (default build/site)")),
         (("--verbose",), dict(action="store_true", help="show Sphinx's progress"))],
        lambda a: build(a.out, quiet=not a.verbose),
        failures=(SiteError,), failure_message="make site: {}",
    )


if __name__ == "__main__":
    raise SystemExit(main())

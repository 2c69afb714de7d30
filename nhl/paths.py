"""Where datasets and cached runs live, found the same way from the repo root or a notebook.

``NHL_DATA`` and ``NHL_RUNS`` override the defaults; otherwise they are ``data/`` and ``runs/``
in the project folder (the nearest folder above the working directory that holds ``data/`` and
``pyproject.toml``), else in the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root(start: str | Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) that looks like the project."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "nhl").is_dir():
            return folder
    return here


def data_dir() -> Path:
    """Default dataset root (``$NHL_DATA`` or ``<project>/data``)."""
    return Path(os.environ.get("NHL_DATA") or project_root() / "data")


def runs_dir() -> Path:
    """Default experiment cache (``$NHL_RUNS`` or ``<project>/runs``)."""
    return Path(os.environ.get("NHL_RUNS") or project_root() / "runs")


def quick_mode() -> bool:
    """The one documented switch: ``NHL_QUICK=1`` shrinks data and epochs for smoke runs."""
    return os.environ.get("NHL_QUICK", "0").strip().lower() not in ("", "0", "false", "no")

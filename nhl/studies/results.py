"""The committed result tables in ``results/``: write, read, and say where a table comes from.

The run cache (``runs/``) is not in git; these small tables are, so notebooks and README.md can
show a study when the cache lacks its runs. Each ``NAME.csv`` has a stamp ``NAME.json``: the
command, the configs, package version, date, machine, threads and wall time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from .. import experiments
from ..utils import atomic_write_text, project_root
from ..validation import check_choice
from .catalogue import STUDIES


def results_dir() -> Path:
    """``$NHL_RESULTS`` or ``<project>/results``."""
    return Path(os.environ.get("NHL_RESULTS") or project_root() / "results")


def write(name: str, table: pd.DataFrame, stamp: dict, out: str | Path | None = None) -> Path:
    """Write ``NAME.csv`` and its stamp ``NAME.json`` into ``out`` (default :func:`results_dir`)."""
    folder = Path(out) if out is not None else results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / f"{name}.csv", table.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(folder / f"{name}.json", json.dumps(stamp, indent=1, sort_keys=True, default=str))
    return folder / f"{name}.csv"


def load(name: str, folder: str | Path | None = None) -> pd.DataFrame:
    """A committed result table (``results/NAME.csv``)."""
    folder = Path(folder) if folder is not None else results_dir()
    path = folder / f"{name}.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; make it with: python -m nhl study {name}")
    return pd.read_csv(path)


def stamp(name: str, folder: str | Path | None = None) -> dict:
    """The stamp of a committed result table: command, package version, date, settings."""
    folder = Path(folder) if folder is not None else results_dir()
    return json.loads((folder / f"{name}.json").read_text())


def get(
    name: str, root: str | Path | None = None, data_root: str | Path | None = None
) -> tuple[pd.DataFrame, str]:
    """A study's table and a line saying where it comes from.

    When every run of the study is in the run cache the table is rebuilt from those runs (what
    ``python -m nhl study NAME`` would write); otherwise the committed ``results/NAME.csv`` is
    read. Never trains.
    """
    study = STUDIES[check_choice(name, STUDIES, "study")]
    configs = study.configs()
    runs = [experiments.cached_run(c, root, data_root) for c in configs]
    missing = sum(r is None for r in runs)
    if not missing:
        return study.table(runs), f"computed from the {len(runs)} runs of study {name!r} in the run cache"
    note = f" ({missing} of {len(runs)} runs are not in this machine's run cache)"
    return load(name), describe_source(name) + note


def describe_source(name: str, folder: str | Path | None = None) -> str:
    """One line saying which committed table a notebook shows and how it was made."""
    s = stamp(name, folder)
    date = str(s["date"])
    when = f"on {date[:10]}" if date[:4].isdigit() else f"(date {date})"
    return (f"results/{name}.csv: {s['what']}, made by `{s['command']}` {when} "
            f"(nhl {s['package_version']}, {s['threads per worker']} thread(s) per worker)")

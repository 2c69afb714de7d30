"""Small shared utilities: seeding, atomic file writes, and where data and runs live.

``NHL_DATA`` and ``NHL_RUNS`` override the default folders; otherwise they are ``data/`` and
``runs/`` in the project folder (the nearest folder above the working directory that holds
``nhl/`` and ``pyproject.toml``), else in the working directory. ``NHL_QUICK=1`` is the one
switch of the tutorial's quick mode.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (CPU runs are then repeatable)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """A seed for one epoch, so a resumed run replays exactly the batches it would have seen."""
    return (seed * 1_000_003 + epoch * 7919 + 17) % 2**63


def atomic_write(path: str | Path, write, mode: str = "wb") -> Path:
    """Write a file through ``write(fileobj)`` into a temporary file, then rename it into place.

    A crash or kill mid-write leaves the previous file intact: there is never a half-written
    ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` that never leaves a truncated file behind (see :func:`atomic_write`)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text), mode="w")



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


#: What determines a result: the package's code and its requirements (a README edit does not).
CODE_PATHS = ("nhl", "pyproject.toml")


def code_state(diff: bool = False) -> dict:
    """Which code computes here: ``{"commit": sha, "dirty": [paths]}`` for the git checkout
    that holds this package (``dirty``: files of :data:`CODE_PATHS` that differ from the commit,
    untracked ones included); with ``diff`` also ``"diff"``, the patch of those changes against
    the commit. ``{"commit": None, ...}`` where the package is not in a git checkout (an
    installed copy) or git is missing; the package version then identifies the code."""
    import subprocess

    checkout = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True,
                              timeout=30, check=True)
        return done.stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        status = git("status", "--porcelain", "--untracked-files=all", "--", *CODE_PATHS)
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None, "note": "not a git checkout; see package_version"}
    dirty = sorted(line[3:] for line in status.splitlines() if line.strip())
    state: dict = {"commit": commit, "dirty": dirty}
    if diff and dirty:
        state["diff"] = git("diff", "HEAD", "--", *CODE_PATHS)
    return state

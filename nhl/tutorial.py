"""Support for the tutorial notebooks: the quick-mode switch, shared settings and execution.

Every notebook starts with ``S = nhl.tutorial.setup()``. The one documented switch is the
environment variable ``NHL_QUICK=1``: it shrinks the data split (protocol ``"quick"``) and the
epochs so a notebook runs in well under a minute (CI does this); the default is the full setting.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .config import TrainConfig
from .paths import project_root, quick_mode
from .utils import seed_everything

FULL_EPOCHS = 15
QUICK_EPOCHS = 2


@dataclass(frozen=True)
class Settings:
    """What a notebook needs to size its work: quick or full, protocol, epochs, seeds."""

    quick: bool
    protocol: str | None
    epochs: int
    seeds: tuple[int, ...]

    def config(self, **changes) -> TrainConfig:
        """The tutorial's standard run (nested CSQ + NHL on Fashion-MNIST), with changes."""
        base = dict(protocol=self.protocol, epochs=self.epochs, method="csq")
        base.update(changes)
        return TrainConfig(**base)

    def pick(self, full, quick):
        """``quick`` in quick mode, ``full`` otherwise (for notebook-specific sizes)."""
        return quick if self.quick else full


def setup(
    full_epochs: int = FULL_EPOCHS,
    quick_epochs: int = QUICK_EPOCHS,
    seeds: Sequence[int] = (0, 1, 2),
    seed: int = 0,
) -> Settings:
    """Read ``NHL_QUICK``, seed every generator, set the plot style; print the mode."""
    from . import plots

    quick = quick_mode()
    seed_everything(seed)
    plots.style()
    settings = Settings(
        quick=quick,
        protocol="quick" if quick else None,
        epochs=quick_epochs if quick else full_epochs,
        seeds=tuple(seeds[:2]) if quick else tuple(seeds),
    )
    mode = "QUICK (NHL_QUICK=1: small split, few epochs)" if quick else "full"
    print(f"nhl tutorial, {mode} setting: {settings.epochs} epochs, seeds {settings.seeds}")
    return settings


def notebook_paths(folder: str | Path | None = None) -> list[Path]:
    """The tutorial notebooks in reading order (``NN_name.ipynb``)."""
    folder = Path(folder) if folder else project_root() / "notebooks"
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def execute_notebook(path: str | Path, out: str | Path | None = None, quick: bool = False, timeout: int = 1200):
    """Execute a notebook top to bottom in a fresh kernel (cwd = its folder) and return it.

    ``out``: where to write the executed copy (``.ipynb``); an ``.html`` beside it when the
    suffix is ``.html``. Raises ``nbclient`` 's CellExecutionError on the first failing cell.
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    env_quick = os.environ.get("NHL_QUICK")
    os.environ["NHL_QUICK"] = "1" if quick else "0"
    try:
        NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        ).execute()
    finally:
        if env_quick is None:
            os.environ.pop("NHL_QUICK", None)
        else:
            os.environ["NHL_QUICK"] = env_quick
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


def run_all(out: str | Path = "build", quick: bool = False, in_place: bool = False,
            only: Sequence[str] = ()) -> float:
    """Execute every notebook in order; write executed copies (and HTML) to ``out``.

    With ``in_place`` the executed notebooks replace the sources (how the committed outputs are
    made). Returns the total seconds; prints one line per notebook.
    """
    out = Path(out)
    total = 0.0
    for path in notebook_paths():
        if only and not any(path.name.startswith(o) for o in only):
            continue
        t0 = time.perf_counter()
        target = path if in_place else out / path.name
        nb = execute_notebook(path, target, quick=quick)
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(nb)
        html = out / path.with_suffix(".html").name
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(body, encoding="utf-8")
        seconds = time.perf_counter() - t0
        total += seconds
        print(f"{path.name:45s} {seconds:7.1f} s -> {target}, {html}", flush=True)
    print(f"all notebooks: {total:.1f} s; executed copies and HTML in {out.resolve()}")
    return total


if __name__ == "__main__":  # python -m nhl.tutorial [--quick] [--in-place] [prefixes...]
    args = sys.argv[1:]
    run_all(quick="--quick" in args, in_place="--in-place" in args,
            only=[a for a in args if not a.startswith("--")])

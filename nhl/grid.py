"""The method grid (the paper's main table) read back from the run cache, without training.

:func:`nhl.studies.grid` trains (or loads) a nested model and its K single-length baselines for
every base method. The functions here only *look* for those runs in the cache (the folder
:func:`nhl.experiments.run_path` names), so a notebook can show the full grid that
``python -m nhl grid --methods all`` produced, and fall back to something cheaper when it is
missing. METHOD.md section 6: "average mAP over methods and lengths rises by about 3.4 %".
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from . import experiments
from .config import TrainConfig
from .validation import check_choice

#: Columns of a grid table (the same as :func:`nhl.studies.grid` returns).
COLUMNS = (
    "method",
    "bits",
    "baseline mAP",
    "nested mAP",
    "gain",
    "baseline s",
    "nested s",
    "speed-up",
)


def grid_configs(config: TrainConfig, methods: Iterable[str]) -> list[TrainConfig]:
    """Every run the grid needs: per method, the nested ``config`` then its baselines."""
    out = []
    for method in methods:
        nested = config.replace(method=str(method).lower())
        out.append(nested)
        out += [nested.baseline(b) for b in nested.bit_list]
    return out


def _cached(config: TrainConfig, root, data_root) -> experiments.RunResult | None:
    splits = experiments.get_splits(config, data_root)
    path = experiments.run_path(config, splits.fingerprint, root)
    if not (path / "metrics.json").exists():
        return None
    try:
        return experiments.load(path)
    except FileNotFoundError:  # metrics written but another file missing: not finished
        return None


def missing_runs(
    config: TrainConfig,
    methods: Iterable[str],
    root: str | Path | None = None,
    data_root: str | Path | None = None,
) -> list[TrainConfig]:
    """The grid's runs that are not (yet) finished in the cache at ``root``."""
    return [c for c in grid_configs(config, methods) if _cached(c, root, data_root) is None]


def load_grid(
    config: TrainConfig,
    methods: Iterable[str],
    root: str | Path | None = None,
    data_root: str | Path | None = None,
) -> pd.DataFrame | None:
    """The grid table from finished cached runs only; ``None`` if any run is missing.

    Never trains. The table has one row per method and length with the columns of
    :data:`COLUMNS` (as :func:`nhl.studies.grid`): ``gain`` is nested minus baseline mAP
    (tie-aware mAP@ALL), ``speed-up`` the K baselines' training seconds over the nested model's.
    """
    methods = [str(m).lower() for m in methods]
    if not methods:
        raise ValueError("methods must name at least one base loss, e.g. nhl.losses.available()")
    rows = []
    for method in methods:
        nested_cfg = config.replace(method=method)
        nested = _cached(nested_cfg, root, data_root)
        if nested is None:
            return None
        per_bits = []
        for bits in nested_cfg.bit_list:
            base = _cached(nested_cfg.baseline(bits), root, data_root)
            if base is None:
                return None
            per_bits.append((bits, base))
        baseline_seconds = sum(b.train_seconds for _, b in per_bits)
        for bits, base in per_bits:
            rows.append(
                {
                    "method": method,
                    "bits": bits,
                    "baseline mAP": base.map[bits],
                    "nested mAP": nested.map[bits],
                    "gain": nested.map[bits] - base.map[bits],
                    "baseline s": base.train_seconds,
                    "nested s": nested.train_seconds,
                    "speed-up": baseline_seconds / nested.train_seconds,
                }
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def gain_table(grid: pd.DataFrame, value: str = "gain", margins: bool = True) -> pd.DataFrame:
    """Pivot a grid table to methods x lengths (columns sorted by bits).

    ``value``: any numeric column (``gain``, ``baseline mAP``, ``nested mAP``). With ``margins``
    a ``mean`` column (per method) and a ``mean`` row (per length) are added; the corner is the
    mean over all cells (the paper's "average gain").
    """
    check_choice(value, [c for c in grid.columns if c not in ("method", "bits")], "value")
    table = grid.pivot(index="method", columns="bits", values=value).sort_index(axis=1)
    table.columns = [int(c) for c in table.columns]
    if margins:
        cells = table.to_numpy()
        table["mean"] = table.mean(axis=1)
        table.loc["mean"] = [*table.iloc[:, :-1].mean(axis=0), float(cells.mean())]
    table.index.name = "method"
    table.columns.name = "bits"
    return table


def summary(grid: pd.DataFrame) -> dict[str, float]:
    """Headline numbers of a grid: mean gain, share of cells improved, mean speed-up."""
    per_method = grid.groupby("method")["speed-up"].first()
    return {
        "average gain": float(grid["gain"].mean()),
        "relative gain %": float(100 * (grid["gain"] / grid["baseline mAP"]).mean()),
        "cells improved": float((grid["gain"] > 0).mean()),
        "mean speed-up": float(per_method.mean()),
        "n methods": float(grid["method"].nunique()),
    }

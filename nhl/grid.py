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


def cached_run(config: TrainConfig, root=None, data_root=None) -> experiments.RunResult | None:
    """The finished run of ``config`` in the cache at ``root``, or None (never trains)."""
    splits = experiments.get_splits(config, data_root)
    path = experiments.run_path(config, splits.fingerprint, root)
    if not (path / "metrics.json").exists():
        return None
    try:
        return experiments.load(path)
    except (FileNotFoundError, experiments.DamagedRunError):  # not finished, or damaged: retrain
        return None


def missing_runs(
    config: TrainConfig,
    methods: Iterable[str],
    root: str | Path | None = None,
    data_root: str | Path | None = None,
) -> list[TrainConfig]:
    """The grid's runs that are not (yet) finished in the cache at ``root``."""
    return [c for c in grid_configs(config, methods) if cached_run(c, root, data_root) is None]


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
        nested = cached_run(nested_cfg, root, data_root)
        if nested is None:
            return None
        per_bits = []
        for bits in nested_cfg.bit_list:
            base = cached_run(nested_cfg.baseline(bits), root, data_root)
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


# ------------------------------------------------------------------ the committed grid table
def chance_map(dataset: str, protocol: str | None = None, data_root: str | Path | None = None) -> float:
    """mAP of a model whose codes all collapse onto one point (METHOD.md section 5, tie-aware).

    With every database item tied, the tie-aware AP of a query is the share of relevant items
    in the database, so the chance level is the mean over queries of (relevant items) / N:
    about 1/C for C balanced classes (0.1 for Fashion-MNIST, 0.01 for ``fashion-mnist-100``).
    Computed from the split of ``dataset`` (``protocol`` ``None``: the studies' split).
    """
    import numpy as np

    splits = experiments.get_splits(TrainConfig(dataset=dataset, protocol=protocol), data_root)
    q = np.asarray(splits.query.labels, dtype=np.float64)
    db = np.asarray(splits.database.labels, dtype=np.float64)
    if (q.sum(1) == 1).all() and (db.sum(1) == 1).all():  # single-label: class frequencies
        return float(q.mean(0) @ db.mean(0))
    shares = [((q[i:i + 256] @ db.T) > 0).mean(1) for i in range(0, len(q), 256)]
    return float(np.concatenate(shares).mean())


def _check_long(table: pd.DataFrame, need: Iterable[str]) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"expected a study table (pandas DataFrame), got {type(table).__name__}")
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise ValueError(f"the table lacks the columns {missing}; pass a study table such as "
                         "nhl.results.get('grid')[0]")
    if table.empty:
        raise ValueError("the table has no rows")
    return table


def collapse_check(
    table: pd.DataFrame, chance: dict[str, float], factor: float = 2.0, value: str = "mAP"
) -> pd.DataFrame:
    """Per dataset: is every cell (method, variant, length) well above chance?

    ``chance``: the chance mAP per dataset (:func:`chance_map`). A cell counts as *near
    chance* (a collapsed or untrained model) when its ``value`` is below ``factor`` times the
    chance level. Columns: chance, the lowest cell and where it is, lowest / chance, cells
    near chance and cells in all.
    """
    t = _check_long(table, ("dataset", "method", "variant", "bits", value))
    if not factor > 1:
        raise ValueError(f"factor must be > 1, got {factor}")
    rows = []
    for dataset, g in t.groupby("dataset", sort=False):
        if dataset not in chance:
            raise ValueError(f"no chance level for dataset {dataset!r}; pass chance={{name: "
                             f"nhl.grid.chance_map(name)}} for every dataset of the table")
        c = float(chance[dataset])
        low = g.loc[g[value].idxmin()]
        rows.append({
            "dataset": dataset,
            "chance mAP": c,
            "lowest mAP": float(low[value]),
            "lowest cell": f"{low['method']} {low['variant']} {int(low['bits'])} bits",
            "lowest / chance": float(low[value]) / c,
            f"cells below {factor:g} x chance": int((g[value] < factor * c).sum()),
            "cells": len(g),
        })
    return pd.DataFrame(rows).set_index("dataset")


def average_gain(table: pd.DataFrame, value: str = "mAP") -> pd.DataFrame:
    """Per dataset of a long single-vs-nested table (``grid`` or ``seeds`` study, one seed):
    the paper's headline, the average gain of nested NHL over single-length models.

    Columns: mean single and nested mAP over methods and lengths, the average absolute gain,
    the relative gain (mean over cells of gain / single mAP, in %), the gain of the averages
    (mean nested / mean single - 1, in %), and the cells improved. METHOD.md section 6:
    "average mAP over methods and lengths rises by about 3.4 %". No timing (training seconds
    of runs made by other processes are not evidence; notebook 07 measures them).
    """
    from .results import as_grid

    t = _check_long(table, ("dataset", "method", "variant", "seed", "bits", value))
    if t["seed"].nunique() > 1:
        raise ValueError("average_gain needs one seed (filter the table by seed first)")
    rows = []
    for dataset, g in t.groupby("dataset", sort=False):
        cells = as_grid(g, value=value)
        if cells.empty:
            raise ValueError(f"no single/nhl pairs for dataset {dataset!r}")
        single, nested = cells["baseline mAP"], cells["nested mAP"]
        rows.append({
            "dataset": dataset,
            "methods": cells["method"].nunique(),
            "mean single mAP": float(single.mean()),
            "mean nested mAP": float(nested.mean()),
            "average gain (mAP)": float(cells["gain"].mean()),
            "relative gain (%)": float(100 * (cells["gain"] / single).mean()),
            "gain of the averages (%)": float(100 * (nested.mean() / single.mean() - 1)),
            "cells improved": f"{int((cells['gain'] > 0).sum())} of {len(cells)}",
        })
    return pd.DataFrame(rows).set_index("dataset")


def describe_gain(gains: pd.DataFrame, label: str = "") -> str:
    """One generated sentence on where the gain of a :func:`gain_table` (with margins) lies:
    the lengths with the largest and smallest mean gain, and the methods that gain and lose most.
    """
    if "mean" not in gains.index or "mean" not in gains.columns:
        raise ValueError("pass a gain_table with margins=True (a 'mean' row and column)")
    per_bits = gains.loc["mean"].drop("mean")
    per_method = gains["mean"].drop("mean")
    up = int((per_method > 0).sum())
    where = f"{label}: " if label else ""
    return (f"{where}average gain {gains.loc['mean', 'mean']:+.4f}; by length from "
            f"{per_bits.min():+.4f} ({per_bits.idxmin()} bits) to {per_bits.max():+.4f} "
            f"({per_bits.idxmax()} bits); {up} of {len(per_method)} methods gain on average, "
            f"most {per_method.idxmax()} ({per_method.max():+.4f}), least "
            f"{per_method.idxmin()} ({per_method.min():+.4f}).")

"""Nested NHL against its K single-length baselines, for one method or the eight (the paper's
main table; docs/method.md §9: "average mAP over methods and lengths rises by about 3.4 %").

:func:`compare` and :func:`grid` train (or load) the runs; :func:`load_grid` only looks for them
in the run cache, so a notebook can show the grid ``python -m nhl grid --methods all`` made and
fall back to something cheaper when it is missing. :func:`as_grid` makes the grid table from a
study's long table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from .. import experiments
from ..config import TrainConfig, baselines
from ..validation import check_choice

#: Columns of a grid table (the same as :func:`nhl.studies.grid.grid` returns).
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


def comparison_configs(config: TrainConfig, methods: Iterable[str] | None = None) -> list[TrainConfig]:
    """Every run of a comparison: per method (default the config's own), the nested config,
    then its K single-length baselines."""
    methods = [config.method] if methods is None else [str(m).lower() for m in methods]
    out = []
    for method in methods:
        nested = config.replace(method=method)
        out += [nested, *baselines(nested)]
    return out


def missing_runs(
    config: TrainConfig,
    methods: Iterable[str],
    root: str | Path | None = None,
    data_root: str | Path | None = None,
) -> list[TrainConfig]:
    """The grid's runs that are not (yet) finished in the cache at ``root``."""
    return [c for c in comparison_configs(config, methods)
            if experiments.cached_run(c, root, data_root) is None]


def as_grid(table: pd.DataFrame, value: str = "mAP", nested: str = "nhl") -> pd.DataFrame:
    """The grid table of a long table (one dataset): per method and length, the single-length
    and the nested model's ``value``, the gain, and the training seconds with the speed-up (the
    K baselines' seconds together over the nested model's), with the columns of :data:`COLUMNS`.

    ``table`` has one row per run and length (``method``, ``variant``, ``seed``, ``bits``,
    ``value`` and ``train s``, as the study tables of :mod:`nhl.studies.tables`); the rows of
    variant ``single`` are paired with those of variant ``nested`` at the same method, seed and
    length. Every grid of the package is made here."""
    if "dataset" in table and table["dataset"].nunique() != 1:
        raise ValueError("as_grid needs the rows of one dataset; filter by dataset first")
    keys, cols = ["method", "seed", "bits"], [value, "train s"]
    single = table.loc[table["variant"] == "single", keys + cols]
    paired = table.loc[table["variant"] == nested, keys + cols]
    both = single.merge(paired, on=keys, suffixes=(" single", " nested"))
    base_s = both.groupby(["method", "seed"])["train s single"].transform("sum")
    return pd.DataFrame({
        "method": both["method"], "bits": both["bits"],
        "baseline mAP": both[f"{value} single"], "nested mAP": both[f"{value} nested"],
        "gain": both[f"{value} nested"] - both[f"{value} single"],
        "baseline s": both["train s single"], "nested s": both["train s nested"],
        "speed-up": base_s / both["train s nested"],
    }, columns=list(COLUMNS))


def _runs_frame(runs: Sequence[tuple[TrainConfig, experiments.RunResult]]) -> pd.DataFrame:
    """What :func:`as_grid` reads, from finished runs: nested runs as variant ``nested``."""
    return pd.DataFrame([
        {"method": c.method, "variant": "nested" if c.nested else "single", "seed": c.seed,
         "bits": b, "mAP": r.map[b], "train s": r.train_seconds}
        for c, r in runs for b in c.bit_list
    ])


def load_grid(
    config: TrainConfig,
    methods: Iterable[str],
    root: str | Path | None = None,
    data_root: str | Path | None = None,
) -> pd.DataFrame | None:
    """The grid table from finished cached runs only; ``None`` if any run is missing.

    Never trains. One row per method and length with the columns of :data:`COLUMNS`
    (:func:`as_grid`): ``gain`` is nested minus baseline mAP (tie-aware mAP@ALL), ``speed-up``
    the K baselines' training seconds over the nested model's.
    """
    configs = comparison_configs(config, methods)
    if not configs:
        raise ValueError("methods must name at least one base loss, e.g. nhl.losses.available()")
    runs = [(c, experiments.cached_run(c, root, data_root)) for c in configs]
    if any(r is None for _, r in runs):
        return None
    return as_grid(_runs_frame(runs), nested="nested")


class _Overall:
    """The bar over all runs of a comparison (runs done / total, time left), above the bar of the
    run being trained. Runs already in the cache count as done from the start, and the estimate
    is the mean time of the runs trained so far (tqdm ``smoothing=0``) times the runs left."""

    def __init__(self, configs: Sequence[TrainConfig], progress: bool, root=None, data_root=None):
        unique = list(dict.fromkeys(configs))
        self.pending = ({c for c in unique if experiments.cached_run(c, root, data_root) is None}
                        if progress else set())
        self.bar = tqdm(total=len(unique), initial=len(unique) - len(self.pending), desc="all runs",
                        unit="run", smoothing=0, disable=not progress)

    def run(self, config: TrainConfig, **kwargs) -> experiments.RunResult:
        result = experiments.run(config, **kwargs)
        if config in self.pending:
            self.pending.discard(config)
            self.bar.update(1)
        return result

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()


def _train(configs: list[TrainConfig], progress: bool, run_kwargs: dict) -> pd.DataFrame:
    """Train (or load) ``configs`` in order under one overall bar; :func:`as_grid` of them."""
    with _Overall(configs, progress, run_kwargs.get("root"), run_kwargs.get("data_root")) as overall:
        runs = [(c, overall.run(c, progress=progress, **run_kwargs)) for c in configs]
    return as_grid(_runs_frame(runs), nested="nested")


@dataclass
class Comparison:
    """One nested model against its K single-length baselines (same epochs and selection rule)."""

    table: pd.DataFrame  # per length: baseline and nested mAP, gain, baseline seconds
    nested_seconds: float
    baseline_seconds: float

    @property
    def speedup(self) -> float:
        """Training time of the K baselines together over the one nested model's."""
        return self.baseline_seconds / self.nested_seconds

    def __str__(self) -> str:
        t = self.table.copy()
        for col in ("baseline mAP", "nested mAP", "gain"):
            t[col] = t[col].map("{:.4f}".format)
        t["baseline s"] = t["baseline s"].map("{:.1f}".format)
        return (
            f"{t.to_string()}\n"
            f"training seconds: {len(t)} baselines {self.baseline_seconds:.1f} s, "
            f"one nested model {self.nested_seconds:.1f} s, speed-up {self.speedup:.2f}x"
        )


def compare(config: TrainConfig, progress: bool = True, **run_kwargs) -> Comparison:
    """Train (or load) the nested ``config`` and its single-length baselines; tabulate.

    With ``progress``: a bar over the K + 1 runs (done / total, estimate) and each run's own bar.
    """
    cells = _train(comparison_configs(config), progress, run_kwargs)
    table = cells.set_index("bits")[["baseline mAP", "nested mAP", "gain", "baseline s"]]
    return Comparison(table, float(cells["nested s"].iloc[0]), float(table["baseline s"].sum()))


def grid(
    config: TrainConfig, methods: Iterable[str], progress: bool = True, **run_kwargs
) -> pd.DataFrame:
    """:func:`compare` for every base method: one table with the columns of :data:`COLUMNS`.

    With ``progress``: a bar over all methods' runs (done / total, estimate) and each run's own.
    """
    return _train(comparison_configs(config, methods), progress, run_kwargs)


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


def _check_long(table: pd.DataFrame, need: Iterable[str]) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"expected a study table (pandas DataFrame), got {type(table).__name__}")
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise ValueError(f"the table lacks the columns {missing}; pass a study table such as "
                         "nhl.studies.results.get('grid')[0]")
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
                             f"nhl.studies.statistics.chance_map(name)}} for every dataset of the table")
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
    (mean nested / mean single - 1, in %), and the cells improved. docs/method.md §9:
    "average mAP over methods and lengths rises by about 3.4 %". No timing (training seconds
    of runs made by other processes are not evidence; notebook 07 measures them).
    """
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

"""Nested against single-length models in a study table, in each dataset's mAP convention.

docs/method.md §6 fixes the metric per dataset: mAP@ALL on 10-class single-label data, mAP@K
where the literature uses a cut-off (``fashion-mnist-100``: mAP@1000, the ImageNet-100
convention; ``fashion-mnist-multilabel``: mAP@5000, the MS-COCO one). Section 6 quotes the
paper's "+3.4 % average mAP" of nested over single-length models. The functions here read a
long study table (``nhl.studies.results.load("frozen")``: one row per run and length with ``dataset``,
``method``, ``variant``, ``seed``, ``bits``, ``mAP``, ``topk``, ``mAP@K``) and give per-seed
paired differences with 95 % confidence intervals (:func:`nhl.studies.statistics.paired`) and relative
gains in percent, for every dataset in its convention (and mAP@ALL beside it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..metrics import map_per_length
from . import results
from .statistics import paired, t_quantile

#: The columns a study table needs here.
NEEDED = ("dataset", "method", "variant", "seed", "bits", "mAP", "topk", "mAP@K")


def _check_table(table) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a DataFrame (a study table), got {type(table).__name__}")
    missing = [c for c in NEEDED if c not in table.columns]
    if missing:
        raise ValueError(f"the table lacks columns {missing}; pass a study table such as nhl.studies.results.load('frozen')")
    if table.empty:
        raise ValueError("the table is empty")
    return table


def complete_pairs(table: pd.DataFrame, treatment: str = "nhl", reference: str = "single") -> pd.DataFrame:
    """The rows of the (dataset, method, seed, bits) cells that hold both ``treatment`` and
    ``reference`` (a partial table, e.g. while a study is still being computed, may lack one)."""
    table = _check_table(table)
    keys = ["dataset", "method", "seed", "bits"]
    keep = table[table["variant"].isin([treatment, reference])]
    both = keep.groupby(keys)["variant"].transform("nunique") == 2
    return keep[both]


def study_table(name: str, treatment: str = "nhl", reference: str = "single") -> tuple[pd.DataFrame | None, str]:
    """A study's table (:func:`nhl.studies.results.get`) restricted to :func:`complete_pairs`, and a line
    saying where it comes from and how complete it is; ``(None, message)`` when the table does
    not exist yet or holds no complete pair. Never trains."""
    try:
        table, source = results.get(name)
    except FileNotFoundError:
        return None, (f"The {name!r} table is not yet computed (results/{name}.csv is missing and the run "
                      f"cache lacks its runs): make it with `python -m nhl study {name}`.")
    pairs = complete_pairs(table, treatment, reference)
    if pairs.empty:
        return None, (f"{source}\nThe {name!r} table is not yet computed: it holds no run pair "
                      f"{treatment!r} / {reference!r} yet ({len(table)} rows).")
    groups = pairs.groupby(["dataset", "method"])["seed"].nunique()
    have = ", ".join(f"{d} {m} ({n} seed{'s' * (n > 1)})" for (d, m), n in groups.items())
    return pairs, f"{source}\ncomplete {treatment} / {reference} pairs: {have}"


def metric_columns(table: pd.DataFrame, all_too: bool = True) -> pd.DataFrame:
    """Which column holds which metric, per dataset (in the table's order).

    One row per dataset and metric: ``dataset``, ``column`` (``"mAP@K"`` or ``"mAP"``),
    ``metric`` (``"mAP@1000"``, ``"mAP@ALL"``, ...) and ``convention`` (True for the dataset's
    own metric: mAP@K where the dataset has a cut-off K, else mAP@ALL). ``all_too``: add the
    mAP@ALL row beside a dataset's mAP@K.
    """
    table = _check_table(table)
    rows = []
    for dataset, g in table.groupby("dataset", sort=False):
        ks = pd.to_numeric(g["topk"], errors="coerce").dropna().unique()
        if len(ks) > 1:
            raise ValueError(f"{dataset}: rows disagree on the cut-off K ({sorted(ks)})")
        if len(ks):
            rows.append({"dataset": dataset, "column": "mAP@K", "metric": f"mAP@{int(ks[0])}",
                         "convention": True})
        if not len(ks) or all_too:
            rows.append({"dataset": dataset, "column": "mAP", "metric": "mAP@ALL", "convention": not len(ks)})
    return pd.DataFrame(rows)


def paired_by_metric(
    table: pd.DataFrame,
    treatment: str = "nhl",
    reference: str = "single",
    by: Sequence[str] = ("method",),
    all_too: bool = True,
) -> pd.DataFrame:
    """:func:`nhl.studies.statistics.paired` per dataset in its metric (:func:`metric_columns`).

    Columns: ``dataset``, ``metric``, ``convention``, the ``by`` columns, ``bits`` (each length
    and ``"mean"``), ``diff`` (treatment - reference, mean over seeds), ``sd``, ``n`` (seeds),
    ``ci95`` (half-width, Student t) and ``sign`` (``+``/``-`` when the interval excludes 0).
    """
    table = complete_pairs(table, treatment, reference)
    if table.empty:
        raise ValueError(f"no (dataset, method, seed, length) has both {treatment!r} and {reference!r}")
    frames = []
    for _, m in metric_columns(table, all_too).iterrows():
        sub = table[table["dataset"] == m["dataset"]]
        d = paired(sub, treatment, reference, by=("dataset", *by), value=m["column"])
        d.insert(1, "metric", m["metric"])
        d.insert(2, "convention", bool(m["convention"]))
        frames.append(d)
    return pd.concat(frames, ignore_index=True)


def relative_gain(
    table: pd.DataFrame,
    treatment: str = "nhl",
    reference: str = "single",
    by: Sequence[str] = ("dataset",),
    value: str = "mAP",
) -> pd.DataFrame:
    """Relative gain in percent, ``100 (treatment / reference - 1)``, averaged like the paper.

    Per seed the gain is averaged over every other key (datasets, methods and lengths) within
    each group of ``by``; then mean, ``sd``, ``n`` and the 95 % interval ``ci95`` over seeds, and ``sign``
    as in :func:`nhl.studies.statistics.paired`. ``cells``: how many (method, length) cells entered.
    """
    _check_table(table)
    by = list(by)
    keep = table[table["variant"].isin([treatment, reference])]
    keys = [*dict.fromkeys([*by, "dataset", "method", "seed", "bits"])]
    wide = keep.pivot_table(index=keys, columns="variant", values=value)
    if treatment not in wide or reference not in wide:
        raise ValueError(f"the table lacks variant {treatment!r} or {reference!r}")
    rel = (100 * (wide[treatment] / wide[reference] - 1)).dropna().rename("gain %").reset_index()
    per_seed = rel.groupby([*by, "seed"])["gain %"].agg(["mean", "count"]).reset_index()
    out = per_seed.groupby(by).agg(**{"gain %": ("mean", "mean"), "sd": ("mean", "std"),
                                      "n": ("mean", "count"), "cells": ("count", "first")})
    out = out.reset_index()
    out["ci95"] = [t_quantile(int(n)) * sd / np.sqrt(n) if n > 1 else np.nan
                   for n, sd in zip(out["n"], out["sd"])]
    out["sign"] = np.where(out["gain %"] - out["ci95"] > 0, "+",
                           np.where(out["gain %"] + out["ci95"] < 0, "-", "0"))
    return out


def relative_gain_by_metric(
    table: pd.DataFrame,
    treatment: str = "nhl",
    reference: str = "single",
    all_too: bool = True,
    overall: bool = True,
) -> pd.DataFrame:
    """:func:`relative_gain` per dataset in its metric (rows as :func:`metric_columns`).

    ``overall``: a last row ``dataset="all datasets"``, ``metric="convention"``: the gain
    averaged over every dataset (each in its own metric, column ``mAP@K``, which equals
    mAP@ALL where a dataset has no cut-off), methods and lengths.
    """
    table = _check_table(table)
    frames = []
    for _, m in metric_columns(table, all_too).iterrows():
        sub = table[table["dataset"] == m["dataset"]]
        g = relative_gain(sub, treatment, reference, by=("dataset",), value=m["column"])
        g.insert(1, "metric", m["metric"])
        g.insert(2, "convention", bool(m["convention"]))
        frames.append(g)
    if overall and table["dataset"].nunique() > 1:
        g = relative_gain(table.assign(scope="all datasets"), treatment, reference, by=("scope",),
                          value="mAP@K").rename(columns={"scope": "dataset"})
        g.insert(1, "metric", "convention")
        g.insert(2, "convention", True)
        frames.append(g)
    return pd.concat(frames, ignore_index=True)


def sign_counts(paired_table: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and metric: how many (method, length) cells are clearly better (``+``),
    clearly worse (``-``) or undecided (``0``) at 95 %, the ``mean`` rows left out."""
    t = paired_table[paired_table["bits"] != "mean"]
    counts = t.groupby(["dataset", "metric"], sort=False)["sign"].value_counts().unstack(fill_value=0)
    for s in ("+", "0", "-"):
        if s not in counts:
            counts[s] = 0
    counts = counts[["+", "0", "-"]].rename(columns={"+": "better", "0": "undecided", "-": "worse"})
    counts["cells"] = counts.sum(axis=1)
    return counts


def ci_cells(paired_table: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """A plain table of ``diff ± ci95`` strings: rows (dataset, metric, method), columns bits.

    A star marks an interval that excludes 0. Plain text (no colours), readable anywhere.
    """
    t = paired_table.copy()
    star = np.where(t["sign"] != "0", " *", "")
    t["cell"] = [f"{d:+.{digits}f} ± {c:.{digits}f}{s}" if np.isfinite(c) else f"{d:+.{digits}f}"
                 for d, c, s in zip(t["diff"], t["ci95"], star)]
    index = [c for c in ("dataset", "metric", "method") if c in t.columns]
    rows = list(dict.fromkeys(map(tuple, t[index].to_numpy().tolist())))
    cols = list(dict.fromkeys(t["bits"]))
    wide = t.pivot_table(index=index, columns="bits", values="cell", aggfunc="first")
    wide = wide.reindex(pd.MultiIndex.from_tuples(rows, names=index) if len(index) > 1 else [r[0] for r in rows])
    wide = wide[[b for b in cols if b in wide.columns]]
    wide.columns.name = "bits"
    return wide


def truncation(nested, long_single, singles=None) -> pd.DataFrame:
    """The truncation alternative: the longest single-length model's code prefixes as short codes.

    ``nested``, ``long_single`` (the single-length model at the longest length) and optionally
    ``singles`` (``{bits: run}``, the single-length model trained at each length) are finished
    runs (:class:`nhl.experiments.RunResult`). Nothing asked the prefixes of ``long_single``'s
    codes to be good codes on their own; the nested model's prefixes were trained for it.
    Returns a long table (``seed``, ``bits``, ``variant`` in ``nhl`` / ``truncated`` /
    ``single``, ``mAP``) in the dataset's metric (mAP@K where it has a cut-off, tie-aware),
    ready for :func:`nhl.studies.statistics.paired`.
    """
    bits = tuple(nested.bit_list)
    if tuple(long_single.bit_list) != (bits[-1],):
        raise ValueError(f"long_single must be the single-length run at {bits[-1]} bits, "
                         f"got lengths {tuple(long_single.bit_list)}")
    c = long_single.codes
    truncated = map_per_length(c["query"], c["database"], c["query_labels"], c["database_labels"], bits,
                               topk=long_single.topk)
    seed = nested.config.seed
    rows = [{"seed": seed, "bits": b, "variant": "nhl", "mAP": nested.map_at[b]} for b in bits]
    rows += [{"seed": seed, "bits": b, "variant": "truncated", "mAP": float(truncated[b])} for b in bits]
    for b, run in (singles or {}).items():
        if tuple(run.bit_list) != (b,):
            raise ValueError(f"singles[{b}] must be the single-length run at {b} bits")
        rows.append({"seed": seed, "bits": b, "variant": "single", "mAP": run.map_at[b]})
    return pd.DataFrame(rows)

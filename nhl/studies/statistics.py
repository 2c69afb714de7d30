"""Paired differences over seeds, confidence intervals and chance levels for study tables.

Runs that share a seed share their initial weights, targets and batch order, so the per-seed
difference of two variants removes most of the seed-to-seed noise (docs/method.md §9).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .. import experiments, metrics
from ..config import TrainConfig


def t_quantile(n: int, level: float = 0.95) -> float:
    """Two-sided Student-t quantile for ``n`` paired samples (``n - 1`` degrees of freedom)."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, n - 1)) if n > 1 else float("nan")


def paired(
    table: pd.DataFrame,
    treatment: str,
    reference: str,
    by: Sequence[str] = ("dataset", "method"),
    value: str = "mAP",
) -> pd.DataFrame:
    """``treatment`` minus ``reference`` (two values of ``variant``) at the same seed and length.

    Runs that share a seed share the initial weights, targets and batch order, so the per-seed
    difference removes most of the seed-to-seed noise. Per group of ``by`` and ``bits`` (plus a
    ``mean`` over lengths): mean difference, its standard deviation over seeds, ``n`` seeds and
    the half-width of the 95 % confidence interval (Student t); ``sign`` is ``+`` / ``-`` when
    the interval excludes 0, ``0`` otherwise.
    """
    by = list(by)
    keep = table[table["variant"].isin([treatment, reference])]
    wide = keep.pivot_table(index=[*by, "seed", "bits"], columns="variant", values=value)
    if treatment not in wide or reference not in wide:
        raise ValueError(f"the table lacks variant {treatment!r} or {reference!r}")
    d = (wide[treatment] - wide[reference]).dropna().rename("d").reset_index()
    avg = d.groupby([*by, "seed"], as_index=False)["d"].mean()
    avg["bits"] = "mean"
    d["bits"] = d["bits"].astype(object)
    both = pd.concat([d, avg], ignore_index=True)
    g = both.groupby([*by, "bits"], sort=False)["d"]
    out = g.agg(diff="mean", sd="std", n="count").reset_index()
    out["ci95"] = [t_quantile(int(n)) * sd / np.sqrt(n) if n > 1 else np.nan
                   for n, sd in zip(out["n"], out["sd"])]
    out["sign"] = np.where(out["diff"] - out["ci95"] > 0, "+",
                           np.where(out["diff"] + out["ci95"] < 0, "-", "0"))
    return out


def firing_rates(table: pd.DataFrame) -> pd.DataFrame:
    """How often the dominance rule fired (share of steps with any alpha < 1), by dataset and
    method, for the variants that use it: mean and range over seeds."""
    t = table[table["variant"].isin(["weighting", "nhl"])].drop_duplicates(["dataset", "method", "variant", "seed"])
    return (t.groupby(["dataset", "method", "variant"])["firing"]
             .agg(["mean", "min", "max"]).reset_index())


# ------------------------------------------------------------------ the committed grid table
def chance_map(
    dataset: str, protocol: str | None = None, data_root: str | Path | None = None,
    topk: int | None = None,
) -> float:
    """The chance level of a dataset's split: :func:`nhl.metrics.chance_map` (the tie-aware mAP
    of codes that all collapse onto one point) of its query and database labels, about 1/C for
    C balanced classes (0.1 for Fashion-MNIST, 0.01 for ``fashion-mnist-100``). ``protocol``
    ``None``: the studies' split; ``topk``: mAP@K instead of mAP@ALL."""
    splits = experiments.get_splits(TrainConfig(dataset=dataset, protocol=protocol), data_root)
    return metrics.chance_map(splits.query.labels, splits.database.labels, topk=topk)

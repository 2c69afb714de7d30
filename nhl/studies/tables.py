"""From finished runs to a study's long table: one row per run and code length.

Every study table has the same key columns (``dataset``, ``method``, ``variant``, ``seed``,
``bits``) and the metrics of docs/method.md §7 (tie-aware ``mAP``, ``mAP index``, ``mAP@K``
where the dataset has a cut-off), plus the settings that differ between studies.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .. import experiments
from ..config import TrainConfig
from ..losses.targets import is_power_of_two
from ..metrics import tie_group_sizes


def center_design_of(config: TrainConfig, n_classes: int) -> str:
    """What a CSQ config's centres are: a design of :data:`CENTER_DESIGNS` or ``independent``."""
    if not config.nested_targets:
        return "independent"
    if config.center_design != "auto":
        return config.center_design
    longest = config.bit_list[-1]
    return "hadamard" if is_power_of_two(longest) and 2 * longest >= n_classes else "random"


# ------------------------------------------------------------------------------ run -> rows
def variant_of(config: TrainConfig) -> str:
    """``single`` for a single-length run, else the ablation variant by what acts: the dominance
    weighting or not, distillation (any lambda_D > 0) or not: ``plain``, ``weighting``,
    ``distill``, ``nhl`` (the ``lambda_D`` column says how strong); ``custom`` for fixed
    per-length weights."""
    if not config.nested:
        return "single"
    if not isinstance(config.weighting, str):
        return "custom"
    dominance, distills = config.weighting == "dominance", config.distill > 0
    return {(False, False): "plain", (True, False): "weighting", (False, True): "distill",
            (True, True): "nhl"}[(dominance, distills)]


def full_nhl(config: TrainConfig) -> bool:
    """Whether a run is full NHL as recorded: nested, the dominance weighting and the method's
    lambda_D in its regime (:data:`nhl.recipes.DISTILL`, which is 0 where the validation chose
    no distillation: such a run's variant is then ``weighting``)."""
    from ..recipes import distill_strength

    return bool(config.nested and config.weighting == "dominance"
                and config.distill == distill_strength(config.method, config.regime))


def run_rows(run: experiments.RunResult) -> list[dict]:
    """One row per code length of a finished run: its config's key fields and its metrics."""
    c = run.config
    h = run.history
    per_epoch = h.groupby("epoch")["anti_domination"].first()
    val = h.loc[h["selected"]].set_index("bits")["val_map"] if "selected" in h else {}
    rows = []
    for b in c.bit_list:
        rows.append(
            {
                "dataset": c.dataset,
                "regime": c.regime,
                "method": c.method,
                "variant": variant_of(c),
                "seed": c.seed,
                "bits": b,
                "mAP": run.map[b],
                "mAP index": run.metrics["map_index"][str(b)],
                "topk": run.topk,
                "mAP@K": run.map_at[b],
                "val mAP": float(val[b]) if b in val else np.nan,
                "firing": float(per_epoch.mean()),
                "train s": run.train_seconds,
                "epochs": c.epochs,
                "epochs trained": int(h["epoch"].max()) + 1,
                "best epoch": run.metrics["best_epoch"],
                "lr": c.learning_rate,
                "lambda_D": c.distill if c.nested else 0.0,
                "full NHL": full_nhl(c),
                "norm": c.norm,
                "center_design": c.center_design,
                "nested_targets": c.nested_targets,
                "bank_refresh": c.bank_refresh,
            }
        )
    return rows


def runs_table(runs: Sequence[experiments.RunResult]) -> pd.DataFrame:
    """Long table (one row per run and length) of finished runs."""
    return pd.DataFrame([row for r in runs for row in run_rows(r)])


def hparams_table(runs: Sequence[experiments.RunResult]) -> pd.DataFrame:
    t = runs_table(runs)
    t["val score"] = [r.metrics["val_score"] for r in runs for _ in r.config.bit_list]
    return t


def centers_table(runs: Sequence[experiments.RunResult]) -> pd.DataFrame:
    """Per run and length: mAP, distinct codes in the database, nearest tie-group size."""
    rows = []
    for r in runs:
        c = r.config
        n_classes = r.codes["database_labels"].shape[1]
        design = center_design_of(c, n_classes) + (" (default)" if c.center_design == "auto" and c.nested_targets else "")
        q, db = r.codes["query"], r.codes["database"]
        for row in run_rows(r):
            b = row["bits"]
            ties = tie_group_sizes(q, db, b)
            row["design"] = design
            row["distinct codes"] = int(len(np.unique(np.packbits(db[:, :b] > 0, axis=1), axis=0)))
            row["nearest ties (median)"] = float(ties["nearest"].median())
            row["nearest ties (mean)"] = float(ties["nearest"].mean())
            rows.append(row)
    return pd.DataFrame(rows)

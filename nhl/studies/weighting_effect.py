"""Does the dominance-aware weighting help? Read off the ``ablation`` study (docs/method.md §3 and §9).

The ``ablation`` study (:mod:`nhl.studies.results`) trains every representative loss on three datasets
with three seeds as ``plain`` (uniform weights, no distillation), ``weighting`` (the dominance
rule alone), ``distill`` and ``nhl`` (both). Runs that share a seed share the initial weights and
the batch order, so the per-seed difference ``weighting - plain`` isolates what the rule does.
The functions here turn the study's long table into those differences (with 95 % confidence
intervals, :func:`nhl.studies.statistics.paired`), next to how often the rule fired, and into one-line
verdicts. Nothing here trains.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import results
from .statistics import firing_rates, paired

COLUMNS = ("dataset", "method", "bits", "diff", "sd", "n", "ci95", "sign", "firing")


def load_ablation(root=None, data_root=None) -> tuple[pd.DataFrame | None, str]:
    """``nhl.studies.results.get("ablation")``, or ``(None, why)`` when the table is not computed yet."""
    try:
        return results.get("ablation", root=root, data_root=data_root)
    except FileNotFoundError:
        return None, ("results/ablation.csv is not yet computed (make it with "
                      "`python -m nhl study ablation`); nothing to show below")


def effect(
    table: pd.DataFrame | None,
    treatment: str = "weighting",
    reference: str = "plain",
    value: str = "mAP",
) -> pd.DataFrame:
    """``treatment - reference`` per dataset, method and length (plus ``mean`` over lengths).

    Columns :data:`COLUMNS`: the mean per-seed difference ``diff``, its ``sd``, ``n`` seeds, the
    95 % half-width ``ci95``, ``sign`` (``+``/``-`` when the interval excludes 0, else ``0``) and
    ``firing``, the mean share of the treatment's training steps in which the dominance rule
    fired (NaN for variants without it). An empty table (same columns) when ``table`` is None or
    lacks either variant, so a notebook can say "not yet computed" instead of failing.
    """
    if table is None or value not in table or not {treatment, reference} <= set(table["variant"]):
        return pd.DataFrame(columns=list(COLUMNS))
    p = paired(table, treatment, reference, by=("dataset", "method"), value=value)
    fire = firing_rates(table)
    fire = fire[fire["variant"] == treatment][["dataset", "method", "mean"]].rename(columns={"mean": "firing"})
    out = p.merge(fire, on=["dataset", "method"], how="left")
    if "firing" not in out:
        out["firing"] = np.nan
    return out[list(COLUMNS)].reset_index(drop=True)


def effect_table(eff: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """The differences as a plain wide table: one row per dataset and method, one column per
    length (and ``mean``) holding ``diff ± ci95`` followed by the sign, plus the firing rate."""
    if eff.empty:
        return pd.DataFrame()

    def cell(r: pd.Series) -> str:
        ci = "n/a" if not np.isfinite(r["ci95"]) else f"{r['ci95']:.{digits}f}"
        return f"{r['diff']:+.{digits}f} ± {ci} ({r['sign']})"

    t = eff.assign(text=eff.apply(cell, axis=1), col=eff["bits"].astype(str))
    order = [str(b) for b in sorted({b for b in eff["bits"] if b != "mean"})] + ["mean"]
    wide = t.pivot_table(index=["dataset", "method"], columns="col", values="text", aggfunc="first")
    wide = wide[[c for c in order if c in wide]]
    wide.columns.name = "bits"
    fire = eff.drop_duplicates(["dataset", "method"]).set_index(["dataset", "method"])["firing"]
    wide["rule fired"] = [f"{x:.1%}" if np.isfinite(x) else "n/a" for x in fire.reindex(wide.index)]
    return wide


def verdicts(
    eff: pd.DataFrame, treatment: str = "weighting", reference: str = "plain", value: str = "mAP"
) -> list[str]:
    """One sentence per dataset and method: at which lengths ``treatment`` lowers or raises
    ``value`` against ``reference`` with a 95 % interval that excludes zero, and how often the
    rule fired in the treatment's runs."""
    if eff.empty:
        return [f"No {treatment} vs {reference} runs in the table yet: not yet computed."]
    lines = []
    for (dataset, method), g in eff.groupby(["dataset", "method"], sort=True):
        per = g[g["bits"] != "mean"]
        down = [str(b) for b in per.loc[per["sign"] == "-", "bits"]]
        up = [str(b) for b in per.loc[per["sign"] == "+", "bits"]]
        mean = g[g["bits"] == "mean"].iloc[0]
        fire = g["firing"].iloc[0]
        parts = []
        if down:
            parts.append(f"lowers {value} at {', '.join(down)} bits")
        if up:
            parts.append(f"raises {value} at {', '.join(up)} bits")
        if not parts:
            parts.append(f"changes {value} at no length beyond the 95 % interval")
        fired = f"the rule fired in {fire:.1%} of the steps" if np.isfinite(fire) else "firing rate unknown"
        lines.append(f"{dataset}, {method}: {treatment} {' and '.join(parts)} against {reference} "
                     f"(mean over lengths {mean['diff']:+.4f}, {int(mean['n'])} seeds); {fired}.")
    return lines


def firing_table(table: pd.DataFrame | None, variant: str = "weighting") -> pd.DataFrame:
    """Mean share of training steps in which the dominance rule fired, one row per method and
    one column per dataset, for the runs of ``variant`` (empty when there are none yet)."""
    if table is None or "firing" not in table:
        return pd.DataFrame()
    fire = firing_rates(table)
    fire = fire[fire["variant"] == variant]
    if fire.empty:
        return pd.DataFrame()
    out = fire.pivot_table(index="method", columns="dataset", values="mean")
    out.columns.name = f"rule fired ({variant} runs)"
    return out

"""Does the dominance-aware weighting help? Read off an ablation study (docs/method.md §3 and §9).

An ablation study (:mod:`nhl.studies.results`) trains every representative loss on three datasets
with several seeds as ``plain`` (uniform weights, no distillation), ``weighting`` (the dominance
rule alone), ``distill`` and ``nhl`` (both). Runs that share a seed share the initial weights and
the batch order, so the per-seed difference ``weighting - plain`` isolates what the rule does.
The default table is the converged one, ``results/frozen-ablation.csv`` (frozen regime: a
pretrained backbone, frozen, only the hash head trains, to convergence with early stopping).
The functions here turn the study's long table into those differences (with 95 % confidence
intervals, :func:`nhl.studies.statistics.paired`), next to how often the rule fired, and into one-line
verdicts. Where the rule never fired, the two variants are the same training run: the verdicts
say so instead of reading a difference into them. Nothing here trains.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import results
from .claims import as_recorded_ablation
from .statistics import firing_rates, paired

COLUMNS = ("dataset", "method", "bits", "diff", "sd", "n", "ci95", "sign", "firing")


#: The study :func:`load_ablation` reads by default: the converged ablation (frozen regime).
DEFAULT_STUDY = "frozen-ablation"


def load_ablation(root=None, data_root=None, name: str = DEFAULT_STUDY,
                  reference_variants: bool = False) -> tuple[pd.DataFrame | None, str]:
    """An ablation table and a line saying where it comes from, or ``(None, why)`` when the table
    is not computed yet.

    ``name="frozen-ablation"`` (the default) reads the committed converged table
    ``results/frozen-ablation.csv`` as it is (the committed numbers, quickly);
    ``reference_variants=False`` leaves out its rows with the public code's variants
    (``norm == "shortest"``, ``nested_targets == False``), which would otherwise be paired with
    the method's own ``weighting`` runs of the same seed. Any other study name goes through
    ``nhl.studies.results.get(name, root, data_root)`` (the run cache when it holds every run).
    """
    try:
        if name == DEFAULT_STUDY:
            table, source = results.load(name), results.describe_source(name)
        else:
            table, source = results.get(name, root=root, data_root=data_root)
    except FileNotFoundError:
        return None, (f"results/{name}.csv is not yet computed (make it with "
                      f"`python -m nhl study {name}`); nothing to show below")
    if not reference_variants:
        table = as_recorded_ablation(table).reset_index(drop=True)
    return table, source


def share(x: float) -> str:
    """A firing rate as a percentage, with one decimal (two significant digits below 0.1 %, so
    that a rule that fired rarely never reads as 0.0 %)."""
    return f"{100 * x:.2g}%" if 0 < x < 0.001 else f"{x:.1%}"


def identical(eff: pd.DataFrame) -> pd.Series:
    """Rows of :func:`effect` where the treatment and the reference are the same runs: the rule
    never fired (``firing == 0``) and every per-seed difference is exactly 0."""
    return (eff["firing"].fillna(-1) == 0) & (eff["diff"] == 0) & (eff["sd"].fillna(0) == 0)


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
        if r["same"]:
            return "0 (same runs)"
        ci = "n/a" if not np.isfinite(r["ci95"]) else f"{r['ci95']:.{digits}f}"
        return f"{r['diff']:+.{digits}f} ± {ci} ({r['sign']})"

    eff = eff.assign(same=identical(eff))
    t = eff.assign(text=eff.apply(cell, axis=1), col=eff["bits"].astype(str))
    order = [str(b) for b in sorted({b for b in eff["bits"] if b != "mean"})] + ["mean"]
    wide = t.pivot_table(index=["dataset", "method"], columns="col", values="text", aggfunc="first")
    wide = wide[[c for c in order if c in wide]]
    wide.columns.name = "bits"
    fire = eff.drop_duplicates(["dataset", "method"]).set_index(["dataset", "method"])["firing"]
    wide["rule fired"] = [share(x) if np.isfinite(x) else "n/a" for x in fire.reindex(wide.index)]
    return wide


def verdicts(
    eff: pd.DataFrame, treatment: str = "weighting", reference: str = "plain", value: str = "mAP"
) -> list[str]:
    """One sentence per dataset and method: at which lengths ``treatment`` lowers or raises
    ``value`` against ``reference`` with a 95 % interval that excludes zero, and how often the
    rule fired in the treatment's runs.

    Where the rule never fired, the weights were 1 at every step, so the treatment cannot have
    changed anything: the sentence says the two are the same training (every difference exactly
    0), or, when rounding made the runs drift apart, that the differences are run-to-run noise
    and not the rule's doing."""
    if eff.empty:
        return [f"No {treatment} vs {reference} runs in the table yet: not yet computed."]
    lines = []
    same = identical(eff)
    for (dataset, method), g in eff.groupby(["dataset", "method"], sort=True):
        mean = g[g["bits"] == "mean"].iloc[0]
        fire = g["firing"].iloc[0]
        n = int(mean["n"])
        if fire == 0:
            if same[g.index].all():
                lines.append(f"{dataset}, {method}: the rule never fired (0.0% of the steps), so {treatment} "
                             f"and {reference} are the same training: every difference is exactly 0 "
                             f"({n} seeds).")
            else:
                lines.append(f"{dataset}, {method}: the rule never fired (0.0% of the steps), so {treatment} "
                             f"cannot have changed anything; the differences (mean over lengths "
                             f"{mean['diff']:+.4f}, {n} seeds) are floating-point run-to-run noise, "
                             f"not the rule.")
            continue
        per = g[g["bits"] != "mean"]
        down = [str(b) for b in per.loc[per["sign"] == "-", "bits"]]
        up = [str(b) for b in per.loc[per["sign"] == "+", "bits"]]
        parts = []
        if down:
            parts.append(f"lowers {value} at {', '.join(down)} bits")
        if up:
            parts.append(f"raises {value} at {', '.join(up)} bits")
        if not parts:
            parts.append(f"changes {value} at no length beyond the 95 % interval")
        fired = f"the rule fired in {share(fire)} of the steps" if np.isfinite(fire) else "firing rate unknown"
        lines.append(f"{dataset}, {method}: {treatment} {' and '.join(parts)} against {reference} "
                     f"(mean over lengths {mean['diff']:+.4f}, {n} seeds); {fired}.")
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


def full_nhl_firing(table: pd.DataFrame | None) -> pd.DataFrame:
    """Mean share of training steps in which the dominance rule fired in the *full NHL* runs of a
    study table (rows whose ``full NHL`` column is true: variant ``nhl``, or ``weighting`` where
    the method's recorded lambda_D is 0), one row per method and one column per dataset, averaged
    over seeds; NaN where a method was not run on a dataset, empty when there are no such runs.
    The methods are those of the table (e.g. ``results/frozen.csv``, converged frozen-regime runs)."""
    if table is None or not {"full NHL", "firing", "dataset", "method", "seed"} <= set(table.columns):
        return pd.DataFrame()
    full = as_recorded_ablation(table[table["full NHL"].astype(str) == "True"])
    if full.empty:
        return pd.DataFrame()
    runs = full.drop_duplicates(["dataset", "method", "seed"])
    out = runs.pivot_table(index="method", columns="dataset", values="firing", aggfunc="mean")
    out.columns.name = "rule fired (full NHL runs)"
    return out

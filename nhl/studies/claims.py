"""The paper's claims checked on the committed study tables, per regime and dataset
(docs/method.md §9; README.md "The paper's claims, measured here").

Claims: (1) nested NHL beats single-length models by +3.4 % mAP on average; (2) the ablation
order (full NHL >= each half >= plain); (3) training all lengths at once is 5-8x faster than
training them one by one; (4) plug-and-play: it helps every base loss. Every number is a paired
difference over seeds (same seed = same initial weights, targets and batch order) with its
95 % interval, in each dataset's own metric (mAP@1000 on ``fashion-mnist-100``, mAP@5000 on the
multi-label set, mAP@ALL on Fashion-MNIST); relative gains are given beside absolute ones.
``python -m nhl.studies.claims`` prints the verdict table from ``results/``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import results
from .comparisons import metric_columns, paired_by_metric, relative_gain
from .report import ablation_order, grid_table, lambda_choice
from .statistics import paired


def as_recorded(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with full NHL as recorded (the method's lambda_D in its regime, column
    ``full NHL``) labelled ``nhl``, whatever acts in it (with lambda_D = 0 it is ``weighting``).
    Tables without that column (scratch, lambda_D = 1 throughout) come back unchanged."""
    if "full NHL" not in table:
        return table
    out = table.copy()
    out.loc[out["full NHL"].fillna(False).astype(bool), "variant"] = "nhl"
    return out


def _own_metric(table: pd.DataFrame, dataset: str) -> tuple[str, str]:
    m = metric_columns(table[table["dataset"] == dataset], all_too=False).iloc[0]
    return m["column"], m["metric"]


def _balanced(table: pd.DataFrame, treatment: str) -> pd.DataFrame:
    """The rows of the losses run with every seed of their dataset (pooled over seeds, a one-seed
    loss would weigh on one seed's mean only)."""
    keep = []
    for _, sub in table.groupby("dataset", sort=False):
        seeds = sub[sub["variant"] == treatment].groupby("method")["seed"].nunique()
        keep.append(sub[~sub["method"].isin(seeds[seeds < seeds.max()].index)])
    return pd.concat(keep) if keep else table


def gains(table: pd.DataFrame, treatment: str = "nhl", reference: str = "single") -> pd.DataFrame:
    """Per dataset (own metric) and method pooled: the mean over lengths and methods of
    ``treatment - reference`` (absolute, with 95 % CI over seeds) and the relative gain in % (the
    paper's average; CI over seeds), and the absolute gain at 8 bits. Pools the losses that were
    run with every seed (:func:`per_method` has each loss, one-seed ones included)."""
    table = as_recorded(table)
    rows = []
    for dataset in table["dataset"].unique():
        sub = table[table["dataset"] == dataset]
        if not {treatment, reference} <= set(sub["variant"]):
            continue
        sub = _balanced(sub, treatment)
        col, metric = _own_metric(table, dataset)
        p = paired_by_metric(sub.assign(all="all"), treatment, reference, by=("all",), all_too=False)
        mean = p[p["bits"] == "mean"].iloc[0]
        short = p[p["bits"] == min(sub["bits"])].iloc[0]
        rel = relative_gain(sub, treatment, reference, by=("dataset",), value=col).iloc[0]
        ref = sub[sub["variant"] == reference][col].mean()
        pairs = sub[sub["variant"].isin([treatment, reference])]
        rows.append({"dataset": dataset, "metric": metric, "methods": pairs["method"].nunique(),
                     "seeds": int(mean["n"]), f"{reference} mAP": ref, "gain": mean["diff"],
                     "gain ci95": mean["ci95"], "gain %": rel["gain %"], "gain % ci95": rel["ci95"],
                     "gain at 8 bits": short["diff"], "sign": mean["sign"]})
    return pd.DataFrame(rows)


def per_method(table: pd.DataFrame, treatment: str = "nhl", reference: str = "single") -> pd.DataFrame:
    """Per dataset and method: ``treatment - reference`` averaged over lengths (own metric),
    its 95 % CI and sign: the plug-and-play claim, loss by loss."""
    table = as_recorded(table)
    p = paired_by_metric(table, treatment, reference, by=("method",), all_too=False)
    return p[p["bits"] == "mean"].drop(columns=["bits", "convention"]).reset_index(drop=True)


def trained_runs(table: pd.DataFrame) -> pd.DataFrame:
    """One row per trained run of a study table (a nested run has one row per length)."""
    runs = table[table["variant"].isin(["single", "plain", "weighting", "distill", "nhl"])].copy()
    runs["run"] = np.where(runs["variant"] == "single", runs["bits"].astype(str), "nested")
    keys = [k for k in ("dataset", "method", "variant", "seed", "lambda_D", "norm", "nested_targets", "run")
            if k in runs]
    return runs.drop_duplicates(keys)


def speedup(table: pd.DataFrame) -> pd.DataFrame:
    """Training seconds of the K single-length models together over the full NHL model's, per
    dataset and method (median over seeds), both trained to convergence under the same rule."""
    runs = trained_runs(as_recorded(table))
    singles = runs[runs["variant"] == "single"].groupby(["dataset", "method", "seed"])["train s"].sum()
    nested = runs[runs["variant"] == "nhl"].groupby(["dataset", "method", "seed"])["train s"].first()
    ratio = (singles / nested).dropna().rename("speed-up").reset_index()
    return ratio.groupby(["dataset", "method"])["speed-up"].median().reset_index()


def convergence(table: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: runs, the share whose selected epoch is before the last epoch trained and the
    share stopped before the maximum (the paper's-regime target: >= 90 % selected before the last)."""
    runs = trained_runs(table)
    before = runs["best epoch"] + 1 < runs["epochs trained"]
    stopped = runs["epochs trained"] < runs["epochs"]
    out = pd.DataFrame({"dataset": runs["dataset"], "before": before, "stopped": stopped})
    return out.groupby("dataset").agg(runs=("before", "size"), **{
        "selected before the last epoch": ("before", "mean"), "stopped before the maximum": ("stopped", "mean")
    }).reset_index()


def _cell(g: pd.Series) -> str:
    return (f"{g['gain']:+.3f} ± {g['gain ci95']:.3f} mAP ({g['gain %']:+.1f} % ± {g['gain % ci95']:.1f}; "
            f"{g['metric']}, {g['methods']} losses × {g['seeds']} seeds)")


def _held(sign: str) -> str:
    return {"+": "held", "-": "not held (reversed)", "0": "not held (within noise)"}[sign]


def verdicts(frozen: pd.DataFrame | None = None, ablation: pd.DataFrame | None = None,
             fine_tune: pd.DataFrame | None = None, scratch: pd.DataFrame | None = None,
             scratch_ablation: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per claim, regime and dataset: what was measured and the verdict."""
    rows = []
    for regime, table in (("scratch (5 epochs)", scratch), ("frozen", frozen), ("fine-tune", fine_tune)):
        if table is None:
            continue
        for _, g in gains(table).iterrows():
            rows.append({"claim": "+3.4 % mAP over single-length models", "regime": regime, "dataset": g["dataset"],
                         "measured": _cell(g), "verdict": _held(g["sign"])})
        for _, g in gains(table, "plain", "single").iterrows():
            rows.append({"claim": "(nesting alone: plain nested vs single-length)", "regime": regime,
                         "dataset": g["dataset"], "measured": _cell(g), "verdict": _held(g["sign"])})
        pm = per_method(table)
        for dataset, g in pm.groupby("dataset", sort=False):
            counts = g["sign"].value_counts()
            rows.append({"claim": "plug-and-play: helps every base loss", "regime": regime, "dataset": dataset,
                         "measured": f"better {counts.get('+', 0)}, within noise {counts.get('0', 0)}, "
                                     f"worse {counts.get('-', 0)} of {len(g)} losses",
                         "verdict": "held" if counts.get("+", 0) == len(g) else
                         ("held only for " + ", ".join(g.loc[g["sign"] == "+", "method"])
                          if counts.get("+", 0) else "not held")})
        if "train s" in table and regime != "scratch (5 epochs)":
            sp = speedup(table)
            for dataset, g in sp.groupby("dataset", sort=False):
                lo, hi = g["speed-up"].min(), g["speed-up"].max()
                rows.append({"claim": "5-8x faster training (all lengths at once)", "regime": regime,
                             "dataset": dataset, "measured": f"{lo:.1f}x-{hi:.1f}x over {len(g)} losses "
                             "(K single models' seconds / full NHL's, each to convergence)",
                             "verdict": "held" if lo >= 5 else ("held only for " + ", ".join(
                                 g.loc[g["speed-up"] >= 5, "method"]) if (g["speed-up"] >= 5).any() else "not held")})
    for regime, table in (("scratch (5 epochs)", scratch_ablation), ("frozen", ablation)):
        if table is None:
            continue
        order = ablation_order(as_recorded_ablation(table), value="mAP")
        for (dataset, method), g in order.groupby(level=["dataset", "method"], sort=False):
            v = g["verdict"]
            held = (v == "holds").sum()
            failed = v.str.startswith("fails").sum()
            rows.append({"claim": "ablation order (full >= each half >= plain)", "regime": regime,
                         "dataset": dataset, "method": method,
                         "measured": f"{held} of {len(v)} steps hold, {failed} fail "
                                     f"({int(g['seeds'].iloc[0])} seeds, mAP@ALL)",
                         "verdict": "held" if held == len(v) else (f"not held ({failed} reversed)" if failed
                                                                     else "not shown (within noise)")})
    return pd.DataFrame(rows)


def as_recorded_ablation(table: pd.DataFrame) -> pd.DataFrame:
    """An ablation table's four variants (the reference-code variants left out)."""
    keep = table
    if "norm" in keep:
        keep = keep[keep["norm"].fillna("own") == "own"]
    if "nested_targets" in keep:
        keep = keep[keep["nested_targets"].astype(str) != "False"]
    return keep


def per_length(table: pd.DataFrame, treatment: str = "nhl", reference: str = "single") -> pd.DataFrame:
    """``treatment - reference`` per dataset and length (and their mean), in each dataset's own
    metric and in mAP@ALL: mean over the losses run with every seed and over seeds, with its
    95 % CI over seeds, and the relative gain in % (mean of per-cell ratios)."""
    table = _balanced(as_recorded(table), treatment)
    p = paired_by_metric(table.assign(all="all"), treatment, reference, by=("all",), all_too=True)
    rel = []
    for _, m in metric_columns(table).iterrows():
        sub = table[table["dataset"] == m["dataset"]]
        r = relative_gain(sub.assign(length=sub["bits"]), treatment, reference, by=("dataset", "length"),
                          value=m["column"])
        rel += [{"dataset": m["dataset"], "metric": m["metric"], "bits": b, "gain %": g}
                for b, g in zip(r["length"], r["gain %"])]
        whole = relative_gain(sub, treatment, reference, by=("dataset",), value=m["column"]).iloc[0]
        rel.append({"dataset": m["dataset"], "metric": m["metric"], "bits": "mean", "gain %": whole["gain %"]})
    out = p.merge(pd.DataFrame(rel), on=["dataset", "metric", "bits"], how="left")
    return out[["dataset", "metric", "bits", "diff", "ci95", "gain %", "n"]]


def baselines(table: pd.DataFrame) -> pd.DataFrame:
    """Mean mAP per dataset and length (own metric) of full NHL, plain nested, single-length,
    the truncated single 128-bit model and the classifier's codes, over the losses run with every
    seed and over seeds."""
    table = _balanced(as_recorded(table), "nhl")
    rows = []
    for dataset, sub in table.groupby("dataset", sort=False):
        col, metric = _own_metric(table, dataset)
        means = sub.groupby(["variant", "bits"])[col].mean().unstack("bits")
        for variant in ("nhl", "plain", "single", "truncated", "classifier"):
            if variant in means.index:
                rows.append({"dataset": dataset, "metric": metric, "model": variant,
                             **{int(b): means.loc[variant, b] for b in means.columns}})
    return pd.DataFrame(rows)


def lambda_effect(search: pd.DataFrame) -> pd.DataFrame:
    """Per method: the recorded frozen lambda_D and the mean validation mAP at it and at
    lambda_D = 1 (the paper's value), from the ``lambda-frozen`` search."""
    from ..recipes import DISTILL

    choice = lambda_choice(search)
    out = pd.DataFrame({"lambda_D (frozen)": [DISTILL["frozen"][m][0] for m in choice.index],
                        "source": [DISTILL["frozen"][m][1] for m in choice.index],
                        "val mAP at it": [choice.loc[m, f"val {DISTILL['frozen'][m][0]:g}"] for m in choice.index],
                        "val mAP at 1": choice["val 1"].to_numpy(),
                        "datasets searched": choice["datasets"].to_numpy()}, index=choice.index)
    return out.reset_index()


def regime_gains(tables: dict[str, pd.DataFrame], treatment: str = "nhl",
                 reference: str = "single") -> pd.DataFrame:
    """:func:`gains` of several regimes in one table (column ``regime`` first), e.g.
    ``{"frozen": frozen, "fine-tune": fine_tune}``: the paired gain per regime and dataset."""
    frames = [gains(t, treatment, reference).assign(regime=r) for r, t in tables.items() if t is not None]
    out = pd.concat([f for f in frames if not f.empty], ignore_index=True)
    return out[["regime", *[c for c in out.columns if c != "regime"]]]


def trick_effects(ablation: pd.DataFrame, value: str = "mAP") -> pd.DataFrame:
    """What each of NHL's two ideas adds over plain nesting (docs/method.md §3-§4), from an
    ablation table: per dataset, method and variant (``weighting``, ``distill``, ``nhl``), the
    paired difference from ``plain`` averaged over lengths, its 95 % CI over seeds and sign, the
    lambda_D used and the share of steps on which the dominance rule fired (``firing``)."""
    from .statistics import paired

    table = as_recorded_ablation(ablation)
    rows = []
    for variant in ("weighting", "distill", "nhl"):
        p = paired(table, variant, "plain", by=("dataset", "method"), value=value)
        p = p[p["bits"] == "mean"].drop(columns="bits").assign(variant=variant)
        rows.append(p)
    out = pd.concat(rows, ignore_index=True)
    runs = table.drop_duplicates(["dataset", "method", "variant", "seed"])
    extra = runs.groupby(["dataset", "method", "variant"]).agg(
        lambda_D=("lambda_D", "first"), firing=("firing", "mean")).reset_index()
    out = out.merge(extra, on=["dataset", "method", "variant"], how="left")
    return out[["dataset", "method", "variant", "lambda_D", "firing", "diff", "ci95", "n", "sign"]]


def decision_guide(frozen: pd.DataFrame, fine_tune: pd.DataFrame | None = None) -> pd.DataFrame:
    """The practitioner's table, one row per base loss (frozen regime, each dataset's own
    metric): full NHL minus single-length models (mean over lengths, sign per dataset in the
    order of :data:`DATASET_ORDER`), full NHL minus the truncated single 128-bit model at the
    shortest length, the training speed-up of one nested run over K single runs (median over
    datasets and seeds) and the recorded lambda_D; plus the fine-tune regime's sign where it
    was measured."""
    from ..recipes import DISTILL

    pm = per_method(frozen)
    datasets = [d for d in DATASET_ORDER if d in set(pm["dataset"])]
    recorded = as_recorded(frozen)
    shortest = int(recorded["bits"].min())
    sp = speedup(frozen)
    ft_all = per_method(fine_tune) if fine_tune is not None else None
    rows = []
    for method, g in pm.groupby("method", sort=True):
        signs = " ".join(g.set_index("dataset")["sign"].reindex(datasets).fillna("·"))
        trunc = []
        for dataset in datasets:
            sub = recorded[(recorded["dataset"] == dataset) & (recorded["method"] == method)
                           & (recorded["bits"] == shortest)]
            col, _ = _own_metric(recorded, dataset)
            means = sub.groupby("variant")[col].mean()
            if {"nhl", "truncated"} <= set(means.index):
                trunc.append(means["nhl"] - means["truncated"])
        row = {"loss": method, "datasets": len(g), "NHL - single (mean)": g["diff"].mean(),
               "sign per dataset": signs,
               f"NHL - truncated at {shortest} bits": float(np.mean(trunc)) if trunc else np.nan,
               "speed-up": sp.loc[sp["method"] == method, "speed-up"].median(),
               "lambda_D (frozen)": DISTILL["frozen"][method][0]}
        if ft_all is not None:
            ft = ft_all[ft_all["method"] == method]
            row["sign fine-tune"] = " ".join(ft["sign"]) if len(ft) else ""
        rows.append(row)
    return pd.DataFrame(rows)


def variant_means(table: pd.DataFrame, dataset: str, method: str,
                  variants=("single", "plain", "nhl", "truncated")) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """One loss on one dataset of a converged study table (``frozen``, ``fine-tune``): the mean
    over seeds of each variant's mAP per length in the dataset's own metric (mAP@K where the
    dataset has a cut-off), its standard deviation over seeds, and the metric's name. Full NHL
    is taken as recorded (:func:`as_recorded`). Returns ``(mean, sd,
    metric)``; ``mean`` and ``sd`` are indexed by bits with one column per variant present,
    ready for :func:`nhl.plots.curves.map_vs_bits`."""
    sub = as_recorded(table)
    sub = sub[(sub["dataset"] == dataset) & (sub["method"] == method)]
    if sub.empty:
        raise ValueError(f"no rows for method {method!r} on dataset {dataset!r}")
    m = metric_columns(sub, all_too=False).iloc[0]
    sub = sub[sub["variant"].isin(variants)]
    stats = sub.groupby(["bits", "variant"])[m["column"]].agg(["mean", "std"])
    keep = [v for v in variants if v in set(sub["variant"])]
    mean = stats["mean"].unstack("variant")[keep]
    sd = stats["std"].unstack("variant")[keep].fillna(0.0)
    mean.columns.name = sd.columns.name = None
    return mean, sd, m["metric"]


def _pm(value: float, ci: float, digits: int) -> str:
    return f"{value:+.{digits}f} ± {ci:.{digits}f}" if np.isfinite(ci) else f"{value:+.{digits}f} (one seed)"


def _sign_word(sign: str, seeds: int) -> str:
    if seeds < 2:
        return "one seed, no interval"
    return {"+": "better", "-": "worse", "0": "within noise"}[sign]


def gain_summary(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Full NHL and plain nesting against single-length models, per regime and dataset, as short
    text cells (:func:`regime_gains`; each dataset's own metric, the losses run
    with every seed): ``gain (mAP)`` is the mean over losses and lengths ± its 95 % half-width
    over seeds, ``gain (%)`` the paper's relative average ± its half-width, ``verdict`` where the
    absolute interval lies. ``tables``: ``{regime: study table}``, e.g. ``{"frozen": ...,
    "fine-tune": ...}``."""
    rows = []
    for model, variant in (("full NHL", "nhl"), ("plain nested", "plain")):
        for _, g in regime_gains(tables, variant).iterrows():
            rows.append({"regime": g["regime"], "dataset": g["dataset"], "model": model, "metric": g["metric"],
                         "losses x seeds": f"{g['methods']} x {g['seeds']}", "single mAP": round(g["single mAP"], 3),
                         "gain (mAP)": _pm(g["gain"], g["gain ci95"], 3),
                         "gain (%)": _pm(g["gain %"], g["gain % ci95"], 1),
                         "verdict": _sign_word(g["sign"], int(g["seeds"]))})
    order = {r: i for i, r in enumerate(tables)}
    out = pd.DataFrame(rows)
    out = out.sort_values(["regime", "dataset", "model"], key=lambda s: s.map(order) if s.name == "regime" else s,
                          kind="stable")
    return out.set_index(["regime", "dataset", "model"])


def loss_verdicts(per_method: pd.DataFrame) -> pd.DataFrame:
    """Per dataset of :func:`per_method`: which losses are better, within noise
    or worse than their single-length models (the 95 % interval of the mean over lengths), and
    which were run with one seed only (no interval)."""
    rows = []
    for (dataset, metric), g in per_method.groupby(["dataset", "metric"], sort=False):
        word = [_sign_word(s, int(n)) for s, n in zip(g["sign"], g["n"])]
        cell = {w: ", ".join(m for m, x in zip(g["method"], word) if x == w) or "-"
                for w in ("better", "within noise", "worse", "one seed, no interval")}
        rows.append({"dataset": dataset, "metric": metric, **cell})
    return pd.DataFrame(rows).set_index(["dataset", "metric"])


def scratch_vs_converged(grid: pd.DataFrame, converged: pd.DataFrame, value: str = "mAP") -> pd.DataFrame:
    """The one-seed scratch grid's per-method gain beside a converged study's, on the datasets
    and losses both hold: full NHL minus single-length ``value`` (default mAP@ALL in both, so the
    two columns measure the same thing), averaged over lengths. ``scratch gain``: seed 0 of the
    grid (a fixed short budget, ``scratch epochs`` where the grid records them); ``converged
    gain`` with its 95 % CI over seeds, ``seeds`` and ``converged verdict`` (better / within
    noise / worse / one seed); ``scratch agrees``: where the converged interval excludes 0,
    whether the grid's gain has its sign (``None`` elsewhere: nothing to agree with)."""
    conv = as_recorded(converged)
    p = paired(conv, "nhl", "single", by=("dataset", "method"), value=value)
    p = p[p["bits"] == "mean"].set_index(["dataset", "method"])
    rows = []
    for dataset in pd.unique(grid["dataset"]):
        g = grid_table(grid, dataset)["mean gain"]
        for method, gain in g.items():
            if (dataset, method) in p.index:
                c = p.loc[(dataset, method)]
                verdict = _sign_word(c["sign"], int(c["n"]))
                epochs = grid.loc[grid["dataset"] == dataset, "epochs"].iloc[0] if "epochs" in grid else np.nan
                rows.append({"dataset": dataset, "method": method, "scratch epochs": epochs, "scratch gain": gain,
                             "converged gain": c["diff"], "95% CI": c["ci95"], "seeds": int(c["n"]),
                             "converged verdict": verdict,
                             "scratch agrees": bool(np.sign(gain) == np.sign(c["diff"]))
                             if verdict in ("better", "worse") else None})
    if not rows:
        raise ValueError("the grid and the converged table share no (dataset, method)")
    return pd.DataFrame(rows).set_index(["dataset", "method"])


#: The datasets in the order the tables list them (fewest classes first).
DATASET_ORDER = ("fashion-mnist", "fashion-mnist-100", "fashion-mnist-multilabel")


def _md(table: pd.DataFrame, digits: int = 3) -> str:
    return table.to_markdown(index=False, floatfmt=f".{digits}f")


def markdown() -> str:
    """README's "The paper's claims, measured here" from the committed tables."""
    def get(name: str) -> pd.DataFrame | None:
        try:
            return results.load(name)
        except FileNotFoundError:
            return None

    frozen, ablation, fine = get("frozen"), get("frozen-ablation"), get("fine-tune")
    parts = ["#### Verdicts", _md(verdicts(frozen, ablation, fine).fillna(""))]
    for name, table in (("frozen", frozen), ("fine-tune", fine)):
        if table is None:
            continue
        parts += [f"#### {name}: full NHL minus single-length, per length (mean over losses; 95 % CI over seeds)",
                  _md(per_length(table)),
                  f"#### {name}: plain nested minus single-length, per length",
                  _md(per_length(table, "plain")),
                  f"#### {name}: mean mAP per length with the baselines (own metric; losses run with every seed)",
                  _md(baselines(table)),
                  f"#### {name}: convergence (selected epoch before the last; stopped early)",
                  _md(convergence(table), 2)]
    if ablation is not None:
        parts += ["#### frozen ablation: convergence", _md(convergence(ablation), 2)]
    search = get("lambda-frozen")
    if search is not None:
        parts += ["#### lambda_D per method (frozen regime, validation)", _md(lambda_effect(search), 4)]
    return "\n\n".join(parts) + "\n"


def main() -> None:
    print(markdown())


if __name__ == "__main__":
    main()

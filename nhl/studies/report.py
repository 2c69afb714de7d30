"""Summary tables of the committed studies (:mod:`nhl.studies.results`), for README.md and the notebooks.

Each function takes a study's long table (``nhl.studies.results.get(name)[0]`` or
``nhl.studies.results.load(name)``) and returns a small pandas table; :func:`markdown_report` renders all
of them as the README's "Measured here" section (``python -m nhl report``). Nothing here trains.
docs/method.md §9 lists the claims these tables check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .results import load, stamp
from .statistics import paired, t_quantile

#: Per-method target of the tutorial's standard setting (Fashion-MNIST, 15 epochs, mAP@ALL).
TARGET = {"short": (8, 0.40), "rest": 0.60}


def _bits_columns(table: pd.DataFrame) -> list[int]:
    return sorted(int(b) for b in table["bits"].unique())


def grid_table(table: pd.DataFrame, dataset: str, value: str = "mAP") -> pd.DataFrame:
    """Per method: single-length and nested (NHL) mAP at every length, and the mean gain."""
    t = table[(table["dataset"] == dataset) & table["variant"].isin(["single", "nhl"])]
    if t.empty:
        raise ValueError(f"no grid rows for dataset {dataset!r}")
    wide = t.pivot_table(index="method", columns=["bits", "variant"], values=value)
    out = pd.DataFrame(index=wide.index)
    for b in _bits_columns(t):
        out[f"{b} single"] = wide[(b, "single")]
        out[f"{b} nested"] = wide[(b, "nhl")]
    gains = np.stack([wide[(b, "nhl")] - wide[(b, "single")] for b in _bits_columns(t)], axis=1)
    out["mean gain"] = gains.mean(axis=1)
    return out


def target_check(table: pd.DataFrame, dataset: str = "fashion-mnist") -> pd.DataFrame:
    """Per method and kind (single / nested): the lowest mAP at 8 bits and at >= 16 bits, and
    whether the tutorial's target (>= 0.40 at 8 bits, >= 0.60 from 16 bits) is met."""
    t = table[(table["dataset"] == dataset) & table["variant"].isin(["single", "nhl"])]
    short_bits, short_min = TARGET["short"]
    rows = []
    for (method, variant), g in t.groupby(["method", "variant"]):
        at8 = g.loc[g["bits"] == short_bits, "mAP"].min()
        rest = g.loc[g["bits"] > short_bits, "mAP"].min()
        rows.append({"method": method, "kind": "nested" if variant == "nhl" else "single",
                     f"mAP at {short_bits} bits": at8, f"lowest mAP at >= {2 * short_bits} bits": rest,
                     "target met": bool(at8 >= short_min and rest >= TARGET["rest"])})
    return pd.DataFrame(rows).set_index(["method", "kind"])


def paired_table(table: pd.DataFrame, treatment: str, reference: str, value: str = "mAP") -> pd.DataFrame:
    """Per dataset and method: ``treatment - reference`` averaged over lengths (mean, 95 % CI)
    and the sign at each length (``+``/``-`` when the CI excludes 0, ``0`` otherwise)."""
    p = paired(table, treatment, reference, value=value)
    mean = p[p["bits"] == "mean"].set_index(["dataset", "method"])
    per = p[p["bits"] != "mean"].pivot_table(index=["dataset", "method"], columns="bits",
                                              values="sign", aggfunc="first")
    out = pd.DataFrame({
        f"{treatment} - {reference}": mean["diff"],
        "95% CI": mean["ci95"],
        "seeds": mean["n"].astype(int),
        "sign per length": per.apply(lambda r: " ".join(r.astype(str)), axis=1),
    })
    return out


def ablation_table(table: pd.DataFrame, value: str = "mAP") -> pd.DataFrame:
    """Per dataset and method: each variant minus ``plain`` averaged over lengths (with its 95 %
    CI), and how often the dominance rule fired in the ``nhl`` runs."""
    parts = {}
    for v in ("weighting", "distill", "nhl"):
        p = paired(table, v, "plain", value=value)
        m = p[p["bits"] == "mean"].set_index(["dataset", "method"])
        parts[f"{v} - plain"] = m["diff"]
        parts[f"{v} CI"] = m["ci95"]
    out = pd.DataFrame(parts)
    fired = (table[table["variant"] == "nhl"].drop_duplicates(["dataset", "method", "seed"])
             .groupby(["dataset", "method"])["firing"].mean())
    out["rule fired (nhl)"] = fired
    out["paper's order holds"] = (out["nhl - plain"] >= out["weighting - plain"]) & (
        out["nhl - plain"] >= out["distill - plain"]) & (out["weighting - plain"] >= 0) & (
        out["distill - plain"] >= 0)
    return out


def lambda_table(table: pd.DataFrame, value: str = "mAP") -> pd.DataFrame:
    """Per method and lambda_D: mean (over seeds) mAP at every length and over lengths."""
    g = table.groupby(["method", "lambda_D", "bits"])[value].mean().unstack("bits")
    g["mean"] = g.mean(axis=1)
    return g


def centers_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and centre design: mean mAP per length, distinct 128-bit codes in the
    database, and the median size of the tie group at the nearest distance at 16 and 128 bits."""
    longest = int(table["bits"].max())
    mean = table.groupby(["dataset", "design", "bits"])["mAP"].mean().unstack("bits")
    extra = table.groupby(["dataset", "design", "bits"])[["distinct codes", "nearest ties (median)"]].mean()
    mean[f"distinct codes ({longest} bits)"] = extra.xs(longest, level="bits")["distinct codes"]
    for b in (16, longest):
        mean[f"nearest ties at {b} bits"] = extra.xs(b, level="bits")["nearest ties (median)"]
    mean["seeds"] = table.groupby(["dataset", "design"])["seed"].nunique()
    return mean


def bank_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per method and bank-refresh policy: validation and query mAP (mean over lengths and seeds,
    with the standard deviation over seeds)."""
    per_run = table.groupby(["method", "bank_refresh", "seed"])[["val mAP", "mAP"]].mean()
    out = per_run.groupby(["method", "bank_refresh"]).agg(["mean", "std"])
    out.columns = [f"{a} {b}" for a, b in out.columns]
    return out


def _fmt(table: pd.DataFrame, digits: int = 3) -> str:
    return table.to_markdown(floatfmt=f".{digits}f")


def markdown_report(folder: str | Path | None = None) -> str:
    """The README's "Measured here" tables, from the committed result files."""
    lines: list[str] = []

    def section(title: str, name: str, body: str) -> None:
        s = stamp(name, folder)
        date = str(s["date"])
        date = date[:10] if date[:4].isdigit() else f"date {date}"
        epochs = {d: e[0] if len(e) == 1 else e for d, e in s["epochs"].items() if e}
        lines.extend([f"#### {title}", "", f"`{s['command']}` (nhl {s['package_version']}, "
                      f"{date}, epochs {epochs}): `results/{name}.csv`", "", body, ""])

    grid = load("grid", folder)
    for dataset in sorted(grid["dataset"].unique()):
        section(f"Eight losses, single-length vs nested NHL: {dataset} (mAP@ALL, seed 0)", "grid",
                _fmt(grid_table(grid, dataset)))
    section("Target of the standard setting (Fashion-MNIST, 15 epochs)", "grid",
            _fmt(target_check(grid)))
    section("Distillation strength (fashion-mnist-100, three seeds, mAP@ALL)", "lambda",
            _fmt(lambda_table(load("lambda", folder)), 4))
    section("CSQ centre designs", "centers", _fmt(centers_table(load("centers", folder))))
    return "\n".join(lines)


#: The paper's ablation order (docs/method.md §9) as four paired claims ``a >= b``: full NHL at
#: least as good as without weighting (``distill``) and as without distillation (``weighting``),
#: and each of those at least as good as without both (``plain``).
ORDER_CLAIMS = (
    ("nhl", "distill", "full NHL >= without weighting"),
    ("nhl", "weighting", "full NHL >= without distillation"),
    ("weighting", "plain", "without distillation >= without both"),
    ("distill", "plain", "without weighting >= without both"),
)


#: Largest per-seed, per-length difference still counted as "identical runs" (the tables keep
#: six significant digits).
IDENTICAL_TOL = 1e-6


def _verdict(diff: float, ci: float, identical: bool) -> str:
    if identical:
        return "identical runs"
    if not np.isfinite(ci):
        return "holds (one seed)" if diff >= 0 else "fails (one seed)"
    if diff - ci > 0:
        return "holds"
    if diff + ci < 0:
        return "fails"
    return "within noise (holds in mean)" if diff >= 0 else "within noise (fails in mean)"


def ablation_order(table: pd.DataFrame, value: str = "mAP") -> pd.DataFrame:
    """The paper's ablation order checked per dataset and method, claim by claim.

    For each claim ``a >= b`` of :data:`ORDER_CLAIMS`: the paired difference ``a - b`` (same
    seed, averaged over lengths) with its 95 % CI (:func:`nhl.studies.statistics.paired`) and a verdict:
    ``holds`` (CI above 0), ``fails`` (CI below 0), ``within noise (holds/fails in mean)``
    (CI contains 0) or ``identical runs`` (every per-seed, per-length difference is 0, up to
    :data:`IDENTICAL_TOL`:
    the two variants trained the same model, e.g. when the dominance rule never fires).
    One row per dataset, method and claim.
    """
    rows = []
    for a, b, claim in ORDER_CLAIMS:
        p = paired(table, a, b, value=value)
        keep = table[table["variant"].isin([a, b])]
        wide = keep.pivot_table(index=["dataset", "method", "seed", "bits"], columns="variant",
                                values=value)
        same = (wide[a] - wide[b]).abs().groupby(["dataset", "method"]).max() <= IDENTICAL_TOL
        for _, r in p[p["bits"] == "mean"].iterrows():
            identical = bool(same.get((r["dataset"], r["method"]), False))
            rows.append({"dataset": r["dataset"], "method": r["method"], "claim": claim,
                         "difference": r["diff"], "95% CI": r["ci95"], "seeds": int(r["n"]),
                         "verdict": _verdict(r["diff"], r["ci95"], identical)})
    return pd.DataFrame(rows).set_index(["dataset", "method", "claim"])


def order_verdicts(order: pd.DataFrame) -> pd.DataFrame:
    """:func:`ablation_order` as a dataset x method table of verdicts, one column per claim."""
    out = order["verdict"].unstack("claim")
    return out[[c for _, _, c in ORDER_CLAIMS if c in out.columns]]


def lambda_stats(table: pd.DataFrame, value: str = "mAP") -> pd.DataFrame:
    """Per method, lambda_D and length: mean, sample std, seeds and 95 % CI half-width of
    ``value`` over seeds (the error bars of the distillation-strength plot)."""
    g = table.groupby(["method", "lambda_D", "bits"])[value]
    out = g.agg(mean="mean", sd="std", n="count").reset_index()
    out["ci95"] = [t_quantile(int(n)) * sd / np.sqrt(n) if n > 1 else np.nan
                   for n, sd in zip(out["n"], out["sd"])]
    return out


def lambda_paired(table: pd.DataFrame, value: str = "mAP") -> pd.DataFrame:
    """Per method and lambda_D > 0: mAP minus the lambda_D = 0 run of the same seed, at every
    length and averaged over lengths (``bits`` = ``mean``), with 95 % CI and sign
    (:func:`nhl.studies.statistics.paired`)."""
    lams = sorted(table["lambda_D"].unique())
    if 0 not in lams:
        raise ValueError("the table needs lambda_D = 0 runs (the reference)")
    t = table.assign(variant=[f"lambda {x:g}" for x in table["lambda_D"]])
    parts = [paired(t, f"lambda {x:g}", "lambda 0", by=("method",), value=value)
             .assign(lambda_D=x) for x in lams if x != 0]
    out = pd.concat(parts, ignore_index=True)
    return out[["method", "lambda_D", "bits", "diff", "ci95", "n", "sign"]]


def lambda_effects(table: pd.DataFrame, value: str = "mAP") -> pd.DataFrame:
    """Per method and lambda_D > 0: the paired difference to lambda_D = 0 averaged over lengths
    (mean, 95 % CI, seeds) and its sign at each length (``+``/``-`` when the CI excludes 0)."""
    p = lambda_paired(table, value=value)
    mean = p[p["bits"] == "mean"].set_index(["method", "lambda_D"])
    per = p[p["bits"] != "mean"].pivot_table(index=["method", "lambda_D"], columns="bits",
                                              values="sign", aggfunc="first")
    return pd.DataFrame({
        "minus lambda_D = 0": mean["diff"],
        "95% CI": mean["ci95"],
        "seeds": mean["n"].astype(int),
        "sign per length": per.apply(lambda r: " ".join(r.astype(str)), axis=1),
    })


def rule_table(table: pd.DataFrame, value: str = "mAP") -> pd.DataFrame:
    """Per dataset and method: how often the dominance rule fired (docs/method.md §3; share
    of training steps with any alpha < 1, mean over seeds) in the ``weighting`` and ``nhl``
    runs, and the largest difference (any seed, any length) that switching the weighting on
    made: ``|weighting - plain|`` and ``|nhl - distill|``. A rule that never fires leaves
    every weight at 1, so those differences are 0: the runs are identical."""
    need = {"plain", "weighting", "distill", "nhl"}
    if not need <= set(table["variant"]):
        raise ValueError(f"the table needs the variants {sorted(need)}")
    runs = table.drop_duplicates(["dataset", "method", "variant", "seed"])
    fired = runs.pivot_table(index=["dataset", "method"], columns="variant", values="firing",
                             aggfunc="mean")
    wide = table.pivot_table(index=["dataset", "method", "seed", "bits"], columns="variant",
                             values=value)
    by = ["dataset", "method"]
    return pd.DataFrame({
        "rule fired (weighting)": fired["weighting"],
        "rule fired (nhl)": fired["nhl"],
        "max |weighting - plain|": (wide["weighting"] - wide["plain"]).abs().groupby(by).max(),
        "max |nhl - distill|": (wide["nhl"] - wide["distill"]).abs().groupby(by).max(),
    })


def gain_vs_noise(grid: pd.DataFrame, seeds: pd.DataFrame, value: str = "mAP") -> pd.DataFrame:
    """Which per-method gains of the one-seed ``grid`` exceed seed noise (docs/method.md §9).

    Per dataset and method of ``grid``: the mean gain over lengths (nested minus single, seed
    0). For the methods of the three-seed ``seeds`` study: their paired mean gain with its 95 %
    CI (:func:`paired_table`). ``typical seed sd`` is the median, over the dataset's seed-study
    methods, of the standard deviation across seeds of the (length-averaged) gain: how much a
    one-seed gain moves when only the seed changes. ``exceeds noise`` is ``yes``/``no`` from
    the method's own CI where it has one (the CI excludes 0), else from
    ``|gain| > 2 x typical seed sd`` (marked ``(yardstick)``); ``n/a`` without a seed study.
    """
    parts = []
    for dataset in pd.unique(grid["dataset"]):
        g = grid_table(grid, dataset)["mean gain"].rename("grid gain (seed 0)").to_frame()
        g["dataset"] = dataset
        parts.append(g.reset_index())
    out = pd.concat(parts, ignore_index=True).set_index(["dataset", "method"])
    p = paired(seeds, "nhl", "single", value=value)
    mean = p[p["bits"] == "mean"].set_index(["dataset", "method"])
    out["3-seed gain"] = mean["diff"].reindex(out.index)
    out["95% CI"] = mean["ci95"].reindex(out.index)
    typical = mean["sd"].groupby(level="dataset").median()
    out["typical seed sd"] = [typical.get(d, np.nan) for d, _ in out.index]

    def verdict(r) -> str:
        if np.isfinite(r["95% CI"]):
            return "yes" if abs(r["3-seed gain"]) > r["95% CI"] else "no"
        if np.isfinite(r["typical seed sd"]):
            big = abs(r["grid gain (seed 0)"]) > 2 * r["typical seed sd"]
            return ("yes" if big else "no") + " (yardstick)"
        return "n/a"

    out["exceeds noise"] = out.apply(verdict, axis=1)
    return out


def lambda_choice(table: pd.DataFrame) -> pd.DataFrame:
    """The validation choice of lambda_D per method from a ``lambda-frozen``-style table (one
    full-NHL run per dataset, method and lambda_D, with its ``val score``): the lambda_D with the
    highest validation score averaged over the datasets searched; a tie (to 4 decimals, the
    noise is larger) goes to the smaller lambda_D. Never the query set."""
    runs = table.groupby(["method", "dataset", "lambda_D"])["val score"].first()
    mean = runs.groupby(["method", "lambda_D"]).mean().round(4).unstack("lambda_D")
    best = mean.max(axis=1)
    chosen = mean.eq(best, axis=0).idxmax(axis=1)  # columns are sorted: the first is the smallest
    out = mean.copy()
    out.columns = [f"val {c:g}" for c in out.columns]
    out["chosen"] = chosen
    out["datasets"] = runs.groupby("method").apply(lambda g: g.index.get_level_values("dataset").nunique())
    return out

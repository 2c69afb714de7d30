"""The committed result tables (``results/``): what the method does, measured with error bars.

Each *study* is a named list of :class:`~nhl.config.TrainConfig` plus the table made from their
finished runs. ``python -m nhl study NAME`` trains what the run cache lacks (in parallel worker
processes with a fixed thread count, see :func:`nhl.studies.run_all`) and writes
``results/NAME.csv`` (one row per run and code length) and ``results/NAME.json`` (the stamp: the
command, the configs, package version, date, machine, threads and wall time). The run cache
(``runs/``) is not in git; these small tables are, so notebooks and README.md can show them
when the cache lacks the runs (:func:`load` reads them back, :func:`describe_source` says which
one a notebook shows).

Studies (METHOD.md section 6: the paper's claims):

* ``hparams``: the learning-rate search on the Fashion-MNIST validation split behind
  :mod:`nhl.recipes` (standard setting: 15 epochs, nested NHL).
* ``grid``: the eight base losses, single-length against nested NHL at every length, one seed,
  on ``fashion-mnist`` and ``fashion-mnist-100``.
* ``seeds``: the same comparison for three representative losses (:data:`REPRESENTATIVE`), three
  seeds, on the three datasets (:data:`SEEDS_DATASETS`); :func:`paired` gives per-seed paired
  differences with 95 % confidence intervals.
* ``ablation``: plain / weighting / distillation / both for those losses, three seeds, three
  datasets, with how often the dominance rule fires (share of steps with any alpha < 1).
* ``centers``: CSQ with improved nested, Sylvester-row nested, random nested and independent
  centres: mAP per length, distinct codes in the database, size of the nearest tie group.
* ``bank``: DHN, DSH and DBDH with their memory bank written from the current network never,
  once before training (the default) or before every epoch; three seeds on Fashion-MNIST.
* ``lambda``: distillation alone at lambda_D in :data:`LAMBDAS` for DHN and CSQ on
  ``fashion-mnist-100``, three seeds: where the distillation term's gradient is as large as the
  base loss's (DHN at lambda_D = 1) it takes over the short codes.

The settings: the grid trains the standard 15 epochs on Fashion-MNIST (:data:`GRID_EPOCHS`, the
check of the per-method targets) and 5 on the 100-class set; every other study trains 5 epochs on
every dataset (:data:`STUDY_EPOCHS`), the shortest setting in which every loss is well above
chance. Each stamp records its study's wall time and the sum of its runs' training seconds (2
workers x 1 thread on a 2-core CPU here); README.md sums them up.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import experiments
from .config import TrainConfig
from .losses import available as available_losses
from .paths import project_root
from .recipes import SEARCH
from .validation import check_choice

#: Datasets of the studies: 10 classes, 100 classes, multi-label.
DATASETS = ("fashion-mnist", "fashion-mnist-100", "fashion-mnist-multilabel")
#: Datasets of the full eight-method grid.
GRID_DATASETS = ("fashion-mnist", "fashion-mnist-100")
#: Datasets of the ``seeds`` study (single-length against nested, three seeds).
SEEDS_DATASETS = DATASETS
#: One centre-based and two pairwise losses, for the seed and ablation studies.
REPRESENTATIVE = ("csq", "dhn", "lcdsh")
SEEDS = (0, 1, 2)
VARIANTS = ("plain", "weighting", "distill", "nhl")
#: Epochs per dataset in the seed, ablation, centre and lambda studies (and the tutorial's full
#: setting): 5 everywhere (what these studies cost is in their stamps and README.md).
STUDY_EPOCHS = {"fashion-mnist": 5, "fashion-mnist-100": 5, "fashion-mnist-multilabel": 5}
#: Epochs of the eight-method ``grid`` (the check of the per-method targets of nhl.recipes): the
#: standard 15 on Fashion-MNIST, 5 on the 100-class set.
GRID_EPOCHS = {"fashion-mnist": 15, "fashion-mnist-100": 5}
#: Distillation strengths of the ``lambda`` study (0 = plain, 1 = the method's lambda_D).
LAMBDAS = (0.0, 0.01, 0.1, 1.0)
#: Methods of the ``lambda`` study: where distillation hurts (DHN) and where it does not (CSQ).
LAMBDA_METHODS = ("dhn", "csq")
#: Learning rates of the search behind nhl.recipes (recorded there with the search's setting).
SEARCH_LRS = SEARCH["learning rates"]
#: CSQ centre constructions compared in the ``centers`` study (plus independent centres).
CENTER_DESIGNS = ("hadamard", "sylvester", "random")

def results_dir() -> Path:
    """``$NHL_RESULTS`` or ``<project>/results``."""
    return Path(os.environ.get("NHL_RESULTS") or project_root() / "results")


def study_config(dataset: str, **changes) -> TrainConfig:
    """The studies' setting for ``dataset`` (its :data:`STUDY_EPOCHS`), nested NHL by default."""
    return TrainConfig(dataset=dataset, epochs=STUDY_EPOCHS[dataset], **changes)


def grid_config(dataset: str, **changes) -> TrainConfig:
    """The grid's setting for ``dataset`` (its :data:`GRID_EPOCHS`), nested NHL by default."""
    return TrainConfig(dataset=dataset, epochs=GRID_EPOCHS[dataset], **changes)


def _with_baselines(config: TrainConfig) -> list[TrainConfig]:
    return [config, *(config.baseline(b) for b in config.bit_list)]


# ------------------------------------------------------------------------------ the studies
def hparams_configs() -> list[TrainConfig]:
    return [
        TrainConfig(method=m, lr=lr) for m in available_losses() for lr in SEARCH_LRS
    ]


def grid_configs() -> list[TrainConfig]:
    return [
        c
        for d in GRID_DATASETS
        for m in available_losses()
        for c in _with_baselines(grid_config(d, method=m))
    ]


def seeds_configs() -> list[TrainConfig]:
    return [
        c
        for d in SEEDS_DATASETS
        for m in REPRESENTATIVE
        for s in SEEDS
        for c in _with_baselines(study_config(d, method=m, seed=s))
    ]


def ablation_configs() -> list[TrainConfig]:
    return [
        study_config(d, method=m, seed=s).variant(v)
        for d in DATASETS
        for m in REPRESENTATIVE
        for s in SEEDS
        for v in VARIANTS
    ]


def lambda_configs() -> list[TrainConfig]:
    """Distillation only (uniform weights), lambda_D from :data:`LAMBDAS`, on the 100-class set."""
    return [
        study_config("fashion-mnist-100", method=m, seed=s).variant("plain").replace(distill=lam)
        for m in LAMBDA_METHODS
        for s in SEEDS
        for lam in LAMBDAS
    ]


#: Memory-bank losses and the bank-refresh policies compared in the ``bank`` study.
BANK_METHODS = ("dhn", "dsh", "dbdh")
BANK_REFRESH = ("none", "start", "epoch")


def bank_configs() -> list[TrainConfig]:
    """Nested NHL on Fashion-MNIST (the studies' 5 epochs) with each bank-refresh policy, 3 seeds."""
    return [
        study_config("fashion-mnist", method=m, seed=s, bank_refresh=b)
        for m in BANK_METHODS
        for s in SEEDS
        for b in BANK_REFRESH
    ]


def center_design_of(config: TrainConfig, n_classes: int) -> str:
    """What a CSQ config's centres are: a design of :data:`CENTER_DESIGNS` or ``independent``."""
    from .losses.targets import is_power_of_two

    if not config.nested_targets:
        return "independent"
    if config.center_design != "auto":
        return config.center_design
    longest = config.bit_list[-1]
    return "hadamard" if is_power_of_two(longest) and 2 * longest >= n_classes else "random"


def centers_configs() -> list[TrainConfig]:
    """Per dataset: the default centres, each other design that gives different centres, and
    independent per-length centres; three seeds on ``fashion-mnist-100`` (where the choice for
    C > 2 L is made), one elsewhere. The default is run as ``center_design="auto"`` so the
    ``seeds`` study's runs are reused."""
    from .losses.targets import nested_csq_centers

    out = []
    for d in DATASETS:
        n_classes = experiments.get_splits(study_config(d)).n_classes
        base = study_config(d, method="csq")
        default = center_design_of(base, n_classes)
        designs: dict[str, object] = {}
        for design in (default, *[x for x in CENTER_DESIGNS if x != default]):
            c = nested_csq_centers(n_classes, base.bit_list, design=design)
            if not any(bool((c == other).all()) for other in designs.values()):  # skip repeats
                designs[design] = c
        seeds = SEEDS if d == "fashion-mnist-100" else SEEDS[:1]
        for s in seeds:
            for design in designs:
                out.append(base.replace(seed=s, center_design="auto" if design == default else design))
            out.append(base.replace(seed=s, nested_targets=False))
    return out


# ------------------------------------------------------------------------------ run -> rows
def variant_of(config: TrainConfig) -> str:
    """``single`` for a single-length run, else the ablation variant (``nhl``, ``plain``, ...)."""
    kind = config.kind
    return "single" if kind.startswith("single") else kind.removeprefix("nested-")


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
                "best epoch": run.metrics["best_epoch"],
                "lr": c.learning_rate,
                "lambda_D": c.distill,
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
    from .plots.curves import tie_group_sizes

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


@dataclass(frozen=True)
class Study:
    """A named study: the runs it needs and the table made from them."""

    name: str
    what: str
    configs: Callable[[], list[TrainConfig]]
    table: Callable[[Sequence[experiments.RunResult]], pd.DataFrame] = runs_table


STUDIES: dict[str, Study] = {
    s.name: s
    for s in (
        Study("hparams", "learning-rate search on the Fashion-MNIST validation split", hparams_configs, hparams_table),
        Study("grid", "eight losses, single-length vs nested NHL, one seed", grid_configs),
        Study("seeds", "three losses, single-length vs nested NHL, three seeds", seeds_configs),
        Study("ablation", "plain / weighting / distillation / both, three seeds", ablation_configs),
        Study("centers", "CSQ centre constructions", centers_configs, centers_table),
        Study("lambda", "distillation strength lambda_D on the 100-class set", lambda_configs),
        Study("bank", "when memory banks are written from the current network", bank_configs),
    )
}


def run_study(
    names: Sequence[str],
    workers: int | None = None,
    threads: int = 1,
    root: str | Path | None = None,
    data_root: str | Path | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    command: str | None = None,
    datasets: Sequence[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Train what the named studies need (all at once, in parallel), then write their tables.

    ``datasets``: train only the runs on these datasets and replace their rows in the existing
    table (``results/NAME.csv``), keeping the other datasets' rows and recording both commands
    in the stamp's ``parts`` (how a study is extended by one dataset without retraining the rest).
    """
    from .studies import run_all

    names = [check_choice(n, STUDIES, "study") for n in names]
    configs = {n: STUDIES[n].configs() for n in names}
    if datasets is not None:
        present = sorted({c.dataset for cs in configs.values() for c in cs})
        datasets = [check_choice(d, present, "dataset") for d in datasets]
        configs = {n: [c for c in cs if c.dataset in datasets] for n, cs in configs.items()}
        empty = [n for n, cs in configs.items() if not cs]
        if empty:
            raise ValueError(f"studies {empty} have no runs on the datasets {datasets}")
    everything = [c for n in names for c in configs[n]]
    t0 = time.perf_counter()
    runs = run_all(everything, workers=workers, threads=threads, root=root, data_root=data_root,
                   progress=progress)
    wall = time.perf_counter() - t0
    by_config = dict(zip(everything, runs))
    tables = {}
    for n in names:
        these = [by_config[c] for c in configs[n]]
        table = STUDIES[n].table(these)
        stamp = {
            "study": n,
            "what": STUDIES[n].what,
            "command": command or f"python -m nhl study {n}",
            "package_version": experiments.package_version(),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "processor": platform.processor() or platform.machine()},
            "workers": workers, "threads per worker": threads,
            "wall seconds (all studies of this command)": round(wall, 1),
            "train seconds (sum over this study's runs)": round(sum(r.train_seconds for r in these), 1),
            "epochs": {d: sorted({c.epochs for c in configs[n] if c.dataset == d}) for d in DATASETS},
            "configs": [c.to_json() for c in configs[n]],  # one compact line each
        }
        if datasets is not None:
            table, stamp = _merge_part(n, table, stamp, datasets, out)
        write(n, table, stamp, out)
        tables[n] = table
    return tables


_PART_KEYS = ("command", "date", "package_version", "machine", "workers", "threads per worker",
              "wall seconds (all studies of this command)", "train seconds (sum over this study's runs)")


def _merge_part(name: str, table: pd.DataFrame, new: dict, datasets: Sequence[str],
                out: str | Path | None) -> tuple[pd.DataFrame, dict]:
    """The existing table of study ``name`` with the rows of ``datasets`` replaced by ``table``."""
    this_part = {k: new[k] for k in _PART_KEYS} | {"datasets": list(datasets)}
    try:
        old_table = load(name, out)
    except FileNotFoundError:  # nothing to extend yet: this command made the whole table
        return table, new | {"parts": [this_part]}
    old = stamp(name, out)  # a table without its stamp is an error, not an empty study
    old_parts = old.get("parts") or [
        {k: old.get(k) for k in _PART_KEYS} | {"datasets": sorted(set(old_table["dataset"]))}
    ]
    parts = []
    for p in old_parts:
        left = [d for d in p["datasets"] if d not in datasets]
        if left and len(left) < len(p["datasets"]):  # its seconds also counted replaced runs
            p = p | {"train seconds (sum over this study's runs)": None,
                     "note": f"its times also covered {sorted(set(p['datasets']) - set(left))}"}
        if left:
            parts.append(p | {"datasets": left})
    parts.append(this_part)
    kept_configs = [c for c in old["configs"] if json.loads(c)["dataset"] not in datasets]
    configs = kept_configs + new["configs"]
    decoded = [json.loads(c) for c in configs]
    known = [p.get("train seconds (sum over this study's runs)") for p in parts]
    merged = new | {
        "command": " ; ".join(f"{p['command']} ({', '.join(p['datasets'])})" for p in parts),
        "parts": parts,
        "configs": configs,
        "epochs": {d: sorted({c["epochs"] for c in decoded if c["dataset"] == d})
                   for d in dict.fromkeys(c["dataset"] for c in decoded)},
        "train seconds (sum over this study's runs)": (
            round(sum(float(x) for x in known), 1) if all(x is not None for x in known) else None),
    }
    kept = old_table[~old_table["dataset"].isin(datasets)]
    return pd.concat([kept, table], ignore_index=True), merged


def write(name: str, table: pd.DataFrame, stamp: dict, out: str | Path | None = None) -> Path:
    """Write ``NAME.csv`` and its stamp ``NAME.json`` into ``out`` (default :func:`results_dir`)."""
    from .utils import atomic_write_text

    folder = Path(out) if out is not None else results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / f"{name}.csv", table.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(folder / f"{name}.json", json.dumps(stamp, indent=1, sort_keys=True, default=str))
    return folder / f"{name}.csv"


def load(name: str, folder: str | Path | None = None) -> pd.DataFrame:
    """A committed result table (``results/NAME.csv``)."""
    folder = Path(folder) if folder is not None else results_dir()
    path = folder / f"{name}.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; make it with: python -m nhl study {name}")
    return pd.read_csv(path)


def stamp(name: str, folder: str | Path | None = None) -> dict:
    """The stamp of a committed result table: command, package version, date, settings."""
    folder = Path(folder) if folder is not None else results_dir()
    return json.loads((folder / f"{name}.json").read_text())


def get(
    name: str, root: str | Path | None = None, data_root: str | Path | None = None
) -> tuple[pd.DataFrame, str]:
    """A study's table and a line saying where it comes from.

    When every run of the study is in the run cache the table is rebuilt from those runs (what
    ``python -m nhl study NAME`` would write); otherwise the committed ``results/NAME.csv`` is
    read. Never trains.
    """
    from .grid import cached_run

    study = STUDIES[check_choice(name, STUDIES, "study")]
    configs = study.configs()
    runs = [cached_run(c, root, data_root) for c in configs]
    missing = sum(r is None for r in runs)
    if not missing:
        return study.table(runs), f"computed from the {len(runs)} runs of study {name!r} in the run cache"
    note = f" ({missing} of {len(runs)} runs are not in this machine's run cache)"
    return load(name), describe_source(name) + note


def describe_source(name: str, folder: str | Path | None = None) -> str:
    """One line saying which committed table a notebook shows and how it was made."""
    s = stamp(name, folder)
    date = str(s["date"])
    when = f"on {date[:10]}" if date[:4].isdigit() else f"(date {date})"
    return (f"results/{name}.csv: {s['what']}, made by `{s['command']}` {when} "
            f"(nhl {s['package_version']}, {s['threads per worker']} thread(s) per worker)")


# ------------------------------------------------------------------------------ summaries
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


def as_grid(table: pd.DataFrame, value: str = "mAP") -> pd.DataFrame:
    """Single-length vs nested rows of a long table in :mod:`nhl.grid`'s format (one dataset)."""
    if table["dataset"].nunique() != 1:
        raise ValueError("as_grid needs the rows of one dataset; filter by dataset first")
    keys, cols = ["method", "seed", "bits"], [value, "train s"]
    single = table.loc[table["variant"] == "single", keys + cols]
    nested = table.loc[table["variant"] == "nhl", keys + cols]
    both = single.merge(nested, on=keys, suffixes=(" single", " nested"))
    base_s = both.groupby(["method", "seed"])["train s single"].transform("sum")
    return pd.DataFrame({
        "method": both["method"], "bits": both["bits"],
        "baseline mAP": both[f"{value} single"], "nested mAP": both[f"{value} nested"],
        "gain": both[f"{value} nested"] - both[f"{value} single"],
        "baseline s": both["train s single"], "nested s": both["train s nested"],
        "speed-up": base_s / both["train s nested"],
    })

"""Training the runs of studies in parallel and writing their committed tables.

:func:`run_all` trains many configs in worker processes (each with a fixed number of torch
threads, so the same call gives the same numbers again); :func:`run_study` does it for named
studies of :mod:`nhl.studies.catalogue` and writes their tables and stamps.
"""

from __future__ import annotations

import datetime as _dt
import json
import multiprocessing
import os
import platform
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from .. import experiments
from ..config import TrainConfig
from ..utils import code_state
from ..validation import check_choice
from . import tables as tables_mod
from .catalogue import DATASETS, STUDIES
from .results import load, stamp, write


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    experiments.loaded_code()  # pin the code this worker loaded (each run records it)


def _run_one(config_json: str, root: str | None, data_root: str | None) -> str:
    config = TrainConfig.from_dict(json.loads(config_json))
    return str(experiments.run(config, root=root, data_root=data_root, progress=False).path)


def run_all(
    configs: Sequence[TrainConfig],
    workers: int | None = None,
    threads: int = 1,
    root: str | Path | None = None,
    data_root: str | Path | None = None,
    progress: bool = True,
) -> list[experiments.RunResult]:
    """Train (or load) every config, ``workers`` at a time; results in the order given.

    Each worker process runs with ``threads`` torch threads (default 1: on a small CPU two
    one-thread workers train about 1.3x more runs per hour than one two-thread process, and the
    thread count is part of what makes a run's last digits reproducible). ``workers`` defaults
    to the number of CPU cores divided by ``threads``. Duplicates are trained once; runs already
    in the cache are loaded, not retrained. One worker trains in this process (with ``threads``
    torch threads while it does), without the cost of starting another.
    """
    configs = list(configs)
    if workers is None:
        workers = max(1, (os.cpu_count() or 1) // max(threads, 1))
    root_s = None if root is None else str(root)
    data_s = None if data_root is None else str(data_root)
    unique = list(dict.fromkeys(configs))
    todo = [c.to_json() for c in unique if experiments.cached_run(c, root, data_root) is None]
    if todo:  # pretrained backbones and frozen features, made once before the workers start
        from ..regimes import prepare

        prepare([TrainConfig.from_dict(json.loads(c)) for c in todo], data_root=data_root, progress=progress)
    if todo and workers == 1:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for c in tqdm(todo, desc="all runs", unit="run", smoothing=0, disable=not progress):
                _run_one(c, root_s, data_s)
        finally:
            torch.set_num_threads(before)
    elif todo:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(threads,)) as pool:
            futures = [pool.submit(_run_one, c, root_s, data_s) for c in todo]
            bar = tqdm(as_completed(futures), total=len(unique), initial=len(unique) - len(todo),
                       desc="all runs", unit="run", smoothing=0, disable=not progress)
            for future in bar:
                future.result()  # re-raise a worker's error here
    return [experiments.run(c, root=root, data_root=data_root, progress=False) for c in configs]


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
    allow_dirty: bool = False,
) -> dict[str, pd.DataFrame]:
    """Train what the named studies need (all at once, in parallel), then write their tables.

    ``datasets``: train only the runs on these datasets and replace their rows in the existing
    table (``results/NAME.csv``), keeping the other datasets' rows and recording both commands
    in the stamp's ``parts`` (how a study is extended by one dataset without retraining the rest).

    Every committed number must be re-derivable, so the stamp records the git commit of the code
    (:func:`nhl.utils.code_state`) and which commits trained the runs it read from the cache;
    a package whose code differs from its commit is refused (``DirtyCodeError``) unless
    ``allow_dirty``, which records the diff in the stamp instead.
    """
    names = [check_choice(n, STUDIES, "study") for n in names]
    configs = {n: STUDIES[n].configs() for n in names}
    if datasets is not None:
        present = sorted({c.dataset for cs in configs.values() for c in cs})
        datasets = [check_choice(d, present, "dataset") for d in datasets]
        configs = {n: [c for c in cs if c.dataset in datasets] for n, cs in configs.items()}
        empty = [n for n, cs in configs.items() if not cs]
        if empty:
            raise ValueError(f"studies {empty} have no runs on the datasets {datasets}")
    code = code_state(diff=True)
    experiments.loaded_code()  # the in-process worker's runs record the code loaded now
    if code.get("dirty") and not allow_dirty:
        raise DirtyCodeError(
            f"the package's code differs from commit {code['commit'][:12]} ({', '.join(code['dirty'][:5])}"
            f"{', ...' if len(code['dirty']) > 5 else ''}): commit it first, so the table's stamp names the "
            "code that made it, or pass allow_dirty=True (--allow-dirty) to record the diff in the stamp")
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
            "code": code,
            "runs trained by commit": _trained_by(these),
            "pretrained backbones": _pretrained(these),
            "configs": [c.to_json() for c in configs[n]],  # one compact line each
        }
        if datasets is not None:
            table, stamp = _merge_part(n, table, stamp, datasets, out)
        write(n, table, stamp, out)
        tables[n] = table
    return tables


class DirtyCodeError(RuntimeError):
    """A study was asked for while the package's code differs from its git commit."""


def _pretrained(runs: Sequence[experiments.RunResult]) -> list[dict]:
    """Where the backbones of the pretrained-regime runs come from (one entry per backbone)."""
    seen = {json.dumps(r.metrics["pretrain"], sort_keys=True) for r in runs if r.metrics.get("pretrain")}
    return [json.loads(s) for s in sorted(seen)]


def _trained_by(runs: Sequence[experiments.RunResult]) -> dict[str, int]:
    """How many of ``runs`` each commit trained (``"unknown"``: a run from before commits were
    recorded; ``"<commit> + changes"``: trained by code that differed from its commit)."""
    counts: dict[str, int] = {}
    for r in runs:
        code = r.metrics.get("code") or {}
        key = str(code.get("commit") or "unknown")
        if code.get("dirty"):
            key += " + changes"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


_PART_KEYS = ("command", "date", "package_version", "code", "machine", "workers", "threads per worker",
              "wall seconds (all studies of this command)", "train seconds (sum over this study's runs)")


def _merge_part(name: str, table: pd.DataFrame, new: dict, datasets: Sequence[str],
                out: str | Path | None) -> tuple[pd.DataFrame, dict]:
    """The existing table of study ``name`` with the rows of ``datasets`` replaced by ``table``."""
    this_part = {k: new.get(k) for k in _PART_KEYS} | {"datasets": list(datasets)}
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


#: Columns that tell a table's rows apart besides the length (from the configs of its runs).
_ROW_KEYS = ("dataset", "regime", "method", "variant", "seed", "epochs", "lr", "lambda_D", "norm", "center_design",
             "nested_targets", "bank_refresh", "bits")


def verify(
    name: str,
    sample: int | None = 4,
    seed: int = 0,
    workers: int | None = None,
    threads: int | None = None,
    data_root: str | Path | None = None,
    folder: str | Path | None = None,
    tol: float = 1e-6,
    progress: bool = True,
) -> pd.DataFrame:
    """Re-train a sample of a committed table's runs from scratch and compare their numbers.

    ``sample`` runs (all with ``None``) are drawn with ``seed`` from the configs in the table's
    stamp and trained in a fresh, temporary run cache (nothing cached is reused) with the
    stamp's threads per worker, so a table made by this code on this kind of machine is
    reproduced exactly. Returns one row per re-trained run and length: the committed and the
    new mAP, their difference and ``same`` (``|difference| <= tol``; the committed tables keep
    six significant digits, so the default 1e-6 is that rounding). The stamp's commit and
    the commits that trained its runs say what the table claims to come from.
    """
    import tempfile

    import numpy as np

    table, stamp_ = load(name, folder), stamp(name, folder)
    configs = [TrainConfig.from_dict(json.loads(c)) for c in stamp_["configs"]]
    rng = np.random.default_rng(seed)
    if sample is not None and sample < len(configs):
        configs = [configs[i] for i in sorted(rng.choice(len(configs), sample, replace=False))]
    threads = threads or int(stamp_.get("threads per worker") or 1)
    with tempfile.TemporaryDirectory(prefix="nhl-verify-") as tmp:
        runs = run_all(configs, workers=workers, threads=threads, root=tmp, data_root=data_root,
                       progress=progress)
        fresh = tables_mod.runs_table(runs)  # the runs' own rows (baseline rows are not runs)
    keys = [k for k in _ROW_KEYS if k in table.columns and k in fresh.columns]
    both = fresh[keys + ["mAP"]].merge(table[keys + ["mAP"]], on=keys, how="left",
                                       suffixes=(" now", " committed"))
    both["difference"] = both["mAP now"] - both["mAP committed"]
    both["same"] = both["difference"].abs() <= tol
    return both

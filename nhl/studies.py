"""Comparisons built from cached runs: nested vs single-length baselines, method grids, ablations.

Each study is a list of :class:`~nhl.config.TrainConfig` run through :func:`nhl.experiments.run`
(so it is cached) and summarised as a pandas table. :func:`run_all` trains many configs in
parallel worker processes (each with a fixed number of torch threads, so the same call gives
the same numbers again).
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from . import experiments
from .config import TrainConfig
from .grid import cached_run


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


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
    in the cache are loaded, not retrained.
    """
    configs = list(configs)
    if workers is None:
        workers = max(1, (os.cpu_count() or 1) // max(threads, 1))
    root_s = None if root is None else str(root)
    data_s = None if data_root is None else str(data_root)
    unique = list(dict.fromkeys(configs))
    todo = [c.to_json() for c in unique if cached_run(c, root, data_root) is None]
    if todo:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(threads,)) as pool:
            futures = [pool.submit(_run_one, c, root_s, data_s) for c in todo]
            bar = tqdm(as_completed(futures), total=len(unique), initial=len(unique) - len(todo),
                       desc="all runs", unit="run", smoothing=0, disable=not progress)
            for future in bar:
                future.result()  # re-raise a worker's error here
    return [experiments.run(c, root=root, data_root=data_root, progress=False) for c in configs]


class _Overall:
    """The bar over all runs of a comparison (runs done / total, time left), above the bar of the
    run being trained. Runs already in the cache count as done from the start, and the estimate
    is the mean time of the runs trained so far (tqdm ``smoothing=0``) times the runs left."""

    def __init__(self, configs: Sequence[TrainConfig], progress: bool, root=None, data_root=None):
        unique = list(dict.fromkeys(configs))
        self.pending = {c for c in unique if cached_run(c, root, data_root) is None} if progress else set()
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


def _comparison_configs(config: TrainConfig) -> list[TrainConfig]:
    return [config, *(config.baseline(b) for b in config.bit_list)]


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


def compare(config: TrainConfig, progress: bool = True, *, _overall: _Overall | None = None,
            **run_kwargs) -> Comparison:
    """Train (or load) the nested ``config`` and its single-length baselines; tabulate.

    With ``progress``: a bar over the K + 1 runs (done / total, estimate) and each run's own bar.
    """
    if _overall is None:
        with _Overall(_comparison_configs(config), progress, run_kwargs.get("root"),
                      run_kwargs.get("data_root")) as overall:
            return compare(config, progress, _overall=overall, **run_kwargs)
    nested = _overall.run(config, progress=progress, **run_kwargs)
    rows = []
    for bits in config.bit_list:
        base = _overall.run(config.baseline(bits), progress=progress, **run_kwargs)
        rows.append(
            {
                "bits": bits,
                "baseline mAP": base.map[bits],
                "nested mAP": nested.map[bits],
                "gain": nested.map[bits] - base.map[bits],
                "baseline s": base.train_seconds,
            }
        )
    table = pd.DataFrame(rows).set_index("bits")
    return Comparison(table, nested.train_seconds, float(table["baseline s"].sum()))


def grid(
    config: TrainConfig, methods: Iterable[str], progress: bool = True, **run_kwargs
) -> pd.DataFrame:
    """:func:`compare` for every base method: one long table (method, bits, mAPs, gain).

    With ``progress``: a bar over all methods' runs (done / total, estimate) and each run's own.
    """
    methods = list(methods)
    every = [c for m in methods for c in _comparison_configs(config.replace(method=m))]
    with _Overall(every, progress, run_kwargs.get("root"), run_kwargs.get("data_root")) as overall:
        frames = [_grid_rows(config, m, progress, overall, run_kwargs) for m in methods]
    return pd.concat(frames, ignore_index=True)


def _grid_rows(config: TrainConfig, method: str, progress: bool, overall: _Overall,
               run_kwargs: dict) -> pd.DataFrame:
    c = compare(config.replace(method=method), progress, _overall=overall, **run_kwargs)
    t = c.table.reset_index()
    t.insert(0, "method", method)
    t["nested s"] = c.nested_seconds
    t["speed-up"] = c.speedup
    return t


def ablation(
    config: TrainConfig,
    variants: Sequence[str] = ("plain", "weighting", "distill", "nhl"),
    seeds: Sequence[int] = (0, 1, 2),
    progress: bool = True,
    **run_kwargs,
) -> pd.DataFrame:
    """mAP per length for each ablation variant and seed (long format: variant, seed, bits, mAP)."""
    rows = []
    for variant in variants:
        for seed in seeds:
            r = experiments.run(config.variant(variant).replace(seed=seed), progress=progress, **run_kwargs)
            rows += [{"variant": variant, "seed": seed, "bits": b, "mAP": m} for b, m in r.map.items()]
    return pd.DataFrame(rows)


def mean_std(table: pd.DataFrame, by: Sequence[str], value: str = "mAP") -> pd.DataFrame:
    """``mean +/- std`` of ``value`` grouped by ``by`` (rows) and ``bits`` (columns)."""
    g = table.groupby([*by, "bits"])[value].agg(["mean", "std"]).reset_index()
    g["cell"] = g["mean"].map("{:.4f}".format) + " ± " + g["std"].fillna(0).map("{:.4f}".format)
    return g.pivot(index=list(by), columns="bits", values="cell")

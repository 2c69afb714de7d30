"""Comparisons built from cached runs: nested vs single-length baselines, method grids, ablations.

Each study is a list of :class:`~nhl.config.TrainConfig` run through :func:`nhl.experiments.run`
(so it is cached) and summarised as a pandas table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from . import experiments
from .config import TrainConfig


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


def compare(config: TrainConfig, progress: bool = True, **run_kwargs) -> Comparison:
    """Train (or load) the nested ``config`` and its single-length baselines; tabulate."""
    nested = experiments.run(config, progress=progress, **run_kwargs)
    rows = []
    for bits in config.bit_list:
        base = experiments.run(config.baseline(bits), progress=progress, **run_kwargs)
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
    """:func:`compare` for every base method: one long table (method, bits, mAPs, gain)."""
    frames = []
    for method in methods:
        c = compare(config.replace(method=method), progress=progress, **run_kwargs)
        t = c.table.reset_index()
        t.insert(0, "method", method)
        t["nested s"] = c.nested_seconds
        t["speed-up"] = c.speedup
        frames.append(t)
    return pd.concat(frames, ignore_index=True)


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

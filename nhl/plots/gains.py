"""Figures of paired gains and baselines per code length, from :mod:`nhl.studies.claims`
(docs/method.md §9): what the closing notebook and README show per regime.

* :func:`gain_per_length_plot`: a paired difference (e.g. full NHL minus single-length models)
  per code length with its 95 % interval over seeds, one panel per dataset, one line per
  comparison or regime, a shared y axis and the zero line;
* :func:`baselines_plot`: mean mAP per length of full NHL, plain nested, single-length models,
  the truncated single 128-bit model and the classifier's codes, one panel per dataset;
* :func:`trick_plot`: what each of NHL's two ideas adds over plain nesting (paired difference,
  mean over lengths, 95 % interval), one row per (dataset, loss).

Every function draws on ``axes`` (a new figure when ``None``) and returns the axes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["baselines_plot", "gain_per_length_plot", "trick_plot"]

#: Line colours of the models compared per length (the same in every panel).
MODEL_COLOURS = {"nhl": "#2ca02c", "plain": "#7f7f7f", "single": "#1f77b4", "truncated": "#d62728",
                 "classifier": "#9467bd", "weighting": "#17becf", "distill": "#ff7f0e"}
MODEL_LABELS = {"nhl": "full NHL", "plain": "plain nested", "single": "single-length models",
                "truncated": "truncated 128-bit model", "classifier": "classifier's codes",
                "weighting": "weighting only", "distill": "distillation only"}
_STYLES = ("-o", "--s", ":^", "-.D")


def _panels(axes, n: int, width: float = 4.2, height: float = 3.4, sharey: bool = True):
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False, sharey=sharey,
                               layout="constrained")
    axes = np.atleast_1d(axes).ravel()
    if axes.size != n:
        raise ValueError(f"need {n} axes, got {axes.size}")
    return axes


def _bits_axis(ax, bits: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(bits))
    ax.set_xticklabels([str(b) for b in bits])
    ax.minorticks_off()
    ax.set_xlabel("code length (bits)")


def gain_per_length_plot(curves: Mapping[str, pd.DataFrame], metric: str = "own", axes=None,
                         what: str = "full NHL − single-length"):
    """``curves``: label -> a :func:`nhl.studies.claims.per_length` table. Per dataset the
    difference per length with its 95 % interval (error bars; none with one seed), in each
    dataset's own metric (``metric="own"``) or in ``"mAP@ALL"``."""
    frames = []
    for label, t in curves.items():
        t = t[t["bits"] != "mean"].copy()
        if metric == "own":
            own = t.groupby("dataset")["metric"].transform(lambda m: m[m != "mAP@ALL"].iloc[0]
                                                           if (m != "mAP@ALL").any() else "mAP@ALL")
            t = t[t["metric"] == own]
        else:
            t = t[t["metric"] == metric]
        frames.append(t.assign(curve=label))
    data = pd.concat(frames, ignore_index=True)
    if data.empty:
        raise ValueError("nothing to plot: no rows in that metric")
    datasets = list(dict.fromkeys(data["dataset"]))
    axes = _panels(axes, len(datasets))
    offsets = np.linspace(-0.06, 0.06, len(curves)) if len(curves) > 1 else [0.0]
    for ax, dataset in zip(axes, datasets):
        sub = data[data["dataset"] == dataset]
        for (label, style), off in zip(zip(curves, _STYLES), offsets):
            c = sub[sub["curve"] == label]
            if c.empty:
                continue
            bits = c["bits"].astype(int).to_numpy()
            ci = c["ci95"].to_numpy(dtype=float)
            seeds = int(c["n"].max())
            ax.errorbar(bits * 2.0 ** off, c["diff"], yerr=np.where(np.isnan(ci), 0, ci), fmt=style,
                        capsize=3, ms=5, label=f"{label} ({seeds} seed{'s' if seeds > 1 else ''})")
        ax.axhline(0, color="black", lw=0.8)
        _bits_axis(ax, sorted(sub["bits"].astype(int).unique()))
        ax.set_title(f"{dataset} ({sub['metric'].iloc[0]})", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"{what}\n(paired, 95 % CI over seeds)")
    handles = {}
    for ax in axes:  # every curve once, whichever panel has it
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label.split(" (")[0], h)
    seeds = data.groupby("curve")["n"].max()
    labels = [f"{c} (up to {int(seeds[c])} seeds)" for c in handles]
    axes[0].figure.legend(list(handles.values()), labels, loc="outside lower center", ncol=len(handles),
                          fontsize=8)
    return axes


def baselines_plot(table: pd.DataFrame, models: Sequence[str] = ("nhl", "plain", "single", "truncated",
                                                                    "classifier"), axes=None):
    """``table``: :func:`nhl.studies.claims.baselines` (one row per dataset and model, one
    column per length). One panel per dataset, mean mAP per length per model; each panel's y
    axis is its own (the datasets' metrics differ)."""
    datasets = list(dict.fromkeys(table["dataset"]))
    axes = _panels(axes, len(datasets), sharey=False)
    bits = sorted(int(c) for c in table.columns if str(c).isdigit())
    for ax, dataset in zip(axes, datasets):
        sub = table[table["dataset"] == dataset].set_index("model")
        for model in models:
            if model not in sub.index:
                continue
            y = sub.loc[model, bits].to_numpy(dtype=float)
            ax.plot(bits, y, "o-" if model != "classifier" else "s--", color=MODEL_COLOURS[model],
                    label=MODEL_LABELS[model], ms=4, lw=1.5)
        _bits_axis(ax, bits)
        ax.set_title(f"{dataset}", fontsize=10)
        ax.set_ylabel(sub["metric"].iloc[0])
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=8, loc="lower right")
    return axes


def trick_plot(effects: pd.DataFrame, ax=None):
    """``effects``: :func:`nhl.studies.claims.trick_effects`. One row per (dataset, loss), a
    marker per variant: its paired difference from plain nesting (mean over lengths) with the
    95 % interval over seeds."""
    import matplotlib.pyplot as plt

    keys = list(dict.fromkeys(zip(effects["dataset"], effects["method"])))
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 0.42 * len(keys) + 1.2), layout="constrained")
    variants = [v for v in ("weighting", "distill", "nhl") if v in set(effects["variant"])]
    for j, variant in enumerate(variants):
        sub = effects[effects["variant"] == variant].set_index(["dataset", "method"])
        y = np.arange(len(keys)) + (j - (len(variants) - 1) / 2) * 0.22
        rows = sub.reindex(keys)
        ax.errorbar(rows["diff"], y, xerr=rows["ci95"].fillna(0), fmt="o", ms=4, capsize=2,
                    color=MODEL_COLOURS[variant], label=MODEL_LABELS[variant] + " − plain")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(np.arange(len(keys)))
    ax.set_yticklabels([f"{d} / {m}" for d, m in keys], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("mAP@ALL difference from plain nesting (mean over lengths, 95 % CI)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=len(variants))
    return ax

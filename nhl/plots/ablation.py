"""Figures of the ablation notebook: what the weighting and the distillation each contribute.

* :func:`effects_plot`: each variant minus ``plain`` trained with the same seed, averaged over
  lengths, with 95 % confidence intervals, one panel per dataset on a shared y axis (an ablation
  table such as ``results/frozen-ablation.csv``, docs/method.md §9);
* :func:`term_plot`: the distillation term's gradient on ``W`` against the base loss's over
  training steps: the ratio per length, one panel per method on a shared y axis, and the cosine
  of the two gradients per length (:func:`nhl.studies.probes.record_terms`, docs/method.md §4);
* :func:`lambda_plot`: mAP per length against the distillation strength lambda_D with error bars
  over seeds (:func:`nhl.studies.report.lambda_stats`).

Every function draws on ``axes`` (a new figure when ``None``), titles each panel with what it
shows, flags a y axis that does not start at 0, and returns the axes. Code lengths have one colour
each, the same in every figure of the package (:func:`length_colours`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..layer import DEFAULT_BITS
from ..studies.statistics import paired
from .codes import length_colours
from .curves import flag_truncated_y

__all__ = ["effects_plot", "lambda_plot", "length_colours", "term_plot"]

#: Colours of the ablation variants (the same as :mod:`nhl.tutorial.ablation_explorer`).
VARIANT_COLOURS = {"weighting": "#1f77b4", "distill": "#ff7f0e", "nhl": "#2ca02c", "plain": "#7f7f7f"}
_LENGTH_MARKERS = ("o", "s", "^", "D", "v")  # as nhl.plots.curves: one marker per length


def _length_markers(bits: Sequence[int]) -> dict[int, str]:
    """One marker per code length (by its place among the default lengths where it is one)."""
    order = list(DEFAULT_BITS) if set(bits) <= set(DEFAULT_BITS) else sorted(bits)
    return {b: _LENGTH_MARKERS[order.index(b) % len(_LENGTH_MARKERS)] for b in bits}


def _panels(axes, n: int, width: float, height: float, sharey: bool = False):
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False,
                               layout="constrained", sharey=sharey)
    axes = np.atleast_1d(axes).ravel()
    if axes.size != n:
        raise ValueError(f"need {n} axes (one per panel), got {axes.size}")
    return axes


def _include_zero(ax) -> None:
    """Keep 0 (the line a difference is read against) inside the y range."""
    lo, hi = ax.get_ylim()
    pad = 0.05 * (hi - lo)
    ax.set_ylim(min(lo, -pad), max(hi, pad))


def effects_plot(
    table: pd.DataFrame,
    reference: str = "plain",
    variants: Sequence[str] = ("weighting", "distill", "nhl"),
    value: str = "mAP",
    axes=None,
    sharey: bool = True,
):
    """Per dataset: each of ``variants`` minus ``reference`` (same seed), mean over lengths.

    ``table``: a long ablation table (``dataset``, ``method``, ``variant``, ``seed``, ``bits``
    and ``value``), e.g. ``nhl.studies.claims.as_recorded_ablation(results.load("frozen-ablation"))``.
    Points are the mean paired difference, bars the 95 % CI over seeds
    (:func:`nhl.studies.statistics.paired`); a bar that crosses the zero line is a difference the
    seeds cannot tell from none. The panels share one y axis (``sharey``), so a difference looks
    as large in every panel as it is; each title gives its seeds. The legend sits beside the last
    panel, outside the data.
    """
    need = {"dataset", "method", "variant", "seed", "bits", value}
    if not isinstance(table, pd.DataFrame) or not need <= set(table.columns):
        raise ValueError(f"table must be a DataFrame with columns {sorted(need)}, e.g. "
                         "nhl.studies.results.load('frozen-ablation')")
    variants = [v for v in variants if v in set(table["variant"])]
    if not variants:
        raise ValueError("none of the variants is in the table")
    parts = [paired(table, v, reference, value=value).assign(variant=v) for v in variants]
    p = pd.concat(parts, ignore_index=True)
    p = p[p["bits"] == "mean"]
    datasets = list(dict.fromkeys(table["dataset"]))
    axes = _panels(axes, len(datasets), 4.2, 3.8, sharey=sharey)
    width = 0.7 / len(variants)
    for ax, dataset in zip(axes, datasets):
        g = p[p["dataset"] == dataset]
        methods = list(dict.fromkeys(table.loc[table["dataset"] == dataset, "method"]))
        for i, v in enumerate(variants):
            s = g[g["variant"] == v].set_index("method").reindex(methods)
            x = np.arange(len(methods)) + (i - (len(variants) - 1) / 2) * width
            ax.errorbar(x, s["diff"], yerr=s["ci95"].fillna(0), fmt="o", capsize=4,
                        color=VARIANT_COLOURS.get(v), label=f"{v} - {reference}")
        ax.axhline(0, color="0.3", linewidth=0.9)
        ax.set_xticks(range(len(methods)), methods)
        ax.set_xlabel("base method")
        ax.set_ylabel(f"{value} difference, variant - {reference}\n(same seed, mean over lengths)")
        n = int(g["n"].max()) if len(g) else 0
        ax.set_title(f"{dataset}\npaired, 95 % CI over {n} seeds", fontsize=10)
    for ax in axes:
        _include_zero(ax)
    if sharey:
        for ax in axes[1:]:
            ax.set_ylabel("")
            ax.tick_params(labelleft=True)
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return axes


def term_plot(frame: pd.DataFrame, axes=None):
    """Distillation against base-loss gradient on ``W`` over training, per length.

    ``frame``: :func:`nhl.studies.probes.record_terms` rows (several methods may be
    concatenated). One panel per method with the ratio ``||lambda_D dSP_k/dW|| / ||d loss_k/dW||``
    against the training step, one line per student length, on one linear y axis from 0 shared by
    the methods (1 = as large as the base loss's own gradient); a last panel with the cosine
    between the two gradients at every recorded step, per student length and method (0 =
    orthogonal), with the median marked: one colour and marker per length everywhere, the
    methods side by side (the first filled, the others hollow). Returns the axes (methods...,
    cosine).
    """
    need = {"method", "iteration", "bits", "ratio", "cosine"}
    if not isinstance(frame, pd.DataFrame) or not need <= set(frame.columns):
        raise ValueError(f"frame must have the columns {sorted(need)} (nhl.studies.probes.record_terms)")
    if frame.empty:
        raise ValueError("frame is empty: nothing to draw")
    from matplotlib.lines import Line2D

    methods = list(dict.fromkeys(frame["method"]))
    bits = sorted(int(b) for b in frame["bits"].unique())
    colours, markers = length_colours(bits), _length_markers(bits)
    axes = _panels(axes, len(methods) + 1, 4.0, 3.8)
    ratio_axes, ax_c = list(axes[:-1]), axes[-1]
    top = max(1.1, float(frame["ratio"].max()) * 1.05)
    for ax, m in zip(ratio_axes, methods):
        rows = frame[frame["method"] == m]
        small = float(rows["ratio"].max()) < 0.3 * top  # lines packed near 0: zoom in an inset
        targets = [ax, ax.inset_axes([0.3, 0.5, 0.66, 0.42])] if small else [ax]
        for target in targets:
            for b in bits:
                g = rows[rows["bits"] == b].sort_values("iteration")
                target.plot(g["iteration"], g["ratio"], "-", color=colours[b], marker=markers[b], ms=4,
                            mfc="none", mew=1.1, linewidth=1.3, label=f"{b} bits")
        if small:
            inset = targets[1]
            inset.set_ylim(0, float(rows["ratio"].max()) * 1.15)
            inset.tick_params(labelsize=7)
            inset.set_title("zoom (own y scale)", fontsize=8, pad=2)
            inset.set_facecolor("white")
        ax.axhline(1, color="0.3", linewidth=0.8, linestyle=":")
        ax.set_ylim(0, top)
        ax.set_xlabel("training step")
        ax.set_ylabel("distillation / base-loss gradient norm")
        ax.set_title(f"{m}: how strong is the distillation pull on W?\n(1 = as strong as the base loss)",
                     fontsize=10)

    width = 0.7 / len(methods)
    rng = np.random.default_rng(0)  # a fixed jitter: the figure is the same on every run
    for j, m in enumerate(methods):
        for i, b in enumerate(bits):
            c = frame.loc[(frame["method"] == m) & (frame["bits"] == b), "cosine"].to_numpy(float)
            x = i + (j - (len(methods) - 1) / 2) * width
            face = colours[b] if j == 0 else "none"
            ax_c.scatter(x + rng.uniform(-0.25, 0.25, len(c)) * width, c, s=14, marker=markers[b],
                         facecolors=face, edgecolors=colours[b], linewidths=0.9, alpha=0.8)
            if len(c):
                ax_c.plot([x - 0.4 * width, x + 0.4 * width], [np.median(c)] * 2, color="0.15",
                          linewidth=2)
    ax_c.axhline(0, color="0.3", linewidth=0.8)
    ax_c.set_ylim(-1, 1)
    ax_c.set_xticks(range(len(bits)), [str(b) for b in bits])
    ax_c.set_xlabel("student length (bits)")
    ax_c.set_ylabel("cosine(base gradient, distillation gradient)")
    ax_c.set_title("Do the two pulls agree? every recorded step\n(0 = orthogonal; bar = median)",
                   fontsize=10)
    lengths = ax_c.legend(handles=[Line2D([], [], color=colours[b], marker=markers[b], mfc="none",
                                          label=f"{b} bits") for b in bits],
                          fontsize=8, title="student length", title_fontsize=8, loc="upper left",
                          ncol=2)
    ax_c.add_artist(lengths)
    ax_c.legend(handles=[Line2D([], [], color="0.35", marker="o", linestyle="",
                                markerfacecolor="0.35" if j == 0 else "none",
                                label=f"{m} ({'filled' if j == 0 else 'hollow'}, "
                                      f"{'left' if j == 0 else 'right'})")
                         for j, m in enumerate(methods)],
                fontsize=8, title="method", title_fontsize=8, loc="lower right")
    return axes


def lambda_plot(stats: pd.DataFrame, error: str = "ci95", dataset: str | None = None, axes=None):
    """mAP per length against lambda_D, one panel per method, error bars over seeds.

    ``stats``: :func:`nhl.studies.report.lambda_stats` (``method``, ``lambda_D``, ``bits``,
    ``mean`` and the ``error`` column: ``ci95`` for 95 % confidence intervals or ``sd``).
    lambda_D is drawn at evenly spaced positions (0 cannot sit on a log axis); each panel
    keeps its own y range, flagged when it does not start at 0.
    """
    need = {"method", "lambda_D", "bits", "mean", error}
    if not isinstance(stats, pd.DataFrame) or not need <= set(stats.columns):
        raise ValueError(f"stats must have the columns {sorted(need)} (nhl.studies.report.lambda_stats)")
    methods = list(dict.fromkeys(stats["method"]))
    lams = sorted(stats["lambda_D"].unique())
    bits = sorted(int(b) for b in stats["bits"].unique())
    colours = length_colours(bits)
    axes = _panels(axes, len(methods), 5.2, 4.0)
    what = "95 % CI" if error == "ci95" else "sd"
    n = int(stats["n"].max()) if "n" in stats else None
    for ax, m in zip(axes, methods):
        g = stats[stats["method"] == m]
        for k, b in enumerate(bits):
            s = g[g["bits"] == b].set_index("lambda_D").reindex(lams)
            x = np.arange(len(lams)) + (k - (len(bits) - 1) / 2) * 0.08  # apart: equal means stay visible
            ax.errorbar(x, s["mean"], yerr=s[error].fillna(0), marker="o", capsize=3,
                        color=colours[b], label=f"{b} bits")
        ax.set_xticks(range(len(lams)), [f"{x:g}" for x in lams])
        ax.set_xlabel(r"distillation strength $\lambda_D$")
        ax.set_ylabel("mAP@ALL, mean over seeds")
        seeds = f"{n} seeds" if n else "seeds"
        ax.set_title(f"{m}{' on ' + dataset if dataset else ''}: mAP against $\\lambda_D$\n"
                     f"error bars: {what} over {seeds}", fontsize=10)
        flag_truncated_y(ax)
    axes[-1].legend(fontsize=8, title="code length", title_fontsize=8, loc="upper left",
                    bbox_to_anchor=(1.02, 1.0))
    return axes

"""Plots for the plug-and-play grid and the training-efficiency comparison.

``gain_heatmap``: methods x lengths of nested-minus-baseline mAP (METHOD.md section 6);
``progress_plot``: validation mAP against cumulative training seconds (time to a target);
``step_cost_bars``: milliseconds per training step of each variant (:func:`nhl.timing.time_steps`).
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm


def _axes(ax, figsize):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def gain_heatmap(
    table: pd.DataFrame,
    ax=None,
    title: str = "mAP gain of NHL over single-length baselines",
    fmt: str = "{:+.3f}",
    cmap: str = "RdBu",
):
    """Annotated heatmap of a methods x lengths table (e.g. :func:`nhl.grid.gain_table`).

    The diverging colormap is centred at 0 (blue: NHL better, red: worse), symmetric around it
    so equal gains and losses get equally strong colours. NaN cells stay blank.
    """
    values = table.to_numpy(dtype=float)
    ax = _axes(ax, (1.1 * values.shape[1] + 2.0, 0.45 * values.shape[0] + 1.6))
    finite = values[np.isfinite(values)]
    vmax = float(np.abs(finite).max()) if finite.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    image = ax.imshow(
        np.ma.masked_invalid(values), cmap=cmap, norm=TwoSlopeNorm(0.0, -vmax, vmax), aspect="auto"
    )
    ax.set_xticks(range(values.shape[1]), [str(c) for c in table.columns])
    ax.set_yticks(range(values.shape[0]), [str(i) for i in table.index])
    ax.set_xlabel("code length (bits)" if table.columns.name in (None, "bits") else str(table.columns.name))
    ax.set_ylabel("base method" if table.index.name in (None, "method") else str(table.index.name))
    ax.set_title(title)
    ax.grid(False)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                strong = abs(values[i, j]) > 0.6 * vmax
                ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=9,
                        color="white" if strong else "black")
    ax.figure.colorbar(image, ax=ax, label="nested mAP - baseline mAP")
    return ax


def progress_plot(
    curves: Mapping[str, pd.DataFrame],
    target: float | None = None,
    ax=None,
    title: str = "Validation mAP against training time",
    xlabel: str = "cumulative training seconds",
):
    """One line per curve (``seconds``, ``val_map`` columns, e.g. :func:`nhl.timing.progress_curve`).

    ``target``: a horizontal dashed line at that mAP, and a marker where each curve first
    reaches it.
    """
    ax = _axes(ax, (7.0, 4.0))
    for label, curve in curves.items():
        (line,) = ax.plot(curve["seconds"], curve["val_map"], marker="o", ms=3, label=label)
        if target is not None:
            hit = np.flatnonzero(curve["val_map"].to_numpy() >= target)
            if len(hit):
                ax.plot(curve["seconds"].iloc[hit[0]], curve["val_map"].iloc[hit[0]], marker="*",
                        ms=14, color=line.get_color(), linestyle="none")
    if target is not None:
        ax.axhline(target, color="0.3", linestyle="--", linewidth=1, label=f"target {target:.3f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation mAP")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return ax


def step_cost_bars(
    table: pd.DataFrame,
    ax=None,
    title: str = "Cost of one training step",
):
    """Bars of ``step ms`` per ``variant`` with min-max whiskers (a :func:`time_steps` table)."""
    ax = _axes(ax, (6.5, 3.6))
    x = np.arange(len(table))
    ms = table["step ms"].to_numpy(dtype=float)
    yerr = None
    if {"min ms", "max ms"} <= set(table.columns):
        yerr = np.vstack([ms - table["min ms"].to_numpy(float), table["max ms"].to_numpy(float) - ms])
    bars = ax.bar(x, ms, yerr=yerr, capsize=4, color="tab:blue", alpha=0.85)
    for bar, value in zip(bars, ms):
        ax.annotate(f"{value:.1f}", (bar.get_x() + bar.get_width() / 2, value / 2), ha="center",
                    va="center", fontsize=9, color="white")
    ax.set_xticks(x, table["variant"].astype(str).tolist())
    ax.set_xlabel("variant")
    ax.set_ylabel("milliseconds per step (median)")
    ax.set_title(title)
    return ax

"""Plots for the plug-and-play grid and the training-efficiency comparison.

``gain_heatmap``: methods x lengths of nested-minus-baseline mAP (docs/method.md §9);
``progress_plot``: validation mAP against cumulative training seconds or epochs (time to a
target); ``step_cost_bars``: milliseconds per training step of each variant
(:func:`nhl.studies.timing.time_steps`); ``step_breakdown``: one batch through K single-length models
against one nested model, split into backbone and head (:func:`nhl.studies.timing.measure_steps` with
``parts=True``), the picture behind the training speed-up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
    """Annotated heatmap of a methods x lengths table (e.g. :func:`nhl.studies.grid.gain_table`).

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
    xlabel: str | None = None,
    x: str = "seconds",
):
    """One line per curve (columns ``x`` and ``val_map``, e.g. :func:`nhl.studies.timing.progress_curve`).

    ``x``: ``"seconds"`` (cumulative training seconds) or ``"epoch"`` (drawn 1-based: epochs
    trained). ``target``: a horizontal dashed line at that mAP, and a hollow star where each
    curve first reaches it (smaller for each later curve, so stars at the same point stay
    visible inside each other). A y axis that does not start at 0 is flagged in its label.
    """
    from .curves import flag_truncated_y

    if x not in ("seconds", "epoch"):
        raise ValueError(f"x must be 'seconds' or 'epoch', got {x!r}")
    if xlabel is None:
        xlabel = "cumulative training seconds" if x == "seconds" else "epochs trained"
    ax = _axes(ax, (7.0, 4.0))
    for i, (label, curve) in enumerate(curves.items()):
        xs = curve[x] + (1 if x == "epoch" else 0)
        (line,) = ax.plot(xs, curve["val_map"], marker="o", ms=3, label=label)
        if target is not None:
            hit = np.flatnonzero(curve["val_map"].to_numpy() >= target)
            if len(hit):
                ax.plot(xs.iloc[hit[0]], curve["val_map"].iloc[hit[0]], marker="*",
                        ms=max(18 - 6 * i, 7), color=line.get_color(), linestyle="none",
                        markerfacecolor="none", markeredgewidth=1.6, zorder=3 + i)
    if target is not None:
        ax.axhline(target, color="0.3", linestyle="--", linewidth=1, label=f"target {target:.3f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation mAP")
    ax.set_title(title)
    if x == "epoch":
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    return flag_truncated_y(ax)


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


def step_breakdown(
    table: pd.DataFrame,
    singles: Sequence[str],
    nested: Sequence[str],
    ax=None,
    title: str = "One batch through every model",
    speedups: Mapping[str, float] | pd.Series | None = None,
):
    """Horizontal stacked bars: one batch through the K single-length models vs each nested one.

    ``table``: :attr:`nhl.studies.timing.StepTimes.table` measured with ``parts=True`` (columns
    ``variant``, ``step ms``, ``head ms``, ``rest ms``). The first bar adds the ``singles``
    (white edges separate the models), split into *backbone + optimiser* (``rest ms``) and
    *head* (hash layer, losses, weighting, distillation: ``head ms``); one bar per ``nested``
    variant below, annotated with the ratio of the first bar's total to its own (the training
    speed-up per epoch). ``speedups``: the speed-up to write per nested variant instead, e.g.
    the ``median`` column of :meth:`nhl.studies.timing.StepTimes.speedup` (the median of the
    per-repeat ratios, which is what a text quoting that table quotes).
    """
    need = {"variant", "step ms", "head ms", "rest ms"}
    if not isinstance(table, pd.DataFrame) or not need <= set(table.columns):
        raise ValueError(f"table needs columns {sorted(need)}: time the steps with parts=True")
    t = table.set_index("variant")
    missing = [v for v in [*singles, *nested] if v not in t.index]
    if missing or not singles or not nested:
        raise ValueError(f"variants {missing} not in the table; measured: {list(t.index)}")
    ax = _axes(ax, (8.0, 0.55 * (len(nested) + 1) + 1.6))
    colors = {"rest": "tab:blue", "head": "tab:orange"}
    rows = [f"{len(singles)} single-length models"] + [f"nested: {v}" for v in nested]
    y = np.arange(len(rows))[::-1]
    left = 0.0
    for i, v in enumerate(singles):
        for part in ("rest", "head"):
            w = float(t.loc[v, f"{part} ms"])
            ax.barh(y[0], w, left=left, color=colors[part], edgecolor="white", linewidth=0.8,
                    label=("backbone + optimiser" if part == "rest" else "head (hash layer, losses)")
                    if i == 0 else None)
            left += w
    total_singles = float(t.loc[list(singles), "step ms"].sum())
    ax.annotate(f"{total_singles:.1f} ms", (total_singles, y[0]), xytext=(4, 0),
                textcoords="offset points", va="center", fontsize=9)
    for yy, v in zip(y[1:], nested):
        rest, head = float(t.loc[v, "rest ms"]), float(t.loc[v, "head ms"])
        ax.barh(yy, rest, color=colors["rest"], edgecolor="white", linewidth=0.8)
        ax.barh(yy, head, left=rest, color=colors["head"], edgecolor="white", linewidth=0.8)
        step = float(t.loc[v, "step ms"])
        ratio = total_singles / step if speedups is None else float(speedups[v])
        ax.annotate(f"{step:.1f} ms: speed-up {ratio:.2f}x", (step, yy), xytext=(4, 0),
                    textcoords="offset points", va="center", fontsize=9)
    ax.set_yticks(y, rows)
    ax.set_xlim(0, 1.35 * total_singles)
    ax.set_xlabel("milliseconds per batch (median over repeats)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    return ax

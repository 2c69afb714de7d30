"""Plots for search with nested codes: speed against quality, and choosing a code length.

Nested codes (docs/method.md §1) let one stored 128-bit code serve every shorter length, so a
search system can trade bytes and latency against mAP after training. These helpers draw that
trade-off: :func:`plot_recall_latency` (recall against per-query latency, one line per search
method, with the spread of the timings), :func:`plot_length_choice` (mAP against bytes per image
and against latency, with the Pareto front from :func:`pareto_front` marked and error bars),
:func:`plot_latency` (median latency per length with its spread), and the two per-query views
the explorer uses, :func:`plot_distance_histogram` and :func:`plot_pr_curve` (docs/method.md
§7). Point labels are placed so that they do not overlap (:func:`place_labels`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..studies.search import pareto_front

__all__ = [
    "place_labels",
    "plot_latency",
    "plot_distance_histogram",
    "plot_length_choice",
    "plot_pr_curve",
    "plot_recall_latency",
]


def _axes(ax, figsize=(6.0, 4.0)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


_OFFSETS = [(5, 4), (5, -11), (-5, 4), (-5, -11), (5, 13), (5, -20), (-5, 13), (-5, -20),
            (12, -3), (-12, -3), (0, 18), (0, -25), (16, 10), (16, -18), (-16, 10), (-16, -18),
            (24, 2), (-24, 2), (0, 28), (0, -34)]


def place_labels(ax, xs, ys, texts, fontsize: float = 8.0, **kwargs) -> list:
    """Annotate points ``(xs[i], ys[i])`` with ``texts[i]`` so that no two labels overlap.

    Greedy: each label tries offsets around its point (in points) and takes the first whose box
    overlaps neither an earlier label, the legend nor any marker; if none is free, the least
    crowded one.
    Empty or missing texts are skipped. Returns the annotation objects.
    """
    fig = ax.figure
    fig.canvas.draw()  # limits and transforms are final from here on
    renderer = fig.canvas.get_renderer()
    pts = ax.transData.transform(np.column_stack([np.asarray(xs, float), np.asarray(ys, float)]))
    scale = fig.dpi / 72.0
    marker_r = 4.0 * scale
    markers = [(px - marker_r, py - marker_r, px + marker_r, py + marker_r) for px, py in pts]
    axes_box = ax.get_window_extent(renderer)
    placed: list[tuple[float, float, float, float]] = []
    legend = ax.get_legend()
    if legend is not None:  # keep labels off the legend too
        lb = legend.get_window_extent(renderer)
        placed.append((lb.x0, lb.y0, lb.x1, lb.y1))
    out = []

    def overlap(a, b) -> float:
        w = min(a[2], b[2]) - max(a[0], b[0])
        h = min(a[3], b[3]) - max(a[1], b[1])
        return w * h if w > 0 and h > 0 else 0.0

    for i, text in enumerate(texts):
        if text is None or (isinstance(text, float) and np.isnan(text)) or not str(text):
            continue
        best, best_cost = None, np.inf
        for dx, dy in _OFFSETS:
            ha = "left" if dx >= 0 else "right"
            ann = ax.annotate(str(text), (xs[i], ys[i]), textcoords="offset points",
                              xytext=(dx, dy), fontsize=fontsize, ha=ha, va="bottom", **kwargs)
            bb = ann.get_window_extent(renderer)
            box = (bb.x0, bb.y0, bb.x1, bb.y1)
            cost = sum(overlap(box, other) for other in placed)
            cost += sum(overlap(box, m) for j, m in enumerate(markers) if j != i)
            outside = (box[0] < axes_box.x0) + (box[2] > axes_box.x1) + \
                (box[1] < axes_box.y0) + (box[3] > axes_box.y1)
            cost += 1e6 * outside
            if cost < best_cost:
                if best is not None:
                    best[0].remove()
                best, best_cost = (ann, box), cost
            else:
                ann.remove()
            if cost == 0:
                break
        placed.append(best[1])
        out.append(best[0])
    return out


def _flag_truncated_y(ax) -> None:
    """Say so in the y label when the y axis does not start at 0 (a truncated axis)."""
    low = ax.get_ylim()[0]
    if low > 0:
        ax.set_ylabel(f"{ax.get_ylabel()} (axis starts at {low:.2f}, not 0)")


def plot_recall_latency(
    results: pd.DataFrame,
    ax=None,
    x: str = "latency_ms",
    y: str = "recall",
    method: str = "method",
    label: str | None = "label",
    logx: bool = True,
    sort: bool = False,
    xerr: tuple[str, str] | None = None,
    unjoined: Sequence[str] = (),
    colors: Mapping[str, str] | None = None,
    legend: Mapping | None = None,
):
    """Recall against per-query latency, one line per search method.

    ``results`` has one row per measured setting with columns ``method``, ``latency_ms``,
    ``recall`` and optionally ``label`` (e.g. the shortlist size, written next to each point
    without overlaps). Each method's points are joined in row order (e.g. growing shortlist or
    code length), or by latency with ``sort=True``. A method measured once (exhaustive search)
    is a large star. ``xerr``: two columns (low, high) drawn as horizontal bars, e.g. the
    fastest and slowest of the timing rounds. ``unjoined``: methods drawn as hollow squares
    without a line (smaller for each later one, so that squares at the same point stay
    visible), for settings that are not a sequence (exhaustive search at several code lengths,
    whose latencies need not grow with the length: a line through them would run back in x).
    ``colors``: a colour per method (e.g. the same system in the same colour on two panels;
    others take the next of matplotlib's cycle); ``legend``: keyword arguments for the legend
    (default ``loc="best"``), e.g. ``{"loc": "upper left", "bbox_to_anchor": (1.01, 1)}`` to
    keep it off the data. A y axis that does not start at 0 is flagged in its label.
    """
    missing = [c for c in (x, y, method) if c not in results.columns]
    if xerr is not None:
        missing += [c for c in xerr if c not in results.columns]
    if missing:
        raise ValueError(f"results lack column(s) {missing}; it has {list(results.columns)}")
    ax = _axes(ax, figsize=(7.5, 4.5))
    xs, ys, texts = [], [], []
    for i, (name, group) in enumerate(results.groupby(method, sort=False)):
        g = group.sort_values(x) if sort else group
        colour = (colors or {}).get(name, f"C{i % 10}")
        if name in unjoined:  # hollow squares, smaller for each later method: coincident ones stay visible
            size = max(11 - 2.5 * list(unjoined).index(name), 4)
            ax.plot(g[x], g[y], marker="s", markersize=size, markerfacecolor="none",
                    markeredgewidth=1.6, linestyle="none", label=str(name), color=colour)
        elif len(g) == 1:
            ax.plot(g[x], g[y], marker="*", markersize=14, linestyle="none", label=str(name),
                    color=colour)
        else:
            ax.plot(g[x], g[y], marker="o", label=str(name), color=colour)
        if xerr is not None:
            lo, hi = g[xerr[0]].to_numpy(float), g[xerr[1]].to_numpy(float)
            gx = g[x].to_numpy(float)
            ax.errorbar(gx, g[y], xerr=[gx - lo, hi - gx], fmt="none", ecolor=colour,
                        elinewidth=1, capsize=2, alpha=0.7)
        if label is not None and label in g.columns:
            xs += list(g[x])
            ys += list(g[y])
            texts += [str(t) if pd.notna(t) else "" for t in g[label]]
    if logx:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")  # ticks at 1, 2, 5 x 10^n, written as plain numbers, none unlabelled in between
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("latency per query (ms" + (", log scale)" if logx else ")"))
    ax.set_ylabel(y.replace("_", " "))
    ax.set_title("Recall against query latency")
    ax.legend(**{"loc": "best", "fontsize": 8, **(legend or {})})
    _flag_truncated_y(ax)
    if texts:
        place_labels(ax, xs, ys, texts)
    return ax


def _pareto_panel(ax, xs, ys, xlabel: str, logx: bool, yerr=None, xerr=None,
                  unclear=None) -> np.ndarray:
    front = pareto_front(np.column_stack([xs, ys]))
    if yerr is not None or xerr is not None:
        ax.errorbar(xs, ys, yerr=yerr, xerr=xerr, fmt="none", ecolor="0.45", elinewidth=1,
                    capsize=3, zorder=1)
    ax.plot(xs, ys, marker="o", linestyle="none", color="0.6", label="code length", zorder=2)
    ax.plot(xs[front], ys[front], marker="o", color="C3", markersize=8, label="Pareto front",
            zorder=3)
    if unclear is not None and np.any(unclear):
        ax.plot(xs[unclear], ys[unclear], marker="o", linestyle="none", markersize=12,
                markerfacecolor="none", markeredgecolor="k",
                label="gain over previous length within noise", zorder=4)
    if logx:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mAP")
    ax.legend(loc="best", fontsize=8)  # off the points and their bars where it can
    return front


def plot_length_choice(
    table: pd.DataFrame,
    bits: str = "bits",
    quality: str = "mAP",
    size: str = "bytes",
    latency: str | None = "latency_ms",
    axes=None,
    quality_ci: tuple[str, str] | None = None,
    latency_range: tuple[str, str] | None = None,
    clear: str | None = None,
):
    """"Choose your code length": mAP against bytes per image (and against query latency).

    ``table`` has one row per length with columns ``bits``, ``mAP``, ``bytes`` and optionally
    ``latency_ms``. The Pareto-optimal lengths (nothing else is both smaller/faster and better)
    are drawn in colour and joined. ``quality_ci`` (low, high columns: vertical error bars,
    e.g. a bootstrap interval), ``latency_range`` (low, high: horizontal bars on the latency
    panel) and ``clear`` (a bool column; lengths whose gain over the previous one is *not*
    clear get a black ring) make the uncertainty visible. Returns the figure.
    """
    import matplotlib.pyplot as plt

    cols = [bits, quality, size] + ([latency] if latency else [])
    cols += list(quality_ci or ()) + (list(latency_range or ()) if latency else [])
    cols += [clear] if clear else []
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}; it has {list(table.columns)}")
    n_panels = 2 if latency else 1
    if axes is None:
        fig, axes = plt.subplots(1, n_panels, figsize=(5.8 * n_panels, 4.2), squeeze=False)
        axes = axes[0]
    else:
        axes = np.atleast_1d(axes)
        fig = axes[0].figure
    t = table.sort_values(bits)
    b = t[bits].to_numpy()
    ys = t[quality].to_numpy(float)
    yerr = None
    if quality_ci:
        yerr = np.abs(np.vstack([ys - t[quality_ci[0]].to_numpy(float),
                                 t[quality_ci[1]].to_numpy(float) - ys]))
    unclear = None
    if clear:
        unclear = ~t[clear].to_numpy(bool)
        unclear[0] = False  # the shortest length has no previous one
    sizes = t[size].to_numpy(float)
    _pareto_panel(axes[0], sizes, ys, "bytes per image (log scale: each step doubles)",
                  logx=True, yerr=yerr, unclear=unclear)
    axes[0].set_xticks(sizes, [f"{int(v)}" for v in sizes])
    axes[0].set_title("mAP against storage")
    if latency:
        lx = t[latency].to_numpy(float)
        xerr = None
        if latency_range:
            xerr = np.abs(np.vstack([lx - t[latency_range[0]].to_numpy(float),
                                     t[latency_range[1]].to_numpy(float) - lx]))
        _pareto_panel(axes[1], lx, ys, "latency per query (ms)", logx=False, yerr=yerr,
                      xerr=xerr, unclear=unclear)
        axes[1].set_title("mAP against query latency")
    for ax in axes[:n_panels]:
        _flag_truncated_y(ax)
    fig.tight_layout()  # before the labels: their placement depends on the final geometry
    labels = [f"{int(v)} bits" for v in b]
    place_labels(axes[0], sizes, ys, labels)
    if latency:
        place_labels(axes[1], lx, ys, labels)
    return fig


def plot_latency(
    table: pd.DataFrame,
    x: str = "bits",
    group: str = "backend",
    median: str = "median",
    low: str = "low",
    high: str = "high",
    ax=None,
):
    """Median latency per code length, one line per ``group`` (e.g. backend), with bars from
    the fastest to the slowest timing round. Lengths are evenly spaced categories."""
    missing = [c for c in (x, group, median, low, high) if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}; it has {list(table.columns)}")
    ax = _axes(ax, figsize=(6.0, 3.6))
    cats = sorted(table[x].unique())
    pos = {c: i for i, c in enumerate(cats)}
    n = table[group].nunique()
    for j, (name, g) in enumerate(table.groupby(group, sort=False)):
        g = g.sort_values(x)
        xs = np.array([pos[v] for v in g[x]], float) + (j - (n - 1) / 2) * 0.08
        m = g[median].to_numpy(float)
        ax.errorbar(xs, m, yerr=[m - g[low].to_numpy(float), g[high].to_numpy(float) - m],
                    marker="o", capsize=3, label=str(name))
    ax.set_xticks(range(len(cats)), [str(c) for c in cats])
    ax.set_xlabel("code length (bits)")
    ax.set_ylabel("ms per query (median, bars: min-max)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return ax


def plot_distance_histogram(distances, relevant, bits: int, ax=None, normalize: bool = False):
    """One query's Hamming distances to the database, relevant and irrelevant items apart.

    Good codes put the relevant items (same class) at small distances and the rest far away;
    at short lengths both pile up on few values (many ties, docs/method.md §7). With
    ``normalize`` each group is drawn as shares of its own size, so the (usually ten times
    fewer) relevant items stay visible next to the irrelevant ones without a log axis. Up to
    32 bits bars, beyond that outlines (steps).
    """
    d = np.asarray(distances).reshape(-1)
    rel = np.asarray(relevant, dtype=bool).reshape(-1)
    if d.shape != rel.shape:
        raise ValueError(f"distances {d.shape} and relevant {rel.shape} must have the same length")
    if d.size and (d.min() < 0 or d.max() > bits):
        raise ValueError(f"distances must lie in 0..{bits} for {bits}-bit codes")
    from matplotlib.ticker import MaxNLocator

    ax = _axes(ax)
    values = np.arange(int(bits) + 1)
    n_rel = np.bincount(d[rel].astype(np.int64), minlength=bits + 1).astype(float)
    n_irr = np.bincount(d[~rel].astype(np.int64), minlength=bits + 1).astype(float)
    if normalize:
        n_rel /= max(n_rel.sum(), 1.0)
        n_irr /= max(n_irr.sum(), 1.0)
    rel_label, irr_label = f"relevant ({int(rel.sum())})", f"irrelevant ({int((~rel).sum())})"
    if bits <= 32:
        width = 0.42
        ax.bar(values - width / 2, n_rel, width=width, color="C2", alpha=0.75, label=rel_label)
        ax.bar(values + width / 2, n_irr, width=width, color="C3", alpha=0.55, label=irr_label)
    else:
        ax.step(values, n_rel, where="mid", color="C2", linewidth=1.5, label=rel_label)
        ax.step(values, n_irr, where="mid", color="C3", linewidth=1.5, label=irr_label)
        ax.fill_between(values, n_rel, step="mid", color="C2", alpha=0.25)
        ax.fill_between(values, n_irr, step="mid", color="C3", alpha=0.15)
    ax.set_xlim(-0.5, bits + 0.5)
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"Hamming distance ({bits} bits)")
    ax.set_ylabel("share of the group's items" if normalize else "database items")
    ax.set_title("Distances from the query")
    ax.legend(fontsize=8)
    return ax


def plot_pr_curve(precision, recall, ax=None, label: str | None = None, **kwargs):
    """Precision against recall (e.g. by Hamming radius r = 0..L); adds to ``ax`` if given."""
    p = np.asarray(precision, dtype=float)
    r = np.asarray(recall, dtype=float)
    if p.shape != r.shape:
        raise ValueError(f"precision {p.shape} and recall {r.shape} must have the same shape")
    ax = _axes(ax)
    ax.plot(r, p, marker=kwargs.pop("marker", "."), label=label, **kwargs)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall by Hamming radius")
    if label is not None:
        ax.legend(fontsize=8)
    return ax

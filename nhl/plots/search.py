"""Plots for search with nested codes: speed against quality, and choosing a code length.

Nested codes (METHOD.md section 1) let one stored 128-bit code serve every shorter length, so a
search system can trade bytes and latency against mAP after training. These helpers draw that
trade-off: :func:`plot_recall_latency` (recall against per-query latency, one line per search
method), :func:`plot_length_choice` (mAP against bytes per image and against latency, with the
Pareto front from :func:`pareto_front` marked), and the two per-query views the explorer uses,
:func:`plot_distance_histogram` and :func:`plot_pr_curve` (METHOD.md section 5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "pareto_front",
    "plot_distance_histogram",
    "plot_length_choice",
    "plot_pr_curve",
    "plot_recall_latency",
]


def pareto_front(points, minimize: Sequence[bool] = (True, False)) -> np.ndarray:
    """Indices of the non-dominated points, sorted by the first coordinate.

    ``points`` is ``(N, 2)``, e.g. (cost, quality). By default the first coordinate is to be
    minimised (bytes, latency) and the second maximised (mAP, recall). A point is dominated when
    another is at least as good in both coordinates and strictly better in one; equal points do
    not dominate each other, so both stay on the front.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(
            f"points must have shape (N, 2), e.g. [(bytes, mAP), ...], got {pts.shape}")
    if len(minimize) != 2:
        raise ValueError(f"minimize needs one flag per coordinate (2), got {tuple(minimize)!r}")
    if not np.isfinite(pts).all():
        raise ValueError("points must be finite (no NaN or inf)")
    # Flip so that smaller is better in both coordinates.
    better = pts * np.where(np.asarray(minimize, bool), 1.0, -1.0)
    le = (better[:, None, :] <= better[None, :, :]).all(axis=2)  # le[j, i]: j at least as good
    lt = (better[:, None, :] < better[None, :, :]).any(axis=2)
    dominated = (le & lt).any(axis=0)
    front = np.flatnonzero(~dominated)
    return front[np.lexsort((better[front, 1], pts[front, 0]))]


def _axes(ax, figsize=(6.0, 4.0)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_recall_latency(
    results: pd.DataFrame,
    ax=None,
    x: str = "latency_ms",
    y: str = "recall",
    method: str = "method",
    label: str | None = "label",
    logx: bool = True,
    sort: bool = False,
):
    """Recall against per-query latency, one line per search method.

    ``results`` has one row per measured setting with columns ``method``, ``latency_ms``,
    ``recall`` and optionally ``label`` (e.g. the shortlist size, written next to each point).
    Each method's points are joined in row order (e.g. growing shortlist or code length), or by
    latency with ``sort=True``. A method measured once (exhaustive search) is a large star.
    """
    missing = [c for c in (x, y, method) if c not in results.columns]
    if missing:
        raise ValueError(f"results lack column(s) {missing}; it has {list(results.columns)}")
    ax = _axes(ax)
    for name, group in results.groupby(method, sort=False):
        g = group.sort_values(x) if sort else group
        if len(g) == 1:
            ax.plot(g[x], g[y], marker="*", markersize=14, linestyle="none", label=str(name))
        else:
            ax.plot(g[x], g[y], marker="o", label=str(name))
        if label is not None and label in g.columns:
            for xv, yv, text in zip(g[x], g[y], g[label]):
                if pd.notna(text) and str(text):
                    ax.annotate(str(text), (xv, yv), textcoords="offset points", xytext=(4, -10),
                                fontsize=8)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel("latency per query (ms" + (", log scale)" if logx else ")"))
    ax.set_ylabel(y.replace("_", " "))
    ax.set_title("Recall against query latency")
    ax.legend(loc="best", fontsize=8)
    return ax


def _pareto_panel(ax, xs, ys, bits, xlabel: str, logx: bool) -> np.ndarray:
    front = pareto_front(np.column_stack([xs, ys]))
    ax.plot(xs, ys, marker="o", linestyle="none", color="0.6", label="code length")
    ax.plot(xs[front], ys[front], marker="o", color="C3", markersize=8, label="Pareto front")
    for xv, yv, b in zip(xs, ys, bits):
        ax.annotate(f"{int(b)} bits", (xv, yv), textcoords="offset points", xytext=(5, -12),
                    fontsize=8)
    if logx:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mAP")
    ax.legend(loc="lower right", fontsize=8)
    return front


def plot_length_choice(
    table: pd.DataFrame,
    bits: str = "bits",
    quality: str = "mAP",
    size: str = "bytes",
    latency: str | None = "latency_ms",
    axes=None,
):
    """"Choose your code length": mAP against bytes per image (and against query latency).

    ``table`` has one row per length with columns ``bits``, ``mAP``, ``bytes`` and optionally
    ``latency_ms``. The Pareto-optimal lengths (nothing else is both smaller/faster and better)
    are drawn in colour and joined. Returns the figure.
    """
    import matplotlib.pyplot as plt

    cols = [bits, quality, size] + ([latency] if latency else [])
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}; it has {list(table.columns)}")
    n_panels = 2 if latency else 1
    if axes is None:
        fig, axes = plt.subplots(1, n_panels, figsize=(5.5 * n_panels, 4.0), squeeze=False)
        axes = axes[0]
    else:
        axes = np.atleast_1d(axes)
        fig = axes[0].figure
    t = table.sort_values(bits)
    b = t[bits].to_numpy()
    _pareto_panel(axes[0], t[size].to_numpy(float), t[quality].to_numpy(float), b,
                  "bytes per image (log scale)", logx=True)
    axes[0].set_title("mAP against storage")
    if latency:
        _pareto_panel(axes[1], t[latency].to_numpy(float), t[quality].to_numpy(float), b,
                      "latency per query (ms)", logx=False)
        axes[1].set_title("mAP against query latency")
    fig.tight_layout()
    return fig


def plot_distance_histogram(distances, relevant, bits: int, ax=None):
    """One query's Hamming distances to the database, relevant and irrelevant items apart.

    Good codes put the relevant items (same class) at small distances and the rest far away;
    at short lengths both pile up on few values (many ties, METHOD.md section 5).
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
    n_rel = np.bincount(d[rel].astype(np.int64), minlength=bits + 1)
    n_irr = np.bincount(d[~rel].astype(np.int64), minlength=bits + 1)
    width = 0.42 if bits <= 32 else 0.8
    shift = width / 2 if bits <= 32 else 0.0
    ax.bar(values - shift, n_rel, width=width, color="C2", alpha=0.75,
           label=f"relevant ({int(rel.sum())})")
    ax.bar(values + shift, n_irr, width=width, color="C3", alpha=0.55,
           label=f"irrelevant ({int((~rel).sum())})")
    ax.set_xlim(-0.5, bits + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"Hamming distance ({bits} bits)")
    ax.set_ylabel("database items")
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

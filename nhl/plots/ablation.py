"""Figures of the ablation notebook: what the weighting and the distillation each contribute.

* :func:`effects_plot`: each variant minus ``plain`` trained with the same seed, averaged over
  lengths, with 95 % confidence intervals, one panel per dataset (the committed ``ablation``
  table, docs/method.md §9);
* :func:`term_plot`: the distillation term's gradient on ``W`` against the base loss's over
  training steps, ratio and cosine per length (:func:`nhl.studies.probes.record_terms`,
  docs/method.md §4);
* :func:`lambda_plot`: mAP per length against the distillation strength lambda_D with error bars
  over seeds (:func:`nhl.studies.report.lambda_stats`).

Every function draws on ``axes`` (a new figure when ``None``), titles each panel with what it
shows, flags a y axis that does not start at 0, and returns the axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..studies.statistics import paired
from .curves import flag_truncated_y

__all__ = ["effects_plot", "lambda_plot", "term_plot"]

#: Colours of the ablation variants (the same as :mod:`nhl.tutorial.ablation_explorer`).
VARIANT_COLOURS = {"weighting": "#1f77b4", "distill": "#ff7f0e", "nhl": "#2ca02c", "plain": "#7f7f7f"}
_METHOD_STYLE = ("-", "--", ":", "-.")


def _panels(axes, n: int, width: float, height: float):
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False,
                               layout="constrained")
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
):
    """Per dataset: each of ``variants`` minus ``reference`` (same seed), mean over lengths.

    ``table``: a long ablation table (``dataset``, ``method``, ``variant``, ``seed``, ``bits``
    and ``value``). Points are the mean paired difference, bars the 95 % CI over seeds
    (:func:`nhl.studies.statistics.paired`); a bar that crosses the zero line is a difference the seeds
    cannot tell from none. Panels keep their own y range.
    """
    need = {"dataset", "method", "variant", "seed", "bits", value}
    if not isinstance(table, pd.DataFrame) or not need <= set(table.columns):
        raise ValueError(f"table must be a DataFrame with columns {sorted(need)}, e.g. "
                         "nhl.studies.results.get('ablation')[0]")
    variants = [v for v in variants if v in set(table["variant"])]
    if not variants:
        raise ValueError("none of the variants is in the table")
    parts = [paired(table, v, reference, value=value).assign(variant=v) for v in variants]
    p = pd.concat(parts, ignore_index=True)
    p = p[p["bits"] == "mean"]
    datasets = list(dict.fromkeys(table["dataset"]))
    axes = _panels(axes, len(datasets), 4.4, 3.8)
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
        _include_zero(ax)
        ax.set_xticks(range(len(methods)), methods)
        ax.set_xlabel("base method")
        ax.set_ylabel(f"{value} difference (mean over lengths)")
        n = int(g["n"].max()) if len(g) else 0
        ax.set_title(f"{dataset}\nvariant - {reference}, same seed; 95 % CI over {n} seeds",
                     fontsize=10)
    axes[0].legend(fontsize=8)
    return axes


def term_plot(frame: pd.DataFrame, axes=None):
    """Distillation against base-loss gradient on ``W`` over training, one line per length.

    ``frame``: :func:`nhl.studies.probes.record_terms` rows (several methods may be
    concatenated; each gets its own line style). Left: the ratio
    ``||lambda_D dSP_k/dW|| / ||d loss_k/dW||`` on a linear axis from 0 (1 = as large as the
    base loss's own gradient); right: the cosine between the two gradients (0 = orthogonal).
    """
    need = {"method", "iteration", "bits", "ratio", "cosine"}
    if not isinstance(frame, pd.DataFrame) or not need <= set(frame.columns):
        raise ValueError(f"frame must have the columns {sorted(need)} (nhl.studies.probes.record_terms)")
    if frame.empty:
        raise ValueError("frame is empty: nothing to draw")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    ax_r, ax_c = _panels(axes, 2, 5.6, 4.0)
    methods = list(dict.fromkeys(frame["method"]))
    bits = sorted(frame["bits"].unique())
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(bits)))
    for j, m in enumerate(methods):
        style = _METHOD_STYLE[j % len(_METHOD_STYLE)]
        for colour, b in zip(colours, bits):
            g = frame[(frame["method"] == m) & (frame["bits"] == b)].sort_values("iteration")
            for ax, col in ((ax_r, "ratio"), (ax_c, "cosine")):
                ax.plot(g["iteration"], g[col], style, color=colour, marker=".")
    ax_r.axhline(1, color="0.3", linewidth=0.8, linestyle=":")
    ax_r.set_ylim(0, max(1.1, float(frame["ratio"].max()) * 1.05))
    ax_r.set_xlabel("training step")
    ax_r.set_ylabel("distillation / base-loss gradient norm")
    ax_r.set_title("How strong is the distillation pull on W?\n(1 = as strong as the base loss)",
                   fontsize=10)
    ax_r.legend(handles=[Line2D([], [], color="0.2", linestyle=_METHOD_STYLE[j % 4], label=m)
                         for j, m in enumerate(methods)], fontsize=8, title="method",
                title_fontsize=8, loc="upper right")
    ax_c.axhline(0, color="0.3", linewidth=0.8)
    ax_c.set_ylim(-1, 1)
    ax_c.set_xlabel("training step")
    ax_c.set_ylabel("cosine(base gradient, distillation gradient)")
    ax_c.set_title("Do the two pulls agree?\n(0 = orthogonal, 1 = same direction)", fontsize=10)
    ax_c.legend(handles=[Line2D([], [], color=c, marker=".", label=f"{b} bits")
                         for c, b in zip(colours, bits)], fontsize=8, title="student length",
                title_fontsize=8, loc="lower right", ncol=2)
    return ax_r, ax_c


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
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(stats["method"]))
    lams = sorted(stats["lambda_D"].unique())
    bits = sorted(stats["bits"].unique())
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(bits)))
    axes = _panels(axes, len(methods), 5.2, 4.0)
    what = "95 % CI" if error == "ci95" else "sd"
    n = int(stats["n"].max()) if "n" in stats else None
    for ax, m in zip(axes, methods):
        g = stats[stats["method"] == m]
        for k, (colour, b) in enumerate(zip(colours, bits)):
            s = g[g["bits"] == b].set_index("lambda_D").reindex(lams)
            x = np.arange(len(lams)) + (k - (len(bits) - 1) / 2) * 0.04
            ax.errorbar(x, s["mean"], yerr=s[error].fillna(0), marker="o", capsize=3,
                        color=colour, label=f"{b} bits")
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

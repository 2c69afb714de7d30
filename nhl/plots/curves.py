"""Retrieval curves per code length, ablation summaries and the effect of tied distances.

Figures for the evaluation notebooks (docs/method.md §7 and §9): precision-recall by Hamming radius
for every length (:func:`pr_curves`, or one panel per length: :func:`pr_small_multiples`),
precision at N (:func:`precision_at_n_plot`), paired differences with confidence intervals per
dataset and method (:func:`paired_ci_plot`), mAP against
code length for several models (:func:`map_vs_bits`), an ablation table with error bars
(:func:`ablation_plot`, with the numbers a reading of it should rest on:
:func:`paired_differences`, :func:`best_per_length`, :func:`describe_ablation`), and two views of tied distances (:func:`tie_size_plot`,
:func:`tie_plot`) with the numbers behind them (:func:`tie_group_sizes`,
:func:`permuted_index_map`). Every function takes plain arrays/tables, draws on ``ax`` (a new
figure when ``None``) and returns the axes. A y axis that does not start at 0 is said so in the
axis label (:func:`flag_truncated_y`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..metrics import mean_average_precision, tie_group_sizes
from ..validation import check_bit_list, check_choice, check_codes, check_positive_int

__all__ = [
    "ablation_plot",
    "best_per_length",
    "flag_truncated_y",
    "index_order_spread",
    "paired_ci_plot",
    "pr_small_multiples",
    "describe_ablation",
    "paired_differences",
    "map_vs_bits",
    "permuted_index_map",
    "pr_curves",
    "precision_at_n_plot",
    "tie_group_sizes",
    "tie_plot",
    "tie_size_plot",
    "training_curves",
]


def _axes(ax, figsize=(6.0, 4.0)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _bits_keys(mapping: Mapping, name: str) -> tuple[int, ...]:
    if not isinstance(mapping, Mapping) or not mapping:
        raise TypeError(f"{name} must be a non-empty dict {{bits: ...}}, got {type(mapping).__name__}")
    return check_bit_list(sorted(mapping), name=f"the keys of {name}")


def _pr_pair(results: Mapping, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """``results[bits]`` as two float arrays (precision, recall) of one shape."""
    try:
        p, r = (np.asarray(a, dtype=float).reshape(-1) for a in results[bits])
    except (TypeError, ValueError) as err:
        raise TypeError(f"results[{bits}] must be a pair (precision, recall) of arrays") from err
    if p.shape != r.shape:
        raise ValueError(
            f"results[{bits}]: precision {p.shape} and recall {r.shape} must have the same shape"
        )
    return p, r


_MARKERS = ("o", "s", "^", "D", "v")


_LINESTYLES = ("-", "--", "-.", ":")


def _log2_bits_axis(ax, bits: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(bits))
    ax.set_xticklabels([str(b) for b in bits])
    ax.minorticks_off()


def flag_truncated_y(ax, always: bool = False):
    """Append "(axis starts at y0, not 0)" to the y label when the visible range of a
    positive quantity does not include 0 (a truncated axis exaggerates differences).

    Only the lower limit is checked; axes whose range includes 0 or negative values are left
    alone. ``always``: flag even when the lower limit is 0 (never needed in practice).
    """
    lo, hi = ax.get_ylim()
    if (lo > 0 and hi > lo) or always:
        label = ax.get_ylabel()
        note = f"(axis starts at {lo:.3g}, not 0)"
        if note not in label:
            ax.set_ylabel(f"{label}\n{note}" if label else note)
    return ax


# --------------------------------------------------------------------------- curves


def training_curves(history: pd.DataFrame, axes=None, title: str | None = None, count_from: int = 1):
    """Training loss and validation mAP per code length over epochs, from a run's history.

    ``history`` is :attr:`nhl.experiments.RunResult.history` (or ``FitResult.history``): one row
    per epoch and length with ``loss`` and ``val_map``; its ``epoch`` column counts from 0, as
    :func:`nhl.train.fit` records it. ``count_from``: the number drawn for that first epoch (the
    tutorials count epochs from 1: "epoch 1" is the state after one pass over the data). Epoch
    ticks are integers; one colour and marker per length (:func:`nhl.plots.codes.block_colors`); the
    legend (lengths only) sits right of the figure, off the data. The epoch chosen on the
    validation split (one for all lengths, docs/method.md §6) is a dotted line, named in the x
    label. A y axis that does not start at 0 says so (:func:`flag_truncated_y`). Returns the
    two axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from .codes import block_colors

    need = {"epoch", "bits", "loss", "val_map"}
    if not isinstance(history, pd.DataFrame) or not need <= set(history.columns):
        raise ValueError(f"history must be a run history with columns {sorted(need)}")
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    loss_ax, map_ax = axes
    lengths = sorted(history["bits"].unique())
    for i, (color, bits) in enumerate(zip(block_colors(lengths), lengths)):
        h = history[history["bits"] == bits].sort_values("epoch")
        epochs = h["epoch"].to_numpy() + count_from
        # one hollow marker shape per length: lengths whose curves coincide stay visible
        style = dict(marker=_MARKERS[i % len(_MARKERS)], ms=5, mfc="none", mew=1.2, color=color,
                     label=f"{bits} bits")
        loss_ax.plot(epochs, h["loss"], **style)
        map_ax.plot(epochs, h["val_map"], **style)
    xlabel = "epoch"
    if "selected" in history and history["selected"].any():
        best = int(history.loc[history["selected"], "epoch"].iloc[0]) + count_from
        for ax in axes:
            ax.axvline(best, color="k", ls=":", lw=1)
        xlabel = f"epoch (dotted: the selected epoch, {best})"
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_ax.set(xlabel=xlabel, ylabel="base loss (mean over steps)", title="training loss per length")
    map_ax.set(xlabel=xlabel, ylabel="validation mAP@ALL", title="validation mAP per length")
    for ax in axes:
        flag_truncated_y(ax)
    map_ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5), title="code length",
                  title_fontsize=8)
    if title:
        loss_ax.figure.suptitle(title)
    return axes


def pr_curves(results: Mapping[int, tuple], ax=None, mark_radius: int | None = 2):
    """Precision against recall by Hamming radius r = 0..L, one line per length.

    ``results``: ``{bits: (precision, recall)}`` as returned by
    :func:`nhl.metrics.precision_recall_by_radius` (arrays of length ``bits + 1``).
    ``mark_radius`` puts a dot at that radius on every curve (``None``: no dots).
    """
    bits_list = _bits_keys(results, "results")
    ax = _axes(ax)
    for i, bits in enumerate(bits_list):
        p, r = _pr_pair(results, bits)
        ax.plot(r, p, color=f"C{i}", label=f"{bits} bits")
        if mark_radius is not None and mark_radius < p.size:
            ax.scatter([r[mark_radius]], [p[mark_radius]], color=f"C{i}", s=25, zorder=3)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    title = "Precision-recall by Hamming radius"
    if mark_radius is not None:
        title += f" (dots: radius {mark_radius})"
    ax.set_title(title)
    ax.legend(fontsize=8)
    return ax


def pr_small_multiples(
    results: Mapping[int, tuple],
    mark_radius: int | None = 2,
    axes=None,
):
    """Precision against recall by Hamming radius, one panel per length (small multiples).

    ``results``: ``{bits: (precision, recall)}`` as returned by
    :func:`nhl.metrics.precision_recall_by_radius` (arrays of length ``bits + 1``). Each panel
    draws its length's L + 1 points (r = 0..L) over the full [0, 1] x [0, 1] square (no
    truncated axis), the other lengths as thin grey lines for reference, labels radius 0 and
    rings and labels ``mark_radius``. Returns the array of axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from .codes import block_colors

    bits_list = _bits_keys(results, "results")
    curves = {}
    for bits in bits_list:
        curves[bits] = _pr_pair(results, bits)
    if axes is None:
        _, axes = plt.subplots(1, len(bits_list), figsize=(2.6 * len(bits_list), 3.2), sharey=True)
    axes = np.atleast_1d(axes)
    if axes.size != len(bits_list):
        raise ValueError(f"need {len(bits_list)} axes (one per length), got {axes.size}")
    colors = block_colors(bits_list)  # one colour per length, as every figure of the package
    for i, (ax, bits) in enumerate(zip(axes.ravel(), bits_list)):
        for other, (po, ro) in curves.items():
            if other != bits:
                ax.plot(ro, po, color="0.8", linewidth=1, label="_other lengths")
        p, r = curves[bits]
        ax.plot(r, p, "o-", ms=2.5, color=colors[i], label=f"{bits} bits")
        ax.annotate("r=0", (r[0], p[0]), xytext=(-6, -12), textcoords="offset points", fontsize=8,
                    ha="right")
        if mark_radius is not None and 0 < mark_radius < p.size:
            k = mark_radius
            ax.scatter([r[k]], [p[k]], s=70, facecolors="none", edgecolors="k", zorder=3,
                       label=f"radius {k}")
            ax.annotate(f"r={k}", (r[k], p[k]), xytext=(6, 6), textcoords="offset points", fontsize=8)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_title(f"{bits} bits (r = 0..{p.size - 1})", fontsize=10)
    first = axes.ravel()[0]
    first.set_ylabel("precision")
    handles = [Line2D([], [], color="0.8", label="other lengths")]
    if mark_radius is not None:
        handles.append(Line2D([], [], marker="o", markerfacecolor="none", markeredgecolor="k",
                              linestyle="none", label=f"radius {mark_radius}"))
    first.legend(handles=handles, fontsize=8, loc="lower left")
    fig = first.figure
    fig.suptitle("Precision-recall by Hamming radius r, one panel per code length")
    fig.tight_layout()
    return axes


def precision_at_n_plot(table: pd.DataFrame, ax=None, y_from_zero: bool = False):
    """Precision@N against N, one line per length.

    ``table``: index = code lengths (bits), columns = cut-offs N, values = precision (e.g. rows
    of :func:`nhl.metrics.precision_at_n`). N is drawn on a log scale (the cut-offs are
    spread over orders of magnitude). ``y_from_zero``: y axis from 0 to 1; otherwise it is
    zoomed to the data and the y label says where it starts.
    """
    if not isinstance(table, pd.DataFrame) or table.empty:
        raise TypeError("table must be a non-empty DataFrame: index bits, columns N, values precision")
    bits_list = check_bit_list(list(table.index), name="table.index (code lengths)")
    ns = np.asarray([float(n) for n in table.columns])
    if (ns <= 0).any() or (np.diff(ns) <= 0).any():
        raise ValueError(f"table.columns must be increasing positive cut-offs N, got {list(table.columns)}")
    from .codes import block_colors

    ax = _axes(ax)
    for color, bits in zip(block_colors(bits_list), bits_list):  # one colour per length
        ax.plot(ns, table.loc[bits].to_numpy(float), marker="o", color=color, label=f"{bits} bits")
    ax.set_xscale("log")
    ax.set_xticks(ns)
    ax.set_xticklabels([str(int(n)) for n in ns])
    ax.minorticks_off()
    ax.set_xlabel("N (top-N retrieved items)")
    ax.set_ylabel("precision@N")
    ax.set_title("Precision of the top N by code length")
    if y_from_zero:
        ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    return flag_truncated_y(ax)


def map_vs_bits(
    table: pd.DataFrame,
    columns: Sequence[str] | None = None,
    errors: pd.DataFrame | None = None,
    ax=None,
    ylim: tuple[float, float] | None = None,
):
    """mAP against code length (log2 axis), one line per column of ``table``.

    ``table``: index = bits; by default every column whose name ends in ``"mAP"`` is drawn
    (e.g. ``'baseline mAP'`` and ``'nested mAP'`` of :func:`nhl.studies.grid.compare`). Each
    column has its own colour, marker and line style, later columns drawn on top with hollow,
    larger markers, so columns that coincide remain visible.
    ``errors``: same index and columns, drawn as +/- error bars (e.g. the std over seeds).
    ``ylim``: the y range (e.g. ``(0, 1)``, the full mAP range); by default matplotlib's, and a
    range that does not include 0 is flagged in the y label.
    """
    if not isinstance(table, pd.DataFrame) or table.empty:
        raise TypeError("table must be a non-empty DataFrame indexed by bits")
    bits_list = check_bit_list(list(table.index), name="table.index (code lengths)")
    if columns is None:
        columns = [c for c in table.columns if str(c).endswith("mAP")]
    columns = list(columns)
    missing = [c for c in columns if c not in table.columns]
    if not columns or missing:
        raise ValueError(
            f"columns {missing or columns} not found; choose from {list(table.columns)}"
        )
    if errors is not None:
        bad = [c for c in columns if c not in getattr(errors, "columns", ())]
        if bad or list(errors.index) != list(table.index):
            raise ValueError("errors must be a DataFrame with the same index (bits) and columns as table")
    ax = _axes(ax)
    for i, col in enumerate(columns):
        y = table[col].to_numpy(float)
        # each column its own marker and line style, later ones hollow and larger: lines that
        # coincide (e.g. two mAP variants equal to 3 decimals) stay visible one inside the other
        ax.plot(bits_list, y, marker=_MARKERS[i % len(_MARKERS)],
                linestyle=_LINESTYLES[i % len(_LINESTYLES)], color=f"C{i}", label=str(col),
                markersize=6 + 3 * min(i, 2), markerfacecolor=f"C{i}" if i == 0 else "none",
                zorder=3 + i)
        if errors is not None:
            ax.errorbar(bits_list, y, yerr=errors[col].to_numpy(float), fmt="none", ecolor=f"C{i}",
                        capsize=3)
    _log2_bits_axis(ax, bits_list)
    ax.set_xlabel("code length (bits)")
    ax.set_ylabel("mAP")
    ax.set_title("mAP by code length")
    ax.legend(fontsize=8)
    if ylim is not None:
        ax.set_ylim(*ylim)
    return flag_truncated_y(ax)


def paired_ci_plot(
    table: pd.DataFrame,
    panel: Sequence[str] = ("dataset",),
    hue: str = "method",
    ylabel: str = "nested - single-length mAP",
    axes=None,
    x: str = "bits",
    xlabel: str | None = None,
    legend: str = "inside",
):
    """Paired differences with 95 % confidence intervals, one panel per group of ``panel``.

    ``table``: :func:`nhl.studies.statistics.paired` output (columns ``bits``, ``diff``, ``ci95`` and the
    ``panel`` and ``hue`` columns; ``bits`` may include ``"mean"``, drawn last). Each ``hue``
    value (e.g. method) is a dodged series of points with its interval; a line marks 0, so an
    interval that crosses it is a difference the seeds cannot tell from none. Panels keep
    their own y range (differences on different datasets differ in scale). ``x``: the column
    along the x axis (default ``bits``, sorted by value; another column, e.g. ``method``, keeps
    its order of appearance; ``"mean"`` is drawn last either way), ``xlabel`` its label.
    ``legend``: ``"inside"`` (first panel) or ``"outside"`` (right of the last panel, off the
    data). Returns the axes.
    """
    import matplotlib.pyplot as plt

    check_choice(legend, ("inside", "outside"), "legend")
    need = {x, "diff", "ci95", hue, *panel}
    if not isinstance(table, pd.DataFrame) or not need <= set(table.columns):
        raise ValueError(f"table must be a DataFrame with columns {sorted(need)} (nhl.studies.statistics.paired)")
    if table.empty:
        raise ValueError("table is empty: nothing to draw")
    groups = list(table.groupby(list(panel), sort=False))
    if axes is None:
        _, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.6), squeeze=False)
    axes = np.atleast_1d(axes).ravel()
    if axes.size != len(groups):
        raise ValueError(f"need {len(groups)} axes (one per panel), got {axes.size}")
    hues = list(dict.fromkeys(table[hue]))
    width = 0.6 / max(len(hues), 1)
    for ax, (key, g) in zip(axes, groups):
        values = [b for b in dict.fromkeys(g[x]) if b != "mean"]
        numeric = sorted(values, key=float) if x == "bits" else values
        order = numeric + (["mean"] if (g[x] == "mean").any() else [])
        pos = {b: i for i, b in enumerate(order)}
        for j, h in enumerate(hues):
            s = g[g[hue] == h]
            if s.empty:
                continue
            xs = np.array([pos[b] for b in s[x]]) + (j - (len(hues) - 1) / 2) * width
            ci = s["ci95"].to_numpy(float)
            ax.errorbar(xs, s["diff"].to_numpy(float), yerr=np.where(np.isfinite(ci), ci, 0.0),
                        fmt="o", ms=4, capsize=3, color=f"C{j}", label=str(h))
        ax.axhline(0.0, color="0.3", linewidth=0.8)
        if "mean" in pos:
            ax.axvline(pos["mean"] - 0.5, color="0.7", linewidth=0.8, linestyle=":")
        ax.set_xticks(range(len(order)), [str(b) for b in order])
        ax.set_xlabel(xlabel or ("code length (bits)" if x == "bits" else x))
        ax.set_ylabel(ylabel)
        key = key if isinstance(key, tuple) else (key,)
        ax.set_title(", ".join(str(k) for k in key), fontsize=10)
    entries = {}  # every hue of every panel (a panel may lack some)
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    labels = [str(h) for h in hues if str(h) in entries]
    handles = [entries[label] for label in labels]
    if legend == "inside":
        axes[0].legend(handles, labels, fontsize=8, title=hue, title_fontsize=8)
    else:
        axes[-1].legend(handles, labels, fontsize=8, title=hue, title_fontsize=8, loc="upper left",
                        bbox_to_anchor=(1.02, 1.0))
    return axes


def ablation_plot(
    table: pd.DataFrame,
    kind: str = "point",
    order: Sequence[str] | None = None,
    relative_to: str | None = None,
    value: str = "mAP",
    ax=None,
):
    """mean +/- one standard deviation over seeds of ``value`` per length, one colour per variant.

    ``table``: long format with columns ``variant``, ``seed``, ``bits`` and ``value`` (as the
    ``frozen-ablation`` study's table, ``nhl.studies.results.load("frozen-ablation")``). ``kind``:
    ``"point"`` (seaborn pointplot) or ``"bar"``. ``relative_to``: a reference variant subtracted first, so small differences are
    visible next to the large change of mAP with length; with a ``seed`` column the reference
    of the *same seed* is subtracted (paired differences, the error bars are then the std of
    those, as in :func:`paired_differences`), otherwise the reference's mean per length.
    """
    import seaborn as sns

    check_choice(kind, ("point", "bar"), "kind")
    need = {"variant", "bits", value}
    if not isinstance(table, pd.DataFrame) or not need <= set(table.columns):
        raise ValueError(f"table must be a DataFrame with columns {sorted(need)} (long format)")
    data = table.copy()
    variants = list(order) if order is not None else list(dict.fromkeys(data["variant"]))
    unknown = set(variants) - set(data["variant"])
    if unknown:
        raise ValueError(f"order names unknown variants {sorted(unknown)}")
    ylabel = value
    if relative_to is not None:
        if relative_to not in set(data["variant"]):
            raise ValueError(f"relative_to={relative_to!r} is not a variant of the table")
        keys = ["seed", "bits"] if "seed" in data.columns else ["bits"]
        ref = data[data["variant"] == relative_to].groupby(keys)[value].mean().rename("_ref")
        data = data.join(ref, on=keys)
        if data["_ref"].isna().any():
            missing = sorted(set(map(tuple, data.loc[data["_ref"].isna(), keys].to_numpy().tolist())))
            raise ValueError(f"relative_to={relative_to!r} has no value for {keys} = {missing[:5]}")
        data[value] = data[value] - data.pop("_ref")
        ylabel = f"{value} - {relative_to}" + (" (same seed)" if "seed" in keys else " (mean)")
    ax = _axes(ax, figsize=(7.0, 4.0))
    common = dict(data=data, x="bits", y=value, hue="variant", hue_order=variants,
                  order=sorted(data["bits"].unique()), errorbar="sd", ax=ax)
    if kind == "point":
        sns.pointplot(**common, dodge=0.4, markersize=5, linewidth=1.5, capsize=0.05)
    else:
        sns.barplot(**common, capsize=0.1)
    if relative_to is not None:
        ax.axhline(0.0, color="0.3", linewidth=0.8)
    ax.set_xlabel("code length (bits)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{value} per variant (mean ± std over seeds)")
    ax.legend(fontsize=8, title="variant", title_fontsize=8)
    return ax


def _check_long_table(table, value: str, need_seed: bool = True) -> pd.DataFrame:
    need = {"variant", "bits", value} | ({"seed"} if need_seed else set())
    if not isinstance(table, pd.DataFrame) or not need <= set(table.columns):
        raise ValueError(f"table must be a DataFrame with columns {sorted(need)} (long format)")
    return table


def _verdict(mean: float, std: float, n: int, identical: bool = False) -> str:
    if identical:
        return "identical"
    if n < 2 or not np.isfinite(std):
        return "single seed"
    if mean > std:
        return "better"
    if mean < -std:
        return "worse"
    return "within noise"


def paired_differences(table: pd.DataFrame, reference: str = "plain", value: str = "mAP") -> pd.DataFrame:
    """Each variant minus ``reference`` at the same seed and length, summarised over seeds.

    Variants that share a seed share the initial weights, targets and batch order, so the
    per-seed difference removes most of the seed-to-seed noise. Rows: every (variant, bits)
    plus bits ``"mean"`` (the average over lengths, per seed). Columns: ``diff`` (mean over
    seeds), ``std`` (of the per-seed differences), ``seeds``, ``verdict``: ``identical`` when
    every per-seed difference is 0 (below 1e-12), ``better`` / ``worse`` when the mean
    difference exceeds one standard deviation, ``single seed`` with one seed, else
    ``within noise``.
    """
    _check_long_table(table, value)
    if reference not in set(table["variant"]):
        raise ValueError(f"reference={reference!r} is not a variant of the table")
    wide = table.pivot_table(index=["seed", "bits"], columns="variant", values=value)
    diffs = wide.sub(wide[reference], axis=0).drop(columns=reference).dropna()
    per_seed_mean = diffs.groupby(level="seed").mean()
    per_seed_mean["bits"] = "mean"
    long = diffs.reset_index().melt(id_vars=["seed", "bits"], var_name="variant", value_name="d")
    avg = per_seed_mean.reset_index().melt(id_vars=["seed", "bits"], var_name="variant", value_name="d")
    long["bits"] = long["bits"].astype(object)
    both = pd.concat([long, avg], ignore_index=True)
    order = [v for v in dict.fromkeys(table["variant"]) if v != reference]
    bits_order = [*sorted(table["bits"].unique()), "mean"]
    rows = []
    for variant in order:
        for bits in bits_order:
            d = both.loc[(both["variant"] == variant) & (both["bits"] == bits), "d"].to_numpy(float)
            if d.size == 0:
                continue
            std = float(d.std(ddof=1)) if d.size > 1 else float("nan")
            rows.append({"variant": variant, "bits": bits, "diff": float(d.mean()), "std": std,
                         "seeds": int(d.size),
                         "verdict": _verdict(float(d.mean()), std, d.size, bool(np.all(np.abs(d) < 1e-12)))})
    return pd.DataFrame(rows).set_index(["variant", "bits"])


def best_per_length(table: pd.DataFrame, value: str = "mAP") -> pd.DataFrame:
    """Per length: the variant with the highest mean, the runner-up and whether the gap is clear.

    ``clear`` is True when the gap between the two means exceeds the larger of their two
    standard deviations over seeds (one std, a deliberately modest bar with few seeds).
    """
    _check_long_table(table, value, need_seed=False)
    stats = table.groupby(["bits", "variant"])[value].agg(["mean", "std"]).reset_index()
    rows = []
    for bits, g in stats.groupby("bits"):
        g = g.sort_values("mean", ascending=False)
        best = g.iloc[0]
        row = {"bits": bits, "best": best["variant"], "best mean": best["mean"], "best std": best["std"]}
        if len(g) > 1:
            second = g.iloc[1]
            gap = best["mean"] - second["mean"]
            noise = np.nanmax([best["std"], second["std"]]) if g["std"].notna().any() else np.nan
            row.update({"runner-up": second["variant"], "runner-up mean": second["mean"],
                        "gap": gap, "clear": bool(np.isfinite(noise) and gap > noise)})
        rows.append(row)
    return pd.DataFrame(rows).set_index("bits")


def describe_ablation(table: pd.DataFrame, reference: str = "plain", value: str = "mAP") -> str:
    """A short Markdown reading of an ablation table, generated from its numbers.

    One line per length (best variant, gap to the runner-up, whether it exceeds one std) and
    one per variant (average over lengths of its paired difference to ``reference``).
    """
    best = best_per_length(table, value)
    diffs = paired_differences(table, reference, value)
    lines = [f"**Best variant per length** (mean {value} over seeds):"]
    for bits, row in best.iterrows():
        text = f"- {bits} bits: **{row['best']}** ({row['best mean']:.4f})"
        if "runner-up" in row and isinstance(row["runner-up"], str):
            if abs(row["gap"]) < 1e-12:
                text += f", tied with {row['runner-up']}"
            else:
                clear = "more than" if row["clear"] else "less than"
                text += (f", {row['gap']:+.4f} ahead of {row['runner-up']}, {clear} one std"
                         " over seeds")
        lines.append(text)
    lines.append("")
    lines.append(f"**Against `{reference}`** (same seed, averaged over lengths):")
    for variant in dict.fromkeys(diffs.index.get_level_values("variant")):
        row = diffs.loc[(variant, "mean")]
        wins = diffs.loc[variant].drop(index="mean")
        n_up = int((wins["diff"] > 0).sum())
        lines.append(
            f"- {variant}: {row['diff']:+.4f} ± {row['std']:.4f} ({row['verdict']}); higher mean at "
            f"{n_up} of {len(wins)} lengths, clearly better at {int((wins['verdict'] == 'better').sum())}, "
            f"clearly worse at {int((wins['verdict'] == 'worse').sum())}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- ties


def permuted_index_map(
    q_codes, db_codes, q_labels, db_labels, n_perm: int = 10, seed: int = 0, topk: int | None = None
) -> np.ndarray:
    """Index-order mAP after ``n_perm`` random shuffles of the database (one value per shuffle).

    Index order breaks ties by database position, so shuffling the database changes it; the
    tie-aware mAP (``ties="average"``) is the exact mean over all shuffles (docs/method.md §7).
    """
    n_perm = check_positive_int(n_perm, "n_perm")
    db = check_codes(db_codes, "db_codes")
    dbl = np.asarray(db_labels)
    if dbl.shape[0] != db.shape[0]:
        raise ValueError(f"db_labels has {dbl.shape[0]} rows but db_codes has {db.shape[0]}")
    rng = np.random.default_rng(seed)
    out = np.empty(n_perm)
    for i in range(n_perm):
        perm = rng.permutation(db.shape[0])
        out[i] = mean_average_precision(q_codes, db[perm], q_labels, dbl[perm], topk=topk, ties="index")
    return out


def index_order_spread(
    q_codes,
    db_codes,
    q_labels,
    db_labels,
    bit_list: Sequence[int],
    n_perm: int = 10,
    topk: int | None = None,
    seed: int = 1,
) -> tuple[pd.DataFrame, dict[int, np.ndarray]]:
    """How much the database order moves index-order mAP, per length (docs/method.md §7).

    For each length of ``bit_list`` (prefixes of the codes): the tie-aware mAP@``topk`` and the
    index-order mAP after ``n_perm`` random shuffles of the database (:func:`permuted_index_map`,
    the same shuffles at every length). Returns a table indexed by bits (``tie-aware``,
    ``index order: mean``, ``index order: std``, ``index order: max - min``) and the shuffled
    values ``{bits: array}`` for :func:`tie_plot`.
    """
    bits_list = check_bit_list(bit_list)
    db = check_codes(db_codes, "db_codes")
    if bits_list[-1] > db.shape[1]:
        raise ValueError(f"bit_list goes up to {bits_list[-1]} bits but the codes have {db.shape[1]}")
    q = check_codes(q_codes, "q_codes")
    samples, rows = {}, {}
    for b in bits_list:
        v = permuted_index_map(q[:, :b], db[:, :b], q_labels, db_labels, n_perm=n_perm, seed=seed, topk=topk)
        exact = mean_average_precision(q[:, :b], db[:, :b], q_labels, db_labels, topk=topk)
        samples[b] = v
        rows[b] = {"tie-aware": exact, "index order: mean": float(v.mean()),
                   "index order: std": float(v.std(ddof=1)) if v.size > 1 else float("nan"),
                   "index order: max - min": float(v.max() - v.min())}
    table = pd.DataFrame(rows).T
    table.index.name = "bits"
    return table, samples


def tie_size_plot(sizes: Mapping[int, Sequence[float]], n_database: int | None = None,
                  ylabel: str = "items in the tie group", ax=None,
                  title: str = "How many database items share a distance"):
    """Box plot (log scale) of tie-group sizes per length, e.g. ``tie_group_sizes(...)['nearest']``.

    ``n_database`` draws the database size as a dashed line (a group cannot be larger). The
    log scale is needed: sizes range from one image to the whole database.
    """
    bits_list = _bits_keys(sizes, "sizes")
    ax = _axes(ax)
    data = [np.asarray(sizes[b], dtype=float).reshape(-1) for b in bits_list]
    if any(d.size == 0 for d in data):
        raise ValueError("every length needs at least one tie-group size")
    ax.boxplot(data, positions=range(len(bits_list)), widths=0.6, showfliers=False)
    ax.set_xticks(range(len(bits_list)))
    ax.set_xticklabels([str(b) for b in bits_list])
    ax.set_yscale("log")
    if n_database is not None:
        ax.axhline(n_database, color="C3", linestyle="--", linewidth=1, label=f"database ({n_database})")
        ax.legend(fontsize=8)
    ax.set_xlabel("code length (bits)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return ax


def tie_plot(samples: Mapping[int, Sequence[float]], exact: Mapping[int, float], ax=None):
    """Index-order mAP under random database orders (dots) against the tie-aware value (bar).

    ``samples``: ``{bits: mAPs}`` from :func:`permuted_index_map`; ``exact``: ``{bits: mAP}``
    with ``ties="average"``. The spread of the dots is what an arbitrary tie order adds.
    """
    bits_list = _bits_keys(samples, "samples")
    missing = [b for b in bits_list if b not in exact]
    if missing:
        raise ValueError(f"exact has no value for lengths {missing}")
    ax = _axes(ax)
    rng = np.random.default_rng(0)
    for i, bits in enumerate(bits_list):
        s = np.asarray(samples[bits], dtype=float).reshape(-1)
        jitter = rng.uniform(-0.12, 0.12, s.size)
        ax.scatter(i + jitter, s, s=12, color="C0", alpha=0.7,
                   label="index order, shuffled database" if i == 0 else None)
        ax.plot([i - 0.3, i + 0.3], [exact[bits]] * 2, color="C3", linewidth=2,
                label="tie-aware (exact mean)" if i == 0 else None)
    ax.set_xticks(range(len(bits_list)))
    ax.set_xticklabels([str(b) for b in bits_list])
    ax.set_xlim(-0.6, len(bits_list) - 0.4)
    ax.set_xlabel("code length (bits)")
    ax.set_ylabel("mAP")
    ax.set_title("Tie order changes index-order mAP")
    ax.legend(fontsize=8)
    return flag_truncated_y(ax)

"""Pictures of nested codes: which rows of W each length uses, and what each block of bits adds.

docs/method.md §1: the layer has one weight matrix W (L_K x d); the L_k-bit code reads the
first L_k rows, so rows ``L_{k-1} .. L_k - 1`` (block k) are used by lengths L_k .. L_K. The
functions here draw that layout and per-bit statistics of +-1 codes (balance, correlation,
whether a block's bits repeat earlier ones, distinct codes, Hamming distances of similar and
dissimilar pairs), computed with vectorised numpy.

For CSQ's nested hash centres (docs/method.md §2, :func:`nhl.losses.targets.nested_csq_centers`)
:func:`center_design_table` and :func:`center_picture` show, without training, how many
different class splits each prefix of the centres holds, and :func:`centers_summary` reads the
committed ``centers`` study table (``nhl.studies.results.get("centers")``), :func:`centers_gap`
one design against another per length and dataset.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..validation import (
    check_bit_list,
    check_codes,
    check_labels,
    check_positive_int,
    to_numpy,
)

SIMILAR_COLOR = "#2ca02c"
DISSIMILAR_COLOR = "#d62728"

__all__ = [
    "bit_balance",
    "bit_balance_values",
    "bit_correlation",
    "block_colors",
    "block_novelty",
    "blocks",
    "center_design_table",
    "center_picture",
    "centers_gap",
    "centers_summary",
    "code_strip",
    "correlation_matrix",
    "distinct_codes",
    "hamming_histogram_counts",
    "hamming_histograms",
    "pair_distances",
    "prefix_picture",
    "prefix_summary",
    "sample_pairs",
    "separation_auc",
]


# --------------------------------------------------------------------------- blocks


def blocks(bit_list: Sequence[int]) -> list[tuple[int, int]]:
    """Row blocks ``[(start, stop), ...]``: block k holds the bits that length k adds."""
    bits = check_bit_list(bit_list)
    starts = (0, *bits[:-1])
    return list(zip(starts, bits))


def block_colors(bit_list: Sequence[int]) -> list:
    """One colour per block (per length), shared by every figure in this module."""
    import matplotlib as mpl

    k = len(check_bit_list(bit_list))
    cmap = mpl.colormaps["viridis"]
    return [cmap(0.1 + 0.8 * i / max(k - 1, 1)) for i in range(k)]


def length_colours(bits: Sequence[int]) -> dict[int, tuple]:
    """One colour per code length, the package's (:func:`block_colors`): the default lengths
    8-128 keep their colours in any subset (a length keeps its colour when a figure shows only
    some of them); other lengths get the palette spread over their own list."""
    from ..layer import DEFAULT_BITS

    bits = sorted(int(b) for b in bits)
    if set(bits) <= set(DEFAULT_BITS):
        return {b: c for b, c in zip(DEFAULT_BITS, block_colors(DEFAULT_BITS)) if b in bits}
    return dict(zip(bits, block_colors(bits)))


def _check_prefix(codes, bit_list, name: str = "codes") -> tuple[np.ndarray, tuple[int, ...]]:
    c = check_codes(codes, name)
    bits = check_bit_list(bit_list)
    if bits[-1] > c.shape[1]:
        raise ValueError(
            f"bit_list asks for {bits[-1]} bits but {name} have {c.shape[1]}; "
            f"use lengths <= {c.shape[1]}"
        )
    return c, bits


# --------------------------------------------------------------------------- layout


def prefix_picture(bit_list: Sequence[int], weight=None, feature_dim: int = 32, fig=None):
    """The nested layer at a glance: W's rows coloured by block, and which lengths read them.

    Left: the weight matrix ``W`` (L_K x d; ``weight`` if given, e.g.
    ``model.hash_layer.weight``, else a blank matrix of ``feature_dim`` columns) with each row
    block tinted in its colour. Right: for every length a bar over the rows it reads: always a
    prefix, so every length reads block 1 and only L_K reads the last block. Returns the Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    bits = check_bit_list(bit_list)
    lk = bits[-1]
    if weight is not None:
        w = np.asarray(to_numpy(weight, "weight"), dtype=np.float64)
        if w.ndim != 2 or w.shape[0] != lk:
            raise ValueError(
                f"weight must be the (L_K={lk}, d) matrix of the hash layer, got shape {w.shape}"
            )
    else:
        w = np.zeros((lk, check_positive_int(feature_dim, "feature_dim")))
    colors = block_colors(bits)
    if fig is None:
        fig = plt.figure(figsize=(10, 4.8))
    ax_w, ax_use = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    lim = float(np.abs(w).max()) or 1.0
    d = w.shape[1]
    band = max(1.0, 0.06 * d)  # a coloured band left of W marks each row block
    ax_w.imshow(w, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest",
                extent=(-0.5, d - 0.5, lk - 0.5, -0.5))
    ax_w.grid(False)
    for (start, stop), color, b in zip(blocks(bits), colors, bits):
        ax_w.add_patch(Rectangle((-0.5 - band, start - 0.5), band, stop - start, facecolor=color,
                                 lw=0, label=f"rows {start}-{stop - 1}: added by the {b}-bit code"))
        ax_w.axhline(stop - 0.5, color=color, lw=1.5)
    ax_w.set_xlim(-0.5 - band, d - 0.5)
    ax_w.set_ylim(lk - 0.5, -0.5)
    ax_w.set_yticks([0, *bits])
    ax_w.set_xlabel(f"feature dimension (d = {d})")
    ax_w.set_ylabel("row of W = bit position")
    ax_w.set_title(f"one weight matrix W ({lk} x {d})")
    for j in range(len(bits)):
        for (start, stop), color in zip(blocks(bits)[: j + 1], colors):
            ax_use.bar(j, stop - start, bottom=start, color=color, width=0.7, edgecolor="white")
    ax_use.set_xticks(range(len(bits)), [f"{b}" for b in bits])
    ax_use.set_ylim(lk, 0)
    ax_use.set_xlabel("code length (bits)")
    ax_use.set_ylabel("rows of W it reads")
    ax_use.set_title("every length reads a prefix")
    ax_use.set_yticks([0, *bits])
    ax_use.grid(axis="x")
    ax_use.legend(*ax_w.get_legend_handles_labels(), fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def code_strip(code, bit_list: Sequence[int], ax=None):
    """One code as a row of cells (dark = +1, light = -1) with a bracket at every length.

    The bracket for L_k spans cells ``0 .. L_k - 1``: the L_k-bit code *is* those cells.
    Returns the axes.
    """
    import matplotlib.pyplot as plt

    c = check_codes(np.asarray(to_numpy(code, "code")).reshape(1, -1), "code")[0]
    bits = check_bit_list(bit_list)
    if bits[-1] > c.size:
        raise ValueError(f"bit_list asks for {bits[-1]} bits but the code has {c.size}")
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 1.2 + 0.22 * len(bits)))
    ax.imshow((c[None, : bits[-1]] > 0).astype(float), cmap="Greys", vmin=-0.25, vmax=1.25,
              aspect="auto", extent=(0, bits[-1], 0, 1), interpolation="nearest")
    ax.grid(False)
    for x in range(1, bits[-1]):
        ax.axvline(x, color="white", lw=0.4)
    colors = block_colors(bits)
    for level, (b, color) in enumerate(zip(bits, colors)):
        y = 1.25 + 0.45 * level
        ax.plot([0, 0, b, b], [y - 0.15, y, y, y - 0.15], color=color, lw=1.8, clip_on=False)
        ax.text(b, y, f" {b} bits", color=color, va="center", ha="left", fontsize=8,
                clip_on=False)
    ax.set_xlim(0, bits[-1])
    ax.set_ylim(0, 1.25 + 0.45 * len(bits))
    ax.set_yticks([])
    ax.set_xticks([0, *bits])
    ax.set_xlabel("bit position (dark = +1, light = -1)")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    return ax


# --------------------------------------------------------------------------- statistics


def bit_balance_values(codes) -> np.ndarray:
    """Fraction of items with bit = +1, per bit (``(L,)``); 0.5 is perfectly balanced."""
    c = check_codes(codes)
    return (c > 0).mean(axis=0)


def bit_balance(codes, bit_list: Sequence[int], ax=None):
    """Bars of the fraction of +1 per bit, coloured by block, with the ideal 0.5 marked."""
    import matplotlib.pyplot as plt

    c, bits = _check_prefix(codes, bit_list)
    p = bit_balance_values(c[:, : bits[-1]])
    own_figure = ax is None
    if own_figure:
        _, ax = plt.subplots(figsize=(10, 3.6))
    for (start, stop), color, b in zip(blocks(bits), block_colors(bits), bits):
        ax.bar(np.arange(start, stop), p[start:stop], width=1.0, color=color,
               label=f"bits {start}-{stop - 1} (added by {b})")
    ax.axhline(0.5, color="black", ls="--", lw=1, label="balanced (0.5)")
    ax.set_xlim(-0.5, bits[-1] - 0.5)
    ax.set_ylim(0, 1)
    ax.set_xlabel("bit position")
    ax.set_ylabel("fraction of items with +1")
    ax.set_title("bit balance")
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.3))
    if own_figure:
        ax.figure.tight_layout()
    return ax


def correlation_matrix(codes, bits: int | None = None) -> np.ndarray:
    """Pearson correlation between the first ``bits`` bits over items (``(bits, bits)``).

    A constant bit has no defined correlation; its off-diagonal entries are set to 0.
    """
    c = check_codes(codes)
    bits = c.shape[1] if bits is None else check_positive_int(bits, "bits")
    if bits > c.shape[1]:
        raise ValueError(f"bits={bits} but the codes have {c.shape[1]} bits")
    x = c[:, :bits].astype(np.float64)
    x -= x.mean(axis=0)
    sd = np.sqrt((x * x).mean(axis=0))
    safe = np.where(sd > 0, sd, 1.0)
    corr = (x.T @ x) / c.shape[0] / np.outer(safe, safe)
    corr[sd == 0, :] = 0.0
    corr[:, sd == 0] = 0.0
    np.fill_diagonal(corr, 1.0)
    return corr


def bit_correlation(
    codes, bits: int, bit_list: Sequence[int] | None = None, ax=None, colorbar: bool = True
):
    """Heatmap of the correlation between the first ``bits`` bits (blue -1 ... red +1).

    Lines mark the block boundaries of ``bit_list`` (lengths up to ``bits``). Returns the axes.
    """
    import matplotlib.pyplot as plt

    corr = correlation_matrix(codes, bits)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 3.6))
    im = ax.imshow(corr, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    ax.grid(False)
    if bit_list is not None:
        for b in check_bit_list(bit_list):
            if b < bits:
                ax.axhline(b - 0.5, color="black", lw=0.8)
                ax.axvline(b - 0.5, color="black", lw=0.8)
    off = np.abs(corr[~np.eye(bits, dtype=bool)]).mean() if bits > 1 else 0.0
    ax.set_title(f"{bits} bits: mean |corr| {off:.2f}", fontsize=10)
    ax.set_xlabel("bit")
    ax.set_ylabel("bit")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="correlation")
    return ax


def prefix_summary(codes, bit_list: Sequence[int]) -> pd.DataFrame:
    """Per length: mean |fraction of +1 - 0.5| and mean |correlation| between distinct bits."""
    c, bits = _check_prefix(codes, bit_list)
    p = bit_balance_values(c[:, : bits[-1]])
    rows = []
    for b in bits:
        corr = correlation_matrix(c, b)
        off = np.abs(corr[~np.eye(b, dtype=bool)]).mean() if b > 1 else 0.0
        rows.append({"bits": b, "mean |p(+1) - 0.5|": float(np.abs(p[:b] - 0.5).mean()),
                     "mean |corr|": float(off)})
    return pd.DataFrame(rows).set_index("bits")


def block_novelty(codes, bit_list: Sequence[int], copy_threshold: float = 0.9) -> pd.DataFrame:
    """Per block: do its bits say something new, or repeat bits of the earlier blocks?

    For each bit of block k (the bits length L_k adds) take its largest |correlation| with any
    bit of blocks 1..k-1. Columns: ``new bits``, ``mean max |corr| with earlier bits`` and
    ``copies`` (how many new bits have max |corr| >= ``copy_threshold``: near repeats, or
    negations, of an earlier bit). The first block has no earlier bits (NaN, 0 copies).
    Index: the length ``bits`` that adds the block.
    """
    c, bits = _check_prefix(codes, bit_list)
    if not 0.0 < copy_threshold <= 1.0:
        raise ValueError(f"copy_threshold must lie in (0, 1], got {copy_threshold}")
    corr = np.abs(correlation_matrix(c, bits[-1]))
    rows = []
    for (start, stop), b in zip(blocks(bits), bits):
        if start == 0:
            rows.append({"bits": b, "new bits": stop, "mean max |corr| with earlier bits": np.nan,
                         "copies": 0})
            continue
        best = corr[start:stop, :start].max(axis=1)
        rows.append({"bits": b, "new bits": stop - start,
                     "mean max |corr| with earlier bits": float(best.mean()),
                     "copies": int((best >= copy_threshold - 1e-12).sum())})
    return pd.DataFrame(rows).set_index("bits")


def distinct_codes(codes, bit_list: Sequence[int]) -> pd.Series:
    """How many different codes the items use at each length (at most ``min(N, 2^L)``).

    Items with the same code are at distance 0 from each other: no ranking can order them.
    """
    c, bits = _check_prefix(codes, bit_list)
    out = {b: int(np.unique(np.packbits(c[:, :b] > 0, axis=1), axis=0).shape[0]) for b in bits}
    return pd.Series(out, name="distinct codes").rename_axis("bits")


# --------------------------------------------------------------------------- pair distances


def sample_pairs(n_items: int, n_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n_pairs`` random pairs ``(i, j)`` of distinct items, uniformly, reproducibly."""
    n_items = check_positive_int(n_items, "n_items")
    n_pairs = check_positive_int(n_pairs, "n_pairs")
    if n_items < 2:
        raise ValueError("sampling pairs needs at least 2 items")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n_items, n_pairs)
    j = (i + rng.integers(1, n_items, n_pairs)) % n_items  # uniform over j != i
    return i, j


def pair_distances(codes, labels, bit_list: Sequence[int], pairs) -> tuple[dict, np.ndarray]:
    """Hamming distances of the given pairs at every length, and whether each pair is similar.

    One XOR of the longest codes and a cumulative sum along the bits gives every prefix's
    distance at once. Returns ``({bits: (P,) int distances}, (P,) bool similar)``.
    """
    c, bits = _check_prefix(codes, bit_list)
    y = check_labels(labels, "labels", n_items=c.shape[0])
    i, j = (np.asarray(p, dtype=np.int64) for p in pairs)
    diff = np.cumsum(c[i, : bits[-1]] != c[j, : bits[-1]], axis=1, dtype=np.int32)
    similar = (y[i].astype(np.int32) * y[j]).sum(axis=1) > 0
    return {b: diff[:, b - 1] for b in bits}, similar


def hamming_histogram_counts(
    codes, labels, bit_list: Sequence[int], n_pairs: int = 20000, seed: int = 0, pairs=None
) -> pd.DataFrame:
    """Counts of sampled pairs at each Hamming distance, per length, similar vs dissimilar.

    ``pairs``: explicit ``(i, j)`` index arrays, else ``n_pairs`` random pairs (``seed``).
    Returns a long DataFrame with columns ``bits, distance, similar, dissimilar``
    (distance 0 .. bits for every length).
    """
    c = check_codes(codes)
    if pairs is None:
        pairs = sample_pairs(c.shape[0], n_pairs, seed)
    dist, similar = pair_distances(c, labels, bit_list, pairs)
    frames = []
    for b, d in dist.items():
        frames.append(pd.DataFrame({
            "bits": b,
            "distance": np.arange(b + 1),
            "similar": np.bincount(d[similar], minlength=b + 1),
            "dissimilar": np.bincount(d[~similar], minlength=b + 1),
        }))
    return pd.concat(frames, ignore_index=True)


def separation_auc(counts: pd.DataFrame) -> pd.Series:
    """Per length, P(similar pair closer than dissimilar pair), ties counting one half.

    1.0: the distance alone separates the two kinds of pairs; 0.5: it tells nothing.
    """
    out = {}
    for b, g in counts.groupby("bits", sort=True):
        s = g["similar"].to_numpy(np.float64)
        n = g["dissimilar"].to_numpy(np.float64)
        if s.sum() == 0 or n.sum() == 0:
            out[b] = np.nan
            continue
        farther = n.sum() - np.cumsum(n)  # dissimilar pairs strictly farther than each distance
        out[b] = float((s * (farther + 0.5 * n)).sum() / (s.sum() * n.sum()))
    return pd.Series(out, name="AUC")


def hamming_histograms(
    codes,
    labels,
    bit_list: Sequence[int],
    n_pairs: int = 20000,
    seed: int = 0,
    pairs=None,
    fig=None,
    log: bool = False,
):
    """One panel per length: distribution of Hamming distances of similar vs dissimilar pairs.

    Each histogram is normalised to fractions of its own kind of pairs; one bar per distance,
    d = 0 included: the x axis starts left of d = 0 so that bar is never hidden under the axis,
    and each panel prints the share of similar / dissimilar pairs at d = 0 (identical codes).
    The title gives the separation AUC (:func:`separation_auc`). ``log``: log-scaled counts
    (the y label says so). Returns the Figure (its ``counts`` attribute holds the
    :func:`hamming_histogram_counts` table).
    """
    import matplotlib.pyplot as plt

    counts = hamming_histogram_counts(codes, labels, bit_list, n_pairs, seed, pairs)
    auc = separation_auc(counts)
    bits = check_bit_list(bit_list)
    if fig is None:
        fig = plt.figure(figsize=(2.9 * len(bits), 3.1))
    axes = np.atleast_1d(fig.subplots(1, len(bits), squeeze=False)[0])
    for ax, b in zip(axes, bits):
        g = counts[counts["bits"] == b]
        at_zero = []
        for col, color in (("similar", SIMILAR_COLOR), ("dissimilar", DISSIMILAR_COLOR)):
            total = g[col].sum()
            frac = (g[col] / total if total else g[col] * 0.0).to_numpy()
            ax.bar(g["distance"].to_numpy(), frac, width=1.0, align="center", color=color,
                   alpha=0.45, edgecolor=color, linewidth=0.6, label=f"{col} ({int(total)} pairs)")
            at_zero.append(f"{col[:3]}. {frac[0]:.0%}")
        ax.text(0.98, 0.97, "at d = 0:\n" + "\n".join(at_zero), transform=ax.transAxes,
                ha="right", va="top", fontsize=7)
        ax.set_title(f"{b} bits (AUC {auc[b]:.2f})", fontsize=10)
        ax.set_xlabel("Hamming distance")
        ax.set_xlim(-0.5 - max(1.0, 0.04 * b), b + 0.5)
        ax.set_xticks(np.unique(np.linspace(0, b, 5).round().astype(int)))  # 0 .. b, integers
        if log:
            ax.set_yscale("log")
    axes[0].set_ylabel("fraction of pairs" + (" (log scale)" if log else ""))
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    fig.counts = counts
    return fig


# --------------------------------------------------------------------------- CSQ centres


def center_design_table(
    n_classes: int,
    bit_list: Sequence[int],
    designs: Sequence[str] = ("sylvester", "hadamard", "random"),
) -> pd.DataFrame:
    """Per centre design and prefix length: distinct class splits and minimum centre distance.

    Builds :func:`nhl.losses.targets.nested_csq_centers` (no training) and reads each prefix
    with :func:`~nhl.losses.targets.distinct_splits` (how many different ways its bits split
    the classes in two; a bit that repeats an earlier split adds nothing about the classes) and
    :func:`~nhl.losses.targets.min_pairwise_hamming` (the closest two classes' centres).
    Index ``(design, bits)``.
    """
    from ..losses.targets import distinct_splits, min_pairwise_hamming, nested_csq_centers

    n_classes = check_positive_int(n_classes, "n_classes")
    bits = check_bit_list(bit_list)
    if n_classes < 2:
        raise ValueError("centre distances need at least two classes")
    rows = []
    for design in designs:
        c = nested_csq_centers(n_classes, bits, design=design)
        for b in bits:
            rows.append({"design": design, "bits": b, "distinct splits": distinct_splits(c[:, :b]),
                         "min centre distance": min_pairwise_hamming(c[:, :b])})
    return pd.DataFrame(rows).set_index(["design", "bits"])


def center_picture(
    n_classes: int,
    bit_list: Sequence[int],
    designs: Sequence[str] = ("sylvester", "hadamard"),
    class_names: Sequence[str] | None = None,
    fig=None,
):
    """The nested CSQ centres of each design as a class x bit picture (dark +1, light -1).

    Lines mark the prefix lengths; columns that repeat an earlier column (up to sign, the same
    class split) are flagged by a red tick under the picture. Returns the Figure.
    """
    import matplotlib.pyplot as plt

    from ..losses.targets import nested_csq_centers

    bits = check_bit_list(bit_list)
    n_classes = check_positive_int(n_classes, "n_classes")
    if fig is None:
        fig = plt.figure(figsize=(11, 1.2 + 0.28 * n_classes * len(designs)))
    axes = np.atleast_1d(fig.subplots(len(designs), 1, squeeze=False)[:, 0])
    for ax, design in zip(axes, designs):
        c = nested_csq_centers(n_classes, bits, design=design).numpy()
        signed = c * np.where(c[:1] < 0, -1.0, 1.0)  # a column and its negation: same split
        _, first = np.unique(signed.T, axis=0, return_index=True)
        repeat = np.setdiff1d(np.arange(c.shape[1]), first)
        ax.imshow(c > 0, cmap="Greys", vmin=-0.25, vmax=1.25, aspect="auto",
                  interpolation="nearest", extent=(0, bits[-1], n_classes, 0))
        ax.grid(False)
        for b in bits[:-1]:
            ax.axvline(b, color="C0", lw=1.2)
        ax.plot(repeat + 0.5, np.full(repeat.size, n_classes + 0.35), "|", color="C3", ms=5,
                clip_on=False, label="repeats an earlier split")
        ax.set_ylim(n_classes + 0.7, 0)
        ax.set_xticks([0, *bits])
        names = class_names if class_names is not None else [str(i) for i in range(n_classes)]
        ax.set_yticks(np.arange(n_classes) + 0.5, names, fontsize=7)
        ax.set_title(f"design={design!r}: {c.shape[1] - repeat.size} distinct splits among "
                     f"{c.shape[1]} bits ({repeat.size} repeats, red ticks)", fontsize=10)
    axes[-1].set_xlabel("bit position (dark = +1, light = -1; blue lines: prefix lengths)")
    fig.tight_layout()
    return fig


def centers_summary(table: pd.DataFrame, dataset: str = "fashion-mnist") -> pd.DataFrame:
    """The ``centers`` study table of one dataset, per design and length (mean over seeds).

    ``table``: ``nhl.studies.results.get("centers")[0]`` (one row per run and length, with columns
    ``design``, ``mAP``, ``distinct codes`` and ``nearest ties (median)``). Returns index
    ``(design, bits)`` with those three columns and ``seeds`` (how many seeds the mean is over).
    """
    need = {"dataset", "design", "bits", "seed", "mAP", "distinct codes", "nearest ties (median)"}
    if not isinstance(table, pd.DataFrame) or not need <= set(table.columns):
        missing = sorted(need - set(getattr(table, "columns", ())))
        raise ValueError(f"table must be the centers study table; missing columns {missing}")
    t = table[table["dataset"] == dataset]
    if t.empty:
        raise ValueError(f"no rows for dataset {dataset!r}; have {sorted(table['dataset'].unique())}")
    g = t.groupby(["design", "bits"], sort=True)
    out = g[["mAP", "distinct codes", "nearest ties (median)"]].mean()
    out["seeds"] = g["seed"].nunique()
    return out


def centers_gap(table: pd.DataFrame, design: str = "hadamard (default)",
                reference: str = "sylvester", value: str = "mAP") -> pd.DataFrame:
    """``design`` minus ``reference`` per length, one column per dataset of the ``centers`` table.

    ``table``: ``nhl.studies.results.get("centers")[0]``. Each cell is the mean of ``value``
    over the design's seeds minus that over the reference's (the two need not share seeds, so
    this is not a paired difference). Only datasets with both designs get a column; the
    columns' names add the seeds behind each mean, e.g. ``"fashion-mnist (1 vs 1 seeds)"``.
    Index ``bits``.
    """
    need = {"dataset", "design", "bits", "seed", value}
    if not isinstance(table, pd.DataFrame) or not need <= set(table.columns):
        missing = sorted(need - set(getattr(table, "columns", ())))
        raise ValueError(f"table must be the centers study table; missing columns {missing}")
    columns = {}
    for dataset, t in table.groupby("dataset", sort=False):
        a, b = t[t["design"] == design], t[t["design"] == reference]
        if a.empty or b.empty:
            continue
        diff = a.groupby("bits")[value].mean() - b.groupby("bits")[value].mean()
        columns[f"{dataset} ({a['seed'].nunique()} vs {b['seed'].nunique()} seeds)"] = diff
    if not columns:
        raise ValueError(f"no dataset has both {design!r} and {reference!r}; designs: "
                         f"{sorted(table['design'].unique())}")
    out = pd.DataFrame(columns)
    out.index.name = "bits"
    return out

"""Plots of per-length gradient conflicts and of the dominance-aware weighting (docs/method.md §3).

Inputs come from :mod:`nhl.diagnostics` (recorder frames, per-length gradients) and from run
histories (:attr:`nhl.experiments.RunResult.history`). Every function returns its figure or
axes and labels what it draws.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from ..diagnostics import (
    describe_conflict,
    dominance_margins,
    pair_columns,
    pair_plane,
    project_pair,
)
from ..weighting import dominance_alphas, weights_from_alphas
from .codes import length_colours

CMAP = "RdBu"  # red = opposing gradients (negative cosine), blue = agreeing
#: The default code lengths: a length keeps its colour when a figure shows only some of them.
DEFAULT_BITS = (8, 16, 32, 64, 128)


def cosine_heatmaps(
    matrices: np.ndarray,
    bit_list: Sequence[int],
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    annotate: bool = True,
    label: str = "cosine",
) -> plt.Figure:
    """A row (or grid) of K x K cosine heatmaps, one per matrix, sharing one colour bar."""
    mats = np.asarray(matrices, dtype=float)
    if mats.ndim == 2:
        mats = mats[None]
    n, K = mats.shape[0], len(bit_list)
    if mats.shape[1:] != (K, K):
        raise ValueError(f"matrices must be (n, {K}, {K}) for bit_list {tuple(bit_list)}, got {mats.shape}")
    ncols = ncols or min(n, 4)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.0 * ncols + 0.8, 2.8 * nrows), squeeze=False, constrained_layout=True
    )
    ticks = [str(b) for b in bit_list]
    im = None
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.set_visible(False)
            continue
        im = ax.imshow(mats[k], cmap=CMAP, vmin=-1, vmax=1)
        ax.set_xticks(range(K), ticks)
        ax.set_yticks(range(K), ticks)
        ax.set_xlabel("bits")
        ax.set_ylabel("bits")
        ax.grid(False)
        if titles is not None:
            ax.set_title(titles[k])
        if annotate:
            for i in range(K):
                for j in range(K):
                    if i != j:
                        v = mats[k, i, j]
                        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                                color="w" if abs(v) > 0.6 else "k")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label=label)
    return fig


def cosine_lines(
    frame: pd.DataFrame,
    ref: int | None = None,
    prefix: str = "cos",
    x: str = "iteration",
    smooth: int = 1,
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """``cos(ref-bit, j-bit)`` over training for every other length ``j`` (default ref: shortest).

    ``smooth`` > 1 draws a centred rolling mean over that many recorded steps. Each line has the
    colour of its other length ``j`` (:func:`length_colours`), as every plot of the package that
    draws one line per length.
    """
    cols = pair_columns(frame, prefix)
    ref = ref if ref is not None else min(a for a, _, _ in cols)
    colour = length_colours({a for a, _, _ in cols} | {b for _, b, _ in cols})
    ax = ax or plt.subplots()[1]
    for a, b, col in cols:
        if ref not in (a, b):
            continue
        other = b if a == ref else a
        y = frame[col].rolling(smooth, center=True, min_periods=1).mean() if smooth > 1 else frame[col]
        ax.plot(frame[x], y, label=f"{ref} vs {other} bits", lw=1.4, color=colour[other])
    ax.axhline(0, color="k", lw=0.8, ls="--")
    ax.set_xlabel("training step" if x == "iteration" else x)
    ax.set_ylabel("cosine on shared rows" if prefix == "cos" else "cosine")
    where = "hash layer W" if prefix == "cos" else "backbone"
    ax.set_title(f"Gradient cosine of the {ref}-bit objective with longer codes ({where})")
    ax.legend(fontsize=8, ncol=2)
    return ax


def conflict_picture(
    g_i: torch.Tensor | np.ndarray,
    g_j: torch.Tensor | np.ndarray,
    tau: float,
    alpha: float | None = None,
    names: tuple[str, str] = ("g_i", "g_j"),
    ax: plt.Axes | None = None,
    colors: tuple[str, str] = ("C0", "C3"),
) -> plt.Axes:
    """Two gradients in the plane they span, their sum, and the sum after the dominance rule.

    ``g_i`` points along x. The rule accepts a scaled ``alpha g_j`` only if its component along
    ``g_i`` is at least ``-tau / ||g_i||`` (i.e. ``alpha <g_i, g_j> >= -tau``): the dotted line,
    with the forbidden half-plane shaded. ``alpha=None`` applies the pairwise rule
    ``alpha = tau / (-c)`` when ``-c > tau`` (docs/method.md §3 step 4). ``colors``: the colours
    of ``g_i`` and ``g_j`` (give each length its own, as the other plots do); the scaled ``g_j``
    is drawn in its colour with a black outline, the plain sum in grey and the sum with the rule
    in black.
    """
    p = project_pair(g_i, g_j)
    pi, pj = p
    ni = pi[0]
    c = ni * pj[0]  # <g_i, g_j>
    if alpha is None:
        alpha = tau / -c if (c < 0 and -c > tau) else 1.0
    ax = ax or plt.subplots(figsize=(7.5, 4.5))[1]
    ci, cj = colors
    vecs = [
        (pi, names[0], ci),
        (pj, names[1], cj),
        (pi + pj, f"{names[0]} + {names[1]}", "0.55"),
        (pi + alpha * pj, f"{names[0]} + {alpha:.2f} {names[1]}", "k"),
    ]
    if alpha < 1:
        vecs.insert(2, (alpha * pj, f"{alpha:.2f} {names[1]} (scaled)", cj))
    pts = np.vstack([np.zeros(2)] + [v for v, _, _ in vecs])
    span = np.abs(pts).max() * 1.15
    line = -tau / ni
    ax.axvspan(-span, line, color="C3", alpha=0.08, label="forbidden zone")
    math_name = re.sub(r"_(\w+)", r"_{\1}", names[0])
    ax.axvline(line, color="C3", ls=":", lw=1.2, label=rf"$-\tau_i/\|{math_name}\|$")
    for v, name, color in vecs:
        outline = dict(edgecolor="k", linewidth=0.9) if name.endswith("(scaled)") else {}
        ax.quiver(0, 0, *v, angles="xy", scale_units="xy", scale=1, color=color, width=0.01,
                  label=name, **outline)
    ax.set_xlim(-span, span)
    ax.set_ylim(-span * 0.35, span)
    ax.set_aspect("equal")
    ax.set_xlabel(f"along {names[0]}")
    ax.set_ylabel(f"orthogonal part of {names[1]}")
    cos = c / (ni * np.linalg.norm(pj)) if np.linalg.norm(pj) > 0 else float("nan")
    ax.set_title(f"cos = {cos:.2f}, alpha = {alpha:.2f}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return ax


def weights_over_training(history: pd.DataFrame, ax: plt.Axes | None = None) -> plt.Axes:
    """Mean weight per length and epoch from a run history (one line per length).

    ``history`` is :attr:`RunResult.history` (columns epoch, bits, weight). The firing rate is a
    different quantity (a share of steps, 0..1): draw it on its own axes
    (:func:`weights_and_firing`), not on a second y axis of this one.
    """
    missing = {"epoch", "bits", "weight"} - set(history.columns)
    if missing:
        raise ValueError(f"history lacks columns {sorted(missing)}; pass RunResult.history")
    ax = ax or plt.subplots()[1]
    wide = history.pivot_table(index="epoch", columns="bits", values="weight")
    for b in wide.columns:
        ax.plot(wide.index, wide[b], marker="o", ms=3, label=f"{b} bits")
    ax.axhline(1.0, color="k", lw=0.8, ls="--", label="uniform (plain)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean weight $w_k$ (sum = K)")
    ax.set_ylim(0, max(2.0, float(np.nanmax(wide.to_numpy())) * 1.1))
    ax.set_title("Dominance-aware weights over training (epoch means)")
    ax.legend(fontsize=8, ncol=2)
    return ax


def weights_and_firing(recordings: Mapping[str, object], smooth: int = 1,
                       weights_for: Sequence[str] | None = None, count_from: int = 1) -> plt.Figure:
    """Per recorded run: the weights used at each recorded step (one panel per run), then one
    panel with the share of steps per epoch in which the dominance rule fired (docs/method.md §3).

    ``recordings`` maps a name to a :class:`nhl.studies.probes.Recording` (``.frame``, ``.config``,
    ``.run.history``). Weight panels share one y axis starting at 0 (nothing truncated); the
    firing panel spans 0..1. For a run that uses the rule the rate counts every training step
    (the run history); for one that does not, the recorded steps where it *would* have fired.
    ``smooth`` > 1 draws a centred rolling mean of the weights over that many recorded steps.
    ``weights_for``: the names that get a weight panel (default all); the others appear in the
    firing panel only (a run whose weights are all 1 draws a flat panel that says nothing).
    ``count_from``: the number drawn for the first epoch (the tutorials count epochs from 1; the
    recordings count from 0). One colour per length (:func:`length_colours`).
    """
    if not recordings:
        raise ValueError("recordings is empty: pass {name: Recording}")
    names = list(recordings) if weights_for is None else list(weights_for)
    unknown = [k for k in names if k not in recordings]
    if unknown:
        raise ValueError(f"weights_for names {unknown} that are not in recordings {list(recordings)}")
    n = len(names)
    fig, axes = plt.subplots(1, n + 1, figsize=(4.6 * (n + 1), 3.8), constrained_layout=True, squeeze=False)
    axes = axes[0]
    top = 2.0
    for rec in (recordings[k] for k in names):
        cols = [c for c in rec.frame.columns if re.fullmatch(r"weight_\d+", str(c))]
        if cols:
            top = max(top, float(rec.frame[cols].to_numpy(dtype=float).max()) * 1.1)
    for ax, name in zip(axes[:n], names):
        rec = recordings[name]
        f = rec.frame
        K = len(rec.config.bit_list)
        colour = length_colours(rec.config.bit_list)
        for k, b in enumerate(rec.config.bit_list):
            y = f[f"weight_{b}"].astype(float)
            if smooth > 1:
                y = y.rolling(smooth, center=True, min_periods=1).mean()
            # thinner lines for longer codes: equal weights (common) stay visible as nested lines
            ax.plot(f["iteration"], y, lw=1.0 + 4.0 * (K - 1 - k) / max(K - 1, 1), color=colour[b],
                    label=f"{b} bits")
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_ylim(0, top)
        ax.set_xlabel("training step")
        ax.set_ylabel("weight $w_k$ used (sum = K)")
        uses = rec.config.weighting == "dominance"
        ax.set_title(f"{name}\nweights per recorded step" + ("" if uses else " (uniform run)"), fontsize=10)
        ax.legend(fontsize=7, ncol=2)
    ax = axes[n]
    for k, (name, rec) in enumerate(recordings.items()):
        if rec.config.weighting == "dominance":
            r = rec.run.history.groupby("epoch")["anti_domination"].first()
            label = f"{name} (all steps)"
        else:
            r = rec.frame.groupby("epoch")["anti_domination"].mean()
            label = f"{name} (would fire, recorded steps)"
        ax.plot(r.index + count_from, r.to_numpy(dtype=float), marker="o", ms=4,
                color=("k", "0.55", "C3", "C0")[k % 4], label=label)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"epoch (counted from {count_from})")
    ax.set_ylabel("share of steps with some $\\alpha_{ij} < 1$")
    ax.set_title("How often the dominance rule fired", fontsize=10)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7)
    return fig


def recorded_conflicts(
    frame: pd.DataFrame, picks: Mapping[str, tuple], beta: float = 1.0, norm: str = "own",
    count_from: int = 1,
) -> plt.Figure:
    """One :func:`conflict_picture` per chosen recorded conflict (e.g.
    :func:`nhl.diagnostics.choose_conflicts`), side by side, titled with where it happened (the
    recorded epoch plus ``count_from``: the tutorials count epochs from 1), each gradient in the
    colour of its length (:func:`length_colours`)."""
    if not picks:
        raise ValueError("no conflict to draw: the rule never fired in this recording")
    fig, axes = plt.subplots(1, len(picks), figsize=(7.2 * len(picks), 4.6), squeeze=False,
                             constrained_layout=True)
    colour = length_colours([int(m.group(1)) for c in frame.columns if (m := re.fullmatch(r"norm_(\d+)", str(c)))])
    for ax, (kind, (label, short, long)) in zip(axes[0], picks.items()):
        d = describe_conflict(frame, label, short, long, beta=beta, norm=norm)
        p = pair_plane(frame.loc[label], short, long)
        conflict_picture(p[0], p[1], tau=d["tau_i"], alpha=d["alpha"], names=(f"g_{short}", f"g_{long}"), ax=ax,
                         colors=(colour.get(short, "C0"), colour.get(long, "C3")))
        ax.set_title(f"{kind}: {short} vs {long} bits, epoch {int(d['epoch']) + count_from}, step {d['step']}\n"
                     + ax.get_title(), fontsize=10)
    return fig


def paired_effect(eff: pd.DataFrame, what: str = "weighting - plain", value: str = "mAP") -> plt.Figure:
    """Paired differences per length with 95 % intervals (one panel per dataset, one series per
    method; from :func:`nhl.studies.weighting_effect.effect`), and a last panel with the firing rates.

    The difference axes are symmetric around 0 and drawn in full; a "not yet computed" figure
    when ``eff`` is empty.
    """
    if eff.empty:
        fig, ax = plt.subplots(figsize=(6, 1.6))
        ax.axis("off")
        ax.text(0.5, 0.5, f"{what}: not yet computed (no ablation rows)", ha="center", va="center")
        return fig
    datasets = list(dict.fromkeys(eff["dataset"]))
    methods = list(dict.fromkeys(eff["method"]))
    bits = sorted({b for b in eff["bits"] if b != "mean"}, key=int)
    labels = [str(b) for b in bits] + ["mean"]
    n = len(datasets)
    fig, axes = plt.subplots(1, n + 1, figsize=(4.4 * (n + 1), 3.9), constrained_layout=True)
    span = float(np.nanmax(np.abs(eff["diff"].to_numpy(dtype=float)) + eff["ci95"].fillna(0).to_numpy(dtype=float)))
    span = 1.1 * span if span > 0 else 0.01
    width = 0.7 / max(len(methods), 1)
    for ax, d in zip(axes[:n], datasets):
        for k, m in enumerate(methods):
            g = eff[(eff["dataset"] == d) & (eff["method"] == m)]
            g = g.assign(key=g["bits"].astype(str)).set_index("key").reindex(labels)
            x = np.arange(len(labels)) + (k - (len(methods) - 1) / 2) * width
            ax.errorbar(x, g["diff"].to_numpy(dtype=float), yerr=g["ci95"].fillna(0).to_numpy(dtype=float),
                        fmt="o", ms=4, capsize=3, color=f"C{k}", label=m)
        ax.axhline(0, color="k", lw=0.8)
        ax.axvline(len(labels) - 1.5, color="0.7", lw=0.8, ls=":")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_ylim(-span, span)
        ax.set_xlabel("code length (bits)")
        ax.set_ylabel(f"{what}, {value}")
        ax.set_title(f"{d}: paired difference, 95 % CI", fontsize=10)
    ax = axes[n]
    fire = eff.drop_duplicates(["dataset", "method"])
    x = np.arange(n)
    for k, m in enumerate(methods):
        v = [fire.loc[(fire["dataset"] == d) & (fire["method"] == m), "firing"].mean() for d in datasets]
        bars = ax.bar(x + (k - (len(methods) - 1) / 2) * width, v, width, color=f"C{k}", label=m)
        # a rate of 0 is a label, not a missing bar; a small rate never reads as 0 %
        ax.bar_label(bars, labels=[_rate(r) for r in v], fontsize=7.5, rotation=90, padding=2)
    ax.set_xticks(x, [_wrap(d) for d in datasets], fontsize=8)
    ax.set_ylim(0, 1.22)  # room for the rotated labels above a bar at 1
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("share of steps where the rule fired")
    ax.set_title(f"Firing rate ({what.split(' - ')[0]} runs)", fontsize=10)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, title="method", fontsize=8, title_fontsize=8, loc="outside right upper")
    return fig


def _rate(r: float) -> str:
    """A firing rate as a bar label, as the tables print it (one decimal; two significant digits
    below 0.1 %, so that a rule that fired never reads as 0); an exact 0 is "0%"."""
    if not np.isfinite(r):
        return ""
    if r == 0:
        return "0%"
    return f"{100 * r:.2g}%" if r < 0.001 else f"{r:.1%}"


def _wrap(name: str) -> str:
    """A long hyphenated name on two lines, split at the hyphen nearest its middle."""
    cuts = [i for i, ch in enumerate(name) if ch == "-"]
    if len(name) <= 10 or not cuts:
        return name
    cut = min(cuts, key=lambda i: abs(i - len(name) / 2))
    return name[: cut + 1] + "\n" + name[cut + 1:]


def map_bars(maps: Mapping[str, Mapping[int, float]], ax: plt.Axes | None = None,
             errors: Mapping[str, Mapping[int, float]] | None = None) -> plt.Axes:
    """Grouped bar chart: mAP per code length, one bar per named variant (optional error bars)."""
    names = list(maps)
    if not names:
        raise ValueError("maps is empty; pass {variant name: {bits: mAP}}")
    bits = sorted({int(b) for m in maps.values() for b in m})
    ax = ax or plt.subplots()[1]
    width = 0.8 / len(names)
    x = np.arange(len(bits))
    for k, name in enumerate(names):
        vals = [maps[name].get(b, np.nan) for b in bits]
        err = [errors[name].get(b, 0.0) for b in bits] if errors else None
        ax.bar(x + (k - (len(names) - 1) / 2) * width, vals, width, yerr=err, capsize=3, label=name)
    ax.set_xticks(x, [str(b) for b in bits])
    ax.set_xlabel("code length (bits)")
    ax.set_ylabel("mAP@ALL")
    ax.set_title("mAP per code length")
    lo = np.nanmin([v for m in maps.values() for v in m.values()])
    ax.set_ylim(max(0.0, lo - 0.1), None)
    ax.legend(fontsize=8)
    return ax


def beta_redraw(
    grads: torch.Tensor, bit_list: Sequence[int], beta: float, norm: str = "own",
    fig: plt.Figure | None = None,
) -> plt.Figure:
    """What the dominance rule does to one batch's gradients at a given ``beta`` (3 panels).

    Left: the alphas. Middle: each short code's margin
    ``<g_i, g_i + sum_j alpha_ij g_j> / ||g_i||^2`` before and after the rule, against the
    guaranteed floor ``1 - beta``. Right: the weights (uniform = 1). For an ipywidgets slider.
    """
    bits = tuple(bit_list)
    K = len(bits)
    g = torch.as_tensor(grads).double()
    alphas = dominance_alphas(g, bits, beta=beta, norm=norm)
    w = weights_from_alphas(alphas).numpy()
    before = dominance_margins(g, bits).numpy()
    after = dominance_margins(g, bits, alphas).numpy()
    if fig is None:
        fig = plt.figure(figsize=(12, 3.6), constrained_layout=True)
    else:
        fig.clear()
    a1, a2, a3 = fig.subplots(1, 3)
    a = np.where(np.triu(np.ones((K, K), bool), 1), alphas.numpy(), np.nan)
    im = a1.imshow(a, cmap="viridis", vmin=0, vmax=1)
    a1.set_xticks(range(K), [str(b) for b in bits])
    a1.set_yticks(range(K), [str(b) for b in bits])
    a1.set_xlabel("longer code j (bits)")
    a1.set_ylabel("shorter code i (bits)")
    a1.set_title(rf"$\alpha_{{ij}}$ at $\beta$ = {beta:.2f}")
    a1.grid(False)
    for i in range(K):
        for j in range(i + 1, K):
            a1.text(j, i, f"{a[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="w" if a[i, j] < 0.5 else "k")
    fig.colorbar(im, ax=a1, shrink=0.8, ticks=[0, 0.25, 0.5, 0.75, 1])
    x = np.arange(K - 1)
    a2.bar(x - 0.2, before[:-1], 0.4, label="unadjusted", color="0.6")
    a2.bar(x + 0.2, after[:-1], 0.4, label="after the rule", color="C2")
    a2.axhline(1 - beta, color="C3", ls="--", label=r"floor $1-\beta$")
    a2.axhline(0, color="k", lw=0.8)
    a2.set_xticks(x, [str(b) for b in bits[:-1]])
    a2.set_xlabel("shorter code i (bits)")
    a2.set_ylabel(r"$\langle g_i, g_i + \Sigma_j\, \alpha_{ij} g_j\rangle / \|g_i\|^2$")
    a2.set_title("Share of each short code's descent kept")
    lo = min(before.min(), after.min(), 1 - beta, 0.0)
    hi = max(before.max(), after.max(), 1.0)
    a2.set_ylim(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo))
    a2.legend(fontsize=7)
    xb = np.arange(K)
    colour = length_colours(bits)
    a3.bar(xb, w, color=[colour[b] for b in bits])  # one colour per length
    a3.axhline(1.0, color="k", ls="--", lw=0.8, label="uniform")
    a3.set_xticks(xb, [str(b) for b in bits])
    a3.set_xlabel("code length (bits)")
    a3.set_ylabel("weight $w_k$ (sum = K)")
    a3.set_ylim(0, max(2.0, float(w.max()) * 1.1))
    a3.set_title("Weights for this batch")
    a3.legend(fontsize=7)
    return fig

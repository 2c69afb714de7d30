"""Figures of the ablation notebook (nhl.plots.ablation): titled, labelled, truncation flagged."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from nhl.plots import ablation  # noqa: E402
from nhl.studies import report  # noqa: E402

BITS = (8, 16, 32)


def _ablation_table():
    rows = []
    for d in ("d1", "d2"):
        for m in ("a", "b"):
            for s in range(3):
                for b in BITS:
                    for v, e in {"plain": 0, "weighting": 0.01, "distill": -0.02, "nhl": 0.0}.items():
                        rows.append(dict(dataset=d, method=m, variant=v, seed=s, bits=b,
                                         mAP=0.5 + e + 0.003 * ((s + b) % 3)))
    return pd.DataFrame(rows)


def test_effects_plot_one_panel_per_dataset_with_cis():
    axes = ablation.effects_plot(_ablation_table())
    assert len(axes) == 2
    for ax, d in zip(axes, ("d1", "d2")):
        assert d in ax.get_title() and "95 % CI over 3 seeds" in ax.get_title()
        assert ax.get_xlabel() == "base method"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    assert "difference" in axes[0].get_ylabel() and "variant - plain" in axes[0].get_ylabel()
    labels = [t.get_text() for t in axes[-1].get_legend().get_texts()]
    assert labels == ["weighting - plain", "distill - plain", "nhl - plain"]
    legend = axes[-1].get_legend()
    assert legend.get_bbox_to_anchor().x0 > axes[-1].get_window_extent().x1 - 1  # beside, not over the data
    with pytest.raises(ValueError, match="columns"):
        ablation.effects_plot(_ablation_table().drop(columns="seed"))
    with pytest.raises(ValueError, match="variants"):
        ablation.effects_plot(_ablation_table(), variants=("nope",))


def _terms():
    rows = []
    for m, ratio in (("dhn", 1.2), ("csq", 0.05)):
        for it in (0, 10, 20):
            for b in (8, 16):
                rows.append(dict(method=m, epoch=0, step=it, iteration=it, bits=b, base=1.0,
                                 distill=ratio, ratio=ratio, cosine=0.05))
    return pd.DataFrame(rows)


def test_term_plot_one_ratio_panel_per_method_on_a_shared_axis_and_the_cosines():
    from matplotlib.colors import to_hex

    ax_dhn, ax_csq, ax_c = ablation.term_plot(_terms())
    for ax, m in ((ax_dhn, "dhn"), (ax_csq, "csq")):
        assert ax.get_title().startswith(m) and ax.get_xlabel() == "training step"
        assert ax.get_ylim() == ax_dhn.get_ylim()  # one y scale: the methods compare
        assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= 1.2 and ax.get_yscale() == "linear"
    assert len(ax_dhn.lines) == 2 + 1  # one line per length + the line at 1
    assert [line.get_label() for line in ax_dhn.lines[:2]] == ["8 bits", "16 bits"]
    # the package's colour per length, whichever lengths a figure shows
    colours = ablation.length_colours((8, 16, 32, 64, 128))
    assert [to_hex(line.get_color()) for line in ax_dhn.lines[:2]] == [to_hex(colours[8]), to_hex(colours[16])]
    assert ablation.length_colours((16, 64)) == {16: colours[16], 64: colours[64]}
    # csq's ratios (0.05) sit near 0 on the shared axis: an inset zooms in
    assert [c for c in ax_csq.child_axes] and not ax_dhn.child_axes
    assert ax_c.get_ylim() == (-1, 1) and ax_c.get_title()
    assert [t.get_text() for t in ax_c.get_xticklabels()] == ["8", "16"]
    texts = [t.get_text() for legend in ax_c.artists + [ax_c.get_legend()] if hasattr(legend, "get_texts")
             for t in legend.get_texts()]
    assert "8 bits" in texts and any(t.startswith("dhn") for t in texts) and any(t.startswith("csq") for t in texts)
    with pytest.raises(ValueError, match="empty"):
        ablation.term_plot(_terms().iloc[:0])


def test_lambda_plot_panels_per_method_and_flags_truncated_axes():
    rows = []
    for s in range(3):
        for lam in (0.0, 0.01, 1.0):
            for b in BITS:
                for m in ("dhn", "csq"):
                    rows.append(dict(method=m, variant="custom", seed=s, bits=b, lambda_D=lam,
                                     mAP=0.3 + 0.01 * s - (0.05 * lam if m == "dhn" else 0)))
    stats = report.lambda_stats(pd.DataFrame(rows))
    axes = ablation.lambda_plot(stats, dataset="fm100")
    assert len(axes) == 2
    assert [a.get_title().split(" on ")[0] for a in axes] == ["csq", "dhn"]  # lambda_stats' order
    ax = axes[1]
    assert "dhn on fm100" in ax.get_title() and "95 % CI over 3 seeds" in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "0.01", "1"]
    assert ("not 0" in ax.get_ylabel()) == (ax.get_ylim()[0] > 0)
    assert ax.get_ylim()[0] > 0  # mAP between 0.25 and 0.33: the axis is truncated and says so
    sd = ablation.lambda_plot(stats, error="sd")
    assert "sd over" in sd[0].get_title()
    with pytest.raises(ValueError, match="columns"):
        ablation.lambda_plot(stats.drop(columns="mean"))
    assert np.isfinite(stats["ci95"]).all()


def test_effects_plot_keeps_zero_in_view_and_shares_the_y_scale():
    t = _ablation_table()
    t.loc[t["variant"] != "plain", "mAP"] += 0.05  # every difference far above 0
    t.loc[(t["dataset"] == "d2") & (t["variant"] == "nhl"), "mAP"] += 0.2  # one panel with a larger range
    axes = ablation.effects_plot(t)
    for ax in axes:
        lo, hi = ax.get_ylim()
        assert lo < 0 < hi
    assert axes[0].get_ylim() == axes[1].get_ylim() and axes[0].get_ylim()[1] > 0.25
    own = ablation.effects_plot(t, sharey=False)
    assert own[0].get_ylim()[1] < 0.25 < own[1].get_ylim()[1]

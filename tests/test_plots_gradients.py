import matplotlib

matplotlib.use("Agg")

from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from nhl.plots import gradients as G  # noqa: E402

BITS = (2, 4, 8)


def _frame():
    return pd.DataFrame(
        {
            "epoch": [0, 0, 1],
            "iteration": [0, 5, 10],
            "cos_2_4": [0.5, -0.2, 0.1],
            "cos_2_8": [0.1, 0.2, 0.3],
            "cos_4_8": [0.9, 0.8, 0.7],
        }
    )


def test_cosine_heatmaps_draws_one_image_per_matrix():
    mats = np.stack([np.eye(3), -np.ones((3, 3))])
    fig = G.cosine_heatmaps(mats, BITS, titles=["epoch 0", "epoch 5"])
    axes = [a for a in fig.axes if a.get_images()]
    assert len(axes) == 2
    assert axes[1].get_title() == "epoch 5" and axes[0].get_xlabel() == "bits"
    assert np.array_equal(axes[1].get_images()[0].get_array(), -np.ones((3, 3)))
    assert len(axes[0].texts) == 6  # off-diagonal values written in
    with pytest.raises(ValueError, match="bit_list"):
        G.cosine_heatmaps(np.eye(2)[None], BITS)


def test_cosine_lines_plots_the_reference_pairs():
    ax = G.cosine_lines(_frame())
    labels = [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert labels == ["2 vs 4 bits", "2 vs 8 bits"]
    assert np.allclose(ax.get_lines()[0].get_ydata(), [0.5, -0.2, 0.1])
    assert ax.get_xlabel() == "training step"
    ax = G.cosine_lines(_frame(), ref=8, smooth=3)
    assert np.allclose(ax.get_lines()[1].get_ydata(), [0.85, 0.8, 0.75])  # 4 vs 8, rolling mean


def test_conflict_picture_applies_the_rule():
    gi, gj = torch.tensor([1.0, 0.0]), torch.tensor([-3.0, 1.0])  # c = -3, tau = 0.5
    ax = G.conflict_picture(gi, gj, tau=0.5, names=("g_8", "g_16"))
    assert "alpha = 0.17" in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "g_8 + g_16" in labels and "g_8 + 0.17 g_16" in labels
    line = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"][0]
    assert np.allclose(line.get_xdata(), -0.5)  # -tau / ||g_i||
    ax = G.conflict_picture(gi, torch.tensor([0.2, 1.0]), tau=0.5)
    assert "alpha = 1.00" in ax.get_title()


def test_weights_over_training_lines_only_no_second_axis():
    hist = pd.DataFrame(
        {
            "epoch": [0, 0, 1, 1],
            "bits": [8, 16, 8, 16],
            "weight": [1.2, 0.8, 1.1, 0.9],
            "anti_domination": [0.5, 0.5, 0.25, 0.25],
        }
    )
    ax = G.weights_over_training(hist)
    assert np.allclose(ax.get_lines()[1].get_ydata(), [0.8, 0.9])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["8 bits", "16 bits", "uniform (plain)"]
    assert len(ax.figure.axes) == 1 and ax.get_ylim()[0] == 0  # no twin axis, not truncated
    with pytest.raises(ValueError, match="RunResult.history"):
        G.weights_over_training(pd.DataFrame({"epoch": [0]}))


def _recording(weighting, fired):
    frame = pd.DataFrame({"epoch": [0, 0, 1], "iteration": [0, 5, 10],
                          "weight_8": [1.5, 1.0, 1.2] if weighting == "dominance" else [1.0] * 3,
                          "weight_16": [0.5, 1.0, 0.8] if weighting == "dominance" else [1.0] * 3,
                          "anti_domination": fired})
    history = pd.DataFrame({"epoch": [0, 0, 1, 1], "bits": [8, 16, 8, 16],
                            "anti_domination": [0.75, 0.75, 0.25, 0.25]})
    return SimpleNamespace(frame=frame, config=SimpleNamespace(bit_list=(8, 16), weighting=weighting),
                           run=SimpleNamespace(history=history))


def test_weights_and_firing_separate_panels_full_axes():
    fig = G.weights_and_firing({"pairwise": _recording("dominance", [True, False, True]),
                                "plain run": _recording("uniform", [True, False, False])})
    a, b, rate = fig.axes
    assert a.get_ylim() == b.get_ylim() and a.get_ylim()[0] == 0
    assert np.allclose(a.get_lines()[1].get_ydata(), [0.5, 1.0, 0.8])
    assert "uniform run" in b.get_title()
    lines = rate.get_lines()
    assert np.allclose(lines[0].get_ydata(), [0.75, 0.25])  # from the history: all steps
    assert np.allclose(lines[1].get_ydata(), [0.5, 0.0])  # would fire, recorded steps
    assert rate.get_ylim()[0] < 0 < 1 < rate.get_ylim()[1] and "would fire" in lines[1].get_label()
    assert list(lines[0].get_xdata()) == [1, 2] and "counted from 1" in rate.get_xlabel()  # epochs from 1
    with pytest.raises(ValueError, match="empty"):
        G.weights_and_firing({})


def test_weights_and_firing_can_leave_a_run_out_of_the_weight_panels():
    recs = {"pairwise": _recording("dominance", [True, False, True]),
            "never fires": _recording("dominance", [False, False, False])}
    fig = G.weights_and_firing(recs, weights_for=["pairwise"])
    weights, rate = fig.axes
    assert weights.get_title().startswith("pairwise") and len(rate.get_lines()) == 2
    with pytest.raises(ValueError, match="not in recordings"):
        G.weights_and_firing(recs, weights_for=["other"])


def test_cosine_lines_colour_each_line_by_its_other_length():
    ax = G.cosine_lines(_frame())
    colours = G.length_colours(BITS)
    assert [line.get_color() for line in ax.get_lines()[:2]] == [colours[4], colours[8]]


def test_length_colours_keep_the_default_lengths_colours():
    from nhl.plots.codes import block_colors

    full = dict(zip(G.DEFAULT_BITS, block_colors(G.DEFAULT_BITS)))
    assert G.length_colours((16, 128)) == {16: full[16], 128: full[128]}
    assert G.length_colours((1, 2, 3)) == dict(zip((1, 2, 3), block_colors((1, 2, 3))))


def test_recorded_conflicts_one_panel_per_pick():
    frame = pd.DataFrame({"epoch": [0], "step": [3], "iteration": [3], "norm_2": [1.0], "norm_4": [2.0],
                          "cos_2_4": [-0.6], "c_2_4": [-1.2], "ovnorm_2_4": [2.0], "alpha_2_4": [0.5 / 1.2]})
    fig = G.recorded_conflicts(frame, {"typical": (0, 2, 4)})
    ax = fig.axes[0]
    assert ax.get_title().startswith("typical: 2 vs 4 bits, epoch 1, step 3")  # epochs counted from 1
    assert "alpha = 0.42" in ax.get_title()  # the recorded alpha is the one drawn
    from matplotlib.colors import to_hex

    arrows = {q.get_label(): to_hex(q.get_facecolor()[0]) for q in ax.collections if q.get_label().startswith("g_")}
    colours = G.length_colours((2, 4))
    assert arrows["g_2"] == to_hex(colours[2]) and arrows["g_4"] == to_hex(colours[4])  # colours by length
    with pytest.raises(ValueError, match="never fired"):
        G.recorded_conflicts(frame, {})


def _effect():
    rows = []
    for d in ("a", "b"):
        for m in ("csq", "dhn"):
            for bits in (8, 16, "mean"):
                diff = 0.0 if m == "csq" else -0.02
                rows.append({"dataset": d, "method": m, "bits": bits, "diff": diff, "sd": 0.01, "n": 3,
                             "ci95": 0.01, "sign": "0" if m == "csq" else "-",
                             "firing": 0.0 if m == "csq" else 0.6})
    return pd.DataFrame(rows)


def test_paired_effect_panels_symmetric_axes_and_empty_state():
    fig = G.paired_effect(_effect())
    *panels, fire = fig.axes
    assert len(panels) == 2 and panels[0].get_title().startswith("a:")
    lo, hi = panels[0].get_ylim()
    assert lo == pytest.approx(-hi) and hi > 0.03
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["8", "16", "mean"]
    heights = [p.get_height() for p in fire.patches]
    assert sorted(heights) == [0.0, 0.0, 0.6, 0.6]
    assert [t.get_text() for t in fire.texts][:2] == ["0%", "0%"]  # zero rates are labelled
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["csq", "dhn"]  # one legend
    assert not any(p.get_legend() for p in panels)
    rare = G.paired_effect(_effect().assign(firing=lambda e: np.where(e["method"] == "csq", 0.002, 0.6)))
    assert "0.2%" in [t.get_text() for t in rare.axes[-1].texts]  # never "0%" for a rule that fired
    assert G._rate(0.0004) == "0.04%" and G._rate(0.137) == "13.7%" and G._rate(0.0) == "0%"
    assert G._wrap("fashion-mnist-multilabel") == "fashion-mnist-\nmultilabel"
    assert G._wrap("fashion-mnist") == "fashion-\nmnist" and G._wrap("a") == "a"
    empty = G.paired_effect(pd.DataFrame(columns=_effect().columns))
    assert "not yet computed" in empty.axes[0].texts[0].get_text()


def test_map_bars_groups_variants():
    ax = G.map_bars({"plain": {8: 0.5, 16: 0.6}, "weighting": {8: 0.55, 16: 0.62}})
    assert len(ax.patches) == 4
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8", "16"]
    assert ax.get_ylabel() == "mAP@ALL"


def test_beta_redraw_three_panels_and_redraw_into_same_figure():
    g = torch.zeros(3, 8, 1, dtype=torch.float64)
    g[0, :2, 0] = torch.tensor([1.0, 0.0])
    g[1, :4, 0] = torch.tensor([-3.0, 0.0, 0.0, 0.0])
    g[2, :, 0] = 0.1
    fig = G.beta_redraw(g, BITS, beta=1.0)
    axes = [a for a in fig.axes if a.get_title()]
    assert len(axes) == 3
    weights = [p.get_height() for p in axes[2].patches]
    assert weights[1] < 1 < weights[0]
    margins_after = [p.get_height() for p in axes[1].patches][2:]
    assert margins_after[0] == pytest.approx(1 - 0.5 + 0.1 / 6)  # alpha_12 = 1/6, alpha_13 capped to 1/6
    fig2 = G.beta_redraw(g, BITS, beta=0.2, fig=fig)
    assert fig2 is fig and "0.20" in [a for a in fig.axes if a.get_title()][0].get_title()

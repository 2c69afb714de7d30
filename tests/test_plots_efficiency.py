"""Efficiency plots: labelled axes and the data they were given."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from nhl.plots import efficiency  # noqa: E402


def test_gain_heatmap_is_centred_at_zero_and_annotated():
    t = pd.DataFrame([[0.02, -0.01], [np.nan, 0.04]], index=["csq", "dsh"], columns=[8, 16])
    t.index.name, t.columns.name = "method", "bits"
    ax = efficiency.gain_heatmap(t)
    image = ax.images[0]
    assert image.norm.vcenter == 0 and image.norm.vmin == -0.04 and image.norm.vmax == 0.04
    assert [x.get_text() for x in ax.texts] == ["+0.020", "-0.010", "+0.040"]  # NaN not annotated
    assert [x.get_text() for x in ax.get_xticklabels()] == ["8", "16"]
    assert [x.get_text() for x in ax.get_yticklabels()] == ["csq", "dsh"]
    assert ax.get_xlabel() == "code length (bits)" and ax.get_ylabel() == "base method"
    assert "cmap" not in ax.get_title() and ax.get_title()


def test_progress_plot_marks_where_the_target_is_reached():
    curves = {
        "nested": pd.DataFrame({"seconds": [1.0, 2.0, 3.0], "val_map": [0.2, 0.6, 0.7]}),
        "baseline": pd.DataFrame({"seconds": [2.0, 4.0], "val_map": [0.1, 0.3]}),
    }
    ax = efficiency.progress_plot(curves, target=0.5)
    lines = ax.get_lines()
    # two curves, one star (only "nested" reaches 0.5), one target line
    assert len(lines) == 4
    star = [ln for ln in lines if ln.get_marker() == "*"]
    assert len(star) == 1 and star[0].get_xdata()[0] == 2.0
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["nested", "baseline", "target 0.500"]
    assert ax.get_xlabel() and ax.get_ylabel().startswith("validation mAP\n(axis starts at")


def test_step_cost_bars_heights_and_labels():
    t = pd.DataFrame({"variant": ["single", "nhl"], "step ms": [2.0, 3.0], "min ms": [1.5, 2.5], "max ms": [2.5, 4.0]})
    ax = efficiency.step_cost_bars(t)
    assert [p.get_height() for p in ax.patches] == [2.0, 3.0]
    assert [x.get_text() for x in ax.get_xticklabels()] == ["single", "nhl"]
    assert [x.get_text() for x in ax.texts] == ["2.0", "3.0"]
    assert "milliseconds" in ax.get_ylabel()


def test_progress_plot_by_epoch_counts_epochs_trained():
    curves = {"nested": pd.DataFrame({"epoch": [0, 1, 2], "seconds": [5.0, 9.0, 14.0], "val_map": [0.2, 0.6, 0.7]})}
    ax = efficiency.progress_plot(curves, target=0.5, x="epoch")
    line = ax.get_lines()[0]
    assert list(line.get_xdata()) == [1, 2, 3]  # 1-based: epochs trained
    star = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
    assert star[0].get_xdata()[0] == 2
    assert ax.get_xlabel() == "epochs trained"
    with pytest.raises(ValueError, match="x must be"):
        efficiency.progress_plot(curves, x="steps")


def _parts_table():
    return pd.DataFrame({
        "variant": ["single-8", "single-16", "plain", "nhl"],
        "step ms": [10.0, 12.0, 14.0, 16.0],
        "head ms": [1.0, 2.0, 4.0, 6.0],
        "rest ms": [9.0, 10.0, 10.0, 10.0],
    })


def test_step_breakdown_stacks_the_single_models_and_splits_each_bar():
    ax = efficiency.step_breakdown(_parts_table(), ["single-8", "single-16"], ["plain", "nhl"])
    widths = [p.get_width() for p in ax.patches]
    lefts = [p.get_x() for p in ax.patches]
    # first bar: rest, head of single-8, then rest, head of single-16, stacked end to end
    assert widths[:4] == [9.0, 1.0, 10.0, 2.0] and lefts[:4] == [0.0, 9.0, 10.0, 20.0]
    assert widths[4:] == [10.0, 4.0, 10.0, 6.0]  # plain, then nhl: rest + head
    texts = [t.get_text() for t in ax.texts]
    assert texts[0] == "22.0 ms"
    assert texts[1] == "14.0 ms: speed-up 1.57x" and texts[2] == "16.0 ms: speed-up 1.38x"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["2 single-length models", "nested: plain", "nested: nhl"]
    assert "milliseconds" in ax.get_xlabel()
    with pytest.raises(ValueError, match="parts=True"):
        efficiency.step_breakdown(_parts_table().drop(columns="head ms"), ["single-8"], ["nhl"])
    with pytest.raises(ValueError, match="single-32"):
        efficiency.step_breakdown(_parts_table(), ["single-32"], ["nhl"])


def test_step_breakdown_writes_the_speedups_it_is_given():
    # the text quotes the median of per-repeat ratios, so the figure must show those
    ax = efficiency.step_breakdown(_parts_table(), ["single-8", "single-16"], ["plain", "nhl"],
                                   speedups=pd.Series({"plain": 1.61, "nhl": 1.4}))
    texts = [t.get_text() for t in ax.texts]
    assert texts[1] == "14.0 ms: speed-up 1.61x" and texts[2] == "16.0 ms: speed-up 1.40x"


def test_progress_plot_stars_at_the_same_point_stay_visible():
    same = pd.DataFrame({"epoch": [0, 1], "seconds": [1.0, 2.0], "val_map": [0.4, 0.6]})
    ax = efficiency.progress_plot({"nested": same, "single": same.copy()}, target=0.5, x="epoch")
    stars = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
    assert len(stars) == 2 and [s.get_xdata()[0] for s in stars] == [2, 2]
    assert all(s.get_markerfacecolor() == "none" for s in stars)  # hollow: the inner one shows
    assert stars[0].get_markersize() > stars[1].get_markersize()

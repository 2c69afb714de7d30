"""Efficiency plots: labelled axes and the data they were given."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from nhl.plots import efficiency  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


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
    assert ax.get_xlabel() and ax.get_ylabel() == "validation mAP"


def test_step_cost_bars_heights_and_labels():
    t = pd.DataFrame({"variant": ["single", "nhl"], "step ms": [2.0, 3.0], "min ms": [1.5, 2.5], "max ms": [2.5, 4.0]})
    ax = efficiency.step_cost_bars(t)
    assert [p.get_height() for p in ax.patches] == [2.0, 3.0]
    assert [x.get_text() for x in ax.get_xticklabels()] == ["single", "nhl"]
    assert [x.get_text() for x in ax.texts] == ["2.0", "3.0"]
    assert "milliseconds" in ax.get_ylabel()

"""Search plots: the Pareto front on hand-made points, and what each figure draws."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from nhl.plots.search import (  # noqa: E402
    pareto_front,
    plot_distance_histogram,
    plot_length_choice,
    plot_pr_curve,
    plot_recall_latency,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_pareto_front_by_hand():
    # (bytes, mAP): 2 bytes/0.50 and 4 bytes/0.70 and 16 bytes/0.75 are optimal;
    # 8 bytes/0.65 is beaten by 4 bytes/0.70; 32 bytes/0.75 ties 16 bytes in mAP but costs more.
    pts = [(16, 0.75), (2, 0.50), (8, 0.65), (4, 0.70), (32, 0.75)]
    assert pareto_front(pts).tolist() == [1, 3, 0]


def test_pareto_front_directions_and_ties():
    pts = [(1.0, 1.0), (1.0, 1.0), (2.0, 0.5)]
    assert pareto_front(pts).tolist() == [0, 1]  # equal points both stay
    # maximise both: (2, 0.5) is not dominated by (1, 1) any more
    assert pareto_front(pts, minimize=(False, False)).tolist() == [0, 1, 2]


def test_pareto_front_rejects_bad_input():
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        pareto_front([1, 2, 3])
    with pytest.raises(ValueError, match="finite"):
        pareto_front([(1, np.nan)])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=15))
def test_pareto_front_property(points):
    pts = np.asarray(points, float)
    front = set(pareto_front(pts).tolist())
    assert front  # never empty
    for i in range(len(pts)):
        dominated = any(
            pts[j, 0] <= pts[i, 0] and pts[j, 1] >= pts[i, 1] and tuple(pts[j]) != tuple(pts[i])
            for j in range(len(pts))
        )
        assert (i in front) == (not dominated)


def test_recall_latency_plot():
    df = pd.DataFrame({
        "method": ["exhaustive", "funnel", "funnel", "funnel"],
        "latency_ms": [4.0, 0.5, 1.0, 2.0],
        "recall": [1.0, 0.7, 0.9, 0.99],
        "label": ["", "100", "300", "1000"],
    })
    ax = plot_recall_latency(df)
    assert ax.get_xlabel().startswith("latency per query (ms")
    assert ax.get_ylabel() == "recall"
    assert ax.get_xscale() == "log"
    lines = ax.get_lines()
    assert len(lines) == 2
    assert lines[1].get_xdata().tolist() == [0.5, 1.0, 2.0]
    assert [t.get_text() for t in ax.texts] == ["100", "300", "1000"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["exhaustive", "funnel"]
    with pytest.raises(ValueError, match="recall"):
        plot_recall_latency(df.drop(columns="recall"))
    shuffled = df.iloc[[0, 3, 1, 2]]
    ax = plot_recall_latency(shuffled)  # joined in row order ...
    assert ax.get_lines()[1].get_xdata().tolist() == [2.0, 0.5, 1.0]
    ax = plot_recall_latency(shuffled, sort=True)  # ... or by latency
    assert ax.get_lines()[1].get_xdata().tolist() == [0.5, 1.0, 2.0]


def test_length_choice_marks_the_front():
    table = pd.DataFrame({
        "bits": [8, 16, 32, 64, 128],
        "mAP": [0.50, 0.70, 0.65, 0.80, 0.80],
        "bytes": [1, 2, 4, 8, 16],
        "latency_ms": [1.0, 1.1, 1.3, 1.6, 2.4],
    })
    fig = plot_length_choice(table)
    ax_size, ax_lat = fig.axes
    assert ax_size.get_xlabel().startswith("bytes per image")
    assert ax_lat.get_xlabel() == "latency per query (ms)"
    for ax in (ax_size, ax_lat):
        assert ax.get_ylabel() == "mAP"
        all_pts, front = ax.get_lines()
        assert all_pts.get_xdata().size == 5
        assert front.get_ydata().tolist() == [0.50, 0.70, 0.80]  # 32 and 128 bits are dominated
        assert len(ax.texts) == 5 and ax.texts[0].get_text() == "8 bits"
    fig2 = plot_length_choice(table.drop(columns="latency_ms"), latency=None)
    assert len(fig2.axes) == 1


def test_distance_histogram_and_pr_curve():
    d = np.array([0, 0, 1, 3, 4, 4])
    rel = np.array([1, 1, 0, 1, 0, 0], bool)
    ax = plot_distance_histogram(d, rel, bits=4)
    assert ax.get_xlabel() == "Hamming distance (4 bits)"
    heights = [p.get_height() for p in ax.patches]
    assert heights == [2, 0, 0, 1, 0] + [0, 1, 0, 0, 2]  # relevant bars, then irrelevant
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["relevant (3)", "irrelevant (3)"]
    with pytest.raises(ValueError, match="same length"):
        plot_distance_histogram(d, rel[:3], bits=4)

    ax = plot_pr_curve([1.0, 0.8, 0.5], [0.1, 0.5, 1.0], label="32 bits")
    (line,) = ax.get_lines()
    assert line.get_xdata().tolist() == [0.1, 0.5, 1.0]
    assert ax.get_xlabel() == "recall" and ax.get_ylabel() == "precision"

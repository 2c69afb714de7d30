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
    place_labels,
    plot_distance_histogram,
    plot_latency,
    plot_length_choice,
    plot_pr_curve,
    plot_recall_latency,
)
from nhl.studies.search import pareto_front  # noqa: E402


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
    assert ax.get_ylabel().startswith("recall (axis starts at")  # 0.7 and up: flagged
    assert ax.get_xscale() == "log"
    ax.figure.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert "1" in labels and "2" in labels and "0.5" in labels  # 1-2-5 ticks, plain numbers
    assert not [t for t in ax.xaxis.get_minorticklabels() if t.get_text()]  # no crowded minor labels
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
    assert [t.get_text() for t in ax_size.get_xticklabels()] == ["1", "2", "4", "8", "16"]
    for ax in (ax_size, ax_lat):
        assert ax.get_ylabel().startswith("mAP (axis starts at")  # truncated axis flagged
        all_pts, front = ax.get_lines()
        assert all_pts.get_xdata().size == 5
        assert front.get_ydata().tolist() == [0.50, 0.70, 0.80]  # 32 and 128 bits are dominated
        assert sorted(t.get_text() for t in ax.texts) == sorted(f"{b} bits" for b in table.bits)
    fig2 = plot_length_choice(table.drop(columns="latency_ms"), latency=None)
    assert len(fig2.axes) == 1


def test_length_choice_error_bars_and_rings():
    table = pd.DataFrame({
        "bits": [8, 16, 32], "mAP": [0.5, 0.6, 0.61], "bytes": [1, 2, 4],
        "latency_ms": [1.0, 0.8, 0.9], "lo": [0.45, 0.55, 0.56], "hi": [0.55, 0.65, 0.66],
        "t lo": [0.9, 0.7, 0.8], "t hi": [1.2, 0.9, 1.0], "clear": [False, True, False],
    })
    fig = plot_length_choice(table, quality_ci=("lo", "hi"), latency_range=("t lo", "t hi"),
                             clear="clear")
    ax_size, ax_lat = fig.axes
    (bars,) = ax_size.containers  # one errorbar container
    segs = bars.lines[2][0].get_segments()
    assert [tuple(np.round(s[:, 1], 3)) for s in segs] == [(0.45, 0.55), (0.55, 0.65), (0.56, 0.66)]
    lat_segs = ax_lat.containers[0].lines[2]
    assert len(lat_segs) == 2  # horizontal (latency) and vertical (mAP) bars
    ring = [line for line in ax_size.get_lines() if line.get_label().startswith("gain over")]
    assert len(ring) == 1 and ring[0].get_xdata().tolist() == [4.0]  # only 32 bits (8 has no gain)
    with pytest.raises(ValueError, match="lacks column"):
        plot_length_choice(table, quality_ci=("lo", "nope"))


def test_place_labels_do_not_overlap():
    fig, ax = plt.subplots(figsize=(4, 3))
    xs = [1.0, 1.01, 1.02, 1.0, 1.01, 2.0]
    ys = [0.5, 0.5, 0.51, 0.52, 0.49, 0.9]
    ax.plot(xs, ys, "o")
    anns = place_labels(ax, xs, ys, ["first", "second", "third", "fourth", "", "sixth"])
    assert [a.get_text() for a in anns] == ["first", "second", "third", "fourth", "sixth"]
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    boxes = [a.get_window_extent(r) for a in anns]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j]), (anns[i].get_text(), anns[j].get_text())


def test_place_labels_avoid_the_legend():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1], "o", label="a rather long legend entry")
    ax.set_xlim(-0.1, 1.1)
    ax.set_ylim(-0.1, 1.1)
    legend = ax.legend(loc="lower right")
    (ann,) = place_labels(ax, [0.9], [0.1], ["label next to the legend"])
    r = fig.canvas.get_renderer()
    assert not ann.get_window_extent(r).overlaps(legend.get_window_extent(r))


def test_recall_latency_labels_do_not_overlap_and_error_bars():
    df = pd.DataFrame({
        "method": ["a"] * 4 + ["b"] * 4,
        "ms": [1.0, 1.02, 1.04, 1.06, 1.0, 1.02, 1.04, 1.06],
        "lo": [0.9] * 8, "hi": [1.2] * 8,
        "recall": [0.5, 0.51, 0.52, 0.53, 0.5, 0.51, 0.52, 0.53],
        "label": [str(i) for i in range(8)],
    })
    ax = plot_recall_latency(df, x="ms", xerr=("lo", "hi"))
    assert len(ax.texts) == 8
    r = ax.figure.canvas.get_renderer()
    boxes = [t.get_window_extent(r) for t in ax.texts]
    overlaps = sum(boxes[i].overlaps(boxes[j]) for i in range(8) for j in range(i + 1, 8))
    assert overlaps == 0
    assert len(ax.containers) == 2  # one horizontal error bar set per method
    with pytest.raises(ValueError, match="lo"):
        plot_recall_latency(df.drop(columns="lo"), x="ms", xerr=("lo", "hi"))


def test_latency_plot():
    table = pd.DataFrame({"bits": [8, 16, 128, 8, 16, 128], "backend": ["f"] * 3 + ["n"] * 3,
                          "median": [1.0, 2.0, 3.0, 1.5, 1.5, 1.5], "low": [0.5] * 6,
                          "high": [4.0] * 6})
    ax = plot_latency(table)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8", "16", "128"]  # even categories
    assert ax.get_xscale() == "linear" and ax.get_ylim()[0] == 0
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["f", "n"]
    with pytest.raises(ValueError, match="backend"):
        plot_latency(table.drop(columns="backend"))


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


def test_distance_histogram_normalized_and_long_codes():
    d = np.array([0, 0, 1, 3, 4, 4, 4, 4])
    rel = np.array([1, 1, 0, 1, 0, 0, 0, 0], bool)
    ax = plot_distance_histogram(d, rel, bits=4, normalize=True)
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights[:5], [2 / 3, 0, 0, 1 / 3, 0])
    np.testing.assert_allclose(heights[5:], [0, 1 / 5, 0, 0, 4 / 5])
    assert ax.get_ylabel() == "share of the group's items"
    plt.close("all")
    d64 = np.array([0, 10, 10, 64])
    ax = plot_distance_histogram(d64, np.array([1, 1, 0, 0], bool), bits=64)
    rel_line, irr_line = ax.get_lines()[:2]  # steps, not 65 pairs of bars
    assert rel_line.get_ydata()[10] == 1 and irr_line.get_ydata()[64] == 1
    assert ax.get_yscale() == "linear"


def test_recall_latency_unjoined_methods_are_points_only():
    df = pd.DataFrame({
        "method": ["exhaustive", "exhaustive", "exhaustive", "funnel", "funnel"],
        "latency_ms": [0.2, 0.1, 0.15, 0.01, 0.05],  # not increasing with the code length
        "recall": [0.05, 0.2, 0.4, 0.5, 0.9],
    })
    ax = plot_recall_latency(df, unjoined=["exhaustive"])
    exhaustive, funnel = ax.get_lines()
    assert exhaustive.get_linestyle() == "None" and exhaustive.get_marker() == "s"
    assert exhaustive.get_markerfacecolor() == "none"  # hollow: another square below stays visible
    assert funnel.get_linestyle() == "-"
    assert exhaustive.get_xdata().tolist() == [0.2, 0.1, 0.15]  # the points all drawn
    plt.close("all")


def test_recall_latency_colours_by_method_and_legend_placement():
    df = pd.DataFrame({"method": ["a", "a", "b", "b"], "latency_ms": [0.1, 0.2, 0.1, 0.3],
                       "recall": [0.0, 0.5, 0.2, 0.9]})
    ax = plot_recall_latency(df, colors={"b": "tab:red"}, legend={"loc": "upper left"})
    a, b = ax.get_lines()
    assert b.get_color() == "tab:red" and a.get_color() == "C0"
    assert ax.get_legend()._loc == 2  # upper left
    assert ax.get_ylabel() == "recall"  # the axis starts below 0: not flagged
    plt.close("all")

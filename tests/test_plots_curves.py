"""Curve plots: every figure draws exactly the input data, with labelled axes; tie helpers on
hand-made codes."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from nhl.metrics import mean_average_precision, tie_group_sizes  # noqa: E402
from nhl.plots.curves import (  # noqa: E402
    ablation_plot,
    best_per_length,
    describe_ablation,
    flag_truncated_y,
    index_order_spread,
    map_vs_bits,
    paired_ci_plot,
    paired_differences,
    permuted_index_map,
    pr_curves,
    pr_small_multiples,
    precision_at_n_plot,
    tie_plot,
    tie_size_plot,
)


def _data_lines(ax):
    return [ln for ln in ax.lines if not ln.get_label().startswith("_")]


def test_pr_curves_one_line_per_length_with_the_given_points():
    results = {
        8: (np.array([0.9, 0.6, 0.5]), np.array([0.1, 0.5, 1.0])),
        4: ([1.0, 0.5], [0.2, 1.0]),
    }
    ax = pr_curves(results, mark_radius=1)
    lines = _data_lines(ax)
    assert [ln.get_label() for ln in lines] == ["4 bits", "8 bits"]  # sorted by length
    np.testing.assert_allclose(lines[1].get_xdata(), [0.1, 0.5, 1.0])  # recall on x
    np.testing.assert_allclose(lines[1].get_ydata(), [0.9, 0.6, 0.5])
    dots = [c.get_offsets()[0].tolist() for c in ax.collections]
    assert dots == [[1.0, 0.5], [0.5, 0.6]]  # radius 1 of each curve
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("recall", "precision")


def test_pr_curves_rejects_mismatched_arrays():
    with pytest.raises(ValueError, match=r"results\[8\]"):
        pr_curves({8: ([0.5, 0.4], [0.1])})
    with pytest.raises(TypeError, match="dict"):
        pr_curves([])


def test_precision_at_n_plot_draws_rows_against_n():
    table = pd.DataFrame([[0.9, 0.8], [0.95, 0.9]], index=[8, 16], columns=[100, 1000])
    ax = precision_at_n_plot(table)
    lines = _data_lines(ax)
    assert len(lines) == 2
    np.testing.assert_allclose(lines[0].get_xdata(), [100, 1000])
    np.testing.assert_allclose(lines[1].get_ydata(), [0.95, 0.9])
    assert ax.get_xscale() == "log"
    assert ax.get_ylabel().startswith("precision@N\n(axis starts at") and "N" in ax.get_xlabel()


def test_precision_at_n_plot_rejects_unsorted_cutoffs():
    with pytest.raises(ValueError, match="increasing"):
        precision_at_n_plot(pd.DataFrame([[0.5, 0.6]], index=[8], columns=[1000, 100]))


def test_map_vs_bits_draws_the_map_columns():
    table = pd.DataFrame(
        {"baseline mAP": [0.5, 0.6, 0.7], "nested mAP": [0.55, 0.62, 0.69], "gain": [0.05, 0.02, -0.01]},
        index=pd.Index([8, 16, 32], name="bits"),
    )
    ax = map_vs_bits(table)
    lines = _data_lines(ax)
    assert [ln.get_label() for ln in lines] == ["baseline mAP", "nested mAP"]  # "gain" skipped
    np.testing.assert_allclose(lines[0].get_xdata(), [8, 16, 32])
    np.testing.assert_allclose(lines[1].get_ydata(), [0.55, 0.62, 0.69])
    assert ax.get_xlabel() == "code length (bits)" and ax.get_ylabel().startswith("mAP\n(axis starts at")
    with pytest.raises(ValueError, match="not found"):
        map_vs_bits(table, columns=["nope"])
    full = map_vs_bits(table, ylim=(0, 1), ax=plt.figure().gca())
    assert full.get_ylim() == (0, 1) and full.get_ylabel() == "mAP"  # full range: no truncation note


def test_map_vs_bits_keeps_coinciding_columns_visible():
    table = pd.DataFrame({"mAP": [0.5, 0.6, 0.7], "mAP (index ties)": [0.5, 0.6, 0.7]}, index=[8, 16, 32])
    first, second = _data_lines(map_vs_bits(table, columns=list(table.columns)))
    assert first.get_marker() != second.get_marker() and first.get_linestyle() != second.get_linestyle()
    assert second.get_markerfacecolor() == "none" and second.get_markersize() > first.get_markersize()
    assert second.get_zorder() > first.get_zorder()  # the hollow one on top
    plt.close("all")


def test_map_vs_bits_error_bars():
    table = pd.DataFrame({"nested mAP": [0.5, 0.6]}, index=[8, 16])
    errors = pd.DataFrame({"nested mAP": [0.01, 0.02]}, index=[8, 16])
    ax = map_vs_bits(table, errors=errors)
    segments = ax.collections[0].get_segments()  # one vertical bar per length
    np.testing.assert_allclose([seg[:, 1] for seg in segments], [[0.49, 0.51], [0.58, 0.62]])
    with pytest.raises(ValueError, match="errors"):
        map_vs_bits(table, errors=errors.iloc[:1])


def _ablation_table():
    rows = []
    for variant, offset in (("plain", 0.0), ("nhl", 0.1)):
        for seed in range(3):
            for bits in (8, 16):
                rows.append({"variant": variant, "seed": seed, "bits": bits,
                             "mAP": 0.5 + offset + 0.01 * seed + bits / 100})
    return pd.DataFrame(rows)


def test_ablation_pointplot_means_and_sd_bars():
    ax = ablation_plot(_ablation_table(), order=["plain", "nhl"])
    # seaborn draws one line per variant through the means (x = category position)...
    means = [ln for ln in ax.lines if len(ln.get_xdata()) == 2]
    assert len(means) == 2
    np.testing.assert_allclose(means[0].get_ydata(), [0.59, 0.67])  # plain at 8 and 16 bits
    np.testing.assert_allclose(means[1].get_ydata(), [0.69, 0.77])  # nhl
    # ...and an error bar per point spanning mean +/- std (std of 0, 0.01, 0.02 is 0.01)
    bars = [ln for ln in ax.lines if len(ln.get_xdata()) == 8]
    assert len(bars) == 4
    y = bars[0].get_ydata()
    np.testing.assert_allclose([y[3], y[4]], [0.58, 0.60])
    assert ax.get_xlabel() == "code length (bits)" and ax.get_ylabel() == "mAP"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["plain", "nhl"]


def test_ablation_barplot_relative_to_reference_is_paired_by_seed():
    ax = ablation_plot(_ablation_table(), kind="bar", relative_to="plain", order=["plain", "nhl"])
    heights = sorted(round(p.get_height(), 6) for p in ax.patches if p.get_width() > 0)
    assert heights == [0.0, 0.0, 0.1, 0.1]
    assert "plain" in ax.get_ylabel() and "same seed" in ax.get_ylabel()
    # nhl - plain is exactly 0.1 at every seed: the paired error bars have zero length
    bars = [ln for ln in ax.lines if len(ln.get_ydata()) == 8]
    assert bars and all(np.ptp(np.asarray(ln.get_ydata())[[3, 4]]) < 1e-9 for ln in bars)
    # without seeds, the reference mean per length is subtracted
    no_seed = _ablation_table().drop(columns="seed")
    ax = ablation_plot(no_seed, kind="bar", relative_to="plain", order=["plain", "nhl"])
    assert "(mean)" in ax.get_ylabel()


def test_ablation_plot_rejects_bad_tables():
    with pytest.raises(ValueError, match="columns"):
        ablation_plot(pd.DataFrame({"variant": ["a"], "mAP": [0.5]}))
    with pytest.raises(ValueError, match="relative_to"):
        ablation_plot(_ablation_table(), relative_to="distill")
    with pytest.raises(ValueError, match="kind"):
        ablation_plot(_ablation_table(), kind="violin")


def test_tie_group_sizes_by_hand():
    db = np.array([[1, 1, 1, 1], [1, 1, 1, -1], [1, 1, -1, -1], [-1, -1, -1, -1]])
    q = np.array([[1, 1, 1, 1]])
    # 2 bits: distances 0, 0, 0, 2 -> groups {3 items at 0, 1 at 2}
    t2 = tie_group_sizes(q, db, bits=2)
    assert t2.loc[0, "nearest"] == 3 and t2.loc[0, "distinct"] == 2
    assert t2.loc[0, "nearest_distance"] == 0
    t_off = tie_group_sizes(np.array([[1, -1, 1, 1]]), db, bits=2)  # every item at distance 1
    assert (t_off.loc[0, "nearest_distance"], t_off.loc[0, "nearest"]) == (1, 4)
    assert t2.loc[0, "typical"] == pytest.approx((9 + 1) / 4)
    # 4 bits: distances 0, 1, 2, 4 -> all distinct
    t4 = tie_group_sizes(q, db, bits=4, chunk_size=1)
    assert t4.loc[0, "nearest"] == 1 and t4.loc[0, "distinct"] == 4 and t4.loc[0, "typical"] == 1.0
    with pytest.raises(ValueError, match="bits"):
        tie_group_sizes(q, db, bits=5)


def test_permuted_index_map_varies_only_with_ties_and_averages_to_tie_aware():
    rng = np.random.default_rng(1)
    db = np.where(rng.random((40, 2)) > 0.5, 1, -1)
    dbl = np.eye(2, dtype=np.uint8)[rng.integers(0, 2, 40)]
    q, ql = db[:3], dbl[:3]
    samples = permuted_index_map(q, db, ql, dbl, n_perm=300, seed=0)
    exact = mean_average_precision(q, db, ql, dbl, ties="average")
    assert samples.std() > 0  # 2-bit codes: heavy ties
    assert samples.mean() == pytest.approx(exact, abs=4 * samples.std() / np.sqrt(300))
    # distinct distances everywhere: every order gives the same number
    db1 = np.array([[1, 1, 1], [1, 1, -1], [1, -1, -1], [-1, -1, -1]])
    l1 = np.eye(2, dtype=np.uint8)[[0, 1, 0, 1]]
    s1 = permuted_index_map(db1[:1], db1, l1[:1], l1, n_perm=5)
    np.testing.assert_allclose(s1, mean_average_precision(db1[:1], db1, l1[:1], l1))


def test_tie_size_plot_and_tie_plot_draw_the_inputs():
    ax = tie_size_plot({8: [100, 200, 300], 128: [1, 1, 2]}, n_database=1000)
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "code length (bits)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8", "128"]
    assert any(list(ln.get_ydata()) == [1000, 1000] for ln in ax.lines)
    medians = sorted(float(ln.get_ydata()[0]) for ln in ax.lines if ln.get_color() == "C1")
    assert medians == [1.0, 200.0]

    ax = tie_plot({8: [0.4, 0.5, 0.6], 128: [0.7, 0.7]}, {8: 0.5, 128: 0.7})
    dots = [c.get_offsets() for c in ax.collections]
    np.testing.assert_allclose(dots[0][:, 1], [0.4, 0.5, 0.6])
    np.testing.assert_allclose(dots[1][:, 1], [0.7, 0.7])
    exact_lines = [ln for ln in ax.lines]
    np.testing.assert_allclose([ln.get_ydata()[0] for ln in exact_lines], [0.5, 0.7])
    assert ax.get_ylabel().startswith("mAP\n(axis starts at")  # truncated: said so
    with pytest.raises(ValueError, match="exact"):
        tie_plot({8: [0.5]}, {16: 0.5})


def _three_variants():
    # seeds 0..2; "a" = ref + 0.02 at 8 bits (clear), "b" = ref -/+ noise (within noise)
    rows = []
    for seed, noise in zip(range(3), (-0.01, 0.0, 0.01)):
        for bits, base in ((8, 0.5), (16, 0.6)):
            ref = base + 0.005 * seed
            rows += [
                {"variant": "ref", "seed": seed, "bits": bits, "mAP": ref},
                {"variant": "a", "seed": seed, "bits": bits, "mAP": ref + (0.02 if bits == 8 else -0.03)},
                {"variant": "b", "seed": seed, "bits": bits, "mAP": ref + noise},
            ]
    return pd.DataFrame(rows)


def test_paired_differences_by_hand():
    d = paired_differences(_three_variants(), reference="ref")
    assert list(d.index) == [("a", 8), ("a", 16), ("a", "mean"), ("b", 8), ("b", 16), ("b", "mean")]
    assert d.loc[("a", 8), "diff"] == pytest.approx(0.02)
    assert d.loc[("a", 8), "std"] == pytest.approx(0.0, abs=1e-12)
    assert d.loc[("a", 8), "verdict"] == "better"
    assert d.loc[("a", 16), "verdict"] == "worse"
    assert d.loc[("a", "mean"), "diff"] == pytest.approx(-0.005)  # (0.02 - 0.03) / 2 every seed
    assert d.loc[("b", 8), "diff"] == pytest.approx(0.0, abs=1e-12)
    assert d.loc[("b", 8), "std"] == pytest.approx(0.01)
    assert d.loc[("b", 8), "verdict"] == "within noise"
    assert (d["seeds"] == 3).all()
    with pytest.raises(ValueError, match="reference"):
        paired_differences(_three_variants(), reference="nope")


def test_best_per_length_and_description_follow_the_numbers():
    t = _three_variants()
    best = best_per_length(t)
    assert best.loc[8, "best"] == "a" and best.loc[8, "runner-up"] in ("ref", "b")
    assert best.loc[8, "gap"] == pytest.approx(0.02) and bool(best.loc[8, "clear"])
    # at 16 bits ref and b tie on the mean (noise averages out): no clear winner
    assert best.loc[16, "best"] in ("ref", "b") and not best.loc[16, "clear"]
    text = describe_ablation(t, reference="ref")
    assert "- 8 bits: **a** (0.5250), +0.0200 ahead of" in text
    assert "more than one std" in text.splitlines()[1]
    assert "- a: -0.0050 ± 0.0000 (worse); higher mean at 1 of 2 lengths, clearly better at 1, clearly worse at 1" in text
    assert "- b: +0.0000 ± 0.0100 (within noise)" in text


def test_identical_variants_are_called_identical_and_tied():
    t = _three_variants()
    same = t[t.variant == "ref"].assign(variant="copy")
    t = pd.concat([t[t.variant == "ref"], same], ignore_index=True)
    d = paired_differences(t, reference="ref")
    assert (d["verdict"] == "identical").all() and (d["diff"] == 0).all()
    text = describe_ablation(t, reference="ref")
    assert "tied with" in text and "(identical)" in text


def test_training_curves_draws_both_panels_with_labels():
    import matplotlib.pyplot as plt
    import pandas as pd

    from nhl.plots.curves import training_curves

    rows = [dict(epoch=e, bits=b, loss=1 / (e + 1), val_map=0.1 * e + b / 1000, selected=e == 2)
            for e in range(4) for b in (8, 16)]
    loss_ax, map_ax = training_curves(pd.DataFrame(rows), title="t")
    assert len(loss_ax.lines) >= 2 and loss_ax.get_xlabel().startswith("epoch")
    assert map_ax.get_ylabel().startswith("validation mAP@ALL") and loss_ax.get_ylabel()
    plt.close("all")


def test_training_curves_count_epochs_from_one_on_integer_ticks():
    import matplotlib.pyplot as plt

    from nhl.plots.curves import training_curves

    rows = [dict(epoch=e, bits=b, loss=1 / (e + 1), val_map=0.5 + 0.01 * e + b / 1000, selected=e == 2)
            for e in range(5) for b in (8, 16, 32)]
    loss_ax, map_ax = training_curves(pd.DataFrame(rows))
    lines = _data_lines(map_ax)
    assert [ln.get_label() for ln in lines] == ["8 bits", "16 bits", "32 bits"]
    np.testing.assert_array_equal(lines[0].get_xdata(), [1, 2, 3, 4, 5])  # history's 0..4
    loss_ax.figure.canvas.draw()
    ticks = [t for t in map_ax.get_xticks() if map_ax.get_xlim()[0] <= t <= map_ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    selected = [ln for ln in map_ax.lines if ln.get_linestyle() == ":"]
    assert len(selected) == 1 and selected[0].get_xdata()[0] == 3  # history epoch 2, counted from 1
    assert "selected epoch, 3" in map_ax.get_xlabel()
    legend = map_ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["8 bits", "16 bits", "32 bits"]
    assert map_ax.get_ylabel().endswith("not 0)")  # zoomed axis said so
    zero_based, _ = training_curves(pd.DataFrame(rows), count_from=0)
    np.testing.assert_array_equal(_data_lines(zero_based)[0].get_xdata(), [0, 1, 2, 3, 4])
    plt.close("all")
    with pytest.raises(ValueError, match="history"):
        training_curves(pd.DataFrame({"epoch": [0]}))


# ------------------------------------------------------------------ readable layouts


def test_flag_truncated_y_says_where_the_axis_starts():
    _, ax = plt.subplots()
    ax.plot([0, 1], [0.7, 0.8])
    ax.set_ylabel("mAP")
    ax.set_ylim(0.65, 0.85)
    flag_truncated_y(ax)
    assert ax.get_ylabel() == "mAP\n(axis starts at 0.65, not 0)"
    flag_truncated_y(ax)  # idempotent
    assert ax.get_ylabel().count("axis starts") == 1
    _, ax = plt.subplots()
    ax.set_ylabel("gain")
    ax.set_ylim(-0.1, 0.1)  # includes 0: nothing to flag
    assert flag_truncated_y(ax).get_ylabel() == "gain"


def test_precision_at_n_plot_from_zero_is_not_flagged():
    table = pd.DataFrame([[0.9, 0.8], [0.95, 0.9]], index=[8, 16], columns=[100, 1000])
    ax = precision_at_n_plot(table, y_from_zero=True)
    assert ax.get_ylim()[0] == 0 and ax.get_ylabel() == "precision@N"


def test_pr_small_multiples_one_full_panel_per_length():
    results = {
        16: (np.array([0.9, 0.8, 0.7, 0.5]), np.array([0.1, 0.3, 0.6, 1.0])),
        8: (np.array([0.8, 0.6, 0.5]), np.array([0.4, 0.8, 1.0])),
    }
    axes = pr_small_multiples(results, mark_radius=2)
    assert len(axes) == 2
    assert [ax.get_title() for ax in axes] == ["8 bits (r = 0..2)", "16 bits (r = 0..3)"]
    for ax, bits in zip(axes, (8, 16)):
        own = [ln for ln in ax.lines if ln.get_label() == f"{bits} bits"]
        assert len(own) == 1
        np.testing.assert_allclose(own[0].get_xdata(), results[bits][1])
        np.testing.assert_allclose(own[0].get_ydata(), results[bits][0])
        assert len([ln for ln in ax.lines if ln.get_label() == "_other lengths"]) == 1
        assert ax.get_xlim() == (0, 1.02) and ax.get_ylim() == (0, 1.02)  # never truncated
        assert ax.get_xlabel() == "recall"
        ring = ax.collections[0].get_offsets()[0].tolist()
        assert ring == [results[bits][1][2], results[bits][0][2]]
    assert axes[0].get_ylabel() == "precision"
    with pytest.raises(ValueError, match="axes"):
        pr_small_multiples(results, axes=plt.subplots(1, 3)[1])
    with pytest.raises(ValueError, match=r"results\[8\]"):
        pr_small_multiples({8: ([0.5, 0.4], [0.1])})


def test_paired_ci_plot_draws_differences_and_intervals_per_panel():
    t = pd.DataFrame({
        "dataset": ["a"] * 6 + ["b"] * 3,
        "method": ["x", "x", "x", "y", "y", "y", "x", "x", "x"],
        "bits": [8, 16, "mean"] * 3,
        "diff": [0.01, -0.02, -0.005, 0.0, 0.03, 0.015, 0.1, 0.2, 0.15],
        "ci95": [0.005, 0.01, 0.004, 0.02, 0.01, np.nan, 0.05, 0.05, 0.05],
    })
    axes = paired_ci_plot(t)
    assert len(axes) == 2 and [ax.get_title() for ax in axes] == ["a", "b"]
    assert [x.get_text() for x in axes[0].get_xticklabels()] == ["8", "16", "mean"]
    ys = [c.get_offsets() for c in axes[0].collections]  # errorbar markers are lines, bars collections
    points = [ln for ln in axes[0].lines if ln.get_marker() == "o"]
    np.testing.assert_allclose(points[0].get_ydata(), [0.01, -0.02, -0.005])
    np.testing.assert_allclose(points[1].get_ydata(), [0.0, 0.03, 0.015])
    assert points[0].get_xdata()[0] < 0 < points[1].get_xdata()[0]  # dodged around position 0
    assert ys  # the interval bars are drawn
    assert axes[0].get_xlabel() == "code length (bits)" and "single-length" in axes[0].get_ylabel()
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == ["x", "y"]
    with pytest.raises(ValueError, match="columns"):
        paired_ci_plot(t.drop(columns="ci95"))


def test_paired_ci_plot_other_x_and_legend_outside():
    t = pd.DataFrame({
        "dataset": ["a"] * 4, "comparison": ["plain", "plain", "nhl", "nhl"],
        "method": ["dhn", "csq", "dhn", "csq"], "diff": [0.1, 0.0, 0.05, -0.01],
        "ci95": [0.02, 0.01, np.nan, 0.01],
    })
    two = pd.concat([t, t.assign(dataset="b", comparison="other")])  # the last panel lacks two hues
    assert [x.get_text() for x in paired_ci_plot(two, hue="comparison", x="method", legend="outside")[-1]
            .get_legend().get_texts()] == ["plain", "nhl", "other"]
    axes = paired_ci_plot(t, hue="comparison", x="method", xlabel="base loss", legend="outside")
    assert [x.get_text() for x in axes[0].get_xticklabels()] == ["dhn", "csq"]  # order of appearance
    assert axes[0].get_xlabel() == "base loss"
    legend = axes[-1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["plain", "nhl"]
    assert legend.get_bbox_to_anchor().x0 > axes[-1].get_window_extent().x1 - 1  # right of the panel
    with pytest.raises(ValueError, match="legend"):
        paired_ci_plot(t, hue="comparison", x="method", legend="above")


def test_index_order_spread_matches_permuted_index_map():
    rng = np.random.default_rng(2)
    db = np.where(rng.random((60, 8)) > 0.5, 1, -1)
    dbl = np.eye(3, dtype=np.uint8)[rng.integers(0, 3, 60)]
    q, ql = db[:5], dbl[:5]
    table, samples = index_order_spread(q, db, ql, dbl, (2, 8), n_perm=4, seed=7)
    assert table.index.tolist() == [2, 8] and table.index.name == "bits"
    for b in (2, 8):
        np.testing.assert_allclose(samples[b], permuted_index_map(q[:, :b], db[:, :b], ql, dbl, n_perm=4, seed=7))
        assert table.loc[b, "tie-aware"] == pytest.approx(mean_average_precision(q[:, :b], db[:, :b], ql, dbl))
        assert table.loc[b, "index order: max - min"] == pytest.approx(np.ptp(samples[b]))
    with pytest.raises(ValueError, match="16"):
        index_order_spread(q, db, ql, dbl, (8, 16))

"""nhl.plots.codes: prefix layout, per-bit statistics and pair-distance histograms on tiny codes."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from nhl.plots import codes as C  # noqa: E402

CODES = np.array(
    [
        [1, 1, -1, 1],
        [1, -1, -1, 1],
        [-1, 1, -1, 1],
        [1, 1, -1, -1],
    ],
    np.int8,
)
LABELS = np.array([[1, 0], [1, 0], [0, 1], [0, 1]])


def test_blocks_are_the_bits_each_length_adds():
    assert C.blocks((8, 16, 32)) == [(0, 8), (8, 16), (16, 32)]
    assert len(C.block_colors((8, 16, 32))) == 3


def test_prefix_picture_draws_w_and_prefix_bars():
    w = np.arange(12, dtype=float).reshape(4, 3)
    fig = C.prefix_picture((2, 4), weight=w)
    ax_w, ax_use = fig.axes
    assert ax_w.images[0].get_array().shape == (4, 3)
    assert ax_w.get_ylabel() == "row of W = bit position"
    # length 2 reads block 1; length 4 reads blocks 1 and 2: three bars in all
    bars = [(p.get_x(), p.get_y(), p.get_height()) for p in ax_use.patches]
    assert len(bars) == 3
    assert sorted((round(y), round(h)) for _, y, h in bars) == [(0, 2), (0, 2), (2, 2)]
    assert ax_use.get_xlabel() == "code length (bits)"
    with pytest.raises(ValueError, match="L_K=4"):
        C.prefix_picture((2, 4), weight=np.zeros((3, 3)))


def test_code_strip_shows_every_bit_and_a_bracket_per_length():
    code = np.array([1, -1, 1, 1, -1, -1, 1, -1])
    ax = C.code_strip(code, (2, 4, 8))
    assert ax.images[0].get_array().tolist() == [[1, 0, 1, 1, 0, 0, 1, 0]]
    assert [t.get_text().strip() for t in ax.texts] == ["2 bits", "4 bits", "8 bits"]
    assert ax.get_xlabel().startswith("bit position")
    with pytest.raises(ValueError, match="16 bits"):
        C.code_strip(code, (8, 16))


def test_bit_balance_values_and_bars():
    assert C.bit_balance_values(CODES).tolist() == [0.75, 0.75, 0.0, 0.75]
    ax = C.bit_balance(CODES, (2, 4))
    heights = [p.get_height() for p in ax.patches]
    assert heights == [0.75, 0.75, 0.0, 0.75]
    assert ax.get_ylabel() == "fraction of items with +1"
    assert len(ax.get_legend().get_texts()) == 3


def test_correlation_matrix_hand_computed():
    x = np.array([[1, 1, -1, 1], [1, 1, 1, -1], [-1, -1, -1, 1], [-1, -1, 1, 1]], np.int8)
    corr = C.correlation_matrix(x)
    np.testing.assert_allclose(corr[0, 1], 1.0)  # identical bits
    np.testing.assert_allclose(corr[0, 2], 0.0)  # independent bits
    # bit 3 is constant but for one item: mean 0.5, correlation with bit 0 = 0 / ... = -0.577
    np.testing.assert_allclose(corr[0, 3], -1 / np.sqrt(3))
    np.testing.assert_allclose(np.diag(corr), 1.0)
    const = C.correlation_matrix(np.array([[1, 1], [1, -1]]))
    assert const.tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_bit_correlation_heatmap_and_summary():
    ax = C.bit_correlation(CODES, 3, bit_list=(2, 4))
    assert ax.images[0].get_array().shape == (3, 3)
    assert ax.get_xlabel() == "bit" and "3 bits" in ax.get_title()
    table = C.prefix_summary(CODES, (2, 4))
    assert table.index.tolist() == [2, 4]
    assert table.loc[2, "mean |p(+1) - 0.5|"] == pytest.approx(0.25)
    # bits 0 and 1 of CODES: +1 +1, +1 -1, -1 +1, +1 +1 -> correlation -1/3
    assert table.loc[2, "mean |corr|"] == pytest.approx(1 / 3)


def test_pair_distances_every_prefix_at_once():
    dist, similar = C.pair_distances(CODES, LABELS, (1, 2, 4), (np.array([0, 0, 2]), [1, 3, 3]))
    assert dist[1].tolist() == [0, 0, 1]
    assert dist[2].tolist() == [1, 0, 1]
    assert dist[4].tolist() == [1, 1, 2]
    assert similar.tolist() == [True, False, True]


def test_histogram_counts_on_tiny_codes():
    pairs = (np.array([0, 0, 2, 1]), np.array([1, 3, 3, 2]))
    counts = C.hamming_histogram_counts(CODES, LABELS, (2, 4), pairs=pairs)
    four = counts[counts["bits"] == 4].set_index("distance")
    # similar: (0,1) d=1, (2,3) d=2; dissimilar: (0,3) d=1, (1,2) d=2
    assert four["similar"].tolist() == [0, 1, 1, 0, 0]
    assert four["dissimilar"].tolist() == [0, 1, 1, 0, 0]
    two = counts[counts["bits"] == 2].set_index("distance")
    assert two["similar"].tolist() == [0, 2, 0] and two["dissimilar"].tolist() == [1, 0, 1]
    auc = C.separation_auc(counts)
    assert auc[4] == pytest.approx(0.5)  # 1 win (d1 vs d2), 2 ties, 1 loss -> (1 + 1) / 4
    assert auc[2] == pytest.approx(0.5)


def test_separation_auc_perfect_and_reversed():
    import pandas as pd

    counts = pd.DataFrame({"bits": 2, "distance": [0, 1, 2], "similar": [3, 0, 0],
                           "dissimilar": [0, 0, 5]})
    assert C.separation_auc(counts)[2] == 1.0
    counts[["similar", "dissimilar"]] = counts[["dissimilar", "similar"]].to_numpy()
    assert C.separation_auc(counts)[2] == 0.0


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 50), st.integers(1, 200), st.integers(0, 1000))
def test_sample_pairs_distinct_in_range(n_items, n_pairs, seed):
    i, j = C.sample_pairs(n_items, n_pairs, seed)
    assert i.shape == j.shape == (n_pairs,)
    assert (i != j).all() and i.min() >= 0 and max(i.max(), j.max()) < n_items
    i2, j2 = C.sample_pairs(n_items, n_pairs, seed)
    assert (i == i2).all() and (j == j2).all()


def test_hamming_histograms_panels_sum_to_pairs():
    rng = np.random.default_rng(0)
    codes = rng.choice(np.array([-1, 1], np.int8), (40, 8))
    labels = np.eye(3, dtype=np.uint8)[rng.integers(0, 3, 40)]
    fig = C.hamming_histograms(codes, labels, (4, 8), n_pairs=300, seed=1)
    assert len(fig.axes) == 2
    assert fig.axes[0].get_xlabel() == "Hamming distance"
    assert fig.axes[0].get_ylabel() == "fraction of pairs"
    per_length = fig.counts.groupby("bits")[["similar", "dissimilar"]].sum().sum(axis=1)
    assert per_length.tolist() == [300, 300]
    # one bar per distance 0..8 and kind; each kind's bars are fractions summing to one
    bars = fig.axes[1].patches
    assert len(bars) == 2 * 9
    for kind in (bars[:9], bars[9:]):
        assert [round(b.get_x() + b.get_width() / 2) for b in kind] == list(range(9))
        np.testing.assert_allclose(sum(b.get_height() for b in kind), 1.0)
    # the d = 0 bar is not under the left spine: the axis starts left of its left edge
    for ax in fig.axes:
        assert ax.get_xlim()[0] < -0.5 - 0.9
        assert "at d = 0" in ax.texts[0].get_text()
    legend = fig.legends[0]
    assert [t.get_text()[:3] for t in legend.get_texts()] == ["sim", "dis"]


def test_hamming_histograms_log_axis_is_labelled():
    rng = np.random.default_rng(1)
    codes = rng.choice(np.array([-1, 1], np.int8), (30, 4))
    labels = np.eye(2, dtype=np.uint8)[rng.integers(0, 2, 30)]
    fig = C.hamming_histograms(codes, labels, (4,), n_pairs=100, log=True)
    assert fig.axes[0].get_yscale() == "log"
    assert fig.axes[0].get_ylabel() == "fraction of pairs (log scale)"


def test_block_novelty_finds_copied_bits():
    rng = np.random.default_rng(0)
    first = rng.choice(np.array([-1, 1], np.int8), (200, 2))
    fresh = rng.choice(np.array([-1, 1], np.int8), (200, 2))
    # block 2 = bit 0 and the negation of bit 1: copies; block 3 = fresh random bits
    codes = np.concatenate([first, first[:, :1], -first[:, 1:], fresh], axis=1)
    table = C.block_novelty(codes, (2, 4, 6))
    assert table.index.tolist() == [2, 4, 6]
    assert table["new bits"].tolist() == [2, 2, 2]
    assert np.isnan(table.loc[2, "mean max |corr| with earlier bits"])
    assert table.loc[4, "mean max |corr| with earlier bits"] == pytest.approx(1.0)
    assert table.loc[4, "copies"] == 2
    assert table.loc[6, "copies"] == 0
    assert table.loc[6, "mean max |corr| with earlier bits"] < 0.3
    with pytest.raises(ValueError, match="copy_threshold"):
        C.block_novelty(codes, (2, 4), copy_threshold=0)


def test_distinct_codes_per_prefix():
    # CODES: 2-bit prefixes (1,1), (1,-1), (-1,1), (1,1): 3 distinct; all 4 bits: 4 distinct
    series = C.distinct_codes(CODES, (1, 2, 4))
    assert series.to_dict() == {1: 2, 2: 3, 4: 4}
    with pytest.raises(ValueError, match="8 bits"):
        C.distinct_codes(CODES, (8,))


def test_center_design_table_sylvester_repeats_hadamard_spreads():
    t = C.center_design_table(10, (8, 16, 32, 64, 128))
    assert t.loc[("sylvester", 128), "distinct splits"] == 16
    assert t.loc[("sylvester", 32), "distinct splits"] == 16
    assert t.loc[("hadamard", 128), "distinct splits"] == 128
    for b in (8, 16, 32, 64, 128):  # spreading keeps every prefix's minimum centre distance
        assert (t.loc[("hadamard", b), "min centre distance"]
                == t.loc[("sylvester", b), "min centre distance"] == b // 2)
    assert "random" in t.index.get_level_values("design")
    with pytest.raises(ValueError, match="two classes"):
        C.center_design_table(1, (8,))


def test_center_picture_flags_repeated_columns():
    fig = C.center_picture(10, (8, 16, 32), designs=("sylvester", "hadamard"))
    syl, had = fig.axes
    assert syl.images[0].get_array().shape == (10, 32)
    assert "16 distinct splits among 32 bits (16 repeats" in syl.get_title()
    assert "32 distinct splits among 32 bits (0 repeats" in had.get_title()
    assert len(syl.lines[-1].get_xdata()) == 16


def test_centers_summary_means_over_seeds():
    import pandas as pd

    rows = []
    for seed, shift in ((0, 0.0), (1, 0.2)):
        for design in ("hadamard (default)", "sylvester"):
            for b in (8, 16):
                rows.append({"dataset": "fashion-mnist", "design": design, "bits": b,
                             "seed": seed, "mAP": 0.5 + shift, "distinct codes": 10 + b,
                             "nearest ties (median)": 100.0 / b})
    rows.append({**rows[0], "dataset": "other", "mAP": 9.0})
    out = C.centers_summary(pd.DataFrame(rows))
    assert out.index.names == ["design", "bits"]
    assert out.loc[("sylvester", 16), "mAP"] == pytest.approx(0.6)
    assert out.loc[("sylvester", 16), "distinct codes"] == 26
    assert out.loc[("hadamard (default)", 8), "seeds"] == 2
    with pytest.raises(ValueError, match="no rows"):
        C.centers_summary(pd.DataFrame(rows), dataset="cifar")
    with pytest.raises(ValueError, match="missing columns"):
        C.centers_summary(pd.DataFrame({"mAP": [0.1]}))


def test_centers_gap_per_dataset_with_both_designs():
    import pandas as pd

    rows = []
    for dataset, designs in (("a", ("hadamard (default)", "sylvester")), ("b", ("hadamard (default)",))):
        for design in designs:
            for seed in ((0, 1) if design == "sylvester" else (0,)):
                for b in (8, 16):
                    m = 0.5 + (0.1 if design == "sylvester" else 0.0) + 0.02 * seed + b / 1000
                    rows.append({"dataset": dataset, "design": design, "bits": b, "seed": seed, "mAP": m})
    gap = C.centers_gap(pd.DataFrame(rows))
    assert list(gap.columns) == ["a (1 vs 2 seeds)"]  # b has no sylvester run
    assert gap.index.name == "bits" and list(gap.index) == [8, 16]
    assert gap.loc[8].iloc[0] == pytest.approx(-0.11)  # 0.508 - mean(0.608, 0.628)
    with pytest.raises(ValueError, match="no dataset has both"):
        C.centers_gap(pd.DataFrame(rows), reference="random")
    with pytest.raises(ValueError, match="missing columns"):
        C.centers_gap(pd.DataFrame({"mAP": [0.1]}))

"""nhl.plots.retrieval: Hamming top-k with index tie-breaks, right/wrong frames, image grids."""

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from nhl.metrics import chance_map  # noqa: E402
from nhl.plots import retrieval as R  # noqa: E402

Q = np.array([[1, 1, 1, 1]], np.int8)
DB = np.array(
    [
        [-1, -1, -1, -1],  # d4=4, d2=2
        [1, 1, -1, -1],  # d4=2, d2=0
        [1, 1, 1, -1],  # d4=1, d2=0
        [1, 1, 1, 1],  # d4=0, d2=0
        [1, -1, 1, 1],  # d4=1, d2=1
    ],
    np.int8,
)


def _edge(ax):
    return {mcolors.to_hex(s.get_edgecolor()) for s in ax.spines.values()}


def test_top_k_sorts_by_distance_then_index():
    dist, idx = R.hamming_top_k(Q, DB, k=5)
    assert idx.tolist() == [[3, 2, 4, 1, 0]]
    assert dist.tolist() == [[0, 1, 1, 2, 4]]
    # on the 2-bit prefix items 1, 2, 3 tie at 0: database order decides
    dist, idx = R.hamming_top_k(Q, DB, k=3, bits=2)
    assert idx.tolist() == [[1, 2, 3]] and dist.tolist() == [[0, 0, 0]]


def test_top_k_caps_k_and_checks_bits():
    dist, idx = R.hamming_top_k(Q, DB, k=50)
    assert idx.shape == (1, 5)
    with pytest.raises(ValueError, match="bits=8"):
        R.hamming_top_k(Q, DB, k=2, bits=8)
    with pytest.raises(ValueError, match="k must be >= 1"):
        R.hamming_top_k(Q, DB, k=0)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(1, 30), st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_top_k_matches_brute_force(n_q, n_db, bits, seed):
    rng = np.random.default_rng(seed)
    q = rng.choice(np.array([-1, 1], np.int8), (n_q, bits))
    db = rng.choice(np.array([-1, 1], np.int8), (n_db, bits))
    dist, idx = R.hamming_top_k(q, db, k=n_db)
    for a in range(n_q):
        d = [(int((q[a] != db[b]).sum()), b) for b in range(n_db)]
        assert sorted(d) == list(zip(dist[a].tolist(), idx[a].tolist()))


def test_relevant_shares_a_class():
    ql = np.array([[1, 0, 0], [0, 1, 1]])
    dl = np.array([[1, 0, 0], [0, 0, 1], [1, 1, 0]])
    ok = R.relevant(ql, dl, np.array([[0, 1, 2], [0, 1, 2]]))
    assert ok.tolist() == [[True, False, True], [False, True, True]]


def test_show_topk_frames_right_green_wrong_red():
    imgs = np.zeros((2, 4, 4), np.uint8)
    retrieved = np.zeros((2, 3, 4, 4), np.uint8)
    correct = np.array([[True, False, True], [False, False, True]])
    fig = R.show_topk(imgs, retrieved, correct, row_labels=["a", "b"],
                      titles=[["d=0", "d=1", "d=2"]] * 2)
    axes = np.array(fig.axes).reshape(2, 4)
    green, red, blue = (mcolors.to_hex(c) for c in (R.RIGHT_COLOR, R.WRONG_COLOR, R.QUERY_COLOR))
    for r in range(2):
        assert _edge(axes[r, 0]) == {blue}
        assert axes[r, 0].get_ylabel() == "ab"[r]
        for j in range(3):
            assert _edge(axes[r, j + 1]) == ({green} if correct[r, j] else {red})
            assert axes[r, j + 1].get_title() == f"d={j}"
    assert axes[0, 0].get_title() == "query"


def test_show_topk_rejects_bad_shapes():
    with pytest.raises(ValueError, match="correct must be"):
        R.show_topk(np.zeros((1, 4, 4)), np.zeros((1, 3, 4, 4)), np.ones((1, 2), bool))
    with pytest.raises(ValueError, match="retrieved_images"):
        R.show_topk(np.zeros((2, 4, 4)), np.zeros((1, 3, 4, 4)), np.ones((1, 3), bool))


def test_show_images_titles_from_ids_and_multi_hot():
    names = ["cat", "dog", "owl"]
    fig = R.show_images(np.zeros((3, 5, 5, 1), np.uint8), [2, 0, 1], names, ncols=2)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["owl", "cat", "dog", ""]
    assert not fig.axes[3].axison  # the unused cell is blank
    fig = R.show_images(np.zeros((1, 5, 5), np.uint8), np.array([[1, 0, 1]]), names)
    assert fig.axes[0].get_title() == "cat, owl"


class _Images:
    def __init__(self, n):
        self.store = (np.arange(n)[:, None, None, None] * np.ones((1, 3, 3, 1))).astype(np.uint8)

    def images_for_display(self, positions):
        return self.store[np.asarray(positions)]


def test_compare_topk_by_length_rows_and_frames():
    codes = {
        "query": Q,
        "database": DB,
        "query_labels": np.array([[1, 0]]),
        "database_labels": np.array([[0, 1], [1, 0], [0, 1], [1, 0], [1, 0]]),
    }
    splits = SimpleNamespace(query=_Images(1), database=_Images(5))
    fig = R.compare_topk_by_length(codes, splits, [0], lengths=(2, 4), k=3)
    axes = np.array(fig.axes).reshape(2, 4)
    green, red = mcolors.to_hex(R.RIGHT_COLOR), mcolors.to_hex(R.WRONG_COLOR)
    # 2 bits: items 1, 2, 3 (right, wrong, right); 4 bits: items 3, 2, 4 (right, wrong, right)
    expect = {0: ([1, 2, 3], [green, red, green]), 1: ([3, 2, 4], [green, red, green])}
    for row, (items, colors) in expect.items():
        shown = [int(axes[row, j + 1].images[0].get_array()[0, 0]) for j in range(3)]
        assert shown == items
        assert [_edge(axes[row, j + 1]) for j in range(3)] == [{c} for c in colors]
    # 2 bits: items 1, 2, 3 tie at d=0; 4 bits: only item 3 is at d=0
    assert axes[0, 0].get_ylabel() == "query 0: 0\n2 bits: 2/3 right\n3 tied at d=0"
    assert axes[1, 0].get_ylabel() == "query 0: 0\n4 bits: 2/3 right\n1 tied at d=0"
    splits.class_names = ["coat", "shirt"]
    fig = R.compare_topk_by_length(codes, splits, [0], lengths=(2, 4), k=3)
    assert fig.axes[0].get_ylabel().startswith("query 0: coat\n")
    with pytest.raises(TypeError, match="RunResult"):
        R.compare_topk_by_length({"query": Q}, splits, [0])
    with pytest.raises(IndexError, match="query_ids"):
        R.compare_topk_by_length(codes, splits, [3])


def test_topk_summary_counts_right_answers_and_ties():
    codes = {
        "query": np.concatenate([Q, -Q]),
        "database": DB,
        "query_labels": np.array([[1, 0], [0, 1]]),
        "database_labels": np.array([[0, 1], [1, 0], [0, 1], [1, 0], [1, 0]]),
    }
    t = R.topk_summary(codes, [1, 0], lengths=(2, 4), k=2, class_names=["coat", "shirt"])
    assert t["query"].tolist() == [1, 1, 0, 0] and t["bits"].tolist() == [2, 4, 2, 4]
    assert t["class"].tolist() == ["shirt", "shirt", "coat", "coat"]
    # query 0 (+1 +1 +1 +1): 2 bits -> items 1, 2, 3 at d=0; 4 bits -> item 3 alone at d=0
    q0 = t[t["query"] == 0].set_index("bits")
    assert q0["tied at nearest"].tolist() == [3, 1] and q0["nearest distance"].tolist() == [0, 0]
    assert q0["right of top 2"].tolist() == [1, 1]  # items 1, 2 at 2 bits; items 3, 2 at 4 bits
    # query 1 (-1 -1 -1 -1): item 0 alone at d=0 (2 and 4 bits), then item 4 at d=3 (4 bits)
    q1 = t[t["query"] == 1].set_index("bits")
    assert q1["tied at nearest"].tolist() == [1, 1]
    assert q1["right of top 2"].tolist() == [1, 1]
    with pytest.raises(IndexError, match="query_ids"):
        R.topk_summary(codes, [5])
    with pytest.raises(ValueError, match="empty"):
        R.topk_summary(codes, [])


def _brute_force_random_ap(n, r):
    """E[AP] over all orders of n items with r relevant, by enumerating relevant positions."""
    from itertools import combinations

    total, count = 0.0, 0
    for pos in combinations(range(1, n + 1), r):
        total += np.mean([(i + 1) / p for i, p in enumerate(pos)])
        count += 1
    return total / count


@pytest.mark.parametrize("n,r", [(5, 1), (6, 2), (7, 3), (4, 4)])
def test_chance_map_closed_form_matches_enumeration(n, r):
    dl = np.zeros((n, 2), np.uint8)
    dl[:r, 0] = 1
    dl[r:, 1] = 1
    ql = np.array([[1, 0]], np.uint8)
    assert chance_map(ql, dl) == pytest.approx(_brute_force_random_ap(n, r))


def test_chance_map_equals_tie_aware_map_of_constant_codes():
    from nhl.metrics import mean_average_precision

    rng = np.random.default_rng(0)
    dl = (rng.random((300, 4)) < 0.3).astype(np.uint8)  # multi-label, some rows empty
    ql = (rng.random((20, 4)) < 0.3).astype(np.uint8)
    ones_q, ones_db = np.ones((20, 1), np.int8), np.ones((300, 1), np.int8)
    assert chance_map(ql, dl) == pytest.approx(mean_average_precision(ones_q, ones_db, ql, dl))
    assert chance_map(ql, dl, topk=50) == pytest.approx(
        mean_average_precision(ones_q, ones_db, ql, dl, topk=50))
    balanced = np.eye(10, dtype=np.uint8)[np.arange(1000) % 10]
    assert chance_map(balanced[:10], balanced) == pytest.approx(0.1, abs=0.01)
    with pytest.raises(ValueError, match="classes"):
        chance_map(ql, dl[:, :3])


def test_first_of_classes_picks_the_first_query_of_each_named_class():
    ql = np.eye(3, dtype=np.uint8)[[2, 0, 2, 1]]
    assert R.first_of_classes(ql, ["a", "b", "c"], ["c", "a", "b"]) == [0, 1, 3]
    with pytest.raises(ValueError, match="unknown class"):
        R.first_of_classes(ql, ["a", "b", "c"], ["z"])
    with pytest.raises(ValueError, match="no query"):
        R.first_of_classes(ql[:2], ["a", "b", "c"], ["b"])


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(1, 40), st.integers(1, 10), st.integers(0, 2**31 - 1))
def test_nearest_ties_match_brute_force(n_q, n_db, bits, seed):
    rng = np.random.default_rng(seed)
    q = rng.choice(np.array([-1, 1], np.int8), (n_q, bits + 2))
    db = rng.choice(np.array([-1, 1], np.int8), (n_db, bits + 2))
    distance, tied = R.nearest_ties(q, db, bits, chunk_size=2)
    for a in range(n_q):
        d = (q[a, :bits] != db[:, :bits]).sum(axis=1)
        assert distance[a] == d.min() and tied[a] == (d == d.min()).sum()


def test_tie_summary_on_hand_made_codes():
    # query 0 = Q: 2 bits -> 3 items at d=0, 4 bits -> 1 item at d=0; query 1 = -Q: item 0 alone
    t = R.tie_summary(np.concatenate([Q, -Q]), DB, (2, 4), k=2)
    assert t.index.tolist() == [2, 4]
    assert t.loc[2, "median tied at nearest"] == 2.0  # median of 3 and 1
    assert t.loc[2, "share with > 2 tied"] == 0.5 and t.loc[4, "share with > 2 tied"] == 0.0
    assert t["share nearest at d=0"].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="exceeds"):
        R.nearest_ties(Q, DB, 8)

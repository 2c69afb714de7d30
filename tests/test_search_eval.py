"""Search measurements: the k-th neighbour table, funnel against exhaustive search, length choice."""

import numpy as np
import pandas as pd
import pytest

from nhl.metrics import hamming_distances, mean_average_precision
from nhl.studies.search import (
    SearchComparison,
    compare_search,
    funnel_name,
    length_choice,
    neighbour_distances,
)


def clustered(seed=0, n_db=400, n_q=12, bits=32, n_classes=4, flip=0.1):
    """Codes around one random centre per class, with each bit flipped with probability flip."""
    rng = np.random.default_rng(seed)
    centres = rng.choice(np.array([-1, 1], np.int8), size=(n_classes, bits))
    db_y = rng.integers(0, n_classes, n_db)
    q_y = rng.integers(0, n_classes, n_q)

    def noisy(y):
        codes = centres[y].copy()
        codes[rng.random(codes.shape) < flip] *= -1
        return codes

    eye = np.eye(n_classes, dtype=np.uint8)
    return noisy(q_y), noisy(db_y), eye[q_y], eye[db_y]


def test_neighbour_distances_by_brute_force():
    q, db, _, _ = clustered(1)
    k = 7
    table = neighbour_distances(q, db, (8, 32), k=k)
    assert list(table.index) == [8, 32]
    for bits in (8, 32):
        d = hamming_distances(q[:, :bits], db[:, :bits]).astype(int)
        kth = np.sort(d, axis=1)[:, k - 1]
        closer = (d < kth[:, None]).sum(axis=1)
        tied = (d == kth[:, None]).sum(axis=1)
        row = table.loc[bits]
        assert row["median k-th distance"] == np.median(kth)
        assert row["queries with k-th at 0"] == pytest.approx(np.mean(kth == 0))
        assert row["median closer than k-th"] == np.median(closer)
        assert row["median tied at k-th"] == np.median(tied)


def test_neighbour_distances_duplicates_tie_at_zero():
    db = np.ones((50, 16), np.int8)
    table = neighbour_distances(np.ones((3, 16), np.int8), db, (16,), k=10)
    assert table.loc[16].tolist() == [0.0, 1.0, 0.0, 50.0]
    with pytest.raises(ValueError, match="larger than the database"):
        neighbour_distances(np.ones((3, 16)), db, (16,), k=51)
    with pytest.raises(ValueError, match="goes up to 32"):
        neighbour_distances(np.ones((3, 16)), db, (8, 32))


@pytest.fixture(scope="module")
def comparison() -> tuple[SearchComparison, tuple]:
    q, db, ql, dl = clustered(2, n_db=600, n_q=20, bits=64)
    relevant = (ql.astype(int) @ dl.T.astype(int)) > 0
    funnels = [((8, 64), (600,)), ((8, 16, 64), (60, 30))]
    comp = compare_search(db, q, k=10, bit_list=(8, 16, 64), backends=("faiss", "numpy"),
                          funnels=funnels, repeats=3, timing_queries=8, relevant=relevant)
    return comp, (q, db, relevant)


def test_compare_search_table(comparison):
    comp, (q, db, relevant) = comparison
    t = comp.table.set_index("method")
    assert comp.reference == "exhaustive 64 bits (faiss)"
    assert comp.identical == {8: True, 16: True, 64: True}
    assert comp.timing_queries == 8
    assert set(comp.timings["round"]) == {0, 1, 2}
    assert len(t) == 3 * 2 + 2
    assert t.loc[comp.reference, "vs reference"] == "reference"
    assert t.loc[comp.reference, "recall@10"] == 1.0
    # a shortlist covering the database is exact
    assert t.loc[funnel_name((8, 64), (600,)), "recall@10"] == 1.0
    assert 0 <= t.loc[funnel_name((8, 16, 64), (60, 30)), "recall@10"] <= 1
    # both backends report the same quality
    for bits in (8, 16, 64):
        a, b = t.loc[f"exhaustive {bits} bits (faiss)"], t.loc[f"exhaustive {bits} bits (numpy)"]
        assert a["recall@10"] == b["recall@10"] and a["precision@10"] == b["precision@10"]
    exact_d, exact_i = comp.exact
    full = hamming_distances(q, db).astype(int)
    np.testing.assert_array_equal(exact_d, np.sort(full, axis=1)[:, :10])
    p = np.take_along_axis(relevant, exact_i, axis=1).mean()
    assert t.loc[comp.reference, "precision@10"] == pytest.approx(p)
    assert (t["ms low"] <= t["ms per query"]).all() and (t["ms per query"] <= t["ms high"]).all()
    assert set(t["vs reference"]) <= {"reference", "faster", "slower", "within noise"}


def test_latency_by_length_and_plot_rows(comparison):
    comp, _ = comparison
    lat = comp.latency_by_length("numpy")
    assert list(lat.index) == [8, 16, 64]
    assert lat.loc[8, "vs shortest"] == "reference"
    assert list(lat.columns) == ["median", "low", "high", "vs shortest"]
    with pytest.raises(ValueError, match="backend 'gpu'"):
        comp.latency_by_length("gpu")
    rows = comp.for_plot()
    assert set(rows["group"]) == {"funnel 8>64", "funnel 8>16>64", "exhaustive 64 bits (faiss)",
                                  "exhaustive, shorter code (faiss)"}
    assert rows.loc[rows["group"] == "funnel 8>16>64", "label"].tolist() == ["60"]
    assert sorted(rows.loc[rows["group"].str.contains("shorter"), "label"]) == ["16 bits", "8 bits"]


def test_compare_search_errors():
    q, db, _, _ = clustered(3)
    with pytest.raises(ValueError, match="must end at the longest length"):
        compare_search(db, q, k=5, bit_list=(8, 32), funnels=[((8, 16), (20,))])
    with pytest.raises(ValueError, match="needs 1 shortlist"):
        compare_search(db, q, k=5, bit_list=(8, 32), funnels=[((8, 32), (20, 10))])
    with pytest.raises(ValueError, match="relevant must have shape"):
        compare_search(db, q, k=5, bit_list=(8, 32), relevant=np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="at least one backend"):
        compare_search(db, q, k=5, bit_list=(8, 32), backends=())
    with pytest.raises(ValueError, match="bits"):
        compare_search(db, q[:, :16], k=5)


def test_length_choice_matches_map_and_intervals():
    q, db, ql, dl = clustered(4, n_db=500, n_q=60, bits=32, flip=0.2)
    lat = pd.DataFrame({"median": [1.0, 1.2, 1.1], "low": [0.9, 1.0, 1.0], "high": [1.1, 1.3, 1.2],
                        "vs shortest": ["reference", "slower", "within noise"]}, index=[8, 16, 32])
    t = length_choice(q, db, ql, dl, (8, 16, 32), latency=lat, n_boot=300)
    for b, m in zip(t["bits"], t["mAP"]):
        assert m == pytest.approx(mean_average_precision(q[:, :b], db[:, :b], ql, dl))
    assert (t["mAP low"] <= t["mAP"]).all() and (t["mAP"] <= t["mAP high"]).all()
    assert np.isnan(t["gain"].iloc[0]) and not t["gain clear"].iloc[0]
    np.testing.assert_allclose(t["gain"].iloc[1:], np.diff(t["mAP"]))
    assert (t["gain low"].iloc[1:] <= t["gain high"].iloc[1:]).all()
    assert t["bytes"].tolist() == [1, 2, 4]
    assert t["latency ms"].tolist() == [1.0, 1.2, 1.1]
    assert t["latency vs shortest"].tolist() == ["reference", "slower", "within noise"]
    # 16 bits is slower than 32 and (here) no better: never on the latency front if 32 beats it
    if t["mAP"].iloc[2] >= t["mAP"].iloc[1]:
        assert not t["Pareto (latency)"].iloc[1]
    same = length_choice(q, db, ql, dl, (8, 16, 32), n_boot=300)
    assert "latency ms" not in same.columns
    pd.testing.assert_series_equal(same["mAP high"], t["mAP high"])  # seeded bootstrap


def test_length_choice_clear_gain_on_a_big_step():
    # 4 bits of pure noise then 28 informative bits: 4 -> 32 bits is a clear gain
    q, db, ql, dl = clustered(5, n_db=400, n_q=80, bits=32, flip=0.05)
    rng = np.random.default_rng(0)
    q[:, :4] = rng.choice(np.array([-1, 1], np.int8), size=(80, 4))
    db[:, :4] = rng.choice(np.array([-1, 1], np.int8), size=(400, 4))
    t = length_choice(q, db, ql, dl, (4, 32), n_boot=300)
    assert t["gain clear"].tolist() == [False, True]
    with pytest.raises(ValueError, match="level"):
        length_choice(q, db, ql, dl, (4, 32), level=1.5)
    with pytest.raises(ValueError, match="latency needs"):
        length_choice(q, db, ql, dl, (4, 32), latency=pd.DataFrame({"median": [1.0]}, index=[4]))

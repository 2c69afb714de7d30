"""Search measurements: the k-th neighbour table, funnel against exhaustive search, length choice."""

import numpy as np
import pandas as pd
import pytest
import torch

from nhl.metrics import hamming_distances, mean_average_precision
from nhl.retrieval import HammingIndex
from nhl.studies.search import (
    IndexSystem,
    SearchComparison,
    compare_indexes,
    compare_search,
    funnel_name,
    key_neighbours,
    length_choice,
    neighbour_distances,
    real_outputs,
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


# --------------------------------------------------------------------------- index systems


@pytest.fixture(scope="module")
def systems():
    q, db, ql, dl = clustered(5, n_db=700, n_q=16, bits=64, flip=0.15)
    rng = np.random.default_rng(5)
    other_q, other_db, _, _ = clustered(6, n_db=700, n_q=16, bits=16)  # an unrelated short model
    vq = q + 0.3 * rng.standard_normal(q.shape)  # real values whose signs are the codes
    vdb = db + 0.3 * rng.standard_normal(db.shape)
    vq, vdb = np.where(np.sign(vq) == q, vq, 0.1 * q), np.where(np.sign(vdb) == db, vdb, 0.1 * db)
    relevant = (ql.astype(int) @ dl.T.astype(int)) > 0
    found = {"nested": IndexSystem((q, db), vectors=(vq, vdb)),
             "two models": IndexSystem((q, db), bucket_codes=(other_q, other_db))}
    comp = compare_indexes(found, k=10, bucket_bits=8, shortlists=(20, 40, 700), oversample=3,
                           relevant=relevant, repeats=2, timing_queries=6)
    return comp, (q, db, vq, vdb, other_q, other_db, relevant)


def test_compare_indexes_rows_bytes_and_quality(systems):
    comp, (q, db, vq, vdb, other_q, other_db, relevant) = systems
    t = comp.table.set_index("method")
    assert comp.reference == "nested: exhaustive 64 bits" and comp.timing_queries == 6
    assert list(t["kind"].value_counts().sort_index().items()) == [
        ("exhaustive", 2), ("exhaustive real-valued", 1), ("funnel", 6), ("re-scored", 3),
        ("re-scored, real query", 3)]
    # a shortlist smaller than oversample * k: the Hamming stage keeps all of it
    assert "nested: 8-bit buckets (20) > 64 bits (20) > real-valued" in t.index
    nested, two = t[t["system"] == "nested"], t[t["system"] == "two models"]
    assert set(nested["models"]) == {1} and set(two["models"]) == {2}
    assert set(two["bytes per item"]) == {8 + 1}  # the long code and the separate 8-bit key
    assert nested.loc["nested: exhaustive 64 bits", "bytes per item"] == 8
    assert nested.loc["nested: exhaustive real-valued", "bytes per item"] == 8 + 4 * 64
    assert (t.loc[t["kind"] == "exhaustive", "recall@10"] == 1.0).all()
    # a shortlist of the whole database re-ranks exactly, whatever keyed the buckets
    assert t.loc["nested: 8-bit buckets (700) > 64 bits", "recall@10"] == 1.0
    assert t.loc["two models: 8-bit buckets (700) > 64 bits", "recall@10"] == 1.0
    assert t.loc["nested: exhaustive real-valued", "real-valued recall@10"] == 1.0
    assert np.isnan(two["real-valued recall@10"]).all()
    exact = HammingIndex(db).search(q, 10)[1]
    p = np.take_along_axis(relevant, exact, axis=1).mean()
    assert t.loc["nested: exhaustive 64 bits", "precision@10"] == pytest.approx(p)
    assert (t["ms low"] <= t["ms per query"]).all() and (t["ms per query"] <= t["ms high"]).all()
    assert set(t["vs reference"]) <= {"reference", "faster", "slower", "within noise"}


def test_compare_indexes_rescoring_uses_cosine_of_the_shortlist(systems):
    comp, (q, db, vq, vdb, *_rest) = systems
    from nhl.retrieval import funnel_search, rescore

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    cand = funnel_search(HammingIndex(db), q, 30, (8, 64), (40,))[1]  # 3 x k kept by Hamming
    ids = rescore(unit(vq), unit(vdb), cand, 10)[1]
    cos = unit(vq) @ unit(vdb).T
    exact = np.argsort(-cos, axis=1, kind="stable")[:, :10]
    want = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact)])
    row = comp.table.set_index("method").loc["nested: 8-bit buckets (40) > 64 bits (30) > real-valued"]
    assert row["real-valued recall@10"] == pytest.approx(want)
    rows = comp.for_plot()
    assert set(rows["group"]) == {"nested", "two models", "nested, exhaustive", "two models, exhaustive"}
    assert rows.loc[rows["group"] == "nested", "label"].tolist() == ["20", "40", "700"]
    assert rows.loc[rows["group"] == "nested, exhaustive", "label"].tolist() == [""]
    both = comp.for_plot(kinds=("re-scored", "exhaustive real-valued"))
    assert set(both["group"]) == {"nested, re-scored", "nested, exhaustive real-valued"}
    assert both.loc[both["group"] == "nested, re-scored", "label"].tolist() == ["20", "40", "700"]
    with pytest.raises(ValueError, match="no rows"):
        comp.for_plot(kinds=("warp drive",))


def test_compare_indexes_errors():
    q, db, _, _ = clustered(7, n_db=100, n_q=4, bits=32)
    with pytest.raises(ValueError, match="non-empty"):
        compare_indexes({})
    with pytest.raises(TypeError, match="IndexSystem"):
        compare_indexes({"a": (q, db)})
    with pytest.raises(ValueError, match="sizes >= k"):
        compare_indexes({"a": IndexSystem((q, db))}, k=10, shortlists=(5,))
    with pytest.raises(ValueError, match="bucket_bits=40"):
        compare_indexes({"a": IndexSystem((q, db))}, k=5, bucket_bits=40, shortlists=(20,))
    with pytest.raises(ValueError, match="same 4 queries"):
        compare_indexes({"a": IndexSystem((q, db), bucket_codes=(q[:2], db))}, k=5, shortlists=(20,))
    with pytest.raises(ValueError, match="same queries and database"):
        compare_indexes({"a": IndexSystem((q, db)), "b": IndexSystem((q[:2], db))}, k=5,
                        shortlists=(20,))


class _FakeRun:
    """What real_outputs reads of a run: path, codes, model(), config."""

    def __init__(self, path, model, data):
        self.path, self._model, self.calls = path, model, 0
        with torch.no_grad():
            h = {s: model.hash_layer.project(model.backbone(x)).numpy() for s, x in data.items()}
        self.codes = {s: np.where(v >= 0, 1, -1).astype(np.int8) for s, v in h.items()}
        self.h = h

    def model(self):
        self.calls += 1
        return self._model


class _Data:
    def __init__(self, x):
        self.x, self.in_memory = x, True

    def __len__(self):
        return len(self.x)

    def get_batch(self, idx):
        return self.x[idx], None, idx


def test_real_outputs_are_the_pre_sign_outputs_and_are_cached(tmp_path):
    from types import SimpleNamespace

    from nhl.models import HashModel

    torch.manual_seed(0)
    model = HashModel(torch.nn.Linear(6, 5), (4, 8)).eval()  # a linear "backbone" of width 5
    data = {"query": torch.randn(7, 6), "database": torch.randn(2500, 6)}
    run = _FakeRun(tmp_path, model, data)
    splits = SimpleNamespace(query=_Data(data["query"]), database=_Data(data["database"]))
    out = real_outputs(run, splits)
    for s in ("query", "database"):
        assert out[s].dtype == np.float32
        np.testing.assert_allclose(out[s], run.h[s], rtol=1e-5, atol=1e-6)
    assert (tmp_path / "outputs.npz").exists() and run.calls == 1
    again = real_outputs(run, splits)  # read back: the model is not asked again
    assert run.calls == 1
    np.testing.assert_array_equal(again["database"], out["database"])
    (tmp_path / "outputs.npz").write_bytes(b"not a zip")  # damaged: computed again
    real_outputs(run, splits)
    assert run.calls == 2
    np.savez(tmp_path / "outputs.npz", query=-run.h["query"], database=run.h["database"])
    real_outputs(run, splits)  # outputs of another training of the run: computed again
    assert run.calls == 3
    run.codes["query"] = -run.codes["query"]  # codes of another model
    with pytest.raises(ValueError, match="do not belong together"):
        real_outputs(run, splits, cache=False)


def test_key_neighbours_by_hand():
    db = np.array([[1, 1, 1, 1], [1, 1, -1, 1], [1, 1, 1, -1], [-1, 1, 1, 1], [-1, -1, 1, 1]], np.int8)
    q = np.array([[1, 1, 1, 1], [-1, -1, -1, -1]], np.int8)
    exact = np.array([[0, 3], [4, 1]])  # two neighbours per query
    t = key_neighbours({"k": (q, db, exact)}, bits=2, radii=(0, 1))
    # 2-bit keys: (1,1) x3, (-1,1) x1, (-1,-1) x1; query 0's bucket holds 3 items, query 1's 1
    assert t.loc["k", "keys used"] == 3 and t.loc["k", "query's bucket"] == 2.0
    # key distances of the neighbours: query 0: 0, 1; query 1: 0 (item 4), 2 (item 1)
    assert t.loc["k", "neighbours within key distance 0"] == 0.5
    assert t.loc["k", "neighbours within key distance 1"] == 0.75
    q_missing = np.array([[1, -1, 1, 1], [1, 1, 1, 1]], np.int8)  # key (1,-1): no item
    t = key_neighbours({"k": (q_missing, db, exact)}, bits=2)
    assert t.loc["k", "query's bucket"] == 1.5  # 0 and 3 items
    with pytest.raises(ValueError, match="bits=8"):
        key_neighbours({"k": (q, db, exact)}, bits=8)
    with pytest.raises(ValueError, match="database positions"):
        key_neighbours({"k": (q, db, exact + 5)}, bits=2)


def test_compare_indexes_exposes_each_systems_exact_answer(systems):
    comp, (q, db, *_rest) = systems
    d, i = comp.exact["nested"]
    ref = HammingIndex(db).search(q, 10)
    np.testing.assert_array_equal(d, ref[0])
    np.testing.assert_array_equal(i, ref[1])
    assert set(comp.exact) == {"nested", "two models"}

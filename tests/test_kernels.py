"""The compiled fast paths (nhl._kernels) against their slow references, and the regressions of
issue 12: funnel tie order, flip-mask enumeration cost, benchmark recall and report fields."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nhl import _kernels, metrics, retrieval
from nhl.metrics import hamming_distances
from nhl.retrieval import HammingIndex, funnel_search

needs_kernels = pytest.mark.skipif(not _kernels.AVAILABLE, reason="numba is not installed")


def numpy_only(fn, *args, **kwargs):
    """``fn`` with the compiled paths switched off (the numpy reference)."""
    old = metrics.USE_KERNELS
    metrics.USE_KERNELS = False
    try:
        return fn(*args, **kwargs)
    finally:
        metrics.USE_KERNELS = old


def random_case(rng, n_q, n_db, bits, n_classes, multi):
    q = rng.choice(np.array([-1, 1], np.int8), size=(n_q, bits))
    db = rng.choice(np.array([-1, 1], np.int8), size=(n_db, bits))
    if rng.integers(2):  # duplicates: heavy ties
        db = db[rng.integers(0, max(1, n_db // 3), n_db)]
    if multi:
        ql = (rng.random((n_q, n_classes)) < 0.4).astype(np.uint8)
        dl = (rng.random((n_db, n_classes)) < 0.4).astype(np.uint8)
    else:
        ql = np.eye(n_classes, dtype=np.uint8)[rng.integers(0, n_classes, n_q)]
        dl = np.eye(n_classes, dtype=np.uint8)[rng.integers(0, n_classes, n_db)]
    return q, db, ql, dl


def literature_ap(q, db, ql, dl, topk=None):
    """The per-query loop of the literature: distances, stable argsort, cumulative precision."""
    out = np.zeros(len(q))
    for i in range(len(q)):
        d = (q.shape[1] - db.astype(int) @ q[i].astype(int)) // 2
        rel = ((dl @ ql[i]) > 0)[np.argsort(d, kind="stable")][:topk]
        if rel.any():
            out[i] = np.mean((np.cumsum(rel) / np.arange(1, rel.size + 1))[rel])
    return out


# --------------------------------------------------------------------------- metrics


@needs_kernels
@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    topk=st.one_of(st.none(), st.integers(1, 60)),
    multi=st.booleans(),
)
def test_compiled_map_equals_numpy_and_literature_loop(seed, topk, multi):
    rng = np.random.default_rng(seed)
    bits = int(rng.choice([3, 8, 13, 16, 40, 64, 100, 128]))
    q, db, ql, dl = random_case(rng, 7, int(rng.integers(1, 80)), bits, 4, multi)
    lengths = sorted({1, bits // 2 or 1, bits})
    fast = metrics.map_table(q, db, ql, dl, lengths, topk=topk, chunk_size=3)
    slow = numpy_only(metrics.map_table, q, db, ql, dl, lengths, topk=topk)
    for ties in metrics.TIES:
        for b in lengths:
            assert fast[ties][b] == pytest.approx(slow[ties][b], abs=1e-12)
    ap = metrics.average_precision(q, db, ql, dl, topk=topk, ties="index")
    np.testing.assert_allclose(ap, literature_ap(q, db, ql, dl, topk), rtol=0, atol=1e-12)


@needs_kernels
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), ties=st.sampled_from(metrics.TIES))
def test_compiled_precision_recall_equal_numpy(seed, ties):
    rng = np.random.default_rng(seed)
    q, db, ql, dl = random_case(rng, 6, int(rng.integers(1, 70)), 12, 3, bool(rng.integers(2)))
    ns = (1, 5, 30, 200)
    fast = metrics.precision_recall_at_n(q, db, ql, dl, n=ns, ties=ties)
    slow = numpy_only(metrics.precision_recall_at_n, q, db, ql, dl, n=ns, ties=ties)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
    fast = metrics.precision_recall_by_radius(q, db, ql, dl)
    slow = numpy_only(metrics.precision_recall_by_radius, q, db, ql, dl)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- search


@needs_kernels
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 90))
def test_compiled_knn_equals_numpy_and_brute_force(seed, k):
    rng = np.random.default_rng(seed)
    bits = int(rng.choice([5, 8, 16, 31, 64, 128]))
    q, db, _, _ = random_case(rng, 5, int(rng.integers(1, 80)), bits, 2, False)
    index = HammingIndex(db, backend="numpy")
    fast = index.search(q, k)
    slow = numpy_only(index.search, q, k)
    dist = hamming_distances(q, db).astype(np.int64)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    for got in (fast, slow):
        np.testing.assert_array_equal(got[1], order)
        np.testing.assert_array_equal(got[0], np.take_along_axis(dist, order, axis=1))


def test_auto_backend_is_the_compiled_one_when_numba_is_there():
    index = HammingIndex(np.ones((4, 16), np.int8))
    assert index.backend == ("numpy" if _kernels.AVAILABLE else "faiss")


# --------------------------------------------------------------------------- funnel


STAGES = [(8, 64), (16, 128), (16, 32, 64), (16, 64, 128), (24, 128), (32, 128), (40, 128)]


@needs_kernels
@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    stages=st.sampled_from(STAGES),
    k=st.integers(1, 30),
    wide=st.integers(0, 300),
)
def test_compiled_funnel_equals_numpy_path(seed, stages, k, wide):
    rng = np.random.default_rng(seed)
    q, db, _, _ = random_case(rng, 9, int(rng.integers(40, 400)), stages[-1], 2, False)
    index = HammingIndex(db)
    k = min(k, len(db))
    shortlist = [max(k, wide // (j + 1)) for j in range(len(stages) - 1)]
    fast = funnel_search(index, q, k, stages, shortlist)
    slow = numpy_only(funnel_search, index, q, k, stages, shortlist)
    np.testing.assert_array_equal(fast[0], slow[0])
    np.testing.assert_array_equal(fast[1], slow[1])
    full = hamming_distances(q[:, : stages[-1]], db[:, : stages[-1]])
    np.testing.assert_array_equal(fast[0], np.take_along_axis(full, fast[1], axis=1))


@pytest.mark.parametrize("bits", [8, 16, 20, 32, 64])
def test_one_stage_funnel_breaks_ties_by_index(bits):
    # issue 12: with one stage of 64 bits or fewer, ties at the k-th distance came back in
    # bucket order; a one-stage funnel is an exact search: (distance, database index)
    rng = np.random.default_rng(bits)
    base = rng.choice(np.array([-1, 1], np.int8), size=(12, 128))
    db = base[rng.integers(0, 12, 500)]
    q = db[:20].copy()
    q[:, 0] *= -1
    index = HammingIndex(db)
    dist, idx = funnel_search(index, q, 37, stages=(bits,))
    full = hamming_distances(q[:, :bits], db[:, :bits]).astype(np.int64)
    order = np.argsort(full, axis=1, kind="stable")[:, :37]
    np.testing.assert_array_equal(idx, order)
    np.testing.assert_array_equal(dist, np.take_along_axis(full, order, axis=1))
    np.testing.assert_array_equal((dist, idx), numpy_only(funnel_search, index, q, 37, (bits,)))


def test_mask_enumeration_hands_over_to_the_bucket_scan(monkeypatch):
    # issue 12: 6 clusters, 4,000 items, 30 queries, stages (20, 128) at shortlist 2,000 took
    # 0.7 s and ~378 MB of flip-mask lookups; now a shell larger than the number of buckets is
    # never enumerated (the distinct prefixes are scanned instead)
    rng = np.random.default_rng(0)
    centres = rng.choice(np.array([-1, 1], np.int8), size=(6, 128))
    db = centres[rng.integers(0, 6, 4000)]
    db = db * np.where(rng.random(db.shape) < 0.03, -1, 1).astype(np.int8)
    q = db[rng.integers(0, 4000, 30)]
    index = HammingIndex(db)
    biggest = []
    lookup = retrieval._BucketTable.lookup

    def spy(self, values):
        biggest.append(values.size)
        return lookup(self, values)

    monkeypatch.setattr(retrieval._BucketTable, "lookup", spy)
    slow = numpy_only(funnel_search, index, q, 100, (20, 128), (2000,))  # numpy path
    table = retrieval._bucket_table(index, 20)
    assert max(biggest) <= 30 * table.n_buckets
    funnel_search(index, q, 100, (20, 128), (500,))
    t0 = time.perf_counter()
    fast = funnel_search(index, q, 100, (20, 128), (2000,))
    assert time.perf_counter() - t0 < 0.5
    np.testing.assert_array_equal(fast, slow)
    # and the answer is right: a shortlist covering the database is exact
    dist, idx = funnel_search(index, q, 100, (20, 128), (4000,))
    expected = index.search(q, 100)
    np.testing.assert_array_equal(dist, expected[0])
    np.testing.assert_array_equal(idx, expected[1])


# --------------------------------------------------------------------------- benchmarks


def test_benchmark_recall_does_not_count_a_farther_item_for_a_missed_closer_one():
    # issue 12: exact top-2 = {0 at d=0, 1 at d=1}; returned {1, 2} with d(2) = 1 scored 1.0
    from benchmarks.bench_funnel import recalls

    exact_i, exact_d = np.array([[0, 1]]), np.array([[0, 1]])
    found_i, found_d = np.array([[1, 2]]), np.array([[1, 1]])
    ids, dist = recalls(found_i, found_d, exact_i, exact_d)
    assert ids == pytest.approx(0.5)
    assert dist == pytest.approx(0.5)
    # a tied replacement is equally right: exact {0 at 0, 1 at 1}, returned {0, 2} at {0, 1}
    ids, dist = recalls(np.array([[0, 2]]), np.array([[0, 1]]), exact_i, exact_d)
    assert (ids, dist) == (pytest.approx(0.5), pytest.approx(1.0))


def test_report_verdict_names_the_setting_and_numbers():
    # issue 12: the verdict line printed only ``note``: "small: met (); big: not met ()"
    from benchmarks.report import verdict_text

    text = verdict_text(
        {
            "met": True,
            "method": "funnel (16, 128) shortlist (5000,)",
            "seconds": 0.02,
            "speed-up vs best flat": 4.2,
            "recall": 0.97,
        }
    )
    assert "funnel (16, 128)" in text and "4.2" in text and "0.97" in text and "met" in text
    assert "()" not in text
    assert "no funnel" in verdict_text({"met": False, "note": "no funnel setting reached it"})


def test_funnel_with_a_hamming_ball_first_stage():
    # the first stage as a Hamming ball (faiss IndexBinaryHash): every item within the radius
    # of the prefix is ranked by the full code; a ball covering every prefix is exact
    rng = np.random.default_rng(3)
    base = rng.choice(np.array([-1, 1], np.int8), size=(30, 128))
    db = base[rng.integers(0, 30, 600)] * np.where(rng.random((600, 128)) < 0.05, -1, 1).astype(
        np.int8
    )
    q = db[:15]
    index = HammingIndex(db)
    dist, idx = funnel_search(index, q, 20, (8, 128), radius=8)
    expected = index.search(q, 20)
    np.testing.assert_array_equal(dist, expected[0])
    np.testing.assert_array_equal(idx, expected[1])
    dist, idx = funnel_search(index, q, 20, (16, 128), radius=1)
    prefix = hamming_distances(q[:, :16], db[:, :16])
    full = hamming_distances(q, db)
    for row in range(len(q)):
        ball = np.flatnonzero(prefix[row] <= 1)
        order = ball[np.lexsort((ball, full[row, ball]))][:20]
        got = idx[row][idx[row] >= 0]
        np.testing.assert_array_equal(got, order)
        np.testing.assert_array_equal(dist[row][: got.size], full[row, order])
    with pytest.raises(ValueError, match="multiple of 8"):
        funnel_search(index, q, 5, (12, 128), radius=1)
    with pytest.raises(ValueError, match="not both"):
        funnel_search(index, q, 5, (16, 128), shortlist=(50,), radius=1)

"""Tests for nhl.retrieval: packing, exact search (both backends), range search, funnel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nhl import _kernels
from nhl.metrics import hamming_distances
from nhl.retrieval import (
    BACKENDS,
    HammingIndex,
    default_shortlist,
    funnel_search,
    inner_product_search,
    keyed_search,
    overlap_recall,
    pack_codes,
    rerank,
    rescore,
    search_threads,
    shortlist,
    tie_aware_recall,
    unpack_codes,
)

BACKEND_PAIRS = ["numpy", "faiss"]


def brute_knn(q, db, k):
    dist = hamming_distances(q, db).astype(np.int64)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, order, axis=1), order


def tied_codes(rng, n_db, n_q, bits):
    """Random codes with many exact duplicates, so that distances tie heavily."""
    base = rng.choice(np.array([-1, 1], np.int8), size=(max(2, n_db // 4), bits))
    db = base[rng.integers(0, len(base), n_db)]
    q = base[rng.integers(0, len(base), n_q)].copy()
    q[: n_q // 2, 0] *= -1
    return q, db


def test_pack_and_unpack_round_trip():
    codes = np.array([[1, -1, -1, 1, 1, 1, -1, -1, 1, -1]], np.int8)
    packed = pack_codes(codes)
    assert packed.dtype == np.uint8 and packed.shape == (1, 2)
    assert packed.tolist() == [[0b10011100, 0b10000000]]
    np.testing.assert_array_equal(unpack_codes(packed, 10), codes)
    np.testing.assert_array_equal(pack_codes((codes + 1) // 2), packed)  # 0/1 codes too
    with pytest.raises(ValueError, match="uint8"):
        unpack_codes(packed.astype(np.int16), 10)
    with pytest.raises(ValueError, match="only 16 bits"):
        unpack_codes(packed, 17)


@pytest.mark.parametrize("backend", BACKEND_PAIRS)
@pytest.mark.parametrize("bits", [8, 16, 24, 128])
def test_search_equals_brute_force_with_ties(backend, bits):
    rng = np.random.default_rng(bits)
    q, db = tied_codes(rng, 300, 25, bits)
    index = HammingIndex(db, backend=backend)
    assert (index.ntotal, index.bits, index.backend) == (300, bits, backend)
    for k in (1, 5, 80, 300, 1000):
        dist, idx = index.search(q, k)
        expected_d, expected_i = brute_knn(q, db, k)
        assert dist.dtype == np.int32 and idx.dtype == np.int64
        np.testing.assert_array_equal(dist, expected_d)
        np.testing.assert_array_equal(idx, expected_i)


@pytest.mark.parametrize("bits", [5, 13, 70])
def test_numpy_backend_any_length_and_auto_fallback(bits):
    rng = np.random.default_rng(1)
    q, db = tied_codes(rng, 120, 9, bits)
    index = HammingIndex(db)  # auto: faiss needs whole bytes, so numpy here
    assert index.backend == "numpy"
    dist, idx = index.search(q, 17)
    expected_d, expected_i = brute_knn(q, db, 17)
    np.testing.assert_array_equal(dist, expected_d)
    np.testing.assert_array_equal(idx, expected_i)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    bits=st.sampled_from([8, 16, 32, 64]),
    k=st.integers(1, 60),
)
def test_backends_identical(seed, bits, k):
    rng = np.random.default_rng(seed)
    q, db = tied_codes(rng, int(rng.integers(1, 60)), 6, bits)
    a = HammingIndex(db, backend="faiss").search(q, k)
    b = HammingIndex(db, backend="numpy").search(q, k)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("backend", BACKEND_PAIRS)
def test_range_search(backend):
    rng = np.random.default_rng(2)
    q, db = tied_codes(rng, 200, 12, 16)
    index = HammingIndex(db, backend=backend)
    dist = hamming_distances(q, db)
    for radius in (0, 2, 16):
        idxs = index.range_search(q, radius)
        ds, idxs2 = index.range_search(q, radius, return_distances=True)
        assert len(idxs) == len(q)
        for i in range(len(q)):
            inside = np.flatnonzero(dist[i] <= radius)
            expected = inside[np.argsort(dist[i][inside], kind="stable")]
            np.testing.assert_array_equal(idxs[i], expected)
            np.testing.assert_array_equal(idxs2[i], expected)
            np.testing.assert_array_equal(ds[i], dist[i][expected])


def test_worked_example_and_torch_input():
    db = np.array([[1, 1, 1, 1, 1, 1, 1, 1], [-1] * 8, [1, 1, 1, 1, 1, 1, 1, -1]], np.int8)
    q = torch.tensor([[1.0] * 8])
    for backend in BACKEND_PAIRS:
        dist, idx = HammingIndex(db, backend=backend).search(q, 3)
        assert dist.tolist() == [[0, 1, 8]] and idx.tolist() == [[0, 2, 1]]


@pytest.mark.parametrize(
    "stages", [(16, 64, 128), (8, 128), (4, 32, 128), (24, 128), (128,), (16, 64)]
)
def test_funnel_exact_when_shortlist_covers_database(stages):
    rng = np.random.default_rng(3)
    q, db = tied_codes(rng, 400, 20, 128)
    index = HammingIndex(db)
    dist, idx = funnel_search(index, q, 30, stages=stages, shortlist=[400] * (len(stages) - 1))
    expected_d, expected_i = brute_knn(q[:, : stages[-1]], db[:, : stages[-1]], 30)
    np.testing.assert_array_equal(dist, expected_d)
    np.testing.assert_array_equal(idx, expected_i)


def test_funnel_returns_exact_distances_of_its_candidates():
    rng = np.random.default_rng(4)
    q = rng.choice(np.array([-1, 1], np.int8), size=(15, 64))
    db = rng.choice(np.array([-1, 1], np.int8), size=(2000, 64))
    index = HammingIndex(db, backend="numpy")
    dist, idx = funnel_search(index, q, 10, stages=(8, 32, 64), shortlist=(300, 50))
    assert dist.shape == idx.shape == (15, 10)
    full = hamming_distances(q, db)
    np.testing.assert_array_equal(dist, np.take_along_axis(full, idx, axis=1))
    assert np.all(np.diff(dist, axis=1) >= 0)
    assert all(len(set(row)) == 10 for row in idx.tolist())


def test_funnel_finds_planted_neighbours():
    # clustered codes whose prefixes are informative: the funnel must find the close ones
    rng = np.random.default_rng(5)
    centres = rng.choice(np.array([-1, 1], np.int8), size=(20, 128))
    db = centres[rng.integers(0, 20, 3000)]
    db = db * np.where(rng.random(db.shape) < 0.05, -1, 1).astype(np.int8)
    q = db[:25] * np.where(rng.random((25, 128)) < 0.02, -1, 1).astype(np.int8)
    index = HammingIndex(db)
    _, exact = index.search(q, 10)
    _, approx = funnel_search(index, q, 10, stages=(16, 64, 128), shortlist=(600, 100))
    recall = np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(approx, exact)])
    assert recall >= 0.9


def test_default_shortlist():
    assert default_shortlist(100, (16, 64, 128), 69_000) == (5000, 1250)
    assert default_shortlist(10, (16, 128), 100) == (100,)
    assert default_shortlist(100, (16, 32, 64, 128), 2_000_000) == (40000, 10000, 2500)


def test_validation_errors():
    db = np.ones((10, 16), np.int8)
    with pytest.raises(ValueError, match="auto, faiss, numpy"):
        HammingIndex(db, backend="gpu")
    assert BACKENDS == ("auto", "faiss", "numpy")
    with pytest.raises(ValueError, match="multiple of 8"):
        HammingIndex(np.ones((4, 12)), backend="faiss")
    with pytest.raises(ValueError, match="binar"):
        HammingIndex(np.full((3, 8), 0.5))
    with pytest.raises(ValueError, match="empty"):
        HammingIndex(np.ones((0, 8)))
    index = HammingIndex(db)
    with pytest.raises(ValueError, match="16-bit"):
        index.search(np.ones((2, 8)), 3)
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.search(np.ones((2, 16)), 0)
    with pytest.raises(ValueError, match="radius"):
        index.range_search(np.ones((2, 16)), -1)
    with pytest.raises(ValueError, match="at most|holds 16-bit"):
        funnel_search(index, np.ones((2, 16)), 3, stages=(8, 32))
    with pytest.raises(ValueError, match="one size per stage"):
        funnel_search(index, np.ones((2, 16)), 3, stages=(8, 16), shortlist=(5, 4))
    with pytest.raises(ValueError, match=">= k"):
        funnel_search(index, np.ones((2, 16)), 3, stages=(8, 16), shortlist=(2,))
    with pytest.raises(ValueError, match="increasing"):
        funnel_search(index, np.ones((2, 16)), 3, stages=(16, 8), shortlist=(5,))
    with pytest.raises(TypeError, match="HammingIndex"):
        funnel_search(db, np.ones((2, 16)), 3)


def test_from_packed_matches_codes():
    rng = np.random.default_rng(6)
    q, db = tied_codes(rng, 80, 5, 13)
    a = HammingIndex(db, backend="numpy").search(q, 9)
    packed = pack_codes(db)
    packed[:, -1] |= 0b00000111  # junk in the padding bits must not count
    b = HammingIndex.from_packed(packed, 13).search(q, 9)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="shape"):
        HammingIndex.from_packed(packed, 24)


@pytest.mark.parametrize(
    ("direct_bits", "mask_bits", "few"),
    [(20, 32, 1), (0, 32, 1), (0, 0, 10**9), (0, 0, 1)],
)
def test_funnel_first_stage_paths(monkeypatch, direct_bits, mask_bits, few):
    # Hamming balls of flip masks (direct table / sorted lookup), scan of distinct prefixes,
    # scan of every item
    from nhl import retrieval

    monkeypatch.setattr(retrieval, "_DIRECT_TABLE_BITS", direct_bits)
    monkeypatch.setattr(retrieval, "_MASK_BITS", mask_bits)
    monkeypatch.setattr(retrieval, "_FEW_BUCKETS", few)
    rng = np.random.default_rng(7)
    q, db = tied_codes(rng, 500, 20, 64)
    index = HammingIndex(db)
    for stages in ((8, 64), (16, 32, 64)):
        dist, idx = funnel_search(index, q, 25, stages, [500] * (len(stages) - 1))
        expected_d, expected_i = brute_knn(q, db, 25)
        np.testing.assert_array_equal(dist, expected_d)
        np.testing.assert_array_equal(idx, expected_i)
        dist, idx = funnel_search(index, q, 25, stages, [60] * (len(stages) - 1))
        full = hamming_distances(q, db)
        np.testing.assert_array_equal(dist, np.take_along_axis(full, idx, axis=1))
        assert all(len(set(row)) == 25 for row in idx.tolist())


# --------------------------------------------------------------------------- distances, recall


@pytest.mark.parametrize("backend", BACKEND_PAIRS)
@pytest.mark.parametrize("bits", [None, 8, 13])
def test_distances_of_given_items(backend, bits):
    rng = np.random.default_rng(8)
    q, db = tied_codes(rng, 90, 7, 64)
    index = HammingIndex(db, backend=backend)
    ids = rng.integers(0, 90, size=(7, 11))
    d = index.distances(q, ids, bits=bits)
    b = 64 if bits is None else bits
    full = hamming_distances(q[:, :b], db[:, :b])
    assert d.dtype == np.int32 and d.shape == (7, 11)
    np.testing.assert_array_equal(d, np.take_along_axis(full, ids, axis=1))
    assert index.distances(q, np.zeros((7, 0), np.int64)).shape == (7, 0)


def test_distances_errors():
    index = HammingIndex(np.ones((10, 16), np.int8))
    q = np.ones((2, 16), np.int8)
    with pytest.raises(ValueError, match="shape"):
        index.distances(q, np.zeros((3, 4), np.int64))
    with pytest.raises(ValueError, match="0..9"):
        index.distances(q, np.full((2, 1), 10))
    with pytest.raises(TypeError, match="integer"):
        index.distances(q, np.zeros((2, 1)))
    with pytest.raises(ValueError, match="bits=32"):
        index.distances(q, np.zeros((2, 1), np.int64), bits=32)


def test_tie_aware_recall_by_hand():
    exact = np.array([[0, 1, 2, 2],      # e_k = 2, one place left among the items at distance 2
                      [0, 0, 0, 0],      # e_k = 0: any four exact matches are right
                      [1, 2, 3, 4]])     # no ties
    found = np.array([[0, 2, 2, 3],      # 0 (< 2) + min(2 at 2, 2 places) = 3 of 4
                      [0, 0, 0, 0],
                      [1, 2, 4, 5]])     # 1, 2 below 4; one at 4 with one place: 3 of 4
    np.testing.assert_allclose(tie_aware_recall(found, exact), [3 / 4, 1.0, 3 / 4])
    # more found items at e_k than places: capped
    np.testing.assert_allclose(tie_aware_recall([[2, 2, 2, 2]], [[0, 1, 2, 2]]), [2 / 4])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 30))
def test_tie_aware_recall_properties(seed, k):
    rng = np.random.default_rng(seed)
    q, db = tied_codes(rng, 80, 5, 16)
    k = min(k, 80)
    index = HammingIndex(db, backend="numpy")
    exact_d, exact_i = index.search(q, k)
    assert np.all(tie_aware_recall(exact_d, exact_d) == 1.0)  # the exact answer scores 1
    ids = np.stack([rng.choice(80, k, replace=False) for _ in range(len(q))])
    r = tie_aware_recall(index.distances(q, ids), exact_d)
    assert np.all((r >= 0) & (r <= 1))
    # never below the plain id overlap: every exact id found is also counted
    overlap = np.array([np.intersect1d(a, b).size / k for a, b in zip(ids, exact_i)])
    assert np.all(r >= overlap - 1e-12)


def test_tie_aware_recall_equals_overlap_without_ties():
    rng = np.random.default_rng(9)
    db = rng.choice(np.array([-1, 1], np.int8), size=(300, 128))
    q = rng.choice(np.array([-1, 1], np.int8), size=(4, 128))
    index = HammingIndex(db)
    exact_d, exact_i = index.search(q, 1)
    _, other = HammingIndex(db[:, :8]).search(q[:, :8], 1)
    r = tie_aware_recall(index.distances(q, other), exact_d)
    overlap = np.array([float(a[0] == b[0]) for a, b in zip(other, exact_i)])
    full = hamming_distances(q, db)
    unique_nn = [(row == row.min()).sum() == 1 for row in full]
    np.testing.assert_array_equal(r[unique_nn], overlap[unique_nn])


def test_tie_aware_recall_errors():
    with pytest.raises(ValueError, match="shape"):
        tie_aware_recall(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="sorted"):
        tie_aware_recall(np.zeros((1, 2)), [[3, 1]])
    with pytest.raises(ValueError, match="at least 1"):
        tie_aware_recall(np.zeros((2, 0)), np.zeros((2, 0)))


@pytest.mark.skipif(not _kernels.AVAILABLE, reason="needs numba")
def test_search_in_threads_equals_one_thread():
    """The compiled search and funnel spread blocks of queries over numba's threads; each
    block writes only its own rows, so the answer equals the one-thread answer exactly."""
    import numba

    rng = np.random.default_rng(5)
    centres = np.where(rng.random((6, 64)) < 0.5, 1, -1)
    db = centres[rng.integers(0, 6, 3000)] * np.where(rng.random((3000, 64)) < 0.2, -1, 1)
    q = db[rng.integers(0, 3000, 300)] * np.where(rng.random((300, 64)) < 0.1, -1, 1)
    index = HammingIndex(db, backend="numpy")
    old = numba.get_num_threads()
    out = {}
    try:
        for t in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(t)
            assert search_threads(len(q)) == min(t, len(q) // 64)
            out[t] = (*index.search(q, 10), *funnel_search(index, q, 10, (16, 64), (200,)),
                      *funnel_search(index, q, 10, (16,)))
    finally:
        numba.set_num_threads(old)
    for a, b in zip(out[1], out[max(out)]):
        np.testing.assert_array_equal(a, b)
    assert search_threads(10) == 1  # few queries: one thread


# --------------------------------------------------------------------------- funnel parts, keys, re-scoring


def _numpy_only(monkeypatch):
    import nhl.metrics

    monkeypatch.setattr(nhl.metrics, "USE_KERNELS", False)


@pytest.mark.parametrize("compiled", [True, False])
def test_shortlist_then_rerank_is_the_two_stage_funnel(compiled, monkeypatch):
    if not compiled:
        _numpy_only(monkeypatch)
    rng = np.random.default_rng(3)
    q, db = tied_codes(rng, 900, 25, 64)
    index = HammingIndex(db)
    cand = shortlist(index, q, 200, bits=16)
    assert cand.shape == (25, 200) and cand.dtype == np.int64
    assert all(len(set(row)) == 200 for row in cand)  # no item twice
    d16 = hamming_distances(q[:, :16], db[:, :16]).astype(np.int64)
    # buckets in increasing prefix distance: every item left out is at least as far as the farthest kept
    for r in range(25):
        kept = np.zeros(900, bool)
        kept[cand[r]] = True
        assert d16[r, ~kept].min() >= d16[r, kept].max()
    dist, ids = rerank(index, q, cand, 10)
    fd, fi = funnel_search(index, q, 10, (16, 64), (200,))
    np.testing.assert_array_equal(dist, fd)
    np.testing.assert_array_equal(ids, fi)
    full = hamming_distances(q, db).astype(np.int64)
    np.testing.assert_array_equal(dist, np.take_along_axis(full, ids, axis=1))
    key = dist.astype(np.int64) * 900 + ids
    assert (np.diff(key, axis=1) > 0).all()  # sorted by (distance, id)


def test_rerank_on_a_prefix_and_errors():
    rng = np.random.default_rng(4)
    q, db = tied_codes(rng, 300, 6, 32)
    index = HammingIndex(db)
    cand = np.tile(np.arange(300), (6, 1))
    dist, ids = rerank(index, q, cand, 300, bits=8)  # every item: the exact 8-bit ranking
    ref_d, ref_i = brute_knn(q[:, :8], db[:, :8], 300)
    np.testing.assert_array_equal(dist, ref_d)
    np.testing.assert_array_equal(ids, ref_i)
    assert rerank(index, q, cand[:, :5], 10)[0].shape == (6, 5)  # k above m: m
    with pytest.raises(ValueError, match="shape"):
        rerank(index, q, cand[:3], 5)
    with pytest.raises(ValueError, match="lie in"):
        rerank(index, q, cand + 1, 5)
    with pytest.raises(TypeError, match="integer"):
        rerank(index, q, cand.astype(float), 5)
    with pytest.raises(ValueError, match="bits=64"):
        shortlist(index, q, 5, bits=64)
    with pytest.raises(TypeError, match="HammingIndex"):
        shortlist(db, q, 5)


@pytest.mark.parametrize("compiled", [True, False])
def test_keyed_search_buckets_by_the_key_and_ranks_by_the_rest(compiled, monkeypatch):
    if not compiled:
        _numpy_only(monkeypatch)
    rng = np.random.default_rng(5)
    key = rng.choice(np.array([-1, 1], np.int8), size=(800, 16))
    key[:, 6:] = 1  # 64 distinct keys: buckets of several items
    code = rng.choice(np.array([-1, 1], np.int8), size=(800, 64))
    both = np.hstack([key, code])
    q = both[rng.integers(0, 800, 20)].copy()
    q[:, ::9] *= -1
    dist, ids = keyed_search(HammingIndex(both), q, 12, 16, 150)
    cand = shortlist(HammingIndex(key), q[:, :16], 150)  # the key's own index
    ref_d, ref_i = rerank(HammingIndex(code), q[:, 16:], cand, 12)  # re-ranked by the code alone
    np.testing.assert_array_equal(dist, ref_d)
    np.testing.assert_array_equal(ids, ref_i)
    # a shortlist of everything: the exact search on the code bits
    ed, ei = keyed_search(HammingIndex(both), q, 12, 16, 800)
    bd, bi = brute_knn(q[:, 16:], code, 12)
    np.testing.assert_array_equal(ed, bd)
    np.testing.assert_array_equal(ei, bi)
    with pytest.raises(ValueError, match="key_bits"):
        keyed_search(HammingIndex(both), q, 5, 80, 100)
    with pytest.raises(ValueError, match=">= k"):
        keyed_search(HammingIndex(both), q, 50, 16, 20)


def test_rescore_orders_the_shortlist_by_inner_product():
    rng = np.random.default_rng(6)
    qv = rng.standard_normal((7, 12)).astype(np.float32)
    dv = rng.standard_normal((60, 12)).astype(np.float32)
    dv[5] = dv[9]  # a tie: broken by id
    cand = np.stack([rng.permutation(60)[:30] for _ in range(7)])
    cand[:, :2] = [9, 5]
    scores, ids = rescore(qv, dv, cand, 8)
    full = qv @ dv.T
    for r in range(7):
        order = sorted(cand[r], key=lambda j: (-full[r, j], j))[:8]
        assert ids[r].tolist() == order
        np.testing.assert_allclose(scores[r], full[r, order], rtol=1e-5)
    codes = np.where(dv >= 0, 1, -1).astype(np.int8)  # an asymmetric score: real query, +-1 codes
    s2, i2 = rescore(qv, codes, cand, 8)
    np.testing.assert_allclose(s2, np.take_along_axis(qv @ codes.T.astype(np.float32), i2, 1),
                               rtol=1e-5)
    with pytest.raises(ValueError, match="dimensions"):
        rescore(qv[:, :5], dv, cand, 3)
    with pytest.raises(ValueError, match="NaN"):
        rescore(np.full((7, 12), np.nan), dv, cand, 3)


def test_inner_product_search_and_overlap_recall():
    rng = np.random.default_rng(7)
    qv = rng.standard_normal((9, 16)).astype(np.float32)
    dv = rng.standard_normal((500, 16)).astype(np.float32)
    scores, ids = inner_product_search(qv, dv, 20)
    ref = np.argsort(-(qv @ dv.T), axis=1, kind="stable")[:, :20]
    np.testing.assert_array_equal(ids, ref)
    assert (np.diff(scores, axis=1) <= 0).all()
    np.testing.assert_array_equal(overlap_recall(ids, ids), np.ones(9))
    half = np.where(np.arange(20) < 10, ids, 10_000 + np.arange(20))  # ten of twenty found
    np.testing.assert_allclose(overlap_recall(half, ids), 0.5)
    missing = np.full((9, 20), -1)  # -1: nothing found there
    np.testing.assert_array_equal(overlap_recall(missing, ids), np.zeros(9))
    np.testing.assert_allclose(overlap_recall(ids[:, :5], ids), 0.25)  # five of twenty
    with pytest.raises(ValueError, match="same N_q"):
        overlap_recall(ids[:3], ids)

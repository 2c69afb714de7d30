"""Tests for nhl.metrics: worked examples, brute force over tie orderings, properties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nhl import metrics as M

# --------------------------------------------------------------------------- helpers

# One query [+1, +1]; the database sits at distances 0, 1, 1, 2 from it.
Q = np.array([[1, 1]], dtype=np.int8)
DB = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], dtype=np.int8)


def one_hot(classes, n_classes=2):
    return np.eye(n_classes, dtype=np.uint8)[np.asarray(classes)]


def loop_ap(q, db, ql, dl, topk=None):
    """Straightforward per-query AP with ties broken by database index."""
    out = []
    for i in range(len(q)):
        d = (q.shape[1] - db.astype(int) @ q[i].astype(int)) // 2
        rel = (dl @ ql[i]) > 0
        ranked = rel[np.argsort(d, kind="stable")][:topk]
        hits = np.cumsum(ranked)
        positions = np.arange(1, ranked.size + 1)
        out.append(np.mean((hits / positions)[ranked]) if ranked.any() else 0.0)
    return np.array(out)


def brute_tie_average(q, db, ql, dl, topk=None):
    """Mean AP over every ordering of the items inside each tie group (tiny inputs only)."""
    dist = M.hamming_distances(q, db)
    out = []
    for i in range(len(q)):
        groups = [np.flatnonzero(dist[i] == v) for v in np.unique(dist[i])]
        rel = (dl @ ql[i]) > 0
        aps = []
        for perms in itertools.product(*(itertools.permutations(g) for g in groups)):
            ranked = rel[np.concatenate(perms)][:topk]
            hits = np.cumsum(ranked)
            pos = np.arange(1, ranked.size + 1)
            aps.append(np.mean((hits / pos)[ranked]) if ranked.any() else 0.0)
        out.append(np.mean(aps))
    return np.array(out)


def random_case(rng, n_q, n_db, bits, n_classes, multi=False):
    q = rng.choice(np.array([-1, 1], np.int8), size=(n_q, bits))
    db = rng.choice(np.array([-1, 1], np.int8), size=(n_db, bits))
    if multi:
        ql = (rng.random((n_q, n_classes)) < 0.4).astype(np.uint8)
        dl = (rng.random((n_db, n_classes)) < 0.4).astype(np.uint8)
    else:
        ql = one_hot(rng.integers(0, n_classes, n_q), n_classes)
        dl = one_hot(rng.integers(0, n_classes, n_db), n_classes)
    return q, db, ql, dl


# --------------------------------------------------------------------------- worked examples


def test_hamming_distances_small():
    d = M.hamming_distances(Q, DB)
    assert d.tolist() == [[0, 1, 1, 2]]
    assert np.issubdtype(d.dtype, np.signedinteger)


def test_hamming_distances_multiword_matches_matmul():
    rng = np.random.default_rng(0)
    for bits in (5, 8, 13, 16, 31, 64, 100, 130, 300):
        q, db, _, _ = random_case(rng, 7, 11, bits, 2)
        expected = (bits - q.astype(int) @ db.astype(int).T) // 2
        np.testing.assert_array_equal(M.hamming_distances(q, db, chunk_size=3), expected)


def test_worked_example_first_item_relevant():
    # relevance 1, 0, 1, 0 with the tie group {1, 2} at distance 1.
    ql, dl = one_hot([0]), one_hot([0, 1, 0, 1])
    # index order: relevant at ranks 1 and 3 -> (1/1 + 2/3) / 2
    assert M.mean_average_precision(Q, DB, ql, dl, ties="index") == pytest.approx(5 / 6)
    # random order of the tie: ranks (1, 3) or (1, 2) -> (5/6 + 1) / 2
    assert M.mean_average_precision(Q, DB, ql, dl) == pytest.approx(11 / 12)


def test_worked_example_topk_cuts_tie_group():
    # relevance 0, 0, 1, 0: the only relevant item sits in the tie group at distance 1.
    ql, dl = one_hot([0]), one_hot([1, 1, 0, 1])
    assert M.mean_average_precision(Q, DB, ql, dl, ties="index") == pytest.approx(1 / 3)
    assert M.mean_average_precision(Q, DB, ql, dl) == pytest.approx((1 / 3 + 1 / 2) / 2)
    # top 2 = item 0 plus one tied item: the relevant one (AP 1/2) half of the time, else 0.
    assert M.mean_average_precision(Q, DB, ql, dl, topk=2) == pytest.approx(1 / 4)
    assert M.mean_average_precision(Q, DB, ql, dl, topk=2, ties="index") == 0.0
    # topk beyond the database = the whole database
    assert M.mean_average_precision(Q, DB, ql, dl, topk=99) == pytest.approx(5 / 12)


def test_worked_example_pr_by_radius_and_at_n():
    ql, dl = one_hot([0]), one_hot([0, 1, 0, 1])
    precision, recall = M.precision_recall_by_radius(Q, DB, ql, dl)
    np.testing.assert_allclose(precision, [1.0, 2 / 3, 2 / 4])
    np.testing.assert_allclose(recall, [0.5, 1.0, 1.0])
    assert M.precision_within_radius(Q, DB, ql, dl, radius=1) == pytest.approx(2 / 3)
    assert M.precision_within_radius(Q, DB, ql, dl, radius=10) == pytest.approx(0.5)
    p, r = M.precision_recall_at_n(Q, DB, ql, dl, n=(1, 2, 4))
    # expected relevant in the first 2: item 0 plus half of the tie group's one relevant item
    np.testing.assert_allclose(p, [1.0, 1.5 / 2, 2 / 4])
    np.testing.assert_allclose(r, [0.5, 0.75, 1.0])
    p, r = M.precision_recall_at_n(Q, DB, ql, dl, n=(1, 2, 4), ties="index")
    np.testing.assert_allclose(p, [1.0, 0.5, 0.5])
    np.testing.assert_allclose(r, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(M.precision_at_n(Q, DB, ql, dl, n=2), [0.75])
    np.testing.assert_allclose(M.recall_at_n(Q, DB, ql, dl, n=2, ties="index"), [0.5])


def test_empty_radius_retrieval_counts_zero_precision():
    ql, dl = one_hot([0]), one_hot([0])
    precision, recall = M.precision_recall_by_radius(Q, np.array([[-1, -1]]), ql, dl)
    np.testing.assert_allclose(precision, [0.0, 0.0, 1.0])
    np.testing.assert_allclose(recall, [0.0, 0.0, 1.0])


def test_query_without_relevant_items_scores_zero():
    ql, dl = one_hot([0]), one_hot([1, 1, 1, 1])
    for ties in M.TIES:
        assert M.mean_average_precision(Q, DB, ql, dl, ties=ties) == 0.0


# --------------------------------------------------------------------------- brute force


@pytest.mark.parametrize("seed", range(12))
def test_tie_average_equals_mean_over_all_orderings(seed):
    rng = np.random.default_rng(seed)
    n_db = int(rng.integers(2, 8))
    q, db, ql, dl = random_case(rng, 3, n_db, 3, 2, multi=seed % 3 == 0)
    for topk in (None, 1, 2, 3, 5):
        expected = brute_tie_average(q, db, ql, dl, topk)
        got = M.average_precision(q, db, ql, dl, topk=topk)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("topk", [None, 1, 7, 50, 199, 200, 10_000])
def test_index_order_equals_loop(multi, topk):
    rng = np.random.default_rng(7)
    q, db, ql, dl = random_case(rng, 20, 200, 12, 4, multi=multi)
    got = M.average_precision(q, db, ql, dl, topk=topk, ties="index", chunk_size=3)
    np.testing.assert_allclose(got, loop_ap(q, db, ql, dl, topk), rtol=0, atol=1e-12)


def test_index_precision_at_n_equals_loop():
    rng = np.random.default_rng(3)
    q, db, ql, dl = random_case(rng, 15, 120, 6, 3)
    dist = M.hamming_distances(q, db)
    rel = (ql.astype(int) @ dl.T.astype(int)) > 0
    ns = (1, 10, 50, 500)
    hits = np.array(
        [[rel[i][np.argsort(dist[i], kind="stable")][:n].sum() for n in ns] for i in range(15)]
    )
    p, r = M.precision_recall_at_n(q, db, ql, dl, n=ns, ties="index")
    np.testing.assert_allclose(p, (hits / np.minimum(ns, 120)).mean(0))
    has = rel.sum(1) > 0
    np.testing.assert_allclose(r, (hits[has] / rel.sum(1)[has, None]).mean(0))


def test_pr_by_radius_equals_loop():
    rng = np.random.default_rng(4)
    q, db, ql, dl = random_case(rng, 10, 60, 7, 3, multi=True)
    dist = M.hamming_distances(q, db)
    rel = (ql.astype(int) @ dl.T.astype(int)) > 0
    prec = np.zeros((10, 8))
    rec = []
    for i in range(10):
        for r in range(8):
            ret = dist[i] <= r
            prec[i, r] = (ret & rel[i]).sum() / ret.sum() if ret.any() else 0.0
        if rel[i].any():
            rec.append([(dist[i][rel[i]] <= r).mean() for r in range(8)])
    p, r = M.precision_recall_by_radius(q, db, ql, dl)
    np.testing.assert_allclose(p, prec.mean(0))
    np.testing.assert_allclose(r, np.mean(rec, axis=0))


def test_tie_average_precision_at_n_equals_brute_force():
    rng = np.random.default_rng(5)
    q, db, ql, dl = random_case(rng, 2, 6, 2, 2)
    dist = M.hamming_distances(q, db)
    rel = (ql.astype(int) @ dl.T.astype(int)) > 0
    for i in range(2):
        groups = [np.flatnonzero(dist[i] == v) for v in np.unique(dist[i])]
        orders = [
            np.concatenate(p) for p in itertools.product(*map(itertools.permutations, groups))
        ]
        for n in (1, 2, 3, 5):
            expected = np.mean([rel[i][o][:n].sum() for o in orders]) / n
            got = M.precision_at_n(q[i : i + 1], db, ql[i : i + 1], dl, n=n)
            np.testing.assert_allclose(got, [expected])


# --------------------------------------------------------------------------- properties

codes_strategy = st.integers(0, 2**32 - 1).map(np.random.default_rng)


@settings(max_examples=40, deadline=None)
@given(rng=codes_strategy, topk=st.one_of(st.none(), st.integers(1, 40)))
def test_map_in_unit_interval(rng, topk):
    q, db, ql, dl = random_case(
        rng, 5, int(rng.integers(1, 30)), int(rng.integers(1, 10)), 3, multi=bool(rng.integers(2))
    )
    for ties in M.TIES:
        value = M.mean_average_precision(q, db, ql, dl, topk=topk, ties=ties)
        assert 0.0 <= value <= 1.0 + 1e-12


@settings(max_examples=40, deadline=None)
@given(rng=codes_strategy, topk=st.one_of(st.none(), st.integers(1, 30)))
def test_tie_average_invariant_to_database_order(rng, topk):
    q, db, ql, dl = random_case(
        rng, 4, int(rng.integers(1, 30)), int(rng.integers(1, 6)), 3, multi=bool(rng.integers(2))
    )
    perm = rng.permutation(len(db))
    a = M.average_precision(q, db, ql, dl, topk=topk)
    b = M.average_precision(q, db[perm], ql, dl[perm], topk=topk)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(rng=codes_strategy, topk=st.one_of(st.none(), st.integers(1, 20)))
def test_tie_modes_agree_without_ties(rng, topk):
    bits = 16
    q = rng.choice(np.array([-1, 1], np.int8), size=(1, bits))
    flips = rng.permutation(bits + 1)[: int(rng.integers(1, bits + 2))]  # distinct distances
    db = np.repeat(q, flips.size, axis=0)
    for row, f in enumerate(flips):
        db[row, :f] *= -1
    ql = one_hot([0], 3)
    dl = one_hot(rng.integers(0, 3, flips.size), 3)
    a = M.mean_average_precision(q, db, ql, dl, topk=topk)
    b = M.mean_average_precision(q, db, ql, dl, topk=topk, ties="index")
    assert a == pytest.approx(b, abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(rng=codes_strategy)
def test_perfect_codes_score_one(rng):
    n_classes, bits = 4, 8
    centres = np.array([[1] * 8, [-1] * 8, [1, -1] * 4, [-1, 1] * 4], np.int8)
    yq = rng.integers(0, n_classes, 6)
    ydb = rng.integers(0, n_classes, 25)
    q, db = centres[yq], centres[ydb]
    ql, dl = one_hot(yq, n_classes), one_hot(ydb, n_classes)
    for ties in M.TIES:
        per_query = M.average_precision(q, db, ql, dl, ties=ties)
        has_rel = np.isin(yq, ydb)
        np.testing.assert_allclose(per_query[has_rel], 1.0)
        np.testing.assert_allclose(per_query[~has_rel], 0.0)
    assert M.map_per_length(q, db, ql, dl, [bits])[bits] == pytest.approx(np.isin(yq, ydb).mean())


@settings(max_examples=30, deadline=None)
@given(rng=codes_strategy)
def test_recall_by_radius_monotone_and_complete(rng):
    bits = int(rng.integers(1, 12))
    q, db, ql, dl = random_case(rng, 4, int(rng.integers(1, 40)), bits, 3, multi=True)
    precision, recall = M.precision_recall_by_radius(q, db, ql, dl)
    assert precision.shape == recall.shape == (bits + 1,)
    assert np.all(np.diff(recall) >= -1e-12)
    rel = (ql.astype(int) @ dl.T.astype(int)) > 0
    if rel.any(axis=1).any():
        assert recall[-1] == pytest.approx(1.0)
    assert precision[-1] == pytest.approx(rel.mean(axis=1).mean())


# --------------------------------------------------------------------------- API behaviour


def test_map_per_length_uses_prefixes():
    rng = np.random.default_rng(11)
    q, db, ql, dl = random_case(rng, 12, 90, 32, 3)
    table = M.map_table(q, db, ql, dl, [4, 8, 32], topk=20)
    for bits in (4, 8, 32):
        for ties in M.TIES:
            expected = M.mean_average_precision(q[:, :bits], db[:, :bits], ql, dl, 20, ties)
            assert table[ties][bits] == pytest.approx(expected, abs=1e-12)
    assert M.map_per_length(q, db, ql, dl, [4, 8], topk=20, ties="index") == {
        4: table["index"][4],
        8: table["index"][8],
    }


def test_chunking_torch_and_binary_inputs_do_not_change_results():
    rng = np.random.default_rng(12)
    q, db, ql, dl = random_case(rng, 9, 50, 10, 3, multi=True)
    ref = M.average_precision(q, db, ql, dl)
    np.testing.assert_allclose(M.average_precision(q, db, ql, dl, chunk_size=1), ref)
    as_torch = [torch.from_numpy(x.astype(np.float32)) for x in (q, db, ql, dl)]
    np.testing.assert_allclose(M.average_precision(*as_torch), ref)
    np.testing.assert_allclose(M.average_precision((q + 1) // 2, (db + 1) // 2, ql, dl), ref)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"q_codes": np.ones((2, 4))}, ValueError, "same code length"),
        ({"q_labels": one_hot([0, 1, 0])}, ValueError, "rows"),
        ({"db_labels": np.ones((4, 3), np.uint8)}, ValueError, "same classes"),
        ({"db_codes": np.ones((0, 2))}, ValueError, "empty"),
        ({"topk": 0}, ValueError, "topk must be >= 1"),
        ({"topk": 2.5}, TypeError, "topk"),
        ({"ties": "random"}, ValueError, "average, index"),
        ({"q_codes": np.array([[0.3, 1.0]])}, ValueError, "binarize"),
        ({"q_labels": np.array([0])}, ValueError, "one-hot"),
        ({"chunk_size": 0}, ValueError, "chunk_size"),
    ],
)
def test_validation_errors(kwargs, error, match):
    args = {
        "q_codes": np.array([[1, -1]]),
        "db_codes": DB,
        "q_labels": one_hot([0]),
        "db_labels": one_hot([0, 1, 0, 1]),
    } | kwargs
    with pytest.raises(error, match=match):
        M.mean_average_precision(**args)


def test_validation_of_lengths_and_cutoffs():
    ql, dl = one_hot([0]), one_hot([0, 1, 0, 1])
    with pytest.raises(ValueError, match="only 2"):
        M.map_per_length(Q, DB, ql, dl, [1, 4])
    with pytest.raises(ValueError, match="increasing"):
        M.map_per_length(Q, DB, ql, dl, [2, 1])
    with pytest.raises(ValueError, match="n is empty"):
        M.precision_recall_at_n(Q, DB, ql, dl, n=())
    with pytest.raises(ValueError, match="radius"):
        M.precision_within_radius(Q, DB, ql, dl, radius=-1)
    with pytest.raises(ValueError, match="average, index"):
        M.map_table(Q, DB, ql, dl, [2], ties=("average", "best"))

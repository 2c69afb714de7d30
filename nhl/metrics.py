"""Retrieval metrics for binary hash codes: mAP, precision and recall (docs/method.md §7).

Relevance: a database item is relevant to a query when their multi-hot labels share a class.
Ranking: the database sorted by Hamming distance to the query. Distances are small integers
(0..L), so almost everything here is computed from per-query *distance histograms* of all and
of relevant items, by counting rather than sorting:

* ``ties="average"`` (the primary number): the exact expectation of AP over uniformly random
  orderings of items at equal distance, in closed form (McSherry & Najork's tie-aware AP,
  extended to a top-K cut that splits a tie group, see :func:`_tie_aware_ap`).
* ``ties="index"``: ties broken by database index (a stable sort), the number to set beside
  published tables, which sort ties arbitrarily. This one needs the actual order, so it uses a
  stable radix argsort of each query's ``uint8`` distances.

Distances come from XOR + popcount on packed words, a small block of queries at a time, so
memory stays at a few ``chunk x N_db`` byte arrays. With numba installed each query is three
compiled passes over the database (:mod:`nhl._kernels`: distances; histogram; a walk in index
order with one counter per distance value, which gives every stable rank without sorting);
``USE_KERNELS = False`` selects the numpy path, which gives the same numbers. Codes are +-1 (0/1 accepted), labels
multi-hot 0/1; inputs may be numpy or torch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import digamma, gammaln

from . import _kernels
from .validation import (
    check_bit_list,
    check_choice,
    check_codes,
    check_labels,
    check_positive_int,
)

TIES: tuple[str, ...] = ("average", "index")
"""Valid ``ties`` options: ``"average"`` (tie-aware expectation) and ``"index"`` (stable)."""

_CHUNK_ELEMENTS = 1 << 17  # distances per block of queries (XOR buffers stay in cache)
_RELEVANCE_CACHE = 64  # relevance masks kept (one per distinct query label pattern)
_GRID_ELEMENTS = 1 << 22  # rows x m-values per block of the hypergeometric sums
_KERNEL_QUERY_BLOCK = 64  # queries per call of the compiled scan (distinct masks stacked)
USE_KERNELS = True
"""Use the compiled passes of :mod:`nhl._kernels` when numba is installed (set False to force
the numpy paths, which give the same numbers; the tests compare the two)."""


def use_kernels(bits: int) -> bool:
    """Whether the compiled kernels (:mod:`nhl._kernels`) serve codes of ``bits`` bits."""
    return USE_KERNELS and _kernels.AVAILABLE and bits <= 255


# --------------------------------------------------------------------------- validation


def _check_code_pair(q_codes, db_codes) -> tuple[np.ndarray, np.ndarray]:
    q = check_codes(q_codes, "q_codes")
    db = check_codes(db_codes, "db_codes")
    if q.shape[1] != db.shape[1]:
        raise ValueError(
            f"q_codes have {q.shape[1]} bits but db_codes have {db.shape[1]}; queries and "
            "database must be encoded with the same code length"
        )
    return q, db


def _check_inputs(q_codes, db_codes, q_labels, db_labels):
    q, db = _check_code_pair(q_codes, db_codes)
    ql = check_labels(q_labels, "q_labels", n_items=q.shape[0])
    dl = check_labels(db_labels, "db_labels", n_items=db.shape[0])
    if ql.shape[1] == 0:
        raise ValueError(
            "q_labels have 0 classes; labels must be multi-hot over at least one class"
        )
    if ql.shape[1] != dl.shape[1]:
        raise ValueError(
            f"q_labels have {ql.shape[1]} classes but db_labels have {dl.shape[1]}; both must "
            "be multi-hot over the same classes"
        )
    return q, db, ql, dl


def _check_topk(topk, n_db: int) -> int | None:
    """``None`` or ``topk >= n_db`` both mean the whole database (returned as ``None``)."""
    topk = check_positive_int(topk, "topk", allow_none=True)
    if topk is not None and topk >= n_db:
        return None
    return topk


def _check_bits_for(bit_list, max_bits: int) -> tuple[int, ...]:
    bits = check_bit_list(bit_list)
    if bits[-1] > max_bits:
        raise ValueError(
            f"bit_list asks for {bits[-1]} bits but the codes have only {max_bits}; "
            f"use lengths <= {max_bits}"
        )
    return bits


# --------------------------------------------------------------------------- distances


def _word_dtype(bits: int) -> np.dtype:
    """Narrowest unsigned word holding ``bits`` bits (uint64 words beyond 64 bits)."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if bits <= 8 * np.dtype(dtype).itemsize:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def pack_words(codes: np.ndarray, bits: int) -> np.ndarray:
    """(W, N) words holding the first ``bits`` bits of each code (+1 -> 1), zero padded.

    Queries and database are packed the same way, so popcount(q ^ x) is the Hamming
    distance (padding bits are 0 on both sides).
    """
    packed = np.packbits(codes[:, :bits] > 0, axis=1)
    return np.ascontiguousarray(words_from_packed(packed, bits).T)


def words_from_packed(packed: np.ndarray, bits: int) -> np.ndarray:
    """(N, W) words holding the first ``bits`` bits of ``np.packbits`` rows, zero padded.

    A view (no copy) when ``bits`` fills whole words of the chosen width.
    """
    dtype = _word_dtype(bits)
    n_bytes = -(-bits // 8)
    width = -(-n_bytes // dtype.itemsize) * dtype.itemsize
    if bits % (8 * dtype.itemsize) == 0 and packed.shape[1] >= width:
        return packed[:, :width].view(dtype)
    buf = np.zeros((packed.shape[0], width), np.uint8)
    buf[:, :n_bytes] = packed[:, :n_bytes]
    if bits % 8:
        buf[:, n_bytes - 1] &= np.uint8((0xFF << (8 - bits % 8)) & 0xFF)
    return buf.view(dtype)


def _dist_dtype(bits: int) -> np.dtype:
    return np.dtype(np.uint8 if bits <= 255 else (np.uint16 if bits <= 65535 else np.uint32))


def distance_block(q_words: np.ndarray, db_words: np.ndarray, bits: int) -> np.ndarray:
    """Distances of a few queries (words ``(W, n_q)``) to the database (``(W, N)``) by
    XOR + popcount, in the smallest unsigned dtype (``uint8`` up to 255 bits)."""
    n_q, n_db = q_words.shape[1], db_words.shape[1]
    out = np.empty((n_q, n_db), _dist_dtype(bits))
    xor = np.empty((n_q, n_db), db_words.dtype)
    tmp = np.empty((n_q, n_db), np.uint8) if q_words.shape[0] > 1 else None
    for w in range(q_words.shape[0]):
        np.bitwise_xor(q_words[w][:, None], db_words[w][None, :], out=xor)
        if w == 0:
            np.bitwise_count(xor, out=out)
        else:
            np.bitwise_count(xor, out=tmp)
            out += tmp
    return out


def hamming_distances(q_codes, db_codes, chunk_size: int | None = None) -> np.ndarray:
    """Integer Hamming distances between every query and every database code (docs/method.md §7).

    Bits are packed into machine words and compared by XOR + popcount, a chunk of queries at a
    time. Returns an ``int16`` array (``int32`` beyond 32,767 bits) of shape ``(N_q, N_db)``;
    for large inputs iterate over query chunks yourself to bound memory.
    """
    q, db = _check_code_pair(q_codes, db_codes)
    bits = q.shape[1]
    out = np.empty((q.shape[0], db.shape[0]), np.int16 if bits < 2**15 else np.int32)
    q_words, db_words = pack_words(q, bits), pack_words(db, bits)
    for sl in _chunks(q.shape[0], db.shape[0], chunk_size):
        out[sl] = distance_block(q_words[:, sl], db_words, bits)
    return out


def _chunks(n_q: int, n_db: int, chunk_size: int | None) -> Iterator[slice]:
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // max(n_db, 1))
    else:
        chunk_size = check_positive_int(chunk_size, "chunk_size")
    for start in range(0, n_q, chunk_size):
        yield slice(start, min(start + chunk_size, n_q))


# --------------------------------------------------------------------------- the engine


@dataclass
class _Scan:
    """What one pass over the database gives per query (rows = queries)."""

    hist_all: np.ndarray | None = None  # (N_q, bits + 1) items at each distance
    hist_rel: np.ndarray | None = None  # (N_q, bits + 1) relevant items at each distance
    index_ap: np.ndarray | None = None  # (N_q,) AP@topk in index order
    index_hits: np.ndarray | None = None  # (N_q, len(ns)) relevant among first n, index order


class _Evaluator:
    """One query set against one database: the shared work of every metric.

    Relevance goes through the distinct label rows ("patterns") of the database: a query's
    relevance to all items is ``query_patterns[pattern_of_item]``. For each length the database
    is scanned once per chunk of queries; per query (a row that stays in cache) it takes
    distance histograms of all and of relevant items by ``bincount`` and, for index order, a
    stable radix ``argsort`` of the ``uint8`` distances.
    """

    def __init__(self, q, db, ql, dl, chunk_size: int | None):
        self.q, self.db, self.ql = q, db, ql
        self.n_q, self.n_db = q.shape[0], db.shape[0]
        self.chunk_size = check_positive_int(chunk_size, "chunk_size", allow_none=True)
        patterns, inverse = _distinct_rows(dl)
        self.patterns = patterns.astype(np.int64)  # (P, C)
        self.n_patterns = patterns.shape[0]
        self.pattern_of_item = inverse
        self.pattern_counts = np.bincount(inverse, minlength=self.n_patterns).astype(np.int64)
        self._relevance_cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    def chunks(self) -> Iterator[slice]:
        return _chunks(self.n_q, self.n_db, self.chunk_size)

    def query_patterns(self, sl: slice) -> np.ndarray:
        """(chunk, P) bool: which database label patterns are relevant to each query."""
        return (self.ql[sl].astype(np.int64) @ self.patterns.T) > 0  # integer: no BLAS threads

    def n_relevant(self) -> np.ndarray:
        """Number of relevant database items per query (whole database)."""
        out = np.empty(self.n_q, np.int64)
        for sl in self.chunks():
            out[sl] = self.query_patterns(sl).astype(np.int64) @ self.pattern_counts
        return out

    def scan(
        self,
        bits: int,
        hist: bool = False,
        index: bool = False,
        topk: int | None = None,
        ns: Sequence[int] = (),
    ) -> _Scan:
        """One pass over the database at ``bits`` bits (prefixes of the codes).

        ``hist``: per-query histograms of all / relevant items by distance. ``index``: AP@topk
        in stable index order, and the relevant counts among the first ``n`` for ``n`` in
        ``ns``.
        """
        nb = bits + 1
        res = _Scan()
        if hist:
            res.hist_all = np.empty((self.n_q, nb), np.int64)
            res.hist_rel = np.empty((self.n_q, nb), np.int64)
        if index:
            res.index_ap = np.zeros(self.n_q)
            res.index_hits = np.zeros((self.n_q, len(ns)), np.int64)
        limit = None  # only the first ``limit`` ranks are looked at (all when hist is wanted)
        if index and not hist:
            limit = max([self.n_db if topk is None else topk, *ns])
            limit = None if limit >= self.n_db else limit
        q_words, db_words = pack_words(self.q, bits), pack_words(self.db, bits)
        if use_kernels(bits):
            self._scan_compiled(res, q_words, db_words, nb, hist, index, topk, ns)
            return res
        for sl in self.chunks():
            dist = distance_block(q_words[:, sl], db_words, bits)
            qp = self.query_patterns(sl)
            for i in range(dist.shape[0]):
                row, d = sl.start + i, dist[i]
                mask, items = self._relevant(qp[i])
                if hist:
                    res.hist_all[row] = _bincount(d, nb)
                    res.hist_rel[row] = _bincount(d.take(items), nb)
                if not index:
                    continue
                order = np.argsort(d, kind="stable")  # radix sort: ties keep index order
                if limit is not None:
                    order = order[:limit]
                pos = np.flatnonzero(mask.take(order))  # 0-based ranks of relevant items
                top = pos if topk is None else pos[: np.searchsorted(pos, topk)]
                if top.size:
                    res.index_ap[row] = np.mean(np.arange(1.0, top.size + 1.0) / (top + 1.0))
                if ns:
                    res.index_hits[row] = np.searchsorted(pos, ns)
        return res

    def _scan_compiled(self, res, q_words, db_words, nb, hist, index, topk, ns) -> None:
        """:meth:`scan` by the compiled per-query passes of :mod:`nhl._kernels` (same numbers).

        Queries with the same prefix code and the same labels have the same answer,
        so each distinct pair is evaluated once (short prefixes repeat a lot). They go in
        blocks; a block's distinct relevance masks are stacked once (one per class for
        single-label data) and each query points at its mask.
        """
        labels, pattern_of_query = _distinct_rows(self.ql)  # same labels, same relevance
        key = np.concatenate([q_words.T, pattern_of_query[:, None].astype(q_words.dtype)], 1)
        _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        n_u = first.size
        hist_all = np.empty((n_u, nb), np.int64) if hist else np.empty((0, nb), np.int64)
        hist_rel = np.empty((n_u, nb), np.int64) if hist else np.empty((0, nb), np.int64)
        index_ap = np.empty(n_u) if index else np.empty(0)
        index_hits = np.empty((n_u, len(ns)), np.int64) if index else np.empty((0, 0), np.int64)
        ns_arr = np.asarray(ns, np.int64)
        unique_words = np.ascontiguousarray(q_words[:, first])
        unique_patterns = pattern_of_query[first]
        step = self.chunk_size or _KERNEL_QUERY_BLOCK
        for start in range(0, n_u, step):
            sl = slice(start, min(start + step, n_u))
            ids, mask_of_query = np.unique(unique_patterns[sl], return_inverse=True)
            relevant = (labels[ids].astype(np.int64) @ self.patterns.T) > 0
            masks = np.stack([self._relevant(row)[0] for row in relevant]).view(np.uint8)
            _kernels.evaluate_rows(
                np.ascontiguousarray(unique_words[:, sl]),
                db_words,
                masks,
                mask_of_query.reshape(-1).astype(np.intp),
                nb,
                hist,
                index,
                -1 if topk is None else int(topk),
                ns_arr,
                hist_all[sl] if hist else hist_all,
                hist_rel[sl] if hist else hist_rel,
                index_ap[sl] if index else index_ap,
                index_hits[sl] if index else index_hits,
            )
        if hist:
            res.hist_all[:] = hist_all[inverse]
            res.hist_rel[:] = hist_rel[inverse]
        if index:
            res.index_ap[:] = index_ap[inverse]
            res.index_hits[:] = index_hits[inverse]

    def _relevant(self, query_patterns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Relevance mask over the database and the relevant item indices for one query.

        Cached by the query's pattern relevance (one entry per class for single-label data).
        """
        key = query_patterns.tobytes()
        hit = self._relevance_cache.get(key)
        if hit is None:
            mask = query_patterns.take(self.pattern_of_item)
            hit = (mask, np.flatnonzero(mask))
            if len(self._relevance_cache) >= _RELEVANCE_CACHE:
                self._relevance_cache.pop(next(iter(self._relevance_cache)))
            self._relevance_cache[key] = hit
        return hit


def _distinct_rows(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of a 0/1 matrix and each row's index among them (``np.unique(axis=0)``
    without its slow structured sort: rows are packed into 64-bit words and lexsorted)."""
    packed = np.packbits(labels, axis=1)
    width = -(-packed.shape[1] // 8) * 8
    buf = np.zeros((labels.shape[0], width), np.uint8)
    buf[:, : packed.shape[1]] = packed
    words = buf.view(np.uint64)
    order = np.lexsort(words.T[::-1])
    ranked = words[order]
    new = np.ones(len(order), bool)
    new[1:] = (ranked[1:] != ranked[:-1]).any(axis=1)
    inverse = np.empty(len(order), np.intp)
    inverse[order] = np.cumsum(new) - 1
    return labels[order[new]], inverse


def _bincount(values: np.ndarray, length: int) -> np.ndarray:
    """Histogram of small non-negative integers 0..length-1."""
    return np.bincount(values, minlength=length)


# --------------------------------------------------------------------------- tie-aware AP


def _delta_h(a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """H(a + c) - H(a) = sum_{j=1..c} 1/(a + j), via digamma (harmonic numbers)."""
    return digamma(a + c + 1.0) - digamma(a + 1.0)


def _window_sum(a, big_r, c, rho, x):
    """Expected sum of precisions at the relevant positions among the first ``c`` places of a
    tie group that starts after ``a`` items of which ``big_r`` are relevant.

    Each place is relevant with probability ``rho``; given that, each earlier place of the
    window is relevant with probability ``x``. Sum over j = 1..c of
    ``rho * (big_r + 1 + (j - 1) x) / (a + j)``, written with harmonic numbers.
    """
    dh = _delta_h(a, c)
    return rho * ((big_r + 1.0) * dh + x * (c - (a + 1.0) * dh))


def _ratio(num, den):
    num, den = np.broadcast_arrays(np.asarray(num, np.float64), np.asarray(den, np.float64))
    return np.divide(num, den, out=np.zeros(num.shape), where=den > 0)


def _tie_aware_ap(h_all: np.ndarray, h_rel: np.ndarray, topk: int | None) -> np.ndarray:
    """Per-query expected AP@K over random orderings of tied items (docs/method.md §7).

    Groups = distance values; a group of ``n`` items (``r`` relevant) placed after ``a`` items
    (``R`` relevant). Fully retrieved groups contribute
    ``(r/n) sum_j (R + 1 + (j-1)(r-1)/(n-1)) / (a+j)`` (McSherry & Najork). A group cut by the
    top-K boundary keeps ``c = K - a`` of its items, a uniformly random subset, holding ``m``
    relevant items with hypergeometric probability; AP = E[sum of precisions / (R + m)] is
    summed exactly over m, with the window sum conditioned on m.
    """
    n = h_all.astype(np.float64)
    r = h_rel.astype(np.float64)
    a = np.cumsum(n, axis=1) - n
    big_r = np.cumsum(r, axis=1) - r
    n_db = n.sum(axis=1)
    k_lim = n_db if topk is None else np.minimum(float(topk), n_db)
    k_lim = k_lim[:, None]
    full = (a + n <= k_lim) & (n > 0)
    group = _window_sum(a, big_r, n, _ratio(r, n), _ratio(r - 1.0, n - 1.0))
    s_full = np.where(full, group, 0.0).sum(axis=1)
    r_full = np.where(full, r, 0.0).sum(axis=1)
    ap = _ratio(s_full, r_full)
    if topk is None:
        return ap
    cut = (a < k_lim) & (a + n > k_lim)
    rows, cols = np.nonzero(cut)
    if rows.size == 0:
        return ap
    ap[rows] = _cut_group_ap(
        s_full[rows],
        r_full[rows],
        n[rows, cols],
        r[rows, cols],
        a[rows, cols],
        k_lim[rows, 0] - a[rows, cols],
    )
    return ap


def _cut_group_ap(s_full, r_full, n, r, a, c) -> np.ndarray:
    """Exact E[(s_full + S_cut) / (r_full + m)] with m ~ Hypergeometric(n, r, c)."""
    out = np.empty(s_full.size)
    m_max = np.minimum(r, c)
    width = int(m_max.max()) + 1
    block = max(1, _GRID_ELEMENTS // width)
    for start in range(0, s_full.size, block):
        b = slice(start, start + block)
        m = np.arange(width, dtype=np.float64)[None, :]
        nb, rb, cb, ab = n[b, None], r[b, None], c[b, None], a[b, None]
        valid = (m <= rb) & (m <= cb) & (cb - m <= nb - rb)
        log_p = _log_binom(rb, m) + _log_binom(nb - rb, cb - m) - _log_binom(nb, cb)
        p = np.where(valid, np.exp(np.where(valid, log_p, 0.0)), 0.0)
        s_cut = _window_sum(ab, r_full[b, None], cb, _ratio(m, cb), _ratio(m - 1.0, cb - 1.0))
        val = _ratio(s_full[b, None] + s_cut, r_full[b, None] + m)
        out[b] = (p * val).sum(axis=1)
    return out


def _log_binom(n, k):
    n, k = np.broadcast_arrays(n, k)
    k = np.clip(k, 0.0, np.maximum(n, 0.0))
    return gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(n - k + 1.0)


# --------------------------------------------------------------------------- mAP API


def _ap_by_mode(
    ev: _Evaluator, bits: int, topk: int | None, modes: Sequence[str]
) -> dict[str, np.ndarray]:
    """Per-query AP at ``bits`` bits for each tie mode, from a single scan of the database."""
    scan = ev.scan(bits, hist="average" in modes, index="index" in modes, topk=topk)
    out = {}
    if "average" in modes:
        out["average"] = _tie_aware_ap(scan.hist_all, scan.hist_rel, topk)
    if "index" in modes:
        out["index"] = scan.index_ap
    return out


def average_precision(
    q_codes,
    db_codes,
    q_labels,
    db_labels,
    topk: int | None = None,
    ties: str = "average",
    chunk_size: int | None = None,
) -> np.ndarray:
    """Per-query AP@topk (``None``: the whole database); see :func:`mean_average_precision`."""
    q, db, ql, dl = _check_inputs(q_codes, db_codes, q_labels, db_labels)
    topk = _check_topk(topk, db.shape[0])
    check_choice(ties, TIES, "ties")
    ev = _Evaluator(q, db, ql, dl, chunk_size)
    return _ap_by_mode(ev, q.shape[1], topk, (ties,))[ties]


def mean_average_precision(
    q_codes,
    db_codes,
    q_labels,
    db_labels,
    topk: int | None = None,
    ties: str = "average",
    chunk_size: int | None = None,
) -> float:
    """mAP@topk of Hamming ranking (docs/method.md §7).

    Rank the database by Hamming distance, keep the top ``topk`` (``None`` or more than the
    database: all of it), AP = mean over the relevant items in the top K of (relevant so far /
    position); a query with no relevant item in its top K scores 0; mAP = mean over queries.

    ``ties="average"`` (default) returns the exact expectation over random orderings of
    equidistant items, ``ties="index"`` breaks ties by database index (stable sort).
    ``chunk_size`` queries are processed at a time (default: about 128K distances a chunk).
    """
    return float(
        np.mean(average_precision(q_codes, db_codes, q_labels, db_labels, topk, ties, chunk_size))
    )


def map_table(
    q_codes,
    db_codes,
    q_labels,
    db_labels,
    bit_list: Sequence[int],
    topk: int | None = None,
    ties: Sequence[str] = TIES,
    chunk_size: int | None = None,
) -> dict[str, dict[int, float]]:
    """mAP for several tie modes and code lengths in one pass: ``{ties: {bits: mAP}}``.

    Codes are nested (docs/method.md §1): the ``b``-bit code is the first ``b`` columns of
    the given (longest) codes, so pass the longest codes once.
    """
    q, db, ql, dl = _check_inputs(q_codes, db_codes, q_labels, db_labels)
    bits_list = _check_bits_for(bit_list, q.shape[1])
    topk = _check_topk(topk, db.shape[0])
    if isinstance(ties, str):
        ties = (ties,)
    modes = [check_choice(t, TIES, "ties") for t in ties]
    ev = _Evaluator(q, db, ql, dl, chunk_size)
    out: dict[str, dict[int, float]] = {mode: {} for mode in modes}
    for b in bits_list:
        for mode, ap in _ap_by_mode(ev, b, topk, modes).items():
            out[mode][b] = float(np.mean(ap))
    return out


def map_per_length(
    q_codes,
    db_codes,
    q_labels,
    db_labels,
    bit_list: Sequence[int],
    topk: int | None = None,
    ties: str = "average",
    chunk_size: int | None = None,
) -> dict[int, float]:
    """mAP at each length of ``bit_list`` (prefixes of the longest codes): ``{bits: mAP}``."""
    check_choice(ties, TIES, "ties")
    return map_table(q_codes, db_codes, q_labels, db_labels, bit_list, topk, (ties,), chunk_size)[
        ties
    ]


# --------------------------------------------------------------------------- precision / recall


def precision_recall_by_radius(
    q_codes, db_codes, q_labels, db_labels, chunk_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall when retrieving everything within Hamming radius r = 0..L.

    Returns two arrays of length L + 1. Precision is averaged over all queries, a query that
    retrieves nothing at radius r counting as precision 0; recall is averaged over queries with
    at least one relevant item. Computed from per-query distance histograms (docs/method.md §7).
    """
    q, db, ql, dl = _check_inputs(q_codes, db_codes, q_labels, db_labels)
    h = _Evaluator(q, db, ql, dl, chunk_size).scan(q.shape[1], hist=True)
    retrieved = np.cumsum(h.hist_all, axis=1)
    hits = np.cumsum(h.hist_rel, axis=1)
    precision = _ratio(hits, retrieved).mean(axis=0)
    total = hits[:, -1]
    has_rel = total > 0
    if not has_rel.any():
        recall = np.zeros(q.shape[1] + 1)
    else:
        recall = (hits[has_rel] / total[has_rel, None]).mean(axis=0)
    return precision, recall


def precision_within_radius(
    q_codes, db_codes, q_labels, db_labels, radius: int = 2, chunk_size: int | None = None
) -> float:
    """Mean precision of the items within Hamming distance ``radius`` (empty retrieval: 0)."""
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ValueError(f"radius must be a non-negative integer, got {radius!r}")
    precision, _ = precision_recall_by_radius(q_codes, db_codes, q_labels, db_labels, chunk_size)
    return float(precision[min(int(radius), precision.size - 1)])


def precision_recall_at_n(
    q_codes,
    db_codes,
    q_labels,
    db_labels,
    n: int | Sequence[int] = (100, 500, 1000),
    ties: str = "average",
    chunk_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Precision@n and recall@n of the Hamming ranking, one value per cut-off in ``n``.

    Precision@n = relevant among the first n / n (n capped at the database size), averaged over
    all queries; recall@n = relevant among the first n / all relevant, averaged over queries
    with at least one relevant item. ``ties="average"`` gives the expectation over random
    orderings of tied items (a cut tie group contributes its share ``c * r / n_group``).
    """
    q, db, ql, dl = _check_inputs(q_codes, db_codes, q_labels, db_labels)
    ns = (n,) if isinstance(n, (int, np.integer)) else tuple(n)
    if not ns:
        raise ValueError("n is empty: give at least one cut-off, e.g. n=(100, 1000)")
    ns = tuple(check_positive_int(v, "n") for v in ns)
    check_choice(ties, TIES, "ties")
    ev = _Evaluator(q, db, ql, dl, chunk_size)
    bits = q.shape[1]
    caps = np.minimum(np.asarray(ns, np.float64), db.shape[0])
    if ties == "index":
        scan = ev.scan(bits, index=True, topk=max(ns), ns=ns)
        hits = scan.index_hits.astype(np.float64)
        total = ev.n_relevant().astype(np.float64)
    else:
        scan = ev.scan(bits, hist=True)
        total = scan.hist_rel.sum(axis=1).astype(np.float64)
        hits = _expected_hits(scan.hist_all, scan.hist_rel, caps)
    precision = (hits / caps[None, :]).mean(axis=0)
    has_rel = total > 0
    if not has_rel.any():
        recall = np.zeros(len(ns))
    else:
        recall = (hits[has_rel] / total[has_rel, None]).mean(axis=0)
    return precision, recall


def _expected_hits(h_all: np.ndarray, h_rel: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """(N_q, len(caps)) expected relevant items among the first n under random tie order."""
    n = h_all.astype(np.float64)
    r = h_rel.astype(np.float64)
    a = np.cumsum(n, axis=1) - n
    out = np.empty((n.shape[0], caps.size))
    for j, cap in enumerate(caps):
        inside = np.clip(cap - a, 0.0, n)  # items of each group within the first ``cap``
        out[:, j] = (inside * _ratio(r, n)).sum(axis=1)
    return out


def precision_at_n(
    q_codes, db_codes, q_labels, db_labels, n=(100, 500, 1000), ties="average", chunk_size=None
) -> np.ndarray:
    """Precision@n for each cut-off in ``n``; see :func:`precision_recall_at_n`."""
    return precision_recall_at_n(q_codes, db_codes, q_labels, db_labels, n, ties, chunk_size)[0]


def recall_at_n(
    q_codes, db_codes, q_labels, db_labels, n=(100, 500, 1000), ties="average", chunk_size=None
) -> np.ndarray:
    """Recall@n for each cut-off in ``n``; see :func:`precision_recall_at_n`."""
    return precision_recall_at_n(q_codes, db_codes, q_labels, db_labels, n, ties, chunk_size)[1]


def tie_group_sizes(q_codes, db_codes, bits: int, chunk_size: int = 256) -> pd.DataFrame:
    """How large the groups of equidistant database items are, per query, at ``bits`` bits.

    Uses the first ``bits`` bits of the codes. Per query (rows): ``nearest`` = items at the
    smallest distance (the tie group at the top of the ranking), ``nearest_distance`` (that
    distance; a query retrieves nothing within radius r when it exceeds r), ``typical`` = the size of the
    tie group an average database item shares (sum over distances of n_d^2 / N), ``distinct`` =
    how many different distances occur (at most ``bits + 1``).
    """
    q = check_codes(q_codes, "q_codes")
    db = check_codes(db_codes, "db_codes")
    bits = check_positive_int(bits, "bits")
    if bits > min(q.shape[1], db.shape[1]):
        raise ValueError(f"bits={bits} exceeds the code length {min(q.shape[1], db.shape[1])}")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    nb = bits + 1
    hist = np.empty((q.shape[0], nb), np.int64)
    for start in range(0, q.shape[0], chunk_size):
        d = hamming_distances(q[start:start + chunk_size, :bits], db[:, :bits]).astype(np.int64)
        rows = np.arange(d.shape[0])[:, None] * nb
        hist[start:start + d.shape[0]] = np.bincount((d + rows).ravel(), minlength=d.shape[0] * nb).reshape(-1, nb)
    first = np.argmax(hist > 0, axis=1)
    return pd.DataFrame(
        {
            "nearest": hist[np.arange(len(hist)), first],
            "nearest_distance": first,
            "typical": (hist.astype(float) ** 2).sum(axis=1) / db.shape[0],
            "distinct": (hist > 0).sum(axis=1),
        }
    )


def chance_map(query_labels, db_labels, topk: int | None = None) -> float:
    """mAP of a ranking that knows nothing: the expected AP over uniformly random orders.

    This is exactly the tie-aware mAP of codes that are all equal (every database item ties).
    For mAP@ALL (``topk=None``) a query with ``R`` relevant items among ``N`` has, with ``H_N``
    the harmonic number, ``E[AP] = (R - 1) / (N - 1) + H_N (N - R) / (N (N - 1))``, about
    ``R / N`` (0.1 for ten balanced classes); a query with ``R = 0`` scores 0 (docs/method.md
    §7). With ``topk`` the value comes from :func:`nhl.metrics.mean_average_precision`
    on constant codes.
    """
    ql = check_labels(query_labels, "query_labels")
    dl = check_labels(db_labels, "db_labels")
    if ql.shape[1] != dl.shape[1]:
        raise ValueError(
            f"query_labels have {ql.shape[1]} classes but db_labels have {dl.shape[1]}"
        )
    n = dl.shape[0]
    if topk is not None:
        return mean_average_precision(np.ones((ql.shape[0], 1), np.int8), np.ones((n, 1), np.int8),
                                      ql, dl, topk=check_positive_int(topk, "topk"))
    patterns, counts = np.unique(dl, axis=0, return_counts=True)  # few distinct label rows
    r = ((ql.astype(np.int64) @ patterns.T.astype(np.int64)) > 0) @ counts  # relevant per query
    r = r.astype(np.float64)
    if n == 1:
        return float((r > 0).mean())
    harmonic = np.sum(1.0 / np.arange(1, n + 1))
    ap = (r - 1) / (n - 1) + harmonic * (n - r) / (n * (n - 1))
    return float(np.where(r > 0, ap, 0.0).mean())

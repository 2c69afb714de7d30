"""Compiled loops for the hot paths of :mod:`nhl.metrics` and :mod:`nhl.retrieval` (numba).

Hamming distances are small integers, so evaluation and exact search are counting problems:
per query, one vectorised XOR + popcount pass gives the ``uint8`` distances to every database
item, one counting pass gives the distance histogram, and one more pass walks the items in
index order with a counter per distance value, which is a stable counting sort without the
sort. Numpy has no such O(N) stable-rank primitive (its radix ``argsort`` is several times
slower than these passes), hence this module.

``AVAILABLE`` is False when numba cannot be imported; the callers then use their numpy paths,
which compute exactly the same numbers (the tests check one against the other).

Word layout: ``(W, N)`` unsigned words as :func:`nhl.metrics.pack_words` makes them (code bits
packed with ``np.packbits``, zero padded), so popcount(q ^ x) summed over words is the
distance.
"""

from __future__ import annotations

import numpy as np

try:  # pragma: no cover - exercised implicitly by every test when numba is installed
    import numba as _nb

    AVAILABLE = True
except ImportError:  # pragma: no cover - the numpy paths cover this case
    _nb = None
    AVAILABLE = False


def _njit(fn=None, **kw):
    def wrap(f):
        if _nb is None:
            return f
        return _nb.njit(nogil=True, cache=True, **kw)(f)

    return wrap(fn) if fn is not None else wrap


_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)
_S1, _S2, _S4, _S56 = np.uint64(1), np.uint64(2), np.uint64(4), np.uint64(56)


@_njit(inline="always")
def _popcount(x):
    """Bit count of a word (the SWAR form, compiled to the popcnt instruction)."""
    x = np.uint64(x)
    x = x - ((x >> _S1) & _M1)
    x = (x & _M2) + ((x >> _S2) & _M2)
    x = (x + (x >> _S4)) & _M4
    return (x * _H01) >> _S56


@_njit
def distances_into(q_words, r, db_words, out):
    """``out[i]`` = Hamming distance of query column ``r`` of ``q_words`` to item ``i``
    (``uint8``: at most 255 bits)."""
    n = db_words.shape[1]
    q0 = q_words[0, r]
    row = db_words[0]
    for i in range(n):
        out[i] = np.uint8(_popcount(q0 ^ row[i]))
    for w in range(1, db_words.shape[0]):
        qw = q_words[w, r]
        row = db_words[w]
        for i in range(n):
            out[i] += np.uint8(_popcount(qw ^ row[i]))




@_njit
def _histogram(d, h):
    """``h[v]`` = number of ``d == v`` (four interleaved sub-histograms: repeated values do
    not serialise on one counter)."""
    n = d.shape[0]
    nb = h.shape[0]
    sub = np.zeros((4, nb), np.int64)
    n4 = n - n % 4
    for i in range(0, n4, 4):
        sub[0, d[i]] += 1
        sub[1, d[i + 1]] += 1
        sub[2, d[i + 2]] += 1
        sub[3, d[i + 3]] += 1
    for i in range(n4, n):
        sub[0, d[i]] += 1
    for v in range(nb):
        h[v] = sub[0, v] + sub[1, v] + sub[2, v] + sub[3, v]


@_njit
def evaluate_rows(q_words, db_words, rel_masks, mask_of_query, n_bins, want_hist, want_index,
                  topk, ns, hist_all, hist_rel, index_ap, index_hits):
    """Per query: distance histograms of all / relevant items and AP@topk in index order.

    ``rel_masks`` (G, N) ``uint8`` 0/1 relevance masks, query ``r`` uses row
    ``mask_of_query[r]``. ``topk`` <= 0 means the whole database. ``ns``: cut-offs for the
    relevant counts among the first ``n`` (index order). Outputs are written in place.

    Index order: item ``i`` at distance ``v`` has stable rank (items at distance < v) + (items
    at distance v with index <= i); walking the items in index order with one counter per
    distance gives every rank in one pass.
    """
    n_q = q_words.shape[1]
    n_db = db_words.shape[1]
    n_ns = ns.shape[0]
    d = np.empty(n_db, np.uint8)
    h = np.zeros(2 * n_bins, np.int64)
    h4 = np.zeros((4, 2 * n_bins), np.int64)
    ca = np.zeros(n_bins, np.int64)
    cr = np.zeros(n_bins, np.int64)
    for r in range(n_q):
        distances_into(q_words, r, db_words, d)
        rel = rel_masks[mask_of_query[r]]
        h4[:] = 0  # four interleaved sub-histograms: repeated values do not serialise
        n4 = n_db - n_db % 4
        for i in range(0, n4, 4):
            h4[0, 2 * np.intp(d[i]) + rel[i]] += 1
            h4[1, 2 * np.intp(d[i + 1]) + rel[i + 1]] += 1
            h4[2, 2 * np.intp(d[i + 2]) + rel[i + 2]] += 1
            h4[3, 2 * np.intp(d[i + 3]) + rel[i + 3]] += 1
        for i in range(n4, n_db):
            h4[0, 2 * np.intp(d[i]) + rel[i]] += 1
        for v in range(2 * n_bins):
            h[v] = h4[0, v] + h4[1, v] + h4[2, v] + h4[3, v]
        total_a = 0
        total_r = 0
        for v in range(n_bins):
            a = h[2 * v] + h[2 * v + 1]
            b = h[2 * v + 1]
            if want_hist:
                hist_all[r, v] = a
                hist_rel[r, v] = b
            ca[v] = total_a
            cr[v] = total_r
            total_a += a
            total_r += b
        if not want_index:
            continue
        acc = 0.0
        n_top = 0
        for j in range(n_ns):
            index_hits[r, j] = 0
        for i in range(n_db):
            v = d[i]
            ca[v] += 1
            if rel[i]:
                cr[v] += 1
                rank = ca[v]
                if topk <= 0 or rank <= topk:
                    acc += cr[v] / rank
                    n_top += 1
                for j in range(n_ns):
                    if rank <= ns[j]:
                        index_hits[r, j] += 1
        index_ap[r] = acc / n_top if n_top > 0 else 0.0


@_njit
def knn_rows(q_words, db_words, k, n_bins, out_d, out_i):
    """The ``k`` nearest items of every query, sorted by (distance, index): one distance pass,
    one counting pass for the k-th distance, one pass collecting and placing the winners."""
    n_q = q_words.shape[1]
    n_db = db_words.shape[1]
    d = np.empty(n_db, np.uint8)
    h = np.zeros(n_bins, np.int64)
    pos = np.zeros(n_bins, np.int64)
    for r in range(n_q):
        distances_into(q_words, r, db_words, d)
        _histogram(d, h)
        seen = 0
        kth = 0
        for v in range(n_bins):
            pos[v] = seen
            if seen + h[v] >= k:
                kth = v
                break
            seen += h[v]
        need_at_kth = k - seen  # items at the k-th distance that fit, taken in index order
        for i in range(n_db):
            v = d[i]
            if v <= kth:
                if v == kth:
                    if need_at_kth == 0:
                        continue
                    need_at_kth -= 1
                p = pos[v]
                out_i[r, p] = i
                out_d[r, p] = v
                pos[v] = p + 1


@_njit
def _select_stable(dist, n_bins, keep, hist, out_sel):
    """Positions of the ``keep`` smallest of ``dist`` (ties: earlier position first), in
    (distance, position) order; returns how many were written to ``out_sel``."""
    n = dist.shape[0]
    if keep > n:
        keep = n
    hist[:n_bins] = 0
    for i in range(n):
        hist[dist[i]] += 1
    seen = 0
    kth = n_bins - 1
    for v in range(n_bins):
        c = hist[v]
        hist[v] = seen  # becomes the write position of distance v
        if seen + c >= keep:
            kth = v
            break
        seen += c
    room = keep - seen
    for i in range(n):
        v = dist[i]
        if v < kth or (v == kth and room > 0):
            if v == kth:
                room -= 1
            out_sel[hist[v]] = i
            hist[v] += 1
    return keep


@_njit
def _top_by_id(dist, pos, n, n_bins, k, sorted_ids, n_db, hist, keys, out_d, out_i, r):
    """Write the ``k`` best of ``n`` candidates by (distance, database index) to row ``r``."""
    hist[:n_bins] = 0
    for i in range(n):
        hist[dist[i]] += 1
    _write_top(dist, pos, n, n_bins, k, sorted_ids, n_db, hist, keys, out_d, out_i, r)


@_njit
def _write_top(dist, pos, n, n_bins, k, sorted_ids, n_db, hist, keys, out_d, out_i, r):
    """:func:`_top_by_id` given the histogram of ``dist[:n]`` in ``hist``."""
    seen = 0
    kth = n_bins - 1
    for v in range(n_bins):
        if seen + hist[v] >= k:
            kth = v
            break
        seen += hist[v]
    m = 0
    for i in range(n):  # everything closer than the k-th distance, and all ties at it
        if dist[i] <= kth:
            keys[m] = np.int64(dist[i]) * n_db + sorted_ids[pos[i]]
            m += 1
    top = np.sort(keys[:m])
    kk = k if k < m else m
    for i in range(kk):
        out_d[r, i] = top[i] // n_db
        out_i[r, i] = top[i] % n_db


@_njit
def _run_distances(q_words, r, words, m, s0, dst):
    """``dst[u]`` = distance on the prefix ``m`` between query ``r`` and code ``s0 + u``."""
    n = dst.shape[0]
    src = words[0, s0 : s0 + n]
    qw = q_words[0, r] & m[0]
    mw = m[0]
    for u in range(n):
        dst[u] = np.uint8(_popcount(qw ^ (src[u] & mw)))
    for w in range(1, words.shape[0]):
        mw = m[w]
        if mw == 0:  # a prefix that ends in an earlier word
            continue
        src = words[w, s0 : s0 + n]
        qw = q_words[w, r] & mw
        for u in range(n):
            dst[u] += np.uint8(_popcount(qw ^ (src[u] & mw)))


_SHORT_RUN = 24  # buckets shorter than this take the scalar loop in _funnel_one


@_njit
def _funnel_one(r, q_words, sorted_words, sorted_ids, bucket_start, bucket_size, visit, n_visit,
                stage_masks, stage_bins, sizes, n_db, pos, nxt, dist, sel, hist, keys,
                out_d, out_i):
    """The funnel for query ``r`` over the buckets ``visit[:n_visit]`` (visiting order)."""
    n_stages = sizes.shape[0]
    cap = sizes[0]
    k = sizes[n_stages - 1]
    two = n_stages == 2
    if two:
        hist[: stage_bins[1]] = 0
    n = 0
    m = stage_masks[0]
    for t in range(n_visit):  # stage 1 on whole runs of codes, bucket by bucket
        b = visit[t]
        s0 = bucket_start[b]
        take = min(bucket_size[b], cap - n)
        if take < _SHORT_RUN:  # most buckets are tiny: a plain loop, no vector set-up
            n_w = sorted_words.shape[0]
            for u in range(take):
                p = s0 + u
                acc = 0
                for w in range(n_w):
                    acc += _popcount((q_words[w, r] ^ sorted_words[w, p]) & m[w])
                dist[n + u] = acc
                pos[n + u] = p
                if two:
                    hist[acc] += 1
            n += take
            if n >= cap:
                break
            continue
        dst = dist[n : n + take]
        _run_distances(q_words, r, sorted_words, m, s0, dst)
        for u in range(take):
            pos[n + u] = s0 + u
        if two:
            for u in range(take):
                hist[dst[u]] += 1
        n += take
        if n >= cap:
            break
    if two:
        _write_top(dist, pos, n, stage_bins[1], k, sorted_ids, n_db, hist, keys, out_d, out_i, r)
        return
    if n_stages == 3:  # keep the best sizes[1] by stage 2, then the full distance on those
        kept = _select_stable(dist[:n], stage_bins[1], sizes[1], hist, sel)
        m = stage_masks[1]
        n_w = sorted_words.shape[0]
        for i in range(kept):
            p = pos[sel[i]]
            nxt[i] = p
            acc = 0
            for w in range(n_w):
                if m[w] != 0:
                    acc += _popcount((q_words[w, r] ^ sorted_words[w, p]) & m[w])
            dist[i] = acc
        _top_by_id(dist, nxt, kept, stage_bins[2], k, sorted_ids, n_db, hist, keys,
                   out_d, out_i, r)
        return
    for j in range(1, n_stages):
        if j > 1:
            m = stage_masks[j - 1]
            n_w = sorted_words.shape[0]
            for i in range(n):
                p = pos[i]
                acc = 0
                for w in range(n_w):
                    if m[w] != 0:
                        acc += _popcount((q_words[w, r] ^ sorted_words[w, p]) & m[w])
                dist[i] = acc
        if j < n_stages - 1:
            kept = _select_stable(dist[:n], stage_bins[j], sizes[j], hist, sel)
            for i in range(kept):
                nxt[i] = pos[sel[i]]
            for i in range(kept):
                pos[i] = nxt[i]
            n = kept
        else:
            _top_by_id(dist, pos, n, stage_bins[j], k, sorted_ids, n_db, hist, keys,
                       out_d, out_i, r)


@_njit
def funnel_rows(q_words, sorted_words, sorted_ids, bucket_start, bucket_size, row_ptr,
                buckets, stage_masks, stage_bins, sizes, n_db, out_d, out_i):
    """Funnel search over a database stored bucket by bucket (contiguous codes per bucket).

    Query ``r`` visits ``buckets[row_ptr[r]:row_ptr[r + 1]]`` (increasing first-stage
    distance) and takes their items until ``sizes[0]`` are collected. Stage ``j >= 1``
    computes the distance on the prefix ``stage_masks[j - 1]`` (``stage_bins[j]`` values) and
    keeps the best ``sizes[j]`` (ties: visiting order); the last stage keeps ``sizes[-1]``
    (= k) by (distance, database index) and writes them sorted so.
    """
    cap = sizes[0]
    pos = np.empty(cap, np.int64)
    nxt = np.empty(cap, np.int64)
    sel = np.empty(cap, np.int64)
    keys = np.empty(cap, np.int64)
    dist = np.empty(cap, np.uint8)
    hist = np.zeros(256, np.int64)
    for r in range(q_words.shape[1]):
        a = row_ptr[r]
        _funnel_one(r, q_words, sorted_words, sorted_ids, bucket_start, bucket_size,
                    buckets[a:], row_ptr[r + 1] - a, stage_masks, stage_bins, sizes, n_db,
                    pos, nxt, dist, sel, hist, keys, out_d, out_i)


@_njit
def _ball_visit(qv, direct, sorted_values, sorted_buckets, masks, ends, n_radii, bits,
                bucket_values, bucket_size, cap, out, bdist, order, hist):
    """Buckets to visit for first-stage prefix value ``qv``, written to ``out``; returns how
    many. Shells of radius < ``n_radii`` by flip masks (ascending within a shell), then the
    remaining buckets by a scan, ordered by (distance, bucket); stops once ``cap`` items are
    reached. The same order as ``_buckets_by_masks`` / ``_buckets_by_scan`` in nhl.retrieval.
    """
    m = 0
    found = 0
    n_sorted = sorted_values.shape[0]
    for rad in range(n_radii):
        for t in range(ends[rad], ends[rad + 1]):
            v = qv ^ masks[t]
            if direct.shape[0] > 0:
                b = direct[v]
            else:
                i = np.searchsorted(sorted_values, v)
                b = sorted_buckets[i] if i < n_sorted and sorted_values[i] == v else -1
            if b >= 0:
                out[m] = b
                m += 1
                found += bucket_size[b]
                if found >= cap:
                    return m
    if n_radii > bits:
        return m
    nb = bucket_values.shape[0]
    hist[: bits + 1] = 0
    for i in range(nb):
        d = _popcount(qv ^ bucket_values[i])
        bdist[i] = d
        hist[d] += 1
    start = 0
    for v in range(bits + 1):
        c = hist[v]
        hist[v] = start
        start += c
    for i in range(nb):  # counting sort: by distance, ties by bucket
        d = bdist[i]
        order[hist[d]] = i
        hist[d] += 1
    for j in range(nb):
        b = order[j]
        if bdist[b] < n_radii:
            continue
        out[m] = b
        m += 1
        found += bucket_size[b]
        if found >= cap:
            return m
    return m


@_njit
def funnel_ball_rows(q_values, direct, sorted_values, sorted_buckets, masks, ends, n_radii,
                     bits, bucket_values, q_words, sorted_words, sorted_ids, bucket_start,
                     bucket_size, stage_masks, stage_bins, sizes, n_db, out_d, out_i):
    """:func:`funnel_rows` with the first stage's buckets found here (:func:`_ball_visit`)."""
    cap = sizes[0]
    nb = bucket_values.shape[0]
    pos = np.empty(cap, np.int64)
    nxt = np.empty(cap, np.int64)
    sel = np.empty(cap, np.int64)
    keys = np.empty(cap, np.int64)
    dist = np.empty(cap, np.uint8)
    hist = np.zeros(256, np.int64)
    visit = np.empty(nb, np.int64)
    bdist = np.empty(nb, np.int64)
    order = np.empty(nb, np.int64)
    bhist = np.zeros(bits + 1, np.int64)
    for r in range(q_words.shape[1]):
        n_visit = _ball_visit(q_values[r], direct, sorted_values, sorted_buckets, masks, ends,
                              n_radii, bits, bucket_values, bucket_size, cap, visit, bdist,
                              order, bhist)
        _funnel_one(r, q_words, sorted_words, sorted_ids, bucket_start, bucket_size, visit,
                    n_visit, stage_masks, stage_bins, sizes, n_db, pos, nxt, dist, sel, hist,
                    keys, out_d, out_i)

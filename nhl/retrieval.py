"""Hamming search over packed binary codes: exact k-NN, range search, nested funnel search.

* :func:`pack_codes` / :func:`unpack_codes`: +-1 codes <-> ``np.packbits`` bytes (8 code bits
  per byte, first bit in the most significant position).
* :class:`HammingIndex`: exact search with two interchangeable backends, ``"faiss"``
  (``faiss.IndexBinaryFlat``) and ``"numpy"`` (XOR + popcount on machine words, then a counting
  selection: distances are small integers). Both return identical distances *and* indices:
  ties are broken by database index.
* :func:`funnel_search`: coarse-to-fine search that exploits nested codes (METHOD.md section
  1): the short prefix of every code is itself a code, so a short prefix shortlists
  candidates cheaply, longer prefixes re-rank them, the last stage gives exact distances.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import comb

import numpy as np

from .metrics import _distance_block, _pack_words, _words_from_packed
from .validation import check_bit_list, check_choice, check_codes, check_positive_int

BACKENDS: tuple[str, ...] = ("auto", "faiss", "numpy")
_CHUNK_ELEMENTS = 1 << 17  # distances per block of queries (XOR buffers stay in cache)
_STEPS_BEFORE_HISTOGRAM = 12  # k-th distance search: unit steps up from the minimum
_FUNNEL_CHUNK = 256  # at most this many queries per block in funnel_search
_FUNNEL_ELEMENTS = 1 << 21  # and at most this many first-stage candidates per block
_DIRECT_TABLE_BITS = 20  # first funnel stage up to this length: a table of 2^bits buckets
_FEW_BUCKETS = 8  # scan distinct prefixes when there are at most ntotal / this many


# --------------------------------------------------------------------------- packing


def pack_codes(codes) -> np.ndarray:
    """+-1 (or 0/1) codes (N x L) -> ``uint8`` array (N x ceil(L/8)) of packed bits.

    Bit ``j`` of a code is 1 where the code is +1; ``np.packbits`` order (first bit in the most
    significant position), zero padded to whole bytes. This is faiss's binary format too.
    """
    return np.packbits(check_codes(codes, "codes") > 0, axis=1)


def unpack_codes(packed, bits: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: ``uint8`` rows -> +-1 ``int8`` codes (N x bits)."""
    arr = np.asarray(packed)
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise ValueError(
            f"packed must be a 2-D uint8 array from pack_codes, got {arr.dtype} of shape "
            f"{arr.shape}"
        )
    bits = check_positive_int(bits, "bits")
    if bits > 8 * arr.shape[1]:
        raise ValueError(f"bits={bits} but packed rows hold only {8 * arr.shape[1]} bits")
    unpacked = np.unpackbits(arr, axis=1, count=bits)
    return (2 * unpacked.astype(np.int8) - 1).astype(np.int8)


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss is a dependency, but may be missing
        return None
    return faiss


# --------------------------------------------------------------------------- exact index


class HammingIndex:
    """Exact Hamming k-NN and range search over binary codes.

    Args:
        codes: database codes, +-1 or 0/1, shape (N, L).
        backend: ``"faiss"`` (``faiss.IndexBinaryFlat``, needs L % 8 == 0), ``"numpy"`` (pure
            numpy popcount) or ``"auto"`` (faiss when importable and L % 8 == 0, else numpy).

    Attributes: ``ntotal`` (N), ``bits`` (L), ``backend`` (the one in use), ``packed`` (the
    codes as ``uint8`` bytes, see :func:`pack_codes`). Results are the same for both backends:
    sorted by distance, ties broken by database index.
    """

    def __init__(self, codes, backend: str = "auto"):
        arr = check_codes(codes, "codes")
        self._setup(np.packbits(arr > 0, axis=1), arr.shape[1], backend)

    @classmethod
    def from_packed(cls, packed, bits: int, backend: str = "auto") -> HammingIndex:
        """An index over codes already packed by :func:`pack_codes` (no +-1 copy needed)."""
        arr = np.asarray(packed)
        bits = check_positive_int(bits, "bits")
        if arr.ndim != 2 or arr.dtype != np.uint8 or arr.shape[1] != -(-bits // 8):
            raise ValueError(
                f"packed must be a uint8 array of shape (N, {-(-bits // 8)}) for {bits}-bit "
                f"codes, got {arr.dtype} of shape {arr.shape}"
            )
        if arr.shape[0] == 0:
            raise ValueError("packed is empty (0 items); an index needs at least one code")
        index = cls.__new__(cls)
        if bits % 8:  # clear the padding bits so that they never count
            arr = arr.copy()
            arr[:, -1] &= np.uint8((0xFF << (8 - bits % 8)) & 0xFF)
        index._setup(np.ascontiguousarray(arr), bits, backend)
        return index

    def _setup(self, packed: np.ndarray, bits: int, backend: str) -> None:
        check_choice(backend, BACKENDS, "backend")
        self.ntotal, self.bits = packed.shape[0], bits
        self.packed = packed
        faiss = _faiss()
        if backend == "auto":
            backend = "faiss" if faiss is not None and self.bits % 8 == 0 else "numpy"
        if backend == "faiss":
            if faiss is None:
                raise ImportError("backend='faiss' needs faiss: pip install faiss-cpu")
            if self.bits % 8:
                raise ValueError(
                    f"backend='faiss' needs a multiple of 8 bits, got {self.bits}; "
                    "use backend='numpy' or 'auto'"
                )
            self._faiss = faiss.IndexBinaryFlat(self.bits)
            self._faiss.add(self.packed)
        else:
            self._words = np.ascontiguousarray(_words_from_packed(self.packed, self.bits).T)
        self.backend = backend
        self._funnel_cache: dict[tuple, object] = {}

    def __repr__(self) -> str:
        return f"HammingIndex(ntotal={self.ntotal}, bits={self.bits}, backend={self.backend!r})"

    def _queries(self, queries) -> np.ndarray:
        q = check_codes(queries, "queries")
        if q.shape[1] != self.bits:
            raise ValueError(
                f"queries have {q.shape[1]} bits but the index holds {self.bits}-bit codes; "
                f"pass queries[:, :{self.bits}] for a prefix index"
            )
        return q

    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest codes of each query: ``(distances int32, indices int64)``.

        Both arrays have shape (N_q, min(k, ntotal)), sorted by distance, ties by index.
        """
        q = self._queries(queries)
        k = min(check_positive_int(k, "k"), self.ntotal)
        if self.backend == "faiss":
            dist, idx = self._faiss.search(np.packbits(q > 0, axis=1), k)
            order = np.lexsort((idx, dist), axis=-1)  # guarantee (distance, index) order
            return (
                np.take_along_axis(dist, order, axis=1).astype(np.int32),
                np.take_along_axis(idx, order, axis=1).astype(np.int64),
            )
        return self._numpy_search(q, k)

    def _numpy_search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        out_d = np.empty((q.shape[0], k), np.int32)
        out_i = np.empty((q.shape[0], k), np.int64)
        q_words = _pack_words(q, self.bits)
        step = max(1, _CHUNK_ELEMENTS // self.ntotal)
        for start in range(0, q.shape[0], step):
            dist = _distance_block(q_words[:, start : start + step], self._words, self.bits)
            for i, d in enumerate(dist, start):
                idx = _smallest(d, k)
                out_i[i] = idx
                out_d[i] = d[idx]
        return out_d, out_i

    def range_search(
        self, queries, radius: int, return_distances: bool = False
    ) -> list[np.ndarray] | tuple[list[np.ndarray], list[np.ndarray]]:
        """All codes within Hamming distance ``radius`` (inclusive) of each query.

        Returns a list with one ``int64`` index array per query, sorted by distance then
        index; with ``return_distances=True``, ``(distances, indices)`` lists of arrays.
        """
        q = self._queries(queries)
        if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
            raise ValueError(f"radius must be a non-negative integer, got {radius!r}")
        dists, idxs = [], []
        if self.backend == "faiss":
            # faiss returns distances strictly below its radius, in no particular order
            lims, dist, idx = self._faiss.range_search(np.packbits(q > 0, axis=1), int(radius) + 1)
            for a, b in zip(lims[:-1], lims[1:]):
                order = np.lexsort((idx[a:b], dist[a:b]))
                dists.append(dist[a:b][order].astype(np.int32))
                idxs.append(idx[a:b][order].astype(np.int64))
        else:
            q_words = _pack_words(q, self.bits)
            step = max(1, _CHUNK_ELEMENTS // self.ntotal)
            for start in range(0, q.shape[0], step):
                dist = _distance_block(q_words[:, start : start + step], self._words, self.bits)
                for d in dist:
                    near = np.flatnonzero(d <= radius)
                    near = near[np.argsort(d[near], kind="stable")]
                    dists.append(d[near].astype(np.int32))
                    idxs.append(near.astype(np.int64))
        return (dists, idxs) if return_distances else idxs


def _smallest(d: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` smallest of the small integers ``d``, ties by index, sorted.

    The k-th smallest value is found by counting (stepping up from the minimum, which is
    quick for small k; a histogram otherwise); a stable radix sort orders what lies within it.
    """
    limit = int(d.min())
    within = d <= limit
    for _ in range(_STEPS_BEFORE_HISTOGRAM):
        if np.count_nonzero(within) >= k:
            break
        limit += 1
        within = d <= limit
    else:
        limit = int(np.searchsorted(np.cumsum(np.bincount(d)), k))
        within = d <= limit
    near = np.flatnonzero(within)
    return near[np.argsort(d[near], kind="stable")[:k]]


# --------------------------------------------------------------------------- funnel search


def default_shortlist(k: int, stages: Sequence[int], ntotal: int) -> tuple[int, ...]:
    """Default shortlist sizes for :func:`funnel_search`: wide at the first stage (about
    ``50 k`` and at least 2% of the database), then shrinking fourfold per stage, never below
    ``4 k``."""
    sizes, size = [], max(50 * k, ntotal // 50)
    for _ in stages[:-1]:
        sizes.append(min(max(size, 4 * k), ntotal))
        size //= 4
    return tuple(sizes)


def funnel_search(
    index: HammingIndex,
    queries,
    k: int,
    stages: Sequence[int] = (16, 64, 128),
    shortlist: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Nested coarse-to-fine k-NN: short prefixes shortlist, longer prefixes re-rank.

    Stage 1 ranks the database by the Hamming distance of the first ``stages[0]`` bits and
    keeps ``shortlist[0]`` candidates. For short first stages (up to 20 bits) it never touches
    single items: the database is grouped by prefix value, and the buckets are visited in
    increasing distance from the query's prefix (enumerating flip masks by popcount) until the
    shortlist is full. Each later stage re-ranks the survivors by a longer prefix and keeps
    ``shortlist[j]`` of them; the last stage (``stages[-1]`` bits) returns the ``k`` best with
    exact distances at that length, ties broken by database index.

    Args:
        index: a :class:`HammingIndex` over the longest codes (any backend).
        queries: query codes with ``index.bits`` bits (only the first ``stages[-1]`` are used).
        k: neighbours per query.
        stages: increasing prefix lengths, the last at most ``index.bits``.
        shortlist: candidates kept after each stage but the last (``len(stages) - 1`` sizes,
            each >= k); default :func:`default_shortlist`. A shortlist covering the database
            makes the search exact.

    Returns ``(distances int32, indices int64)`` of shape (N_q, min(k, ntotal)), like
    :meth:`HammingIndex.search`. Recall depends on how much of the code's structure its
    prefixes carry: measure it (``benchmarks/bench_funnel.py``) before relying on it.
    """
    if not isinstance(index, HammingIndex):
        raise TypeError(f"index must be a HammingIndex, got {type(index).__name__}")
    q = index._queries(queries)
    k = min(check_positive_int(k, "k"), index.ntotal)
    stages = check_bit_list(stages, "stages")
    if stages[-1] > index.bits:
        raise ValueError(
            f"stages end at {stages[-1]} bits but the index holds {index.bits}-bit codes"
        )
    if shortlist is None:
        shortlist = default_shortlist(k, stages, index.ntotal)
    shortlist = tuple(check_positive_int(s, "shortlist") for s in shortlist)
    if len(shortlist) != len(stages) - 1:
        raise ValueError(
            f"shortlist needs one size per stage but the last: {len(stages) - 1} values for "
            f"stages {stages}, got {len(shortlist)}"
        )
    if any(s < k for s in shortlist):
        raise ValueError(f"shortlist sizes must be >= k={k}, got {shortlist}")
    sizes = list(shortlist) + [k]
    for j in range(len(sizes)):  # a stage can keep at most what the previous one passed on
        sizes[j] = min(sizes[j], index.ntotal, *sizes[:j])

    q_packed = np.packbits(q > 0, axis=1)
    out_d = np.empty((q.shape[0], k), np.int32)
    out_i = np.empty((q.shape[0], k), np.int64)
    step = max(1, min(_FUNNEL_CHUNK, _FUNNEL_ELEMENTS // sizes[0]))  # bound memory per block
    for start in range(0, q.shape[0], step):
        qp = q_packed[start : start + step]
        items = _first_stage(index, qp, stages[0], sizes[0])  # (rows, sizes[0]), visit order
        for j, bits in enumerate(stages):
            if j == 0 and len(stages) > 1:
                continue  # the first stage has already ranked and cut
            dist = _row_distances(index, qp, items, bits)
            if j == len(stages) - 1:  # the answer: order by (distance, database index)
                key = np.sort(dist.astype(np.int64) * index.ntotal + items, axis=1)[:, :k]
                dist, items = np.divmod(key, index.ntotal)
                break
            best = np.argsort(dist, axis=1, kind="stable")[:, : sizes[j]]  # radix sort
            items = np.take_along_axis(items, best, axis=1)
        out_d[start : start + qp.shape[0]] = dist
        out_i[start : start + qp.shape[0]] = items
    return out_d, out_i


def _prefix_words(index: HammingIndex, bits: int) -> np.ndarray:
    """(W, N) words of the first ``bits`` bits of every database code (cached)."""
    key = ("words", bits)
    if key not in index._funnel_cache:
        index._funnel_cache[key] = np.ascontiguousarray(_words_from_packed(index.packed, bits).T)
    return index._funnel_cache[key]


def _row_distances(index, q_packed, items, bits) -> np.ndarray:
    """(rows, S) distances at ``bits`` bits between query ``r`` and the items ``items[r]``."""
    db = _prefix_words(index, bits)  # (W, N), each word contiguous
    qw = _words_from_packed(q_packed, bits)
    dist = np.bitwise_count(np.take(db[0], items) ^ qw[:, :1])
    if bits > 255:
        dist = dist.astype(np.uint16)
    for w in range(1, db.shape[0]):
        dist += np.bitwise_count(np.take(db[w], items) ^ qw[:, w : w + 1])
    return dist


def _first_stage(index, q_packed, bits, size):
    """(rows, size) candidate items per query, by distance on the first ``bits`` bits.

    Items are grouped by prefix value (buckets) and buckets are taken in increasing distance
    from the query's prefix until ``size`` items are collected. For short prefixes (up to 20
    bits) the buckets are found by enumerating flip masks by popcount (Hamming balls around
    the query's prefix); for longer ones by scanning the distinct prefixes when they are few
    (trained codes cluster); otherwise every item's prefix is scanned.
    """
    table = _bucket_table(index, bits) if bits <= 64 else None
    if bits <= _DIRECT_TABLE_BITS:
        return _expand(table, *_buckets_by_masks(table, q_packed, bits, size), size)
    if table is not None and table.n_buckets <= index.ntotal // _FEW_BUCKETS:
        return _expand(table, *_buckets_by_scan(table, q_packed, bits, size), size)
    return _first_stage_scan(index, q_packed, bits, size)


def _buckets_by_scan(table, q_packed, bits, size):
    """(rows, buckets) in visiting order: distinct prefixes sorted by distance per query."""
    qw = np.ascontiguousarray(_words_from_packed(q_packed, bits).T)
    dist = _distance_block(qw, table.words, bits)  # (rows, n_buckets)
    order = np.argsort(dist, axis=1, kind="stable")  # ties: bucket (prefix value) order
    sizes = table.sizes[order]
    cum = np.cumsum(sizes, axis=1, dtype=np.int64)
    rows, col = np.nonzero(cum - sizes < size)  # buckets up to the one that fills the list
    return rows, order[rows, col]


def _buckets_by_masks(table, q_packed, bits, size):
    """(rows, buckets) in visiting order: Hamming shells of radius 0, 1, ... around each
    query's prefix, enumerated with flip masks, until the shortlist is full."""
    masks, ends = _flip_masks(bits)
    qv = _prefix_values(q_packed, bits)
    found = np.zeros(qv.size, np.int64)
    pair_rows, pair_buckets = [], []
    active = np.arange(qv.size)
    for radius in range(bits + 1):
        shell = masks[ends[radius] : ends[radius + 1]]
        buckets = table.bucket_of_value[qv[active, None] ^ shell[None, :]]  # -1: empty
        sizes = np.where(buckets >= 0, table.sizes[buckets], 0)
        cum = found[active, None] + np.cumsum(sizes, axis=1, dtype=np.int64)
        r, col = np.nonzero((cum - sizes < size) & (sizes > 0))
        pair_rows.append(active[r])
        pair_buckets.append(buckets[r, col])
        found[active] = cum[:, -1]
        active = active[found[active] < size]
        if active.size == 0:
            break
    rows = np.concatenate(pair_rows)
    order = np.argsort(rows, kind="stable")  # group by row, keep the visiting order
    return rows[order], np.concatenate(pair_buckets)[order]


def _expand(table, rows, buckets, size):
    """(rows, size) items of the given buckets (grouped by row, in visiting order), the last
    bucket of each row cut so that exactly ``size`` items remain."""
    n_rows = int(rows[-1]) + 1
    lens = table.sizes[buckets]
    row_start = np.cumsum(lens) - lens  # items of the row's earlier buckets
    before = row_start - row_start[np.searchsorted(rows, np.arange(n_rows))][rows]
    take = np.clip(size - before, 0, lens)
    offsets = np.cumsum(take) - take
    pos = np.arange(n_rows * size) + np.repeat(table.starts[buckets] - offsets, take)
    return table.items[pos].reshape(n_rows, size)


def _first_stage_scan(index, q_packed, bits, size):
    """First stage without buckets: distances of every item's prefix, best ``size`` kept."""
    db = _prefix_words(index, bits)
    qw = np.ascontiguousarray(_words_from_packed(q_packed, bits).T)
    step = max(1, _CHUNK_ELEMENTS // index.ntotal)
    items = np.empty((q_packed.shape[0], size), np.int64)
    for start in range(0, q_packed.shape[0], step):
        dist = _distance_block(qw[:, start : start + step], db, bits)
        for i, d in enumerate(dist, start):
            items[i] = _smallest(d, size)
    return items


class _BucketTable:
    """Database items grouped by the value of their first ``bits`` (<= 64) bits."""

    def __init__(self, packed: np.ndarray, bits: int):
        words = _words_from_packed(packed, bits)[:, 0]  # one word: bits <= 64
        values, first, inverse, sizes = np.unique(
            words, return_index=True, return_inverse=True, return_counts=True
        )
        self.n_buckets = values.size
        self.sizes = sizes.astype(np.int64)
        self.starts = np.cumsum(self.sizes) - self.sizes
        self.items = np.argsort(inverse.ravel(), kind="stable").astype(np.int64)
        self.words = np.ascontiguousarray(words[first][None, :])  # (1, n_buckets)
        self.bucket_of_value = None
        if bits <= _DIRECT_TABLE_BITS:  # direct addressing by prefix value, -1 when empty
            self.bucket_of_value = np.full(1 << bits, -1, np.int64)
            self.bucket_of_value[_prefix_values(packed[first], bits)] = np.arange(values.size)


def _bucket_table(index: HammingIndex, bits: int) -> _BucketTable:
    key = ("buckets", bits)
    if key not in index._funnel_cache:
        index._funnel_cache[key] = _BucketTable(index.packed, bits)
    return index._funnel_cache[key]


def _prefix_values(packed: np.ndarray, bits: int) -> np.ndarray:
    """Integer value of the first ``bits`` (<= 24) bits of each packed row."""
    n_bytes = -(-bits // 8)
    value = np.zeros(packed.shape[0], np.int64)
    for j in range(n_bytes):
        value = (value << 8) | packed[:, j]
    return value >> (8 * n_bytes - bits)


_MASKS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _flip_masks(bits: int) -> tuple[np.ndarray, np.ndarray]:
    """All ``bits``-bit masks sorted by popcount, and where each popcount starts/ends."""
    if bits not in _MASKS:
        masks = np.arange(1 << bits, dtype=np.int64)
        order = np.argsort(np.bitwise_count(masks), kind="stable")
        ends = np.cumsum([0] + [comb(bits, r) for r in range(bits + 1)])
        _MASKS[bits] = (masks[order], ends)
    return _MASKS[bits]

"""Hamming search over packed binary codes: exact k-NN, range search, nested funnel search.

* :func:`pack_codes` / :func:`unpack_codes`: +-1 codes <-> ``np.packbits`` bytes (8 code bits
  per byte, first bit in the most significant position).
* :class:`HammingIndex`: exact search with two interchangeable backends, ``"faiss"``
  (``faiss.IndexBinaryFlat``) and ``"numpy"`` (XOR + popcount on machine words, then a counting
  selection: distances are small integers; compiled by numba when it is installed). Both
  return identical distances *and* indices: ties are broken by database index.
* :func:`tie_aware_recall`: recall@k of any search against the exact answer, where items
  tied with the k-th neighbour are all equally right.
* :func:`funnel_search`: coarse-to-fine search that exploits nested codes (docs/method.md
  §1): the short prefix of every code is itself a code, so a short prefix shortlists
  candidates cheaply, longer prefixes re-rank them, the last stage gives exact distances.
* :func:`keyed_search`: the same funnel when the bucket key is a separate code stored in front
  of the long one (two independent models); :func:`shortlist` / :func:`rerank`: the funnel's
  two parts on their own (a hash index keyed by a short prefix, then exact re-ranking), to
  compose across indexes; :func:`rescore`: the
  shortlist re-scored with real-valued vectors (inner product), :func:`inner_product_search`
  the exhaustive real-valued answer and :func:`overlap_recall` recall against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from math import comb

import numpy as np

from . import _kernels
from .metrics import distance_block, pack_words, use_kernels, words_from_packed
from .validation import check_bit_list, check_choice, check_codes, check_positive_int

BACKENDS: tuple[str, ...] = ("auto", "faiss", "numpy")
_CHUNK_ELEMENTS = 1 << 17  # distances per block of queries (XOR buffers stay in cache)
_ROWS_PER_THREAD = 64  # a compiled search spreads its queries over threads in blocks of this many or more
_STEPS_BEFORE_HISTOGRAM = 12  # k-th distance search: unit steps up from the minimum
_FUNNEL_CHUNK = 256  # at most this many queries per block in funnel_search
_FUNNEL_ELEMENTS = 1 << 21  # and at most this many first-stage candidates per block
_DIRECT_TABLE_BITS = 20  # first funnel stage up to this length: a table of 2^bits buckets
_FEW_BUCKETS = 8  # scan distinct prefixes when there are at most ntotal / this many
_MASK_ELEMENTS = 1 << 20  # bucket lookups per block of the flip-mask enumeration
_MASK_BITS = 32  # first funnel stage up to this length: Hamming balls by flip masks
_SCAN_ELEMENTS = 1 << 22  # query x bucket distances per block of the bucket scan
_RESCORE_ELEMENTS = 1 << 22  # gathered vector elements per block of rescore


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


def search_threads(n_queries: int) -> int:
    """Threads a compiled search over ``n_queries`` queries runs on: numba's thread count (all
    cores unless ``numba.set_num_threads`` or ``NUMBA_NUM_THREADS`` says fewer), at most one
    per 64 queries; 1 without numba."""
    if not _kernels.AVAILABLE:
        return 1
    import numba

    return max(1, min(numba.get_num_threads(), n_queries // _ROWS_PER_THREAD))


def _in_row_blocks(n_rows: int, call) -> None:
    """``call(a, b)`` for consecutive blocks of query rows, one block per thread of
    :func:`search_threads` (the compiled kernels release the GIL, so the blocks run in
    parallel; each writes only its own rows of the outputs)."""
    threads = search_threads(n_rows)
    if threads == 1:
        call(0, n_rows)
        return
    from concurrent.futures import ThreadPoolExecutor

    bounds = np.linspace(0, n_rows, threads + 1).astype(np.int64)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(call, bounds[:-1], bounds[1:]))  # list(): re-raises a block's error


class HammingIndex:
    """Exact Hamming k-NN and range search over binary codes.

    Args:
        codes: database codes, +-1 or 0/1, shape (N, L).
        backend: ``"faiss"`` (``faiss.IndexBinaryFlat``, needs L % 8 == 0), ``"numpy"``
            (popcount on machine words: compiled counting passes of :mod:`nhl._kernels` when
            numba is installed, plain numpy otherwise) or ``"auto"``: the fastest present, i.e.
            ``"numpy"`` with numba (as fast as faiss thread for thread, and on numba's threads,
            :func:`search_threads`, in blocks of queries that a loaded machine does not stall as
            it stalls faiss's OpenMP threads), else faiss when importable and L % 8 == 0, else
            numpy.

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
        if backend == "auto":  # the fastest present (benchmarks/README.md, section 2)
            if use_kernels(self.bits) or faiss is None or self.bits % 8:
                backend = "numpy"
            else:
                backend = "faiss"
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
            self._words = np.ascontiguousarray(words_from_packed(self.packed, self.bits).T)
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
        q_words = pack_words(q, self.bits)
        if use_kernels(self.bits):
            _knn_in_threads(q_words, self._words, k, self.bits + 1, out_d, out_i)
            return out_d, out_i
        step = max(1, _CHUNK_ELEMENTS // self.ntotal)
        for start in range(0, q.shape[0], step):
            dist = distance_block(q_words[:, start : start + step], self._words, self.bits)
            for i, d in enumerate(dist, start):
                idx = _smallest(d, k)
                out_i[i] = idx
                out_d[i] = d[idx]
        return out_d, out_i

    def distances(self, queries, ids, bits: int | None = None) -> np.ndarray:
        """Hamming distances at ``bits`` bits (default: all) between query ``i`` and the
        database items ``ids[i]``: ``(N_q, m)`` integers, e.g. to score what a search returned.

        ``queries`` have ``index.bits`` bits; ``ids`` is ``(N_q, m)`` database positions.
        """
        q = self._queries(queries)
        bits = self.bits if bits is None else check_positive_int(bits, "bits")
        if bits > self.bits:
            raise ValueError(f"bits={bits} but the index holds {self.bits}-bit codes")
        items = np.asarray(ids)
        if items.ndim != 2 or items.shape[0] != q.shape[0]:
            raise ValueError(
                f"ids must have shape (N_q, m) with N_q = {q.shape[0]} queries, got {items.shape}"
            )
        if not np.issubdtype(items.dtype, np.integer):
            raise TypeError(f"ids must be integer database positions, got dtype {items.dtype}")
        if items.size and (items.min() < 0 or items.max() >= self.ntotal):
            raise ValueError(f"ids must lie in 0..{self.ntotal - 1}")
        if items.size == 0:
            return np.zeros(items.shape, np.int32)
        dist = _row_distances(self, np.packbits(q > 0, axis=1), items.astype(np.int64), bits)
        return dist.astype(np.int32)

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
            q_words = pack_words(q, self.bits)
            step = max(1, _CHUNK_ELEMENTS // self.ntotal)
            for start in range(0, q.shape[0], step):
                dist = distance_block(q_words[:, start : start + step], self._words, self.bits)
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


# --------------------------------------------------------------------------- scoring


def tie_aware_recall(found_distances, exact_distances) -> np.ndarray:
    """Per-query recall@k of a search against the exact k nearest neighbours, counting ties.

    ``found_distances``: ``(N_q, k)`` distances *at the reference length* of the items a
    method returned (e.g. :meth:`HammingIndex.distances` at 128 bits); ``exact_distances``:
    ``(N_q, k)`` sorted distances of the exhaustive search at that length. With ``e_k`` the
    exact k-th distance, every item closer than ``e_k`` must be returned, and any of the items
    at exactly ``e_k`` is an equally exact answer, so

        recall = (#{found < e_k} + min(#{found == e_k}, k - #{exact < e_k})) / k,

    the best overlap with any exact answer (equal to the plain id overlap when nothing ties).
    """
    found = np.asarray(found_distances)
    exact = np.asarray(exact_distances)
    if found.ndim != 2 or exact.ndim != 2 or found.shape != exact.shape:
        raise ValueError(
            "found_distances and exact_distances must both have shape (N_q, k), got "
            f"{found.shape} and {exact.shape}"
        )
    if exact.shape[1] == 0:
        raise ValueError("k must be at least 1 (the arrays have no columns)")
    if np.any(np.diff(exact, axis=1) < 0):
        raise ValueError("exact_distances must be sorted along each row (as search returns)")
    k = exact.shape[1]
    kth = exact[:, -1:]
    below = (found < kth).sum(axis=1)
    at = (found == kth).sum(axis=1)
    room = k - (exact < kth).sum(axis=1)
    return (below + np.minimum(at, room)) / k


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
    radius: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Nested coarse-to-fine k-NN: short prefixes shortlist, longer prefixes re-rank.

    Stage 1 ranks the database by the Hamming distance of the first ``stages[0]`` bits and
    keeps ``shortlist[0]`` candidates. For first stages up to 32 bits it never scans single
    items: the database is grouped by prefix value (buckets, stored bucket by bucket), and the
    buckets are visited in increasing distance from the query's prefix (flip masks by
    popcount while a shell has no more masks than there are buckets, then a scan of the
    distinct prefixes) until the shortlist is full; the last bucket is cut in index order.
    Each later stage re-ranks the survivors by a longer prefix and keeps ``shortlist[j]`` of
    them (ties: visiting order); the last stage (``stages[-1]`` bits) returns the ``k`` best
    with exact distances at that length, ties broken by database index. A single stage is an
    exact search on that prefix (ties by database index too). With numba installed all of
    this runs in one compiled pass (:mod:`nhl._kernels`), with the same results.

    Args:
        index: a :class:`HammingIndex` over the longest codes (any backend).
        queries: query codes with ``index.bits`` bits (only the first ``stages[-1]`` are used).
        k: neighbours per query.
        stages: increasing prefix lengths, the last at most ``index.bits``.
        shortlist: candidates kept after each stage but the last (``len(stages) - 1`` sizes,
            each >= k); default :func:`default_shortlist`. A shortlist covering the database
            makes the search exact.
        radius: instead of a shortlist, a Hamming ball: the first stage keeps every item
            within ``radius`` of the query's ``stages[0]``-bit prefix, for two stages
            ``(b, index.bits)`` with ``b`` a multiple of 8 (at most 64). This first stage is
            faiss's ``IndexBinaryHash(index.bits, b)`` with ``nflip = radius`` (faiss's
            bucket index is this very funnel; on the benchmark's 2M-item database it and the
            shortlist funnel are within a few per cent of each other at equal recall:
            benchmarks/README.md); the answer is re-sorted by (distance, database
            index), with id -1 (distance ``index.bits + 1``) where the ball holds fewer than
            ``k`` items.

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
    if radius is not None:
        return _funnel_by_faiss_hash(index, q, k, stages, radius, shortlist)
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
    return _funnel(index, q, k, stages, list(shortlist) + [k])


def keyed_search(
    index: HammingIndex, queries, k: int, key_bits: int, shortlist: int
) -> tuple[np.ndarray, np.ndarray]:
    """A hash index whose bucket key is a separate code: :func:`funnel_search` for codes that
    are ``[key | code]``, the first ``key_bits`` bits a bucket key only.

    The two-stage funnel ``(key_bits, index.bits)``, except that the re-ranking distance
    leaves the key out: buckets of equal keys are visited in increasing key distance from the
    query's key until ``shortlist`` items are collected, then the ``k`` best by the Hamming
    distance on bits ``key_bits..index.bits`` are returned (ties by database index), with those
    distances. This is what codes of two independent models need (a short model's code as the
    key in front of a long model's code: two encoders, the key stored besides the code), where
    a nested code is its own key (its prefix). Same compiled pass as :func:`funnel_search`.
    """
    if not isinstance(index, HammingIndex):
        raise TypeError(f"index must be a HammingIndex, got {type(index).__name__}")
    q = index._queries(queries)
    k = min(check_positive_int(k, "k"), index.ntotal)
    key_bits = check_positive_int(key_bits, "key_bits")
    if key_bits >= index.bits or key_bits > 64:
        raise ValueError(
            f"key_bits must be at most 64 and leave code bits after the key: got {key_bits} for "
            f"{index.bits}-bit codes"
        )
    size = check_positive_int(shortlist, "shortlist")
    if size < k:
        raise ValueError(f"shortlist must be >= k={k}, got {size}")
    return _funnel(index, q, k, (key_bits, index.bits), [size, k], skip=key_bits)


def _funnel(index, q, k, stages, sizes, skip: int = 0):
    """The search of :func:`funnel_search` (validated arguments); with ``skip`` the distances
    after the first stage leave out the first ``skip`` bits (:func:`keyed_search`)."""
    for j in range(len(sizes)):  # a stage can keep at most what the previous one passed on
        sizes[j] = min(sizes[j], index.ntotal, *sizes[:j])

    q_packed = np.packbits(q > 0, axis=1)
    out_d = np.empty((q.shape[0], k), np.int32)
    out_i = np.empty((q.shape[0], k), np.int64)
    if len(stages) == 1:  # one stage: exact search on the prefix, ties by database index
        return _exact_prefix_search(index, q_packed, stages[0], k, out_d, out_i)
    step = max(1, min(_FUNNEL_CHUNK, _FUNNEL_ELEMENTS // sizes[0]))  # bound memory per block
    compiled = use_kernels(stages[-1]) and stages[0] <= 64
    if compiled and stages[0] <= _MASK_BITS:  # everything in one compiled pass
        _funnel_ball(index, q_packed, stages, sizes, out_d, out_i, skip)
        return out_d, out_i
    for start in range(0, q.shape[0], step):
        qp = q_packed[start : start + step]
        rows = slice(start, start + qp.shape[0])
        if compiled:
            buckets = _first_stage_buckets(index, qp, stages[0], sizes[0])
            if buckets is not None:
                _funnel_compiled(index, qp, stages, sizes, buckets, out_d[rows], out_i[rows],
                                 skip)
                continue
        items = _first_stage(index, qp, stages[0], sizes[0])  # (rows, sizes[0]), visit order
        for j, bits in enumerate(stages):
            if j == 0:
                continue  # the first stage has already ranked and cut
            dist = _row_distances(index, qp, items, bits)
            if skip:
                dist -= _row_distances(index, qp, items, skip)
            if j == len(stages) - 1:  # the answer: order by (distance, database index)
                key = np.sort(dist.astype(np.int64) * index.ntotal + items, axis=1)[:, :k]
                dist, items = np.divmod(key, index.ntotal)
                break
            best = np.argsort(dist, axis=1, kind="stable")[:, : sizes[j]]  # radix sort
            items = np.take_along_axis(items, best, axis=1)
        out_d[rows] = dist
        out_i[rows] = items
    return out_d, out_i


def _funnel_by_faiss_hash(index, q, k, stages, radius, shortlist):
    """:func:`funnel_search` with a Hamming-ball first stage: faiss ``IndexBinaryHash``."""
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ValueError(f"radius must be a non-negative integer, got {radius!r}")
    if shortlist is not None:
        raise ValueError("give either shortlist or radius, not both")
    b = stages[0]
    if len(stages) != 2 or stages[1] != index.bits or b % 8 or b > 64 or index.bits % 8:
        raise ValueError(
            f"radius needs two stages (b, {index.bits}) with b a multiple of 8 up to 64 and "
            f"whole-byte codes, got stages {stages} for {index.bits}-bit codes"
        )
    faiss = _faiss()
    if faiss is None:
        raise ImportError("radius needs faiss (its IndexBinaryHash): pip install faiss-cpu")
    key = ("faiss-hash", b)
    if key not in index._funnel_cache:
        hashed = faiss.IndexBinaryHash(index.bits, b)
        hashed.add(index.packed)
        index._funnel_cache[key] = hashed
    hashed = index._funnel_cache[key]
    hashed.nflip = int(radius)
    dist, idx = hashed.search(np.packbits(q > 0, axis=1), k)
    dist = np.where(idx >= 0, dist, index.bits + 1).astype(np.int64)
    key = dist * (index.ntotal + 1) + np.where(idx >= 0, idx, index.ntotal)
    key = np.sort(key, axis=1)
    dist, idx = np.divmod(key, index.ntotal + 1)
    idx = np.where(idx == index.ntotal, -1, idx)
    return dist.astype(np.int32), idx.astype(np.int64)


# --------------------------------------------------------------------------- funnel parts


def _check_candidates(candidates, n_rows: int, ntotal: int) -> np.ndarray:
    items = np.asarray(candidates)
    if items.ndim != 2 or items.shape[0] != n_rows or items.shape[1] == 0:
        raise ValueError(
            f"candidates must have shape (N_q, m) with N_q = {n_rows} queries and m >= 1, "
            f"got {items.shape}"
        )
    if not np.issubdtype(items.dtype, np.integer):
        raise TypeError(f"candidates must be integer database positions, got dtype {items.dtype}")
    if items.min() < 0 or items.max() >= ntotal:
        raise ValueError(f"candidates must lie in 0..{ntotal - 1}")
    return items.astype(np.int64, copy=False)


def _row_step(width: int) -> int:
    """Queries per block when each carries ``width`` candidates (bounded memory per block)."""
    return max(1, min(_FUNNEL_CHUNK, _FUNNEL_ELEMENTS // max(width, 1)))


def shortlist(index: HammingIndex, queries, size: int, bits: int | None = None) -> np.ndarray:
    """The first stage of :func:`funnel_search` alone: ``(N_q, size)`` candidate ids per query.

    The database is grouped by the value of the first ``bits`` bits of its codes (buckets; the
    whole code by default) and buckets are taken in increasing Hamming distance from the query's
    prefix until ``size`` items are collected (the last bucket cut in database order): a hash
    index with the ``bits``-bit prefix as its bucket key. Rows are in visiting order. With
    :func:`rerank` this is the two-stage funnel ``(bits, index.bits)``, and it composes where
    :func:`funnel_search` cannot: buckets from one index, re-ranking in another (codes of two
    different models).
    """
    if not isinstance(index, HammingIndex):
        raise TypeError(f"index must be a HammingIndex, got {type(index).__name__}")
    q = index._queries(queries)
    bits = index.bits if bits is None else check_positive_int(bits, "bits")
    if bits > index.bits:
        raise ValueError(f"bits={bits} but the index holds {index.bits}-bit codes")
    size = min(check_positive_int(size, "size"), index.ntotal)
    q_packed = np.packbits(q > 0, axis=1)
    out = np.empty((q.shape[0], size), np.int64)
    step = _row_step(size)
    for start in range(0, q.shape[0], step):
        out[start : start + step] = _first_stage(index, q_packed[start : start + step], bits, size)
    return out


def rerank(
    index: HammingIndex, queries, candidates, k: int, bits: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of each query's ``candidates`` by Hamming distance on the first ``bits``
    bits (all by default): ``(distances int32, ids int64)`` of shape ``(N_q, min(k, m))``,
    sorted by (distance, database id), like the last stage of :func:`funnel_search`.

    ``candidates``: ``(N_q, m)`` database positions, e.g. from :func:`shortlist` (on this index
    or on another one over the same items).
    """
    if not isinstance(index, HammingIndex):
        raise TypeError(f"index must be a HammingIndex, got {type(index).__name__}")
    q = index._queries(queries)
    items = _check_candidates(candidates, q.shape[0], index.ntotal)
    bits = index.bits if bits is None else check_positive_int(bits, "bits")
    if bits > index.bits:
        raise ValueError(f"bits={bits} but the index holds {index.bits}-bit codes")
    k = min(check_positive_int(k, "k"), items.shape[1])
    q_packed = np.packbits(q > 0, axis=1)
    out_d = np.empty((q.shape[0], k), np.int32)
    out_i = np.empty((q.shape[0], k), np.int64)
    n = np.int64(index.ntotal)
    step = _row_step(items.shape[1])
    for start in range(0, q.shape[0], step):
        block = items[start : start + step]
        dist = _row_distances(index, q_packed[start : start + step], block, bits)
        key = dist.astype(np.int64) * n + block  # (distance, id) order in one integer
        if k < key.shape[1]:
            key = np.partition(key, k - 1, axis=1)[:, :k]
        key = np.sort(key, axis=1)
        out_d[start : start + step], out_i[start : start + step] = np.divmod(key, n)
    return out_d, out_i


def _check_vectors(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (items x dimensions), got {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _top_scores(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` highest ``scores`` per row with their ``ids``, sorted by score descending, then
    id ascending."""
    n_rows, width = scores.shape
    if k < width:  # keep what reaches each row's k-th largest score (ties included), then sort
        kth = np.partition(scores, width - k, axis=1)[:, width - k]
        keep = scores >= kth[:, None]
        counts = keep.sum(axis=1)
        rows, cols = np.nonzero(keep)
        pos = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
        kept_scores = np.full((n_rows, counts.max()), -np.inf, scores.dtype)
        kept_ids = np.full((n_rows, counts.max()), np.iinfo(np.int64).max, np.int64)
        kept_scores[rows, pos] = scores[rows, cols]
        kept_ids[rows, pos] = ids[rows, cols]
        scores, ids = kept_scores, kept_ids
    order = np.lexsort((ids, -scores), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)


def rescore(query_vectors, database_vectors, candidates, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Re-score a binary shortlist with real values: the ``k`` candidates of each query with the
    largest inner product ``<query_vectors[i], database_vectors[j]>``.

    What vector databases do with binary embeddings: a Hamming search over the packed codes
    finds a few times ``k`` candidates cheaply, then the real-valued vectors order them.
    ``database_vectors`` may be the network's real-valued (pre-sign) outputs (stored besides
    the codes) or the +-1 codes themselves (only the query is real: an asymmetric score that
    needs no extra storage). Returns ``(scores float32, ids int64)`` of shape
    ``(N_q, min(k, m))``, sorted by score (highest first), ties by database id.
    """
    qv = _check_vectors(query_vectors, "query_vectors").astype(np.float32, copy=False)
    dv = _check_vectors(database_vectors, "database_vectors")
    if qv.shape[1] != dv.shape[1]:
        raise ValueError(
            f"query_vectors have {qv.shape[1]} dimensions but database_vectors {dv.shape[1]}"
        )
    items = _check_candidates(candidates, qv.shape[0], dv.shape[0])
    k = min(check_positive_int(k, "k"), items.shape[1])
    out_s = np.empty((qv.shape[0], k), np.float32)
    out_i = np.empty((qv.shape[0], k), np.int64)
    step = max(1, min(_FUNNEL_CHUNK, _RESCORE_ELEMENTS // (items.shape[1] * qv.shape[1])))
    for start in range(0, qv.shape[0], step):
        block = items[start : start + step]
        gathered = dv[block].astype(np.float32, copy=False)  # (rows, m, d)
        scores = np.matmul(gathered, qv[start : start + step, :, None])[..., 0]
        out_s[start : start + step], out_i[start : start + step] = _top_scores(scores, block, k)
    return out_s, out_i


def inner_product_search(query_vectors, database_vectors, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exhaustive real-valued search: the ``k`` database vectors with the largest inner product
    with each query, ``(scores float32, ids int64)`` sorted like :func:`rescore` (the answer
    a re-scored binary shortlist is measured against)."""
    qv = _check_vectors(query_vectors, "query_vectors").astype(np.float32, copy=False)
    dv = _check_vectors(database_vectors, "database_vectors").astype(np.float32, copy=False)
    if qv.shape[1] != dv.shape[1]:
        raise ValueError(
            f"query_vectors have {qv.shape[1]} dimensions but database_vectors {dv.shape[1]}"
        )
    k = min(check_positive_int(k, "k"), dv.shape[0])
    out_s = np.empty((qv.shape[0], k), np.float32)
    out_i = np.empty((qv.shape[0], k), np.int64)
    step = max(1, _RESCORE_ELEMENTS // dv.shape[0])
    all_ids = np.arange(dv.shape[0], dtype=np.int64)
    for start in range(0, qv.shape[0], step):
        scores = qv[start : start + step] @ dv.T
        ids = np.broadcast_to(all_ids, scores.shape)
        out_s[start : start + step], out_i[start : start + step] = _top_scores(scores, ids, k)
    return out_s, out_i


def overlap_recall(found_ids, exact_ids) -> np.ndarray:
    """Per-query share of ``exact_ids`` (``(N_q, k)``, e.g. from :func:`inner_product_search`)
    that ``found_ids`` (``(N_q, m)``) contains: plain recall@k, for real-valued answers where
    ties do not arise (:func:`tie_aware_recall` for Hamming distances)."""
    found, exact = np.asarray(found_ids), np.asarray(exact_ids)
    if found.ndim != 2 or exact.ndim != 2 or found.shape[0] != exact.shape[0] or exact.shape[1] == 0:
        raise ValueError(
            f"found_ids (N_q, m) and exact_ids (N_q, k) need the same N_q and k >= 1, got "
            f"{found.shape} and {exact.shape}"
        )
    width = np.int64(max(found.max(initial=0), exact.max(initial=0)) + 2)
    found_sorted = np.sort(np.where(found < 0, width - 1, found), axis=1)  # -1 (no item): no match
    rows = np.arange(found.shape[0], dtype=np.int64)[:, None] * width
    keys = (found_sorted + rows).ravel()  # sorted: rows ascending, ids ascending within a row
    targets = exact.astype(np.int64) + rows
    pos = np.minimum(np.searchsorted(keys, targets), keys.size - 1)
    return (keys[pos] == targets).mean(axis=1)


def _knn_in_threads(q_words, db_words, k, n_bins, out_d, out_i) -> None:
    """:func:`nhl._kernels.knn_rows` over blocks of queries in :func:`search_threads` threads."""
    _in_row_blocks(out_d.shape[0], lambda a, b: _kernels.knn_rows(
        np.ascontiguousarray(q_words[:, a:b]), db_words, k, n_bins, out_d[a:b], out_i[a:b]))


def _exact_prefix_search(index, q_packed, bits, k, out_d, out_i):
    """Exact k-NN on the first ``bits`` bits, sorted by (distance, database index)."""
    db = _prefix_words(index, bits)
    qw = np.ascontiguousarray(words_from_packed(q_packed, bits).T)
    if use_kernels(bits):
        _knn_in_threads(qw, db, k, bits + 1, out_d, out_i)
        return out_d, out_i
    step = max(1, _CHUNK_ELEMENTS // index.ntotal)
    for start in range(0, q_packed.shape[0], step):
        dist = distance_block(qw[:, start : start + step], db, bits)
        for i, d in enumerate(dist, start):
            out_i[i] = _smallest(d, k)
            out_d[i] = d[out_i[i]]
    return out_d, out_i


def _first_stage_buckets(index, q_packed, bits, size):
    """(table, rows, buckets) of the bucket paths of :func:`_first_stage`, or None when the
    first stage scans every item."""
    table = _bucket_table(index, bits)
    if bits <= _MASK_BITS:
        return table, *_buckets_by_masks(table, q_packed, bits, size)
    if table.n_buckets <= index.ntotal // _FEW_BUCKETS:
        return table, *_buckets_by_scan(table, q_packed, bits, size)
    return None


def _stage_masks(total_bits: int, stages, skip: int = 0) -> np.ndarray:
    """(stages - 1, W) masks of the later stages' prefixes, without the first ``skip`` bits."""
    masks = np.stack([_prefix_mask(total_bits, b) for b in stages[1:]])
    if skip:
        masks &= ~_prefix_mask(total_bits, skip)
    return masks


def _funnel_compiled(index, q_packed, stages, sizes, buckets, out_d, out_i, skip=0) -> None:
    """The funnel by :func:`nhl._kernels.funnel_rows` over the bucket-ordered codes."""
    table, rows, visit = buckets
    words = _sorted_words(index, table, stages[0])
    n_rows = q_packed.shape[0]
    row_ptr = np.searchsorted(rows, np.arange(n_rows + 1)).astype(np.int64)
    qw = np.ascontiguousarray(words_from_packed(q_packed, index.bits).T)
    masks = _stage_masks(index.bits, stages, skip)
    bins = np.asarray([b + 1 for b in stages], np.int64)
    _kernels.funnel_rows(
        qw, words, table.items, table.starts, table.sizes, row_ptr, visit.astype(np.int64),
        masks, bins, np.asarray(sizes, np.int64), index.ntotal, out_d, out_i,
    )


def _funnel_ball(index, q_packed, stages, sizes, out_d, out_i, skip=0) -> None:
    """The funnel by :func:`nhl._kernels.funnel_ball_rows`: Hamming balls of the first stage
    (flip masks, then a bucket scan, as :func:`_buckets_by_masks`) found in the same pass."""
    bits = stages[0]
    table = _bucket_table(index, bits)
    n_radii = next((r for r in range(bits + 1) if comb(bits, r) > table.n_buckets), bits + 1)
    key = ("shells", bits, n_radii)
    if key not in index._funnel_cache:
        shells = [_shell(bits, r) for r in range(n_radii)]
        ends = np.cumsum([0] + [len(x) for x in shells]).astype(np.int64)
        index._funnel_cache[key] = (np.concatenate(shells or [np.zeros(0, np.int64)]), ends)
    masks, ends = index._funnel_cache[key]
    empty = np.zeros(0, np.int64)
    direct = table.bucket_of_value if table.bucket_of_value is not None else empty
    sorted_values = table._sorted_values if table._sorted_values is not None else empty
    sorted_buckets = table._bucket_of_sorted if table._bucket_of_sorted is not None else empty
    qw = np.ascontiguousarray(words_from_packed(q_packed, index.bits).T)
    qv = _prefix_values(q_packed, bits)
    words = _sorted_words(index, table, bits)
    stage_masks = _stage_masks(index.bits, stages, skip)
    bins = np.asarray([b + 1 for b in stages], np.int64)
    sizes = np.asarray(sizes, np.int64)
    _in_row_blocks(out_d.shape[0], lambda a, b: _kernels.funnel_ball_rows(
        np.ascontiguousarray(qv[a:b]), direct, sorted_values, sorted_buckets, masks, ends,
        n_radii, bits, table.values, np.ascontiguousarray(qw[:, a:b]), words, table.items,
        table.starts, table.sizes, stage_masks, bins, sizes, index.ntotal, out_d[a:b], out_i[a:b],
    ))


def _sorted_words(index, table, bits) -> np.ndarray:
    """(W, N) words of the full codes, stored bucket by bucket (the bucket table's order)."""
    key = ("sorted", bits)
    if key not in index._funnel_cache:
        words = words_from_packed(index.packed, index.bits)
        index._funnel_cache[key] = np.ascontiguousarray(words[table.items].T)
    return index._funnel_cache[key]


def _prefix_mask(total_bits: int, bits: int) -> np.ndarray:
    """Words (layout of :func:`nhl.metrics.words_from_packed`) with the first ``bits`` bits
    set, so that popcount((q ^ x) & mask) is the distance on that prefix."""
    ones = np.packbits(np.arange(total_bits) < bits)[None, :]
    return np.ascontiguousarray(words_from_packed(ones, total_bits)[0])


def _prefix_words(index: HammingIndex, bits: int) -> np.ndarray:
    """(W, N) words of the first ``bits`` bits of every database code (cached)."""
    key = ("words", bits)
    if key not in index._funnel_cache:
        index._funnel_cache[key] = np.ascontiguousarray(words_from_packed(index.packed, bits).T)
    return index._funnel_cache[key]


def _row_distances(index, q_packed, items, bits) -> np.ndarray:
    """(rows, S) distances at ``bits`` bits between query ``r`` and the items ``items[r]``."""
    db = _prefix_words(index, bits)  # (W, N), each word contiguous
    qw = words_from_packed(q_packed, bits)
    dist = np.bitwise_count(np.take(db[0], items) ^ qw[:, :1])
    if bits > 255:
        dist = dist.astype(np.uint16)
    for w in range(1, db.shape[0]):
        dist += np.bitwise_count(np.take(db[w], items) ^ qw[:, w : w + 1])
    return dist


def _first_stage(index, q_packed, bits, size):
    """(rows, size) candidate items per query, by distance on the first ``bits`` bits.

    Items are grouped by prefix value (buckets) and buckets are taken in increasing distance
    from the query's prefix until ``size`` items are collected. For prefixes up to 32 bits the
    buckets are found by enumerating flip masks by popcount (Hamming balls around the query's
    prefix) while a shell has no more masks than there are buckets, then by scanning the
    distinct prefixes; longer prefixes scan the distinct prefixes when they are few (trained
    codes cluster); otherwise every item's prefix is scanned.
    """
    found = _first_stage_buckets(index, q_packed, bits, size) if bits <= 64 else None
    if found is not None:
        return _expand(*found, size)
    return _first_stage_scan(index, q_packed, bits, size)


def _buckets_by_scan(table, q_packed, bits, size, min_dist=None, found=None):
    """(rows, buckets) in visiting order: distinct prefixes sorted by distance per query.

    With ``min_dist`` (per row) only buckets at distance >= it are visited and ``found`` (per
    row) items are taken as already collected: the mask enumeration hands over to this scan
    when its next shell would cost more than scanning every bucket.
    """
    qw = np.ascontiguousarray(words_from_packed(q_packed, bits).T)
    n_rows = q_packed.shape[0]
    step = max(1, _SCAN_ELEMENTS // table.n_buckets)
    out_rows, out_buckets = [], []
    for start in range(0, n_rows, step):
        sl = slice(start, min(start + step, n_rows))
        dist = distance_block(qw[:, sl], table.words, bits)  # (rows, n_buckets)
        order = np.argsort(dist, axis=1, kind="stable")  # ties: bucket (prefix value) order
        sizes = table.sizes[order]
        if min_dist is not None:
            near = np.take_along_axis(dist, order, axis=1) < min_dist[sl, None]
            sizes = np.where(near, 0, sizes)  # visited already by the mask enumeration
        cum = np.cumsum(sizes, axis=1, dtype=np.int64)
        if found is not None:
            cum += found[sl, None]
        rows, col = np.nonzero((cum - sizes < size) & (sizes > 0))  # up to the filling bucket
        out_rows.append(rows + start)
        out_buckets.append(order[rows, col])
    return np.concatenate(out_rows), np.concatenate(out_buckets)


def _buckets_by_masks(table, q_packed, bits, size):
    """(rows, buckets) in visiting order: Hamming shells of radius 0, 1, ... around each
    query's prefix, enumerated with flip masks, until the shortlist is full.

    A shell of ``C(bits, r)`` masks is enumerated only while that is no more than the number of
    distinct prefixes (and in blocks of at most ``_MASK_ELEMENTS`` lookups); queries still short
    of their shortlist then go on by scanning the distinct prefixes from radius ``r``.
    """
    qv = _prefix_values(q_packed, bits)
    found = np.zeros(qv.size, np.int64)
    pair_rows, pair_buckets = [], []
    active = np.arange(qv.size)
    for radius in range(bits + 1):
        if comb(bits, radius) > table.n_buckets:  # scanning every bucket is cheaper from here on
            rows, buckets = _buckets_by_scan(
                table, q_packed[active], bits, size, np.full(active.size, radius), found[active]
            )
            pair_rows.append(active[rows])
            pair_buckets.append(buckets)
            break
        shell = _shell(bits, radius)
        step = max(1, _MASK_ELEMENTS // shell.size)
        for start in range(0, active.size, step):
            part = active[start : start + step]
            buckets = table.lookup(qv[part, None] ^ shell[None, :])  # -1: empty
            sizes = np.where(buckets >= 0, table.sizes[buckets], 0)
            cum = found[part, None] + np.cumsum(sizes, axis=1, dtype=np.int64)
            r, col = np.nonzero((cum - sizes < size) & (sizes > 0))
            pair_rows.append(part[r])
            pair_buckets.append(buckets[r, col])
            found[part] = cum[:, -1]
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
    qw = np.ascontiguousarray(words_from_packed(q_packed, bits).T)
    step = max(1, _CHUNK_ELEMENTS // index.ntotal)
    items = np.empty((q_packed.shape[0], size), np.int64)
    for start in range(0, q_packed.shape[0], step):
        dist = distance_block(qw[:, start : start + step], db, bits)
        for i, d in enumerate(dist, start):
            items[i] = _smallest(d, size)
    return items


class _BucketTable:
    """Database items grouped by the value of their first ``bits`` (<= 64) bits."""

    def __init__(self, packed: np.ndarray, bits: int):
        words = words_from_packed(packed, bits)[:, 0]  # one word: bits <= 64
        values, first, inverse, sizes = np.unique(
            words, return_index=True, return_inverse=True, return_counts=True
        )
        self.n_buckets = values.size
        self.sizes = sizes.astype(np.int64)
        self.starts = np.cumsum(self.sizes) - self.sizes
        self.items = np.argsort(inverse.ravel(), kind="stable").astype(np.int64)
        self.words = np.ascontiguousarray(words[first][None, :])  # (1, n_buckets)
        self.bucket_of_value = None
        self._sorted_values = self._bucket_of_sorted = None
        self.values = _prefix_values(packed[first], bits) if bits <= _MASK_BITS else None
        if bits <= _DIRECT_TABLE_BITS:  # direct addressing by prefix value, -1 when empty
            self.bucket_of_value = np.full(1 << bits, -1, np.int64)
            self.bucket_of_value[_prefix_values(packed[first], bits)] = np.arange(values.size)
        elif bits <= _MASK_BITS:  # sorted prefix values, looked up by binary search
            prefix = _prefix_values(packed[first], bits)
            self._bucket_of_sorted = np.argsort(prefix).astype(np.int64)
            self._sorted_values = prefix[self._bucket_of_sorted]

    def lookup(self, values: np.ndarray) -> np.ndarray:
        """Bucket of each prefix value (any shape), -1 where no item has that prefix."""
        if self.bucket_of_value is not None:
            return self.bucket_of_value[values]
        pos = np.minimum(np.searchsorted(self._sorted_values, values), self.n_buckets - 1)
        return np.where(self._sorted_values[pos] == values, self._bucket_of_sorted[pos], -1)


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


_SHELLS: dict[tuple[int, int], np.ndarray] = {}


def _shell(bits: int, radius: int) -> np.ndarray:
    """All ``bits``-bit flip masks of popcount ``radius``, ascending (cached)."""
    key = (bits, radius)
    if key not in _SHELLS:
        if radius == 0:
            masks = np.zeros(1, np.int64)
        else:
            pos = np.array(list(combinations(range(bits), radius)), np.int64).reshape(-1, radius)
            masks = np.sort((np.int64(1) << pos).sum(axis=1))
        _SHELLS[key] = masks
    return _SHELLS[key]

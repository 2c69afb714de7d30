"""Measuring search with nested codes: where the k-th neighbour lies, funnel against exhaustive
search (tie-aware recall and interleaved latency), and choosing a code length (notebook 08).

A nested model stores one code; its ``b``-bit prefix is the ``b``-bit code (docs/method.md
§1), so one database answers exhaustive Hamming search at every length and the coarse-to-fine
funnel (:func:`nhl.retrieval.funnel_search`). These helpers measure them honestly:

* :func:`neighbour_distances`: per length, how far the k-th neighbour is and how many items tie
  with it. A funnel can only be judged where the k-th neighbour is *not* at distance 0 amid
  thousands of ties (there every shortlist of exact matches is a right answer).
* :func:`compare_search`: exhaustive search at each length and backend and funnels, timed in
  interleaved rounds (:mod:`nhl.studies.timing`) on a subset of queries, scored on all queries by
  tie-aware recall@k against the exhaustive search at the longest length
  (:func:`nhl.retrieval.tie_aware_recall`) and by precision@k.
* :func:`length_choice`: mAP per length with 95 % bootstrap intervals over queries, the gain
  of each length over the previous one (paired over queries), bytes per item, optional latency,
  and the Pareto-optimal lengths.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..metrics import average_precision, distance_block, pack_words, words_from_packed
from ..retrieval import HammingIndex, funnel_search, tie_aware_recall
from ..storage import code_bytes
from ..validation import check_bit_list, check_codes, check_labels, check_positive_int
from .timing import interleaved_timings, summarize_timings

__all__ = [
    "SearchComparison",
    "compare_search",
    "funnel_name",
    "length_choice",
    "neighbour_distances",
    "pareto_front",
]

_BLOCK_ELEMENTS = 1 << 21  # distances per block of queries in neighbour_distances


def _check_pair(queries, database) -> tuple[np.ndarray, np.ndarray]:
    q = check_codes(queries, "queries")
    db = check_codes(database, "database")
    if q.shape[1] != db.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} bits but database codes have {db.shape[1]}")
    return q, db


def _check_lengths(bit_list, max_bits: int) -> tuple[int, ...]:
    bits = check_bit_list(bit_list)
    if bits[-1] > max_bits:
        raise ValueError(f"bit_list goes up to {bits[-1]} bits but the codes have {max_bits}")
    return bits


# --------------------------------------------------------------------------- k-th neighbour


def neighbour_distances(queries, database, bit_list: Sequence[int], k: int = 100) -> pd.DataFrame:
    """Where the ``k``-th nearest neighbour lies at each code length (prefixes of the codes).

    One row per length (index ``bits``): ``median k-th distance``, ``queries with k-th at 0``
    (share), ``median closer than k-th`` (items strictly nearer than the k-th neighbour) and
    ``median tied at k-th`` (items at exactly that distance, the k-th included). When the
    k-th neighbour sits at distance 0 with thousands of ties, any k exact matches are a right
    answer and a recall test says little.

    Distances are computed to the *distinct* database codes of each length, weighted by how
    many items share each one (short prefixes take few values, so this is fast).
    """
    q, db = _check_pair(queries, database)
    bits_list = _check_lengths(bit_list, q.shape[1])
    k = check_positive_int(k, "k")
    if k > db.shape[0]:
        raise ValueError(f"k={k} is larger than the database ({db.shape[0]} items)")
    rows = []
    for b in bits_list:
        distinct, mult = np.unique(np.packbits(db[:, :b] > 0, axis=1), axis=0, return_counts=True)
        dw = np.ascontiguousarray(words_from_packed(distinct, b).T)
        qw = pack_words(q[:, :b], b)
        kth, closer, tied = (np.empty(q.shape[0], np.int64) for _ in range(3))
        step = max(1, _BLOCK_ELEMENTS // len(distinct))
        for start in range(0, q.shape[0], step):
            dist = distance_block(qw[:, start : start + step], dw, b)
            n = dist.shape[0]
            offset = (b + 1) * np.arange(n, dtype=np.int32)[:, None]  # one histogram per row
            counts = np.bincount((dist.astype(np.int32) + offset).ravel(),
                                 weights=np.broadcast_to(mult, dist.shape).ravel(),
                                 minlength=n * (b + 1)).reshape(n, b + 1).round().astype(np.int64)
            cum = np.cumsum(counts, axis=1)
            d_k = np.argmax(cum >= k, axis=1)  # first distance whose ball holds k items
            at = counts[np.arange(n), d_k]
            kth[start : start + n] = d_k
            tied[start : start + n] = at
            closer[start : start + n] = cum[np.arange(n), d_k] - at
        rows.append({
            "bits": b,
            "median k-th distance": float(np.median(kth)),
            "queries with k-th at 0": float(np.mean(kth == 0)),
            "median closer than k-th": float(np.median(closer)),
            "median tied at k-th": float(np.median(tied)),
        })
    return pd.DataFrame(rows).set_index("bits")


# --------------------------------------------------------------------------- funnel vs exhaustive


def funnel_name(stages: Sequence[int], shortlist: Sequence[int]) -> str:
    """``funnel 8>32>128 (1000/250)``: stages and shortlist sizes of a funnel setting."""
    return f"funnel {'>'.join(map(str, stages))} ({'/'.join(map(str, shortlist))})"


def _exhaustive_name(bits: int, backend: str) -> str:
    return f"exhaustive {bits} bits ({backend})"


@dataclass
class SearchComparison:
    """What :func:`compare_search` measured.

    ``table``: one row per method (see :func:`compare_search`); ``timings``: the raw interleaved
    timings (``name``, ``round``, ``seconds``); ``identical``: per length, whether every
    backend returned the same distances and indices on the timed queries; ``reference``: the
    method every speed-up is relative to; ``timing_queries``: how many queries each timed call
    searched; ``exact``: ``(distances, indices)`` of the reference search on all queries.
    """

    table: pd.DataFrame
    timings: pd.DataFrame
    identical: dict[int, bool]
    reference: str
    timing_queries: int
    exact: tuple[np.ndarray, np.ndarray] = field(repr=False)

    def latency_by_length(self, backend: str) -> pd.DataFrame:
        """Exhaustive latency of ``backend`` per length (index ``bits``): ``median``, ``low``,
        ``high`` (ms per query over rounds) and ``vs shortest``, the verdict of the per-round
        speed-up of each length against the shortest one (:func:`nhl.studies.timing.verdict`)."""
        t = self.table[(self.table["kind"] == "exhaustive") & (self.table["backend"] == backend)]
        if t.empty:
            raise ValueError(f"no exhaustive timings for backend {backend!r}; measured: "
                             f"{sorted(set(self.table['backend'].dropna()))}")
        names = dict(zip(t["bits"], t["method"]))
        shortest = names[min(names)]
        sub = self.timings[self.timings["name"].isin(list(names.values()))]
        s = summarize_timings(sub, reference=shortest, per=self.timing_queries)
        out = pd.DataFrame({
            "bits": list(names),
            "median": [s.loc[n, "median"] for n in names.values()],
            "low": [s.loc[n, "low"] for n in names.values()],
            "high": [s.loc[n, "high"] for n in names.values()],
            "vs shortest": [s.loc[n, "vs reference"] for n in names.values()],
        })
        return out.set_index("bits")

    def for_plot(self, backend: str | None = None) -> pd.DataFrame:
        """Rows for :func:`nhl.plots.search.plot_recall_latency`: the funnels (one line per
        stage sequence, labelled by first shortlist size) and the exhaustive searches of
        ``backend`` (default: the reference's), the longest length as its own group."""
        t = self.table
        backend = t.loc[t["method"] == self.reference, "backend"].iloc[0] \
            if backend is None else backend
        rows = t[(t["kind"] == "funnel")
                 | ((t["backend"] == backend) & (t["kind"] == "exhaustive"))].copy()
        if rows.empty:
            raise ValueError(f"nothing to plot for backend {backend!r}")
        full = int(t["bits"].max())
        group, label = [], []
        for kind, bits, stages, shortlist in zip(rows["kind"], rows["bits"], rows["stages"],
                                                 rows["shortlist"]):
            if kind == "funnel":
                group.append("funnel " + ">".join(map(str, stages)))
                label.append(str(shortlist[0]))
            elif bits == full:
                group.append(f"exhaustive {full} bits ({backend})")
                label.append("")
            else:
                group.append(f"exhaustive, shorter code ({backend})")
                label.append(f"{bits} bits")
        rows["group"], rows["label"] = group, label
        return rows.reset_index(drop=True)


def compare_search(
    database,
    queries,
    k: int = 100,
    bit_list: Sequence[int] = (8, 16, 32, 64, 128),
    backends: Sequence[str] = ("faiss", "numpy"),
    funnels: Sequence[tuple[Sequence[int], Sequence[int]]] = (),
    repeats: int = 5,
    timing_queries: int | None = 200,
    relevant=None,
    seed: int = 0,
) -> SearchComparison:
    """Exhaustive search at every length and backend against coarse-to-fine funnels.

    Timing: every method searches the same ``timing_queries`` queries (a seeded random subset;
    ``None``: all) once per round, ``repeats`` interleaved rounds after one warm-up call
    (:func:`nhl.studies.timing.interleaved_timings`). Quality: every method searches *all*
    queries once more (untimed, with the fastest backend: all return the same answer); recall@k
    is tie-aware against the exhaustive search at the longest length. Speed-ups are relative
    to that search with the first backend (the *reference*).

    ``funnels``: ``(stages, shortlist)`` pairs for :func:`nhl.retrieval.funnel_search` (stages
    end at the longest length). ``relevant``: optional ``(N_q, N_db)`` bool matrix, for
    precision@k.

    The table has one row per method: ``method``, ``kind`` (exhaustive / funnel), ``bits``
    (the length ranked by last), ``backend``, ``stages``, ``shortlist``, ``ms per query`` /
    ``ms low`` / ``ms high`` (median, min, max over rounds), ``speed-up`` / ``speed-up low`` /
    ``speed-up high`` (per-round ``t_reference / t``), ``vs reference`` (faster, slower or
    within noise), ``recall@k`` and ``precision@k``.
    """
    q, db = _check_pair(queries, database)
    bits_list = _check_lengths(bit_list, q.shape[1])
    k = check_positive_int(k, "k")
    if not backends:
        raise ValueError("backends must name at least one backend, e.g. ('numpy',)")
    full = bits_list[-1]
    for stages, shortlist in funnels:
        if tuple(stages)[-1] != full:
            raise ValueError(f"funnel stages {tuple(stages)} must end at the longest length {full}")
        if len(shortlist) != len(stages) - 1:
            raise ValueError(f"funnel {tuple(stages)} needs {len(stages) - 1} shortlist sizes, "
                             f"got {tuple(shortlist)}")
    if relevant is not None:
        relevant = np.asarray(relevant, dtype=bool)
        if relevant.shape != (q.shape[0], db.shape[0]):
            raise ValueError(f"relevant must have shape {(q.shape[0], db.shape[0])}, "
                             f"got {relevant.shape}")
    n_time = q.shape[0] if timing_queries is None else min(
        check_positive_int(timing_queries, "timing_queries"), q.shape[0])
    rng = np.random.default_rng(seed)
    timed_q = q[np.sort(rng.choice(q.shape[0], n_time, replace=False))]

    indexes = {(b, be): HammingIndex(db[:, :b], backend=be) for b in bits_list for be in backends}
    full_index = indexes[full, backends[0]]
    methods: dict[str, dict] = {}
    calls: dict[str, object] = {}
    last: dict[str, tuple] = {}

    def remember(name, fn):
        def call():
            last[name] = fn()
        return call

    for b in bits_list:
        for be in backends:
            name = _exhaustive_name(b, be)
            methods[name] = {"kind": "exhaustive", "bits": b, "backend": be, "stages": (b,),
                             "shortlist": ()}
            index, qb = indexes[b, be], timed_q[:, :b]
            calls[name] = remember(name, lambda index=index, qb=qb: index.search(qb, k))
    for stages, shortlist in funnels:
        stages, shortlist = tuple(int(s) for s in stages), tuple(int(s) for s in shortlist)
        name = funnel_name(stages, shortlist)
        methods[name] = {"kind": "funnel", "bits": full, "backend": full_index.backend,
                         "stages": stages, "shortlist": shortlist}
        calls[name] = remember(name, lambda st=stages, sl=shortlist: funnel_search(
            full_index, timed_q, k, stages=st, shortlist=sl))
    reference = _exhaustive_name(full, backends[0])
    timings = interleaved_timings(calls, repeats=repeats, warmup=1, seed=seed)
    summary = summarize_timings(timings, reference=reference, per=n_time)

    identical = {}
    for b in bits_list:
        outs = [last[_exhaustive_name(b, be)] for be in backends]
        identical[b] = all(np.array_equal(o[0], outs[0][0]) and np.array_equal(o[1], outs[0][1])
                           for o in outs[1:])

    def fastest(b: int) -> HammingIndex:  # any backend gives the same answer (checked above)
        return indexes[b, min(backends, key=lambda be: summary.loc[_exhaustive_name(b, be),
                                                                     "median"])]

    exact = fastest(full).search(q, k)
    rows = []
    for name, info in methods.items():
        if info["kind"] == "exhaustive":
            if info["backend"] != backends[0]:
                ids = None  # same answer as the first backend
            else:
                ids = exact[1] if info["bits"] == full else \
                    fastest(info["bits"]).search(q[:, :info["bits"]], k)[1]
        else:
            ids = funnel_search(full_index, q, k, stages=info["stages"],
                                shortlist=info["shortlist"])[1]
        if ids is not None:
            recall = float(tie_aware_recall(full_index.distances(q, ids), exact[0]).mean())
            precision = (float(np.take_along_axis(relevant, ids, axis=1).mean())
                         if relevant is not None else np.nan)
            info["_quality"] = (recall, precision)
        else:
            first = _exhaustive_name(info["bits"], backends[0])
            info["_quality"] = methods[first]["_quality"]
        s = summary.loc[name]
        rows.append({
            "method": name, "kind": info["kind"], "bits": info["bits"],
            "backend": info["backend"], "stages": info["stages"], "shortlist": info["shortlist"],
            "ms per query": s["median"], "ms low": s["low"], "ms high": s["high"],
            "speed-up": s["speed-up"], "speed-up low": s["speed-up low"],
            "speed-up high": s["speed-up high"], "vs reference": s["vs reference"],
            f"recall@{k}": info["_quality"][0], f"precision@{k}": info["_quality"][1],
        })
    return SearchComparison(pd.DataFrame(rows), timings, identical, reference, n_time, exact)


# --------------------------------------------------------------------------- choosing a length


def pareto_front(points, minimize: Sequence[bool] = (True, False)) -> np.ndarray:
    """Indices of the non-dominated points, sorted by the first coordinate.

    ``points`` is ``(N, 2)``, e.g. (cost, quality). By default the first coordinate is to be
    minimised (bytes, latency) and the second maximised (mAP, recall). A point is dominated when
    another is at least as good in both coordinates and strictly better in one; equal points do
    not dominate each other, so both stay on the front.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(
            f"points must have shape (N, 2), e.g. [(bytes, mAP), ...], got {pts.shape}")
    if len(minimize) != 2:
        raise ValueError(f"minimize needs one flag per coordinate (2), got {tuple(minimize)!r}")
    if not np.isfinite(pts).all():
        raise ValueError("points must be finite (no NaN or inf)")
    # Flip so that smaller is better in both coordinates.
    better = pts * np.where(np.asarray(minimize, bool), 1.0, -1.0)
    le = (better[:, None, :] <= better[None, :, :]).all(axis=2)  # le[j, i]: j at least as good
    lt = (better[:, None, :] < better[None, :, :]).any(axis=2)
    dominated = (le & lt).any(axis=0)
    front = np.flatnonzero(~dominated)
    return front[np.lexsort((better[front, 1], pts[front, 0]))]


def _pareto_flags(cost: np.ndarray, quality: np.ndarray) -> np.ndarray:
    flags = np.zeros(cost.size, bool)
    flags[pareto_front(np.column_stack([cost, quality]))] = True
    return flags


def length_choice(
    queries,
    database,
    query_labels,
    database_labels,
    bit_list: Sequence[int],
    latency: pd.DataFrame | Mapping | None = None,
    topk: int | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """mAP, bytes and (optionally) latency per code length, with intervals and Pareto fronts.

    mAP is the tie-aware mAP@``topk`` (``None``: the whole database, docs/method.md §7),
    the mean of per-query AP; its interval is the bootstrap percentile interval over queries
    (``n_boot`` resamples, ``level``). ``gain`` is the mAP change from the previous length,
    with a paired bootstrap interval (the same resampled queries at both lengths); ``gain
    clear`` says whether that interval excludes 0.

    ``latency``: a table indexed by bits with ``median``, ``low``, ``high`` (e.g.
    :meth:`SearchComparison.latency_by_length`) and optionally ``vs shortest``.

    Returns one row per length: ``bits``, ``bytes``, ``mAP``, ``mAP low``, ``mAP high``,
    ``gain``, ``gain low``, ``gain high``, ``gain clear``, ``Pareto (bytes)`` and, with
    latency, ``latency ms``, ``latency low``, ``latency high``, ``Pareto (latency)``.
    """
    q, db = _check_pair(queries, database)
    bits_list = _check_lengths(bit_list, q.shape[1])
    ql = check_labels(query_labels, "query_labels", n_items=q.shape[0])
    dl = check_labels(database_labels, "database_labels", n_items=db.shape[0])
    n_boot = check_positive_int(n_boot, "n_boot")
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")
    ap = np.stack([average_precision(q[:, :b], db[:, :b], ql, dl, topk=topk) for b in bits_list])
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, q.shape[0], size=(n_boot, q.shape[0]))
    boot = np.stack([a[pick].mean(axis=1) for a in ap])  # (lengths, n_boot)
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    gains = np.diff(boot, axis=0)
    table = pd.DataFrame({
        "bits": bits_list,
        "bytes": [code_bytes(b) for b in bits_list],
        "mAP": ap.mean(axis=1),
        "mAP low": np.percentile(boot, lo_q, axis=1),
        "mAP high": np.percentile(boot, hi_q, axis=1),
        "gain": np.r_[np.nan, np.diff(ap.mean(axis=1))],
        "gain low": np.r_[np.nan, np.percentile(gains, lo_q, axis=1)],
        "gain high": np.r_[np.nan, np.percentile(gains, hi_q, axis=1)],
    })
    table["gain clear"] = [bool(lo > 0 or hi < 0) if np.isfinite(lo) else False
                           for lo, hi in zip(table["gain low"], table["gain high"])]
    table["Pareto (bytes)"] = _pareto_flags(table["bytes"].to_numpy(float),
                                            table["mAP"].to_numpy())
    if latency is not None:
        lat = pd.DataFrame(latency)
        missing = [c for c in ("median", "low", "high") if c not in lat.columns]
        absent = [b for b in bits_list if b not in lat.index]
        if missing or absent:
            raise ValueError(f"latency needs columns median, low, high indexed by bits "
                             f"{bits_list}; missing columns {missing}, lengths {absent}")
        lat = lat.loc[list(bits_list)]
        table["latency ms"] = lat["median"].to_numpy(float)
        table["latency low"] = lat["low"].to_numpy(float)
        table["latency high"] = lat["high"].to_numpy(float)
        if "vs shortest" in lat.columns:
            table["latency vs shortest"] = lat["vs shortest"].to_numpy()
        table["Pareto (latency)"] = _pareto_flags(table["latency ms"].to_numpy(),
                                                  table["mAP"].to_numpy())
    return table


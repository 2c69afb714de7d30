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
* :func:`compare_indexes`: what only nested codes allow: a hash index keyed by the trained
  short prefix of the stored code, re-ranked by the long code (one code, one index, one
  encoder), against the same funnel on a truncated long model's codes and on two independent
  single-length models' codes; with the shortlist re-scored by the real-valued outputs
  (:func:`real_outputs`), as vector databases do with binary embeddings.
* :func:`length_choice`: mAP per length with 95 % bootstrap intervals over queries, the gain
  of each length over the previous one (paired over queries), bytes per item, optional latency,
  and the Pareto-optimal lengths.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..metrics import average_precision, distance_block, pack_words, words_from_packed
from ..retrieval import HammingIndex, funnel_search, tie_aware_recall
from ..storage import code_bytes
from ..validation import check_bit_list, check_codes, check_labels, check_positive_int
from .timing import interleaved_timings, summarize_timings

__all__ = [
    "IndexComparison",
    "IndexSystem",
    "SearchComparison",
    "compare_indexes",
    "compare_search",
    "funnel_name",
    "key_neighbours",
    "length_choice",
    "neighbour_distances",
    "pareto_front",
    "real_outputs",
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


# --------------------------------------------------------------------------- real-valued outputs


OUTPUTS_FILE = "outputs.npz"


def _outputs(model, dataset, batch_size: int = 1024) -> np.ndarray:
    """Real-valued outputs ``h = W z + b`` (N x L_K, float32) of every item, in order, eval mode."""
    import torch

    was_training = model.training
    model.eval()
    n = len(dataset)
    out = np.empty((n, model.bit_list[-1]), np.float32)
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    if getattr(dataset, "in_memory", True):
        batches = (dataset.get_batch(torch.arange(s, min(s + batch_size, n)))[0]
                   for s in range(0, n, batch_size))
    else:
        from torch.utils.data import DataLoader

        batches = (x for x, _, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False))
    start = 0
    with torch.no_grad():
        for x in batches:
            h = model.hash_layer.project(model.backbone(x.to(device=device, dtype=dtype)))
            out[start : start + len(h)] = h.float().cpu().numpy()
            start += len(h)
    model.train(was_training)
    return out


def _signs_match(h: np.ndarray, codes: np.ndarray) -> bool:
    return h.shape == codes.shape and bool(np.array_equal(h >= 0, codes > 0))


def real_outputs(run, splits=None, cache: bool = True) -> dict[str, np.ndarray]:
    """The network's real-valued (pre-sign) outputs of a run's query and database items.

    ``{"query": (N_q, L_K), "database": (N_db, L_K)}`` float32: ``h = W z + b`` of the model
    at the selected epoch (:meth:`nhl.experiments.RunResult.model`), whose signs are the run's
    codes (checked: a mismatch means the weights and the codes do not belong together). The
    codes are what a run stores; these outputs are computed from its weights (``splits``:
    the run's data split, default :func:`nhl.experiments.get_splits` of its config) and, with
    ``cache``, kept in the run folder as ``outputs.npz`` (as the probes keep their recordings)
    so that a second call only reads them.
    """
    path = Path(run.path) / OUTPUTS_FILE
    if cache and path.exists():
        try:
            with np.load(path) as z:
                found = {"query": z["query"], "database": z["database"]}
            if all(_signs_match(found[s], run.codes[s]) for s in found):
                return found  # (a run trained again in the same folder has other codes: recomputed)
        except (OSError, ValueError, KeyError, EOFError):
            pass  # unreadable: compute again
    if splits is None:
        from ..experiments import get_splits

        splits = get_splits(run.config)
    model = run.model()
    found = {"query": _outputs(model, splits.query), "database": _outputs(model, splits.database)}
    for split, h in found.items():
        if not _signs_match(h, run.codes[split]):
            raise ValueError(f"the signs of the {split} outputs differ from the run's stored codes "
                             f"({run.path}): weights and codes do not belong together")
    if cache:
        tmp = path.with_name(f".{OUTPUTS_FILE}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **found)
        os.replace(tmp, path)
    return found


# --------------------------------------------------------------------------- index systems


def key_neighbours(systems: Mapping[str, tuple], bits: int, radii: Sequence[int] = (0, 1, 2)) -> pd.DataFrame:
    """Where a system's exact neighbours lie in its hash index: what decides a funnel's recall.

    ``systems[name] = (query_keys, database_keys, exact_ids)``: the codes whose first ``bits``
    bits key the buckets and the ids of each query's exact neighbours under the long code
    (e.g. :meth:`nhl.retrieval.HammingIndex.search` over the 128-bit codes). One row per name:
    ``keys used`` (distinct keys in the database), ``query's bucket`` (median over queries of
    the items sharing the query's key: the first stage takes an arbitrary part of it when the
    shortlist is smaller) and, per radius ``r``, ``neighbours within key distance r`` (share of
    the exact neighbours whose key is at most ``r`` bits from the query's: the most a shortlist
    of the buckets up to that distance can find).
    """
    bits = check_positive_int(bits, "bits")
    rows = []
    for name, (query_keys, database_keys, exact_ids) in systems.items():
        q, db = _check_pair(query_keys, database_keys)
        if bits > q.shape[1]:
            raise ValueError(f"bits={bits} but {name!r} has {q.shape[1]}-bit keys")
        ids = np.asarray(exact_ids)
        if ids.ndim != 2 or ids.shape[0] != q.shape[0]:
            raise ValueError(f"{name!r}: exact_ids must have shape (N_q, k) for {q.shape[0]} queries")
        if not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or ids.max() >= db.shape[0]:
            raise ValueError(f"{name!r}: exact_ids must be database positions 0..{db.shape[0] - 1}")
        db_keys, q_keys = np.packbits(db[:, :bits] > 0, axis=1), np.packbits(q[:, :bits] > 0, axis=1)
        values, counts = np.unique(db_keys, axis=0, return_counts=True)
        pos = np.minimum(np.searchsorted(_row_values(values), _row_values(q_keys)), len(values) - 1)
        own = np.where((values[pos] == q_keys).all(axis=1), counts[pos], 0)
        dist = (q[:, None, :bits] != db[ids, :bits]).sum(axis=2)  # (N_q, k) key distances
        row = {"key": name, "keys used": int(len(values)), "query's bucket": float(np.median(own))}
        for r in radii:
            row[f"neighbours within key distance {r}"] = float(np.mean(dist <= r))
        rows.append(row)
    return pd.DataFrame(rows).set_index("key")


def _row_values(packed: np.ndarray) -> np.ndarray:
    """One sortable integer per packed row (rows of at most 8 bytes), in np.unique's row order."""
    out = np.zeros(packed.shape[0], np.uint64)
    for j in range(packed.shape[1]):
        out = (out << np.uint64(8)) | packed[:, j].astype(np.uint64)
    return out


@dataclass
class IndexSystem:
    """One way to build a bucket index with re-ranking, for :func:`compare_indexes`.

    ``codes``: ``(queries, database)`` +-1 codes of the longest length, the stored codes the
    shortlist is re-ranked with. ``bucket_codes``: ``(queries, database)`` codes whose first
    ``bucket_bits`` bits key the buckets; ``None`` (default): the prefix of ``codes`` itself,
    one stored code and one index (a nested model, or one long model truncated). Codes of
    another model (an independent short model) make a second index with its own bucket keys,
    stored besides the long codes, and a second encoder for every query. ``vectors``: optional
    ``(queries, database)`` real-valued outputs (:func:`real_outputs`) to re-score with.
    ``models``: encoders a query passes through (default 1, or 2 with ``bucket_codes``).
    """

    codes: tuple
    bucket_codes: tuple | None = None
    vectors: tuple | None = None
    models: int | None = None


@dataclass
class IndexComparison:
    """What :func:`compare_indexes` measured: ``table`` (one row per system and search),
    ``timings`` (the raw interleaved rounds), ``reference`` (the method every speed-up is
    relative to), ``timing_queries`` (queries per timed call) and ``exact`` (per system, the
    ``(distances, ids)`` of its exhaustive search over the long codes, on all queries)."""

    table: pd.DataFrame
    timings: pd.DataFrame
    reference: str
    timing_queries: int
    exact: dict = field(default_factory=dict, repr=False)

    def for_plot(self, kinds: Sequence[str] = ("exhaustive", "funnel")) -> pd.DataFrame:
        """Rows of the given ``kinds`` for :func:`nhl.plots.search.plot_recall_latency` with
        ``method="group"`` and ``sort=True``: one group per system and kind, ``"<system>"`` for
        its funnels (labelled by shortlist size) and ``"<system>, <kind>"`` for the others
        (re-scored shortlists, labelled by shortlist size; single searches, unlabelled: draw
        them with ``unjoined``, they are not a sequence)."""
        rows = self.table[self.table["kind"].isin(list(kinds))].copy()
        if rows.empty:
            raise ValueError(f"no rows of kinds {tuple(kinds)}; measured: "
                             f"{sorted(set(self.table['kind']))}")
        rows["group"] = [system if kind == "funnel" else f"{system}, {kind}"
                         for system, kind in zip(rows["system"], rows["kind"])]
        rows["label"] = ["" if pd.isna(m) else str(int(m)) for m in rows["shortlist"]]
        return rows.reset_index(drop=True)


def _pair(value, name: str, n_q: int | None = None, n_db: int | None = None, codes: bool = True):
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a (queries, database) pair")
    if codes:
        q, db = check_codes(value[0], f"{name} queries"), check_codes(value[1], f"{name} database")
    else:
        q, db = np.asarray(value[0], np.float32), np.asarray(value[1], np.float32)
        if q.ndim != 2 or db.ndim != 2:
            raise ValueError(f"{name} must be two 2-D arrays (items x dimensions)")
    if q.shape[1] != db.shape[1]:
        raise ValueError(f"{name}: queries have {q.shape[1]} columns but the database {db.shape[1]}")
    if n_q is not None and (q.shape[0] != n_q or db.shape[0] != n_db):
        raise ValueError(f"{name} must hold the same {n_q} queries and {n_db} database items as "
                         f"the codes, got {q.shape[0]} and {db.shape[0]}")
    return q, db


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (inner product = cosine similarity); zero rows stay zero."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norm > 0, norm, 1)).astype(np.float32)


def compare_indexes(
    systems: Mapping[str, IndexSystem],
    k: int = 100,
    bucket_bits: int = 16,
    shortlists: Sequence[int] = (1000, 3000),
    oversample: int = 4,
    relevant=None,
    repeats: int = 5,
    timing_queries: int | None = 200,
    seed: int = 0,
) -> IndexComparison:
    """Hash index with re-ranking, per system: the ``bucket_bits``-bit key shortlists, the long
    code re-ranks (and real-valued outputs re-score), against each system's exhaustive search.

    For every system (:class:`IndexSystem`) and shortlist size ``m`` in ``shortlists``:

    * ``exhaustive``: exact Hamming search over the long codes (:class:`nhl.retrieval.HammingIndex`),
      the answer that system's recall is measured against;
    * ``funnel``: ``m`` items from the buckets of the ``bucket_bits``-bit key, re-ranked by
      the long code: :func:`nhl.retrieval.funnel_search` ``(bucket_bits, L)`` when the key is
      the code's prefix, :func:`nhl.retrieval.keyed_search` over ``[key | code]`` when it is
      another model's code (the same compiled pass, so their timings compare);
    * with ``vectors``: ``re-scored``: the funnel keeps ``oversample * k`` candidates by Hamming
      distance and :func:`nhl.retrieval.rescore` orders them by the cosine similarity of the
      real-valued outputs (the vectors are scaled to unit length; stores the database vectors
      too); ``re-scored, real query``: the same with the +-1 database codes (only the query is
      real-valued: no extra storage); and ``exhaustive real-valued``: the exact cosine top
      ``k`` over all items (:func:`nhl.retrieval.inner_product_search`).

    Every method is timed in interleaved rounds (:func:`nhl.studies.timing.interleaved_timings`)
    on the same ``timing_queries`` queries (a seeded subset; ``None``: all) and scored once on
    all queries. The table has one row per system and method: ``system``, ``method``, ``kind``,
    ``shortlist``, ``models`` (encoders per query), ``bytes per item`` (long code, plus a
    separate bucket key, plus float32 vectors where re-scoring reads them), ``ms per query`` /
    ``ms low`` / ``ms high``, ``speed-up`` / ``speed-up low`` / ``speed-up high`` / ``vs
    reference`` (against the first system's exhaustive search), ``recall@k`` (tie-aware, against
    the system's own exhaustive Hamming search), ``real-valued recall@k`` (against its
    exhaustive real-valued search; NaN without vectors) and ``precision@k`` (with ``relevant``,
    an ``(N_q, N_db)`` bool matrix).
    """
    from ..retrieval import inner_product_search, keyed_search, overlap_recall, rescore
    from .timing import interleaved_timings, summarize_timings

    if not isinstance(systems, Mapping) or not systems:
        raise ValueError("systems must be a non-empty {name: IndexSystem} mapping")
    k = check_positive_int(k, "k")
    bucket_bits = check_positive_int(bucket_bits, "bucket_bits")
    oversample = check_positive_int(oversample, "oversample")
    sizes = tuple(check_positive_int(m, "shortlist") for m in shortlists)
    if not sizes or any(m < k for m in sizes):
        raise ValueError(f"shortlists must be sizes >= k={k}, got {tuple(shortlists)}")
    built = {}
    for name, system in systems.items():
        if not isinstance(system, IndexSystem):
            raise TypeError(f"systems[{name!r}] must be an IndexSystem, got {type(system).__name__}")
        q, db = _pair(system.codes, f"{name!r} codes")
        if bucket_bits > q.shape[1]:
            raise ValueError(f"bucket_bits={bucket_bits} but {name!r} has {q.shape[1]}-bit codes")
        index = HammingIndex(db)
        if system.bucket_codes is None:  # the code's own prefix is the key: one index
            keyed_q, keyed_index, key_bytes = q, index, 0
        else:  # [key | code]: the key stored in front of the code, left out of the re-ranking
            bq, bdb = _pair(system.bucket_codes, f"{name!r} bucket_codes", q.shape[0], db.shape[0])
            if bucket_bits > bq.shape[1]:
                raise ValueError(f"bucket_bits={bucket_bits} but {name!r}'s bucket codes have "
                                 f"{bq.shape[1]} bits")
            keyed_q = np.hstack([bq[:, :bucket_bits], q])
            keyed_index = HammingIndex(np.hstack([bdb[:, :bucket_bits], db]))
            key_bytes = code_bytes(bucket_bits)
        vectors = None if system.vectors is None else tuple(_unit_rows(v) for v in _pair(
            system.vectors, f"{name!r} vectors", q.shape[0], db.shape[0], codes=False))
        models = system.models or (1 if system.bucket_codes is None else 2)
        built[name] = dict(q=q, db=db, index=index, keyed_q=keyed_q, keyed_index=keyed_index,
                           separate=system.bucket_codes is not None,
                           code_bytes=code_bytes(q.shape[1]) + key_bytes, vectors=vectors,
                           models=models)
    n_q = next(iter(built.values()))["q"].shape[0]
    n_db = next(iter(built.values()))["db"].shape[0]
    if any(b["q"].shape[0] != n_q or b["db"].shape[0] != n_db for b in built.values()):
        raise ValueError("every system must encode the same queries and database items")
    if relevant is not None:
        relevant = np.asarray(relevant, dtype=bool)
        if relevant.shape != (n_q, n_db):
            raise ValueError(f"relevant must have shape {(n_q, n_db)}, got {relevant.shape}")
    n_time = n_q if timing_queries is None else min(
        check_positive_int(timing_queries, "timing_queries"), n_q)
    timed = np.sort(np.random.default_rng(seed).choice(n_q, n_time, replace=False))
    keep = min(oversample * k, n_db)

    methods: dict[str, dict] = {}  # name -> row facts and search(rows) -> ids
    for name, b in built.items():
        def exhaustive(rows, b=b):
            return b["index"].search(b["q"][rows], k)[1]

        def funnel(rows, m, b=b, width=k):
            if b["separate"]:
                return keyed_search(b["keyed_index"], b["keyed_q"][rows], width, bucket_bits, m)[1]
            return funnel_search(b["index"], b["q"][rows], width, (bucket_bits, b["q"].shape[1]),
                                 (m,))[1]

        long_bits = b["q"].shape[1]
        base = {"system": name, "models": b["models"]}
        methods[f"{name}: exhaustive {long_bits} bits"] = dict(
            base, kind="exhaustive", shortlist=np.nan, bytes=b["code_bytes"], search=exhaustive)
        for m in sizes:
            methods[f"{name}: {bucket_bits}-bit buckets ({m}) > {long_bits} bits"] = dict(
                base, kind="funnel", shortlist=m, bytes=b["code_bytes"],
                search=lambda rows, m=m, funnel=funnel: funnel(rows, m))
        if b["vectors"] is None:
            continue
        vq, vdb = b["vectors"]
        for m in sizes:
            kept = min(keep, m)  # the Hamming stage keeps oversample * k of the m (at most m)
            methods[f"{name}: {bucket_bits}-bit buckets ({m}) > {long_bits} bits ({kept}) > "
                    "real-valued"] = dict(
                base, kind="re-scored", shortlist=m, bytes=b["code_bytes"] + 4 * vdb.shape[1],
                search=lambda rows, m=m, kept=kept, funnel=funnel, vq=vq, vdb=vdb: rescore(
                    vq[rows], vdb, funnel(rows, m, width=kept), k)[1])
            methods[f"{name}: {bucket_bits}-bit buckets ({m}) > {long_bits} bits ({kept}) > "
                    "real query, stored code"] = dict(
                base, kind="re-scored, real query", shortlist=m, bytes=b["code_bytes"],
                search=lambda rows, m=m, kept=kept, funnel=funnel, vq=vq, b=b: rescore(
                    vq[rows], b["db"], funnel(rows, m, width=kept), k)[1])
        methods[f"{name}: exhaustive real-valued"] = dict(
            base, kind="exhaustive real-valued", shortlist=np.nan,
            bytes=b["code_bytes"] + 4 * vdb.shape[1],
            search=lambda rows, vq=vq, vdb=vdb: inner_product_search(vq[rows], vdb, k)[1])

    reference = next(iter(methods))
    calls = {name: (lambda fn=info["search"]: fn(timed)) for name, info in methods.items()}
    timings = interleaved_timings(calls, repeats=repeats, warmup=1, seed=seed)
    summary = summarize_timings(timings, reference=reference, per=n_time)

    everyone = np.arange(n_q)
    exact = {name: b["index"].search(b["q"], k) for name, b in built.items()}
    exact_real = {name: inner_product_search(b["vectors"][0], b["vectors"][1], k)[1]
                  for name, b in built.items() if b["vectors"] is not None}
    rows = []
    for name, info in methods.items():
        system, b = info["system"], built[info["system"]]
        if info["kind"] == "exhaustive":
            ids = exact[system][1]
        elif info["kind"] == "exhaustive real-valued":
            ids = exact_real[system]
        else:
            ids = info["search"](everyone)
        recall = float(tie_aware_recall(b["index"].distances(b["q"], ids), exact[system][0]).mean())
        real = (float(overlap_recall(ids, exact_real[system]).mean()) if system in exact_real
                else np.nan)
        precision = (float(np.take_along_axis(relevant, ids, axis=1).mean())
                     if relevant is not None else np.nan)
        s = summary.loc[name]
        rows.append({
            "system": system, "method": name, "kind": info["kind"], "shortlist": info["shortlist"],
            "models": info["models"], "bytes per item": info["bytes"],
            "ms per query": s["median"], "ms low": s["low"], "ms high": s["high"],
            "speed-up": s["speed-up"], "speed-up low": s["speed-up low"],
            "speed-up high": s["speed-up high"], "vs reference": s["vs reference"],
            f"recall@{k}": recall, f"real-valued recall@{k}": real, f"precision@{k}": precision,
        })
    return IndexComparison(pd.DataFrame(rows), timings, reference, n_time, exact)


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


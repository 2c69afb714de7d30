"""Slow, obviously-correct reference implementations, used only to check and time ``nhl``.

``calc_topmap`` follows the per-query loop of DeepHash-pytorch's ``CalcTopMap`` (float codes,
one query at a time), with two fixes that docs/method.md §7 asks for: the whole database is
ranked when ``topk`` is None (the reference drops the last item), and ties are broken by
database index (a stable sort) instead of arbitrarily.
"""

from __future__ import annotations

import numpy as np


def calc_hamming_dist(b1: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """Hamming distance of one +-1 code ``b1`` (L,) to every row of ``b2`` (N, L)."""
    return 0.5 * (b2.shape[1] - np.dot(b1, b2.transpose()))


def calc_topmap_per_query(
    q_codes: np.ndarray,
    db_codes: np.ndarray,
    q_labels: np.ndarray,
    db_labels: np.ndarray,
    topk: int | None = None,
) -> np.ndarray:
    """Per-query AP@topk, one Python iteration per query (index-order ties)."""
    qb = np.asarray(q_codes, dtype=np.float32)
    rb = np.asarray(db_codes, dtype=np.float32)
    ql = np.asarray(q_labels, dtype=np.float32)
    rl = np.asarray(db_labels, dtype=np.float32)
    k = rb.shape[0] if topk is None else min(int(topk), rb.shape[0])
    out = np.zeros(qb.shape[0])
    for i in range(qb.shape[0]):
        gnd = (np.dot(ql[i, :], rl.transpose()) > 0).astype(np.float32)
        hamm = calc_hamming_dist(qb[i, :], rb)
        ind = np.argsort(hamm, kind="stable")
        tgnd = gnd[ind][:k]
        tsum = int(np.sum(tgnd))
        if tsum == 0:
            continue
        count = np.linspace(1, tsum, tsum)
        tindex = np.asarray(np.where(tgnd == 1)).ravel() + 1.0
        out[i] = np.mean(count / tindex)
    return out


def calc_topmap(q_codes, db_codes, q_labels, db_labels, topk=None) -> float:
    """mAP@topk as DeepHash-pytorch's ``CalcTopMap`` computes it, with the fixes above."""
    return float(np.mean(calc_topmap_per_query(q_codes, db_codes, q_labels, db_labels, topk)))


def pr_by_radius(q_codes, db_codes, q_labels, db_labels) -> tuple[np.ndarray, np.ndarray]:
    """Precision/recall within Hamming radius r = 0..L by a per-query loop."""
    qb = np.asarray(q_codes, dtype=np.float64)
    rb = np.asarray(db_codes, dtype=np.float64)
    bits = qb.shape[1]
    prec = np.zeros((qb.shape[0], bits + 1))
    rec = []
    for i in range(qb.shape[0]):
        gnd = (np.asarray(q_labels)[i] @ np.asarray(db_labels).T) > 0
        hamm = calc_hamming_dist(qb[i], rb)
        row = []
        for r in range(bits + 1):
            ret = hamm <= r
            hits = (ret & gnd).sum()
            prec[i, r] = hits / ret.sum() if ret.sum() else 0.0
            row.append(hits / gnd.sum() if gnd.sum() else np.nan)
        if gnd.sum():
            rec.append(row)
    recall = np.mean(rec, axis=0) if rec else np.zeros(bits + 1)
    return prec.mean(axis=0), recall


def calc_topmap_per_query_int(
    q_codes: np.ndarray,
    db_codes: np.ndarray,
    q_labels: np.ndarray,
    db_labels: np.ndarray,
    topk: int | None = None,
) -> np.ndarray:
    """The same per-query loop with integer distances (XOR + popcount on packed bytes), so that
    the stable argsort is numpy's radix sort: the fastest plain form of the literature's loop."""
    qb = np.packbits(np.asarray(q_codes) > 0, axis=1)
    rb = np.packbits(np.asarray(db_codes) > 0, axis=1)
    ql = np.asarray(q_labels, dtype=np.int64)
    rl = np.asarray(db_labels, dtype=np.int64)
    k = rb.shape[0] if topk is None else min(int(topk), rb.shape[0])
    out = np.zeros(qb.shape[0])
    for i in range(qb.shape[0]):
        gnd = (rl @ ql[i]) > 0
        hamm = np.bitwise_count(rb ^ qb[i]).sum(axis=1, dtype=np.int16)
        tgnd = gnd[np.argsort(hamm, kind="stable")][:k]
        tsum = int(np.sum(tgnd))
        if tsum == 0:
            continue
        count = np.arange(1, tsum + 1)
        tindex = np.flatnonzero(tgnd) + 1.0
        out[i] = np.mean(count / tindex)
    return out

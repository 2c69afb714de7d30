"""Pictures of retrieval: example images, and the top-k database images a query retrieves.

Ranking is Hamming ranking on +-1 codes (docs/method.md §7) with ties broken by database
index (a stable sort), so a picture is reproducible and matches ``ties="index"`` mAP. Codes of
``b`` bits are the first ``b`` columns of the longest code (docs/method.md §1).

Frames: the query is framed :data:`QUERY_COLOR`; a retrieved image that shares a class with the
query is framed :data:`RIGHT_COLOR` (green), any other :data:`WRONG_COLOR` (red).

Numbers behind the pictures: :func:`topk_summary` (per query and length: how many of the top k
are right, the nearest distance and how many database items tie there); the mAP of a ranking
that knows nothing, the floor every table should be read against, is
:func:`nhl.metrics.chance_map`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..validation import check_bit_list, check_codes, check_labels, check_positive_int, to_numpy

QUERY_COLOR = "#1f4e9c"
RIGHT_COLOR = "#2ca02c"
WRONG_COLOR = "#d62728"
FRAME_WIDTH = 3.0

__all__ = [
    "QUERY_COLOR",
    "RIGHT_COLOR",
    "WRONG_COLOR",
    "compare_topk_by_length",
    "first_of_classes",
    "frame",
    "hamming_top_k",
    "nearest_ties",
    "relevant",
    "show_images",
    "show_topk",
    "tie_summary",
    "topk_summary",
]


# --------------------------------------------------------------------------- ranking


def hamming_top_k(query_codes, db_codes, k: int = 10, bits: int | None = None):
    """The ``k`` nearest database items of each query by Hamming distance on ``bits`` bits.

    Uses the first ``bits`` columns of the codes (default: all of them); ties are broken by
    database index (the order of a stable sort of the distances). Uses
    :class:`nhl.retrieval.HammingIndex`. Returns ``(distances, indices)``, both ``(N_q, k)``
    integer arrays (``k`` capped at the database size).
    """
    from ..retrieval import HammingIndex

    q = check_codes(query_codes, "query_codes")
    db = check_codes(db_codes, "db_codes")
    k = check_positive_int(k, "k")
    bits = q.shape[1] if bits is None else check_positive_int(bits, "bits")
    if bits > min(q.shape[1], db.shape[1]):
        raise ValueError(
            f"bits={bits} but the codes have {min(q.shape[1], db.shape[1])} bits; "
            "ask for a length no longer than the codes"
        )
    return HammingIndex(db[:, :bits]).search(q[:, :bits], k)


def nearest_ties(q_codes, db_codes, bits: int, chunk_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per query, on the first ``bits`` bits: the nearest Hamming distance to the database and
    how many database items sit at exactly that distance (the tie group a ranking starts with).

    Returns ``(distance, tied)``, two ``(N_q,)`` integer arrays. Computed ``chunk_size`` queries
    at a time (distances of one chunk in memory).
    """
    from ..metrics import hamming_distances

    q = check_codes(q_codes, "q_codes")
    db = check_codes(db_codes, "db_codes")
    bits = check_positive_int(bits, "bits")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    if bits > min(q.shape[1], db.shape[1]):
        raise ValueError(f"bits={bits} exceeds the code length {min(q.shape[1], db.shape[1])}")
    distance = np.empty(q.shape[0], np.int64)
    tied = np.empty(q.shape[0], np.int64)
    for start in range(0, q.shape[0], chunk_size):
        d = hamming_distances(q[start:start + chunk_size, :bits], db[:, :bits])
        low = d.min(axis=1)
        distance[start:start + d.shape[0]] = low
        tied[start:start + d.shape[0]] = (d == low[:, None]).sum(axis=1)
    return distance, tied


def tie_summary(q_codes, db_codes, bit_list: Sequence[int], k: int = 10):
    """Per length, over all queries: how crowded the top of the Hamming ranking is.

    Columns: ``median tied at nearest`` (database items at the query's nearest distance, median
    over queries), ``share with > k tied`` (queries whose top ``k`` is a tie-break's pick among
    more than ``k`` equally near items) and ``share nearest at d=0`` (queries with a database
    item of the very same code). Shares are fractions in [0, 1]. Index: ``bits``.
    """
    import pandas as pd

    bits_list = check_bit_list(bit_list)
    k = check_positive_int(k, "k")
    rows = []
    for bits in bits_list:
        distance, tied = nearest_ties(q_codes, db_codes, bits)
        rows.append({"bits": bits, "median tied at nearest": float(np.median(tied)),
                     f"share with > {k} tied": float((tied > k).mean()),
                     "share nearest at d=0": float((distance == 0).mean())})
    return pd.DataFrame(rows).set_index("bits")


def relevant(query_labels, db_labels, indices) -> np.ndarray:
    """``(N_q, k)`` bool: does retrieved item ``indices[i, j]`` share a class with query ``i``?"""
    ql = check_labels(query_labels, "query_labels")
    dl = check_labels(db_labels, "db_labels")
    idx = np.asarray(indices)
    if idx.ndim != 2 or idx.shape[0] != ql.shape[0]:
        raise ValueError(
            f"indices must be (n_queries={ql.shape[0]}, k), got shape {tuple(idx.shape)}"
        )
    return np.einsum("qc,qkc->qk", ql.astype(np.int32), dl[idx].astype(np.int32)) > 0


def first_of_classes(query_labels, class_names: Sequence[str], names: Sequence[str]) -> list[int]:
    """Position of the first query of each class in ``names`` (e.g. ``["Trouser", "Shirt"]``).

    A deterministic way to pick example queries (no cherry-picking by result). Multi-hot rows
    count for every class they hold.
    """
    ql = check_labels(query_labels, "query_labels")
    out = []
    for name in names:
        if name not in class_names:
            raise ValueError(f"unknown class {name!r}; classes: {', '.join(class_names)}")
        hits = np.flatnonzero(ql[:, list(class_names).index(name)])
        if hits.size == 0:
            raise ValueError(f"no query of class {name!r}")
        out.append(int(hits[0]))
    return out


# --------------------------------------------------------------------------- drawing


def _as_hwc(images) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) -> (N, H, W, C) numpy."""
    arr = to_numpy(images, "images")
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3, 4):
        raise ValueError(
            "images must be (N, H, W) or (N, H, W, C) with C in 1, 3, 4 (use "
            f"dataset.images_for_display(positions)), got shape {tuple(arr.shape)}"
        )
    return arr


def _draw_image(ax, image: np.ndarray) -> None:
    """One (H, W, C) image without ticks or grid."""
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255 if image.dtype == np.uint8 else None)
    else:
        ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def frame(ax, color: str, width: float = FRAME_WIDTH) -> None:
    """Draw a coloured frame around an image axes (its four spines)."""
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor(color)
        spine.set_linewidth(width)


def _class_text(label_row, class_names: Sequence[str] | None) -> str:
    row = np.asarray(label_row)
    if row.ndim == 0:
        ids = [int(row)]
    else:
        ids = np.flatnonzero(row).tolist()
    names = [class_names[i] if class_names is not None else str(i) for i in ids]
    return ", ".join(names)


def show_images(
    images,
    labels=None,
    class_names: Sequence[str] | None = None,
    ncols: int = 8,
    title: str | None = None,
    size: float = 1.3,
):
    """A grid of images titled by class name. Returns the matplotlib Figure.

    ``images``: ``(N, H, W[, C])`` (e.g. ``dataset.images_for_display(positions)``);
    ``labels``: class ids ``(N,)`` or multi-hot rows ``(N, C)``; ``class_names`` names them.
    """
    import matplotlib.pyplot as plt

    imgs = _as_hwc(images)
    n = imgs.shape[0]
    if n == 0:
        raise ValueError("images is empty; pass at least one image")
    lab = None if labels is None else to_numpy(labels, "labels")
    if lab is not None and lab.shape[0] != n:
        raise ValueError(f"labels has {lab.shape[0]} rows for {n} images; they must match")
    ncols = min(check_positive_int(ncols, "ncols"), n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        _draw_image(ax, imgs[i])
        if lab is not None:
            ax.set_title(_class_text(lab[i], class_names), fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_topk(
    query_images,
    retrieved_images,
    correct,
    row_labels: Sequence[str] | None = None,
    titles=None,
    size: float = 0.95,
    fig=None,
):
    """Rows of ``query | top-k retrieved`` images with green (right) / red (wrong) frames.

    ``query_images``: ``(R, H, W[, C])``, one per row; ``retrieved_images``:
    ``(R, k, H, W[, C])``; ``correct``: ``(R, k)`` bool; ``row_labels``: text left of each row;
    ``titles``: ``(R, k)`` strings above the retrieved images (e.g. Hamming distances).
    Returns the Figure; ``fig.axes`` are row-major, the query of each row first.
    """
    import matplotlib.pyplot as plt

    q = _as_hwc(query_images)
    retrieved = to_numpy(retrieved_images, "retrieved_images")
    if retrieved.ndim == 4:
        retrieved = retrieved[..., None]
    ok = np.asarray(to_numpy(correct, "correct"), dtype=bool)
    if retrieved.ndim != 5 or retrieved.shape[0] != q.shape[0]:
        raise ValueError(
            f"retrieved_images must be (rows={q.shape[0]}, k, H, W[, C]), "
            f"got shape {tuple(retrieved.shape)}"
        )
    rows, k = retrieved.shape[:2]
    if ok.shape != (rows, k):
        raise ValueError(f"correct must be a ({rows}, {k}) bool array, got shape {ok.shape}")
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"row_labels has {len(row_labels)} entries for {rows} rows")
    if titles is not None:
        titles = np.asarray(titles, dtype=object)
        if titles.shape != (rows, k):
            raise ValueError(f"titles must be ({rows}, {k}) strings, got shape {titles.shape}")
    if fig is None:
        fig = plt.figure(figsize=(size * (k + 1) + (1.4 if row_labels else 0.2), size * rows + 0.5))
    axes = fig.subplots(rows, k + 1, squeeze=False)
    for r in range(rows):
        ax = axes[r, 0]
        _draw_image(ax, q[r])
        frame(ax, QUERY_COLOR)
        if r == 0:
            ax.set_title("query", fontsize=9)
        if row_labels is not None:
            ax.set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=9)
        for j in range(k):
            ax = axes[r, j + 1]
            _draw_image(ax, retrieved[r, j])
            frame(ax, RIGHT_COLOR if ok[r, j] else WRONG_COLOR)
            if titles is not None:
                ax.set_title(str(titles[r, j]), fontsize=8)
    fig.subplots_adjust(wspace=0.12, hspace=0.35)
    return fig


def _run_codes(run_or_codes) -> dict:
    codes = getattr(run_or_codes, "codes", run_or_codes)
    need = ("query", "database", "query_labels", "database_labels")
    if not isinstance(codes, dict) or any(key not in codes for key in need):
        raise TypeError(
            "run_or_codes must be a RunResult (nhl.experiments.run) or a dict with keys "
            f"{', '.join(need)}"
        )
    return codes


def topk_summary(
    run_or_codes,
    query_ids: Sequence[int],
    lengths: Sequence[int] = (8, 128),
    k: int = 10,
    class_names: Sequence[str] | None = None,
):
    """Per query and length: class, right answers in the top ``k``, and the nearest tie group.

    ``run_or_codes``: a :class:`~nhl.experiments.RunResult` or its ``codes`` dict;
    ``query_ids``: positions in the query set. Columns: ``query``, ``class``, ``bits``,
    ``right of top k``, ``nearest distance`` (Hamming distance of the closest database item) and
    ``tied at nearest`` (how many database items sit at that distance: when it exceeds ``k``,
    which of them are shown is decided by the tie-break, not by the model). Returns a DataFrame
    with one row per query and length, queries in the given order.
    """
    import pandas as pd

    codes = _run_codes(run_or_codes)
    lengths = check_bit_list(lengths, "lengths")
    k = check_positive_int(k, "k")
    qids = np.asarray(query_ids, dtype=np.int64).reshape(-1)
    if qids.size == 0:
        raise ValueError("query_ids is empty; pick a few query positions, e.g. [0, 1, 2]")
    n_q = codes["query"].shape[0]
    if qids.min() < 0 or qids.max() >= n_q:
        raise IndexError(f"query_ids must lie in [0, {n_q}), got {qids.tolist()}")
    q_codes, q_labels = codes["query"][qids], codes["query_labels"][qids]
    per_length = {}
    for bits in lengths:
        _, idx = hamming_top_k(q_codes, codes["database"], k, bits)
        right = relevant(q_labels, codes["database_labels"], idx).sum(axis=1)
        per_length[bits] = (right, nearest_ties(q_codes, codes["database"], bits), idx.shape[1])
    rows = []
    for i, qid in enumerate(qids):
        for bits in lengths:
            right, (distance, tied), shown = per_length[bits]
            rows.append({
                "query": int(qid),
                "class": _class_text(q_labels[i], class_names),
                "bits": bits,
                f"right of top {shown}": int(right[i]),
                "nearest distance": int(distance[i]),
                "tied at nearest": int(tied[i]),
            })
    return pd.DataFrame(rows)


def compare_topk_by_length(
    run_or_codes,
    splits,
    query_ids: Sequence[int],
    lengths: Sequence[int] = (8, 128),
    k: int = 10,
    size: float = 0.95,
    class_names: Sequence[str] | None = None,
):
    """Top-``k`` retrieved images of a few queries at several code lengths, one row each.

    ``run_or_codes``: a :class:`~nhl.experiments.RunResult` or its ``codes`` dict (query and
    database codes in the order of ``splits.query`` / ``splits.database``); ``query_ids``:
    positions in ``splits.query``; ``class_names``: default ``splits.class_names``. Rows go
    query by query, one per length; the label gives the query's class, how many of the ``k``
    are right and how many database items tie at the nearest distance
    (:func:`topk_summary`); titles give each item's Hamming distance. Returns the Figure.
    """
    codes = _run_codes(run_or_codes)
    lengths = check_bit_list(lengths, "lengths")
    if class_names is None:
        class_names = getattr(splits, "class_names", None)
    summary = topk_summary(codes, query_ids, lengths, k, class_names)
    qids = np.asarray(query_ids, dtype=np.int64).reshape(-1)
    q_codes = codes["query"][qids]
    q_labels = codes["query_labels"][qids]
    q_imgs = _as_hwc(splits.query.images_for_display(qids))
    per_length = {}
    for bits in lengths:
        dist, idx = hamming_top_k(q_codes, codes["database"], k, bits)
        per_length[bits] = (dist, idx, relevant(q_labels, codes["database_labels"], idx))
    right_col = [c for c in summary.columns if c.startswith("right of top")][0]
    facts = {(r["query"], r["bits"]): r for r in summary.to_dict("records")}
    rows_q, rows_r, rows_ok, rows_lab, rows_tit = [], [], [], [], []
    for i, qid in enumerate(qids):
        for bits in lengths:
            dist, idx, ok = per_length[bits]
            f = facts[(int(qid), bits)]
            rows_q.append(q_imgs[i])
            rows_r.append(_as_hwc(splits.database.images_for_display(idx[i])))
            rows_ok.append(ok[i])
            rows_lab.append(
                f"query {int(qid)}: {f['class']}\n{bits} bits: {f[right_col]}/{ok.shape[1]} right\n"
                f"{f['tied at nearest']:,} tied at d={f['nearest distance']}"
            )
            rows_tit.append([f"d={int(d)}" for d in dist[i]])
    return show_topk(
        np.stack(rows_q), np.stack(rows_r), np.stack(rows_ok), rows_lab, rows_tit, size=size
    )

"""Pictures of retrieval: example images, and the top-k database images a query retrieves.

Ranking is Hamming ranking on +-1 codes (METHOD.md section 5) with ties broken by database
index (a stable sort), so a picture is reproducible and matches ``ties="index"`` mAP. Codes of
``b`` bits are the first ``b`` columns of the longest code (METHOD.md section 1).

Frames: the query is framed :data:`QUERY_COLOR`; a retrieved image that shares a class with the
query is framed :data:`RIGHT_COLOR` (green), any other :data:`WRONG_COLOR` (red).
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
    "frame",
    "hamming_top_k",
    "relevant",
    "show_images",
    "show_topk",
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


def compare_topk_by_length(
    run_or_codes,
    splits,
    query_ids: Sequence[int],
    lengths: Sequence[int] = (8, 128),
    k: int = 10,
    size: float = 0.95,
):
    """Top-``k`` retrieved images of a few queries at several code lengths, one row each.

    ``run_or_codes``: a :class:`~nhl.experiments.RunResult` or its ``codes`` dict (query and
    database codes in the order of ``splits.query`` / ``splits.database``); ``query_ids``:
    positions in ``splits.query``. Rows go query by query, one per length; the label says how
    many of the ``k`` are right, titles give each item's Hamming distance. Returns the Figure.
    """
    codes = _run_codes(run_or_codes)
    lengths = check_bit_list(lengths, "lengths")
    qids = np.asarray(query_ids, dtype=np.int64).reshape(-1)
    if qids.size == 0:
        raise ValueError("query_ids is empty; pick a few query positions, e.g. [0, 1, 2]")
    n_q = codes["query"].shape[0]
    if qids.min() < 0 or qids.max() >= n_q:
        raise IndexError(f"query_ids must lie in [0, {n_q}), got {qids.tolist()}")
    q_codes = codes["query"][qids]
    q_labels = codes["query_labels"][qids]
    q_imgs = _as_hwc(splits.query.images_for_display(qids))
    rows_q, rows_r, rows_ok, rows_lab, rows_tit = [], [], [], [], []
    per_length = {}
    for bits in lengths:
        dist, idx = hamming_top_k(q_codes, codes["database"], k, bits)
        per_length[bits] = (dist, idx, relevant(q_labels, codes["database_labels"], idx))
    for i, qid in enumerate(qids):
        for bits in lengths:
            dist, idx, ok = per_length[bits]
            rows_q.append(q_imgs[i])
            rows_r.append(_as_hwc(splits.database.images_for_display(idx[i])))
            rows_ok.append(ok[i])
            rows_lab.append(f"query {int(qid)}\n{bits} bits: {int(ok[i].sum())}/{ok.shape[1]}")
            rows_tit.append([f"d={int(d)}" for d in dist[i]])
    return show_topk(
        np.stack(rows_q), np.stack(rows_r), np.stack(rows_ok), rows_lab, rows_tit, size=size
    )

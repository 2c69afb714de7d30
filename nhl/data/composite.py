"""Two offline datasets composed from real Fashion-MNIST images (docs/method.md §8).

The paper evaluates on ImageNet-100 (100 classes, mAP@1000) and on the multi-label NUS-WIDE /
MS-COCO (mAP@5000). Neither can be fetched offline, so these two datasets are small stand-ins
with the same *retrieval structure*, built deterministically from the 70,000 Fashion-MNIST
images (the 60,000 training and 10,000 test images together; 7,000 per class):

``fashion-mnist-100`` (single-label, 100 classes, like ImageNet-100)
    Each item is two Fashion-MNIST images side by side, ``uint8`` ``(1, 28, 56)``: the left piece
    then the right piece. Its class is the ordered pair of the pieces' classes,
    ``10 * left_class + right_class``, named e.g. ``"Trouser | Bag"``. From ``build_seed``
    (a ``numpy.random.default_rng``), each source class reserves 200 random images as its
    *query piece pool*; the other 6,800 are its *rest pool*.

    * 1,000 query items, 10 per class: every query piece is used exactly once, 100 of each
      class's pool as left pieces (10 for each right class) and 100 as right pieces.
    * 68,000 other items, 680 per class: every rest piece is used exactly twice, once as a left
      piece and once as a right piece (two independent random orders of the rest pool). An item
      of a class ``(a, a)`` could get the same image on both sides; such collisions (none to a few
      per build) are repaired deterministically by exchanging right pieces among the items of that
      class (a cyclic shift among the colliding items, or a swap with the next item when only one
      collides), which keeps every use count.

    Pieces of query items therefore never appear in a non-query item, and no item shows one
    source image twice.

``fashion-mnist-multilabel`` (multi-label, 10 labels, like NUS-WIDE / MS-COCO)
    Each item is a 2 x 2 mosaic of four Fashion-MNIST images, ``uint8`` ``(1, 56, 56)``, cells in
    the order top-left, top-right, bottom-left, bottom-right. Its label is multi-hot over the 10
    Fashion-MNIST classes: 1 for every class among its four pieces (similar = at least one shared
    label, the package's rule). Layout of a mosaic: ``k`` uniform in {1, 2, 3}, then ``k``
    distinct classes uniformly at random, then the four cells hold the ``k`` classes once each
    plus ``4 - k`` cells of classes drawn uniformly from the same ``k``, in random positions.
    About 36 % of random pairs of mosaics share a label.

    * 1,000 query mosaics: their layouts are drawn first; each class reserves exactly as many
      random images as the query cells of that class need (about 400), and every reserved
      query piece is used exactly once.
    * 32,000 other mosaics from the remaining pieces (about 6,600 per class). For class ``c``
      needing ``m`` cells from ``r`` rest pieces, the pieces form a stream: a random order of
      all ``r`` pieces, then (when ``m > r``) ``m - r`` distinct pieces drawn at random from all
      but the last three of that order; the stream fills the class-``c`` cells in row-major order
      (so a mosaic's cells of one class take consecutive stream entries). Every rest piece is thus
      used once or twice and never twice within one mosaic (a piece used twice has its two uses
      at least four entries apart). If some class would need more than ``2 r - 3`` cells (a
      rare draw), all 32,000 layouts are drawn again from the same generator.

Both: the data's own partitions are ``{"test": query items, "train": all others}``; the test
items come last (as in Fashion-MNIST) and item order is shuffled within each partition.
:attr:`~nhl.data.FullData.pieces` gives each item's source indices into the 70,000 Fashion-MNIST
images (``(N, 2)`` left/right or ``(N, 4)`` cells), so labels can be checked against the pieces.

**Cache.** The first load writes ``{root}/{name}/build-seed{seed}.npz`` (uncompressed: images,
labels, pieces, partitions and a JSON ``meta`` with the dataset name, build seed, construction
version and the SHA-256 of the source Fashion-MNIST files), atomically (temp file +
``os.replace``). Later loads read it without touching the Fashion-MNIST files. A cache whose
meta does not match (another seed, construction version or source), or one that cannot be read
(truncated, corrupt, arrays missing or of the wrong shape), is **rebuilt and overwritten** with a
warning; stale or damaged data is never used. If the cache cannot be written (read-only root)
the data is built in memory with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..utils import atomic_write
from .dataset import FullData
from .fashion_mnist import CLASS_NAMES, SHA256, load_fashion_mnist

__all__ = [
    "CONSTRUCTION_VERSION",
    "MOSAIC_NAME",
    "NAMES",
    "PAIRS_NAME",
    "build_mosaics",
    "build_pairs",
    "cache_path",
    "load_composite",
    "mosaic_images",
    "pair_class_names",
    "pair_images",
    "source_identity",
]

PAIRS_NAME = "fashion-mnist-100"
MOSAIC_NAME = "fashion-mnist-multilabel"
NAMES = (PAIRS_NAME, MOSAIC_NAME)
#: Bumped whenever the construction changes: cache files, split files and run caches follow.
CONSTRUCTION_VERSION = 1
_CACHE_FORMAT = 1
_ARRAYS = ("images", "labels", "pieces", "train", "test", "meta")

# fashion-mnist-100
PAIR_QUERY_PIECES = 200  # per source class
# fashion-mnist-multilabel
MOSAIC_QUERIES = 1000
MOSAIC_OTHERS = 32000
_MAX_LAYOUT_DRAWS = 100


def source_identity() -> str:
    """SHA-256 naming the source: the checksums of the four Fashion-MNIST files.

    :func:`nhl.data.fashion_mnist.load_fashion_mnist` verifies every file against these
    checksums, so they identify the pixels and labels the datasets are built from.
    """
    text = json.dumps(SHA256, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def pair_class_names() -> list[str]:
    """The 100 class names of ``fashion-mnist-100``: ``"left | right"`` (class ``10 a + b``)."""
    return [f"{a} | {b}" for a in CLASS_NAMES for b in CLASS_NAMES]


def cache_path(root: str | Path, name: str, build_seed: int) -> Path:
    """``{root}/{name}/build-seed{seed}.npz``."""
    return Path(root) / name / f"build-seed{int(build_seed)}.npz"


# ------------------------------------------------------------------------------------------
# composing pixels
# ------------------------------------------------------------------------------------------
def pair_images(source: np.ndarray, pieces: np.ndarray) -> np.ndarray:
    """``uint8`` ``(N, 1, h, 2w)``: ``source[pieces[:, 0]]`` left of ``source[pieces[:, 1]]``."""
    tiles = source[pieces]  # (N, 2, h, w)
    n, _, h, w = tiles.shape
    return np.ascontiguousarray(tiles.transpose(0, 2, 1, 3)).reshape(n, 1, h, 2 * w)


def mosaic_images(source: np.ndarray, pieces: np.ndarray) -> np.ndarray:
    """``uint8`` ``(N, 1, 2h, 2w)``: cells 0, 1 on top, 2, 3 below, from ``source[pieces]``."""
    tiles = source[pieces]  # (N, 4, h, w)
    n, _, h, w = tiles.shape
    grid = tiles.reshape(n, 2, 2, h, w).transpose(0, 1, 3, 2, 4)  # (N, row, y, col, x)
    return np.ascontiguousarray(grid).reshape(n, 1, 2 * h, 2 * w)


def _class_pools(classes: np.ndarray, n_classes: int) -> list[np.ndarray]:
    return [np.flatnonzero(classes == c) for c in range(n_classes)]


def _finish(
    pieces_train: np.ndarray,
    pieces_test: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Shuffle item order within each partition; the test (query) items come last."""
    pieces = np.concatenate(
        [
            pieces_train[rng.permutation(len(pieces_train))],
            pieces_test[rng.permutation(len(pieces_test))],
        ]
    ).astype(np.int64)
    n_train = len(pieces_train)
    partitions = {
        "train": np.arange(n_train, dtype=np.int64),
        "test": np.arange(n_train, len(pieces), dtype=np.int64),
    }
    return pieces, partitions


# ------------------------------------------------------------------------------------------
# fashion-mnist-100: pairs
# ------------------------------------------------------------------------------------------
def _repair_self_pairs(left: np.ndarray, right: np.ndarray) -> None:
    """Exchange entries of ``right`` in place so that ``left[i] != right[i]`` for every ``i``.

    ``left`` and ``right`` each hold distinct values. Colliding positions (``left == right``)
    get their right pieces shifted cyclically among themselves when there are two or more;
    a single collision at ``i`` swaps right pieces with position ``i + 1`` (mod length). Both
    keep the multiset of right pieces and create no new collision.
    """
    bad = np.flatnonzero(left == right)
    if bad.size >= 2:
        right[bad] = np.roll(right[bad], 1)
    elif bad.size == 1:
        if len(right) < 2:
            raise ValueError("cannot avoid a self-pair in a class with a single item")
        i = int(bad[0])
        k = (i + 1) % len(right)
        right[i], right[k] = right[k], right[i]


def build_pairs(
    source_classes: np.ndarray,
    build_seed: int = 0,
    query_pieces: int = PAIR_QUERY_PIECES,
) -> dict[str, np.ndarray]:
    """Pieces, labels and partitions of ``fashion-mnist-100`` (see the module docstring).

    ``source_classes``: class id of every source image (Fashion-MNIST: 70,000 values, 7,000 per
    class). ``query_pieces`` per class must be a multiple of ``2 * n_classes``; the rest of each
    class a multiple of ``n_classes``. Returns ``pieces`` ``(N, 2)``, ``class_ids`` ``(N,)``,
    ``train`` and ``test`` index arrays; pixels come from :func:`pair_images`.
    """
    classes = np.asarray(source_classes, dtype=np.int64)
    n_cls = int(classes.max()) + 1
    pools = _class_pools(classes, n_cls)
    sizes = {len(p) for p in pools}
    if len(sizes) != 1:
        raise ValueError(f"every source class needs the same number of images, got {sorted(sizes)}")
    per_class = sizes.pop()
    rest = per_class - query_pieces
    if query_pieces % (2 * n_cls) or rest < 2 * n_cls or rest % n_cls:
        raise ValueError(
            f"{per_class} images per class with {query_pieces} query pieces cannot be split "
            f"evenly over {n_cls} x {n_cls} classes"
        )
    q = query_pieces // (2 * n_cls)  # query items per class
    m = rest // n_cls  # other items per class
    rng = np.random.default_rng(build_seed)
    # [left class, right class, j] -> source index
    q_left = np.empty((n_cls, n_cls, q), np.int64)
    q_right = np.empty((n_cls, n_cls, q), np.int64)
    r_left = np.empty((n_cls, n_cls, m), np.int64)
    r_right = np.empty((n_cls, n_cls, m), np.int64)
    for c in range(n_cls):
        perm = rng.permutation(pools[c])
        qpool, rpool = perm[:query_pieces], perm[query_pieces:]
        half = query_pieces // 2
        q_left[c] = qpool[:half].reshape(n_cls, q)  # c on the left, one block per right class
        q_right[:, c] = qpool[half:].reshape(n_cls, q)  # c on the right, per left class
        r_left[c] = rng.permutation(rpool).reshape(n_cls, m)
        r_right[:, c] = rng.permutation(rpool).reshape(n_cls, m)
    for c in range(n_cls):  # only (c, c) items can pair an image with itself
        _repair_self_pairs(r_left[c, c], r_right[c, c])
    rest_pieces = np.stack([r_left.reshape(-1), r_right.reshape(-1)], axis=1)
    query_pieces_arr = np.stack([q_left.reshape(-1), q_right.reshape(-1)], axis=1)
    pieces, partitions = _finish(rest_pieces, query_pieces_arr, rng)
    class_ids = n_cls * classes[pieces[:, 0]] + classes[pieces[:, 1]]
    return {"pieces": pieces, "class_ids": class_ids, **partitions}


# ------------------------------------------------------------------------------------------
# fashion-mnist-multilabel: mosaics
# ------------------------------------------------------------------------------------------
def _draw_layouts(rng: np.random.Generator, n: int, n_cls: int) -> np.ndarray:
    """``(n, 4)`` class of every cell: k ~ U{1,2,3}, k distinct classes, each at least once."""
    k = rng.integers(1, 4, size=n)
    chosen = np.argsort(rng.random((n, n_cls)), axis=1)[:, :3]  # first k are the k classes
    extra = rng.integers(0, k[:, None], size=(n, 4))  # which of the k classes fills a cell
    cell = np.arange(4)[None, :]
    slot = np.where(cell < k[:, None], cell, extra)  # cells 0..k-1 show each class once
    order = np.argsort(rng.random((n, 4)), axis=1)  # random positions
    slot = np.take_along_axis(slot, order, axis=1)
    return np.take_along_axis(chosen, slot, axis=1)


def _fill(layout: np.ndarray, streams: list[np.ndarray]) -> np.ndarray:
    """Source index per cell: class ``c``'s cells (row-major) take ``streams[c]`` in order."""
    pieces = np.empty(layout.shape, np.int64)
    for c, stream in enumerate(streams):
        pieces[layout == c] = stream
    return pieces


def build_mosaics(
    source_classes: np.ndarray,
    build_seed: int = 0,
    n_queries: int = MOSAIC_QUERIES,
    n_others: int = MOSAIC_OTHERS,
) -> dict[str, np.ndarray]:
    """Pieces, labels and partitions of ``fashion-mnist-multilabel`` (see the module docstring).

    Returns ``pieces`` ``(N, 4)`` (cells top-left, top-right, bottom-left, bottom-right),
    ``labels`` ``(N, n_classes)`` multi-hot ``uint8``, ``train`` and ``test`` index arrays;
    pixels come from :func:`mosaic_images`.
    """
    classes = np.asarray(source_classes, dtype=np.int64)
    n_cls = int(classes.max()) + 1
    pools = _class_pools(classes, n_cls)
    rng = np.random.default_rng(build_seed)
    q_layout = _draw_layouts(rng, n_queries, n_cls)
    q_need = np.bincount(q_layout.ravel(), minlength=n_cls)
    q_streams, rest = [], []
    for c in range(n_cls):
        perm = rng.permutation(pools[c])
        if q_need[c] > len(perm):
            raise ValueError(f"class {c} has {len(perm)} images; the queries need {q_need[c]}")
        q_streams.append(perm[: q_need[c]])
        rest.append(perm[q_need[c] :])
    capacity = np.array([2 * len(r) - 3 for r in rest])
    for _ in range(_MAX_LAYOUT_DRAWS):
        layout = _draw_layouts(rng, n_others, n_cls)
        need = np.bincount(layout.ravel(), minlength=n_cls)
        if (need <= capacity).all():
            break
    else:
        raise ValueError(
            f"{n_others} mosaics need more pieces than the source offers (each used at most twice)"
        )
    streams = []
    for c in range(n_cls):
        first = rng.permutation(rest[c])
        extra = int(need[c]) - len(first)
        if extra <= 0:
            streams.append(first[: need[c]])
        else:  # a second use, never of the last three of the first pass (see module docstring)
            second = rng.choice(first[:-3], size=extra, replace=False)
            streams.append(np.concatenate([first, second]))
    pieces, partitions = _finish(_fill(layout, streams), _fill(q_layout, q_streams), rng)
    labels = np.zeros((len(pieces), n_cls), np.uint8)
    labels[np.arange(len(pieces))[:, None], classes[pieces]] = 1
    return {"pieces": pieces, "labels": labels, **partitions}


# ------------------------------------------------------------------------------------------
# building, caching, loading
# ------------------------------------------------------------------------------------------
def _build(name: str, root: Path, download: bool, build_seed: int) -> dict[str, np.ndarray]:
    """Compose the dataset from the Fashion-MNIST files (found as ``load_fashion_mnist`` does)."""
    fm = load_fashion_mnist(root, download)
    source = fm.images[:, 0].numpy()
    classes = fm.class_ids
    if name == PAIRS_NAME:
        built = build_pairs(classes, build_seed)
        n = len(built["pieces"])
        labels = np.zeros((n, len(CLASS_NAMES) ** 2), np.uint8)
        labels[np.arange(n), built.pop("class_ids")] = 1
        built["labels"] = labels
        built["images"] = pair_images(source, built["pieces"])
    else:
        built = build_mosaics(classes, build_seed)
        built["images"] = mosaic_images(source, built["pieces"])
    return built


def _meta(name: str, build_seed: int) -> dict:
    return {
        "format": _CACHE_FORMAT,
        "dataset": name,
        "construction_version": CONSTRUCTION_VERSION,
        "build_seed": int(build_seed),
        "source": "fashion-mnist",
        "source_sha256": source_identity(),
    }


def _expected_shapes(name: str) -> tuple[tuple[int, ...], int, int]:
    """(image shape, label columns, pieces per item)."""
    if name == PAIRS_NAME:
        return (1, 28, 56), len(CLASS_NAMES) ** 2, 2
    return (1, 56, 56), len(CLASS_NAMES), 4


def _write_cache(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write the cache atomically (temporary file, then rename)."""
    payload = {k: arrays[k] for k in _ARRAYS if k != "meta"}
    atomic_write(path, lambda f: np.savez(f, meta=np.array(json.dumps(meta, sort_keys=True)), **payload))


def _read_cache(path: Path, name: str) -> tuple[dict[str, np.ndarray], dict]:
    """Arrays and meta of a cache file; ``ValueError`` if it is damaged or malformed."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise ValueError("not an .npz archive")
            missing = [k for k in _ARRAYS if k not in z.files]
            if missing:
                raise ValueError(f"it lacks the arrays {missing}")
            arrays = {k: z[k] for k in _ARRAYS}
        meta = json.loads(str(arrays.pop("meta")))
        if not isinstance(meta, dict):
            raise ValueError("its meta record is not a JSON object")
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, json.JSONDecodeError) as err:
        raise ValueError(str(err)) from err
    image_shape, n_labels, n_pieces = _expected_shapes(name)
    images, labels, pieces = arrays["images"], arrays["labels"], arrays["pieces"]
    n = len(images)
    problems = []
    if images.dtype != np.uint8 or images.shape[1:] != image_shape:
        problems.append(f"images {images.dtype} {images.shape}")
    if labels.shape != (n, n_labels):
        problems.append(f"labels {labels.shape}")
    if pieces.shape != (n, n_pieces) or not np.issubdtype(pieces.dtype, np.integer):
        problems.append(f"pieces {pieces.dtype} {pieces.shape}")
    parts = np.concatenate([arrays["train"], arrays["test"]])
    if len(parts) != n or not np.array_equal(np.sort(parts), np.arange(n)):
        problems.append("train/test partitions that do not cover the items once")
    if problems:
        raise ValueError("unexpected " + ", ".join(problems))
    return arrays, meta


def _load_arrays(
    name: str, root: Path, download: bool, build_seed: int
) -> tuple[dict[str, np.ndarray], Path | None]:
    path = cache_path(root, name, build_seed)
    meta = _meta(name, build_seed)
    if path.exists():
        try:
            arrays, found = _read_cache(path, name)
        except ValueError as err:
            warnings.warn(
                f"the {name} cache {path} cannot be read ({err}); rebuilding it", stacklevel=4
            )
        else:
            if found == meta:
                return arrays, path
            diff = sorted(k for k in set(meta) | set(found) if found.get(k) != meta.get(k))
            warnings.warn(
                f"the {name} cache {path} was built with another {', '.join(diff)}; rebuilding it",
                stacklevel=4,
            )
    arrays = _build(name, root, download, build_seed)
    try:
        _write_cache(path, arrays, meta)
    except OSError as err:
        warnings.warn(
            f"could not write the {name} cache {path} ({err}); continuing without it",
            stacklevel=4,
        )
        return arrays, None
    return arrays, path


def load_composite(
    name: str, root: str | Path = "data", download: bool = True, build_seed: int = 0
) -> FullData:
    """Load ``fashion-mnist-100`` or ``fashion-mnist-multilabel`` (from the cache, or build it).

    ``root``: where the cache lives (``{root}/{name}/build-seed{seed}.npz``) and where the
    Fashion-MNIST files are looked for first (then the system directory; ``download`` lets
    torchvision fetch them). ``build_seed``: the construction's random seed.
    """
    if name not in NAMES:
        raise ValueError(f"unknown composite dataset {name!r}; valid: {', '.join(NAMES)}")
    if (
        isinstance(build_seed, bool)
        or not isinstance(build_seed, (int, np.integer))
        or build_seed < 0
    ):
        raise ValueError(f"build_seed must be a non-negative int, got {build_seed!r}")
    build_seed = int(build_seed)
    arrays, path = _load_arrays(name, Path(root), download, build_seed)
    pairs = name == PAIRS_NAME
    identity = (
        f"{name}|construction-v{CONSTRUCTION_VERSION}|build-seed{build_seed}|"
        f"fashion-mnist-sha256:{source_identity()[:16]}"
    )
    return FullData(
        name=name,
        images=torch.from_numpy(arrays["images"]),
        labels=arrays["labels"].astype(np.uint8, copy=False),
        class_names=pair_class_names() if pairs else list(CLASS_NAMES),
        partitions={
            "train": arrays["train"].astype(np.int64),
            "test": arrays["test"].astype(np.int64),
        },
        source=str(path) if path is not None else "built in memory from Fashion-MNIST",
        identity=identity,
        multi_label=not pairs,
        normalization="train",
        file_tag=f"{name}-v{CONSTRUCTION_VERSION}-build{build_seed}",
        pieces=arrays["pieces"].astype(np.int64, copy=False),
    )

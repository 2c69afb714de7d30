"""Retrieval protocols, seeded stratified splitting and split index files (docs/method.md §8).

A :class:`Protocol` says how many query and training items to draw per class and what the
database is. :func:`make_split_indices` turns a protocol and a seed into four disjoint-where-
they-should-be index arrays into the full dataset:

* ``query``: ``query_per_class`` items of every class (or the dataset's own test set);
* the *training pool*: ``train_per_class`` items of every class from the non-query items (or the
  dataset's own training set), split into ``val`` (``val_fraction`` of each class) and ``train``;
* ``database``: ``"rest"`` = every item but the queries (training pool included),
  ``"rest-minus-train"`` = every item but the queries and the training pool, ``"train"`` = the
  training pool, ``"given"`` = the dataset's own database list, or an int = that many items
  drawn at random from every item but the queries.

``val`` items are validation queries searched against ``train`` (checkpoint selection on data
carved from training, docs/method.md §8). Multi-label data (image lists) is not stratified:
a per-class count ``k`` then means ``k * n_classes`` items drawn at random.

Split index files: the arrays are saved to ``{root}/splits/{tag}-{protocol}-seed{seed}.npz``.
An existing file is **verified, not trusted**: it is compared with what the seed produces and a
difference raises ``ValueError`` (someone edited it, or the protocol definition changed). The
file records the split that was used; regenerating it from the seed is always possible.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..utils import atomic_write
from .dataset import FullData, HashDataset, _take, channel_stats

__all__ = [
    "DATABASE_CHOICES",
    "SPLIT_KEYS",
    "Protocol",
    "Splits",
    "build_splits",
    "check_split_file",
    "labels_digest",
    "load_split_file",
    "make_split_indices",
    "save_split_file",
    "split_fingerprint",
    "split_file_path",
]

#: The string values of :attr:`Protocol.database`.
DATABASE_CHOICES = ("rest", "rest-minus-train", "train", "given")
#: Order of the index arrays in split files and fingerprints.
SPLIT_KEYS = ("query", "train", "val", "database")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_FILE_FORMAT = 1


@dataclass(frozen=True)
class Protocol:
    """How to split a dataset for retrieval.

    ``query_per_class``/``train_per_class``: items per class, or ``None`` for the dataset's own
    test/train partition. ``database``: one of :data:`DATABASE_CHOICES` or a positive int.
    ``val_fraction``: share of each class of the training pool held out as validation queries.
    """

    name: str
    query_per_class: int | None
    train_per_class: int | None
    database: str | int = "rest"
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ValueError(
                f"Protocol name must be a short file-name-safe word (letters, digits, '.', '_', "
                f"'-'), got {self.name!r}"
            )
        for field_name in ("query_per_class", "train_per_class"):
            v = getattr(self, field_name)
            if v is not None and (
                isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1
            ):
                raise ValueError(
                    f"Protocol.{field_name} must be a positive int or None (the dataset's own "
                    f"partition), got {v!r}"
                )
        db = self.database
        if isinstance(db, str):
            if db not in DATABASE_CHOICES:
                raise ValueError(
                    f"Protocol.database must be one of {', '.join(DATABASE_CHOICES)} or a positive "
                    f"int, got {db!r}"
                )
        elif isinstance(db, bool) or not isinstance(db, (int, np.integer)) or db < 1:
            raise ValueError(
                f"Protocol.database must be one of {', '.join(DATABASE_CHOICES)} or a positive "
                f"int, got {db!r}"
            )
        vf = self.val_fraction
        if isinstance(vf, bool) or not isinstance(vf, (int, float)) or not 0 <= vf < 1:
            raise ValueError(f"Protocol.val_fraction must be in [0, 1), got {vf!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["val_fraction"] = float(d["val_fraction"])
        return d


# ------------------------------------------------------------------------------------------
# drawing indices
# ------------------------------------------------------------------------------------------
def _per_class_take(
    pool: np.ndarray,
    class_ids: np.ndarray,
    counts: np.ndarray,
    rng: np.random.Generator,
    what: str,
    class_names: list[str],
    protocol_name: str,
) -> np.ndarray:
    """Draw ``counts[c]`` random items of each class ``c`` from ``pool`` (vectorised)."""
    n_classes = len(counts)
    perm = rng.permutation(pool)
    cls = class_ids[perm]
    order = np.argsort(cls, kind="stable")  # group by class, random order within a class
    grouped, grouped_cls = perm[order], cls[order]
    available = np.bincount(grouped_cls, minlength=n_classes)
    short = np.flatnonzero(available < counts)
    if short.size:
        c = int(short[0])
        raise ValueError(
            f"protocol {protocol_name!r} needs {int(counts[c])} {what} items of class {c} "
            f"({class_names[c]!r}) but only {int(available[c])} are available; use a smaller "
            f"custom nhl.data.Protocol(...)"
        )
    starts = np.concatenate([[0], np.cumsum(available)[:-1]])
    rank = np.arange(len(grouped)) - starts[grouped_cls]
    return np.sort(grouped[rank < counts[grouped_cls]])


def _random_take(
    pool: np.ndarray, n: int, rng: np.random.Generator, what: str, protocol_name: str
) -> np.ndarray:
    if n > len(pool):
        raise ValueError(
            f"protocol {protocol_name!r} needs {n} {what} items but only {len(pool)} are "
            f"available; use a smaller custom nhl.data.Protocol(...)"
        )
    return np.sort(rng.permutation(pool)[:n])


def _val_counts(n: np.ndarray, fraction: float) -> np.ndarray:
    k = np.floor(fraction * n + 0.5).astype(np.int64)
    return np.minimum(k, np.maximum(n - 1, 0))


def make_split_indices(
    labels: np.ndarray,
    protocol: Protocol,
    seed: int,
    partitions: dict[str, np.ndarray] | None = None,
    multi_label: bool | None = None,
    class_names: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Indices (sorted ``int64``) of ``query``, ``train``, ``val``, ``database`` in the full data.

    ``labels`` is the ``(N, n_classes)`` 0/1 matrix; ``partitions`` the dataset's own index
    sets (``train``, ``test`` and, for image lists, ``database``), needed when a protocol
    field is ``None``/``"given"``. Draws use ``numpy.random.default_rng(seed)`` in the order
    query, training pool, validation, database, so a seed always gives the same split.
    """
    labels = np.asarray(labels)
    n_items, n_classes = labels.shape
    partitions = partitions or {}
    if multi_label is None:
        multi_label = bool((labels.sum(axis=1) != 1).any())
    class_names = class_names or [str(c) for c in range(n_classes)]
    class_ids = labels.argmax(axis=1).astype(np.int64)
    rng = np.random.default_rng(seed)
    everything = np.arange(n_items, dtype=np.int64)
    # list datasets draw each role from its own list; others from the whole dataset
    listed = "database" in partitions
    query_pool = partitions["test"] if listed else everything
    train_source = partitions["train"] if listed else everything
    db_pool = partitions["database"] if listed else everything

    def need(key: str, field_desc: str) -> np.ndarray:
        if key not in partitions:
            raise ValueError(
                f"protocol {protocol.name!r} uses the dataset's own {key} set ({field_desc}) but "
                f"this dataset has none; give a per-class count instead"
            )
        return np.asarray(partitions[key], dtype=np.int64)

    def take(pool: np.ndarray, per_class: int, what: str) -> np.ndarray:
        if multi_label:
            return _random_take(pool, per_class * n_classes, rng, what, protocol.name)
        counts = np.full(n_classes, per_class, dtype=np.int64)
        return _per_class_take(pool, class_ids, counts, rng, what, class_names, protocol.name)

    # query
    if protocol.query_per_class is None:
        query = np.sort(need("test", "query_per_class=None"))
    else:
        query = take(query_pool, protocol.query_per_class, "query")
    # training pool
    if protocol.train_per_class is None:
        pool = np.setdiff1d(need("train", "train_per_class=None"), query)
    else:
        pool = take(np.setdiff1d(train_source, query), protocol.train_per_class, "training")
    # validation carved from the training pool
    if protocol.val_fraction > 0 and len(pool):
        if multi_label:
            k = int(_val_counts(np.array([len(pool)]), protocol.val_fraction)[0])
            val = _random_take(pool, k, rng, "validation", protocol.name)
        else:
            counts = _val_counts(
                np.bincount(class_ids[pool], minlength=n_classes), protocol.val_fraction
            )
            val = _per_class_take(
                pool, class_ids, counts, rng, "validation", class_names, protocol.name
            )
    else:
        val = np.empty(0, dtype=np.int64)
    train = np.setdiff1d(pool, val)
    # database
    db = protocol.database
    if db == "rest":
        database = np.setdiff1d(db_pool, query)
    elif db == "rest-minus-train":
        database = np.setdiff1d(db_pool, np.union1d(query, pool))
    elif db == "train":
        database = pool
    elif db == "given":
        database = np.sort(need("database", 'database="given"'))
    else:
        database = _random_take(
            np.setdiff1d(db_pool, query), int(db), rng, "database", protocol.name
        )
    out = {"query": query, "train": train, "val": val, "database": database}
    return {k: np.ascontiguousarray(v, dtype=np.int64) for k, v in out.items()}


# ------------------------------------------------------------------------------------------
# fingerprints and split files
# ------------------------------------------------------------------------------------------
def labels_digest(labels: np.ndarray) -> str:
    """SHA-256 of a label matrix (shape and 0/1 content), identifying the labelled data."""
    arr = np.ascontiguousarray(labels, dtype=np.uint8)
    h = hashlib.sha256(str(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def split_fingerprint(name: str, indices: dict[str, np.ndarray], extra: str = "") -> str:
    """SHA-256 over the dataset name, ``extra`` (data identity, preprocessing) and the indices."""
    h = hashlib.sha256(f"nhl-split-v1|{name}|{extra}".encode())
    for key in SPLIT_KEYS:
        h.update(f"|{key}:".encode())
        h.update(np.ascontiguousarray(indices[key], dtype="<i8").tobytes())
    return h.hexdigest()


def split_file_path(root: str | Path, tag: str, protocol_name: str, seed: int) -> Path:
    """``{root}/splits/{tag}-{protocol}-seed{seed}.npz``."""
    return Path(root) / "splits" / f"{tag}-{protocol_name}-seed{seed}.npz"


def save_split_file(path: str | Path, indices: dict[str, np.ndarray], meta: dict) -> Path:
    """Write the index arrays and a JSON ``meta`` record atomically (temp file + rename)."""
    arrays = {k: np.asarray(indices[k], dtype=np.int64) for k in SPLIT_KEYS}
    meta_array = np.array(json.dumps(meta, sort_keys=True))
    return atomic_write(Path(path), lambda f: np.savez(f, meta=meta_array, **arrays))


def load_split_file(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """Read a split file: ``(indices, meta)``. A damaged file raises ``ValueError``."""
    path = Path(path)
    fix = "delete it and it will be regenerated from the seed"
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise ValueError("not an .npz archive")
            arrays = {k: z[k] for k in z.files}
        missing = [k for k in (*SPLIT_KEYS, "meta") if k not in arrays]
        if missing:
            raise ValueError(f"it lacks the arrays {missing}")
        indices = {k: arrays[k].astype(np.int64) for k in SPLIT_KEYS}
        meta = json.loads(str(arrays["meta"]))
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"split file {path} cannot be read ({err}); {fix}") from err
    return indices, meta


def check_split_file(path: str | Path, expected: dict[str, np.ndarray], meta: dict) -> None:
    """Raise ``ValueError`` unless the split file at ``path`` holds exactly ``expected``."""
    path = Path(path)
    found, found_meta = load_split_file(path)
    fix = (
        f"Delete {path} to regenerate it from the seed, or use another seed or root; split files "
        "record the split that was used and must agree with it."
    )
    for key in ("dataset", "n_items", "labels_sha256", "protocol", "seed"):
        if found_meta.get(key) != meta.get(key):
            raise ValueError(
                f"split file {path} was made for a different {key.replace('_', ' ')} "
                f"({found_meta.get(key)!r}, now {meta.get(key)!r}). {fix}"
            )
    for key in SPLIT_KEYS:
        a, b = found[key], expected[key]
        if a.shape != b.shape or not np.array_equal(a, b):
            detail = (
                f"{len(a)} entries instead of {len(b)}"
                if a.shape != b.shape
                else f"{int((a != b).sum())} of {len(b)} entries differ"
            )
            raise ValueError(
                f"split file {path} does not match what seed {meta.get('seed')} produces for "
                f"protocol {meta['protocol']['name']!r}: its {key!r} indices differ ({detail}); "
                f"the file was edited or written by another version. {fix}"
            )


# ------------------------------------------------------------------------------------------
# the result of load_splits
# ------------------------------------------------------------------------------------------
@dataclass
class Splits:
    """The four datasets of a retrieval protocol plus what identifies them.

    ``val`` are validation queries searched against ``val_database`` (the ``train`` split);
    ``fingerprint`` (SHA-256 of dataset name, data identity, preprocessing and split indices)
    keys experiment caches. ``split_file`` is ``None`` when the index file could not be written.
    """

    name: str
    protocol: str
    seed: int
    n_classes: int
    class_names: list[str]
    image_shape: tuple[int, int, int]
    train: HashDataset
    val: HashDataset
    query: HashDataset
    database: HashDataset
    split_file: Path | None
    fingerprint: str
    protocol_spec: Protocol | None = None
    multi_label: bool = False
    source: str = ""

    @property
    def val_database(self) -> HashDataset:
        """The database for validation queries: the training split itself."""
        return self.train

    @property
    def sizes(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in SPLIT_KEYS}

    def summary(self) -> str:
        s = self.sizes
        return (
            f"{self.name} / protocol {self.protocol} / seed {self.seed}: "
            f"{s['query']} query, {s['train']} train, {s['val']} val, {s['database']} database; "
            f"{self.n_classes} classes, images {self.image_shape}"
        )

    def __repr__(self) -> str:
        return f"Splits({self.summary()}, fingerprint={self.fingerprint[:12]}...)"


def build_splits(
    full: FullData,
    protocol: Protocol,
    seed: int,
    root: str | Path,
    mean_std: tuple[tuple, tuple] | None,
    norm_tag: str,
) -> Splits:
    """Split ``full`` by ``protocol``/``seed``, check or write the split file, build datasets.

    ``mean_std=None`` computes per-channel statistics from the ``train`` split's images.
    """
    indices = make_split_indices(
        full.labels, protocol, seed, full.partitions, full.multi_label, full.class_names
    )
    meta = {
        "format": _FILE_FORMAT,
        "dataset": full.name,
        "identity": full.identity,
        "n_items": int(len(full.labels)),
        "labels_sha256": labels_digest(full.labels),
        "protocol": protocol.to_dict(),
        "seed": int(seed),
    }
    path: Path | None = split_file_path(root, full.file_tag, protocol.name, seed)
    if path.exists():
        check_split_file(path, indices, meta)
    else:
        try:
            save_split_file(path, indices, meta)
        except OSError as err:
            warnings.warn(
                f"could not write the split file {path} ({err}); continuing without it",
                stacklevel=3,
            )
            path = None

    labels_t = torch.from_numpy(np.ascontiguousarray(full.labels, dtype=np.float32))

    def part(key: str) -> tuple:
        pos = torch.from_numpy(indices[key])
        return _take(full.images, pos), labels_t[pos], indices[key]

    train_parts = part("train")
    if mean_std is None:
        mean_std = channel_stats(train_parts[0])
    mean, std = mean_std
    datasets = {}
    for key in SPLIT_KEYS:
        imgs, labs, src = train_parts if key == "train" else part(key)
        datasets[key] = HashDataset(imgs, labs, src, mean, std, full.class_names, name=key)
    extra = (
        f"{full.identity}|{meta['labels_sha256']}|shape={tuple(full.images.shape[1:])}|"
        f"norm={norm_tag}:{[round(m, 6) for m in mean]}/{[round(s, 6) for s in std]}"
    )
    return Splits(
        name=full.name,
        protocol=protocol.name,
        seed=int(seed),
        n_classes=len(full.class_names),
        class_names=list(full.class_names),
        image_shape=tuple(int(s) for s in full.images.shape[1:]),
        train=datasets["train"],
        val=datasets["val"],
        query=datasets["query"],
        database=datasets["database"],
        split_file=path,
        fingerprint=split_fingerprint(full.name, indices, extra),
        protocol_spec=protocol,
        multi_label=full.multi_label,
        source=full.source,
    )

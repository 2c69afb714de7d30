"""Tests for nhl.data.composite: fashion-mnist-100 (pairs) and fashion-mnist-multilabel (mosaics).

Both are built from the real Fashion-MNIST files; the tests that need them are skipped when the
files are absent. Module fixtures build each dataset once into a temporary root.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import nhl.data as data
from nhl.data import composite, load_full, load_splits
from nhl.data import fashion_mnist as fm
from nhl.data.composite import (
    MOSAIC_NAME,
    PAIRS_NAME,
    build_mosaics,
    build_pairs,
    cache_path,
)

SYSTEM_FM = Path("/usr/share/datasets/fashion-mnist")
HAVE_FM = all((SYSTEM_FM / f"{f}.gz").is_file() for f in fm.FILES)
needs_fm = pytest.mark.skipif(
    not HAVE_FM,
    reason=f"real Fashion-MNIST files absent from {SYSTEM_FM}; "
    "install them with: sudo apt-get install dataset-fashion-mnist",
)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("composite")


@pytest.fixture(scope="module")
def source(root):
    if not HAVE_FM:
        pytest.skip("real Fashion-MNIST files absent")
    full = fm.load_fashion_mnist(root, download=False)
    return full.images[:, 0].numpy(), full.class_ids


@pytest.fixture(scope="module")
def pairs(root, source):
    return load_full(PAIRS_NAME, root, download=False)


@pytest.fixture(scope="module")
def mosaics(root, source):
    return load_full(MOSAIC_NAME, root, download=False)


def use_counts(pieces: np.ndarray) -> np.ndarray:
    return np.bincount(pieces.ravel(), minlength=70_000)


def similar_share(labels: np.ndarray) -> float:
    """Share of ordered pairs (i != j) sharing a label, exact, via the label-set patterns."""
    codes = labels.astype(np.int64) @ (1 << np.arange(labels.shape[1]))
    patterns, counts = np.unique(codes, return_counts=True)
    bits = (patterns[:, None] >> np.arange(labels.shape[1])) & 1
    sim = (bits @ bits.T) > 0
    n = len(labels)
    total = (counts[:, None] * counts[None, :] * sim).sum() - (counts * sim.diagonal()).sum()
    return float(total / (n * (n - 1)))


# ---------------------------------------------------------------------------------------------
# fashion-mnist-100
# ---------------------------------------------------------------------------------------------
@needs_fm
def test_pairs_labels_and_pixels(pairs, source):
    images, classes = source
    f = pairs
    assert (f.name, f.multi_label, f.images.shape, f.labels.shape, f.pieces.shape) == (
        PAIRS_NAME,
        False,
        (69_000, 1, 28, 56),
        (69_000, 100),
        (69_000, 2),
    )
    assert f.images.dtype == torch.uint8 and f.labels.dtype == np.uint8
    expected = 10 * classes[f.pieces[:, 0]] + classes[f.pieces[:, 1]]
    assert (f.labels.sum(axis=1) == 1).all()
    np.testing.assert_array_equal(f.class_ids, expected)
    assert f.class_names[18] == "Trouser | Bag" and len(f.class_names) == 100
    assert f.class_names[0] == "T-shirt/top | T-shirt/top"
    px = f.images.numpy()[:, 0]
    np.testing.assert_array_equal(px[:, :, :28], images[f.pieces[:, 0]])
    np.testing.assert_array_equal(px[:, :, 28:], images[f.pieces[:, 1]])
    assert "build-seed0" in f.identity and "construction-v" in f.identity
    assert f.file_tag == f"{PAIRS_NAME}-v{composite.CONSTRUCTION_VERSION}-build0"


@needs_fm
def test_pairs_piece_use(pairs, source):
    _, classes = source
    f = pairs
    test, train = f.partitions["test"], f.partitions["train"]
    np.testing.assert_array_equal(test, np.arange(68_000, 69_000))
    np.testing.assert_array_equal(train, np.arange(68_000))
    q, r = f.pieces[test], f.pieces[train]
    # 10 query items and 680 others per class
    assert (np.bincount(f.class_ids[test], minlength=100) == 10).all()
    assert (np.bincount(f.class_ids[train], minlength=100) == 680).all()
    # every query piece once; 200 per source class, 100 left and 100 right
    qc = use_counts(q)
    assert set(np.unique(qc)) == {0, 1} and qc.sum() == 2000
    assert (np.bincount(classes[q[:, 0]], minlength=10) == 100).all()
    assert (np.bincount(classes[q[:, 1]], minlength=10) == 100).all()
    # every other piece exactly once on the left and once on the right
    left, right = use_counts(r[:, 0]), use_counts(r[:, 1])
    rest = qc == 0
    assert (left[rest] == 1).all() and (right[rest] == 1).all()
    assert (left[~rest] == 0).all() and (right[~rest] == 0).all()  # query pieces stay out
    assert not (f.pieces[:, 0] == f.pieces[:, 1]).any()


def test_repair_self_pairs():
    left = np.array([0, 1, 2, 3, 4])
    right = np.array([0, 1, 7, 3, 9])  # three collisions: a cyclic shift among them
    composite._repair_self_pairs(left, right)
    assert not (left == right).any() and sorted(right) == [0, 1, 3, 7, 9]
    right = np.array([5, 6, 2, 8, 9])  # one collision: swapped with the next item
    composite._repair_self_pairs(left, right)
    np.testing.assert_array_equal(right, [5, 6, 8, 2, 9])
    right = np.array([5, 6, 7, 8, 4])  # one collision at the end: swapped with the first
    composite._repair_self_pairs(left, right)
    np.testing.assert_array_equal(right, [4, 6, 7, 8, 5])
    with pytest.raises(ValueError, match="single item"):
        composite._repair_self_pairs(np.array([3]), np.array([3]))


def test_pairs_small_source_never_pairs_an_image_with_itself(monkeypatch):
    collisions = []
    repair = composite._repair_self_pairs

    def spy(left, right):
        collisions.append(int((left == right).sum()))
        repair(left, right)

    monkeypatch.setattr(composite, "_repair_self_pairs", spy)
    classes = np.repeat(np.arange(10), 40)  # 20 query pieces, 20 rest pieces per class
    for seed in range(20):
        b = build_pairs(classes, seed, query_pieces=20)
        p = b["pieces"]
        assert not (p[:, 0] == p[:, 1]).any()
        assert len(p) == 300 and len(b["test"]) == 100
        r = p[b["train"]]
        assert (use_counts(r[:, 0])[:400] <= 1).all() and (use_counts(r[:, 1])[:400] <= 1).all()
        np.testing.assert_array_equal(b["class_ids"], 10 * classes[p[:, 0]] + classes[p[:, 1]])
    assert len(collisions) == 200 and sum(collisions) >= 5  # the repair path did run
    with pytest.raises(ValueError, match="evenly"):
        build_pairs(classes, 0, query_pieces=30)


# ---------------------------------------------------------------------------------------------
# fashion-mnist-multilabel
# ---------------------------------------------------------------------------------------------
@needs_fm
def test_mosaics_labels_and_pixels(mosaics, source):
    images, classes = source
    f = mosaics
    assert (f.name, f.multi_label, f.images.shape, f.labels.shape, f.pieces.shape) == (
        MOSAIC_NAME,
        True,
        (33_000, 1, 56, 56),
        (33_000, 10),
        (33_000, 4),
    )
    assert f.class_names == fm.CLASS_NAMES
    union = np.zeros((33_000, 10), np.uint8)
    for cell in range(4):
        union[np.arange(33_000), classes[f.pieces[:, cell]]] = 1
    np.testing.assert_array_equal(f.labels, union)
    assert set(np.unique(f.labels.sum(axis=1))) == {1, 2, 3}
    px = f.images.numpy()[:, 0]
    for cell, (y, x) in enumerate([(0, 0), (0, 28), (28, 0), (28, 28)]):
        np.testing.assert_array_equal(px[:, y : y + 28, x : x + 28], images[f.pieces[:, cell]])


@needs_fm
def test_mosaics_piece_use_and_similarity(mosaics):
    f = mosaics
    test, train = f.partitions["test"], f.partitions["train"]
    assert (len(test), len(train)) == (1000, 32_000)
    q, r = f.pieces[test], f.pieces[train]
    qc, rc = use_counts(q), use_counts(r)
    assert qc.max() == 1 and qc.sum() == 4000
    assert not ((qc > 0) & (rc > 0)).any()  # query pieces appear in no other mosaic
    assert rc.max() == 2 and (rc[qc == 0] >= 1).all()  # every rest piece used once or twice
    s = np.sort(f.pieces, axis=1)
    assert not (s[:, 1:] == s[:, :-1]).any()  # never twice within one mosaic
    # the share of similar pairs: 1 - mean over k, k' of C(10-k, k') / C(10, k') = 0.3614
    assert 0.35 < similar_share(f.labels) < 0.375
    assert abs(np.bincount(f.labels.sum(axis=1))[1:] / 33_000 - 1 / 3).max() < 0.02


def test_mosaics_layout_rule():
    rng = np.random.default_rng(5)
    layout = composite._draw_layouts(rng, 20_000, 10)
    k = np.array([len(set(row)) for row in layout[:2000].tolist()])
    assert set(k) == {1, 2, 3}
    counts = np.bincount(layout.ravel(), minlength=10)
    assert abs(counts / counts.sum() - 0.1).max() < 0.01
    # each position holds each class equally often
    assert abs(np.bincount(layout[:, 0], minlength=10) / 20_000 - 0.1).max() < 0.01


# ---------------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------------
@needs_fm
def test_build_seed_reproduces_and_differs(pairs, mosaics, source):
    _, classes = source
    a = build_pairs(classes, 0)
    np.testing.assert_array_equal(a["pieces"], pairs.pieces)  # the cached data is seed 0's
    np.testing.assert_array_equal(a["pieces"], build_pairs(classes, 0)["pieces"])
    assert not np.array_equal(a["pieces"], build_pairs(classes, 1)["pieces"])
    m = build_mosaics(classes, 0)
    np.testing.assert_array_equal(m["pieces"], mosaics.pieces)
    np.testing.assert_array_equal(m["labels"], mosaics.labels)
    m1 = build_mosaics(classes, 1)
    assert not np.array_equal(m["pieces"], m1["pieces"])
    assert not np.array_equal(m["labels"], m1["labels"])


# ---------------------------------------------------------------------------------------------
# protocols through load_splits
# ---------------------------------------------------------------------------------------------
def class_counts(ds, n):
    return np.bincount(ds.labels.argmax(1).numpy(), minlength=n)


@needs_fm
def test_pairs_default_protocol(root, pairs):
    s = load_splits(PAIRS_NAME, root=root, download=False)
    assert s.sizes == {"query": 1000, "train": 10_000, "val": 1000, "database": 68_000}
    assert (s.n_classes, s.image_shape, s.multi_label) == (100, (1, 28, 56), False)
    assert (class_counts(s.train, 100) == 100).all()
    assert (class_counts(s.val, 100) == 10).all()
    assert (class_counts(s.query, 100) == 10).all()
    np.testing.assert_array_equal(s.query.source_index, pairs.partitions["test"])
    tr, va, db = (set(d.source_index.tolist()) for d in (s.train, s.val, s.database))
    assert not tr & va and tr | va <= db
    assert not set(pairs.pieces[s.query.source_index].ravel()) & set(
        pairs.pieces[s.database.source_index].ravel()
    )
    assert s.split_file.name == f"{pairs.file_tag}-default-seed0.npz"
    assert data.protocols(PAIRS_NAME) == ["default", "quick"]


@needs_fm
def test_mosaics_default_protocol(root, mosaics):
    s = load_splits(MOSAIC_NAME, root=root, download=False)
    assert s.sizes == {"query": 1000, "train": 5000, "val": 500, "database": 32_000}
    assert (s.n_classes, s.image_shape, s.multi_label) == (10, (1, 56, 56), True)
    np.testing.assert_array_equal(s.query.source_index, mosaics.partitions["test"])
    tr, va = set(s.train.source_index.tolist()), set(s.val.source_index.tolist())
    assert not tr & va and tr | va <= set(s.database.source_index.tolist())
    q = set(mosaics.pieces[s.query.source_index].ravel())
    assert not q & set(mosaics.pieces[s.database.source_index].ravel())


@needs_fm
@pytest.mark.parametrize(
    "name, sizes",
    [
        (PAIRS_NAME, {"query": 1000, "train": 2000, "val": 200, "database": 3000}),
        (MOSAIC_NAME, {"query": 1000, "train": 1000, "val": 100, "database": 3000}),
    ],
)
def test_quick_protocols(root, pairs, mosaics, name, sizes):
    full = pairs if name == PAIRS_NAME else mosaics
    s = load_splits(name, root=root, protocol="quick", download=False)
    assert s.sizes == sizes
    if name == PAIRS_NAME:
        assert (class_counts(s.train, 100) == 20).all() and (class_counts(s.val, 100) == 2).all()
    q = set(full.pieces[s.query.source_index].ravel())
    assert not q & set(full.pieces[s.database.source_index].ravel())
    assert not q & set(full.pieces[s.train.source_index].ravel())


# ---------------------------------------------------------------------------------------------
# cache
# ---------------------------------------------------------------------------------------------
@needs_fm
def test_cache_written_and_reused(root, pairs, mosaics, monkeypatch):
    for full in (pairs, mosaics):
        path = cache_path(root, full.name, 0)
        assert path.is_file() and full.source == str(path)
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
        assert meta == {
            "format": 1,
            "dataset": full.name,
            "construction_version": composite.CONSTRUCTION_VERSION,
            "build_seed": 0,
            "source": "fashion-mnist",
            "source_sha256": composite.source_identity(),
        }

    def refuse(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(composite, "_build", refuse)
    for full in (pairs, mosaics):
        again = load_full(full.name, root, download=False)
        np.testing.assert_array_equal(again.pieces, full.pieces)
        np.testing.assert_array_equal(again.labels, full.labels)
        assert again.images.equal(full.images)
        assert again.identity == full.identity
    assert not list(Path(root, PAIRS_NAME).glob("*.tmp*"))


def fake_build(calls: list):
    """A fast stand-in for ``composite._build``: 6 well-formed mosaics of a constant."""

    def build(name, root, download, build_seed):
        calls.append(build_seed)
        pieces = np.arange(24, dtype=np.int64).reshape(6, 4) + build_seed
        labels = np.zeros((6, 10), np.uint8)
        labels[:, build_seed % 10] = 1
        return {
            "images": np.full((6, 1, 56, 56), len(calls), np.uint8),
            "labels": labels,
            "pieces": pieces,
            "train": np.arange(4, dtype=np.int64),
            "test": np.arange(4, 6, dtype=np.int64),
        }

    return build


def test_cache_rebuilt_when_meta_differs(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(composite, "_build", fake_build(calls))
    first = load_full(MOSAIC_NAME, tmp_path)
    path = cache_path(tmp_path, MOSAIC_NAME, 0)
    assert path.is_file() and calls == [0] and int(first.images[0, 0, 0, 0]) == 1
    assert int(load_full(MOSAIC_NAME, tmp_path).images[0, 0, 0, 0]) == 1 and calls == [0]
    # another construction version: rebuilt, the file overwritten
    monkeypatch.setattr(composite, "CONSTRUCTION_VERSION", composite.CONSTRUCTION_VERSION + 1)
    with pytest.warns(UserWarning, match="construction_version; rebuilding"):
        second = load_full(MOSAIC_NAME, tmp_path)
    assert calls == [0, 0] and int(second.images[0, 0, 0, 0]) == 2
    assert second.identity != first.identity and second.file_tag != first.file_tag
    assert int(load_full(MOSAIC_NAME, tmp_path).images[0, 0, 0, 0]) == 2 and len(calls) == 2
    # another source (the Fashion-MNIST checksums) or a tampered seed in the meta
    monkeypatch.setitem(fm.SHA256, "train-labels-idx1-ubyte", "0" * 64)
    with pytest.warns(UserWarning, match="source_sha256; rebuilding"):
        load_full(MOSAIC_NAME, tmp_path)
    assert len(calls) == 3
    arrays, meta = composite._read_cache(path, MOSAIC_NAME)
    meta["build_seed"] = 7
    composite._write_cache(path, arrays, meta)
    with pytest.warns(UserWarning, match="build_seed; rebuilding"):
        load_full(MOSAIC_NAME, tmp_path)
    assert len(calls) == 4
    # another build seed is another file
    other = load_full(MOSAIC_NAME, tmp_path, build_seed=3)
    assert calls[-1] == 3 and cache_path(tmp_path, MOSAIC_NAME, 3).is_file()
    assert "build-seed3" in other.identity and other.file_tag.endswith("-build3")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "missing-array", "shape"])
def test_corrupt_cache_is_rebuilt(tmp_path, monkeypatch, damage):
    calls: list = []
    monkeypatch.setattr(composite, "_build", fake_build(calls))
    load_full(MOSAIC_NAME, tmp_path)
    path = cache_path(tmp_path, MOSAIC_NAME, 0)
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(raw[:2000] + b"\xff" * 5000 + raw[7000:])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        arrays, meta = composite._read_cache(path, MOSAIC_NAME)
        if damage == "missing-array":
            with open(path, "wb") as f:
                np.savez(f, meta=np.array(json.dumps(meta)), images=arrays["images"])
        else:
            arrays["images"] = arrays["images"][:, :, :28]
            composite._write_cache(path, arrays, meta)
    with pytest.warns(UserWarning, match="cannot be read.*rebuilding"):
        rebuilt = load_full(MOSAIC_NAME, tmp_path)
    assert len(calls) == 2 and int(rebuilt.images[0, 0, 0, 0]) == 2
    composite._read_cache(path, MOSAIC_NAME)  # the file is whole again


def test_unwritable_cache_root_builds_in_memory(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(composite, "_build", fake_build(calls))

    def fail(*args, **kwargs):
        raise OSError("read-only (test)")

    monkeypatch.setattr(composite, "_write_cache", fail)
    with pytest.warns(UserWarning, match="could not write"):
        f = load_full(MOSAIC_NAME, tmp_path)
    assert f.source.startswith("built in memory") and len(calls) == 1


# ---------------------------------------------------------------------------------------------
# names, options, mAP cut-offs
# ---------------------------------------------------------------------------------------------
def test_options_and_names(tmp_path, monkeypatch):
    assert {PAIRS_NAME, MOSAIC_NAME} <= set(data.available())
    assert data.protocols(MOSAIC_NAME) == ["default", "quick"]
    with pytest.raises(
        TypeError, match="unknown option.*image_size.*valid options: normalization, build_seed"
    ):
        load_full(PAIRS_NAME, tmp_path, image_size=8)
    with pytest.raises(TypeError, match="build_seed"):
        load_full("fashion-mnist", tmp_path, build_seed=1)
    with pytest.raises(TypeError, match="unknown option"):
        load_splits(MOSAIC_NAME, root=tmp_path, bild_seed=1)
    for bad in (-1, True, 1.5, "0"):
        with pytest.raises(ValueError, match="build_seed"):
            load_full(MOSAIC_NAME, tmp_path, build_seed=bad)
    calls: list = []
    monkeypatch.setattr(composite, "_build", fake_build(calls))
    assert load_full(MOSAIC_NAME, tmp_path, build_seed=np.int64(2)).pieces[0, 0] == 2
    assert calls == [2]


def test_map_topk():
    assert data.MAP_TOPK == {
        "fashion-mnist": None,
        "cifar10": None,
        "digits": None,
        "image-list": None,
        "fashion-mnist-100": 1000,
        "fashion-mnist-multilabel": 5000,
    }
    assert set(data.MAP_TOPK) == set(data.available())
    assert data.map_topk("fashion-mnist-100") == 1000
    assert data.map_topk("fashion-mnist-multilabel") == 5000
    assert data.map_topk("fashion-mnist") is None
    assert data.map_topk("cifar10-2") is None  # aliases resolve
    with pytest.raises(ValueError, match="dataset name"):
        data.map_topk("imagenet-100")

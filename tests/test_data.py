"""Tests for nhl.data: IDX reading, data discovery, protocols, split files and datasets."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import nhl.data as data
from nhl.data import HashDataset, Protocol, load_splits, make_split_indices
from nhl.data import cifar as cifar_mod
from nhl.data import fashion_mnist as fm
from nhl.data.idx import parse_idx, read_idx, write_idx

SYSTEM_FM = Path("/usr/share/datasets/fashion-mnist")
HAVE_FM = all((SYSTEM_FM / f"{f}.gz").is_file() for f in fm.FILES)
needs_fm = pytest.mark.skipif(
    not HAVE_FM,
    reason=f"real Fashion-MNIST files absent from {SYSTEM_FM}; "
    "install them with: sudo apt-get install dataset-fashion-mnist",
)


def onehot(ids, n_classes):
    out = np.zeros((len(ids), n_classes), dtype=np.uint8)
    out[np.arange(len(ids)), ids] = 1
    return out


# ---------------------------------------------------------------------------------------------
# IDX
# ---------------------------------------------------------------------------------------------
def test_parse_hand_built_idx():
    raw = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes([0, 1, 2, 3, 4, 250])
    arr = parse_idx(raw)
    assert arr.dtype == np.uint8
    np.testing.assert_array_equal(arr, [[0, 1, 2], [3, 4, 250]])
    # big-endian int32 values
    raw32 = (
        bytes([0, 0, 0x0C, 1, 0, 0, 0, 2])
        + (258).to_bytes(4, "big")
        + (-1).to_bytes(4, "big", signed=True)
    )
    np.testing.assert_array_equal(parse_idx(raw32), [258, -1])


@pytest.mark.parametrize("name", ["a-idx3-ubyte.gz", "a-idx3-ubyte"])
def test_idx_round_trip_gz_and_raw(tmp_path, name):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / name, arr)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    out = read_idx(path)
    np.testing.assert_array_equal(out, arr)
    assert out.shape == (2, 3, 4) and out.dtype == np.uint8


def test_idx_rejects_bad_magic_and_size(tmp_path):
    with pytest.raises(ValueError, match="not an IDX file"):
        parse_idx(b"\x01\x02\x08\x01\x00\x00\x00\x01\x00")
    with pytest.raises(ValueError, match="unknown IDX type code 0x07"):
        parse_idx(bytes([0, 0, 7, 1, 0, 0, 0, 1, 5]))
    # header says 2x3 but only 5 values follow
    path = tmp_path / "short-idx"
    path.write_bytes(bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(5))
    with pytest.raises(ValueError, match=r"truncated or corrupt.*short-idx|short-idx.*truncated"):
        read_idx(path)


def test_idx_checksum_mismatch_names_file_and_checksums(tmp_path):
    arr = np.arange(100, dtype=np.uint8).reshape(10, 10)
    good = write_idx(tmp_path / "good-idx.gz", arr)
    expected = hashlib.sha256(gzip.decompress(good.read_bytes())).hexdigest()
    assert read_idx(good, expected).sum() == arr.sum()
    payload = bytearray(gzip.decompress(good.read_bytes()))
    payload[-1] ^= 0xFF  # one flipped value, same length
    bad = tmp_path / "bad-idx.gz"
    bad.write_bytes(gzip.compress(bytes(payload)))
    actual = hashlib.sha256(bytes(payload)).hexdigest()
    with pytest.raises(ValueError) as info:
        read_idx(bad, expected)
    msg = str(info.value)
    assert str(bad) in msg and expected in msg and actual in msg and "Delete" in msg


def test_idx_truncated_gzip_is_a_clear_error(tmp_path):
    path = write_idx(tmp_path / "t-idx.gz", np.arange(5000, dtype=np.int32) * 7919)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="truncated") as info:
        read_idx(path)
    assert str(path) in str(info.value)


@needs_fm
def test_real_fashion_file_corrupted_copy(tmp_path):
    copy = tmp_path / "t10k-labels-idx1-ubyte.gz"
    shutil.copy(SYSTEM_FM / copy.name, copy)
    labels = read_idx(copy, fm.SHA256["t10k-labels-idx1-ubyte"])
    assert labels.shape == (10_000,) and set(np.unique(labels)) == set(range(10))
    raw = bytearray(gzip.decompress(copy.read_bytes()))
    raw[100] = (raw[100] + 1) % 10
    copy.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(ValueError, match=fm.SHA256["t10k-labels-idx1-ubyte"]):
        read_idx(copy, fm.SHA256["t10k-labels-idx1-ubyte"])


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST discovery (tiny fake files; checksums monkeypatched to theirs)
# ---------------------------------------------------------------------------------------------
def write_fake_fashion(directory: Path, n_train=20, n_test=10, seed=0, compress=True):
    """Four tiny IDX files; returns the SHA-256 of their decompressed content per file stem."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    sums = {}
    for stem, arr in arrays.items():
        path = write_idx(directory / (stem + (".gz" if compress else "")), arr)
        sums[stem] = hashlib.sha256(parse_and_bytes(path)).hexdigest()
    return sums


def parse_and_bytes(path: Path) -> bytes:
    blob = path.read_bytes()
    return gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob


@pytest.fixture
def no_system_fm(monkeypatch, tmp_path):
    """Point the system search path at an empty folder and forbid downloads."""
    monkeypatch.setattr(fm, "SEARCH_PATHS", [tmp_path / "no-system-copy"])

    def refuse(root):
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(fm, "_torchvision_download", refuse)


def test_missing_fashion_message(tmp_path, no_system_fm):
    root = tmp_path / "empty"
    with pytest.raises(FileNotFoundError) as info:
        load_splits("fashion-mnist", root=root, download=False)
    msg = str(info.value)
    assert "sudo apt-get install dataset-fashion-mnist" in msg
    assert str(root / "FashionMNIST" / "raw") in msg
    assert "download=True" in msg and "train-images-idx3-ubyte.gz" in msg
    assert str(tmp_path / "no-system-copy") in msg  # lists what was searched
    with pytest.raises(FileNotFoundError, match="network unreachable"):
        load_splits("fashion-mnist", root=root, download=True)


def test_fashion_search_order(tmp_path, monkeypatch, no_system_fm):
    root, system = tmp_path / "root", tmp_path / "system"
    sums_sys = write_fake_fashion(system, seed=1)
    monkeypatch.setattr(fm, "SEARCH_PATHS", [system])
    monkeypatch.setattr(fm, "SHA256", dict(sums_sys))
    full = data.load_full("fashion-mnist", root=root, download=False)
    assert full.source == str(system) and full.images.shape == (30, 1, 28, 28)
    # a copy under {root}/FashionMNIST/raw (uncompressed this time) takes precedence
    raw = root / "FashionMNIST" / "raw"
    sums_root = write_fake_fashion(raw, n_train=30, seed=2, compress=False)
    monkeypatch.setattr(fm, "SHA256", dict(sums_root))
    full = data.load_full("fashion-mnist", root=root, download=False)
    assert full.source == str(raw) and len(full.labels) == 40
    np.testing.assert_array_equal(full.partitions["test"], np.arange(30, 40))
    # a corrupt file in the first location is an error, not a silent fall-through
    monkeypatch.setattr(fm, "SHA256", dict(sums_root, **{"t10k-labels-idx1-ubyte": "0" * 64}))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte"):
        data.load_full("fashion-mnist", root=root, download=False)


def test_fashion_download_is_last_resort(tmp_path, monkeypatch, no_system_fm):
    root = tmp_path / "root"
    calls = []

    def fake_download(r):
        calls.append(Path(r))
        sums = write_fake_fashion(Path(r) / "FashionMNIST" / "raw")
        monkeypatch.setattr(fm, "SHA256", sums)

    monkeypatch.setattr(fm, "_torchvision_download", fake_download)
    full = data.load_full("fashion-mnist", root=root, download=True)
    assert calls == [root] and full.source == str(root / "FashionMNIST" / "raw")
    data.load_full("fashion-mnist", root=root, download=True)
    assert len(calls) == 1  # found on disk the second time


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST protocols on the real files
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    if not HAVE_FM:
        pytest.skip("real Fashion-MNIST files absent; sudo apt-get install dataset-fashion-mnist")
    return load_splits("fashion-mnist", root=tmp_path_factory.mktemp("fm"), download=False)


def class_counts(ds: HashDataset) -> np.ndarray:
    return np.bincount(ds.labels.argmax(1).numpy(), minlength=ds.n_classes)


@needs_fm
def test_fashion_default_protocol(fashion):
    s = fashion
    assert s.sizes == {"query": 1000, "train": 4500, "val": 500, "database": 69000}
    assert (s.name, s.protocol, s.n_classes, s.image_shape) == (
        "fashion-mnist",
        "default",
        10,
        (1, 28, 28),
    )
    assert s.class_names[0] == "T-shirt/top" and s.class_names[9] == "Ankle boot"
    assert (class_counts(s.query) == 100).all()
    assert (class_counts(s.train) == 450).all() and (class_counts(s.val) == 50).all()
    q, tr, va, db = (set(d.source_index.tolist()) for d in (s.query, s.train, s.val, s.database))
    assert not (q & tr) and not (q & va) and not (tr & va) and not (q & db)
    assert tr | va <= db and len(q | db) == 70_000
    assert s.val_database is s.train
    assert s.split_file.is_file() and s.split_file.name == "fashion-mnist-default-seed0.npz"
    # train statistics: the train split is standardised
    x, _, _ = s.train.get_batch(torch.arange(len(s.train)))
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3
    # images are the real ones: train index 0 of the full data is an ankle boot (class 9)
    full_pos = np.flatnonzero(s.database.source_index == 0)
    if full_pos.size:
        assert s.database.labels[int(full_pos[0])].argmax() == 9


@needs_fm
def test_fashion_quick_and_seed(tmp_path):
    a = load_splits("fashion-mnist", root=tmp_path, protocol="quick", seed=0, download=False)
    b = load_splits("fashion-mnist", root=tmp_path, protocol="quick", seed=0, download=False)
    c = load_splits("fashion-mnist", root=tmp_path, protocol="quick", seed=1, download=False)
    assert a.sizes == {"query": 200, "train": 900, "val": 100, "database": 3000}
    assert a.fingerprint == b.fingerprint != c.fingerprint
    np.testing.assert_array_equal(a.query.source_index, b.query.source_index)
    assert not np.array_equal(a.query.source_index, c.query.source_index)
    assert not set(a.query.source_index) & set(a.database.source_index)


# ---------------------------------------------------------------------------------------------
# splitting logic (pure index arithmetic)
# ---------------------------------------------------------------------------------------------
def test_split_indices_hand_checked():
    labels = onehot(np.repeat(np.arange(3), 10), 3)  # 3 classes x 10 items
    idx = make_split_indices(labels, Protocol("p", 2, 5, "rest-minus-train", 0.2), seed=3)
    assert [len(idx[k]) for k in ("query", "train", "val", "database")] == [6, 12, 3, 9]
    for k in ("query", "train", "val", "database"):
        assert np.all(np.diff(idx[k]) > 0)  # sorted, no duplicates
    assert np.bincount(idx["val"] // 10).tolist() == [1, 1, 1]
    every = np.concatenate([idx[k] for k in ("query", "train", "val", "database")])
    assert sorted(every.tolist()) == list(range(30))  # a partition of everything
    rest = make_split_indices(labels, Protocol("p", 2, 5, "rest", 0.2), seed=3)
    assert len(rest["database"]) == 24
    train_db = make_split_indices(labels, Protocol("p", 2, 5, "train", 0.2), seed=3)
    np.testing.assert_array_equal(train_db["database"], np.union1d(idx["train"], idx["val"]))
    n_db = make_split_indices(labels, Protocol("p", 2, 5, 7, 0.0), seed=3)
    assert len(n_db["database"]) == 7 and len(n_db["val"]) == 0
    assert not set(n_db["database"]) & set(n_db["query"])


def test_split_seed_determinism():
    labels = onehot(np.arange(200) % 4, 4)
    p = Protocol("p", 5, 20, "rest")
    a, b = make_split_indices(labels, p, 7), make_split_indices(labels, p, 7)
    c = make_split_indices(labels, p, 8)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["query"], c["query"])


def test_split_too_few_items_names_the_class():
    labels = onehot(np.array([0] * 10 + [1] * 3), 2)
    with pytest.raises(ValueError, match=r"4 query items of class 1 \('b'\).*only 3"):
        make_split_indices(labels, Protocol("p", 4, 2, "rest"), 0, class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"2 training items of class 1 \('b'\).*only 1"):
        make_split_indices(labels, Protocol("p", 2, 2, "rest"), 0, class_names=["a", "b"])


def test_official_partitions_and_errors():
    labels = onehot(np.arange(12) % 2, 2)
    parts = {"train": np.arange(8), "test": np.arange(8, 12)}
    idx = make_split_indices(labels, Protocol("o", None, None, "train", 0.25), 0, parts)
    np.testing.assert_array_equal(idx["query"], np.arange(8, 12))
    np.testing.assert_array_equal(idx["database"], np.arange(8))
    assert len(idx["val"]) == 2 and np.bincount(labels[idx["val"]].argmax(1)).tolist() == [1, 1]
    with pytest.raises(ValueError, match="own test set"):
        make_split_indices(labels, Protocol("o", None, 2, "rest"), 0, {})


@settings(max_examples=30, deadline=None)
@given(
    per_class=st.lists(st.integers(6, 30), min_size=2, max_size=5),
    q=st.integers(1, 3),
    t=st.integers(1, 3),
    db=st.sampled_from(["rest", "rest-minus-train", "train"]),
    seed=st.integers(0, 2**31),
)
def test_split_properties(per_class, q, t, db, seed):
    ids = np.repeat(np.arange(len(per_class)), per_class)
    labels = onehot(np.random.default_rng(0).permutation(ids), len(per_class))
    idx = make_split_indices(labels, Protocol("h", q, t, db, 0.5), seed)
    query, train, val, database = (idx[k] for k in ("query", "train", "val", "database"))
    cls = labels.argmax(1)
    assert (np.bincount(cls[query], minlength=len(per_class)) == q).all()
    assert (np.bincount(cls[np.union1d(train, val)], minlength=len(per_class)) == t).all()
    assert not set(query) & set(train) and not set(query) & set(val)
    assert not set(train) & set(val) and not set(query) & set(database)
    expected_db = {
        "rest": len(ids) - len(query),
        "train": len(train) + len(val),
        "rest-minus-train": len(ids) - len(query) - len(train) - len(val),
    }[db]
    assert len(database) == expected_db


def test_protocol_validation():
    with pytest.raises(ValueError, match="database must be one of"):
        Protocol("p", 1, 1, "everything")
    with pytest.raises(ValueError, match="query_per_class"):
        Protocol("p", 0, 1)
    with pytest.raises(ValueError, match="val_fraction"):
        Protocol("p", 1, 1, "rest", 1.0)
    with pytest.raises(ValueError, match="file-name-safe"):
        Protocol("a/b", 1, 1)
    with pytest.raises(AttributeError):
        Protocol("p", 1, 1).name = "q"  # frozen


# ---------------------------------------------------------------------------------------------
# split files
# ---------------------------------------------------------------------------------------------
def test_split_file_round_trip_and_tamper_detection(tmp_path):
    s = load_splits("digits", root=tmp_path, protocol="quick", seed=4)
    assert s.split_file == tmp_path / "splits" / "digits-quick-seed4.npz"
    indices, meta = data.load_split_file(s.split_file)
    for key in ("query", "train", "val", "database"):
        np.testing.assert_array_equal(indices[key], getattr(s, key).source_index)
    assert meta["seed"] == 4 and meta["protocol"]["name"] == "quick"
    # reloading checks the file and gives the same split
    assert (
        load_splits("digits", root=tmp_path, protocol="quick", seed=4).fingerprint == s.fingerprint
    )
    # an edited file is refused with an explanation
    indices["query"][0] = indices["database"][0]
    data.save_split_file(s.split_file, indices, meta)
    with pytest.raises(ValueError, match=r"'query' indices differ.*Delete"):
        load_splits("digits", root=tmp_path, protocol="quick", seed=4)
    # a custom protocol reusing the name with other sizes is refused too
    s.split_file.unlink()
    load_splits("digits", root=tmp_path, protocol=Protocol("mine", 3, 10, "rest"))
    with pytest.raises(ValueError, match="different protocol"):
        load_splits("digits", root=tmp_path, protocol=Protocol("mine", 4, 10, "rest"))
    # a damaged file says how to recover
    path = tmp_path / "splits" / "digits-mine-seed0.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot be read.*delete it"):
        load_splits("digits", root=tmp_path, protocol=Protocol("mine", 3, 10, "rest"))


# ---------------------------------------------------------------------------------------------
# digits and the dataset class
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return load_splits("digits", root=tmp_path_factory.mktemp("digits"))


def test_digits_protocols(digits, tmp_path):
    assert digits.sizes == {"query": 100, "train": 450, "val": 50, "database": 1697}
    assert (class_counts(digits.query) == 10).all() and (class_counts(digits.val) == 5).all()
    assert digits.image_shape == (1, 8, 8) and digits.train.images.dtype == torch.uint8
    assert int(digits.database.images.max()) == 255
    quick = load_splits("digits", root=tmp_path, protocol="quick")
    assert quick.sizes == {"query": 50, "train": 180, "val": 20, "database": 500}


def test_get_batch_equals_stacked_getitem(digits):
    ds = digits.train
    pos = torch.tensor([3, 0, 449, 3, -1])
    images, labels, index = ds.get_batch(pos)
    items = [ds[int(i)] for i in pos]
    torch.testing.assert_close(images, torch.stack([it[0] for it in items]))
    torch.testing.assert_close(labels, torch.stack([it[1] for it in items]))
    assert index.tolist() == [3, 0, 449, 3, 449] == [int(it[2]) for it in items]
    assert images.dtype == torch.float32 and index.dtype == torch.long
    assert labels.shape == (5, 10) and (labels.sum(1) == 1).all()
    # the normalisation is (x / 255 - mean) / std with the stored statistics
    raw = ds.images[3].float() / 255
    torch.testing.assert_close(images[0], (raw - ds.mean.view(-1, 1, 1)) / ds.std.view(-1, 1, 1))
    with pytest.raises(IndexError, match="out of range"):
        ds.get_batch([450])
    loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=False)
    x, y, i = next(iter(loader))
    assert x.shape == (8, 1, 8, 8) and i.tolist() == list(range(8))


def test_subset_and_display(digits):
    db = digits.database
    first = db.subset(5)
    np.testing.assert_array_equal(first.source_index, db.source_index[:5])
    some = db.subset(5, seed=1)
    assert len(some) == 5 and set(some.source_index) <= set(db.source_index)
    picked = db.subset([10, 2])
    np.testing.assert_array_equal(picked.source_index, db.source_index[[10, 2]])
    assert picked[1][2] == 1 and torch.equal(picked.mean, db.mean)
    one = db.images_for_display(0)
    many = db.images_for_display([0, 1, 2])
    assert one.shape == (8, 8, 1) and many.shape == (3, 8, 8, 1) and many.dtype == np.uint8
    np.testing.assert_array_equal(many[0], one)
    np.testing.assert_array_equal(one[..., 0], db.images[0, 0].numpy())


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
        ),
    ],
)
def test_to_device_batches(digits, device):
    ds = digits.query.subset(10).to(device)
    x, y, i = ds.get_batch(torch.tensor([1, 9]))
    assert x.device.type == y.device.type == i.device.type == device
    ref, _, _ = digits.query.get_batch([1, 9])
    torch.testing.assert_close(x.cpu(), ref)


def test_normalization_options(tmp_path):
    none = load_splits("digits", root=tmp_path, normalization="none")
    x, _, _ = none.query.get_batch(torch.arange(10))
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    custom = load_splits("digits", root=tmp_path, normalization=((0.5,), (0.25,)))
    assert custom.fingerprint != none.fingerprint
    with pytest.raises(ValueError, match="RGB"):
        load_splits("digits", root=tmp_path, normalization="imagenet")


def test_names_protocols_and_errors(tmp_path):
    assert data.available() == [
        "fashion-mnist", "cifar10", "digits", "image-list",
        "fashion-mnist-100", "fashion-mnist-multilabel",
    ]
    assert data.protocols("cifar10") == ["cifar10", "cifar10-1", "cifar10-2", "quick"]
    assert data.protocols("fashion-mnist") == ["default", "quick"]
    with pytest.raises(ValueError, match="fashion-mnist.*digits"):
        load_splits("mnist", root=tmp_path)
    with pytest.raises(ValueError, match="valid values are: default, quick"):
        load_splits("digits", root=tmp_path, protocol="cifar10")
    with pytest.raises(TypeError, match="image_size"):
        load_splits("digits", root=tmp_path, image_size=8)
    with pytest.raises(ValueError, match="seed"):
        load_splits("digits", root=tmp_path, seed=-1)
    assert load_splits("digits", root=tmp_path, seed=np.int64(2)).seed == 2


# ---------------------------------------------------------------------------------------------
# CIFAR-10 from fake python batches
# ---------------------------------------------------------------------------------------------
def write_fake_cifar(root: Path, per_class: int, train_share: float, seed=0, zeros=False):
    """CIFAR-10's pickle layout: 5 training batches, a test batch and batches.meta."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.repeat(np.arange(10), per_class))
    n = len(ids)
    shape = (n, 3072)
    pixels = np.zeros(shape, np.uint8) if zeros else rng.integers(0, 256, shape, dtype=np.uint8)
    directory = root / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    n_train = int(n * train_share)
    bounds = np.linspace(0, n_train, 6).astype(int)
    chunks = [(bounds[i], bounds[i + 1]) for i in range(5)] + [(n_train, n)]
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name, (a, b) in zip(names, chunks):
        batch = {
            "batch_label": name,
            "labels": ids[a:b].tolist(),
            "data": pixels[a:b],
            "filenames": [f"img{i}.png" for i in range(a, b)],
        }
        with open(directory / name, "wb") as f:
            pickle.dump(batch, f)
    meta = {"label_names": cifar_mod.CLASS_NAMES, "num_cases_per_batch": bounds[1]}
    with open(directory / "batches.meta", "wb") as f:
        pickle.dump(meta, f)
    return ids, pixels, n_train


@pytest.fixture
def no_cifar_download(monkeypatch):
    def refuse(root):
        raise OSError("no internet (test)")

    monkeypatch.setattr(cifar_mod, "_torchvision_download", refuse)


def test_cifar_small_fake_set(tmp_path, no_cifar_download):
    ids, pixels, n_train = write_fake_cifar(tmp_path, per_class=16, train_share=0.75)
    small = Protocol("small", 2, 5, "rest-minus-train")
    s = load_splits("cifar10", root=tmp_path, protocol=small)
    assert s.sizes == {"query": 20, "train": 40, "val": 10, "database": 90}
    assert s.class_names == cifar_mod.CLASS_NAMES and s.image_shape == (3, 32, 32)
    # pixels are decoded channel-major, as CIFAR stores them
    src = int(s.query.source_index[0])
    img = s.query.images_for_display(0)
    np.testing.assert_array_equal(img, pixels[src].reshape(3, 32, 32).transpose(1, 2, 0))
    assert s.query.labels[0].argmax() == ids[src]
    # cifar10-2: the official test batch is the query set, the training batches the database
    s2 = load_splits("cifar10-2", root=tmp_path)
    assert s2.protocol == "cifar10-2" and s2.sizes["query"] == 160 - n_train
    np.testing.assert_array_equal(s2.query.source_index, np.arange(n_train, 160))
    np.testing.assert_array_equal(s2.database.source_index, np.arange(n_train))
    assert s2.sizes["train"] + s2.sizes["val"] == n_train
    same = load_splits("cifar10", root=tmp_path, protocol="cifar10-2")
    assert same.fingerprint == s2.fingerprint
    with pytest.raises(ValueError, match="shorthand"):
        load_splits("cifar10-1", root=tmp_path, protocol="cifar10")
    with pytest.raises(ValueError, match=r"needs 100 query items of class"):
        load_splits("cifar10", root=tmp_path)  # 16 per class cannot hold 100 queries


def test_cifar_named_protocol_arithmetic(tmp_path, no_cifar_download):
    write_fake_cifar(tmp_path, per_class=700, train_share=6 / 7, zeros=True)
    s = load_splits("cifar10", root=tmp_path)
    assert s.protocol == "cifar10"
    assert s.sizes == {"query": 1000, "train": 4500, "val": 500, "database": 1000}
    s1 = load_splits("cifar10-1", root=tmp_path)
    assert s1.sizes == {"query": 1000, "train": 4500, "val": 500, "database": 6000}
    np.testing.assert_array_equal(s1.query.source_index, s.query.source_index)
    assert (class_counts(s.database) == 100).all()


def test_cifar_missing_and_corrupt(tmp_path, no_cifar_download):
    with pytest.raises(FileNotFoundError, match=r"(?s)data_batch_1.*no internet.*cifar-10-python"):
        load_splits("cifar10", root=tmp_path)
    write_fake_cifar(tmp_path, per_class=4, train_share=0.5)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])
    with pytest.raises(ValueError, match="data_batch_3.*truncated"):
        load_splits("cifar10", root=tmp_path, protocol=Protocol("t", 1, 1))


# ---------------------------------------------------------------------------------------------
# image lists
# ---------------------------------------------------------------------------------------------
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (9, 99, 199)]


@pytest.fixture
def image_list(tmp_path):
    from PIL import Image

    img_root = tmp_path / "images"
    (img_root / "sub").mkdir(parents=True)
    rows = []
    for i in range(12):
        rel = f"sub/img{i}.png"
        if i == 5:  # a grayscale image, converted to RGB on load
            Image.new("L", (10, 7), 77).save(img_root / rel)
        else:
            Image.new("RGB", (20 + i, 15), COLOURS[i % len(COLOURS)]).save(img_root / rel)
        label = [int(i % 2 == 0), int(i % 3 == 0), 1 if i % 4 == 1 else 0]
        rows.append(f"{rel} {' '.join(map(str, label))}")
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.txt").write_text("\n".join(rows[:6]) + "\n")
    (lists / "test.txt").write_text("\n".join(rows[6:9]) + "\n\n")
    (lists / "database.txt").write_text("\n".join(rows[:6] + rows[9:]) + "\n")
    return tmp_path, lists, img_root


def test_image_list_lazy_multilabel(image_list):
    root, lists, img_root = image_list
    s = load_splits("image-list", root=root, list_dir=lists, image_root=img_root, image_size=6)
    assert s.multi_label and s.n_classes == 3 and s.image_shape == (3, 6, 6)
    assert s.sizes == {"query": 3, "train": 5, "val": 1, "database": 9}
    assert not s.train.in_memory
    np.testing.assert_array_equal(s.query.source_index, [6, 7, 8])
    np.testing.assert_array_equal(s.database.source_index, np.arange(9, 18))
    # labels of query item 0 = line 7 (image 6): [1, 1, 0]
    assert s.query.labels[0].tolist() == [1.0, 1.0, 0.0]
    # a solid-colour image stays that colour after resizing; grayscale becomes RGB
    img = s.query.images_for_display(0)  # image 6 -> COLOURS[0]
    assert img.shape == (6, 6, 3) and (img == np.array(COLOURS[0], np.uint8)).all()
    gray = s.database.images_for_display(5)  # database row 5 = image 5
    assert (gray == 77).all()
    # get_batch equals stacked __getitem__ for lazy data too
    x, y, i = s.database.get_batch([5, 0])
    torch.testing.assert_close(x[0], s.database[5][0])
    torch.testing.assert_close(y[1], s.database[0][1])
    assert i.tolist() == [5, 0]
    # ImageNet statistics by default
    torch.testing.assert_close(s.train.mean, torch.tensor(data.IMAGENET_MEAN))
    assert s.split_file.name.startswith("image-list-") and s.split_file.is_file()
    rect = load_splits(
        "image-list", root=root, list_dir=lists, image_root=img_root, image_size=(4, 5)
    )
    assert rect.image_shape == (3, 4, 5) and rect.fingerprint != s.fingerprint


def test_image_list_errors(image_list):
    root, lists, img_root = image_list
    with pytest.raises(FileNotFoundError, match="image_root"):
        load_splits("image-list", root=root, list_dir=lists, image_root=root / "wrong")
    with pytest.raises(ValueError, match="list_dir"):
        load_splits("image-list", root=root)
    (lists / "test.txt").write_text("sub/img6.png 1 0\n")
    with pytest.raises(ValueError, match="2 label columns"):
        load_splits("image-list", root=root, list_dir=lists, image_root=img_root)
    (lists / "test.txt").write_text("sub/img6.png 1 0 2\n")
    with pytest.raises(ValueError, match=r"test.txt:1: labels must be 0/1"):
        load_splits("image-list", root=root, list_dir=lists, image_root=img_root)

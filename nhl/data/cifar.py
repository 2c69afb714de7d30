"""CIFAR-10: 60,000 colour 32x32 images of 10 classes, read from CIFAR's python batches.

The files ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and ``batches.meta`` are read
from ``{root}/cifar-10-batches-py/``. When they are missing and ``download=True``, torchvision
downloads and extracts the archive there first (needs internet). Reading the batches here, not
through torchvision, lets tests write a small set in CIFAR's own pickle format.

Each batch is a pickled dict with ``data`` (``uint8`` ``(n, 3072)``, channel-major rows) and
``labels`` (``n`` ints); ``batches.meta`` holds ``label_names``. The full dataset is the five
training batches followed by the test batch.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from .dataset import FullData

__all__ = ["BATCH_DIR", "CLASS_NAMES", "TEST_BATCH", "TRAIN_BATCHES", "load_cifar10"]

BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
CLASS_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def _torchvision_download(root: Path) -> None:
    """Let torchvision download and extract CIFAR-10 into ``{root}/cifar-10-batches-py``."""
    from torchvision.datasets import CIFAR10

    CIFAR10(str(root), train=True, download=True)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise ValueError(
            f"{path} is not a readable CIFAR batch ({type(err).__name__}: {err}); it is probably "
            f"truncated or corrupt. Delete the folder {path.parent} and download it again."
        ) from err
    if not isinstance(obj, dict):
        raise ValueError(f"{path} does not hold a CIFAR batch dict (found {type(obj).__name__})")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_batch(path: Path, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"{path} lacks the 'data' and 'labels' entries of a CIFAR batch")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"{path}: 'data' must be uint8 of shape (n, 3072), got {data.dtype} {data.shape}"
        )
    if labels.shape != (len(data),):
        raise ValueError(f"{path}: {len(labels)} labels for {len(data)} images")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"{path}: labels must lie in 0..{n_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels


def _missing(directory: Path) -> list[str]:
    return [f for f in (*TRAIN_BATCHES, TEST_BATCH, META) if not (directory / f).is_file()]


def load_cifar10(root: str | Path = "data", download: bool = True) -> FullData:
    """Load all 60,000 images as ``uint8`` ``(N, 3, 32, 32)`` with one-hot labels."""
    root = Path(root)
    directory = root / BATCH_DIR
    missing = _missing(directory)
    download_error = None
    if missing and download:
        try:
            _torchvision_download(root)
        except Exception as err:  # network errors come in many types
            download_error = f"{type(err).__name__}: {err}"
        missing = _missing(directory)
    if missing:
        msg = [f"CIFAR-10 was not found: {directory} lacks {', '.join(missing)}."]
        if download_error:
            msg.append(f"The torchvision download failed: {download_error}")
        msg += [
            "Get the data in one of these ways:",
            f"  * on a machine with internet, load with download=True (torchvision fetches "
            f"cifar-10-python.tar.gz and extracts it into {directory})",
            f"  * download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and run "
            f"tar -xzf cifar-10-python.tar.gz -C {root}",
        ]
        raise FileNotFoundError("\n".join(msg))
    meta = _unpickle(directory / META)
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get("label_names", [])]
    if not names:
        raise ValueError(f"{directory / META} lacks 'label_names'")
    parts = [_read_batch(directory / b, len(names)) for b in (*TRAIN_BATCHES, TEST_BATCH)]
    images = np.concatenate([p[0] for p in parts])
    class_ids = np.concatenate([p[1] for p in parts])
    n, n_train = len(class_ids), sum(len(p[1]) for p in parts[:-1])
    onehot = np.zeros((n, len(names)), dtype=np.uint8)
    onehot[np.arange(n), class_ids] = 1
    return FullData(
        name="cifar10",
        images=torch.from_numpy(np.ascontiguousarray(images)),
        labels=onehot,
        class_names=names,
        partitions={
            "train": np.arange(n_train, dtype=np.int64),
            "test": np.arange(n_train, n, dtype=np.int64),
        },
        source=str(directory),
        identity="cifar10-python-batches",
        multi_label=False,
        normalization="train",
    )

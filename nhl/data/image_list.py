"""Image-list datasets in the DeepHash-pytorch format (NUS-WIDE, MS-COCO, ImageNet-100...).

A list directory holds ``train.txt``, ``test.txt`` (the queries) and ``database.txt``; each
line is ``relative/path.jpg 0 1 0 ... 1``: an image path relative to ``image_root`` followed by
its multi-hot labels. Images are decoded lazily with PIL, converted to RGB and resized to
``image_size``. The full dataset is the three lists concatenated (train, test, database), so an
image listed twice (commonly train and database) appears as two items.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .dataset import FullData, LazyImages

__all__ = ["LIST_FILES", "load_image_list", "read_list_file"]

#: Partition name -> list file name.
LIST_FILES = {"train": "train.txt", "test": "test.txt", "database": "database.txt"}


def read_list_file(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Parse one list file into ``(relative paths, uint8 (n, n_classes) labels)``."""
    path = Path(path)
    paths, rows = [], []
    width = None
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise ValueError(
                f"{path}:{lineno}: expected 'image/path label label ...', got {line!r}"
            )
        try:
            row = [int(v) for v in parts[1:]]
        except ValueError as err:
            raise ValueError(
                f"{path}:{lineno}: labels must be 0/1 integers, got {parts[1:]}"
            ) from err
        if any(v not in (0, 1) for v in row):
            raise ValueError(f"{path}:{lineno}: labels must be 0/1, got {row}")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise ValueError(
                f"{path}:{lineno}: {len(row)} label columns, but earlier lines have {width}"
            )
        paths.append(parts[0])
        rows.append(row)
    if not paths:
        raise ValueError(f"{path} lists no images")
    return paths, np.asarray(rows, dtype=np.uint8)


def load_image_list(
    list_dir: str | Path | None,
    image_root: str | Path | None = None,
    image_size: int | tuple[int, int] = 32,
    class_names: list[str] | None = None,
) -> FullData:
    """Read the three list files of ``list_dir``; images resolve against ``image_root``.

    ``image_root`` defaults to ``list_dir``; ``image_size`` is an int (square) or ``(H, W)``.
    """
    if list_dir is None:
        raise ValueError(
            "the image-list dataset needs list_dir=..., the folder holding train.txt, test.txt "
            "and database.txt, e.g. load_splits('image-list', list_dir='data/nuswide', "
            "image_root='data/nuswide/images')"
        )
    list_dir = Path(list_dir)
    image_root = Path(image_root) if image_root is not None else list_dir
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or any(not isinstance(s, int) or s < 1 for s in size):
        raise ValueError(
            f"image_size must be a positive int or (height, width), got {image_size!r}"
        )
    missing = [f for f in LIST_FILES.values() if not (list_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{list_dir} lacks the list files {', '.join(missing)}; an image-list dataset needs "
            "train.txt, test.txt (queries) and database.txt, one 'path 0 1 0 ...' line per image"
        )
    all_paths: list[str] = []
    label_parts, partitions = [], {}
    digest = hashlib.sha256()
    for part, fname in LIST_FILES.items():
        paths, labels = read_list_file(list_dir / fname)
        digest.update((list_dir / fname).read_bytes())
        if label_parts and labels.shape[1] != label_parts[0].shape[1]:
            raise ValueError(
                f"{list_dir / fname} has {labels.shape[1]} label columns but "
                f"{list_dir / LIST_FILES['train']} has {label_parts[0].shape[1]}"
            )
        partitions[part] = np.arange(len(all_paths), len(all_paths) + len(paths), dtype=np.int64)
        all_paths += paths
        label_parts.append(labels)
    labels = np.concatenate(label_parts)
    n_classes = labels.shape[1]
    if class_names is None:
        class_names = [str(c) for c in range(n_classes)]
    if len(class_names) != n_classes:
        raise ValueError(
            f"{len(class_names)} class_names given but the lists have {n_classes} labels"
        )
    first = image_root / all_paths[0]
    if not first.is_file():
        raise FileNotFoundError(
            f"the first listed image {first} does not exist; image_root={str(image_root)!r} is "
            "probably wrong (paths in the list files are relative to it)"
        )
    tag = digest.hexdigest()
    return FullData(
        name="image-list",
        images=LazyImages([image_root / p for p in all_paths], size),
        labels=labels,
        class_names=list(class_names),
        partitions=partitions,
        source=str(list_dir),
        identity=f"lists={tag}|size={size}",
        multi_label=bool((labels.sum(axis=1) != 1).any()),
        normalization="imagenet",
        file_tag=f"image-list-{tag[:8]}",
    )

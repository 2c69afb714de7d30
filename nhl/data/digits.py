"""scikit-learn's bundled 8x8 handwritten digits: 1,797 images, 10 classes, no download.

Pixel values 0..16 are scaled to ``uint8`` 0..255. Small enough for tests that split, train and
evaluate in seconds. The dataset has no official train/test partition.
"""

from __future__ import annotations

import numpy as np
import torch

from .dataset import FullData

__all__ = ["CLASS_NAMES", "load_digits"]

CLASS_NAMES = [str(d) for d in range(10)]


def load_digits() -> FullData:
    """All 1,797 images as ``uint8`` ``(N, 1, 8, 8)`` with one-hot labels."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = np.rint(np.asarray(bunch.images) * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    class_ids = np.asarray(bunch.target, dtype=np.int64)
    onehot = np.zeros((len(class_ids), 10), dtype=np.uint8)
    onehot[np.arange(len(class_ids)), class_ids] = 1
    return FullData(
        name="digits",
        images=torch.from_numpy(images).unsqueeze(1),
        labels=onehot,
        class_names=list(CLASS_NAMES),
        partitions={},
        source="sklearn.datasets.load_digits",
        identity="sklearn-digits",
        multi_label=False,
        normalization="train",
    )

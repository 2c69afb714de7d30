"""Datasets for hashing: images, multi-hot labels and each item's position in its split.

:class:`HashDataset` keeps images as a ``uint8`` tensor ``(N, C, H, W)`` and normalises them on
access, so a whole batch is one tensor operation (:meth:`HashDataset.get_batch`). Image-list
datasets use :class:`LazyImages` instead, which decodes files on access behind the same
indexing interface. Labels are multi-hot ``float32`` ``(N, n_classes)`` for single- and
multi-label data alike, which is what the similarity matrices of docs/method.md §2-4 need.

Each item also carries its *position* in the split (``0 .. len-1``): losses with a memory bank
index by it. ``source_index`` maps positions back to the full dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "FullData",
    "HashDataset",
    "LazyImages",
    "channel_stats",
]

#: Per-channel statistics of ImageNet (RGB), the usual choice for pretrained backbones.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _as_positions(positions, n: int) -> torch.Tensor:
    """Turn an int, sequence, numpy array or tensor into a 1-D long tensor of valid positions."""
    if isinstance(positions, torch.Tensor):
        pos = positions.detach().to(torch.long).reshape(-1)
    else:
        arr = np.asarray(positions)
        if arr.dtype == bool or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
            raise TypeError(
                f"positions must be integers (an int, list, numpy array or LongTensor), "
                f"got dtype {arr.dtype}"
            )
        pos = torch.as_tensor(arr.astype(np.int64, copy=False).reshape(-1))
    if pos.numel():
        pos = torch.where(pos < 0, pos + n, pos)
        lo, hi = int(pos.min()), int(pos.max())
        if lo < 0 or hi >= n:
            bad = lo if lo < 0 else hi
            raise IndexError(f"position {bad} is out of range for a split of {n} items")
    return pos


class LazyImages:
    """Image files decoded on access: indexing returns ``uint8`` tensors like an in-memory store.

    Each file is opened with PIL, converted to RGB and resized to ``size`` = (H, W) with
    bilinear filtering. ``images[i]`` is ``(3, H, W)``; ``images[positions]`` is ``(B, 3, H, W)``.
    """

    def __init__(self, paths: Sequence[str | Path], size: tuple[int, int]):
        self.paths = np.asarray([str(p) for p in paths], dtype=object)
        self.size = (int(size[0]), int(size[1]))

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), 3, self.size[0], self.size[1])

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, path: str) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(path) as im:
                im = im.convert("RGB").resize((self.size[1], self.size[0]), Image.BILINEAR)
                return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
        except FileNotFoundError as err:
            raise FileNotFoundError(
                f"image file {path} listed in the image list does not exist; check the "
                "image_root option (paths in the list files are relative to it)"
            ) from err

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, (int, np.integer)) or (
            isinstance(index, torch.Tensor) and index.ndim == 0
        ):
            return torch.from_numpy(self._load(self.paths[int(index)]))
        if isinstance(index, slice):
            idx = np.arange(len(self))[index]
        else:
            idx = _as_positions(index, len(self)).numpy()
        if len(idx) == 0:
            return torch.empty((0, 3, *self.size), dtype=torch.uint8)
        return torch.from_numpy(np.stack([self._load(p) for p in self.paths[idx]]))

    def take(self, positions) -> LazyImages:
        """The images at ``positions``, still lazy."""
        idx = _as_positions(positions, len(self)).numpy()
        return LazyImages(self.paths[idx].tolist(), self.size)


def _take(images: torch.Tensor | LazyImages, positions: torch.Tensor) -> torch.Tensor | LazyImages:
    """The image store restricted to ``positions`` (a lazy store stays lazy)."""
    if isinstance(images, LazyImages):
        return images.take(positions)
    return images[positions.to(images.device)]


def _fetch(images: torch.Tensor | LazyImages, positions: torch.Tensor) -> torch.Tensor:
    """The ``uint8`` pixels at ``positions`` as a tensor ``(B, C, H, W)`` (decoding lazy files)."""
    if isinstance(images, LazyImages):
        return images[positions]
    return images[positions.to(images.device)]


def channel_stats(images: torch.Tensor | LazyImages, chunk: int = 4096) -> tuple[tuple, tuple]:
    """Per-channel mean and standard deviation of ``uint8`` images scaled to [0, 1].

    Accumulates in float64 over chunks, so large sets (CIFAR's 50,000 images) need little memory.
    """
    n = len(images)
    if n == 0:
        raise ValueError("cannot compute normalisation statistics of an empty image set")
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, n, chunk):
        x = images[start : start + chunk].to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3)).cpu()
        total_sq += (x * x).sum(dim=(0, 2, 3)).cpu()
    count = n * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))
    return tuple(mean.tolist()), tuple(std.tolist())


class HashDataset(Dataset):
    """One split (train, val, query or database) of a hashing dataset.

    Attributes: ``images`` (``uint8`` tensor ``(N, C, H, W)`` or :class:`LazyImages`),
    ``labels`` (``float32`` ``(N, n_classes)`` multi-hot), ``source_index`` (``int64`` numpy
    positions in the full dataset), ``mean``/``std`` (``float32`` ``(C,)``, applied to pixels
    scaled to [0, 1]), ``class_names``, ``name``.

    ``dataset[i]`` returns ``(image, label, index)``: the normalised ``float32`` image
    ``(C, H, W)``, its ``float32`` label row and ``index = i`` as a 0-d ``int64`` tensor,
    the item's position in *this* split (so train indices lie in ``[0, len(train))``).
    """

    def __init__(
        self,
        images: torch.Tensor | LazyImages,
        labels,
        source_index=None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        class_names: Sequence[str] | None = None,
        name: str = "",
    ):
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(images)
        if not isinstance(images, (torch.Tensor, LazyImages)):
            raise TypeError(
                f"images must be a uint8 tensor (N, C, H, W), got {type(images).__name__}"
            )
        if isinstance(images, torch.Tensor) and (images.dtype != torch.uint8 or images.ndim != 4):
            raise ValueError(
                f"images must be a uint8 tensor of shape (N, C, H, W), got dtype {images.dtype} "
                f"and shape {tuple(images.shape)}"
            )
        labels = torch.as_tensor(
            np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels
        )
        if labels.ndim != 2 or labels.shape[0] != len(images):
            raise ValueError(
                f"labels must be a multi-hot matrix with one row per image ({len(images)} rows), "
                f"got shape {tuple(labels.shape)}"
            )
        n, c = len(images), images.shape[1]
        if source_index is None:
            source_index = np.arange(n, dtype=np.int64)
        source_index = np.asarray(source_index, dtype=np.int64).reshape(-1)
        if len(source_index) != n:
            raise ValueError(f"source_index has {len(source_index)} entries for {n} images")
        mean = (0.0,) * c if mean is None else tuple(float(m) for m in mean)
        std = (1.0,) * c if std is None else tuple(float(s) for s in std)
        if len(mean) != c or len(std) != c:
            raise ValueError(f"mean and std need one value per channel ({c}), got {mean} and {std}")
        if min(std) <= 0:
            raise ValueError(f"std must be positive, got {std}")
        if class_names is None:
            class_names = [str(k) for k in range(labels.shape[1])]
        if len(class_names) != labels.shape[1]:
            raise ValueError(
                f"{len(class_names)} class names given for {labels.shape[1]} label columns"
            )
        self.images = images
        self.labels = labels.to(torch.float32)
        self.source_index = source_index
        self.mean = torch.tensor(mean, dtype=torch.float32)
        self.std = torch.tensor(std, dtype=torch.float32)
        self.class_names = list(class_names)
        self.name = name

    # --- shape information -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.images)

    @property
    def n_classes(self) -> int:
        return int(self.labels.shape[1])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.images.shape[1:])

    @property
    def in_memory(self) -> bool:
        """True when images are a tensor (batches are one indexing op), False for lazy files."""
        return isinstance(self.images, torch.Tensor)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __repr__(self) -> str:
        kind = "in memory" if self.in_memory else "lazy files"
        label = f"{self.name} " if self.name else ""
        return (
            f"HashDataset({label}{len(self)} images {self.image_shape}, {self.n_classes} classes, "
            f"{kind})"
        )

    # --- access ----------------------------------------------------------------------
    def normalize(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """Scale ``uint8`` images ``(B, C, H, W)`` to [0, 1] and standardise per channel."""
        mean = self.mean.to(images_uint8.device).view(1, -1, 1, 1)
        std = self.std.to(images_uint8.device).view(1, -1, 1, 1)
        return (images_uint8.to(torch.float32) / 255.0 - mean) / std

    def get_batch(self, positions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Vectorised batch: ``(images (B, C, H, W) float32, labels (B, K), positions (B,))``.

        Equal to stacking ``self[i]`` for ``i`` in ``positions`` but a single indexing
        operation for in-memory data (on the dataset's device, see :meth:`to`).
        """
        pos = _as_positions(positions, len(self))
        imgs = _fetch(self.images, pos)
        dev = imgs.device
        pos = pos.to(dev)
        return self.normalize(imgs), self.labels.to(dev)[pos], pos

    def __getitem__(self, i) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if isinstance(i, torch.Tensor) and i.ndim == 0:
            i = int(i)
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise TypeError(
                f"index a HashDataset with an int, got {type(i).__name__}; "
                "use get_batch(positions) for many items"
            )
        images, labels, pos = self.get_batch([int(i)])
        return images[0], labels[0], pos[0]

    def images_for_display(self, positions) -> np.ndarray:
        """Raw ``uint8`` images in ``(H, W, C)`` layout for plotting (``C = 1`` for grayscale).

        An int gives one ``(H, W, C)`` image, a sequence gives ``(B, H, W, C)``; use
        ``img[..., 0]`` with ``cmap="gray"`` for grayscale images in matplotlib.
        """
        single = isinstance(positions, (int, np.integer)) or (
            isinstance(positions, torch.Tensor) and positions.ndim == 0
        )
        pos = _as_positions(positions, len(self))
        out = _fetch(self.images, pos).permute(0, 2, 3, 1).cpu().numpy()
        return out[0] if single else out

    # --- derived datasets ------------------------------------------------------------
    def subset(self, n_or_positions, seed: int | None = None) -> HashDataset:
        """A smaller dataset: the first ``n`` items, ``n`` random ones (``seed``) or ``positions``.

        Positions in the result are re-numbered ``0 .. n-1``; ``source_index`` keeps pointing
        at the full dataset, and normalisation statistics are kept.
        """
        if isinstance(n_or_positions, (int, np.integer)) and not isinstance(n_or_positions, bool):
            n = int(n_or_positions)
            if n < 0 or n > len(self):
                raise ValueError(f"subset size must be in [0, {len(self)}], got {n}")
            if seed is None:
                pos = torch.arange(n)
            else:
                rng = np.random.default_rng(seed)
                pos = torch.as_tensor(np.sort(rng.choice(len(self), size=n, replace=False)))
        else:
            pos = _as_positions(n_or_positions, len(self))
        return HashDataset(
            _take(self.images, pos),
            self.labels[pos.to(self.labels.device)],
            self.source_index[pos.cpu().numpy()],
            mean=self.mean.tolist(),
            std=self.std.tolist(),
            class_names=self.class_names,
            name=self.name,
        )

    def to(self, device: str | torch.device) -> HashDataset:
        """Move in-memory images and labels to ``device`` (in place; returns ``self``)."""
        if not self.in_memory:
            raise ValueError(
                "a lazily loaded image-list dataset stays on the CPU; move batches instead"
            )
        self.images = self.images.to(device)
        self.labels = self.labels.to(device)
        return self


@dataclass
class FullData:
    """A whole dataset as a loader returns it, before splitting (see ``nhl.data.splits``).

    ``partitions`` holds the dataset's own train/test (and, for image lists, database) index
    sets; ``identity`` is a short string that changes when the underlying data does.
    ``pieces``: for datasets composed from other images (``nhl.data.composite``), the source
    indices of each item's pieces, ``(N, n_pieces)``; ``None`` otherwise.
    """

    name: str
    images: torch.Tensor | LazyImages
    labels: np.ndarray  # uint8 (N, n_classes) multi-hot
    class_names: list[str]
    partitions: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""
    identity: str = ""
    multi_label: bool = False
    normalization: str = "train"
    file_tag: str = ""
    pieces: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not self.file_tag:
            self.file_tag = self.name

    @property
    def class_ids(self) -> np.ndarray:
        """Class of each item for single-label data (the position of the 1 in its label row)."""
        return self.labels.argmax(axis=1).astype(np.int64)

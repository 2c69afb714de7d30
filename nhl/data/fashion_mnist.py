"""Fashion-MNIST: 70,000 grayscale 28x28 images of 10 clothing classes.

The four IDX files are looked for, in order, in ``{root}/FashionMNIST/raw/`` (``.gz`` or
uncompressed), then in each directory of :data:`SEARCH_PATHS` (Debian's
``dataset-fashion-mnist`` package), and finally downloaded by torchvision into
``{root}/FashionMNIST/raw/`` when ``download=True``. Files are read here, not by torchvision,
and verified by the SHA-256 of their decompressed bytes, since Debian recompresses the ``.gz``
files (their md5 no longer matches torchvision's list). Decoding takes well under a second, so
no processed cache is written.

The full dataset is the 60,000 training images followed by the 10,000 test images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .dataset import FullData
from .idx import read_idx

__all__ = [
    "CLASS_NAMES",
    "FILES",
    "SEARCH_PATHS",
    "SHA256",
    "find_fashion_mnist",
    "load_fashion_mnist",
]

CLASS_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

#: The four files, in the order they are read (file stem without ``.gz``).
FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: SHA-256 of the *decompressed* files.
SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

#: System directories searched after ``{root}/FashionMNIST/raw`` (tests may replace this list).
SEARCH_PATHS: list[Path] = [Path("/usr/share/datasets/fashion-mnist")]


def _raw_dir(root: str | Path) -> Path:
    return Path(root) / "FashionMNIST" / "raw"


def _files_in(directory: Path) -> dict[str, Path] | None:
    """The four files in ``directory`` (``.gz`` preferred over raw), or None if any is missing."""
    found = {}
    for stem in FILES:
        for candidate in (directory / f"{stem}.gz", directory / stem):
            if candidate.is_file():
                found[stem] = candidate
                break
        else:
            return None
    return found


def _torchvision_download(root: Path) -> None:
    """Let torchvision download Fashion-MNIST into ``{root}/FashionMNIST/raw`` (needs internet)."""
    from torchvision.datasets import FashionMNIST

    FashionMNIST(str(root), train=True, download=True)


def _missing_message(root: Path, searched: list[Path], download_error: str | None) -> str:
    raw = _raw_dir(root)
    lines = [
        "Fashion-MNIST was not found. Searched: " + ", ".join(str(d) for d in searched) + ".",
    ]
    if download_error is not None:
        lines.append(f"The torchvision download into {raw} failed: {download_error}")
    lines += [
        "Get the data in one of these ways:",
        "  * Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist",
        f"  * on a machine with internet, load with download=True: torchvision fetches the files "
        f"into {raw}",
        f"  * copy the four files ({', '.join(f + '.gz' for f in FILES)}) into {raw}",
    ]
    return "\n".join(lines)


def find_fashion_mnist(root: str | Path = "data", download: bool = True) -> dict[str, Path]:
    """Locate the four files following the search order above; download as a last resort.

    Returns ``{file stem: path}``; raises ``FileNotFoundError`` with instructions when absent.
    """
    root = Path(root)
    searched = [_raw_dir(root), *[Path(p) for p in SEARCH_PATHS]]
    for directory in searched:
        files = _files_in(directory)
        if files is not None:
            return files
    download_error = None
    if download:
        try:
            _torchvision_download(root)
        except Exception as err:  # network errors come in many types (URLError, RuntimeError...)
            download_error = f"{type(err).__name__}: {err}"
        else:
            files = _files_in(_raw_dir(root))
            if files is not None:
                return files
            download_error = "it finished but the files are not there"
    raise FileNotFoundError(_missing_message(root, searched, download_error))


def load_fashion_mnist(root: str | Path = "data", download: bool = True) -> FullData:
    """Load all 70,000 images as ``uint8`` ``(N, 1, 28, 28)`` with one-hot labels."""
    files = find_fashion_mnist(root, download)
    hint = f"(Searched {_raw_dir(root)} first, then {', '.join(map(str, SEARCH_PATHS))}.)"
    arrays = {stem: read_idx(path, SHA256.get(stem), hint) for stem, path in files.items()}
    images, labels = [], []
    for split in ("train", "t10k"):
        img = arrays[f"{split}-images-idx3-ubyte"]
        lab = arrays[f"{split}-labels-idx1-ubyte"]
        if img.ndim != 3 or lab.ndim != 1 or len(img) != len(lab):
            raise ValueError(
                f"{files[f'{split}-images-idx3-ubyte']} and its labels file disagree: image "
                f"array {img.shape}, label array {lab.shape}; expected (n, 28, 28) and (n,)"
            )
        images.append(img)
        labels.append(lab)
    images_np = np.concatenate(images).astype(np.uint8, copy=False)
    class_ids = np.concatenate(labels).astype(np.int64)
    if class_ids.size and (class_ids.min() < 0 or class_ids.max() >= len(CLASS_NAMES)):
        raise ValueError(f"Fashion-MNIST labels must lie in 0..9, found {class_ids.max()}")
    n_train = len(labels[0])
    n = len(class_ids)
    onehot = np.zeros((n, len(CLASS_NAMES)), dtype=np.uint8)
    onehot[np.arange(n), class_ids] = 1
    return FullData(
        name="fashion-mnist",
        images=torch.from_numpy(images_np).unsqueeze(1),
        labels=onehot,
        class_names=list(CLASS_NAMES),
        partitions={
            "train": np.arange(n_train, dtype=np.int64),
            "test": np.arange(n_train, n, dtype=np.int64),
        },
        source=str(Path(files[FILES[0]]).parent),
        identity="fashion-mnist-idx",
        multi_label=False,
        normalization="train",
    )

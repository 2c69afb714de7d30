"""Datasets and retrieval protocols: one entry point, :func:`load_splits`.

>>> splits = load_splits("fashion-mnist", root="data", protocol="quick", seed=0)  # doctest: +SKIP
>>> images, labels, positions = splits.train.get_batch(torch.arange(64))          # doctest: +SKIP

Datasets (:func:`available`): ``fashion-mnist`` (default), ``cifar10``, ``digits`` (scikit-learn,
no download), ``image-list`` (DeepHash-style list files), and two offline stand-ins composed from
real Fashion-MNIST images (:mod:`nhl.data.composite`, docs/method.md §8):
``fashion-mnist-100`` (pairs side by side, 100 classes, like ImageNet-100, mAP@1000) and
``fashion-mnist-multilabel`` (2 x 2 mosaics, multi-label, like NUS-WIDE / MS-COCO, mAP@5000).
Protocols per dataset: :func:`protocols`; see :mod:`nhl.data.splits` for what the fields mean
and how split index files are checked. :func:`map_topk` gives each dataset's usual mAP cut-off.

Normalisation (``normalization=`` option): ``"train"`` (default for in-memory datasets: the
per-channel mean/std of the ``train`` split's pixels in [0, 1], shared by all four splits),
``"imagenet"`` (default for image lists, whose images are too many to scan; ImageNet RGB
constants, for pretrained backbones), ``"none"`` (pixels in [0, 1]) or an explicit
``(mean, std)`` pair of per-channel sequences.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..utils import data_dir
from ..validation import check_choice
from .dataset import IMAGENET_MEAN, IMAGENET_STD, FullData, HashDataset, LazyImages, channel_stats
from .splits import (
    Protocol,
    Splits,
    build_splits,
    load_split_file,
    make_split_indices,
    save_split_file,
    split_file_path,
)

__all__ = [
    "DEFAULT_PROTOCOL",
    "MAP_TOPK",
    "PROTOCOLS",
    "FullData",
    "HashDataset",
    "LazyImages",
    "Protocol",
    "Splits",
    "available",
    "channel_stats",
    "load_full",
    "load_split_file",
    "load_splits",
    "make_split_indices",
    "map_topk",
    "protocols",
    "save_split_file",
    "split_file_path",
]

#: Named protocols of every dataset (docs/method.md §8 for CIFAR-10). The composite datasets
#: query with their own query items (``None``): their pieces appear in no other item.
#: ``fashion-mnist-100``: 110 training-pool items per class = 100 train + 10 val (1/11), database
#: every non-query item (68,000; training items included, as in ImageNet-100).
#: ``fashion-mnist-multilabel`` is not stratified: 550 "per class" x 10 = 5,500 random mosaics =
#: 5,000 train + 500 val, database every non-query mosaic (32,000).
PROTOCOLS: dict[str, dict[str, Protocol]] = {
    "fashion-mnist": {
        "default": Protocol("default", 100, 500, "rest"),
        "quick": Protocol("quick", 20, 100, 3000),
    },
    "cifar10": {
        "cifar10": Protocol("cifar10", 100, 500, "rest-minus-train"),
        "cifar10-1": Protocol("cifar10-1", 100, 500, "rest"),
        "cifar10-2": Protocol("cifar10-2", None, None, "train"),
        "quick": Protocol("quick", 20, 100, 3000),
    },
    "digits": {
        "default": Protocol("default", 10, 50, "rest"),
        "quick": Protocol("quick", 5, 20, 500),
    },
    "image-list": {
        "lists": Protocol("lists", None, None, "given"),
        "quick": Protocol("quick", 20, 100, 3000),
    },
    "fashion-mnist-100": {
        "default": Protocol("default", None, 110, "rest", val_fraction=1 / 11),
        "quick": Protocol("quick", None, 22, 3000, val_fraction=1 / 11),
    },
    "fashion-mnist-multilabel": {
        "default": Protocol("default", None, 550, "rest", val_fraction=1 / 11),
        "quick": Protocol("quick", None, 110, 3000, val_fraction=1 / 11),
    },
}

DEFAULT_PROTOCOL = {
    "fashion-mnist": "default",
    "cifar10": "cifar10",
    "digits": "default",
    "image-list": "lists",
    "fashion-mnist-100": "default",
    "fashion-mnist-multilabel": "default",
}

#: The literature's mAP cut-off per dataset (``None``: mAP@ALL); docs/method.md §8. The
#: composite datasets follow the benchmarks they stand in for: ImageNet-100 (mAP@1000) and
#: NUS-WIDE / MS-COCO (mAP@5000). Image lists hold any of those, so no fixed cut-off.
MAP_TOPK: dict[str, int | None] = {
    "fashion-mnist": None,
    "cifar10": None,
    "digits": None,
    "image-list": None,
    "fashion-mnist-100": 1000,
    "fashion-mnist-multilabel": 5000,
}

#: Dataset names that are shorthand for (dataset, protocol).
ALIASES = {"cifar10-1": ("cifar10", "cifar10-1"), "cifar10-2": ("cifar10", "cifar10-2")}

#: Extra keyword options each dataset accepts (besides ``normalization``).
_OPTIONS = {
    "fashion-mnist": (),
    "cifar10": (),
    "digits": (),
    "image-list": ("list_dir", "image_root", "image_size", "class_names"),
    "fashion-mnist-100": ("build_seed",),
    "fashion-mnist-multilabel": ("build_seed",),
}


def available() -> list[str]:
    """Names of the datasets :func:`load_splits` can load."""
    return list(PROTOCOLS)


def protocols(name: str) -> list[str]:
    """Names of the protocols of dataset ``name`` (the default first)."""
    name, _ = _resolve_name(name, None)
    default = DEFAULT_PROTOCOL[name]
    return [default, *[p for p in PROTOCOLS[name] if p != default]]


def map_topk(name: str) -> int | None:
    """The usual mAP cut-off K for dataset ``name`` (``None`` = mAP@ALL); aliases resolve."""
    name, _ = _resolve_name(name, None)
    return MAP_TOPK[name]


def _resolve_name(name: str, protocol) -> tuple[str, object]:
    if not isinstance(name, str):
        raise TypeError(f"name must be a dataset name string, got {type(name).__name__}")
    if name in ALIASES:
        dataset, proto = ALIASES[name]
        if protocol is not None and getattr(protocol, "name", protocol) != proto:
            raise ValueError(
                f"{name!r} is shorthand for dataset {dataset!r} with protocol {proto!r}, "
                f"but protocol={protocol!r} was also given; pass name={dataset!r} instead"
            )
        return dataset, proto
    check_choice(name, [*PROTOCOLS, *ALIASES], "dataset name")
    return name, protocol


def _resolve_protocol(name: str, protocol) -> Protocol:
    if protocol is None:
        return PROTOCOLS[name][DEFAULT_PROTOCOL[name]]
    if isinstance(protocol, Protocol):
        return protocol
    if not isinstance(protocol, str):
        raise TypeError(
            "protocol must be a protocol name or an nhl.data.Protocol, "
            f"got {type(protocol).__name__}"
        )
    check_choice(protocol, protocols(name), f"protocol for dataset {name!r}")
    return PROTOCOLS[name][protocol]


def load_full(
    name: str, root: str | Path | None = None, download: bool = True, **options
) -> FullData:
    """Load a whole dataset before splitting (what :func:`load_splits` splits)."""
    name, _ = _resolve_name(name, None)
    root = Path(root) if root is not None else data_dir()
    allowed = _OPTIONS[name]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        valid = ", ".join(("normalization", *allowed))
        raise TypeError(
            f"unknown option(s) {', '.join(unknown)} for dataset {name!r}; valid options: {valid}"
        )
    if name == "fashion-mnist":
        from .fashion_mnist import load_fashion_mnist

        return load_fashion_mnist(root, download)
    if name in ("fashion-mnist-100", "fashion-mnist-multilabel"):
        from .composite import load_composite

        return load_composite(name, root, download, **options)
    if name == "cifar10":
        from .cifar import load_cifar10

        return load_cifar10(root, download)
    if name == "digits":
        from .digits import load_digits

        return load_digits()
    from .image_list import load_image_list

    return load_image_list(**{"list_dir": None, **options})


def _resolve_normalization(normalization, full: FullData):
    """``(mean_std or None, tag)``; None means: compute from the train split."""
    channels = int(full.images.shape[1])
    if normalization is None:
        normalization = full.normalization
    if isinstance(normalization, str):
        check_choice(normalization, ("train", "imagenet", "none"), "normalization")
        if normalization == "train":
            return None, "train"
        if normalization == "none":
            return ((0.0,) * channels, (1.0,) * channels), "none"
        if channels != 3:
            raise ValueError(
                f"normalization='imagenet' needs RGB images but {full.name} has {channels} "
                "channel(s); use 'train' or 'none'"
            )
        return (IMAGENET_MEAN, IMAGENET_STD), "imagenet"
    try:
        mean, std = normalization
        mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    except (TypeError, ValueError) as err:
        raise ValueError(
            "normalization must be 'train', 'imagenet', 'none' or a (mean, std) pair of "
            f"per-channel sequences, got {normalization!r}"
        ) from err
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"normalization mean and std need {channels} value(s) each")
    return (mean, std), "custom"


def load_splits(
    name: str = "fashion-mnist",
    root: str | Path | None = None,
    protocol: str | Protocol | None = None,
    seed: int = 0,
    download: bool = True,
    **options,
) -> Splits:
    """Load dataset ``name`` and split it by ``protocol`` with ``seed``.

    ``root`` holds downloaded data and the split index files (``{root}/splits/``); ``None`` is
    :func:`nhl.utils.data_dir` (``$NHL_DATA`` or the project's ``data/``). ``protocol``
    is a name from :func:`protocols` (default: the dataset's standard protocol) or a
    :class:`Protocol`. ``download`` lets torchvision fetch missing files. ``options``:
    ``normalization`` (see the module docstring); for ``image-list``, ``list_dir``,
    ``image_root``, ``image_size``, ``class_names``; for ``fashion-mnist-100`` and
    ``fashion-mnist-multilabel``, ``build_seed`` (default 0; the composed data is cached in
    ``{root}/{name}/build-seed{seed}.npz``). ``"cifar10-1"``/``"cifar10-2"`` as
    ``name`` are shorthand for ``cifar10`` with that protocol.
    """
    name, protocol = _resolve_name(name, protocol)
    spec = _resolve_protocol(name, protocol)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    seed = int(seed)
    normalization = options.pop("normalization", None)
    root = Path(root) if root is not None else data_dir()
    full = load_full(name, root, download, **options)
    mean_std, tag = _resolve_normalization(normalization, full)
    return build_splits(full, spec, seed, root, mean_std, tag)


_LOADED: dict[tuple, Splits] = {}


def cached_splits(
    name: str, root: str | Path | None = None, protocol: str | None = None, seed: int = 0
) -> Splits:
    """:func:`load_splits` once per process and arguments, then the same object again (runs of
    one study share their split; a split is read-only once built)."""
    root = Path(root) if root is not None else data_dir()
    key = (name, protocol, seed, str(root))
    if key not in _LOADED:
        _LOADED[key] = load_splits(name, root=root, protocol=protocol, seed=seed)
    return _LOADED[key]

"""Training regimes: scratch, fine-tune and frozen, and the pretrained backbone they start from
(docs/method.md §6).

The paper fine-tunes an ImageNet-pretrained ResNet-50. Offline, nhl makes the analogue itself:
:func:`pretrained_backbone` trains the small CNN with cross-entropy on a *source task* and caches
the weights (keyed like runs, trained once per split):

* the composed sets (``fashion-mnist-100``, ``fashion-mnist-multilabel``): the 10 classes of the
  single Fashion-MNIST images, using only images that are never pieces of a query or validation
  item (about 67,000 of the 70,000);
* every other in-memory single-label dataset (``fashion-mnist``, ``digits``, ``cifar10``): its
  own items and labels, minus every query and validation item. As for ImageNet and ImageNet-100,
  the source shares the target's classes and may hold database items, never queries; selection
  (validation) items are left out too.

Then (``TrainConfig.regime``):

* ``"scratch"``: the whole network from random weights (the studies up to nhl 0.3);
* ``"fine-tune"``: the pretrained backbone trains at ``backbone_lr`` times the learning rate,
  the neck (the backbone's last fully connected block) and the hash layer at the learning rate;
* ``"frozen"``: the backbone's convolutional trunk is fixed, its features computed once per
  split and cached (:func:`frozen_splits`); only the neck and the hash layer train
  (:func:`head_view`), so a run takes seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .utils import atomic_torch_save, atomic_write_text, data_dir, runs_dir
from .validation import check_choice

REGIMES = ("scratch", "fine-tune", "frozen")

#: The pretraining recipe (cross-entropy, Adam): the same for every dataset.
PRETRAIN = {"epochs": 2, "batch_size": 256, "lr": 1e-3, "weight_decay": 1e-5, "seed": 0}

#: Datasets composed from Fashion-MNIST images, pretrained on the single images.
COMPOSED = ("fashion-mnist-100", "fashion-mnist-multilabel")


def check_regime(regime: str) -> str:
    return check_choice(regime, REGIMES, "regime")


# ------------------------------------------------------------------------------ source pool
@dataclass
class SourcePool:
    """The images and labels a backbone is pretrained on, and what was held out.

    ``images`` ``uint8`` ``(N, C, H, W)``; ``classes`` ``int64`` ``(N,)``; ``source_index``: each
    image's index in ``source`` (Fashion-MNIST's 70,000 images for the composed sets, the
    dataset's own items otherwise); ``held_out``: indices left out (pieces of query and
    validation items, or the items themselves)."""

    images: torch.Tensor
    classes: np.ndarray
    n_classes: int
    source: str
    source_index: np.ndarray
    held_out: np.ndarray

    def describe(self) -> str:
        return (f"{self.source}: {len(self.classes):,} images of {self.n_classes} classes "
                f"({len(self.held_out):,} held out: query and validation items or their pieces)")


def source_pool(splits, root: str | Path | None = None) -> SourcePool:
    """The pretraining pool of a split: every source image that is not (a piece of) a query or
    validation item (see the module docstring). Raises ``ValueError`` for datasets without an
    offline source (multi-label or file-backed image lists: use ``backbone="resnet50"``)."""
    from .data import load_full

    full = load_full(splits.name, root)
    held_items = np.concatenate([splits.query.source_index, splits.val.source_index])
    if splits.name in COMPOSED:
        from .data.fashion_mnist import load_fashion_mnist

        base = load_fashion_mnist(root if root is not None else _data_root())
        held = np.unique(full.pieces[held_items].reshape(-1))
        source = "Fashion-MNIST single images"
    else:
        if full.multi_label or not isinstance(full.images, torch.Tensor):
            raise ValueError(
                f"{splits.name} has no offline pretraining source (multi-label or images read from "
                "files); use backbone='resnet50' with ImageNet weights for a pretrained regime")
        base, held = full, np.unique(held_items)
        source = f"{splits.name} items"
    keep = np.setdiff1d(np.arange(len(base.labels)), held)
    return SourcePool(
        images=base.images[torch.from_numpy(keep)],
        classes=base.class_ids[keep],
        n_classes=len(base.class_names),
        source=source,
        source_index=keep,
        held_out=held,
    )


def _data_root() -> Path:
    return data_dir()


# ------------------------------------------------------------------------------ pretraining
def pretrain_key(splits, backbone: str = "cnn") -> str:
    """What names a pretrained backbone: the split (its fingerprint fixes the held-out items and
    the normalisation), the architecture and :data:`PRETRAIN`."""
    payload = json.dumps({"split": splits.fingerprint, "backbone": backbone, "pretrain": PRETRAIN,
                          "channels": splits.image_shape[0]}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


_PRETRAINED: dict[tuple[Path, str], tuple[dict, dict]] = {}


def pretrained_backbone(splits, backbone: str = "cnn", root: str | Path | None = None,
                        data_root: str | Path | None = None, progress: bool = True) -> tuple[dict, dict]:
    """The small CNN pretrained by cross-entropy on the split's source pool: ``(state_dict,
    info)``. Trained once and cached in ``{root}/pretrained/{dataset}/{key}.pt`` (``root``:
    the run cache); ``info`` says the source, the pool's size, what was held out, the recipe,
    the key and the final epoch's training accuracy; runs record it in their metrics."""
    if backbone != "cnn":
        raise ValueError(f"nhl pretrains only the small CNN; {backbone!r} uses torchvision's weights")
    key = pretrain_key(splits, backbone)
    folder = (Path(root) if root is not None else runs_dir()) / "pretrained" / splits.name
    weights, meta = folder / f"{key}.pt", folder / f"{key}.json"
    if (weights, key) in _PRETRAINED:  # read once per process: every run of a study asks twice
        return _PRETRAINED[(weights, key)]
    if weights.exists() and meta.exists():
        try:
            _PRETRAINED[(weights, key)] = (torch.load(weights, map_location="cpu", weights_only=True),
                                           json.loads(meta.read_text()))
            return _PRETRAINED[(weights, key)]
        except Exception as err:  # damaged cache: train again
            import warnings

            warnings.warn(f"pretrained backbone {weights} cannot be read ({err}); training it again",
                          stacklevel=2)
    pool = source_pool(splits, data_root)
    state, accuracy, seconds = _pretrain(pool, splits, progress)
    info = {"key": key, "source": pool.describe(), "pool_size": int(len(pool.classes)),
            "held_out": int(len(pool.held_out)), "recipe": PRETRAIN, "train_accuracy": accuracy,
            "seconds": round(seconds, 1)}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(state, weights)
    atomic_write_text(meta, json.dumps(info, indent=2, sort_keys=True))
    _PRETRAINED[(weights, key)] = (state, info)
    return state, info


def _pretrain(pool: SourcePool, splits, progress: bool) -> tuple[dict, float, float]:
    """Cross-entropy training of a fresh small CNN plus a linear classifier on ``pool``,
    normalised like the target split; returns the CNN's state, the last epoch's accuracy and
    the seconds taken."""
    from .models import SmallCNN

    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(PRETRAIN["seed"])
    torch.manual_seed(PRETRAIN["seed"])
    net = SmallCNN(in_channels=splits.image_shape[0])
    clf = nn.Linear(net.out_features, pool.n_classes)
    params = [*net.parameters(), *clf.parameters()]
    opt = torch.optim.Adam(params, lr=PRETRAIN["lr"], weight_decay=PRETRAIN["weight_decay"])
    labels = torch.from_numpy(pool.classes)
    norm = splits.train.normalize
    n, correct = len(labels), 0
    net.train()
    for epoch in range(PRETRAIN["epochs"]):
        order = torch.randperm(n, generator=gen).split(PRETRAIN["batch_size"])
        correct = 0
        for pos in tqdm(order, desc=f"pretrain {splits.name} epoch {epoch}", disable=not progress, leave=False):
            if len(pos) < 2:
                continue
            logits = clf(net(norm(pool.images[pos])))
            loss = nn.functional.cross_entropy(logits, labels[pos])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            correct += int((logits.argmax(1) == labels[pos]).sum())
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return state, correct / n, time.perf_counter() - t0


# ------------------------------------------------------------------------------ frozen features
class FeatureSet:
    """A split's trunk features in place of its images: the interface training and encoding
    use (``get_batch``, ``labels``, ``len``), so a frozen run trains the head on them."""

    in_memory = True

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, source_index: np.ndarray, name: str):
        self.features, self.labels, self.source_index, self.name = features, labels, source_index, name

    def __len__(self) -> int:
        return len(self.features)

    @property
    def n_classes(self) -> int:
        return int(self.labels.shape[1])

    @property
    def device(self) -> torch.device:
        return self.features.device

    def get_batch(self, positions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pos = torch.as_tensor(positions, dtype=torch.long, device=self.features.device).reshape(-1)
        return self.features[pos], self.labels.to(pos.device)[pos], pos

    def to(self, device) -> FeatureSet:
        return FeatureSet(self.features.to(device), self.labels.to(device), self.source_index, self.name)

    def __repr__(self) -> str:
        return f"FeatureSet({self.name}: {len(self)} x {self.features.shape[1]} features)"


@torch.no_grad()
def trunk_features(backbone: nn.Module, dataset, batch_size: int = 1024) -> torch.Tensor:
    """``backbone.trunk`` of every item of ``dataset`` in eval mode (float32, on the CPU)."""
    was = backbone.training
    backbone.eval()
    out = [backbone.trunk(dataset.get_batch(torch.arange(s, min(s + batch_size, len(dataset))))[0])
           for s in range(0, len(dataset), batch_size)]
    backbone.train(was)
    return torch.cat(out).float()


_FEATURES: dict[str, dict[str, torch.Tensor]] = {}
_SPLIT_KEYS = ("train", "val", "query", "database")


def frozen_splits(backbone: nn.Module, splits, key: str, root: str | Path | None = None,
                  progress: bool = True):
    """``splits`` with every dataset replaced by its :class:`FeatureSet` under the frozen
    ``backbone`` (pretrained with key ``key``). Features are computed once per process and
    cached in ``{root}/features/{dataset}/{key}.pt``; the query and database features are read
    only when encoding them (the test set is evaluated once, at the selected epoch)."""
    if key not in _FEATURES:
        path = (Path(root) if root is not None else runs_dir()) / "features" / splits.name / f"{key}.pt"
        feats = None
        if path.exists():
            try:
                feats = torch.load(path, map_location="cpu", weights_only=True)
                if set(feats) != set(_SPLIT_KEYS) or any(
                        len(feats[k]) != len(getattr(splits, k)) for k in _SPLIT_KEYS):
                    feats = None
            except Exception:  # damaged: compute again
                feats = None
        if feats is None:
            feats = {}
            for k in tqdm(_SPLIT_KEYS, desc=f"features {splits.name}", disable=not progress, leave=False):
                feats[k] = trunk_features(backbone, getattr(splits, k))
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_torch_save(feats, path)
        _FEATURES.clear()  # one split's features at a time: they can be hundreds of MB
        _FEATURES[key] = feats
    feats = _FEATURES[key]
    sets = {k: FeatureSet(feats[k], getattr(splits, k).labels, getattr(splits, k).source_index, k)
            for k in _SPLIT_KEYS}
    return dataclasses.replace(splits, **sets)


def pretrained_frozen_splits(splits, data_root: str | Path | None = None, progress: bool = True):
    """:func:`frozen_splits` under the split's pretrained small CNN (:func:`pretrained_backbone`),
    and that backbone (its neck is the pretrained one)."""
    from .models import SmallCNN

    state, _ = pretrained_backbone(splits, data_root=data_root, progress=progress)
    backbone = SmallCNN(in_channels=splits.image_shape[0])
    backbone.load_state_dict(state)
    return frozen_splits(backbone, splits, pretrain_key(splits), progress=progress), backbone


class _Neck(nn.Module):
    """The trainable part of a backbone in the frozen regime: its neck, fed trunk features."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.neck = backbone.neck
        self.out_features = backbone.out_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.neck(features)


def head_view(model):
    """A :class:`~nhl.models.HashModel` over trunk features that shares ``model``'s neck and
    hash layer: training it trains exactly the frozen regime's parameters of ``model``."""
    from .models import HashModel

    return HashModel(_Neck(model.backbone), hash_layer=model.hash_layer)


def split_parameters(model) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(trunk parameters, the rest)`` of a model: the fine-tune regime's two learning rates."""
    trunk = {id(p) for p in model.backbone.trunk_parameters()}
    params = list(model.parameters())
    return [p for p in params if id(p) in trunk], [p for p in params if id(p) not in trunk]


def prepare(configs, data_root: str | Path | None = None, progress: bool = True) -> None:
    """Pretrain the backbones and compute the frozen features that ``configs`` need, once, in
    this process (before worker processes start, so they do not each make them)."""
    from .data import cached_splits

    needed: dict[tuple, bool] = {}
    for c in configs:
        if c.regime != "scratch" and c.backbone == "cnn":
            key = (c.dataset, c.protocol, c.split_seed)
            needed[key] = needed.get(key, False) or c.regime == "frozen"
    for (dataset, protocol, split_seed), frozen in needed.items():
        splits = cached_splits(dataset, root=data_root, protocol=protocol, seed=split_seed)
        if frozen:
            pretrained_frozen_splits(splits, data_root, progress)
        else:
            pretrained_backbone(splits, data_root=data_root, progress=progress)

"""Backbones and the hash model: backbone features -> :class:`NestedHashLayer` (docs/method.md §1).

``SmallCNN`` trains in seconds per epoch on a laptop CPU (28x28 or 32x32 images);
``resnet50_backbone`` is the reference setup's ImageNet ResNet-50 (docs/method.md §6).
A single length in ``bit_list`` gives the ordinary single-length baseline.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from .layer import DEFAULT_BITS, NestedHashLayer, binarize
from .validation import check_choice

BACKBONES = ("cnn", "resnet50")


class SmallCNN(nn.Module):
    """Three conv blocks, a fully connected layer and a BatchNorm1d: a CPU-friendly extractor.

    The output is the BatchNorm1d of the linear layer, not a ReLU: the nested hash layer needs
    centred features. Behind a ReLU every feature is non-negative and two images' features
    start nearly parallel (mean cosine about 0.85), so every image starts with almost the same
    code and the pairwise losses (DHN, DSH, DBDH, LCDSH, DCH) collapse to chance
    (docs/method.md §6).
    """

    def __init__(self, in_channels: int = 1, out_features: int = 256, width: int = 16):
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        self.features = nn.Sequential(
            block(in_channels, width),
            block(width, 2 * width),
            block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )
        # No ReLU before the hash layer: a BatchNorm1d output is centred (docs/method.md §6).
        self.fc = nn.Sequential(nn.Linear(16 * width, out_features), nn.BatchNorm1d(out_features))
        self.out_features = out_features
        # channels-last convolutions are about 1.3x (training) to 1.7x (encoding) faster on CPU
        self.features.to(memory_format=torch.channels_last)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The convolutional part: what the frozen regime computes once (docs/method.md §6)."""
        return self.features(x.contiguous(memory_format=torch.channels_last))

    @property
    def neck(self) -> nn.Module:
        """The fully connected block after the trunk (trained in every regime)."""
        return self.fc

    def trunk_parameters(self) -> Iterator[nn.Parameter]:
        return self.features.parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.trunk(x))


class ResNet50Features(nn.Module):
    """torchvision ResNet-50 without its classifier, then a BatchNorm1d: centred 2048-d features.

    ResNet-50's pooled features come out of a ReLU (non-negative, all pointing the same way);
    the BatchNorm1d neck centres them before the hash layer (docs/method.md §6).
    """

    def __init__(self, pretrained: bool = False):
        super().__init__()
        from torchvision.models import ResNet50_Weights, resnet50

        weights = ResNet50_Weights.IMAGENET1K_V2 if pretrained else None
        try:
            net = resnet50(weights=weights)
        except Exception as err:  # network or cache failures surface in many forms
            raise RuntimeError(
                "could not load the ImageNet weights for ResNet-50 (no internet?). Either run once "
                "on a connected machine so torchvision caches them under "
                f"{torch.hub.get_dir()}/checkpoints, copy that file there by hand, or use "
                "pretrained=False / backbone='cnn'"
            ) from err
        net.fc = nn.Identity()
        self.net = net
        self.neck = nn.BatchNorm1d(2048)
        self.out_features = 2048

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """ResNet-50's pooled features (the frozen regime computes them once)."""
        if x.shape[1] == 1:  # grey images: repeat to three channels
            x = x.expand(-1, 3, -1, -1)
        return self.net(x)

    def trunk_parameters(self) -> Iterator[nn.Parameter]:
        return self.net.parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.trunk(x))


def resnet50_backbone(pretrained: bool = False) -> ResNet50Features:
    """ResNet-50 features; ``pretrained=True`` needs the ImageNet weights (online or cached)."""
    return ResNet50Features(pretrained=pretrained)


class HashModel(nn.Module):
    """Backbone + nested hash head. ``forward(x)`` returns one real-valued output per length.

    ``hash_layer``: an existing layer to share (``bit_list`` is then ignored), as the frozen
    regime's view over trunk features does (:func:`nhl.regimes.head_view`)."""

    def __init__(self, backbone: nn.Module, bit_list: Sequence[int] = DEFAULT_BITS,
                 hash_layer: NestedHashLayer | None = None):
        super().__init__()
        self.backbone = backbone
        self.hash_layer = hash_layer if hash_layer is not None else NestedHashLayer(backbone.out_features, bit_list)

    @property
    def bit_list(self) -> tuple[int, ...]:
        return self.hash_layer.bit_list

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.hash_layer(self.backbone(x))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """+1/-1 codes of the longest length (shorter codes are its prefixes), int8."""
        return binarize(self.hash_layer.project(self.backbone(x))).to(torch.int8)


def build_model(
    backbone: str = "cnn",
    bit_list: Sequence[int] = DEFAULT_BITS,
    in_channels: int = 1,
    pretrained: bool = False,
    feature_dim: int = 256,
) -> HashModel:
    """A :class:`HashModel` with the named backbone (``"cnn"`` or ``"resnet50"``)."""
    check_choice(backbone, BACKBONES, "backbone")
    if backbone == "cnn":
        if pretrained:
            raise ValueError("the small CNN has no pretrained weights; use pretrained=False")
        net: nn.Module = SmallCNN(in_channels=in_channels, out_features=feature_dim)
    else:
        net = resnet50_backbone(pretrained=pretrained)
    return HashModel(net, bit_list)


@torch.no_grad()
def encode_dataset(
    model: HashModel, dataset, batch_size: int = 1024, progress: bool = False, workers: int | None = None
) -> np.ndarray:
    """Codes (N x L_K, int8 +1/-1) for every item of a dataset, in order, in eval mode.

    Batches go to the model's device and the codes come back to the CPU. Image-list datasets
    (files decoded on access) are read by a ``DataLoader`` with ``workers`` processes (default
    ``min(4, cores)``) and pinned memory on CUDA.
    """
    import os

    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    n = len(dataset)
    out = np.empty((n, model.bit_list[-1]), dtype=np.int8)
    starts = list(range(0, n, batch_size))
    if getattr(dataset, "in_memory", True):
        batches = (dataset.get_batch(torch.arange(s, min(s + batch_size, n)))[0] for s in starts)
    else:
        from torch.utils.data import DataLoader

        workers = min(4, os.cpu_count() or 1) if workers is None else workers
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                            pin_memory=device.type == "cuda")
        batches = (x for x, _, _ in loader)
    for start, x in zip(starts, tqdm(batches, total=len(starts), desc="encode", disable=not progress, leave=False)):
        x = x.to(device=device, dtype=next(model.parameters()).dtype, non_blocking=device.type == "cuda")
        codes = model.encode(x)
        out[start : start + len(codes)] = codes.cpu().numpy()
    model.train(was_training)
    return out


@contextmanager
def preserved_buffers(*modules: nn.Module) -> Iterator[None]:
    """Restore every buffer (batch-norm statistics, memory banks) of ``modules`` on exit."""
    saved = []
    seen: set[int] = set()
    for module in modules:
        for sub in module.modules():
            if id(sub) in seen:
                continue
            seen.add(id(sub))
            for name, buf in sub.named_buffers(recurse=False):
                saved.append((sub, name, buf.detach().clone()))
    try:
        yield
    finally:
        for sub, name, buf in saved:
            setattr(sub, name, buf)

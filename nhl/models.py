"""Backbones and the hash model: backbone features -> :class:`NestedHashLayer` (METHOD.md section 1).

``SmallCNN`` trains in seconds per epoch on a laptop CPU (28x28 or 32x32 images);
``resnet50_backbone`` is the reference setup's ImageNet ResNet-50 (METHOD.md section 5).
A single length in ``bit_list`` gives the ordinary single-length baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .layer import DEFAULT_BITS, NestedHashLayer, binarize
from .validation import check_choice

BACKBONES = ("cnn", "resnet50")


class SmallCNN(nn.Module):
    """Three conv blocks and a fully connected layer: a CPU-friendly feature extractor."""

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
        self.fc = nn.Sequential(nn.Linear(16 * width, out_features), nn.ReLU(inplace=True))
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class ResNet50Features(nn.Module):
    """torchvision ResNet-50 without its classifier: 2048-d features."""

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
        self.out_features = 2048

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:  # grey images: repeat to three channels
            x = x.expand(-1, 3, -1, -1)
        return self.net(x)


def resnet50_backbone(pretrained: bool = False) -> ResNet50Features:
    """ResNet-50 features; ``pretrained=True`` needs the ImageNet weights (online or cached)."""
    return ResNet50Features(pretrained=pretrained)


class HashModel(nn.Module):
    """Backbone + nested hash head. ``forward(x)`` returns one real-valued output per length."""

    def __init__(self, backbone: nn.Module, bit_list: Sequence[int] = DEFAULT_BITS):
        super().__init__()
        self.backbone = backbone
        self.hash_layer = NestedHashLayer(backbone.out_features, bit_list)

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
def encode_dataset(model: HashModel, dataset, batch_size: int = 1024, progress: bool = False) -> np.ndarray:
    """Codes (N x L_K, int8 +1/-1) for every item of a dataset, in order, in eval mode."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    n = len(dataset)
    out = np.empty((n, model.bit_list[-1]), dtype=np.int8)
    starts = range(0, n, batch_size)
    for start in tqdm(starts, desc="encode", disable=not progress, leave=False):
        pos = torch.arange(start, min(start + batch_size, n))
        x = dataset.get_batch(pos)[0]
        out[start : start + len(pos)] = model.encode(x).numpy()
    model.train(was_training)
    return out

"""A small objective whose lengths conflict (shared by the distributed tests' two sides)."""

import torch
from torch import nn

from nhl import NestedHashLayer, NestedObjective

BITS = (4, 8, 16)


class Target(nn.Module):
    """Pulls tanh(u) towards a per-length target vector, a per-sample mean (decomposable)."""

    def __init__(self, target, scale):
        super().__init__()
        self.register_buffer("target", target)
        self.scale = scale

    def forward(self, u, y, idx):
        return self.scale * (torch.tanh(u) - self.target).pow(2).mean()


def setup():
    """Features, labels and an objective whose long codes oppose the short ones."""
    torch.manual_seed(0)
    z, y = torch.randn(16, 12), torch.zeros(16, 2)
    layer = NestedHashLayer(12, BITS)
    with torch.no_grad():
        layer.weight.normal_(0, 0.5)
    targets = [torch.ones(b) * (1 if k % 2 == 0 else -1) for k, b in enumerate(BITS)]
    losses = [Target(t, 4.0**k) for k, t in enumerate(targets)]
    return z, y, NestedObjective(layer, losses, distill=0.0)

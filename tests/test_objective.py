import pytest
import torch
from torch import nn

from nhl import NestedHashLayer, NestedObjective, NonFiniteLossError
from nhl.distill import cascade_loss
from nhl.weighting import dominance_aware_weights

BITS = (4, 8, 16)


class Target(nn.Module):
    """Pulls tanh(u) towards a fixed per-length target: a simple differentiable base loss."""

    def __init__(self, target, scale=1.0):
        super().__init__()
        self.register_buffer("target", target)
        self.scale = scale

    def forward(self, u, y, idx):
        return self.scale * (torch.tanh(u) - self.target).pow(2).mean()


def _setup(weighting="dominance", distill=1.0, seed=0, **kw):
    torch.manual_seed(seed)
    layer = NestedHashLayer(6, BITS)
    with torch.no_grad():
        layer.weight.normal_(0, 0.5)
    # conflicting targets: the long code wants the opposite sign of the short one on shared bits
    targets = [torch.ones(b) * (1 if k % 2 == 0 else -1) for k, b in enumerate(BITS)]
    # and its loss is ten times larger, so it would dominate the shared rows
    obj = NestedObjective(layer, [Target(t, 10.0**k) for k, t in enumerate(targets)], weighting=weighting, distill=distill, **kw)
    z = torch.randn(8, 6)
    return layer, obj, z


def test_total_equals_the_weighted_sum_it_reports():
    layer, obj, z = _setup()
    out = obj(z, torch.zeros(8, 2), torch.arange(8))
    expected = (out.weights * (out.losses + obj.distill * out.distill)).sum()
    assert out.total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert out.weights.sum().item() == pytest.approx(len(BITS))
    assert out.anti_domination  # the targets conflict, so some alpha < 1
    assert out.weights[1] < 1


def test_weights_match_manual_gradients_w_r_t_W():
    layer, obj, z = _setup()
    y, idx = torch.zeros(8, 2), torch.arange(8)
    out = obj(z, y, idx)
    grads = []
    for k in range(len(BITS)):
        layer.zero_grad()
        outs = layer(z.detach())
        sp = cascade_loss(outs)[k]
        (obj.losses[k](outs[k], y, idx) + sp).backward()
        grads.append(layer.weight.grad.clone())
    expected = dominance_aware_weights(grads, BITS)
    assert torch.allclose(out.weights, expected, atol=1e-6)


def test_uniform_and_fixed_weights_and_no_distill():
    _, obj, z = _setup(weighting="uniform", distill=0.0)
    out = obj(z, torch.zeros(8, 2), torch.arange(8))
    assert out.weights.tolist() == [1.0, 1.0, 1.0] and torch.all(out.distill == 0)
    assert out.total.item() == pytest.approx(out.losses.sum().item(), rel=1e-6)
    _, obj, z = _setup(weighting=[0.5, 1.0, 2.0])
    out = obj(z, torch.zeros(8, 2), torch.arange(8))
    assert out.weights.tolist() == [0.5, 1.0, 2.0]


def test_backward_reaches_the_backbone():
    torch.manual_seed(0)
    backbone = nn.Linear(3, 6)
    layer = NestedHashLayer(6, BITS)
    obj = NestedObjective(layer, [Target(torch.ones(b)) for b in BITS])
    out = obj(backbone(torch.randn(8, 3)), torch.zeros(8, 2), torch.arange(8))
    out.total.backward()
    assert backbone.weight.grad is not None and backbone.weight.grad.abs().sum() > 0
    assert layer.weight.grad.abs().sum() > 0


def test_track_gradients_records_cosines():
    _, obj, z = _setup(weighting="uniform", track_gradients=True)
    out = obj(z, torch.zeros(8, 2), torch.arange(8))
    assert out.grads.shape == (3, 16, 6) and out.cosines.shape == (3, 3)
    assert torch.all(out.grads[0, 4:] == 0)
    rec = out.as_dict(BITS)
    assert set(rec) >= {"total", "loss_4", "weight_16", "distill_8", "anti_domination"}


def test_non_finite_loss_names_length_and_term():
    class Bad(nn.Module):
        def forward(self, u, y, idx):
            return u.sum() * float("nan")

    layer = NestedHashLayer(6, BITS)
    obj = NestedObjective(layer, [Target(torch.ones(4)), Bad(), Target(torch.ones(16))])
    with pytest.raises(NonFiniteLossError, match="base loss term of the 8-bit code"):
        obj(torch.randn(8, 6), torch.zeros(8, 2), torch.arange(8))


def test_validation():
    layer = NestedHashLayer(6, BITS)
    losses = [Target(torch.ones(b)) for b in BITS]
    with pytest.raises(ValueError, match="one loss per length"):
        NestedObjective(layer, losses[:2])
    with pytest.raises(ValueError, match="dominance, uniform"):
        NestedObjective(layer, losses, weighting="dynamic")
    with pytest.raises(ValueError, match="3 finite non-negative"):
        NestedObjective(layer, losses, weighting=[1.0, 2.0])
    with pytest.raises(ValueError, match="distill"):
        NestedObjective(layer, losses, distill=-1)
    with pytest.raises(TypeError, match="NestedHashLayer"):
        NestedObjective(nn.Linear(6, 16), losses)

"""The backbone must hand the hash layer centred features (docs/method.md §6)."""

import torch
import torch.nn.functional as F

from nhl.data import load_splits
from nhl.models import SmallCNN, build_model


def _mean_offdiag_cosine(z: torch.Tensor) -> float:
    c = F.normalize(z, dim=1) @ F.normalize(z, dim=1).T
    n = len(z)
    return float((c.sum() - c.diagonal().sum()) / (n * (n - 1)))


def test_small_cnn_features_are_centred_not_rectified(tmp_path):
    torch.manual_seed(0)
    splits = load_splits("digits", root=tmp_path, protocol="quick", seed=0)
    x = splits.train.get_batch(torch.arange(64))[0]
    with torch.no_grad():
        z = SmallCNN(in_channels=x.shape[1]).train()(x)
    assert (z < 0).float().mean() > 0.3  # no ReLU in front of the hash layer
    assert z.mean(0).abs().max() < 1e-4  # batch-normalised: every feature centred
    # behind a ReLU two images' features start nearly parallel (cosine about 0.85)
    assert abs(_mean_offdiag_cosine(z)) < 0.2


def test_initial_codes_differ_between_images(tmp_path):
    torch.manual_seed(0)
    splits = load_splits("digits", root=tmp_path, protocol="quick", seed=0)
    x = splits.train.get_batch(torch.arange(64))[0]
    model = build_model("cnn", (8, 16), in_channels=x.shape[1]).train()
    with torch.no_grad():
        codes = torch.sign(model(x)[-1])
    # most pairs of images start far apart in Hamming space, not at one shared code
    agree = (codes @ codes.T / codes.shape[1]).fill_diagonal_(0)
    assert agree.abs().mean() < 0.4


def test_resnet_neck_centres_features():
    net = build_model("resnet50", (8,), in_channels=3).backbone.train()
    with torch.no_grad():
        z = net(torch.randn(4, 3, 32, 32))
    assert isinstance(net.neck, torch.nn.BatchNorm1d) and (z < 0).any()

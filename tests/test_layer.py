import pytest
import torch

import nhl
from nhl import NestedHashLayer, binarize


def test_outputs_are_prefixes_of_the_longest_in_train_and_eval():
    torch.manual_seed(0)
    layer = NestedHashLayer(12, (8, 16, 32, 64, 128))
    z = torch.randn(5, 12)
    for mode in (layer.train, layer.eval):
        mode()
        outs = layer(z)
        assert [o.shape for o in outs] == [(5, b) for b in (8, 16, 32, 64, 128)]
        for o in outs:
            assert torch.equal(o, outs[-1][:, : o.shape[1]])


def test_parameters_and_initialisation():
    torch.manual_seed(0)
    layer = NestedHashLayer(300, (8, 16))
    assert layer.bit_list == (8, 16)
    assert layer.weight.shape == (16, 300) and layer.bias.shape == (16,)
    assert sum(p.numel() for p in layer.parameters()) == 16 * 300 + 16  # no extra parameters
    assert torch.all(layer.bias == 0)
    assert abs(layer.weight.std().item() - 0.01) < 0.002


def test_single_length_is_the_baseline():
    layer = NestedHashLayer(4, (32,))
    assert len(layer(torch.randn(2, 4))) == 1


@pytest.mark.parametrize(
    "bad, match",
    [((), "empty"), ((16, 8), "sorted"), ((8, 8), "duplicated"), ((0, 8), "positive"),
     ((-8,), "positive"), ((8.0, 16), "integers"), (("8",), "integers")],
)
def test_bad_bit_lists_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        NestedHashLayer(4, bad)


def test_wrong_feature_width_names_expected_shape():
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        NestedHashLayer(4, (8,))(torch.randn(2, 5))


def test_binarize_maps_zero_to_plus_one():
    h = torch.tensor([[-0.5, 0.0, 2.0, -0.0]])
    assert binarize(h).tolist() == [[-1.0, 1.0, 1.0, 1.0]]
    with pytest.raises(ValueError, match="non-finite|NaN"):
        binarize(torch.tensor([float("nan")]))


def test_public_names_import():
    for name in ("NestedHashLayer", "binarize", "NestedObjective", "losses", "weighting", "distill"):
        assert hasattr(nhl, name)

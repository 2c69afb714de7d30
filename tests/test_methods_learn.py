"""Every base loss learns: a short nested training run on real Fashion-MNIST is far above chance.

This guards against a collapse like the one a ReLU in front of the hash layer caused (four of the
eight losses at chance, docs/method.md §6): if a change to the model, a loss, the recipes or the
training loop makes a method stop learning, this fails for that method.
"""

import pytest

from nhl import losses
from nhl.config import TrainConfig
from nhl.data import load_splits
from nhl.metrics import map_per_length
from nhl.models import encode_dataset
from nhl.train import fit

BITS = (8, 16, 32, 64, 128)
CHANCE = 0.1  # 10 balanced classes: a random ranking's mAP


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    try:
        return load_splits("fashion-mnist", root=root, protocol="quick", seed=0, download=False)
    except FileNotFoundError:
        pytest.skip("real Fashion-MNIST absent; sudo apt-get install dataset-fashion-mnist")


@pytest.mark.slow
@pytest.mark.parametrize("method", losses.available())
def test_each_loss_learns_far_above_chance(splits, method):
    config = TrainConfig(method=method, protocol="quick", bit_list=BITS, epochs=3, seed=0)
    model = fit(config, splits, progress=False).model
    q = encode_dataset(model, splits.query)
    db = encode_dataset(model, splits.database)
    got = map_per_length(q, db, splits.query.labels, splits.database.labels, BITS)
    for bits, value in got.items():
        assert value > 3 * CHANCE, f"{method} at {bits} bits: mAP {value:.3f} (chance ~{CHANCE})"

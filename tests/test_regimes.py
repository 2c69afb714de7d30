"""The paper's regimes (nhl.regimes): the pretrained backbone, its cache and source pool, the
frozen feature cache, fine-tuning's two learning rates and lambda_D per regime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nhl import experiments, regimes
from nhl.config import VARIANTS, TrainConfig
from nhl.recipes import DISTILL, distill_strength
from nhl.train import _parameter_groups, build, fit


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """Pretrained weights and features go to the run cache ($NHL_RUNS): a fresh one per test."""
    monkeypatch.setenv("NHL_RUNS", str(tmp_path / "runs"))
    regimes._FEATURES.clear()
    yield tmp_path / "runs"
    regimes._FEATURES.clear()


def _splits():
    return experiments.get_splits(TrainConfig(dataset="digits", protocol="quick"))


def test_source_pool_holds_no_query_or_validation_item():
    splits = _splits()
    pool = regimes.source_pool(splits)
    held = np.concatenate([splits.query.source_index, splits.val.source_index])
    assert not np.isin(pool.source_index, held).any()
    assert np.isin(held, pool.held_out).all()
    assert len(pool.classes) == len(pool.images) and pool.n_classes == 10


@pytest.mark.slow
def test_composed_source_pool_holds_no_piece_of_a_query_item():
    from nhl.data import load_full

    try:
        splits = experiments.get_splits(TrainConfig(dataset="fashion-mnist-100"))
    except Exception as err:  # Fashion-MNIST absent: nothing to compose from
        pytest.skip(f"fashion-mnist-100 cannot be loaded here: {err}")
    pool = regimes.source_pool(splits)
    pieces = load_full("fashion-mnist-100").pieces
    query_pieces = pieces[splits.query.source_index].reshape(-1)
    val_pieces = pieces[splits.val.source_index].reshape(-1)
    assert not np.isin(pool.source_index, query_pieces).any()
    assert not np.isin(pool.source_index, val_pieces).any()
    assert len(pool.source_index) + len(pool.held_out) == 70_000
    assert "Fashion-MNIST single images" in pool.describe()


def test_pretraining_is_cached_and_repeatable(cache, tmp_path, monkeypatch):
    splits = _splits()
    state, info = regimes.pretrained_backbone(splits, progress=False)
    files = sorted(p.name for p in (cache / "pretrained" / "digits").iterdir())
    assert files == [f"{info['key']}.json", f"{info['key']}.pt"]
    assert info["train_accuracy"] > 0.5  # it learned the source task (chance: 0.1)
    again, info2 = regimes.pretrained_backbone(splits, progress=False)  # read from the cache
    assert info2 == info and all(torch.equal(state[k], again[k]) for k in state)
    monkeypatch.setenv("NHL_RUNS", str(tmp_path / "elsewhere"))  # trained again from the same seed
    fresh, info3 = regimes.pretrained_backbone(splits, progress=False)
    assert info3["key"] == info["key"] and all(torch.equal(state[k], fresh[k]) for k in state)


def test_frozen_features_are_the_trunk_and_are_cached(cache):
    config = TrainConfig(dataset="digits", protocol="quick", regime="frozen", bit_list=(8, 16), epochs=1)
    splits = experiments.get_splits(config)
    model, _ = build(config, splits)
    key = regimes.pretrain_key(splits)
    fs = regimes.frozen_splits(model.backbone, splits, key, progress=False)
    model.backbone.eval()
    with torch.no_grad():
        expect = model.backbone.trunk(splits.query.get_batch(torch.arange(5))[0])
    torch.testing.assert_close(fs.query.get_batch(torch.arange(5))[0], expect)
    assert (cache / "features" / "digits" / f"{key}.pt").exists()
    regimes._FEATURES.clear()  # the next call reads the file, not the trunk
    again = regimes.frozen_splits(None, splits, key, progress=False)
    assert torch.equal(again.train.features, fs.train.features)
    assert len(again.database) == len(splits.database)


def test_frozen_run_trains_only_the_head(cache):
    config = TrainConfig(dataset="digits", protocol="quick", regime="frozen", bit_list=(8, 16), epochs=2)
    splits = experiments.get_splits(config)
    before, _ = build(config, splits)
    result = fit(config, splits, progress=False)
    trunk = dict(result.model.backbone.features.state_dict())
    for k, v in before.backbone.features.state_dict().items():
        assert torch.equal(trunk[k], v), k
    assert not torch.equal(result.model.hash_layer.weight, before.hash_layer.weight)
    assert not torch.equal(result.model.backbone.fc[0].weight, before.backbone.fc[0].weight)
    # the stored run is evaluated from the features and records where the backbone came from
    run = experiments.run(config, root=cache / "r", progress=False)
    assert run.metrics["regime"] == "frozen" and run.metrics["pretrain"]["key"] == regimes.pretrain_key(splits)
    assert min(run.map.values()) > 0.3  # well above chance (about 0.1)


def test_fine_tune_trains_the_trunk_at_a_lower_rate(cache):
    config = TrainConfig(dataset="digits", protocol="quick", regime="fine-tune", backbone_lr=0.1, lr=1e-3)
    model, _ = build(config, _splits())
    trunk, head = _parameter_groups(config, model)
    assert trunk["lr"] == pytest.approx(1e-4)
    assert len(trunk["params"]) == len(list(model.backbone.features.parameters()))
    assert len(trunk["params"]) + len(head["params"]) == len(list(model.parameters()))
    assert len(_parameter_groups(config.replace(regime="scratch"), model)) == 1


def test_regime_and_lambda_defaults():
    assert "regime" not in TrainConfig().identity()  # scratch runs keep their cache keys
    assert TrainConfig().identity() == TrainConfig(distill=1.0).identity()
    frozen = TrainConfig(method="dhn", regime="frozen")
    assert frozen.identity()["regime"] == "frozen"
    assert frozen.distill == DISTILL["frozen"]["dhn"][0] == distill_strength("dhn", "frozen")
    assert frozen.replace(method="csq").distill == distill_strength("csq", "frozen")  # follows the method
    assert frozen.replace(distill=0.5).replace(method="csq").distill == 0.5  # an explicit value stays
    assert frozen.kind == "nested-nhl" and frozen.variant("plain").distill == 0.0
    assert VARIANTS["distill"][1] is None and frozen.variant("distill").kind == "nested-distill"
    with pytest.raises(ValueError, match="regime"):
        TrainConfig(regime="warm")
    with pytest.raises(ValueError, match="backbone_lr"):
        TrainConfig(regime="fine-tune", backbone_lr=2.0)


@pytest.mark.slow
def test_classifier_codes_are_repeatable_and_learn(cache):
    from nhl.studies.baselines import classifier_rows

    rows = classifier_rows("digits", seed=0, split_seed=0, epochs=6)
    again = classifier_rows("digits", seed=0, split_seed=0, epochs=6)
    assert [r["mAP"] for r in rows] == [r["mAP"] for r in again]
    assert {r["bits"] for r in rows} == {8, 16, 32, 64, 128}
    assert min(r["mAP"] for r in rows) > 0.5

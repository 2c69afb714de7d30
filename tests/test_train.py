"""End to end on real data (scikit-learn's digits): training, selection, resume, divergence."""

import numpy as np
import pandas as pd
import pytest
import torch

from nhl.config import TrainConfig
from nhl.data import load_splits
from nhl.metrics import mean_average_precision
from nhl.models import encode_dataset
from nhl.train import CHECKPOINT, TrainingDivergedError, build, fit, refresh_banks

BITS = (8, 16, 32)


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    return load_splits("digits", root=tmp_path_factory.mktemp("data"), seed=0)


def _config(**kw):
    base = dict(dataset="digits", method="csq", bit_list=BITS, epochs=4, batch_size=64, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_nested_model_beats_random_codes_by_a_wide_margin(splits):
    result = fit(_config(), splits, progress=False)
    q = encode_dataset(result.model, splits.query)
    db = encode_dataset(result.model, splits.database)
    ql, dbl = splits.query.labels, splits.database.labels
    rng = np.random.default_rng(0)
    random_map = mean_average_precision(
        rng.choice([-1, 1], size=q.shape), rng.choice([-1, 1], size=db.shape), ql, dbl
    )
    for bits in BITS:
        trained = mean_average_precision(q[:, :bits], db[:, :bits], ql, dbl)
        assert trained > random_map + 0.3, (bits, trained, random_map)
    h = result.history
    assert len(h) == 4 * len(BITS)
    assert set(h.columns) >= {"epoch", "bits", "loss", "weight", "anti_domination", "val_map",
                              "train_seconds", "eval_seconds", "selected"}
    assert h.loc[h.selected, "epoch"].nunique() == 1  # one epoch chosen for all lengths
    assert h.groupby("epoch").weight.sum().round(6).eq(len(BITS)).all()


def test_single_length_baseline_trains(splits):
    result = fit(_config(bit_list=(16,), epochs=2), splits, progress=False)
    assert result.model.bit_list == (16,) and set(result.history.bits) == {16}


def test_same_config_twice_gives_identical_history_and_codes(splits):
    a = fit(_config(epochs=2), splits, progress=False)
    b = fit(_config(epochs=2), splits, progress=False)
    cols = ["loss", "distill", "weight", "anti_domination", "val_map"]
    assert a.history[cols].equals(b.history[cols])
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert np.array_equal(encode_dataset(a.model, splits.query), encode_dataset(b.model, splits.query))


def test_interrupted_run_resumes_to_exactly_the_uninterrupted_weights(splits, tmp_path):
    config = _config(epochs=3)
    straight = fit(config, splits, run_dir=tmp_path / "a", progress=False)

    def interrupt(epoch, step, out, model):
        if epoch == 1 and step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(config, splits, run_dir=tmp_path / "b", progress=False, step_callback=interrupt)
    saved = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=False)
    assert saved["epoch"] == 0  # the last finished epoch is on disk
    resumed = fit(config, splits, run_dir=tmp_path / "b", progress=False)
    for (k, v), (_, w) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(v, w), k
    cols = ["epoch", "bits", "loss", "weight", "val_map"]
    assert straight.history[cols].equals(resumed.history[cols])


def test_checkpoint_of_another_config_is_refused(splits, tmp_path):
    fit(_config(epochs=1), splits, run_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="another config"):
        fit(_config(epochs=1, seed=1), splits, run_dir=tmp_path, progress=False)


def test_non_finite_loss_stops_with_length_and_term_and_keeps_checkpoint(splits, tmp_path):
    def poison(epoch, step, out, model):
        if epoch == 1 and step == 1:
            with torch.no_grad():
                model.hash_layer.weight[:4].fill_(float("nan"))  # rows of the 8-bit code

    with pytest.raises(TrainingDivergedError, match=r"epoch 1 step 2: the base loss term of the 8-bit code") as err:
        fit(_config(epochs=3), splits, run_dir=tmp_path, progress=False, step_callback=poison)
    assert "end of epoch 0" in str(err.value)
    kept = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    assert kept["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("method", ["dhn", "dbdh"])
def test_bank_refresh_writes_current_outputs_and_leaves_batchnorm_alone(splits, method):
    model, objective = build(_config(method=method), splits)
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    assert refresh_banks(model, objective, splits.train, 64)
    for k, v in model.named_buffers():
        assert torch.equal(v, buffers[k]), k  # running statistics untouched
    x, y, _ = splits.train.get_batch(torch.arange(64))
    with torch.no_grad():
        outputs = model.train()(x)
    for loss, u in zip(objective.losses, outputs):
        assert bool(loss.bank.filled.all())
        expected = u.clamp(-1, 1) if method == "dbdh" else u  # what each loss keeps
        assert torch.allclose(loss.bank.U[:64], expected, atol=1e-5)
        assert torch.equal(loss.bank.Y[:64], y)


def test_bank_refresh_is_a_no_op_without_banks(splits):
    model, objective = build(_config(method="csq"), splits)
    assert not refresh_banks(model, objective, splits.train, 64)


def test_bank_refresh_option_is_checked_and_changes_training(splits):
    with pytest.raises(ValueError, match="bank_refresh"):
        _config(bank_refresh="sometimes")
    epoch = fit(_config(method="dhn", epochs=1), splits, progress=False).history
    none = fit(_config(method="dhn", epochs=1, bank_refresh="none"), splits, progress=False).history
    assert not epoch["loss"].equals(none["loss"])


def test_early_stopping_stops_when_validation_stops_improving(tmp_path):
    """A learning rate so small that nothing changes: validation mAP never improves after the
    first check, so training stops after ``patience`` more checks, at the same epoch for a
    single-length and a nested model; the selected epoch is the first."""
    from conftest import tiny

    splits = load_splits("digits", root=tmp_path, protocol="quick")
    for config in (tiny(lr=1e-12, epochs=8, patience=2), tiny(lr=1e-12, epochs=8, patience=2).baseline(16)):
        result = fit(config, splits, progress=False)
        assert result.epochs_trained == 3 and result.best_epoch == 0
        assert sorted(result.history["epoch"].unique()) == [0, 1, 2]


def test_early_stopping_leaves_an_improving_run_alone_and_keeps_old_cache_keys(tmp_path):
    from conftest import tiny

    splits = load_splits("digits", root=tmp_path, protocol="quick")
    full = fit(tiny(epochs=3), splits, progress=False)
    patient = fit(tiny(epochs=3, patience=5), splits, progress=False)
    assert full.epochs_trained == patient.epochs_trained == 3
    pd.testing.assert_frame_equal(full.history.drop(columns=["train_seconds", "eval_seconds"]),
                                  patient.history.drop(columns=["train_seconds", "eval_seconds"]))
    # a config without early stopping is named as before the field existed
    assert "patience" not in tiny().identity() and tiny(patience=3).identity()["patience"] == 3
    with pytest.raises(ValueError):
        tiny(patience=0)

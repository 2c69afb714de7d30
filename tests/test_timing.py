"""Step timing and time-to-target (nhl.timing) on tiny inputs."""

import math

import pandas as pd
import pytest

from nhl import experiments, timing
from nhl.config import TrainConfig


def _config(**kw):
    base = dict(dataset="digits", protocol="quick", method="csq", bit_list=(8, 16), epochs=1, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def _history():
    # two lengths, three epochs; per-epoch seconds are repeated on each length's row
    rows = []
    vals = {8: [0.2, 0.5, 0.4], 16: [0.3, 0.4, 0.7]}
    for e, (tr, ev) in enumerate([(1.0, 0.5), (2.0, 0.5), (3.0, 0.5)]):
        for b in (8, 16):
            rows.append(dict(epoch=e, bits=b, val_map=vals[b][e], train_seconds=tr, eval_seconds=ev))
    return pd.DataFrame(rows)


def test_progress_curve_cumulates_seconds():
    c = timing.progress_curve(_history(), bits=16)
    assert c["seconds"].tolist() == [1.0, 3.0, 6.0]
    assert c["val_map"].tolist() == [0.3, 0.4, 0.7]
    c = timing.progress_curve(_history(), include_eval=True)
    assert c["seconds"].tolist() == [1.5, 4.0, 7.5]
    assert c["val_map"].tolist() == pytest.approx([0.25, 0.45, 0.55])
    with pytest.raises(ValueError, match="bits=32"):
        timing.progress_curve(_history(), bits=32)
    with pytest.raises(ValueError, match="val_map"):
        timing.progress_curve(_history().drop(columns="val_map"))


def test_time_to_target_single_mean_and_joint():
    h = _history()
    assert timing.time_to_target(h, 0.5, bits=8) == 3.0
    assert timing.time_to_target(h, 0.45, bits=None) == 3.0  # mean 0.25, 0.45, 0.55
    assert timing.time_to_target(h, 0.45, include_eval=True) == 4.0
    assert math.isnan(timing.time_to_target(h, 0.9, bits=16))
    # jointly: 8 reaches 0.4 at epochs 1, 2; 16 reaches 0.6 only at epoch 2 -> 6 s
    assert timing.time_to_target(h, {8: 0.4, 16: 0.6}) == 6.0
    # 8 >= 0.5 only at epoch 1, 16 >= 0.6 only at epoch 2: never at once
    assert math.isnan(timing.time_to_target(h, {8: 0.5, 16: 0.6}))
    with pytest.raises(ValueError, match="empty"):
        timing.time_to_target(h, {})


def test_time_steps_on_digits(tmp_path):
    config = _config()
    splits = experiments.get_splits(config, tmp_path / "data")
    table = timing.time_steps(config, splits, variants=("single", "plain", "nhl"), n_steps=3, repeats=2, warmup=1)
    assert table["variant"].tolist() == ["single", "plain", "nhl"]
    assert table["kind"].tolist() == ["single-16", "nested-plain", "nested-nhl"]
    assert (table["step ms"] > 0).all()
    assert (table["min ms"] <= table["step ms"]).all() and (table["step ms"] <= table["max ms"]).all()
    assert table["relative"].iloc[0] == 1.0
    one = timing.time_steps(config, splits, variants=("single-8",), n_steps=1, repeats=1, warmup=0)
    assert one["kind"].tolist() == ["single-8"]
    with pytest.raises(ValueError, match="unknown variant 'single-32'"):
        timing.time_steps(config, splits, variants=("single-32",), n_steps=1)
    with pytest.raises(ValueError, match="n_steps"):
        timing.time_steps(config, splits, n_steps=0)

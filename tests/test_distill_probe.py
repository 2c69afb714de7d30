"""Recorded distillation-vs-base-loss gradients (nhl.studies.probes): a tiny run, cached, harmless."""

import numpy as np
import pandas as pd
import pytest

from nhl import experiments, train
from nhl.config import TrainConfig
from nhl.studies import probes


def _config(**kw):
    base = dict(dataset="digits", protocol="quick", method="dhn", bit_list=(8, 16, 32), epochs=1,
                batch_size=32, seed=0)
    base.update(kw)
    return TrainConfig(**base).variant("distill")


def test_record_terms_rows_are_cached_and_do_not_change_training(module_dirs, monkeypatch):
    config = _config()
    fits = []
    real_fit = train.fit

    def spy(*args, **kwargs):
        fits.append(real_fit(*args, **kwargs))
        return fits[-1]

    monkeypatch.setattr(probes, "fit", spy)
    frame = probes.record_terms(config, every=2, **module_dirs)
    assert list(frame.columns) == list(probes.COLUMNS)
    steps = sorted(frame["iteration"].unique())
    assert steps[0] == 0 and all(s % 2 == 0 for s in steps) and len(steps) >= 2
    assert sorted(frame["bits"].unique()) == [8, 16]  # the longest code has no teacher
    np.testing.assert_allclose(frame["ratio"], frame["distill"] / frame["base"], rtol=1e-6)
    assert frame["cosine"].between(-1, 1).all() and (frame["distill"] > 0).all()
    assert probes.recording_path(config, 2, root=module_dirs["root"],
                                        data_root=module_dirs["data_root"]).exists()

    # the probe leaves training alone: the same history as a run without it
    splits = experiments.get_splits(config, module_dirs["data_root"])
    reference = real_fit(config, splits, progress=False)
    pd.testing.assert_frame_equal(fits[0].history.drop(columns=["train_seconds", "eval_seconds"]),
                                  reference.history.drop(columns=["train_seconds", "eval_seconds"]))

    # a second call reads the CSV and trains nothing
    def boom(*args, **kwargs):
        raise AssertionError("record_terms trained although the recording is cached")

    monkeypatch.setattr(train, "fit", boom)
    again = probes.record_terms(config, every=2, **module_dirs)
    pd.testing.assert_frame_equal(again, frame, check_dtype=False)


def test_term_summary_and_bad_inputs(module_dirs):
    frame = probes.record_terms(_config(), every=2, **module_dirs)
    s = probes.term_summary(frame)
    assert list(s.index.names) == ["method", "bits"]
    later = frame[frame["iteration"] > 0]
    assert s.loc[("dhn", 8), "median ratio"] == pytest.approx(later[later["bits"] == 8]["ratio"].median())
    assert s.loc[("dhn", 8), "steps"] == later["iteration"].nunique()
    with pytest.raises(ValueError, match="columns"):
        probes.term_summary(frame.drop(columns="cosine"))
    with pytest.raises(ValueError, match="distill"):
        probes.record_terms(_config().variant("plain"), **module_dirs)
    with pytest.raises(ValueError, match="nested"):
        probes.record_terms(_config(bit_list=(16,)).replace(distill=1.0), **module_dirs)
    with pytest.raises(ValueError, match="every"):
        probes.record_terms(_config(), every=0, **module_dirs)

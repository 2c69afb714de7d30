"""Cached gradient recordings: trained once with the recorder, then loaded."""

import pandas as pd
import pytest
import torch

from nhl import experiments
from nhl.config import TrainConfig
from nhl.studies import probes


def _config(**kw):
    base = dict(dataset="digits", protocol="quick", method="dhn", bit_list=(8, 16, 32), epochs=2, seed=0)
    base.update(kw)
    return TrainConfig(**base).variant("weighting")


def test_record_trains_once_then_loads(dirs):
    first = probes.record(_config(), every=2, **dirs)
    assert len(first.frame) > 0 and {"cos_8_16", "bb_cos_8_32", "anti_domination"} <= set(first.frame)
    assert "first" in first.kept and first.grads("first").shape == (3, 32, 256)
    assert 0 <= first.firing_rate <= 1
    # the run itself landed in the experiment cache, with the recorder's model
    assert experiments.run(_config(), progress=False, **dirs).path == first.run.path
    again = probes.record(_config(), every=2, **dirs)
    pd.testing.assert_frame_equal(again.frame, first.frame)
    for name in first.kept:
        assert torch.equal(again.grads(name), first.grads(name))
    with pytest.raises(KeyError, match="kept"):
        again.grads("nope")


def test_record_a_cached_run_trains_again_to_watch_it(dirs):
    run = experiments.run(_config(seed=1), progress=False, **dirs)
    rec = probes.record(_config(seed=1), every=3, **dirs)
    assert rec.run.path == run.path and len(rec.frame) > 0


def test_recording_does_not_change_training(dirs, tmp_path):
    watched = probes.record(_config(), every=2, **dirs).run
    plain = experiments.run(_config(), root=tmp_path / "other", data_root=dirs["data_root"], progress=False)
    assert watched.metrics["map"] == plain.metrics["map"]
    a, b = watched.model().state_dict(), plain.model().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_record_many_and_summarise_side_by_side(dirs):
    recs = probes.record_many({"dhn": _config(), "csq": _config(method="csq")}, every=2, **dirs)
    assert list(recs) == ["dhn", "csq"]
    assert recs["dhn"].run.path == probes.record(_config(), every=2, **dirs).run.path  # cached
    table = probes.summarise(recs, data_root=dirs["data_root"])
    assert list(table.index) == ["dhn", "csq"] and table.index.name == "setting"
    assert {"classes", "steps", "recorded", "mean cos (W)", "negative cos (W)", "rule fires",
            "negative cos (backbone)"} <= set(table.columns)
    csq = table.loc["csq"]
    assert csq["classes"] == 10 and csq["method"] == "csq" and csq["variant"] == "weighting"
    assert csq["mean cos (W)"] == pytest.approx(1.0, abs=1e-5) and csq["rule fires"] == 0  # notebook 02's proof
    first = probes.summarise(recs, first_steps=3, data_root=dirs["data_root"])
    assert (first["recorded"] == 2).all() and (first["steps"] == 3).all()  # iterations 0 and 2
    with pytest.raises(ValueError, match="empty"):
        probes.record_many({}, **dirs)
    later = probes.Recording(recs["dhn"].config, recs["dhn"].frame.iloc[1:], {}, recs["dhn"].run)
    with pytest.raises(ValueError, match="no recorded step"):
        probes.summarise({"from step 2": later}, first_steps=1, data_root=dirs["data_root"])
